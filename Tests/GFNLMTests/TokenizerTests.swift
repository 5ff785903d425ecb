import XCTest
import Synchronization
@testable import GFNLM

final class TokenizerTests: XCTestCase {
    struct Case {
        let text: String
        let ids: [Int32]
        let idsNoSpecial: [Int32]
    }

    static func cases(_ json: JSONValue) throws -> [Case] {
        guard let arr = json.array else { throw GFNError(.format, "conformance is not an array") }
        return arr.compactMap { c in
            guard let t = c["text"]?.string, let a = c["ids"]?.array, let b = c["ids_no_special"]?.array else { return nil }
            return Case(text: t, ids: a.compactMap { $0.int.map(Int32.init) }, idsNoSpecial: b.compactMap { $0.int.map(Int32.init) })
        }
    }

    static let dir = TestFiles.tokenizerDir

    static func fixture(_ name: String) throws -> String {
        let p = FileIO.join(dir, name)
        guard FileIO.exists(p) else { throw XCTSkip("fixture \(name) not present") }
        return p
    }

    /// A shared tokenizer (loading takes a moment in debug builds).
    static let shared: Result<Tokenizer, GFNError> = Result { () throws(GFNError) -> Tokenizer in
        try Tokenizer.load(path: FileIO.join(dir, "tokenizer.json"))
    }

    func tokenizer() throws -> Tokenizer {
        _ = try Self.fixture("tokenizer.json")
        return try Self.shared.get()
    }

    /// Every loading form: the directory, both tokenizer.json flavours, vocab.json, merges.txt, a directory with
    /// only vocab.json + merges.txt.
    func allForms() throws -> [(String, Tokenizer)] {
        let vocab = try Self.fixture("vocab.json"), merges = try Self.fixture("merges.txt")
        let only = TestFiles.tempDir("tok-vm")
        try FileIO.writeAtomically(FileIO.join(only, "vocab.json"), FileIO.read(vocab))
        try FileIO.writeAtomically(FileIO.join(only, "merges.txt"), FileIO.read(merges))
        return [
            ("dir", try Tokenizer.load(path: Self.dir)),
            ("tokenizer.json", try tokenizer()),
            ("tokenizer-strmerges.json", try Tokenizer.load(path: Self.fixture("tokenizer-strmerges.json"))),
            ("vocab.json", try Tokenizer.load(path: vocab)),
            ("merges.txt", try Tokenizer.load(path: merges)),
            ("dir vocab+merges", try Tokenizer.load(path: only)),
        ]
    }

    func testBasics() throws {
        let t = try tokenizer()
        XCTAssertEqual(t.vocabSize, 50257)
        XCTAssertEqual(t.eosId, 50256)
        XCTAssertEqual(t.mergeCount, 50000)
        XCTAssertEqual(t.encode("Hello world"), [15496, 995])
        XCTAssertEqual(t.encode(" Hello  world"), [18435, 220, 995])
        XCTAssertEqual(t.encode("Hello<|endoftext|>World"), [15496, 50256, 10603])
        XCTAssertEqual(t.encode(""), [])
        XCTAssertEqual(t.token(for: 262), "Ġthe")
        XCTAssertEqual(t.token(for: 50256), "<|endoftext|>")
        XCTAssertNil(t.token(for: 50257))
        XCTAssertNil(t.token(for: -1))
        XCTAssertEqual(t.id(for: "Ġthe"), 262)
        XCTAssertEqual(t.id(for: "<|endoftext|>"), 50256)
        XCTAssertNil(t.id(for: " the"))
        XCTAssertEqual(try t.decode([15496, 50256, 10603]), "Hello<|endoftext|>World")
        XCTAssertEqual(t.addedTokens.map(\.content), ["<|endoftext|>"])
        XCTAssertFalse(t.addPrefixSpace)
    }

    func testConformanceAllForms() throws {
        let cases = try Self.cases(JSONValue.parse(contentsOf: Self.fixture("conformance.json")))
        XCTAssertGreaterThan(cases.count, 100)
        for (form, t) in try allForms() {
            var failures = 0
            for c in cases {
                let a = t.encode(c.text), b = t.encode(c.text, allowSpecial: false)
                if a != c.ids || b != c.idsNoSpecial {
                    failures += 1
                    if failures <= 5 { XCTFail("[\(form)] \(c.text.debugDescription): \(a) / \(b), expected \(c.ids) / \(c.idsNoSpecial)") }
                }
                XCTAssertEqual(try t.decode(a), c.text, form)
                XCTAssertEqual(try t.decode(b), c.text, form)
            }
            XCTAssertEqual(failures, 0, form)
        }
    }

    func testExtraConformanceCases() throws {
        // Whitespace and class edge cases (\x1c–\x1f, NEL, U+180E, U+2028/9, U+3000, NBSP, ZWSP, combining marks,
        // Unicode 17 letters, contractions, long words), ids from Hugging Face tokenizers 0.22.2 / transformers 4.57.
        let t = try tokenizer()
        let cases = try Self.cases(JSONValue.parse(Self.extraCases))
        XCTAssertGreaterThan(cases.count, 50)
        for c in cases {
            XCTAssertEqual(t.encode(c.text), c.ids, c.text.debugDescription)
            XCTAssertEqual(t.encode(c.text, allowSpecial: false), c.idsNoSpecial, c.text.debugDescription)
            XCTAssertEqual(try t.decode(c.ids), c.text)
        }
    }

    func testEveryPromptLine() throws {
        // The repository's copy (data/, from the paper's repository).
        let root = FileIO.dirname(of: FileIO.dirname(of: TestFiles.fixtures))
        let promptsPath = FileIO.join(root, "data/openwebtext/prompts.txt")
        guard FileIO.exists(promptsPath) else { throw XCTSkip("prompts.txt not present at \(promptsPath)") }
        let t = try tokenizer()
        let text = try FileIO.readText(promptsPath)
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        if lines.last == "" { lines.removeLast() }
        let expected = try FileIO.readText(Self.fixture("prompts_ids.jsonl")).split(separator: "\n").map { line in
            try JSONValue.parse(String(line)).array?.compactMap { $0.int.map(Int32.init) } ?? []
        }
        XCTAssertEqual(lines.count, expected.count)
        var failures = 0
        for (k, line) in lines.enumerated() where k < expected.count {
            let ids = t.encode(line)
            if ids != expected[k] {
                failures += 1
                if failures <= 5 { XCTFail("line \(k + 1): \(line.debugDescription)\n got \(ids)\n expected \(expected[k])") }
            }
            if k % 10 == 0 { XCTAssertEqual(try t.decode(ids), line) }
        }
        XCTAssertEqual(failures, 0)
    }

    func testRandomRoundTrips() throws {
        let t = try tokenizer()
        var rng = SplitMix(seed: 2024)
        let pools: [[UInt32]] = [
            Array(0x20...0x7E), [0x09, 0x0A, 0x0D, 0x0B, 0x0C, 0x1C, 0x1F, 0x85, 0xA0, 0x2028, 0x3000, 0x200B, 0x180E, 0xFEFF],
            Array(0x00...0x1F) + [0x7F], Array(0xC0...0x17F), Array(0x300...0x36F),  // Latin, combining marks
            Array(0x4E00...0x4E80), Array(0x3040...0x30FF), Array(0xAC00...0xAC40),  // CJK, kana, Hangul
            Array(0x1F600...0x1F64F) + [0x200D, 0xFE0F, 0x1F3FB, 0x1F1EF, 0x1F1F5],  // emoji, ZWJ, VS16, skin, flags
            Array(0x0590...0x05FF) + Array(0x0600...0x06FF), [0x27, 0x73, 0x74, 0x6C, 0x20, 0x20],
            [0x10FFFF, 0xE0001, 0xFFFD, 0xFFFF, 0x1D400, 0x10940, 0xA7CE],
        ]
        for _ in 0..<3000 {
            var s = String.UnicodeScalarView()
            let n = rng.below(40)
            for _ in 0..<n {
                let pool = pools[rng.below(pools.count)]
                if let u = Unicode.Scalar(pool[rng.below(pool.count)]) { s.append(u) }
            }
            let text = String(s)
            let ids = t.encode(text)
            XCTAssertEqual(try t.decode(ids), text, text.debugDescription)
            XCTAssertEqual(try t.decodeBytes(ids), Array(text.utf8))
            let plain = t.encode(text, allowSpecial: false)
            XCTAssertEqual(try t.decode(plain), text)
        }
        // Random valid UTF-8 assembled from random scalars across the whole range.
        for _ in 0..<1000 {
            var s = String.UnicodeScalarView()
            for _ in 0..<rng.below(30) {
                if let u = Unicode.Scalar(UInt32(rng.below(0x110000))) { s.append(u) }
            }
            let text = String(s)
            XCTAssertEqual(try t.decode(t.encode(text)), text)
        }
    }

    func testDecodeBytesAndInvalidUTF8() throws {
        let t = try tokenizer()
        // "😀" is split over several tokens; decoding a prefix leaves an incomplete sequence.
        let ids = t.encode("😀")
        XCTAssertGreaterThan(ids.count, 1)
        XCTAssertEqual(try t.decodeBytes(ids), [0xF0, 0x9F, 0x98, 0x80])
        XCTAssertEqual(try t.decodeBytes(Array(ids.dropLast())), [0xF0, 0x9F, 0x98])
        XCTAssertEqual(try t.decode(Array(ids.dropLast())), "\u{FFFD}")  // one maximal subpart → one U+FFFD
        // Single byte tokens for arbitrary bytes: 0xFF, 0xC3 + 'A', a lone continuation byte.
        func byteToken(_ b: UInt8) throws -> Int32 {
            try XCTUnwrap(t.id(for: String(decoding: ByteLevel.byteToUTF8[Int(b)], as: UTF8.self)))
        }
        XCTAssertEqual(try byteToken(0xFF), t.id(for: "ÿ"))
        XCTAssertEqual(try byteToken(0x80), t.id(for: "Ģ"))
        let ff = try byteToken(0xFF), c3 = try byteToken(0xC3), x80 = try byteToken(0x80), a = try byteToken(0x41)
        XCTAssertEqual(try t.decodeBytes([ff, c3, a, x80]), [0xFF, 0xC3, 0x41, 0x80])
        XCTAssertEqual(try t.decode([ff, c3, a, x80]), "\u{FFFD}\u{FFFD}A\u{FFFD}")  // as Python's errors="replace"
        // Random byte strings survive decodeBytes exactly; encode(bytes:) repairs them first.
        var rng = SplitMix(seed: 5)
        for _ in 0..<500 {
            let bytes = (0..<rng.below(24)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            let perByte = try bytes.map { b -> Int32 in try XCTUnwrap(t.id(for: String(decoding: ByteLevel.byteToUTF8[Int(b)], as: UTF8.self))) }
            XCTAssertEqual(try t.decodeBytes(perByte), bytes)
            let repaired = String(decoding: bytes, as: UTF8.self)
            XCTAssertEqual(try t.decode(t.encode(bytes: bytes)), repaired)
        }
        // Out of range ids.
        for bad: Int32 in [-1, 50257, Int32.max, Int32.min] {
            XCTAssertThrowsError(try t.decode([15496, bad])) { XCTAssertEqual(($0 as? GFNError)?.status, .outOfRange) }
            XCTAssertThrowsError(try t.decodeBytes([bad])) { XCTAssertEqual(($0 as? GFNError)?.status, .outOfRange) }
        }
    }

    func testLongInputsDoNotHang() throws {
        let t = try tokenizer()
        // A long piece without spaces goes through the heap-based merge; compare with pieces that are short.
        let long = String(repeating: "ab", count: 20_000)
        let ids = t.encode(long)
        XCTAssertEqual(try t.decode(ids), long)
        let aaa = String(repeating: "a", count: 100_000)
        XCTAssertEqual(try t.decode(t.encode(aaa)), aaa)
        let spaces = String(repeating: " ", count: 50_000) + "x"
        XCTAssertEqual(try t.decode(t.encode(spaces)), spaces)
        let mixed = String(repeating: "é😀中'", count: 5_000)
        XCTAssertEqual(try t.decode(t.encode(mixed)), mixed)
    }

    func testShortAndLongMergePathsAgree() throws {
        let t = try tokenizer()
        var rng = SplitMix(seed: 77)
        let alphabet = Array("abcdefghijklmnopqrstuvwxyzeeeetttaaooinnshr".utf8)
        for _ in 0..<300 {
            let n = 2 + rng.below(120)
            let word = (0..<n).map { _ in alphabet[rng.below(alphabet.count)] }
            // Reference: the plain "merge the lowest (rank, position) pair" loop on ids.
            var ids = word.map { t.byteIds[Int($0)] }
            while ids.count > 1 {
                var best = MergeTable.none, bi = -1
                for k in 0..<(ids.count - 1) {
                    let r = t.merges.lookup(ids[k], ids[k + 1])
                    if r < best { best = r; bi = k }
                }
                if bi < 0 { break }
                ids[bi] = Int32(bitPattern: UInt32(truncatingIfNeeded: best))
                ids.remove(at: bi + 1)
            }
            XCTAssertEqual(word.withUnsafeBufferPointer { t.bpe($0) }, ids)
        }
    }

    func testConcurrentEncodingMatchesSerial() throws {
        let t = try tokenizer()
        let cases = try Self.cases(JSONValue.parse(contentsOf: Self.fixture("conformance.json")))
        let texts = cases.map(\.text) + (0..<200).map { "Thread \($0) says: the quick brown fox #\($0 * 7919) 😀" }
        let expected = texts.map { t.encode($0) }
        let mismatches = Atomic<Int>(0)
        DispatchLikeThreads.run(count: 4) { k in
            for round in 0..<5 {
                for (i, text) in texts.enumerated() where (i + k + round) % 2 == 0 {
                    if t.encode(text) != expected[i] { mismatches.add(1, ordering: .relaxed) }
                }
            }
        }
        XCTAssertEqual(mismatches.load(ordering: .relaxed), 0)
    }

    func testAddPrefixSpaceOption() throws {
        let t = try Tokenizer.load(path: Self.fixture("vocab.json"), options: TokenizerOptions(addPrefixSpace: true))
        XCTAssertTrue(t.addPrefixSpace)
        XCTAssertEqual(t.encode("Hello world"), [18435, 995])   // as " Hello world"
        XCTAssertEqual(t.encode(" Hello"), [18435])
        XCTAssertEqual(t.encode("\nHello"), [220, 198, 15496])  // only " " counts, as in Hugging Face
        let noCache = try Tokenizer.load(path: Self.fixture("vocab.json"), options: TokenizerOptions(cacheCapacity: 0))
        XCTAssertEqual(noCache.encode("Hello world Hello world"), try tokenizer().encode("Hello world Hello world"))
    }

    func testAddedTokensWithStripOptions() throws {
        // tokenizer.json plus non-special and special added tokens with lstrip / rstrip, and one that overlaps
        // <|endoftext|>; ids from Hugging Face tokenizers 0.22.2 (encode_special_tokens false / true).
        let spec = try JSONValue.parse(Self.addedTokenCases)
        var json = try JSONValue.parse(contentsOf: Self.fixture("tokenizer.json"))
        guard case .object(var root) = json else { return XCTFail("not an object") }
        root["added_tokens"] = spec["added_tokens"]
        json = .object(root)
        let t = try Tokenizer.fromTokenizerJSON(bytes: json.serializedBytes())
        XCTAssertEqual(t.vocabSize, 50261)
        XCTAssertEqual(t.eosId, 50256)
        XCTAssertEqual(t.token(for: 50259), "[MASK]")
        XCTAssertEqual(t.id(for: "<|extratoken_1|>"), 50257)
        let cases = try Self.cases(XCTUnwrap(spec["cases"]))
        XCTAssertEqual(cases.count, 9)
        for c in cases {
            XCTAssertEqual(t.encode(c.text), c.ids, c.text.debugDescription)
            XCTAssertEqual(t.encode(c.text, allowSpecial: false), c.idsNoSpecial, c.text.debugDescription)
        }
        XCTAssertEqual(try t.decode([80, 50259, 50259, 220, 220, 50257, 50258, 437]), "q[MASK][MASK]  <|extratoken_1|><R>end")
    }

    func testSingleWordAddedTokens() throws {
        // single_word tokens (one normalized, one not); ids from Hugging Face tokenizers 0.22.2.
        let spec = try JSONValue.parse(Self.singleWordCases)
        var json = try JSONValue.parse(contentsOf: Self.fixture("tokenizer.json"))
        guard case .object(var root) = json else { return XCTFail("not an object") }
        root["added_tokens"] = spec["added_tokens"]
        json = .object(root)
        let t = try Tokenizer.fromTokenizerJSON(bytes: json.serializedBytes())
        for c in try Self.cases(XCTUnwrap(spec["cases"])) {
            XCTAssertEqual(t.encode(c.text), c.ids, c.text.debugDescription)
        }
    }

    func testAddPrefixSpaceFromTokenizerJSON() throws {
        // pre_tokenizer.add_prefix_space true; ids from Hugging Face tokenizers 0.22.2.
        var json = try JSONValue.parse(contentsOf: Self.fixture("tokenizer.json"))
        guard case .object(var root) = json, case .object(var pre) = root["pre_tokenizer"] else { return XCTFail("no pre_tokenizer") }
        pre["add_prefix_space"] = true
        root["pre_tokenizer"] = .object(pre)
        json = .object(root)
        let t = try Tokenizer.fromTokenizerJSON(bytes: json.serializedBytes())
        XCTAssertTrue(t.addPrefixSpace)
        for c in try Self.cases(JSONValue.parse(Self.prefixSpaceCases)) {
            XCTAssertEqual(t.encode(c.text), c.ids, c.text.debugDescription)
            XCTAssertEqual(t.encode(c.text, allowSpecial: false), c.idsNoSpecial, c.text.debugDescription)
        }
        let off = try Tokenizer.fromTokenizerJSON(bytes: json.serializedBytes(), options: TokenizerOptions(addPrefixSpace: false))
        XCTAssertEqual(off.encode("Hello world"), [15496, 995])
    }

    // MARK: malformed files

    func assertLoadFails(_ files: [String: String], open: String, _ status: GFNStatus, _ fragment: String,
                         file: StaticString = #filePath, line: UInt = #line) {
        let dir = TestFiles.tempDir("tok-bad-\(line)")
        for name in ["tokenizer.json", "vocab.json", "merges.txt", "other.json"] { unlink(FileIO.join(dir, name)) }
        for (name, content) in files { try? FileIO.writeAtomically(FileIO.join(dir, name), Array(content.utf8)) }
        let path = open.isEmpty ? dir : FileIO.join(dir, open)
        do {
            _ = try Tokenizer.load(path: path)
            XCTFail("loaded", file: file, line: line)
        } catch {
            XCTAssertEqual(error.status, status, error.message, file: file, line: line)
            XCTAssertTrue(error.message.contains(fragment), "message: \(error.message)", file: file, line: line)
        }
    }

    /// A vocabulary of the 256 byte tokens (ids 0–255) plus `extra`, as JSON.
    static func byteVocab(_ extra: [String: Int] = [:]) -> String {
        var o = JSONObject()
        for b in 0..<256 { o[String(decoding: ByteLevel.byteToUTF8[b], as: UTF8.self)] = .int(Int64(b)) }
        for (k, v) in extra { o[k] = .int(Int64(v)) }
        return JSONValue.object(o).serialized()
    }

    static func tokenizerJSON(vocab: String, merges: String, extra: String = "") -> String {
        #"{"version":"1.0","added_tokens":[],"normalizer":null,"pre_tokenizer":{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":true},"model":{"type":"BPE","vocab":\#(vocab),"merges":\#(merges)\#(extra)}}"#
    }

    func testMalformedFiles() throws {
        let v = Self.byteVocab(["ab": 256])
        // Missing and empty files.
        assertLoadFails([:], open: "", .io, "neither tokenizer.json nor vocab.json")
        assertLoadFails([:], open: "nope.json", .io, "does not exist")
        assertLoadFails(["tokenizer.json": ""], open: "", .format, "empty input")
        assertLoadFails(["vocab.json": "", "merges.txt": ""], open: "", .format, "empty input")
        assertLoadFails(["vocab.json": v], open: "vocab.json", .io, "no merges.txt beside it")
        assertLoadFails(["merges.txt": "a b"], open: "merges.txt", .io, "no vocab.json beside it")
        // Bad JSON.
        assertLoadFails(["tokenizer.json": "{\"model\": {"], open: "", .format, "invalid JSON")
        assertLoadFails(["tokenizer.json": "[1,2]"], open: "tokenizer.json", .format, "not an object")
        assertLoadFails(["tokenizer.json": "[1,2]", "merges.txt": ""], open: "", .format, "not an object")
        assertLoadFails(["other.json": "[1,2]"], open: "other.json", .io, "no merges.txt beside it")
        assertLoadFails(["other.json": "[1,2]", "merges.txt": ""], open: "other.json", .format, "not an object of token → id")
        assertLoadFails(["vocab.json": "{\"a\": 1,}", "merges.txt": ""], open: "", .format, "invalid JSON")
        assertLoadFails(["vocab.json": "{\"a\": \"1\"}", "merges.txt": ""], open: "", .format, "not an integer")
        assertLoadFails(["vocab.json": "{\"a\": -1}", "merges.txt": ""], open: "", .format, "not an integer")
        assertLoadFails(["vocab.json": "{\"a\": 1.5}", "merges.txt": ""], open: "", .format, "not an integer")
        assertLoadFails(["vocab.json": "{\"a\": 4294967296}", "merges.txt": ""], open: "", .format, "not an integer")
        assertLoadFails(["vocab.json": "{\"a\": 16000000}", "merges.txt": ""], open: "", .format, "ids must be dense")
        assertLoadFails(["tokenizer.json": #"{"added_tokens":[{"id":9000000,"content":"x"}],"model":{"type":"BPE","vocab":\#(v),"merges":[]}}"#], open: "", .format, "ids must be dense")
        // Missing pieces of tokenizer.json.
        assertLoadFails(["tokenizer.json": #"{"model": 3}"#], open: "", .format, "no \"model\" object")
        assertLoadFails(["tokenizer.json": #"{"model": {"type":"BPE","merges":[]}}"#], open: "", .format, "no model.vocab")
        assertLoadFails(["tokenizer.json": #"{"model": {"type":"BPE","vocab":\#(v)}}"#], open: "", .format, "no model.merges")
        assertLoadFails(["tokenizer.json": #"{"model": {"type":"BPE","vocab":\#(v),"merges":{}}}"#], open: "", .format, "not an array")
        assertLoadFails(["tokenizer.json": #"{"model": {"type":"WordPiece","vocab":{}}}"#], open: "", .unsupported, "not supported")
        assertLoadFails(["tokenizer.json": Self.tokenizerJSON(vocab: v, merges: "[3]")], open: "", .format, "model.merges[0]")
        assertLoadFails(["tokenizer.json": Self.tokenizerJSON(vocab: v, merges: #"[["a"]]"#)], open: "", .format, "model.merges[0]")
        assertLoadFails(["tokenizer.json": Self.tokenizerJSON(vocab: v, merges: #"["a  b"]"#)], open: "", .format, "not two tokens")
        assertLoadFails(["tokenizer.json": Self.tokenizerJSON(vocab: v, merges: #"["ab"]"#)], open: "", .format, "not two tokens")
        assertLoadFails(["tokenizer.json": #"{"normalizer":{"type":"NFC"},"model":{"type":"BPE","vocab":\#(v),"merges":[]}}"#], open: "", .unsupported, "normalizer")
        assertLoadFails(["tokenizer.json": #"{"pre_tokenizer":{"type":"Whitespace"},"model":{"type":"BPE","vocab":\#(v),"merges":[]}}"#], open: "", .unsupported, "pre_tokenizer")
        assertLoadFails(["tokenizer.json": #"{"added_tokens":[{"id":-4,"content":"x"}],"model":{"type":"BPE","vocab":\#(v),"merges":[]}}"#], open: "", .format, "added_tokens[0]")
        assertLoadFails(["tokenizer.json": #"{"added_tokens":[{"id":4}],"model":{"type":"BPE","vocab":\#(v),"merges":[]}}"#], open: "", .format, "added_tokens[0]")
        // Merges naming unknown tokens, or producing a token missing from the vocabulary.
        assertLoadFails(["tokenizer.json": Self.tokenizerJSON(vocab: v, merges: #"["a zz"]"#)], open: "", .format, "\"zz\", which is not in the vocabulary")
        assertLoadFails(["tokenizer.json": Self.tokenizerJSON(vocab: v, merges: #"[["a","c"]]"#)], open: "", .format, "\"ac\", which is not in the vocabulary")
        assertLoadFails(["vocab.json": v, "merges.txt": "#version: 0.2\na b\nq r\n"], open: "", .format, "merges.txt line 3")
        assertLoadFails(["vocab.json": v, "merges.txt": "#version: 0.2\na b c\n"], open: "", .format, "not two tokens")
        assertLoadFails(["vocab.json": v, "merges.txt": "a b\n\u{0}\n"], open: "", .format, "merges.txt line 2")
        // A vocabulary without every byte token.
        assertLoadFails(["vocab.json": #"{"a": 0, "b": 1, "ab": 2}"#, "merges.txt": "a b\n"], open: "", .format, "lacks the byte-level token")
        assertLoadFails(["vocab.json": "{}", "merges.txt": ""], open: "", .format, "lacks the byte-level token")
    }

    func testMinimalTokenizerFiles() throws {
        // A tiny byte-level BPE: the merges "a b" and "ab c" work from every form, including CRLF merges.txt.
        let v = Self.byteVocab(["ab": 256, "abc": 257, "<|endoftext|>": 258])
        let dir = TestFiles.tempDir("tok-mini")
        try FileIO.writeAtomically(FileIO.join(dir, "vocab.json"), Array(v.utf8))
        try FileIO.writeAtomically(FileIO.join(dir, "merges.txt"), Array("#version: 0.2\r\na b\r\nab c\r\n".utf8))
        let t = try Tokenizer.load(path: dir)
        XCTAssertEqual(t.encode("abcab a"), [257, 256, 32, 97])
        XCTAssertEqual(t.eosId, 258)
        XCTAssertEqual(t.encode("x<|endoftext|>"), [120, 258])
        let tj = Self.tokenizerJSON(vocab: v, merges: #"[["a","b"],"ab c"]"#)
        let t2 = try Tokenizer.fromTokenizerJSON(bytes: Array(tj.utf8))
        XCTAssertEqual(t2.encode("abcab a"), [257, 256, 32, 97])
        XCTAssertEqual(t2.eosId, 258)  // not an added token in this file, but in the vocabulary
        XCTAssertEqual(t2.encode("x<|endoftext|>"), [120, 60, 124, 101, 110, 100, 111, 102, 116, 101, 120, 116, 124, 62])
        let t3 = try Tokenizer.fromVocabMerges(vocab: Array(v.utf8), merges: Array("a b\nab c".utf8))
        XCTAssertEqual(t3.encode("abcab a"), [257, 256, 32, 97])
        // ignore_merges: a piece that is a whole vocabulary token is taken as is.
        let v2 = Self.byteVocab(["ab": 256, "xyz": 257])
        let t4 = try Tokenizer.fromTokenizerJSON(bytes: Array(Self.tokenizerJSON(vocab: v2, merges: #"["a b"]"#, extra: #","ignore_merges":true"#).utf8))
        XCTAssertEqual(t4.encode("xyz ab"), [257, 32, 256])
    }

    func testRandomTokenizerFilesNeverTrap() throws {
        var rng = SplitMix(seed: 31)
        let valid = Self.tokenizerJSON(vocab: Self.byteVocab(["ab": 256]), merges: #"["a b"]"#)
        let bytes = Array(valid.utf8)
        var loaded = 0
        for _ in 0..<400 {
            var b = bytes
            for _ in 0..<(1 + rng.below(3)) {
                switch rng.below(3) {
                case 0: b[rng.below(b.count)] = UInt8(truncatingIfNeeded: rng.next())
                case 1: b.removeSubrange(rng.below(b.count)..<b.count)
                default: b.insert(Array("{}[]\",: 0-".utf8)[rng.below(10)], at: rng.below(b.count))
                }
                if b.isEmpty { break }
            }
            if let t = try? Tokenizer.fromTokenizerJSON(bytes: b) {
                loaded += 1
                let text = "ab abc 😀 <|endoftext|>"
                XCTAssertEqual(try t.decode(t.encode(text)), text)
            }
        }
        for _ in 0..<200 {
            let merges = (0..<rng.below(60)).map { _ in UInt8(truncatingIfNeeded: rng.next() % 128) }
            _ = try? Tokenizer.fromVocabMerges(vocab: Array(Self.byteVocab().utf8), merges: merges)
        }
        XCTAssertGreaterThan(loaded, 0)
    }
}

/// Runs `body(k)` on `count` POSIX threads and waits for all of them.
enum DispatchLikeThreads {
    final class Box: @unchecked Sendable {
        let body: @Sendable (Int) -> Void
        let index: Int
        init(_ body: @escaping @Sendable (Int) -> Void, _ index: Int) { self.body = body; self.index = index }
    }

    static func run(count: Int, _ body: @escaping @Sendable (Int) -> Void) {
        var threads: [pthread_t] = []
        for k in 0..<count {
            let box = Unmanaged.passRetained(Box(body, k)).toOpaque()
            var th = pthread_t()
            let rc = pthread_create(&th, nil, { arg in
                guard let arg else { return nil }
                let b = Unmanaged<Box>.fromOpaque(arg).takeRetainedValue()
                b.body(b.index)
                return nil
            }, box)
            if rc == 0 { threads.append(th) } else { body(k) }
        }
        for th in threads { pthread_join(th, nil) }
    }
}

extension TokenizerTests {
    static let extraCases = #"[{"text": "a\u001cb", "ids": [64, 216, 65], "ids_no_special": [64, 216, 65]}, {"text": "x \u001c\u001d\u001e\u001f y", "ids": [87, 220, 216, 217, 218, 219, 331], "ids_no_special": [87, 220, 216, 217, 218, 219, 331]}, {"text": "a\u0085b", "ids": [64, 126, 227, 65], "ids_no_special": [64, 126, 227, 65]}, {"text": "a \u0085 b", "ids": [64, 1587, 227, 275], "ids_no_special": [64, 1587, 227, 275]}, {"text": "a\u180eb", "ids": [64, 157, 254, 236, 65], "ids_no_special": [64, 157, 254, 236, 65]}, {"text": "a\u2028\u2029b", "ids": [64, 447, 101, 447, 102, 65], "ids_no_special": [64, 447, 101, 447, 102, 65]}, {"text": "a\u3000\u3000b", "ids": [64, 5099, 222, 5099, 222, 65], "ids_no_special": [64, 5099, 222, 5099, 222, 65]}, {"text": "a \u00a0 b", "ids": [64, 5624, 275], "ids_no_special": [64, 5624, 275]}, {"text": "a\u00a0\u00a0b", "ids": [64, 1849, 1849, 65], "ids_no_special": [64, 1849, 1849, 65]}, {"text": "a\u200b\u200bb", "ids": [64, 39009, 65], "ids_no_special": [64, 39009, 65]}, {"text": "\u000b\f x", "ids": [199, 200, 2124], "ids_no_special": [199, 200, 2124]}, {"text": "  \u3000x", "ids": [220, 220, 5099, 222, 87], "ids_no_special": [220, 220, 5099, 222, 87]}, {"text": "word\u0301 ca\u0301fe\u0301", "ids": [4775, 136, 223, 1275, 136, 223, 5036, 136, 223], "ids_no_special": [4775, 136, 223, 1275, 136, 223, 5036, 136, 223]}, {"text": "e\u0301\u0301\u0301", "ids": [68, 136, 223, 136, 223, 136, 223], "ids_no_special": [68, 136, 223, 136, 223, 136, 223]}, {"text": "\u0301start", "ids": [136, 223, 9688], "ids_no_special": [136, 223, 9688]}, {"text": "x\ud83d\ude00y \ud83d\ude00\ud83d\ude00 z", "ids": [87, 47249, 222, 88, 30325, 222, 47249, 222, 1976], "ids_no_special": [87, 47249, 222, 88, 30325, 222, 47249, 222, 1976]}, {"text": "\ud802\udd40\ud802\udd41 abc", "ids": [172, 238, 98, 222, 172, 238, 98, 223, 450, 66], "ids_no_special": [172, 238, 98, 222, 172, 238, 98, 223, 450, 66]}, {"text": "a\ua7ceb", "ids": [64, 166, 253, 236, 65], "ids_no_special": [64, 166, 253, 236, 65]}, {"text": "1\ud807\udde0", "ids": [16, 172, 239, 115, 254], "ids_no_special": [16, 172, 239, 115, 254]}, {"text": "x'sy 'Ss ''s '''", "ids": [87, 338, 88, 705, 50, 82, 10148, 82, 705, 7061], "ids_no_special": [87, 338, 88, 705, 50, 82, 10148, 82, 705, 7061]}, {"text": "it''s", "ids": [270, 7061, 82], "ids_no_special": [270, 7061, 82]}, {"text": " 's", "ids": [705, 82], "ids_no_special": [705, 82]}, {"text": "\t's", "ids": [197, 338], "ids_no_special": [197, 338]}, {"text": "  's", "ids": [220, 705, 82], "ids_no_special": [220, 705, 82]}, {"text": "1 2  3   4", "ids": [16, 362, 220, 513, 220, 220, 604], "ids_no_special": [16, 362, 220, 513, 220, 220, 604]}, {"text": "\u0663\u0664\u0665 \u0661\u0662", "ids": [149, 96, 149, 97, 149, 98, 18923, 94, 149, 95], "ids_no_special": [149, 96, 149, 97, 149, 98, 18923, 94, 149, 95]}, {"text": "\u216b \u217b \u00bd", "ids": [158, 227, 104, 2343, 227, 119, 25208], "ids_no_special": [158, 227, 104, 2343, 227, 119, 25208]}, {"text": "a1b2c3", "ids": [64, 16, 65, 17, 66, 18], "ids_no_special": [64, 16, 65, 17, 66, 18]}, {"text": " 1a", "ids": [352, 64], "ids_no_special": [352, 64]}, {"text": "x\n\n\ny", "ids": [87, 628, 198, 88], "ids_no_special": [87, 628, 198, 88]}, {"text": "x \n\n y", "ids": [87, 220, 628, 331], "ids_no_special": [87, 220, 628, 331]}, {"text": "\n ", "ids": [198, 220], "ids_no_special": [198, 220]}, {"text": " \n", "ids": [220, 198], "ids_no_special": [220, 198]}, {"text": "\u00a0x", "ids": [1849, 87], "ids_no_special": [1849, 87]}, {"text": "x\u00a0", "ids": [87, 1849], "ids_no_special": [87, 1849]}, {"text": "\u00a0 x", "ids": [1849, 2124], "ids_no_special": [1849, 2124]}, {"text": "snow\u2603man", "ids": [82, 2197, 24583, 225, 805], "ids_no_special": [82, 2197, 24583, 225, 805]}, {"text": "\ufffd\ufffd", "ids": [6353], "ids_no_special": [6353]}, {"text": "<|endoftext|><|endoftext|> x<|endoftext|>y", "ids": [50256, 50256, 2124, 50256, 88], "ids_no_special": [27, 91, 437, 1659, 5239, 91, 6927, 91, 437, 1659, 5239, 91, 29, 2124, 27, 91, 437, 1659, 5239, 91, 29, 88]}, {"text": " <|endoftext|>", "ids": [220, 50256], "ids_no_special": [1279, 91, 437, 1659, 5239, 91, 29]}, {"text": "\udbff\udfff\udb40\udc01", "ids": [176, 237, 123, 123, 175, 254, 222, 223], "ids_no_special": [176, 237, 123, 123, 175, 254, 222, 223]}, {"text": "\u0000\u0001\u0002\u007f\u0080\u009f", "ids": [188, 189, 190, 221, 126, 222, 126, 253], "ids_no_special": [188, 189, 190, 221, 126, 222, 126, 253]}, {"text": "\u01c5ungla", "ids": [131, 227, 2150, 5031], "ids_no_special": [131, 227, 2150, 5031]}, {"text": "\u01c5", "ids": [131, 227], "ids_no_special": [131, 227]}, {"text": "\u24b6\u24d1", "ids": [158, 240, 114, 158, 241, 239], "ids_no_special": [158, 240, 114, 158, 241, 239]}, {"text": "\ud835\udc00\ud835\udc01 \ud835\udfce\ud835\udfcf", "ids": [47728, 238, 222, 47728, 238, 223, 220, 47728, 253, 236, 47728, 253, 237], "ids_no_special": [47728, 238, 222, 47728, 238, 223, 220, 47728, 253, 236, 47728, 253, 237]}, {"text": "\u00aa\u00ba", "ids": [126, 103, 36165], "ids_no_special": [126, 103, 36165]}, {"text": "\u02b0\u02b2", "ids": [134, 108, 134, 110], "ids_no_special": [134, 108, 134, 110]}, {"text": "\u3005\u3006\u3007", "ids": [5099, 227, 5099, 228, 5099, 229], "ids_no_special": [5099, 227, 5099, 228, 5099, 229]}, {"text": "\u30fc", "ids": [6312], "ids_no_special": [6312]}, {"text": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa abababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababab", "ids": [24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 450, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397], "ids_no_special": [24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 450, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397, 397]}, {"text": "\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00", "ids": [47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222], "ids_no_special": [47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222, 47249, 222]}, {"text": " \u3000 \u3000 x", "ids": [220, 5099, 222, 220, 5099, 222, 2124], "ids_no_special": [220, 5099, 222, 220, 5099, 222, 2124]}, {"text": "\u3000 x", "ids": [5099, 222, 2124], "ids_no_special": [5099, 222, 2124]}, {"text": "x\u2029 y", "ids": [87, 447, 102, 331], "ids_no_special": [87, 447, 102, 331]}]"#
    static let addedTokenCases = #"{"added_tokens": [{"id": 50256, "content": "<|endoftext|>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": true, "special": true}, {"id": 50257, "content": "<|extratoken_1|>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": false}, {"id": 50258, "content": "<R>", "single_word": false, "lstrip": false, "rstrip": true, "normalized": false, "special": false}, {"id": 50259, "content": "[MASK]", "single_word": false, "lstrip": true, "rstrip": false, "normalized": false, "special": true}, {"id": 50260, "content": "<|endoftext|><", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}], "cases": [{"text": "a <|extratoken_1|> b", "ids": [64, 220, 50257, 275], "ids_no_special": [64, 220, 50257, 275]}, {"text": "x   [MASK] y", "ids": [87, 50259, 331], "ids_no_special": [87, 220, 220, 685, 31180, 42, 60, 331]}, {"text": "x\n[MASK]", "ids": [87, 50259], "ids_no_special": [87, 198, 58, 31180, 42, 60]}, {"text": "<R>   z", "ids": [50258, 89], "ids_no_special": [50258, 89]}, {"text": "a<R>\u3000\u3000b", "ids": [64, 50258, 65], "ids_no_special": [64, 50258, 65]}, {"text": "<|endoftext|><R>", "ids": [50260, 49, 29], "ids_no_special": [27, 91, 437, 1659, 5239, 91, 6927, 49, 29]}, {"text": "<|endoftext|><|endoftext|>", "ids": [50260, 91, 437, 1659, 5239, 91, 29], "ids_no_special": [27, 91, 437, 1659, 5239, 91, 6927, 91, 437, 1659, 5239, 91, 29]}, {"text": "q[MASK][MASK]  <|extratoken_1|><R> end", "ids": [80, 50259, 50259, 220, 220, 50257, 50258, 437], "ids_no_special": [80, 58, 31180, 42, 7131, 31180, 42, 60, 220, 220, 50257, 50258, 437]}, {"text": "\u00a0[MASK]", "ids": [50259], "ids_no_special": [1849, 58, 31180, 42, 60]}]}"#
    static let singleWordCases = #"{"added_tokens": [{"id": 3019, "content": "zz", "single_word": true, "lstrip": false, "rstrip": false, "normalized": true, "special": false}, {"id": 50256, "content": "<|endoftext|>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": true, "special": true}, {"id": 50257, "content": "qz", "single_word": true, "lstrip": false, "rstrip": false, "normalized": false, "special": false}], "cases": [{"text": "qz", "ids": [50257], "ids_no_special": [50257]}, {"text": "xqz", "ids": [87, 80, 89], "ids_no_special": [87, 80, 89]}, {"text": "qzx", "ids": [80, 42592], "ids_no_special": [80, 42592]}, {"text": " qz ", "ids": [220, 50257, 220], "ids_no_special": [220, 50257, 220]}, {"text": "\u00e9qz", "ids": [2634, 80, 89], "ids_no_special": [2634, 80, 89]}, {"text": "_qz", "ids": [62, 80, 89], "ids_no_special": [62, 80, 89]}, {"text": "1qz", "ids": [16, 80, 89], "ids_no_special": [16, 80, 89]}, {"text": "qz1", "ids": [80, 89, 16], "ids_no_special": [80, 89, 16]}, {"text": "qz_", "ids": [80, 89, 62], "ids_no_special": [80, 89, 62]}, {"text": "!qz!", "ids": [0, 50257, 0], "ids_no_special": [0, 50257, 0]}, {"text": "\u00e9 qz", "ids": [2634, 220, 50257], "ids_no_special": [2634, 220, 50257]}, {"text": "\u4e00qz", "ids": [31660, 80, 89], "ids_no_special": [31660, 80, 89]}, {"text": "qz\u00e9", "ids": [80, 89, 2634], "ids_no_special": [80, 89, 2634]}, {"text": "qz\u0301", "ids": [80, 89, 136, 223], "ids_no_special": [80, 89, 136, 223]}, {"text": "qzqz", "ids": [80, 89, 80, 89], "ids_no_special": [80, 89, 80, 89]}, {"text": "qz qz", "ids": [50257, 220, 50257], "ids_no_special": [50257, 220, 50257]}, {"text": "\u00bdqz", "ids": [23141, 50257], "ids_no_special": [23141, 50257]}, {"text": "\u200dqz", "ids": [447, 235, 80, 89], "ids_no_special": [447, 235, 80, 89]}, {"text": "zz qz zzz", "ids": [3019, 220, 50257, 1976, 3019], "ids_no_special": [3019, 220, 50257, 1976, 3019]}, {"text": "azz", "ids": [8101], "ids_no_special": [8101]}, {"text": "zz!", "ids": [3019, 0], "ids_no_special": [3019, 0]}]}"#
    static let prefixSpaceCases = #"[{"text": "Hello world", "ids": [18435, 995], "ids_no_special": [18435, 995]}, {"text": " Hello", "ids": [18435], "ids_no_special": [18435]}, {"text": "\nHello", "ids": [220, 198, 15496], "ids_no_special": [220, 198, 15496]}, {"text": "a<|endoftext|>b", "ids": [257, 50256, 275], "ids_no_special": [257, 27, 91, 437, 1659, 5239, 91, 29, 65]}, {"text": "<|endoftext|>", "ids": [50256], "ids_no_special": [1279, 91, 437, 1659, 5239, 91, 29]}, {"text": "", "ids": [], "ids_no_special": []}, {"text": "\u3000x", "ids": [220, 5099, 222, 87], "ids_no_special": [220, 5099, 222, 87]}, {"text": "x<|endoftext|> y", "ids": [2124, 50256, 331], "ids_no_special": [2124, 27, 91, 437, 1659, 5239, 91, 29, 331]}, {"text": "\u00a0 x", "ids": [5624, 2124], "ids_no_special": [5624, 2124]}]"#
}
