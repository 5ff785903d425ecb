import XCTest
@testable import GFNLM

/// Bad and hostile inputs: every one must fail with the right status and a message naming the problem, never trap.
final class ONNXHostileTests: XCTestCase {
    var tmp: TempDir!

    override func setUp() { tmp = TempDir() }
    override func tearDown() { tmp.remove() }

    private func expectError(_ path: String, _ status: GFNStatus, _ contains: [String] = [],
                             file: StaticString = #filePath, line: UInt = #line) {
        do {
            _ = try ONNXModelLoader.load(path: path)
            XCTFail("loaded \(path), expected \(status)", file: file, line: line)
        } catch {
            XCTAssertEqual(error.status, status, error.message, file: file, line: line)
            for c in contains {
                XCTAssertTrue(error.message.contains(c), "'\(error.message)' lacks '\(c)'", file: file, line: line)
            }
        }
    }

    private let w12 = ONNXBuild.floatBytes((0..<12).map { Float($0) * 0.5 })

    private func externalModel(_ entries: [(String, String)], dims: [Int64] = [4, 3]) -> [UInt8] {
        ONNXBuild.matmulModel(weight: ONNXBuild.tensor(name: "W", dataType: 1, dims: dims, external: entries))
    }

    // MARK: files

    func testMissingFile() {
        expectError(tmp.file("nope.onnx"), .io, ["nope.onnx"])
    }

    func testDirectoryWithoutModel() {
        expectError(tmp.path, .io, ["no .onnx file"])
    }

    func testDirectoryWithSeveralModels() throws {
        try tmp.write("a.onnx", [1]); try tmp.write("b.onnx", [1])
        expectError(tmp.path, .invalidArgument, ["a.onnx", "b.onnx"])
    }

    func testEmptyFile() throws {
        try tmp.write("model.onnx", [])
        expectError(tmp.file("model.onnx"), .format, ["empty"])
        expectError(tmp.path, .format, ["empty"])  // directory → model.onnx
    }

    func testFIFOIsRefusedWithoutHanging() throws {
        let p = tmp.file("fifo.onnx")
        XCTAssertEqual(mkfifo(p, 0o600), 0)
        expectError(p, .io, ["not a regular file"])
    }

    func testRandomBytes() throws {
        var rng = ONNXTestRNG(seed: 42)
        for size in [1, 7, 100, 4096, 100_000] {
            let bytes = (0..<size).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            try tmp.write("r.onnx", bytes)
            expectError(tmp.file("r.onnx"), .format)
        }
        // Text is not a protobuf either.
        try tmp.write("t.onnx", Array("hello, this is not an onnx model\n".utf8))
        expectError(tmp.file("t.onnx"), .format)
    }

    func testTruncatedSynthetic() throws {
        let full = ONNXBuild.matmulModel(weight: ONNXBuild.tensor(name: "W", dataType: 1, dims: [4, 3], raw: w12))
        try tmp.write("full.onnx", full)
        expectError(tmp.file("full.onnx"), .unsupported, ["not a GPT-2/GPT-J graph"])
        for cut in [1, 2, 5, 10, 20, full.count / 2, full.count - 12, full.count - 1] {
            try tmp.write("cut.onnx", Array(full[..<cut]))
            expectError(tmp.file("cut.onnx"), .format, ["cut.onnx"])
        }
    }

    func testTruncatedFixture() throws {
        let src = ONNXFixtures.path("gpt2-tiny/legacy17/model.onnx")
        guard FileIO.exists(src) else { throw XCTSkip("fixture gpt2-tiny/legacy17 missing") }
        let full = try FileIO.read(src)
        for frac in [0.0001, 0.01, 0.25, 0.5, 0.9, 0.999] {
            let cut = max(1, Int(Double(full.count) * frac))
            try tmp.write("model.onnx", Array(full[..<cut]))
            expectError(tmp.path, .format, ["truncated"])
        }
        try tmp.write("model.onnx", Array(full[..<(full.count - 1)]))
        expectError(tmp.path, .format)
    }

    func testNoOpsetImport() throws {
        var m = PB()
        m.int(1, 8)
        m.message(7, ONNXBuild.graph(nodes: [ONNXBuild.node("Relu", inputs: ["x"], outputs: ["y"])], initializers: [],
                                     inputs: [], outputs: []))
        try tmp.write("m.onnx", m.bytes)
        expectError(tmp.file("m.onnx"), .format, ["opset"])
    }

    func testNoGraph() throws {
        var m = PB()
        m.int(1, 8)
        m.string(2, "x")
        try tmp.write("m.onnx", m.bytes)
        expectError(tmp.file("m.onnx"), .format, ["no graph"])
    }

    func testNotAGPT() throws {
        let p = ONNXFixtures.path("not-a-gpt/model.onnx")
        if FileIO.exists(p) { expectError(p, .unsupported, ["not a GPT-2/GPT-J graph"]) }
        let ok = ONNXBuild.matmulModel(weight: ONNXBuild.tensor(name: "W", dataType: 1, dims: [4, 3], raw: w12))
        try tmp.write("m.onnx", ok)
        expectError(tmp.file("m.onnx"), .unsupported, ["not a GPT-2/GPT-J graph", "token-embedding"])
    }

    func testTooLargeForProtobuf() throws {
        let p = tmp.file("big.onnx")
        let fd = open(p, O_CREAT | O_WRONLY, 0o600)
        XCTAssertGreaterThanOrEqual(fd, 0)
        XCTAssertEqual(ftruncate(fd, off_t(1) << 31), 0)  // sparse: no disk used
        close(fd)
        expectError(p, .unsupported, ["2 GiB", "external data"])
    }

    func testRecursionBomb() throws {
        // Graph → node → attribute g → graph → … 3000 levels deep.
        var inner = ONNXBuild.graph(nodes: [], initializers: [], inputs: [], outputs: [])
        for _ in 0..<3000 {
            var a = PB(); a.string(1, "then_branch"); a.message(6, inner); a.int(20, 5)
            let n = ONNXBuild.node("If", inputs: ["c"], outputs: ["y"], attributes: [a])
            inner = ONNXBuild.graph(nodes: [n], initializers: [], inputs: [], outputs: [])
        }
        try tmp.write("bomb.onnx", ONNXBuild.model(inner))
        expectError(tmp.file("bomb.onnx"), .format)
    }

    /// Random byte mutations of real exports: every load must end in success or a GFNError, never a trap.
    func testMutatedFixturesNeverTrap() throws {
        let sources = ["gpt2-tiny/legacy17", "gpt2-tiny/legacy14", "gptj-tiny/legacy17", "gptj-tiny/dynamo",
                       "gpt2-tiny/ort-optimized"]
        var rng = ONNXTestRNG(seed: 7)
        var outcomes: [String: Int] = [:]
        for src in sources {
            let p = ONNXFixtures.path("\(src)/model.onnx")
            guard FileIO.exists(p) else { continue }
            let orig = try FileIO.read(p)
            let rounds = getenv("GFNLM_ONNX_MUTATIONS").flatMap { Int(String(cString: $0)) } ?? 40
            for _ in 0..<rounds {
                var b = orig
                let kind = Int(rng.next() % 4)
                let n = 1 + Int(rng.next() % 8)
                for _ in 0..<n {
                    let at = Int(rng.next() % UInt64(b.count))
                    switch kind {
                    case 0: b[at] ^= UInt8(1 << (rng.next() % 8))                 // bit flip
                    case 1: b[at] = UInt8(truncatingIfNeeded: rng.next())          // random byte
                    case 2: b[at] = [0x00, 0x7F, 0x80, 0xFF][Int(rng.next() % 4)]   // varint edge bytes
                    default:                                                        // copy a small range elsewhere
                        let len = min(16, b.count - at)
                        let to = Int(rng.next() % UInt64(b.count - len + 1))
                        b.replaceSubrange(to..<(to + len), with: b[at..<(at + len)])
                    }
                }
                try tmp.write("model.onnx", b)
                do {
                    _ = try ONNXModelLoader.load(path: tmp.path)
                    outcomes["ok", default: 0] += 1
                } catch {
                    outcomes["\(error.status)", default: 0] += 1
                }
            }
        }
        print("[onnx] mutated fixtures: \(outcomes.sorted { $0.key < $1.key })")
    }

    // MARK: tensors

    func testDeclaredDimsExceedInlineData() throws {
        let m = ONNXBuild.matmulModel(weight: ONNXBuild.tensor(name: "W", dataType: 1, dims: [4, 4], raw: w12))
        try tmp.write("m.onnx", m)
        expectError(tmp.file("m.onnx"), .format, ["'W'", "64 bytes", "48 bytes"])
    }

    func testDeclaredDimsExceedFloatData() throws {
        let m = ONNXBuild.matmulModel(weight: ONNXBuild.tensor(name: "W", dataType: 1, dims: [4, 3], floats: [1, 2, 3]))
        try tmp.write("m.onnx", m)
        expectError(tmp.file("m.onnx"), .format, ["'W'", "float_data"])
    }

    func testNegativeDim() throws {
        let m = ONNXBuild.matmulModel(weight: ONNXBuild.tensor(name: "W", dataType: 1, dims: [4, -3], raw: w12))
        try tmp.write("m.onnx", m)
        expectError(tmp.file("m.onnx"), .format, ["negative"])
    }

    func testOverflowingDims() throws {
        let m = ONNXBuild.matmulModel(weight: ONNXBuild.tensor(name: "W", dataType: 1, dims: [1 << 40, 1 << 40, 1 << 40],
                                                              raw: w12))
        try tmp.write("m.onnx", m)
        expectError(tmp.file("m.onnx"), .format, ["'W'"])
    }

    func testMissingExternalFile() throws {
        try tmp.write("m.onnx", externalModel([("location", "weights.bin")]))
        expectError(tmp.file("m.onnx"), .io, ["weights.bin"])
    }

    func testMissingExternalFileOfFixture() throws {
        let src = ONNXFixtures.path("gpt2-tiny/external-onefile/model.onnx")
        guard FileIO.exists(src) else { throw XCTSkip("fixture gpt2-tiny/external-onefile missing") }
        try tmp.write("model.onnx", try FileIO.read(src))
        expectError(tmp.path, .io, ["model.onnx.data"])
    }

    func testExternalParentEscape() throws {
        try tmp.write("m.onnx", externalModel([("location", "../../etc/passwd"), ("offset", "0"), ("length", "48")]))
        expectError(tmp.file("m.onnx"), .format, ["../../etc/passwd", "outside"])
        try tmp.write("m2.onnx", externalModel([("location", "sub/../../x.bin")]))
        expectError(tmp.file("m2.onnx"), .format, ["outside"])
    }

    func testExternalAbsolutePath() throws {
        try tmp.write("m.onnx", externalModel([("location", "/etc/passwd"), ("offset", "0"), ("length", "48")]))
        expectError(tmp.file("m.onnx"), .format, ["absolute", "/etc/passwd"])
    }

    func testExternalSymlinkOut() throws {
        XCTAssertEqual(symlink("/etc/passwd", tmp.file("w.bin")), 0)
        try tmp.write("m.onnx", externalModel([("location", "w.bin"), ("offset", "0"), ("length", "48")]))
        expectError(tmp.file("m.onnx"), .format, ["outside", "symlink"])
    }

    func testExternalSymlinkInsideIsFine() throws {
        try tmp.write("real.bin", w12)
        XCTAssertEqual(symlink("real.bin", tmp.file("w.bin")), 0)
        try tmp.write("m.onnx", externalModel([("location", "w.bin")]))
        // The data is fine, so the loader gets as far as recognition.
        expectError(tmp.file("m.onnx"), .unsupported, ["not a GPT-2/GPT-J graph"])
    }

    func testExternalRangeBeyondFile() throws {
        try tmp.write("w.bin", w12)
        try tmp.write("m.onnx", externalModel([("location", "w.bin"), ("offset", "8"), ("length", "48")]))
        expectError(tmp.file("m.onnx"), .format, ["beyond the end"])
        try tmp.write("m2.onnx", externalModel([("location", "w.bin"), ("offset", "4096")]))
        expectError(tmp.file("m2.onnx"), .format, ["beyond the end"])
    }

    func testExternalLengthDiffersFromDims() throws {
        try tmp.write("w.bin", w12 + w12)
        try tmp.write("m.onnx", externalModel([("location", "w.bin"), ("offset", "0"), ("length", "96")]))
        expectError(tmp.file("m.onnx"), .format, ["48 bytes", "96 bytes"])
        // Location only: the whole file must be the tensor.
        try tmp.write("m2.onnx", externalModel([("location", "w.bin")]))
        expectError(tmp.file("m2.onnx"), .format, ["96 bytes"])
    }

    func testExternalBadNumbers() throws {
        try tmp.write("w.bin", w12)
        for bad in ["abc", "-1", "", "1e3", "99999999999999999999999"] {
            try tmp.write("m.onnx", externalModel([("location", "w.bin"), ("offset", bad)]))
            expectError(tmp.file("m.onnx"), .format, ["offset"])
        }
    }

    func testExternalWithoutLocation() throws {
        try tmp.write("m.onnx", externalModel([("offset", "0")]))
        expectError(tmp.file("m.onnx"), .format, ["no location"])
    }

    func testExternalDirectory() throws {
        XCTAssertEqual(mkdir(tmp.file("d"), 0o700), 0)
        try tmp.write("m.onnx", externalModel([("location", "d")]))
        expectError(tmp.file("m.onnx"), .format, ["not a regular file"])
    }

    func testUnreadableDataType() throws {
        // A STRING initializer is skipped by validation; a COMPLEX64 weight operand is refused when read.
        let m = ONNXBuild.matmulModel(weight: ONNXBuild.tensor(name: "W", dataType: 14, dims: [4, 3], raw: w12 + w12))
        try tmp.write("m.onnx", m)
        expectError(tmp.file("m.onnx"), .unsupported)
    }
}

/// A small deterministic generator for test data.
struct ONNXTestRNG {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
