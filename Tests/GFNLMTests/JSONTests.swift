import XCTest
@testable import GFNLM

final class JSONTests: XCTestCase {
    func parse(_ s: String) throws -> JSONValue { try JSONValue.parse(s) }

    /// Asserts that parsing fails with `.format`, and that the message contains `fragment` when given.
    func assertRejects(_ bytes: [UInt8], _ fragment: String? = nil, file: StaticString = #filePath, line: UInt = #line) {
        do {
            let v = try JSONValue.parse(bytes)
            XCTFail("accepted \(bytes.prefix(40)) as \(v)", file: file, line: line)
        } catch {
            XCTAssertEqual(error.status, .format, file: file, line: line)
            if let fragment {
                XCTAssertTrue(error.message.contains(fragment), "message: \(error.message)", file: file, line: line)
            }
        }
    }

    func assertRejects(_ s: String, _ fragment: String? = nil, file: StaticString = #filePath, line: UInt = #line) {
        assertRejects(Array(s.utf8), fragment, file: file, line: line)
    }

    func testScalars() throws {
        XCTAssertEqual(try parse("null"), .null)
        XCTAssertEqual(try parse(" true "), .bool(true))
        XCTAssertEqual(try parse("false"), .bool(false))
        XCTAssertEqual(try parse("0"), .int(0))
        XCTAssertEqual(try parse("-0").int64, 0)
        XCTAssertEqual(try parse("42"), .int(42))
        XCTAssertEqual(try parse("-17"), .int(-17))
        XCTAssertEqual(try parse("9007199254740993"), .int(9_007_199_254_740_993))
        XCTAssertEqual(try parse("9223372036854775807"), .int(Int64.max))
        XCTAssertEqual(try parse("-9223372036854775808"), .int(Int64.min))
        XCTAssertEqual(try parse("9223372036854775808"), .double(9223372036854775808.0))
        XCTAssertEqual(try parse("-9223372036854775809"), .double(-9223372036854775809.0))
        XCTAssertEqual(try parse("123456789012345678901234567890"), .double(1.2345678901234568e29))
        XCTAssertEqual(try parse("1.5"), .double(1.5))
        XCTAssertEqual(try parse("1.0"), .double(1.0))
        XCTAssertEqual(try parse("-2.5e-3"), .double(-0.0025))
        XCTAssertEqual(try parse("1E2"), .double(100))
        XCTAssertEqual(try parse("1e+2"), .double(100))
        XCTAssertEqual(try parse("0.1").double, 0.1)
        XCTAssertEqual(try parse("5e-324").double, Double(bitPattern: 1))
        XCTAssertEqual(try parse("1e-400").double, 0)
        XCTAssertEqual(try parse("\"abc\""), .string("abc"))
        XCTAssertEqual(try parse("[]"), .array([]))
        XCTAssertEqual(try parse("{}"), .object(JSONObject()))
        // A UTF-8 byte-order mark is ignored.
        XCTAssertEqual(try JSONValue.parse([0xEF, 0xBB, 0xBF] + Array("1".utf8)), .int(1))
    }

    func testAccessors() throws {
        let v = try parse(#"{"a": 1, "b": [true, null, 2.5, "x"], "c": {"d": -3}, "e": 4.0}"#)
        XCTAssertEqual(v["a"]?.int, 1)
        XCTAssertEqual(v["a"]?.double, 1.0)
        XCTAssertEqual(v["b"]?[0]?.bool, true)
        XCTAssertEqual(v["b"]?[1]?.isNull, true)
        XCTAssertEqual(v["b"]?[2]?.double, 2.5)
        XCTAssertNil(v["b"]?[2]?.int)
        XCTAssertEqual(v["b"]?[3]?.string, "x")
        XCTAssertNil(v["b"]?[4])
        XCTAssertNil(v["b"]?[-1])
        XCTAssertEqual(v["c"]?["d"]?.int64, -3)
        XCTAssertEqual(v["e"]?.int, 4)
        XCTAssertNil(v["missing"])
        XCTAssertNil(v["a"]?["x"])
        XCTAssertEqual(v.object?.keys, ["a", "b", "c", "e"])
        XCTAssertEqual(v["b"]?.array?.count, 4)
        XCTAssertEqual(v["a"]?.kindName, "a number")
    }

    func testObjectOrderAndMutation() throws {
        let v = try parse(#"{"z": 1, "a": 2, "m": 3}"#)
        guard var o = v.object else { return XCTFail("not an object") }
        XCTAssertEqual(o.keys, ["z", "a", "m"])
        XCTAssertEqual(o.map { $0.key }, ["z", "a", "m"])
        o["a"] = nil
        XCTAssertEqual(o.keys, ["z", "m"])
        XCTAssertEqual(o["m"], .int(3))
        o["new"] = "x"
        o["z"] = 10
        XCTAssertEqual(o.keys, ["z", "m", "new"])
        XCTAssertEqual(o["z"], .int(10))
        // Equality ignores key order.
        XCTAssertEqual(try parse(#"{"a":1,"b":2}"#), try parse(#"{"b":2,"a":1}"#))
        XCTAssertNotEqual(try parse(#"{"a":1,"b":2}"#), try parse(#"{"a":1}"#))
    }

    func testStringsAndEscapes() throws {
        XCTAssertEqual(try parse(#""\"\\\/\b\f\n\r\t""#).string, "\"\\/\u{8}\u{c}\n\r\t")
        XCTAssertEqual(try parse(#""\u0041\u00e9\u20AC""#).string, "Aé€")
        XCTAssertEqual(try parse(#""\uD83D\uDE00""#).string, "😀")
        XCTAssertEqual(try parse(#""\ud83d\ude00x""#).string, "😀x")
        XCTAssertEqual(try parse(#""\u0000""#).string, "\u{0}")
        XCTAssertEqual(try parse("\"é😀中\"").string, "é😀中")
        XCTAssertEqual(try parse("\"é\\n😀\"").string, "é\n😀")
        XCTAssertEqual(try parse(#""\u0120the""#).string, "Ġthe")
    }

    func testRejectsBadStrings() {
        assertRejects(#""\ud83d""#, "lone high surrogate")
        assertRejects(#""\ud83dx""#, "lone high surrogate")
        assertRejects(#""\ud83d\u0041""#, "not a low surrogate")
        assertRejects(#""\ude00""#, "lone low surrogate")
        assertRejects(#""\x41""#, "invalid escape")
        assertRejects(#""\u12""#, "\\u escape")
        assertRejects(#""\u12G4""#, "invalid hex digit")
        assertRejects(#""\"#, "escape")
        assertRejects(#""abc"#, "unterminated string")
        assertRejects("\"a\nb\"", "control character")
        assertRejects("\"a\tb\"", "control character")
        assertRejects([0x22, 0xC0, 0x80, 0x22], "invalid UTF-8")           // overlong NUL
        assertRejects([0x22, 0xE0, 0x80, 0xAF, 0x22], "invalid UTF-8")     // overlong '/'
        assertRejects([0x22, 0xED, 0xA0, 0x80, 0x22], "invalid UTF-8")     // encoded surrogate
        assertRejects([0x22, 0xF4, 0x90, 0x80, 0x80, 0x22], "invalid UTF-8") // > U+10FFFF
        assertRejects([0x22, 0xF5, 0x80, 0x80, 0x80, 0x22], "invalid UTF-8")
        assertRejects([0x22, 0xFF, 0x22], "invalid UTF-8")
        assertRejects([0x22, 0x80, 0x22], "invalid UTF-8")                 // lone continuation
        assertRejects([0x22, 0xE2, 0x82, 0x22], "invalid UTF-8")           // truncated
        assertRejects([0x22, 0xE2, 0x82], "invalid UTF-8")
        assertRejects([0x22, 0x5C, 0x6E, 0xC3, 0x22], "invalid UTF-8")     // after an escape (slow path)
    }

    func testRejectsBadSyntax() {
        for bad in ["", " ", "nul", "nulls", "True", "tru", "[1,]", "[,1]", "[1 2]", "{\"a\":1,}", "{\"a\" 1}", "{a:1}",
                    "{\"a\":}", "{1:2}", "[", "{", "]", "}", "01", "-", "-01", "1.", ".5", "+1", "1e", "1e+", "0x10",
                    "NaN", "Infinity", "-Infinity", "1 2", "[1]]", "{}{}", "\"a\"\"b\"", "[1,2", "{\"a\":1",
                    "\u{0}", "[\u{c}]", "'a'", "//c\n1", "1e400", "-1e400"] {
            assertRejects(bad)
        }
        assertRejects("1e400", "out of the range")
        assertRejects(#"{"a":1,"a":2}"#, "duplicate key \"a\"")
    }

    func testErrorPositions() {
        do {
            _ = try JSONValue.parse("{\n  \"a\": 1,\n  \"b\": tru\n}")
            XCTFail("accepted")
        } catch {
            XCTAssertEqual(error.status, .format)
            XCTAssertTrue(error.message.contains("byte 19"), error.message)
            XCTAssertTrue(error.message.contains("line 3, column 8"), error.message)
        }
    }

    func testDepthLimit() throws {
        let ok = String(repeating: "[", count: 512) + String(repeating: "]", count: 512)
        XCTAssertNoThrow(try parse(ok))
        let deep = String(repeating: "[", count: 513) + String(repeating: "]", count: 513)
        assertRejects(deep, "nesting deeper than 512")
        XCTAssertNoThrow(try JSONValue.parse(deep, maxDepth: 600))
        // Very deep input is refused quickly, without exhausting the stack.
        assertRejects(String(repeating: "[", count: 1_000_000), "nesting")
        assertRejects(String(repeating: "{\"a\":", count: 100_000), "nesting")
        assertRejects(String(repeating: "[", count: 100), "end of input")
    }

    func testRandomBytesNeverTrap() {
        var rng = SplitMix(seed: 7)
        let alphabet = Array("{}[]\",:\\u0123456789.eE+-truefalsnl \n\t".utf8) + [0x00, 0x80, 0xC3, 0xA9, 0xED, 0xF0, 0xFF]
        for _ in 0..<20_000 {
            let n = Int(rng.next() % 24)
            var bytes: [UInt8] = []
            for _ in 0..<n { bytes.append(alphabet[Int(rng.next() % UInt64(alphabet.count))]) }
            if let v = try? JSONValue.parse(bytes) {
                // Whatever parses must re-serialize to something that parses to the same value.
                XCTAssertEqual(try JSONValue.parse(v.serializedBytes()), v)
            }
        }
    }

    func testDoublesPrintLikePythonRepr() throws {
        let cases: [(UInt64, String)] = [
        (0x0000000000000000, "0.0"),
        (0x8000000000000000, "-0.0"),
        (0x3ff0000000000000, "1.0"),
        (0xbff0000000000000, "-1.0"),
        (0x3fb999999999999a, "0.1"),
        (0x3fe0000000000000, "0.5"),
        (0x4059000000000000, "100.0"),
        (0x430c6bf526340000, "1000000000000000.0"),
        (0x4341c37937e08000, "1e+16"),
        (0x4376345785d8a000, "1e+17"),
        (0x4340000000000000, "9007199254740992.0"),
        (0x437b69b4ba630f35, "1.2345678901234568e+17"),
        (0x3f1a36e2eb1c432d, "0.0001"),
        (0x3ee4f8b588e368f1, "1e-05"),
        (0x3f202e4b6ce5dc68, "0.00012345"),
        (0x3e8421f5f40d8376, "1.5e-07"),
        (0x0000000000000001, "5e-324"),
        (0x0010000000000000, "2.2250738585072014e-308"),
        (0x7fefffffffffffff, "1.7976931348623157e+308"),
        (0x400921fb54442d18, "3.141592653589793"),
        (0x43b0000000000000, "1.152921504606847e+18"),
        (0x4480f0cf064dd592, "1e+22"),
        (0x444b1ae4d6e2ef50, "1e+21"),
        (0x01a56e1fc2f8f359, "1e-300"),
        (0x3fd3333333333333, "0.3"),
        (0x3fe5555555555555, "0.6666666666666666"),
        (0x54b249ad2594c37d, "1e+100"),
        (0x40c81cd6c8b43958, "12345.678"),
        (0xbdf12e0be826d695, "-2.5e-10"),
        (0x4011666666666666, "4.35"),
        (0x3f50624dd2f1a9fc, "0.001"),
        (0x43118b54f22aeb03, "1234567890123456.8"),
        (0x4341c37937e07fff, "9999999999999998.0"),
        (0x91b7584a2265b1f5, "-2.522753946247637e-223"),
        (0xcd613e30d8f16adf, "-5.674664918136216e+64"),
        (0x1027c4d1c386bbc4, "7.654927133881691e-231"),
        (0x1e2feb89414c343c, "2.7715077941825975e-163"),
        (0xc2ce6f447ed4d57b, "-66926478731690.96"),
        (0x78e510617311d8a3, "2.2790121708605243e+274"),
        (0x612e7696a6cecc1b, "1.3383932992236106e+160"),
        (0x35bf992dc9e9c616, "8.445496795513092e-50"),
        (0x7ce42c8218072e8c, "4.026380313612261e+293"),
        (0xe4b06ce60741c7a8, "-1.039999246087972e+177"),
        (0x63ca828dd5f4b3b2, "5.122439992692798e+172"),
        (0x9b810e766ec9d286, "-3.367304008780077e-176"),
        (0xc4647159c324c985, "-3.0168212434893705e+21"),
        (0xb2221a58008a05a6, "-3.3573703852372156e-67"),
        (0x442e3d437204e52d, "2.7890840981819507e+20"),
        (0xcd447e35b8b6d8fe, "-1.6860668391509668e+64"),
        (0x9755d4c13a902931, "-2.9205048131065683e-196"),
        (0x1a2b8f1ff1fd42a2, "1.2971714304409807e-182"),
        (0x51431193e6c3f339, "2.8940701966505206e+83"),
        (0x05b6e6e307d4bedc, "3.942716995897388e-281"),
        (0xa648a7dd06839eb9, "-2.9138649815953417e-124"),
        (0x025b413f8a9a021e, "2.60464476415712e-297"),
        (0xe1988ad9f06c144a, "-1.380176098350245e+162"),
        (0xafbd67f9619699cf, "-9.920174193947555e-79"),
        (0xf8130c4237730edf, "-2.5157234196648135e+270"),
        (0xb9d179e06c0fd4f5, "-3.44654920223904e-30"),
        (0x8712b8bc076f3787, "-1.3518464599291115e-274"),
        (0xc381e88f38c0c8fd, "-1.6130484589462314e+17"),
        (0xf06d3fef701966a0, "-3.632860948069635e+233"),
        (0x8d88348a7eed8d14, "-1.772486265902276e-243"),
        (0x587fd2803bab6c39, "2.0061779959619276e+118"),
        (0xad45f23d3b1a11df, "-1.3467022099658464e-90"),
        (0xc2cd789a380208a9, "-64807641285649.32"),
        (0xf3c64af775a89294, "-4.987831702955333e+249"),
        (0xed2f89d94a2f20aa, "-8.697762175904393e+217"),
        (0x6a8ac4ba05805975, "1.6785354100381097e+205"),
        (0xea90a8f0d66b829e, "-2.089344716785902e+205"),
        (0xec148cb48e73ca47, "-4.32375387638952e+212"),
        (0x19999e3fa46d6753, "2.3551067095935005e-185"),
        (0xa11d459a2f978d87, "-3.576949707084736e-149"),
        (0x408ec8b1d0f7472a, "985.0868243521302"),
        (0x40867f24fb60c7e0, "719.8930575905797"),
        (0xc087b1c2b981b4e9, "-758.2200803883871"),
        (0xc074e9c10aa1b2ce, "-334.60962927974185"),
        (0x407baf8044550250, "442.96881516653684"),
        (0x407a6622fa3332e0, "422.38353939055924"),
        (0x408b470ca4be6ba8, "872.8811735989193"),
        (0xc0637926e9a24318, "-155.78600007716955"),
        (0x4084a092331c5ec0, "660.0713865486541"),
        (0x407549c73337661c, "340.611132828142"),
        (0xc0789435288f5cd0, "-393.26297813416477"),
        (0x4065e528a6ab9c70, "175.16121228711881"),
        (0x4087e7a9fcc6b95e, "764.9580016637153"),
        (0x4085a328a039d3b2, "692.3948368566255"),
        (0x402522a1dcad4340, "10.567641159200889"),
        (0x40664024feaa4db8, "178.00451596510334"),
        (0xc08d1796331f8bcb, "-930.9483396973168"),
        (0xc0801429118089e8, "-514.5200529138647"),
        (0x40829677cc489380, "594.8084951086057"),
        (0xc0656be76f7a0d48, "-171.3720013984514"),
        (0x4066ad26e978d4fe, "181.411"),
        (0x40780f4fdf3b645a, "384.957"),
        (0x4081fba7ef9db22d, "575.457"),
        (0x408cece353f7ced9, "925.611"),
        (0x408709872b020c4a, "737.191"),
        (0x40896c3126e978d5, "813.524"),
        (0x408619fdf3b645a2, "707.249"),
        (0x408830999999999a, "774.075"),
        (0x40788e76c8b43958, "392.904"),
        (0x4056aab020c49ba6, "90.667"),
        ]
        for (bits, expected) in cases {
            let d = Double(bitPattern: bits)
            XCTAssertEqual(JSONWriter.formatDouble(d), expected)
            XCTAssertEqual(JSONValue.double(d).serialized(), expected)
            XCTAssertEqual(try parse(expected).double?.bitPattern, bits, expected)
        }
        XCTAssertEqual(JSONValue.float(0.05).serialized(), "0.05")
        XCTAssertEqual(JSONValue.double(Double(Float(0.05))).serialized(), "0.05000000074505806")
        XCTAssertEqual(JSONValue.float(1e-5).serialized(), "1e-05")
        XCTAssertEqual(JSONValue.float(16).serialized(), "16.0")
        XCTAssertEqual(JSONValue.double(.nan).serialized(), "null")
        XCTAssertEqual(JSONValue.double(-.infinity).serialized(), "null")
    }

    func testDoublesRoundTrip() throws {
        var rng = SplitMix(seed: 11)
        for _ in 0..<20_000 {
            let d = Double(bitPattern: rng.next())
            guard d.isFinite else { continue }
            let text = JSONValue.double(d).serialized()
            XCTAssertEqual(try parse(text).double?.bitPattern, d.bitPattern, text)
        }
        for k in -30...30 {
            let d = 1.0 * pow10(k)
            XCTAssertEqual(try parse(JSONValue.double(d).serialized()).double, d)
        }
    }

    func pow10(_ k: Int) -> Double {
        var r = 1.0
        for _ in 0..<abs(k) { r *= 10 }
        return k < 0 ? 1 / r : r
    }

    static let sample: JSONValue = [
        "r": 8, "lora_alpha": 16, "target_modules": ["c_attn"], "peft_type": "LORA", "lora_dropout": 0.0,
        "nested": ["b": [], "a": [:], "z": [1, 2.5, nil, true, false]],
        "uni": "é😀\n\"\\\u{1}\u{7f}/", "Zed": 1e-05, "é": 1, "z": -3,
    ]

    func testPythonPrettyMatchesJsonDumps() {
        // python3: json.dumps(d, indent=2, sort_keys=True)
        let expected = "{\n  \"Zed\": 1e-05,\n  \"lora_alpha\": 16,\n  \"lora_dropout\": 0.0,\n  \"nested\": {\n    \"a\": {},\n    \"b\": [],\n    \"z\": [\n      1,\n      2.5,\n      null,\n      true,\n      false\n    ]\n  },\n  \"peft_type\": \"LORA\",\n  \"r\": 8,\n  \"target_modules\": [\n    \"c_attn\"\n  ],\n  \"uni\": \"\\u00e9\\ud83d\\ude00\\n\\\"\\\\\\u0001\\u007f/\",\n  \"z\": -3,\n  \"\\u00e9\": 1\n}"
        XCTAssertEqual(Self.sample.serialized(.pythonPretty), expected)
    }

    func testCompactMatchesPythonSeparators() throws {
        // python3: json.dumps(d, separators=(",", ":"), ensure_ascii=False)
        let expected = "{\"r\":8,\"lora_alpha\":16,\"target_modules\":[\"c_attn\"],\"peft_type\":\"LORA\",\"lora_dropout\":0.0,\"nested\":{\"b\":[],\"a\":{},\"z\":[1,2.5,null,true,false]},\"uni\":\"é😀\\n\\\"\\\\\\u0001\u{7f}/\",\"Zed\":1e-05,\"é\":1,\"z\":-3}"
        XCTAssertEqual(Self.sample.serialized(), expected)
        XCTAssertEqual(try parse(expected), Self.sample)
        XCTAssertEqual(try parse(Self.sample.serialized(.pythonPretty)), Self.sample)
        XCTAssertEqual(try parse(Self.sample.serialized(.pythonPretty)).object?.keys.first, "Zed")
    }

    func testGPT2VocabIfAvailable() throws {
        guard let path = TestFiles.vocabJSON else { throw XCTSkip("vocab.json fixture not present") }
        let v = try JSONValue.parse(contentsOf: path)
        guard let o = v.object else { return XCTFail("vocab is not an object") }
        XCTAssertEqual(o.count, 50257)
        XCTAssertEqual(o["Ġthe"], .int(262))
        XCTAssertEqual(o["<|endoftext|>"], .int(50256))
        XCTAssertEqual(o.keys.first, "!")
        // Serialized compactly and re-parsed, the vocabulary is unchanged.
        XCTAssertEqual(try JSONValue.parse(v.serializedBytes()), v)
    }
}

/// Small deterministic PRNG for tests.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func below(_ n: Int) -> Int { n <= 0 ? 0 : Int(next() % UInt64(n)) }
}

/// Locations of shared test inputs.
enum TestFiles {
    /// Tests/Fixtures, found from this source file's location.
    static var fixtures: String {
        var dir = FileIO.dirname(of: #filePath)  // Tests/GFNLMTests
        dir = FileIO.dirname(of: dir)           // Tests
        return FileIO.join(dir, "Fixtures")
    }

    static var tokenizerDir: String { FileIO.join(fixtures, "tokenizer") }

    static var vocabJSON: String? {
        let p = FileIO.join(tokenizerDir, "vocab.json")
        return FileIO.exists(p) ? p : nil
    }

    static func tempDir(_ name: String) -> String {
        let dir = "/tmp/gfnlm-tests-\(getpid())/\(name)"
        try? FileIO.makeDirectories(dir)
        return dir
    }
}

extension JSONTests {
    /// The deepest accepted document parses (and is written back) on a thread with a small (256 KiB) stack.
    func testDepthLimitFitsSmallStacks() throws {
        final class Box: @unchecked Sendable { var ok = false }
        let box = Box()
        var attr = pthread_attr_t()
        pthread_attr_init(&attr)
        pthread_attr_setstacksize(&attr, 256 * 1024)
        var th = pthread_t()
        let arg = Unmanaged.passRetained(box).toOpaque()
        let rc = pthread_create(&th, &attr, { p in
            guard let p else { return nil }
            let b = Unmanaged<Box>.fromOpaque(p).takeRetainedValue()
            let deep = String(repeating: "[{\"a\":", count: 256) + "1" + String(repeating: "}]", count: 256)
            guard let v = try? JSONValue.parse(deep) else { return nil }
            // Writing, comparing and freeing such a value fit as well.
            b.ok = v.serialized() == deep && (try? JSONValue.parse(v.serializedBytes(.pythonPretty))) == v
            return nil
        }, arg)
        XCTAssertEqual(rc, 0)
        pthread_join(th, nil)
        XCTAssertTrue(box.ok)
    }
}
