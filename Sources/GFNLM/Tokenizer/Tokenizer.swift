import Synchronization

/// Options for `Tokenizer.load`.
public struct TokenizerOptions: Sendable {
    /// Prepend a space to text that does not start with whitespace (ByteLevel `add_prefix_space`). nil takes the
    /// value from tokenizer.json (false for GPT-2 / GPT-J, and for vocab.json + merges.txt).
    public var addPrefixSpace: Bool?
    /// Most pre-tokenized words kept in the encode cache (0 disables it). The cache is cleared when full.
    public var cacheCapacity: Int
    /// Largest token id accepted in a vocabulary (guards against absurd tables; at most Int32.max - 1). Ids must
    /// also be dense: the largest may exceed the number of tokens by at most 65,536.
    public var maxTokenId: Int

    public init(addPrefixSpace: Bool? = nil, cacheCapacity: Int = 65_536, maxTokenId: Int = 16_777_215) {
        self.addPrefixSpace = addPrefixSpace
        self.cacheCapacity = cacheCapacity
        self.maxTokenId = min(max(0, maxTokenId), Int(Int32.max) - 1)
    }
}

/// GPT-2 / GPT-J byte-level BPE, equivalent to Hugging Face's `GPT2TokenizerFast`.
///
/// Immutable after loading except for an internal, locked word cache: one instance can be used from any number of
/// threads at once.
public final class Tokenizer: Sendable {
    /// Added tokens (such as `<|endoftext|>`) matched literally in the text before pre-tokenization.
    public struct AddedToken: Sendable, Equatable {
        public let content: String
        public let id: Int32
        /// Special tokens are matched only when `encode(_:allowSpecial:)` allows them.
        public let special: Bool
        /// Whitespace before / after the token is absorbed into it.
        public let lstrip: Bool
        public let rstrip: Bool
        /// Matched only when not inside a word.
        public let singleWord: Bool
        /// Hugging Face matches tokens with `normalized: false` first, then the others in the remaining text.
        public let normalized: Bool

        public init(content: String, id: Int32, special: Bool, lstrip: Bool = false, rstrip: Bool = false,
                    singleWord: Bool = false, normalized: Bool = false) {
            self.content = content
            self.id = id
            self.special = special
            self.lstrip = lstrip
            self.rstrip = rstrip
            self.singleWord = singleWord
            self.normalized = normalized
        }
    }

    /// One more than the largest token id.
    public let vocabSize: Int
    /// The id of `<|endoftext|>`, when the vocabulary has it (50256 for GPT-2 and GPT-J).
    public let eosId: Int32?
    /// Added tokens, in the order they were declared.
    public let addedTokens: [AddedToken]
    /// Whether a space is put in front of text that does not start with whitespace.
    public let addPrefixSpace: Bool
    /// Where the tokenizer was loaded from.
    public let source: String

    let vocab: TokenTable
    let merges: MergeTable
    let byteIds: [Int32]
    let ignoreMerges: Bool
    /// Token id → token text (byte-level form, as in vocab.json); nil for unused ids.
    let idToToken: [String?]
    /// Token id → raw bytes, as offsets into `decodeArena` (`decodeStarts[id]..<decodeStarts[id + 1]`).
    let decodeArena: [UInt8]
    let decodeStarts: [Int]
    /// Added tokens of each matching pass (not normalized, then normalized) grouped by first byte, longest first
    /// (leftmost-longest matching, like Hugging Face's Aho-Corasick matcher).
    let addedPasses: [[[Int]]]
    let addedBytes: [[UInt8]]
    let cacheCapacity: Int
    let cache: Locked<[WordKey: [Int32]]>

    // MARK: loading

    /// Loads a tokenizer from a directory (tokenizer.json, or vocab.json + merges.txt) or a file (tokenizer.json,
    /// vocab.json with merges.txt beside it, or merges.txt with vocab.json beside it).
    public static func load(path: String, options: TokenizerOptions = TokenizerOptions()) throws(GFNError) -> Tokenizer {
        if FileIO.isDirectory(path) {
            let tj = FileIO.join(path, "tokenizer.json")
            if FileIO.exists(tj) { return try loadTokenizerJSON(tj, options: options) }
            let v = FileIO.join(path, "vocab.json"), m = FileIO.join(path, "merges.txt")
            guard FileIO.exists(v) && FileIO.exists(m) else {
                throw GFNError(.io, "\(path) holds neither tokenizer.json nor vocab.json + merges.txt")
            }
            return try loadVocabMerges(vocab: v, merges: m, options: options)
        }
        guard FileIO.exists(path) else { throw GFNError(.io, "tokenizer file \(path) does not exist") }
        let dir = FileIO.dirname(of: path)
        if FileIO.basename(of: path).hasSuffix(".txt") {
            let v = FileIO.join(dir, "vocab.json")
            guard FileIO.exists(v) else { throw GFNError(.io, "\(path) is a merges file but there is no vocab.json beside it") }
            return try loadVocabMerges(vocab: v, merges: path, options: options)
        }
        let json = try JSONValue.parse(contentsOf: path)
        // vocab.json has a token "model" too (id 19849 in GPT-2): tell the files apart by its value.
        if FileIO.basename(of: path) == "tokenizer.json" || json["model"]?.object != nil {
            return try fromTokenizerJSON(json, source: path, options: options)
        }
        let m = FileIO.join(dir, "merges.txt")
        guard FileIO.exists(m) else {
            throw GFNError(.io, "\(path) is not a tokenizer.json (no \"model\") and there is no merges.txt beside it")
        }
        let merges = try FileIO.read(m, limit: 1 << 30)
        return try fromVocabMerges(vocab: json, merges: merges, source: path, options: options)
    }

    static func loadTokenizerJSON(_ path: String, options: TokenizerOptions) throws(GFNError) -> Tokenizer {
        try fromTokenizerJSON(JSONValue.parse(contentsOf: path), source: path, options: options)
    }

    static func loadVocabMerges(vocab: String, merges: String, options: TokenizerOptions) throws(GFNError) -> Tokenizer {
        let v = try JSONValue.parse(contentsOf: vocab)
        let m = try FileIO.read(merges, limit: 1 << 30)
        return try fromVocabMerges(vocab: v, merges: m, source: vocab, options: options)
    }

    /// A tokenizer from the contents of a tokenizer.json.
    public static func fromTokenizerJSON(bytes: [UInt8], options: TokenizerOptions = TokenizerOptions()) throws(GFNError) -> Tokenizer {
        try fromTokenizerJSON(JSONValue.parse(bytes), source: "tokenizer.json", options: options)
    }

    /// A tokenizer from the contents of vocab.json and merges.txt.
    public static func fromVocabMerges(vocab: [UInt8], merges: [UInt8], options: TokenizerOptions = TokenizerOptions()) throws(GFNError) -> Tokenizer {
        try fromVocabMerges(vocab: JSONValue.parse(vocab), merges: merges, source: "vocab.json", options: options)
    }

    static func fromTokenizerJSON(_ json: JSONValue, source: String, options: TokenizerOptions) throws(GFNError) -> Tokenizer {
        func fail(_ m: String) -> GFNError { GFNError(.format, "\(source): \(m)") }
        guard json.object != nil else { throw fail("tokenizer.json is \(json.kindName), not an object") }
        guard let model = json["model"], model.object != nil else { throw fail("tokenizer.json has no \"model\" object") }
        if let type = model["type"] {
            guard type.string == "BPE" else {
                throw GFNError(.unsupported, "\(source): model type \(type.serialized()) is not supported (only byte-level BPE)")
            }
        }
        for key in ["continuing_subword_prefix", "end_of_word_suffix"] {
            if let v = model[key], !v.isNull, v.string != "" {
                throw GFNError(.unsupported, "\(source): model.\(key) \(v.serialized()) is not supported")
            }
        }
        if let norm = json["normalizer"], !norm.isNull {
            throw GFNError(.unsupported, "\(source): a normalizer (\(norm["type"]?.string ?? norm.kindName)) is not supported; GPT-2 byte-level BPE has none")
        }
        var prefixSpace = false
        if let pre = json["pre_tokenizer"], !pre.isNull {
            guard pre["type"]?.string == "ByteLevel" else {
                throw GFNError(.unsupported, "\(source): pre_tokenizer \(pre["type"]?.string ?? pre.kindName) is not supported (only ByteLevel)")
            }
            if let ur = pre["use_regex"], ur.bool == false {
                throw GFNError(.unsupported, "\(source): ByteLevel with use_regex false is not supported")
            }
            prefixSpace = pre["add_prefix_space"]?.bool ?? false
        }
        guard let vocab = model["vocab"] else { throw fail("tokenizer.json has no model.vocab") }
        guard let merges = model["merges"] else { throw fail("tokenizer.json has no model.merges") }
        guard let mergeList = merges.array else { throw fail("model.merges is \(merges.kindName), not an array") }

        var b = try Builder(vocab: vocab, source: source, options: options)
        try b.reserveMerges(mergeList.count)
        for (rank, m) in mergeList.enumerated() {
            let problem: String?
            if case .string(var line) = m {
                problem = line.withUTF8 { b.addMerge(line: $0, rank: rank) }
            } else if let pair = m.array, pair.count == 2, var l = pair[0].string, var r = pair[1].string {
                problem = l.withUTF8 { lb in r.withUTF8 { rb in b.addMerge(lb, rb, rank: rank) } }
            } else {
                problem = "is \(JSONWriter.clip(m.serialized())), not \"a b\" or [\"a\", \"b\"]"
            }
            if let problem { throw fail("model.merges[\(rank)] \(problem)") }
        }
        b.ignoreMerges = model["ignore_merges"]?.bool ?? false
        var added: [AddedToken] = []
        if let list = json["added_tokens"], !list.isNull {
            guard let arr = list.array else { throw fail("added_tokens is \(list.kindName), not an array") }
            for (k, t) in arr.enumerated() {
                guard let content = t["content"]?.string, !content.isEmpty, let id64 = t["id"]?.int64 else {
                    throw fail("added_tokens[\(k)] needs a non-empty \"content\" and an integer \"id\"")
                }
                guard id64 >= 0, id64 <= Int64(options.maxTokenId) else {
                    throw fail("added_tokens[\(k)] has id \(id64), outside 0...\(options.maxTokenId)")
                }
                let special = t["special"]?.bool ?? false
                added.append(AddedToken(content: content, id: Int32(id64), special: special,
                                        lstrip: t["lstrip"]?.bool ?? false, rstrip: t["rstrip"]?.bool ?? false,
                                        singleWord: t["single_word"]?.bool ?? false,
                                        normalized: t["normalized"]?.bool ?? !special))
            }
        }
        let largest = added.map { Int($0.id) }.max() ?? -1
        if largest >= b.idToToken.count + 65_536 {
            throw fail("added token id \(largest) is far beyond the \(b.idToToken.count) vocabulary ids (ids must be dense)")
        }
        return try Tokenizer(builder: b, added: added, addPrefixSpace: options.addPrefixSpace ?? prefixSpace,
                             source: source, options: options)
    }

    static func fromVocabMerges(vocab: JSONValue, merges: [UInt8], source: String,
                                options: TokenizerOptions) throws(GFNError) -> Tokenizer {
        var b = try Builder(vocab: vocab, source: source, options: options)
        // merges.txt: an optional "#version" line, then one "a b" pair per line (CRLF accepted, blank lines skipped).
        let lineCount = merges.reduce(1) { $0 + ($1 == 0x0A ? 1 : 0) }
        try b.reserveMerges(lineCount)
        let failure: (line: Int, problem: String)? = merges.withUnsafeBufferPointer { buf in
            var rank = 0
            var lineNo = 0
            var start = 0
            let version = Array("#version".utf8)
            while start <= buf.count {
                var end = start
                while end < buf.count && buf[end] != 0x0A { end += 1 }
                lineNo += 1
                var stop = end
                if stop > start && buf[stop - 1] == 0x0D { stop -= 1 }
                let line = UnsafeBufferPointer(rebasing: buf[start..<stop])
                start = end + 1
                if line.isEmpty || line.starts(with: version) { continue }
                if let problem = b.addMerge(line: line, rank: rank) { return (lineNo, problem) }
                rank += 1
            }
            return nil
        }
        if let failure { throw GFNError(.format, "\(source): merges.txt line \(failure.line) \(failure.problem)") }
        var added: [AddedToken] = []
        if let eos = b.vocab.find("<|endoftext|>") {
            added.append(AddedToken(content: "<|endoftext|>", id: eos, special: true))
        }
        return try Tokenizer(builder: b, added: added, addPrefixSpace: options.addPrefixSpace ?? false,
                             source: source, options: options)
    }

    /// Collects vocabulary and merges while checking them.
    struct Builder {
        var vocab: TokenTable
        var idToToken: [String?]
        var merges = MergeTable(minimumCapacity: 16)
        var ignoreMerges = false
        var scratch: [UInt8] = []
        let source: String

        init(vocab json: JSONValue, source: String, options: TokenizerOptions) throws(GFNError) {
            self.source = source
            guard let obj = json.object else {
                throw GFNError(.format, "\(source): the vocabulary is \(json.kindName), not an object of token → id")
            }
            var maxId = -1
            var table = TokenTable(minimumCapacity: obj.count)
            for (token, value) in obj {
                guard case .int(let id) = value, id >= 0, id <= Int64(options.maxTokenId) else {
                    throw GFNError(.format, "\(source): vocabulary entry \"\(JSONWriter.clip(token))\" has id \(JSONWriter.clip(value.serialized())), not an integer in 0...\(options.maxTokenId)")
                }
                table.insert(token, id: Int32(id))
                maxId = Swift.max(maxId, Int(id))
            }
            guard maxId < obj.count + 65_536 else {
                throw GFNError(.format, "\(source): the vocabulary has \(obj.count) tokens but ids up to \(maxId) (ids must be dense)")
            }
            var names = [String?](repeating: nil, count: maxId + 1)
            for (token, value) in obj { if let id = value.int { names[id] = token } }
            self.vocab = table
            self.idToToken = names
        }

        mutating func reserveMerges(_ n: Int) throws(GFNError) {
            merges = MergeTable(minimumCapacity: Swift.max(16, n))
        }

        static func quoted(_ bytes: UnsafeBufferPointer<UInt8>) -> String {
            "\"" + JSONWriter.clip(String(decoding: bytes, as: UTF8.self)) + "\""
        }

        /// Adds the merge (left, right); returns nil, or what is wrong.
        mutating func addMerge(_ left: UnsafeBufferPointer<UInt8>, _ right: UnsafeBufferPointer<UInt8>, rank: Int) -> String? {
            guard let a = vocab.find(left) else { return "names \(Builder.quoted(left)), which is not in the vocabulary" }
            guard let b = vocab.find(right) else { return "names \(Builder.quoted(right)), which is not in the vocabulary" }
            scratch.removeAll(keepingCapacity: true)
            scratch.append(contentsOf: left)
            scratch.append(contentsOf: right)
            let vocab = self.vocab
            guard let m = scratch.withUnsafeBufferPointer({ vocab.find($0) }) else {
                return "merges into " + scratch.withUnsafeBufferPointer { Builder.quoted($0) } + ", which is not in the vocabulary"
            }
            merges.insert(a, b, rank: rank, merged: m)
            return nil
        }

        /// Adds a merge written "left right" (exactly one space); returns nil, or what is wrong.
        mutating func addMerge(line: UnsafeBufferPointer<UInt8>, rank: Int) -> String? {
            var space = -1
            var spaces = 0
            for k in 0..<line.count where line[k] == 0x20 {
                spaces += 1
                space = k
            }
            guard spaces == 1, space > 0, space < line.count - 1 else {
                return "is \(Builder.quoted(line)), not two tokens separated by one space"
            }
            return addMerge(UnsafeBufferPointer(rebasing: line[..<space]), UnsafeBufferPointer(rebasing: line[(space + 1)...]),
                            rank: rank)
        }
    }

    private init(builder b: Builder, added: [AddedToken], addPrefixSpace: Bool, source: String,
                 options: TokenizerOptions) throws(GFNError) {
        self.source = source
        self.vocab = b.vocab
        self.merges = b.merges
        self.ignoreMerges = b.ignoreMerges
        self.addPrefixSpace = addPrefixSpace
        self.addedTokens = added
        self.cacheCapacity = Swift.max(0, options.cacheCapacity)
        self.cache = Locked([:])

        var names = b.idToToken
        for t in added {
            let i = Int(t.id)
            if i >= names.count { names += [String?](repeating: nil, count: i + 1 - names.count) }
            names[i] = t.content
        }
        self.idToToken = names
        self.vocabSize = names.count

        var ids = [Int32](repeating: 0, count: 256)
        for byte in 0..<256 {
            guard let id = b.vocab.find(ByteLevel.byteToUTF8[byte]) else {
                let ch = String(decoding: ByteLevel.byteToUTF8[byte], as: UTF8.self)
                throw GFNError(.format, "\(source): the vocabulary lacks the byte-level token \"\(ch)\" for byte \(byte); every byte needs a token")
            }
            ids[byte] = id
        }
        self.byteIds = ids

        var arena: [UInt8] = []
        arena.reserveCapacity(names.count * 6)
        var starts = [0]
        starts.reserveCapacity(names.count + 1)
        for name in names {
            // Added tokens go through the ByteLevel decoder too (as in Hugging Face): characters are mapped back to
            // bytes when all are in the byte alphabet, else the token's UTF-8 is emitted unchanged.
            if let name { arena.append(contentsOf: ByteLevel.decodeToken(name) ?? Array(name.utf8)) }
            starts.append(arena.count)
        }
        self.decodeArena = arena
        self.decodeStarts = starts
        self.eosId = added.first(where: { $0.content == "<|endoftext|>" })?.id ?? b.vocab.find("<|endoftext|>")

        let bytes = added.map { Array($0.content.utf8) }
        var passes: [[[Int]]] = []
        for normalizedPass in [false, true] {
            var byFirst = [[Int]](repeating: [], count: 256)
            for (k, t) in bytes.enumerated() where added[k].normalized == normalizedPass {
                if let f = t.first { byFirst[Int(f)].append(k) }
            }
            for f in 0..<256 { byFirst[f].sort { bytes[$0].count > bytes[$1].count } }
            passes.append(byFirst)
        }
        self.addedBytes = bytes
        self.addedPasses = passes
    }

    // MARK: lookups

    /// The token text (byte-level form, e.g. "Ġthe") for an id.
    public func token(for id: Int32) -> String? {
        guard id >= 0, Int(id) < idToToken.count else { return nil }
        return idToToken[Int(id)]
    }

    /// The id of a token given in its byte-level form (as in vocab.json), or of an added token.
    public func id(for token: String) -> Int32? {
        if let id = vocab.find(token) { return id }
        return addedTokens.first(where: { $0.content == token })?.id
    }

    /// The number of merge rules.
    public var mergeCount: Int { merges.count }

    // MARK: decoding

    /// The bytes the ids stand for. Token boundaries may split UTF-8 sequences; these bytes are returned as they are.
    public func decodeBytes(_ ids: [Int32]) throws(GFNError) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(ids.count * 4)
        for (k, id) in ids.enumerated() {
            let i = Int(id)
            guard i >= 0, i < idToToken.count, idToToken[i] != nil else {
                throw GFNError(.outOfRange, "token id \(id) (position \(k)) is outside the vocabulary of \(vocabSize) tokens")
            }
            out.append(contentsOf: decodeArena[decodeStarts[i]..<decodeStarts[i + 1]])
        }
        return out
    }

    /// The text the ids stand for; invalid UTF-8 (e.g. a character cut between tokens) becomes U+FFFD, as in
    /// Hugging Face's decode.
    public func decode(_ ids: [Int32]) throws(GFNError) -> String {
        String(decoding: try decodeBytes(ids), as: UTF8.self)
    }

    // MARK: encoding

    /// Token ids for `text`. With `allowSpecial` (the default, as in Hugging Face) special added tokens such as
    /// `<|endoftext|>` written in the text become their ids; without it they are encoded as ordinary text.
    /// Non-special added tokens are always matched.
    public func encode(_ text: String, allowSpecial: Bool = true) -> [Int32] {
        var t = text
        return t.withUTF8 { encode(utf8: $0, allowSpecial: allowSpecial) }
    }

    /// Token ids for UTF-8 bytes; invalid sequences are first replaced by U+FFFD.
    public func encode(bytes: [UInt8], allowSpecial: Bool = true) -> [Int32] {
        encode(String(decoding: bytes, as: UTF8.self), allowSpecial: allowSpecial)
    }

    /// `utf8` must be valid UTF-8 (it comes from a String).
    func encode(utf8 b: UnsafeBufferPointer<UInt8>, allowSpecial: Bool) -> [Int32] {
        var out: [Int32] = []
        out.reserveCapacity(b.count / 3 + 4)
        if addedTokens.isEmpty {
            encodeSegment(b, 0, b.count, into: &out)
            return out
        }
        // Hugging Face splits on added tokens in two passes: tokens with normalized false on the whole text, then
        // the others inside the remaining text pieces; each text piece is then pre-tokenized on its own.
        for piece in splitAdded(b, 0, b.count, pass: 0, allowSpecial: allowSpecial) {
            switch piece {
            case .token(let id): out.append(id)
            case .text(let s, let e):
                for inner in splitAdded(b, s, e, pass: 1, allowSpecial: allowSpecial) {
                    switch inner {
                    case .token(let id): out.append(id)
                    case .text(let s2, let e2): encodeSegment(b, s2, e2, into: &out)
                    }
                }
            }
        }
        return out
    }

    enum Piece {
        case text(Int, Int)
        case token(Int32)
    }

    /// Splits `b[start..<end]` on the added tokens of one pass (Hugging Face's `AddedVocabulary::find_matches`):
    /// leftmost-longest matches; a special token when specials are not allowed, or a single-word token inside a
    /// word, is skipped over and stays text.
    private func splitAdded(_ b: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int, pass: Int,
                            allowSpecial: Bool) -> [Piece] {
        let table = addedPasses[pass]
        var out: [Piece] = []
        var prevEnd = start
        var i = start
        while i < end {
            var matched = -1
            for k in table[Int(b[i])] where matches(b, at: i, end: end, addedBytes[k]) {
                matched = k
                break
            }
            if matched < 0 {
                i += 1
                continue
            }
            let tok = addedTokens[matched]
            let matchEnd = i + addedBytes[matched].count
            if tok.special && !allowSpecial {
                i = matchEnd
                continue
            }
            if tok.singleWord && (isWordChar(before: i, b, floor: start) || isWordChar(at: matchEnd, b, end: end)) {
                i = matchEnd
                continue
            }
            var st = i
            if tok.lstrip {
                while st > prevEnd, let p = previousScalar(b, st, floor: prevEnd), CharClass.of(p.0) == CharClass.space {
                    st = p.1
                }
            }
            var stop = matchEnd
            if tok.rstrip {
                while stop < end {
                    let (v, l) = Tokenizer.decodeScalar(b, stop, end)
                    if CharClass.of(v) != CharClass.space { break }
                    stop += l
                }
            }
            if prevEnd < st { out.append(.text(prevEnd, st)) }
            out.append(.token(tok.id))
            prevEnd = stop
            i = stop
        }
        if prevEnd < end { out.append(.text(prevEnd, end)) }
        return out
    }

    private func matches(_ b: UnsafeBufferPointer<UInt8>, at i: Int, end: Int, _ t: [UInt8]) -> Bool {
        guard i + t.count <= end else { return false }
        var k = 0
        while k < t.count {
            if b[i + k] != t[k] { return false }
            k += 1
        }
        return true
    }

    /// The scalar ending at `end` and its start, if it starts at or after `floor`.
    private func previousScalar(_ b: UnsafeBufferPointer<UInt8>, _ end: Int, floor: Int) -> (UInt32, Int)? {
        guard end > floor else { return nil }
        var k = end - 1
        while k > floor && (b[k] & 0xC0) == 0x80 { k -= 1 }
        return (Tokenizer.decodeScalar(b, k, end).0, k)
    }

    /// `\w` as in Rust's regex crate (Alphabetic, marks, decimal digits, connector punctuation, joiners).
    private static func isWord(_ v: UInt32) -> Bool {
        guard let s = Unicode.Scalar(v) else { return false }
        if s.properties.isAlphabetic || s.properties.isJoinControl { return true }
        switch s.properties.generalCategory {
        case .nonspacingMark, .spacingMark, .enclosingMark, .decimalNumber, .connectorPunctuation: return true
        default: return false
        }
    }

    private func isWordChar(before i: Int, _ b: UnsafeBufferPointer<UInt8>, floor: Int) -> Bool {
        guard let p = previousScalar(b, i, floor: floor) else { return false }
        return Tokenizer.isWord(p.0)
    }

    private func isWordChar(at i: Int, _ b: UnsafeBufferPointer<UInt8>, end: Int) -> Bool {
        guard i < end else { return false }
        return Tokenizer.isWord(Tokenizer.decodeScalar(b, i, end).0)
    }

    @inline(__always)
    static func decodeScalar(_ b: UnsafeBufferPointer<UInt8>, _ i: Int, _ end: Int) -> (UInt32, Int) {
        let c0 = UInt32(b[i])
        if c0 < 0x80 { return (c0, 1) }
        if c0 >= 0xC0 && c0 < 0xE0 && i + 1 < end {
            return ((c0 & 0x1F) << 6 | UInt32(b[i + 1] & 0x3F), 2)
        }
        if c0 >= 0xE0 && c0 < 0xF0 && i + 2 < end {
            return ((c0 & 0x0F) << 12 | UInt32(b[i + 1] & 0x3F) << 6 | UInt32(b[i + 2] & 0x3F), 3)
        }
        if c0 >= 0xF0 && i + 3 < end {
            return ((c0 & 0x07) << 18 | UInt32(b[i + 1] & 0x3F) << 12 | UInt32(b[i + 2] & 0x3F) << 6 | UInt32(b[i + 3] & 0x3F), 4)
        }
        return (0xFFFD, 1)  // not reached for valid UTF-8
    }

    /// Pre-tokenizes `b[start..<end]` with GPT-2's pattern and BPE-encodes each piece. With `addPrefixSpace`, a
    /// segment that does not start with " " gets one (per segment between added tokens, as Hugging Face does).
    private func encodeSegment(_ b: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int, into out: inout [Int32]) {
        guard start < end else { return }
        if addPrefixSpace && b[start] != 0x20 {
            var copy: [UInt8] = [0x20]
            copy.append(contentsOf: UnsafeBufferPointer(rebasing: b[start..<end]))
            copy.withUnsafeBufferPointer { c in
                Tokenizer.pretokenize(c, 0, c.count) { s, e in encodePiece(c, s, e, into: &out) }
            }
            return
        }
        Tokenizer.pretokenize(b, start, end) { s, e in encodePiece(b, s, e, into: &out) }
    }

    /// Splits `b[start..<end]` like `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`.
    static func pretokenize(_ b: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int,
                            _ emit: (Int, Int) -> Void) {
        var i = start
        while i < end {
            let c = b[i]
            // 's 't 're 've 'm 'll 'd
            if c == 0x27 && i + 1 < end {
                let d = b[i + 1]
                if d == 0x73 || d == 0x74 || d == 0x6D || d == 0x64 {  // s t m d
                    emit(i, i + 2)
                    i += 2
                    continue
                }
                if i + 2 < end {
                    let e = b[i + 2]
                    if (d == 0x72 && e == 0x65) || (d == 0x76 && e == 0x65) || (d == 0x6C && e == 0x6C) {  // re ve ll
                        emit(i, i + 3)
                        i += 3
                        continue
                    }
                }
            }
            let (v, len) = decodeScalar(b, i, end)
            var cls = CharClass.of(v)
            var runStart = i
            if c == 0x20 && i + 1 < end {
                // " ?X+": a space followed by a letter, digit or other character joins that run.
                let (v2, _) = decodeScalar(b, i + 1, end)
                let cls2 = CharClass.of(v2)
                if cls2 != CharClass.space {
                    cls = cls2
                    runStart = i + 1
                }
            }
            if cls != CharClass.space {
                var j = runStart
                while j < end {
                    let (w, l) = decodeScalar(b, j, end)
                    if CharClass.of(w) != cls { break }
                    j += l
                }
                emit(i, j)
                i = j
                continue
            }
            // Whitespace: "\s+(?!\S)" leaves the last whitespace character for the next token when a non-space
            // follows; a single whitespace character before a non-space is taken by "\s+".
            var j = i + len
            var lastStart = i
            var count = 1
            while j < end {
                let (w, l) = decodeScalar(b, j, end)
                if CharClass.of(w) != CharClass.space { break }
                lastStart = j
                j += l
                count += 1
            }
            let stop = (j == end || count == 1) ? j : lastStart
            emit(i, stop)
            i = stop
        }
    }

    /// Pieces up to this many bytes go through the shared cache.
    static let cachedPieceLimit = 128

    private func encodePiece(_ b: UnsafeBufferPointer<UInt8>, _ s: Int, _ e: Int,
                             into out: inout [Int32]) {
        let n = e - s
        if n == 1 {
            out.append(byteIds[Int(b[s])])
            return
        }
        let piece = UnsafeBufferPointer(rebasing: b[s..<e])
        if cacheCapacity > 0 && n <= Tokenizer.cachedPieceLimit {
            let key = WordKey(piece)
            if let hit = cache.withLock({ $0[key] }) {
                out.append(contentsOf: hit)
                return
            }
            let ids = bpe(piece)
            out.append(contentsOf: ids)
            let cap = cacheCapacity
            cache.withLock { c in
                if c.count >= cap { c.removeAll(keepingCapacity: true) }
                c[key] = ids
            }
            return
        }
        out.append(contentsOf: bpe(piece))
    }

    /// BPE of one pre-tokenized piece (raw bytes).
    func bpe(_ piece: UnsafeBufferPointer<UInt8>) -> [Int32] {
        if ignoreMerges {
            let text = ByteLevel.encodeBytes(piece)
            if let id = vocab.find(text) { return [id] }
        }
        let n = piece.count
        return withUnsafeTemporaryAllocation(of: Int32.self, capacity: n) { sym in
            guard let base = sym.baseAddress else { return [] }
            for k in 0..<n { base[k] = byteIds[Int(piece[k])] }
            let m = merges.merge(base, count: n)
            return Array(UnsafeBufferPointer(start: base, count: m))
        }
    }
}

/// A cache key: the raw bytes of a pre-tokenized piece (compared as bytes, never as canonically-equivalent text).
struct WordKey: Hashable, Sendable {
    let bytes: [UInt8]

    init(_ p: UnsafeBufferPointer<UInt8>) { bytes = Array(p) }

    func hash(into h: inout Hasher) {
        bytes.withUnsafeBytes { h.combine(bytes: $0) }
    }

    static func == (a: WordKey, b: WordKey) -> Bool { a.bytes == b.bytes }
}

