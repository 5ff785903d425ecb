import CGFNLM
import GFNLM

/// A tokenizer handle. `borrowed` tokenizers belong to a model and are released with it.
final class TokenizerHandle {
    let tokenizer: Tokenizer
    let borrowed: Bool
    init(_ tokenizer: Tokenizer, borrowed: Bool) {
        self.tokenizer = tokenizer
        self.borrowed = borrowed
    }
}

@c @implementation
public func gfn_tokenizer_load(_ path: UnsafePointer<CChar>?, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    capi { () throws(GFNError) in
        let p = try requireString(path, "path")
        let o = try requirePointer(out, "out")
        let tok = try Tokenizer.load(path: p)
        o.pointee = handles.register(TokenizerHandle(tok, borrowed: false))
    }
}

@c @implementation
public func gfn_tokenizer_free(_ tokenizer: OpaquePointer?) {
    guard let tokenizer else { return }
    // A model's own tokenizer is released with the model.
    if let h = try? handles.lookup(tokenizer, as: TokenizerHandle.self, "tokenizer"), h.borrowed { return }
    handles.remove(tokenizer, as: TokenizerHandle.self)
}

@c @implementation
public func gfn_tokenizer_encode(_ tokenizer: OpaquePointer?, _ text: UnsafePointer<CChar>?, _ allowSpecial: Int32,
                               _ ids: UnsafeMutablePointer<Int32>?, _ capacity: Int32,
                               _ nIds: UnsafeMutablePointer<Int32>?) -> Int32 {
    capi { () throws(GFNError) in
        let h = try handles.lookup(tokenizer, as: TokenizerHandle.self, "tokenizer")
        let s = try requireString(text, "text")
        let n = try requirePointer(nIds, "n_ids")
        guard capacity >= 0 else { throw .invalidArgument("capacity is negative (\(capacity))") }
        let encoded = h.tokenizer.encode(s, allowSpecial: allowSpecial != 0)
        guard encoded.count <= Int(Int32.max) else { throw .outOfRange("text encodes to more than 2^31 ids") }
        n.pointee = Int32(encoded.count)
        if encoded.count > Int(capacity) {
            throw GFNError(.bufferTooSmall, "the text encodes to \(encoded.count) ids; capacity is \(capacity)")
        }
        if encoded.isEmpty { return }
        let dst = try requirePointer(ids, "ids")
        encoded.withUnsafeBufferPointer { src in
            if let b = src.baseAddress { dst.update(from: b, count: encoded.count) }
        }
    }
}

@c @implementation
public func gfn_tokenizer_decode(_ tokenizer: OpaquePointer?, _ ids: UnsafePointer<Int32>?, _ nIds: Int32,
                               _ text: UnsafeMutablePointer<CChar>?, _ capacity: Int,
                               _ nBytes: UnsafeMutablePointer<Int>?) -> Int32 {
    capi { () throws(GFNError) in
        let h = try handles.lookup(tokenizer, as: TokenizerHandle.self, "tokenizer")
        _ = try requirePointer(nBytes, "n_bytes")   // before the other arguments, as callers have seen since ABI 1
        guard nIds >= 0 else { throw .invalidArgument("n_ids is negative (\(nIds))") }
        let list: [Int32] = nIds == 0 ? [] : Array(UnsafeBufferPointer(start: try requirePointer(ids, "ids"), count: Int(nIds)))
        try writeText(try h.tokenizer.decode(list), text, capacity, nBytes)
    }
}

@c @implementation
public func gfn_tokenizer_vocab_size(_ tokenizer: OpaquePointer?, _ out: UnsafeMutablePointer<Int32>?) -> Int32 {
    capi { () throws(GFNError) in
        let h = try handles.lookup(tokenizer, as: TokenizerHandle.self, "tokenizer")
        try requirePointer(out, "out").pointee = Int32(h.tokenizer.vocabSize)
    }
}

@c @implementation
public func gfn_tokenizer_eos(_ tokenizer: OpaquePointer?, _ out: UnsafeMutablePointer<Int32>?) -> Int32 {
    capi { () throws(GFNError) in
        let h = try handles.lookup(tokenizer, as: TokenizerHandle.self, "tokenizer")
        try requirePointer(out, "out").pointee = h.tokenizer.eosId.map { Int32($0) } ?? -1
    }
}
