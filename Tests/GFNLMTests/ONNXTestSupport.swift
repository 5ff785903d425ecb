@testable import GFNLM

/// A minimal protobuf writer for hand-made ONNX models in tests (hostile inputs, tensor encodings).
struct PB {
    var bytes: [UInt8] = []

    mutating func varint(_ v: UInt64) {
        var v = v
        while v >= 0x80 { bytes.append(UInt8(v & 0x7F) | 0x80); v >>= 7 }
        bytes.append(UInt8(v))
    }
    mutating func key(_ field: Int, _ wire: Int) { varint(UInt64(field << 3 | wire)) }
    mutating func int(_ field: Int, _ v: Int64) { key(field, 0); varint(UInt64(bitPattern: v)) }
    mutating func bytes(_ field: Int, _ b: [UInt8]) { key(field, 2); varint(UInt64(b.count)); bytes += b }
    mutating func string(_ field: Int, _ s: String) { bytes(field, Array(s.utf8)) }
    mutating func message(_ field: Int, _ m: PB) { bytes(field, m.bytes) }
    mutating func float(_ field: Int, _ f: Float) {
        key(field, 5)
        withUnsafeBytes(of: f.bitPattern.littleEndian) { bytes += $0 }
    }
}

/// Builders for ONNX messages (field numbers from onnx.proto).
enum ONNXBuild {
    static func tensor(name: String, dataType: Int32, dims: [Int64], raw: [UInt8]? = nil, floats: [Float] = [],
                       int32s: [Int32] = [], external: [(String, String)] = []) -> PB {
        var t = PB()
        for d in dims { t.int(1, d) }
        t.int(2, Int64(dataType))
        for f in floats { t.float(4, f) }
        for i in int32s { t.int(5, Int64(i)) }
        t.string(8, name)
        if let raw { t.bytes(9, raw) }
        if !external.isEmpty {
            for (k, v) in external {
                var e = PB(); e.string(1, k); e.string(2, v)
                t.message(13, e)
            }
            t.int(14, 1)
        }
        return t
    }

    static func floatBytes(_ v: [Float]) -> [UInt8] {
        var out: [UInt8] = []
        for x in v { withUnsafeBytes(of: x.bitPattern.littleEndian) { out += $0 } }
        return out
    }

    static func node(_ op: String, inputs: [String], outputs: [String], domain: String = "",
                     attributes: [PB] = []) -> PB {
        var n = PB()
        for i in inputs { n.string(1, i) }
        for o in outputs { n.string(2, o) }
        n.string(4, op)
        for a in attributes { n.message(5, a) }
        if !domain.isEmpty { n.string(7, domain) }
        return n
    }

    static func valueInfo(_ name: String, elemType: Int32, dims: [Int64?]) -> PB {
        var shape = PB()
        for d in dims {
            var dim = PB()
            if let d { dim.int(1, d) } else { dim.string(2, "n") }
            shape.message(1, dim)
        }
        var tt = PB(); tt.int(1, Int64(elemType)); tt.message(2, shape)
        var type = PB(); type.message(1, tt)
        var v = PB(); v.string(1, name); v.message(2, type)
        return v
    }

    static func graph(nodes: [PB], initializers: [PB], inputs: [PB], outputs: [PB]) -> PB {
        var g = PB()
        for n in nodes { g.message(1, n) }
        g.string(2, "g")
        for t in initializers { g.message(5, t) }
        for i in inputs { g.message(11, i) }
        for o in outputs { g.message(12, o) }
        return g
    }

    static func model(_ graph: PB, opset: Int64 = 17, irVersion: Int64 = 8) -> [UInt8] {
        var m = PB()
        m.int(1, irVersion)
        m.string(2, "gfnlm-test")
        m.message(7, graph)
        var o = PB(); o.string(1, ""); o.int(2, opset)
        m.message(8, o)
        return m.bytes
    }

    /// x[1,4] · W[4,3] → y: a valid model that is not a GPT, with W given.
    static func matmulModel(weight: PB) -> [UInt8] {
        let g = graph(nodes: [node("MatMul", inputs: ["x", "W"], outputs: ["y"])], initializers: [weight],
                      inputs: [valueInfo("x", elemType: 1, dims: [1, 4])],
                      outputs: [valueInfo("y", elemType: 1, dims: [1, 3])])
        return model(g)
    }
}

/// A fresh temporary directory, removed (recursively) by `remove()`.
final class TempDir {
    let path: String
    init() {
        var template = Array("/tmp/gfnlm-onnx-test-XXXXXX".utf8CString)
        let p = template.withUnsafeMutableBufferPointer { buf in mkdtemp(buf.baseAddress!) }
        path = p.map { String(cString: $0) } ?? "/tmp/gfnlm-onnx-test-fallback"
    }
    func file(_ name: String) -> String { FileIO.join(path, name) }
    func write(_ name: String, _ bytes: [UInt8]) throws { try FileIO.writeAtomically(file(name), bytes) }
    func remove() { Self.removeTree(path) }

    /// rm -r without following symlinks.
    static func removeTree(_ p: String) {
        var st = stat()
        guard lstat(p, &st) == 0 else { return }
        if (st.st_mode & S_IFMT) == S_IFDIR {
            if let d = opendir(p) {
                var names: [String] = []
                while let e = readdir(d) {
                    let n = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
                    if n != "." && n != ".." { names.append(n) }
                }
                closedir(d)
                for n in names { removeTree(FileIO.join(p, n)) }
            }
            rmdir(p)
        } else {
            unlink(p)
        }
    }
}
