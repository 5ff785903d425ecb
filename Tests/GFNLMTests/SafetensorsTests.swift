import XCTest
@testable import GFNLM

final class SafetensorsTests: XCTestCase {
    // python: safetensors.torch.save({...}, metadata={"format": "pt", "x": "y"}) (safetensors 0.8.0, torch 2.15);
    // see `referenceTensors` for the values.
    static let referenceHex = "98020000000000007b225f5f6d657461646174615f5f223a7b22666f726d6174223a227074222c2278223a2279227d2c2264223a7b226474797065223a22493634222c227368617065223a5b325d2c22646174615f6f666673657473223a5b302c31365d7d2c2266223a7b226474797065223a22463634222c227368617065223a5b315d2c22646174615f6f666673657473223a5b31362c32345d7d2c22622e776569676874223a7b226474797065223a22463332222c227368617065223a5b322c335d2c22646174615f6f666673657473223a5b32342c34385d7d2c227a223a7b226474797065223a22463332222c227368617065223a5b302c345d2c22646174615f6f666673657473223a5b34382c34385d7d2c2268223a7b226474797065223a22493332222c227368617065223a5b5d2c22646174615f6f666673657473223a5b34382c35325d7d2c2263223a7b226474797065223a2242463136222c227368617065223a5b322c325d2c22646174615f6f666673657473223a5b35322c36305d7d2c22612e62696173223a7b226474797065223a22463136222c227368617065223a5b335d2c22646174615f6f666673657473223a5b36302c36365d7d2c22693136223a7b226474797065223a22493136222c227368617065223a5b325d2c22646174615f6f666673657473223a5b36362c37305d7d2c226938223a7b226474797065223a224938222c227368617065223a5b335d2c22646174615f6f666673657473223a5b37302c37335d7d2c2265223a7b226474797065223a225538222c227368617065223a5b335d2c22646174615f6f666673657473223a5b37332c37365d7d2c2267223a7b226474797065223a22424f4f4c222c227368617065223a5b325d2c22646174615f6f666673657473223a5b37362c37385d7d7dffffffffffffffff01000000000020009a9999999999b93f0000c03f000000c000005040cdcccc3d77cc2b32000000802a000000803f494020c04a71003c00b8ff7bd08a0200807fff0007ff0100"

    static func hex(_ s: String) -> [UInt8] {
        var out: [UInt8] = []
        var it = s.utf8.makeIterator()
        func nib(_ c: UInt8) -> UInt8 { c <= 57 ? c - 48 : c - 87 }
        while let a = it.next(), let b = it.next() { out.append(nib(a) << 4 | nib(b)) }
        return out
    }

    static func le<T: FixedWidthInteger>(_ values: [T]) -> [UInt8] {
        var out: [UInt8] = []
        for v in values { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        return out
    }

    static var referenceTensors: [SafetensorsTensor] {
        [
            SafetensorsTensor(name: "b.weight", shape: [2, 3], floats: [1.5, -2.0, 3.25, 0.1, 1e-8, -0.0]),
            SafetensorsTensor(name: "a.bias", shape: [3], floats: [1.0, -0.5, 65504.0], dtype: .f16),
            SafetensorsTensor(name: "c", shape: [2, 2], floats: [1.0, 3.140625, -2.5, 1e30], dtype: .bf16),
            SafetensorsTensor(name: "d", dtype: .i64, shape: [2], bytes: le([Int64(-1), 9_007_199_254_740_993])),
            SafetensorsTensor(name: "e", dtype: .u8, shape: [3], bytes: [0, 7, 255]),
            SafetensorsTensor(name: "f", dtype: .f64, shape: [1], bytes: le([(0.1 as Double).bitPattern])),
            SafetensorsTensor(name: "g", dtype: .bool, shape: [2], bytes: [1, 0]),
            SafetensorsTensor(name: "h", dtype: .i32, shape: [], bytes: le([Int32(42)])),
            SafetensorsTensor(name: "z", shape: [0, 4], floats: []),
            SafetensorsTensor(name: "i8", dtype: .i8, shape: [3], bytes: le([Int8(-128), 127, -1])),
            SafetensorsTensor(name: "i16", dtype: .i16, shape: [2], bytes: le([Int16(-30000), 2])),
        ]
    }

    func testWriterMatchesReferenceBytes() throws {
        let ours = try Safetensors.serialize(tensors: Self.referenceTensors, metadata: ["x": "y", "format": "pt"])
        XCTAssertEqual(ours, Self.hex(Self.referenceHex))
    }

    func testReferenceVectorsFromRustTests() throws {
        // safetensors/src/tensor.rs test_serialization, test_empty.
        let data = SafetensorsTensor(name: "attn.0", shape: [1, 2, 3], floats: [0, 1, 2, 3, 4, 5])
        let out = try Safetensors.serialize(tensors: [data])
        XCTAssertEqual(Array(out.prefix(8)), [64, 0, 0, 0, 0, 0, 0, 0])
        XCTAssertEqual(String(decoding: out[8..<72], as: UTF8.self),
                       #"{"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}}"#)
        XCTAssertEqual(try Safetensors.serialize(tensors: []), [8, 0, 0, 0, 0, 0, 0, 0, 123, 125, 32, 32, 32, 32, 32, 32])
        let withMeta = try Safetensors.serialize(tensors: [], metadata: ["framework": "pt"])
        XCTAssertEqual(withMeta.count, 48)
        XCTAssertEqual(String(decoding: withMeta[8...], as: UTF8.self), #"{"__metadata__":{"framework":"pt"}}     "#)
        XCTAssertEqual(try Safetensors(bytes: withMeta).metadata, ["framework": "pt"])
        XCTAssertEqual(try Safetensors(bytes: withMeta).tensors.count, 0)
    }

    func testReadReference() throws {
        let st = try Safetensors(bytes: Self.hex(Self.referenceHex))
        XCTAssertEqual(st.metadata, ["format": "pt", "x": "y"])
        XCTAssertEqual(st.names, ["d", "f", "b.weight", "z", "h", "c", "a.bias", "i16", "i8", "e", "g"])
        XCTAssertEqual(try st.dtype("c"), .bf16)
        XCTAssertEqual(try st.shape("b.weight"), [2, 3])
        XCTAssertEqual(try st.shape("h"), [])
        XCTAssertEqual(try st.floats("b.weight"), [1.5, -2.0, 3.25, 0.1, 1e-8, -0.0])
        XCTAssertEqual(try st.floats("a.bias"), [1.0, -0.5, 65504.0])
        XCTAssertEqual(try st.floats("c"), [1.0, 3.140625, -2.5, Float(bitPattern: 0x714A_0000)])  // 1e30 in bf16
        XCTAssertEqual(try st.floats("f"), [Float(0.1 as Double)])
        XCTAssertEqual(try st.floats("z"), [])
        XCTAssertEqual(try st.int64s("d"), [-1, 9_007_199_254_740_993])
        XCTAssertEqual(try st.int64s("e"), [0, 7, 255])
        XCTAssertEqual(try st.int64s("g"), [1, 0])
        XCTAssertEqual(try st.int64s("h"), [42])
        XCTAssertEqual(try st.int64s("i8"), [-128, 127, -1])
        XCTAssertEqual(try st.int64s("i16"), [-30000, 2])
        XCTAssertEqual(try st.rawBytes("e"), [0, 7, 255])
        XCTAssertEqual(try st.withRawBytes("h") { $0.count }, 4)
        XCTAssertEqual(st.info("b.weight")?.dataOffsets, 24..<48)
        XCTAssertEqual(st.info("b.weight")?.elementCount, 6)
        XCTAssertNil(st.info("nope"))
        XCTAssertThrowsError(try st.floats("nope")) { XCTAssertEqual(($0 as? GFNError)?.status, .invalidArgument) }
        XCTAssertThrowsError(try st.floats("d")) { XCTAssertEqual(($0 as? GFNError)?.status, .unsupported) }
        XCTAssertThrowsError(try st.int64s("b.weight")) { XCTAssertEqual(($0 as? GFNError)?.status, .unsupported) }
    }

    func testFileRoundTripAndAlignment() throws {
        let dir = TestFiles.tempDir("safetensors")
        let path = FileIO.join(dir, "adapter_model.safetensors")
        var rng = SplitMix(seed: 3)
        var tensors: [SafetensorsTensor] = []
        var expected: [String: [Float]] = [:]
        for (k, dtype) in [SafetensorsDType.f32, .f16, .bf16, .f64, .f32, .bf16].enumerated() {
            let shape = [1 + rng.below(5), 1 + rng.below(7)]
            let values = (0..<(shape[0] * shape[1])).map { _ in Float(Int(rng.next() % 257) - 128) / 8 }
            let name = "base_model.model.transformer.h.\(k).attn.c_attn.lora_\(k % 2 == 0 ? "A" : "B").weight"
            tensors.append(SafetensorsTensor(name: name, shape: shape, floats: values, dtype: dtype))
            expected[name] = values  // multiples of 1/8 up to 16: exact in every float type
        }
        tensors.append(SafetensorsTensor(name: "odd", dtype: .u8, shape: [3], bytes: [1, 2, 3]))
        tensors.append(SafetensorsTensor(name: "ids", dtype: .i64, shape: [2], bytes: Self.le([Int64(5), -7])))
        try Safetensors.write(path: path, tensors: tensors, metadata: ["format": "pt"])
        let st = try Safetensors.load(path: path)
        XCTAssertEqual(st.source, path)
        XCTAssertEqual(st.metadata, ["format": "pt"])
        XCTAssertEqual(Set(st.names), Set(tensors.map(\.name)))
        for (name, values) in expected { XCTAssertEqual(try st.floats(name), values, name) }
        XCTAssertEqual(try st.int64s("ids"), [5, -7])
        XCTAssertEqual(try st.rawBytes("odd"), [1, 2, 3])
        // The reference writer's layout aligns every tensor to its element size within the file.
        let file = try FileIO.read(path)
        let n = Int(file[0]) | Int(file[1]) << 8 | Int(file[2]) << 16
        XCTAssertEqual(n % 8, 0)
        for info in st.tensors { XCTAssertEqual((8 + n + info.dataOffsets.lowerBound) % info.dtype.size, 0, info.name) }
        // Re-serializing what was read gives the same bytes.
        let again = try st.tensors.map { SafetensorsTensor(name: $0.name, dtype: $0.dtype, shape: $0.shape, bytes: try st.rawBytes($0.name)) }
        XCTAssertEqual(try Safetensors.serialize(tensors: again, metadata: st.metadata), file)
        XCTAssertFalse(FileIO.exists(path + ".tmp.\(getpid())"))
    }

    func testFloatConversions() throws {
        XCTAssertEqual(Safetensors.bf16Bits(1.0), 0x3F80)
        XCTAssertEqual(Safetensors.bf16Bits(Float(bitPattern: 0x3F80_8000)), 0x3F80)  // tie → even
        XCTAssertEqual(Safetensors.bf16Bits(Float(bitPattern: 0x3F81_8000)), 0x3F82)  // tie → even
        XCTAssertEqual(Safetensors.bf16Bits(Float(bitPattern: 0x3F80_8001)), 0x3F81)
        XCTAssertEqual(Safetensors.bf16Bits(.infinity), 0x7F80)
        XCTAssertEqual(Safetensors.bf16Bits(.nan), 0x7FC0)
        XCTAssertEqual(Safetensors.bf16Bits(Float.greatestFiniteMagnitude), 0x7F80)  // rounds to infinity
        let vals: [Float] = [0, -0.0, 1, 65504, 70000, 1e-8, .infinity, -.infinity]
        let st = try Safetensors(bytes: Safetensors.serialize(tensors: [SafetensorsTensor(name: "h", shape: [vals.count], floats: vals, dtype: .f16)]))
        let back = try st.floats("h")
        XCTAssertEqual(back[0...3], [0, -0.0, 1, 65504])
        XCTAssertEqual(back[4], .infinity)
        XCTAssertEqual(back[5], Float(Float16(1e-8)))
        XCTAssertEqual(back[6...7], [.infinity, -.infinity])
        let nan = try Safetensors(bytes: Safetensors.serialize(tensors: [SafetensorsTensor(name: "n", shape: [1], floats: [.nan], dtype: .bf16)]))
        XCTAssertTrue(try nan.floats("n")[0].isNaN)
    }

    func testWriterRefusesBadInput() {
        func refuses(_ t: [SafetensorsTensor], file: StaticString = #filePath, line: UInt = #line) {
            XCTAssertThrowsError(try Safetensors.serialize(tensors: t), file: file, line: line) {
                XCTAssertEqual(($0 as? GFNError)?.status, .invalidArgument, file: file, line: line)
            }
        }
        refuses([SafetensorsTensor(name: "a", shape: [2], floats: [1])])
        refuses([SafetensorsTensor(name: "a", dtype: .f32, shape: [2], bytes: [1, 2, 3])])
        refuses([SafetensorsTensor(name: "a", shape: [-1], floats: [])])
        refuses([SafetensorsTensor(name: "a", shape: [1 << 40, 1 << 40], floats: [])])
        refuses([SafetensorsTensor(name: "a", shape: [1], floats: [1], dtype: .i32)])
        refuses([SafetensorsTensor(name: "a", shape: [1], floats: [1]), SafetensorsTensor(name: "a", shape: [1], floats: [2])])
        refuses([SafetensorsTensor(name: "__metadata__", shape: [1], floats: [1])])
    }

    // MARK: malformed input

    /// A file image with the given header text (padded to 8) and data bytes.
    static func image(_ header: String, data: [UInt8] = [], pad: Bool = true) -> [UInt8] {
        var h = Array(header.utf8)
        if pad { while h.count % 8 != 0 { h.append(0x20) } }
        return le([UInt64(h.count)]) + h + data
    }

    func assertRefused(_ bytes: [UInt8], _ fragment: String, status: GFNStatus = .format,
                       file: StaticString = #filePath, line: UInt = #line) {
        do {
            let st = try Safetensors(bytes: bytes)
            XCTFail("accepted, tensors: \(st.names)", file: file, line: line)
        } catch {
            XCTAssertEqual(error.status, status, error.message, file: file, line: line)
            XCTAssertTrue(error.message.contains(fragment), "message: \(error.message)", file: file, line: line)
        }
    }

    func testRefusesMalformedHeaders() {
        let f32x2 = #"{"dtype":"F32","shape":[2],"data_offsets":[0,8]}"#
        let eight = [UInt8](repeating: 0, count: 8)
        assertRefused([], "shorter than the 8-byte")
        assertRefused([1, 0, 0], "shorter than the 8-byte")
        assertRefused(Self.le([UInt64(100_000_001)]) + Array("{}".utf8), "exceeds the limit")
        assertRefused(Self.le([UInt64.max]) + Array("{}".utf8), "exceeds the limit")
        assertRefused(Self.le([UInt64(64)]) + Array("{}      ".utf8), "runs past the end")
        assertRefused(Self.le([UInt64(0)]), "too small")
        assertRefused(Self.image("[]"), "does not start with '{'")
        assertRefused(Self.image(" {}"), "does not start with '{'")
        assertRefused(Self.image("{\"a\":"), "invalid JSON")
        assertRefused(Self.le([UInt64(8)]) + [0x7B, 0x7D, 0, 0, 0, 0, 0, 0], "invalid JSON")  // NUL padding
        assertRefused(Self.le([UInt64(4)]) + [0x7B, 0x22, 0xFF, 0x22], "invalid")
        assertRefused(Self.image("{\"a\":[[[[[[[[[[[[1]]]]]]]]]]]]}"), "nesting")
        assertRefused(Self.image(#"{"a":1}"#), "not an object")
        assertRefused(Self.image(#"{"a":{"shape":[2],"data_offsets":[0,8]}}"#, data: eight), "no string \"dtype\"")
        assertRefused(Self.image(#"{"a":{"dtype":32,"shape":[2],"data_offsets":[0,8]}}"#, data: eight), "no string \"dtype\"")
        assertRefused(Self.image(#"{"a":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}}"#, data: eight), "unknown dtype")
        assertRefused(Self.image(#"{"a":{"dtype":"F4","shape":[2],"data_offsets":[0,1]}}"#, data: [0]), "sub-byte", status: .unsupported)
        assertRefused(Self.image(#"{"a":{"dtype":"F32","data_offsets":[0,8]}}"#, data: eight), "no \"shape\"")
        assertRefused(Self.image(#"{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}"#, data: eight), "invalid dimension")
        assertRefused(Self.image(#"{"a":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}}"#, data: eight), "invalid dimension")
        assertRefused(Self.image(#"{"a":{"dtype":"F32","shape":["2"],"data_offsets":[0,8]}}"#, data: eight), "invalid dimension")
        assertRefused(Self.image(#"{"a":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,8]}}"#, data: eight), "overflows")
        assertRefused(Self.image(#"{"a":{"dtype":"F64","shape":[2305843009213693952],"data_offsets":[0,8]}}"#, data: eight), "overflows")
        assertRefused(Self.image(#"{"a":{"dtype":"F32","shape":[99999999999999999999],"data_offsets":[0,8]}}"#, data: eight), "invalid dimension")
        assertRefused(Self.image(#"{"a":{"dtype":"F32","shape":[2]}}"#, data: eight), "data_offsets")
        assertRefused(Self.image(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0]}}"#, data: eight), "data_offsets")
        assertRefused(Self.image(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8,9]}}"#, data: eight), "data_offsets")
        assertRefused(Self.image(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}}"#, data: eight), "data_offsets")
        assertRefused(Self.image(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}"#, data: eight), "begin > end")
        assertRefused(Self.image(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,12]}}"#, data: eight + [0, 0, 0, 0]), "needs 8 bytes")
        assertRefused(Self.image(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, data: [0, 0, 0, 0]), "file holds 4")
        assertRefused(Self.image(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, data: eight + [0]), "cover only 8")
        assertRefused(Self.image(#"{"a":\#(f32x2),"b":\#(f32x2)}"#, data: eight + eight), "overlaps")
        assertRefused(Self.image(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}"#, data: eight + eight), "gap")
        assertRefused(Self.image(#"{"a":\#(f32x2),"a":\#(f32x2)}"#, data: eight), "duplicate key")
        assertRefused(Self.image(#"{"__metadata__":[],"a":\#(f32x2)}"#, data: eight), "__metadata__ is an array")
        assertRefused(Self.image(#"{"__metadata__":{"k":1},"a":\#(f32x2)}"#, data: eight), "not a string")
        assertRefused(Self.image(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,18446744073709551615]}}"#, data: eight), "data_offsets")
    }

    func testAcceptsValidVariants() throws {
        // Unpadded header, any key order, trailing whitespace, unknown fields in an entry, empty and scalar tensors.
        let header = #"{ "b" : {"data_offsets":[4,4],"shape":[0],"dtype":"F16"}, "a": {"shape":[],"dtype":"I32","data_offsets":[0,4],"extra":true} } "#
        let st = try Safetensors(bytes: Self.image(header, data: Self.le([Int32(-9)]), pad: false))
        XCTAssertEqual(st.names, ["a", "b"])
        XCTAssertEqual(try st.int64s("a"), [-9])
        XCTAssertEqual(try st.floats("b"), [])
        XCTAssertEqual(st.metadata, [:])
    }

    func testMutatedFilesNeverTrap() throws {
        let valid = Self.hex(Self.referenceHex)
        var rng = SplitMix(seed: 99)
        var accepted = 0
        for round in 0..<5000 {
            var b = valid
            switch round % 4 {
            case 0: b[rng.below(b.count)] = UInt8(truncatingIfNeeded: rng.next())
            case 1: b.removeLast(1 + rng.below(b.count))
            case 2:
                let alphabet = Array("{}[],:\"0123456789-e ".utf8)
                for _ in 0..<4 { b[8 + rng.below(b.count - 8)] = alphabet[rng.below(alphabet.count)] }
            default: b[rng.below(8)] = UInt8(truncatingIfNeeded: rng.next())
            }
            guard let st = try? Safetensors(bytes: b) else { continue }
            accepted += 1
            for info in st.tensors {
                if info.dtype.isFloatingPoint { _ = try st.floats(info.name) }
                if info.dtype.isInteger { _ = try? st.int64s(info.name) }
                _ = try st.rawBytes(info.name)
            }
        }
        XCTAssertGreaterThan(accepted, 0)  // data-byte mutations keep the file valid
    }

    func testMissingFile() {
        XCTAssertThrowsError(try Safetensors.load(path: "/nonexistent/x.safetensors")) {
            XCTAssertEqual(($0 as? GFNError)?.status, .io)
        }
        let dir = TestFiles.tempDir("safetensors-empty")
        let path = FileIO.join(dir, "empty.safetensors")
        XCTAssertNoThrow(try FileIO.writeAtomically(path, []))
        XCTAssertThrowsError(try Safetensors.load(path: path)) { XCTAssertEqual(($0 as? GFNError)?.status, .format) }
    }
}
