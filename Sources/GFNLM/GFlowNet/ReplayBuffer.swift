/// One stored trajectory: its actions and its untempered log-rewards for every prefix (re-tempered with the current T_R on replay).
public struct ReplayItem: Sendable, Equatable {
    /// Untempered log R of the complete trajectory (the priority).
    public var logR: Double
    /// Text used for exact de-duplication (decoded Z without ⊤, stripped; or the ids when there is no tokenizer).
    public var text: String
    public var actions: [Int32]
    /// Untempered log R(s_t ⊤), t = 0 … n.
    public var logRewards: [Double]
    /// Whether the trajectory reached max_len without ⊤.
    public var truncated: Bool

    public init(logR: Double, text: String, actions: [Int32], logRewards: [Double], truncated: Bool) {
        self.logR = logR; self.text = text; self.actions = actions; self.logRewards = logRewards; self.truncated = truncated
    }

    /// Heap order of the reference (Python tuples): reward, then text.
    static func < (a: ReplayItem, b: ReplayItem) -> Bool { a.logR < b.logR || (a.logR == b.logR && a.text < b.text) }
}

/// Per-(X, Y) replay buffer as the paper's reference implementation keeps it: bounded, de-duplicated by text and by token
/// edit distance, evicting the lowest reward, sampled ∝ exp(log R) (prioritised) or uniformly.
public final class ReplayBuffer: @unchecked Sendable {
    public var capacity: Int
    /// Near-duplicates: Levenshtein(ids) < tolerance · (len_a + len_b).
    public var tolerance: Double
    public var prioritized: Bool
    /// The reference's rationale buffer returns every item when it holds fewer than asked; next_sentence's
    /// uniform buffer always draws with replacement.
    public var returnAllWhenSmall: Bool
    private(set) var entries: [String: [ReplayItem]] = [:]

    public init(capacity: Int = 50, tolerance: Double = 0.25, prioritized: Bool = true,
                returnAllWhenSmall: Bool = true) throws(GFNError) {
        guard capacity > 0 else { throw .invalidArgument("replay buffer capacity must be positive (got \(capacity))") }
        guard tolerance >= 0 && tolerance.isFinite else { throw .invalidArgument("tolerance must be ≥ 0") }
        self.capacity = capacity
        self.tolerance = tolerance
        self.prioritized = prioritized
        self.returnAllWhenSmall = returnAllWhenSmall
    }

    public func count(_ key: String) -> Int { entries[key]?.count ?? 0 }
    public var keys: [String] { entries.keys.sorted() }
    public func items(_ key: String) -> [ReplayItem] { entries[key] ?? [] }

    func setItems(_ key: String, _ items: [ReplayItem]) { entries[key] = items.isEmpty ? nil : items }

    /// Adds an item by the reference's rules; returns whether it was stored.
    @discardableResult
    public func add(_ key: String, _ item: ReplayItem) throws(GFNError) -> Bool {
        guard item.logR.isFinite, item.logRewards.allSatisfy({ $0.isFinite }) else {
            throw .numerical("replay items need finite rewards")
        }
        var list = entries[key] ?? []
        if list.contains(where: { $0.text == item.text }) { return false }
        for (i, old) in list.enumerated() {
            let d = ReplayBuffer.levenshtein(item.actions, old.actions)
            if Double(d) < tolerance * Double(item.actions.count + old.actions.count) {
                if old.logR >= item.logR { return false }
                list[i] = item
                entries[key] = list
                return true
            }
        }
        if list.count >= capacity {
            guard let minIdx = list.indices.min(by: { list[$0] < list[$1] }) else { return false }
            // heappushpop: the new item stays only if the current minimum is strictly smaller
            guard list[minIdx] < item else { return false }
            list[minIdx] = item
        } else {
            list.append(item)
        }
        entries[key] = list
        return true
    }

    /// Draws `count` items for a key (nil when the key has none): all items when fewer than `count` (and
    /// `returnAllWhenSmall`), else `count` draws with replacement, ∝ exp(log R − max) or uniform.
    public func sample(_ key: String, count: Int, rng: inout RNG) -> [ReplayItem]? {
        guard let list = entries[key], !list.isEmpty, count > 0 else { return nil }
        if returnAllWhenSmall && list.count < count { return list }
        var out: [ReplayItem] = []
        if prioritized {
            let m = list.map(\.logR).max() ?? 0
            let w = list.map { exp($0.logR - m) }
            let total = w.reduce(0, +)
            for _ in 0..<count {
                let u = rng.uniform() * total
                var acc = 0.0
                var pick = list.count - 1
                for (i, x) in w.enumerated() {
                    acc += x
                    if u < acc { pick = i; break }
                }
                out.append(list[pick])
            }
        } else {
            for _ in 0..<count { out.append(list[rng.below(list.count)]) }
        }
        return out
    }

    /// Edit distance between id sequences.
    public static func levenshtein(_ a: [Int32], _ b: [Int32]) -> Int {
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var prev = Array(0...b.count)
        var cur = [Int](repeating: 0, count: b.count + 1)
        for i in 1...a.count {
            cur[0] = i
            for j in 1...b.count {
                cur[j] = Swift.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            swap(&prev, &cur)
        }
        return prev[b.count]
    }

    // MARK: persistence (JSON)

    public func serialized() -> [UInt8] {
        var root = JSONObject()
        root["format"] = "gfnlm-replay-buffer"
        root["version"] = 1
        root["capacity"] = .int(Int64(capacity))
        root["tolerance"] = .double(tolerance)
        root["prioritized"] = .bool(prioritized)
        root["return_all_when_small"] = .bool(returnAllWhenSmall)
        var es = JSONObject()
        for k in entries.keys.sorted() {
            es[k] = .array((entries[k] ?? []).map { it in
                var o = JSONObject()
                o["log_r"] = .double(it.logR)
                o["text"] = .string(it.text)
                o["actions"] = .array(it.actions.map { .int(Int64($0)) })
                o["log_rewards"] = .array(it.logRewards.map { .double($0) })
                o["truncated"] = .bool(it.truncated)
                return .object(o)
            })
        }
        root["entries"] = .object(es)
        return JSONValue.object(root).serializedBytes(.compact)
    }

    public func save(path: String) throws(GFNError) { try FileIO.writeAtomically(path, serialized()) }

    public static func load(path: String) throws(GFNError) -> ReplayBuffer {
        try deserialize(FileIO.read(path, limit: 1 << 30), source: path)
    }

    public static func deserialize(_ bytes: [UInt8], source: String = "replay buffer") throws(GFNError) -> ReplayBuffer {
        func fail(_ m: String) -> GFNError { GFNError(.format, "\(source): \(m)") }
        let v: JSONValue
        do { v = try JSONValue.parse(bytes) } catch { throw GFNError(error.status, "\(source): \(error.message)") }
        guard v["format"]?.string == "gfnlm-replay-buffer" else { throw fail("not a gfnlm replay buffer") }
        guard let cap = v["capacity"]?.int, let tol = v["tolerance"]?.double, let pr = v["prioritized"]?.bool else {
            throw fail("missing settings")
        }
        let buf = try ReplayBuffer(capacity: cap, tolerance: tol, prioritized: pr,
                                   returnAllWhenSmall: v["return_all_when_small"]?.bool ?? true)
        guard let es = v["entries"]?.object else { throw fail("missing entries") }
        for (k, list) in es {
            guard let arr = list.array else { throw fail("entries of \(k) are not a list") }
            var items: [ReplayItem] = []
            for it in arr {
                guard let lr = it["log_r"]?.double, let text = it["text"]?.string,
                      let acts = it["actions"]?.array, let rows = it["log_rewards"]?.array else { throw fail("malformed item") }
                let a = acts.compactMap { $0.int }.map { Int32(truncatingIfNeeded: $0) }
                let r = rows.compactMap { $0.double }
                guard a.count == acts.count, r.count == rows.count, r.count == a.count + 1, lr.isFinite,
                      r.allSatisfy({ $0.isFinite }) else { throw fail("malformed item") }
                items.append(ReplayItem(logR: lr, text: text, actions: a, logRewards: r,
                                        truncated: it["truncated"]?.bool ?? false))
            }
            guard items.count <= cap else { throw fail("\(items.count) items for capacity \(cap)") }
            buf.entries[k] = items
        }
        return buf
    }
}
