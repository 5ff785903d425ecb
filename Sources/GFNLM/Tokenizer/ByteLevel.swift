// GPT-2's byte-level alphabet and the character classes of its pre-tokenization regex.

/// The byte ↔ character mapping of GPT-2's byte-level BPE (`bytes_to_unicode` in OpenAI's encoder.py): printable
/// bytes 0x21–0x7E, 0xA1–0xAC and 0xAE–0xFF stand for themselves; the other 68 bytes map to U+0100… in order.
enum ByteLevel {
    /// The character (Unicode scalar value) that stands for each byte.
    static let byteToScalar: [UInt32] = {
        var table = [UInt32](repeating: 0, count: 256)
        var next: UInt32 = 256
        for b in 0..<256 {
            if (0x21...0x7E).contains(b) || (0xA1...0xAC).contains(b) || (0xAE...0xFF).contains(b) {
                table[b] = UInt32(b)
            } else {
                table[b] = next
                next += 1
            }
        }
        return table
    }()

    /// The UTF-8 encoding of each byte's character (1 or 2 bytes).
    static let byteToUTF8: [[UInt8]] = byteToScalar.map { v in
        v < 0x80 ? [UInt8(v)] : [UInt8(0xC0 | (v >> 6)), UInt8(0x80 | (v & 0x3F))]
    }

    /// Scalar value → byte, for scalars below 0x144 (-1 for scalars that stand for no byte).
    static let scalarToByte: [Int16] = {
        var table = [Int16](repeating: -1, count: 0x144)
        for (b, v) in byteToScalar.enumerated() { table[Int(v)] = Int16(b) }
        return table
    }()

    /// The raw bytes a vocabulary token stands for, or nil when one of its characters is not in the byte alphabet
    /// (Hugging Face's ByteLevel decoder then emits the token's own UTF-8 bytes).
    static func decodeToken(_ token: String) -> [UInt8]? {
        var out: [UInt8] = []
        out.reserveCapacity(token.utf8.count)
        for s in token.unicodeScalars {
            let v = Int(s.value)
            guard v < scalarToByte.count, scalarToByte[v] >= 0 else { return nil }
            out.append(UInt8(truncatingIfNeeded: scalarToByte[v]))
        }
        return out
    }

    /// The byte-level token text (as UTF-8) for raw bytes.
    static func encodeBytes(_ raw: UnsafeBufferPointer<UInt8>) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(raw.count * 2)
        for b in raw { out.append(contentsOf: byteToUTF8[Int(b)]) }
        return out
    }
}

/// Character classes used by GPT-2's pattern
/// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`.
///
/// They follow Oniguruma, the regex engine of Hugging Face `tokenizers` (checked against tokenizers 0.22 for every
/// code point): `\s` is U+0009–U+000D, U+0085 and the Zs/Zl/Zp categories (so NBSP and U+3000 are spaces, while
/// U+001C–U+001F, U+200B and U+180E are not); `\p{L}` / `\p{N}` are the L* / N* general categories of Unicode 16 —
/// scalars first assigned in a later Unicode version (which Swift's tables know) count as "other", as they do there.
enum CharClass {
    static let other: UInt8 = 0
    static let letter: UInt8 = 1
    static let number: UInt8 = 2
    static let space: UInt8 = 3

    static func compute(_ v: UInt32) -> UInt8 {
        if v == 0x85 || (v >= 0x09 && v <= 0x0D) { return space }
        guard let s = Unicode.Scalar(v) else { return other }
        let cls: UInt8
        switch s.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: cls = letter
        case .decimalNumber, .letterNumber, .otherNumber: cls = number
        case .spaceSeparator, .lineSeparator, .paragraphSeparator: return space
        default: return other
        }
        if let age = s.properties.age, age.major > 16 { return other }
        return cls
    }

    /// Classes of the Basic Multilingual Plane, computed once on first use.
    static let bmp: [UInt8] = (0..<UInt32(0x10000)).map { compute($0) }

    @inline(__always)
    static func of(_ v: UInt32) -> UInt8 {
        v < 0x10000 ? bmp[Int(v)] : compute(v)
    }
}
