// Lookup tables and the merge loop of byte-level BPE.

/// Byte string → id, over one contiguous arena (no per-token allocation). Keys are compared as bytes.
///
/// Each slot packs the upper 32 bits of the key's hash with its entry number, and an entry holds offset, length and
/// id together, so a lookup touches three cache lines (slot, entry, key bytes); loading the GPT-2 merges does 150,000
/// of them.
struct TokenTable: Sendable {
    struct Entry: Sendable {
        var start: Int
        var length: Int
        var id: Int32
    }

    private var arena: [UInt8] = []
    private var entries: [Entry] = []
    private var hashes: [UInt64] = []
    /// 0 = empty, else `hash & 0xFFFF_FFFF_0000_0000 | (entry + 1)`.
    private var slots: [UInt64] = []

    init(minimumCapacity: Int = 0) {
        var cap = 16
        while cap < minimumCapacity * 2 { cap *= 2 }
        slots = [UInt64](repeating: 0, count: cap)
        entries.reserveCapacity(minimumCapacity)
        hashes.reserveCapacity(minimumCapacity)
        arena.reserveCapacity(minimumCapacity * 8)
    }

    var count: Int { entries.count }

    /// Inserts or replaces the id of `key`.
    mutating func insert(_ key: UnsafeBufferPointer<UInt8>, id: Int32) {
        let h = JSONObject.hash(key)
        if let e = findEntry(h, key) {
            entries[e].id = id
            return
        }
        if (entries.count + 1) * 2 > slots.count { grow() }
        place(h, entries.count)
        entries.append(Entry(start: arena.count, length: key.count, id: id))
        arena.append(contentsOf: key)
        hashes.append(h)
    }

    mutating func insert(_ key: String, id: Int32) {
        var k = key
        k.withUTF8 { insert($0, id: id) }
    }

    func find(_ key: UnsafeBufferPointer<UInt8>) -> Int32? {
        guard let e = findEntry(JSONObject.hash(key), key) else { return nil }
        return entries[e].id
    }

    func find(_ key: String) -> Int32? {
        var k = key
        return k.withUTF8 { find($0) }
    }

    func find(_ key: [UInt8]) -> Int32? {
        key.withUnsafeBufferPointer { find($0) }
    }

    private mutating func place(_ h: UInt64, _ e: Int) {
        let mask = slots.count - 1
        var s = Int(truncatingIfNeeded: h) & mask
        while slots[s] != 0 { s = (s + 1) & mask }
        slots[s] = (h & 0xFFFF_FFFF_0000_0000) | UInt64(e + 1)
    }

    private func findEntry(_ h: UInt64, _ key: UnsafeBufferPointer<UInt8>) -> Int? {
        slots.withUnsafeBufferPointer { sl in
            entries.withUnsafeBufferPointer { en in
                arena.withUnsafeBufferPointer { ar in
                    let mask = sl.count - 1
                    let tag = h & 0xFFFF_FFFF_0000_0000
                    var s = Int(truncatingIfNeeded: h) & mask
                    while true {
                        let v = sl[s]
                        if v == 0 { return nil }
                        if v & 0xFFFF_FFFF_0000_0000 == tag {
                            let e = Int(v & 0xFFFF_FFFF) - 1
                            let entry = en[e]
                            if entry.length == key.count {
                                var k = 0
                                while k < key.count && ar[entry.start + k] == key[k] { k += 1 }
                                if k == key.count { return e }
                            }
                        }
                        s = (s + 1) & mask
                    }
                }
            }
        }
    }

    private mutating func grow() {
        slots = [UInt64](repeating: 0, count: Swift.max(16, slots.count * 2))
        for (e, h) in hashes.enumerated() { place(h, e) }
    }
}

/// (left id, right id) → (rank, merged id), packed as `rank << 32 | mergedId` so that comparing packed values
/// compares ranks. `MergeTable.none` means "no merge".
struct MergeTable: Sendable {
    static let none = UInt64.max
    /// Interleaved (key, value) pairs: one cache line per probe.
    private var slots: [UInt64]
    private var shift: UInt64
    private(set) var count = 0

    init(minimumCapacity: Int) {
        var bits: UInt64 = 4
        while (1 << bits) < minimumCapacity * 2 { bits += 1 }
        slots = [UInt64](repeating: MergeTable.none, count: 2 << bits)
        shift = 64 - bits
    }

    private var capacity: Int { slots.count / 2 }

    @inline(__always)
    private func slot(_ key: UInt64) -> Int { Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> shift) }

    /// Sets the merge of (a, b); a repeated pair takes the later rank (as Hugging Face's table does).
    mutating func insert(_ a: Int32, _ b: Int32, rank: Int, merged: Int32) {
        if (count + 1) * 2 > capacity { grow() }
        let key = UInt64(UInt32(bitPattern: a)) << 32 | UInt64(UInt32(bitPattern: b))
        let mask = capacity - 1
        var s = slot(key)
        while slots[2 * s] != MergeTable.none && slots[2 * s] != key { s = (s + 1) & mask }
        if slots[2 * s] == MergeTable.none { count += 1 }
        slots[2 * s] = key
        slots[2 * s + 1] = UInt64(UInt32(truncatingIfNeeded: rank)) << 32 | UInt64(UInt32(bitPattern: merged))
    }

    @inline(__always)
    func lookup(_ a: Int32, _ b: Int32) -> UInt64 {
        let key = UInt64(UInt32(bitPattern: a)) << 32 | UInt64(UInt32(bitPattern: b))
        return slots.withUnsafeBufferPointer { sl in
            let mask = sl.count / 2 - 1
            var s = slot(key)
            while true {
                let k = sl[2 * s]
                if k == key { return sl[2 * s + 1] }
                if k == MergeTable.none { return MergeTable.none }
                s = (s + 1) & mask
            }
        }
    }

    private mutating func grow() {
        let old = slots
        shift -= 1
        slots = [UInt64](repeating: MergeTable.none, count: old.count * 2)
        let mask = capacity - 1
        var i = 0
        while i < old.count {
            let k = old[i]
            if k != MergeTable.none {
                var s = slot(k)
                while slots[2 * s] != MergeTable.none { s = (s + 1) & mask }
                slots[2 * s] = k
                slots[2 * s + 1] = old[i + 1]
            }
            i += 2
        }
    }
}

extension MergeTable {
    /// Applies merges to `symbols` in place and returns how many remain. The lowest rank is merged first, and among
    /// equal ranks the leftmost pair — the order of Hugging Face's `Word::merge_all` (and of OpenAI's `bpe`).
    func merge(_ s: UnsafeMutablePointer<Int32>, count n: Int) -> Int {
        if n < 2 { return n }
        if n <= 64 { return mergeShort(s, count: n) }
        return mergeLong(s, count: n)
    }

    /// O(n²) scan, fastest for ordinary words.
    private func mergeShort(_ s: UnsafeMutablePointer<Int32>, count n: Int) -> Int {
        withUnsafeTemporaryAllocation(of: UInt64.self, capacity: n) { ranks in
            var m = n
            for k in 0..<(m - 1) { ranks[k] = lookup(s[k], s[k + 1]) }
            while m > 1 {
                var best = MergeTable.none
                var bi = -1
                var k = 0
                while k < m - 1 {
                    if ranks[k] < best { best = ranks[k]; bi = k }
                    k += 1
                }
                if bi < 0 { break }
                s[bi] = Int32(bitPattern: UInt32(truncatingIfNeeded: best))
                // Remove symbol bi+1 and pair rank bi+1.
                k = bi + 1
                while k < m - 1 { s[k] = s[k + 1]; k += 1 }
                k = bi + 1
                while k < m - 2 { ranks[k] = ranks[k + 1]; k += 1 }
                m -= 1
                if bi > 0 { ranks[bi - 1] = lookup(s[bi - 1], s[bi]) }
                if bi < m - 1 { ranks[bi] = lookup(s[bi], s[bi + 1]) }
            }
            return m
        }
    }

    /// O(n log n) with a heap and a linked list, for long pieces (a megabyte without spaces must not hang).
    private func mergeLong(_ s: UnsafeMutablePointer<Int32>, count n: Int) -> Int {
        var next = [Int](0..<n).map { $0 + 1 }
        var prev = [Int](0..<n).map { $0 - 1 }
        next[n - 1] = -1
        var alive = [Bool](repeating: true, count: n)
        var heap = MergeHeap()
        for k in 0..<(n - 1) {
            let r = lookup(s[k], s[k + 1])
            if r != MergeTable.none { heap.push(rank: r, pos: k) }
        }
        while let (r, pos) = heap.pop() {
            guard alive[pos] else { continue }
            let right = next[pos]
            guard right >= 0 else { continue }
            // Stale entry: the pair at pos changed since it was pushed.
            guard lookup(s[pos], s[right]) == r else { continue }
            s[pos] = Int32(bitPattern: UInt32(truncatingIfNeeded: r))
            alive[right] = false
            let after = next[right]
            next[pos] = after
            if after >= 0 { prev[after] = pos }
            let before = prev[pos]
            if before >= 0 {
                let r2 = lookup(s[before], s[pos])
                if r2 != MergeTable.none { heap.push(rank: r2, pos: before) }
            }
            if after >= 0 {
                let r2 = lookup(s[pos], s[after])
                if r2 != MergeTable.none { heap.push(rank: r2, pos: pos) }
            }
        }
        var m = 0
        var k = 0
        while k >= 0 && k < n {
            s[m] = s[k]
            m += 1
            k = next[k]
        }
        return m
    }
}

/// Min-heap of (packed rank, position), ordered by rank then position.
struct MergeHeap {
    private var items: [(UInt64, Int)] = []

    @inline(__always)
    private static func less(_ a: (UInt64, Int), _ b: (UInt64, Int)) -> Bool {
        let ra = a.0 >> 32, rb = b.0 >> 32
        return ra != rb ? ra < rb : a.1 < b.1
    }

    mutating func push(rank: UInt64, pos: Int) {
        items.append((rank, pos))
        var i = items.count - 1
        while i > 0 {
            let p = (i - 1) / 2
            if MergeHeap.less(items[i], items[p]) {
                items.swapAt(i, p)
                i = p
            } else {
                break
            }
        }
    }

    mutating func pop() -> (UInt64, Int)? {
        guard let top = items.first else { return nil }
        let last = items.removeLast()
        if !items.isEmpty {
            items[0] = last
            var i = 0
            let n = items.count
            while true {
                let l = 2 * i + 1, r = l + 1
                var m = i
                if l < n && MergeHeap.less(items[l], items[m]) { m = l }
                if r < n && MergeHeap.less(items[r], items[m]) { m = r }
                if m == i { break }
                items.swapAt(i, m)
                i = m
            }
        }
        return top
    }
}
