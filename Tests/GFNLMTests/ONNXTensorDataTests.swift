import XCTest
@testable import GFNLM
import CONNX

/// Tensor encodings and the constant resolver, on hand-made models.
final class ONNXTensorDataTests: XCTestCase {
    var tmp: TempDir!
    override func setUp() { tmp = TempDir() }
    override func tearDown() { tmp.remove() }

    private let values: [Float] = [0, 1, -2, 0.5, 3.25, -0.125, 1000, 0.0009765625]  // exact in fp16 and bf16

    private func open(_ bytes: [UInt8]) throws -> (ONNXGraph, TensorDataReader) {
        try tmp.write("m.onnx", bytes)
        let g = try ONNXGraph(file: try ONNXFile(path: tmp.file("m.onnx")))
        return (g, TensorDataReader(graph: g))
    }

    private func floats(_ g: ONNXGraph, _ r: TensorDataReader, _ name: String) throws -> (FloatStorage, [Float]) {
        let i = try XCTUnwrap(g.initializers[name], name)
        let s = try r.floats(try r.header(.initializer(i)))
        return (s, Array(s.buffer))
    }

    func testEncodings() throws {
        let halfBits = values.map { Float16($0).bitPattern }
        var halfRaw: [UInt8] = []
        for h in halfBits { halfRaw += [UInt8(h & 0xFF), UInt8(h >> 8)] }
        let bfBits = values.map { UInt16($0.bitPattern >> 16) }  // all exactly representable
        var bfRaw: [UInt8] = []
        for h in bfBits { bfRaw += [UInt8(h & 0xFF), UInt8(h >> 8)] }
        var dRaw: [UInt8] = []
        for v in values { withUnsafeBytes(of: Double(v).bitPattern.littleEndian) { dRaw += $0 } }
        var i64Raw: [UInt8] = []
        for v: Int64 in [3, -1, 1 << 40] { withUnsafeBytes(of: v.littleEndian) { i64Raw += $0 } }
        let inits = [
            ONNXBuild.tensor(name: "f32raw", dataType: 1, dims: [2, 4], raw: ONNXBuild.floatBytes(values)),
            ONNXBuild.tensor(name: "f32data", dataType: 1, dims: [8], floats: values),
            ONNXBuild.tensor(name: "f16raw", dataType: 10, dims: [8], raw: halfRaw),
            ONNXBuild.tensor(name: "f16i32", dataType: 10, dims: [8], int32s: halfBits.map { Int32($0) }),
            ONNXBuild.tensor(name: "bf16raw", dataType: 16, dims: [8], raw: bfRaw),
            ONNXBuild.tensor(name: "bf16i32", dataType: 16, dims: [8], int32s: bfBits.map { Int32($0) }),
            ONNXBuild.tensor(name: "f64raw", dataType: 11, dims: [8], raw: dRaw),
            ONNXBuild.tensor(name: "i64raw", dataType: 7, dims: [3], raw: i64Raw),
            ONNXBuild.tensor(name: "i32data", dataType: 6, dims: [2], int32s: [7, -9]),
            ONNXBuild.tensor(name: "empty", dataType: 1, dims: [0, 4], raw: []),
        ]
        let (g, r) = try open(ONNXBuild.model(ONNXBuild.graph(nodes: [], initializers: inits, inputs: [], outputs: [])))
        for name in ["f32raw", "f32data", "f16raw", "f16i32", "bf16raw", "bf16i32", "f64raw"] {
            XCTAssertEqual(try floats(g, r, name).1, values, name)
        }
        XCTAssertEqual(try floats(g, r, "empty").1, [])
        XCTAssertEqual(try r.ints(try r.header(.initializer(try XCTUnwrap(g.initializers["i64raw"])))), [3, -1, 1 << 40])
        XCTAssertEqual(try r.ints(try r.header(.initializer(try XCTUnwrap(g.initializers["i32data"])))), [7, -9])
        // fp32 raw_data is borrowed from the proto, not copied.
        let (s, _) = try floats(g, r, "f32raw")
        let range = try XCTUnwrap(r.protoDataRange(.initializer(try XCTUnwrap(g.initializers["f32raw"]))))
        XCTAssertEqual(UnsafeRawPointer(s.base), range.0)
        XCTAssertEqual(try r.header(.initializer(0)).shape, [2, 4])
    }

    func testExternalAlignedIsMappedAndMisalignedIsCopied() throws {
        let data = ONNXBuild.floatBytes(values)
        try tmp.write("w.bin", [0, 0, 0, 0] + data + [9, 9] + data)   // offsets 4 (aligned) and 38 (not)
        try tmp.write("whole.bin", data)
        let inits = [
            ONNXBuild.tensor(name: "a", dataType: 1, dims: [8], external: [("location", "w.bin"), ("offset", "4"), ("length", "32")]),
            ONNXBuild.tensor(name: "b", dataType: 1, dims: [8], external: [("location", "w.bin"), ("offset", "38"), ("length", "32")]),
            ONNXBuild.tensor(name: "c", dataType: 1, dims: [2, 4], external: [("location", "./whole.bin")]),
        ]
        let (g, r) = try open(ONNXBuild.model(ONNXBuild.graph(nodes: [], initializers: inits, inputs: [], outputs: [])))
        let (a, av) = try floats(g, r, "a")
        let (b, bv) = try floats(g, r, "b")
        XCTAssertEqual(av, values)
        XCTAssertEqual(bv, values)
        XCTAssertEqual(try floats(g, r, "c").1, values)
        let maps = r.mappedFiles
        XCTAssertEqual(maps.count, 2)
        let wmap = try XCTUnwrap(maps.first { $0.path.hasSuffix("/w.bin") })
        let base = try XCTUnwrap(wmap.base)
        XCTAssertEqual(UnsafeRawPointer(a.base), base + 4, "aligned external data must be borrowed from the mapping")
        let bp = UnsafeRawPointer(b.base)
        XCTAssertFalse(bp >= base && bp < base + wmap.size, "misaligned external data must be copied")
    }

    /// Large inline raw_data is not copied while parsing: it points into the file mapping (any alignment), small
    /// raw_data stays in the parsed message, the last raw_data field of a tensor wins (protobuf's rule), and the
    /// model serializes back with every byte (connx_serialized_size = the written size).
    func testLargeInlineRawDataIsBorrowedFromTheFileMapping() throws {
        let big = (0..<3000).map { Float($0) * 0.25 - 100 }          // 12,000 bytes: borrowed
        let big2 = (0..<1500).map { Float($0) * -0.5 }
        var twice = ONNXBuild.tensor(name: "twice", dataType: 1, dims: [8], raw: ONNXBuild.floatBytes(big))
        twice.bytes(9, ONNXBuild.floatBytes(values))                  // a later small raw_data replaces the large one
        var twice2 = ONNXBuild.tensor(name: "twice2", dataType: 1, dims: [1500], raw: ONNXBuild.floatBytes(values))
        twice2.bytes(9, ONNXBuild.floatBytes(big2))                   // a later large one replaces the small one
        let inits = [
            ONNXBuild.tensor(name: "pad", dataType: 1, dims: [1], raw: ONNXBuild.floatBytes([7])),
            ONNXBuild.tensor(name: "big", dataType: 1, dims: [3000], raw: ONNXBuild.floatBytes(big)),
            ONNXBuild.tensor(name: "small", dataType: 1, dims: [8], raw: ONNXBuild.floatBytes(values)),
            twice, twice2,
            ONNXBuild.tensor(name: "bigdata", dataType: 1, dims: [1500], floats: big2),
        ]
        let bytes = ONNXBuild.model(ONNXBuild.graph(nodes: [], initializers: inits, inputs: [], outputs: []))
        for misalign in 0..<4 {
            // Shift every offset by a name of varying length: some copies of `big` land misaligned.
            var padded = inits
            padded[0] = ONNXBuild.tensor(name: String(repeating: "p", count: 1 + misalign), dataType: 1, dims: [1],
                                         raw: ONNXBuild.floatBytes([7]))
            let file = ONNXBuild.model(ONNXBuild.graph(nodes: [], initializers: padded, inputs: [], outputs: []))
            let (g, r) = try open(file)
            XCTAssertEqual(try floats(g, r, "big").1, big)
            XCTAssertEqual(try floats(g, r, "small").1, values)
            XCTAssertEqual(try floats(g, r, "twice").1, values)
            XCTAssertEqual(try floats(g, r, "twice2").1, big2)
            XCTAssertEqual(try floats(g, r, "bigdata").1, big2)
            // `big` points into the mapped file at its byte offset, whatever its alignment.
            let range = try XCTUnwrap(r.protoDataRange(.initializer(try XCTUnwrap(g.initializers["big"]))))
            XCTAssertEqual(range.1, 12_000)
            let raw = UnsafeRawBufferPointer(start: range.0, count: range.1)
            XCTAssertEqual(Array(raw), ONNXBuild.floatBytes(big))
            // Serialized size without copying (= what connx_save writes; this file is not canonical: repeated raw_data
            // fields, unpacked floats), then the written file parses to the same tensors.
            var size: UInt64 = 0
            XCTAssertEqual(Int(connx_serialized_size(g.file.handle, &size)), Int(CONNX_OK))
            let out = tmp.file("saved\(misalign).onnx")
            var err = [CChar](repeating: 0, count: 256)
            XCTAssertEqual(Int(connx_save(g.file.handle, out, &err, err.count)), Int(CONNX_OK))
            var st = stat()
            XCTAssertEqual(stat(out, &st), 0)
            XCTAssertEqual(Int(st.st_size), Int(size))
            let g2 = try ONNXGraph(file: try ONNXFile(path: out))
            let r2 = TensorDataReader(graph: g2)
            for name in ["big", "small", "twice", "twice2", "bigdata"] {
                XCTAssertEqual(try floats(g2, r2, name).1, try floats(g, r, name).1, name)
            }
            // Releasing a borrowed tensor forgets it (no dangling pointer handed out afterwards).
            let bi = try XCTUnwrap(g.initializers["big"])
            XCTAssertEqual(Int(connx_tensor_release_data(g.file.handle, -1, Int32(bi))), Int(CONNX_OK))
            XCTAssertNil(r.protoDataRange(.initializer(bi)))
        }
        _ = bytes
    }

    func testConstantFolding() throws {
        // shape = Concat(Unsqueeze(Gather(Shape(x), 0)), [-1, 16]); w2 = Transpose(W); s = Sqrt(Add(c, 1)); r = Reshape(W, [12])
        var axis0 = PB(); axis0.string(1, "axis"); axis0.int(3, 0); axis0.int(20, 2)
        var perm = PB(); perm.string(1, "perm"); perm.int(8, 1); perm.int(8, 0); perm.int(20, 7)
        var cval = PB(); cval.string(1, "value_float"); cval.float(2, 3); cval.int(20, 1)
        let nodes = [
            ONNXBuild.node("Shape", inputs: ["x"], outputs: ["sh"]),
            ONNXBuild.node("Gather", inputs: ["sh", "zero"], outputs: ["b"], attributes: [axis0]),
            ONNXBuild.node("Unsqueeze", inputs: ["b", "axes0"], outputs: ["bu"]),
            ONNXBuild.node("Concat", inputs: ["bu", "tail"], outputs: ["shape"], attributes: [axis0]),
            ONNXBuild.node("Transpose", inputs: ["W"], outputs: ["w2"], attributes: [perm]),
            ONNXBuild.node("Constant", inputs: [], outputs: ["c"], attributes: [cval]),
            ONNXBuild.node("Add", inputs: ["c", "one"], outputs: ["c1"]),
            ONNXBuild.node("Sqrt", inputs: ["c1"], outputs: ["s"]),
            ONNXBuild.node("Reshape", inputs: ["W", "twelve"], outputs: ["r"]),
            ONNXBuild.node("Mul", inputs: ["x", "one"], outputs: ["nc"]),
        ]
        let i64 = { (v: [Int64]) -> [UInt8] in
            var o: [UInt8] = []
            for x in v { withUnsafeBytes(of: x.littleEndian) { o += $0 } }
            return o
        }
        let inits = [
            ONNXBuild.tensor(name: "zero", dataType: 7, dims: [], raw: i64([0])),
            ONNXBuild.tensor(name: "axes0", dataType: 7, dims: [1], raw: i64([0])),
            ONNXBuild.tensor(name: "tail", dataType: 7, dims: [2], raw: i64([-1, 16])),
            ONNXBuild.tensor(name: "twelve", dataType: 7, dims: [1], raw: i64([12])),
            ONNXBuild.tensor(name: "W", dataType: 1, dims: [3, 4], raw: ONNXBuild.floatBytes((0..<12).map { Float($0) })),
            ONNXBuild.tensor(name: "one", dataType: 1, dims: [], raw: ONNXBuild.floatBytes([1])),
        ]
        let g0 = ONNXBuild.graph(nodes: nodes, initializers: inits,
                                 inputs: [ONNXBuild.valueInfo("x", elemType: 1, dims: [nil, nil, 64])], outputs: [])
        let (g, r) = try open(ONNXBuild.model(g0))
        let c = ConstResolver(graph: g, reader: r)
        XCTAssertEqual(c.partialInts("shape"), [nil, -1, 16])
        XCTAssertNil(try c.value("shape"))
        XCTAssertNil(try c.value("nc"))
        let w2 = try XCTUnwrap(try c.value("w2"))
        XCTAssertEqual(w2.shape, [4, 3])
        XCTAssertEqual(w2.root, .initializer(try XCTUnwrap(g.initializers["W"])))
        XCTAssertTrue(w2.rootTransposed)
        XCTAssertEqual(Array(try w2.floats().buffer), [0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11])
        XCTAssertEqual(try c.value("s")?.scalar(), 2)
        XCTAssertEqual(try c.value("r")?.shape, [12])
        XCTAssertFalse(try XCTUnwrap(try c.value("r")).rootTransposed)
    }

    func testConfigFallbackReader() throws {
        try FileIO.writeAtomically(tmp.file("config.json"), Array(#"{"n_head": 12, "rotary_dim": 64, "model_type": "gptj"}"#.utf8))
        let c = try XCTUnwrap(try ConfigJSON.read(directory: tmp.path))
        XCTAssertEqual(c["n_head"], 12)
        XCTAssertEqual(c["rotary_dim"], 64)
        XCTAssertNil(c["model_type"])
        XCTAssertNil(try ConfigJSON.read(directory: FileIO.join(tmp.path, "none")))
    }
}
