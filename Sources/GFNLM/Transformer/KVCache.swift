/// Keys and values of one sequence for every layer, laid out k[layer][head][slot][head_dim] (same for v).
///
/// A cache may extend a `prefix` cache (a shared prompt, a few-shot demo block): attention then reads the
/// prefix's slots first and this cache's own slots after them, and positions continue after the prefix. A prefix
/// is read-only for its children: only the part that existed when the child was made is visible to it.
/// Left padding: the first `padding` slots of a root cache (no prefix) are masked out and positions start at 0
/// after them. Not thread-safe; a prefix may be read by many children (and threads) at once.
public final class KVCache: @unchecked Sendable {
    public let nLayer: Int
    public let nHead: Int
    public let headDim: Int
    public let capacity: Int
    public let prefix: KVCache?
    /// How many of the prefix's slots this cache sees.
    public let prefixLength: Int
    /// Number of slots written so far (including padding slots).
    public internal(set) var length: Int = 0
    /// Leading masked slots (root caches only).
    public internal(set) var padding: Int = 0

    let k: FloatStorage
    let v: FloatStorage

    /// `visiblePrefix` (default: all of the prefix's current slots) lets a child see only the first slots of its
    /// prefix — e.g. to score a continuation after every prefix of one cached sequence.
    public init(config: ModelConfig, capacity: Int, prefix: KVCache? = nil, visiblePrefix: Int? = nil) throws(GFNError) {
        guard capacity >= 0 else { throw .invalidArgument("negative KV cache capacity \(capacity)") }
        if let v = visiblePrefix {
            guard let p = prefix, v >= p.padding, v <= p.length else {
                throw .invalidArgument("visible prefix \(v) outside the prefix cache's slots")
            }
        }
        if let p = prefix, p.nLayer != config.nLayer || p.nHead != config.nHead || p.headDim != config.headDim {
            throw .invalidArgument("prefix cache belongs to a different model")
        }
        self.nLayer = config.nLayer
        self.nHead = config.nHead
        self.headDim = config.headDim
        self.capacity = capacity
        self.prefix = prefix
        self.prefixLength = visiblePrefix ?? prefix?.length ?? 0
        let n = config.nLayer * config.nHead * capacity * config.headDim
        self.k = try FloatStorage(count: n)
        self.v = try FloatStorage(count: n)
    }

    /// Empties the cache (keeps the allocation and the prefix).
    public func reset() {
        length = 0
        padding = 0
    }

    /// Drops slots after `newLength` (e.g. to rewind to a shared point).
    public func truncate(to newLength: Int) throws(GFNError) {
        guard newLength >= padding && newLength <= length else {
            throw .invalidArgument("cannot truncate a cache of length \(length) to \(newLength)")
        }
        length = newLength
    }

    /// Number of valid (unmasked) positions before this cache's slot 0: the visible prefix chain.
    public var positionBase: Int {
        guard let p = prefix else { return 0 }
        return p.visibleValid(prefixLength)
    }

    /// Valid positions among the first `n` slots of this cache, including its own prefix chain.
    func visibleValid(_ n: Int) -> Int { positionBase + n - padding }

    /// Total valid positions visible to a child that sees `length` slots.
    public var validLength: Int { visibleValid(length) }

    /// Position id of own slot `slot` (slot ≥ padding).
    @inline(__always)
    func position(ofSlot slot: Int) -> Int { positionBase + slot - padding }

    @inline(__always)
    func kPointer(layer: Int, head: Int) -> UnsafeMutablePointer<Float> {
        k.base + ((layer * nHead + head) * capacity) * headDim
    }

    @inline(__always)
    func vPointer(layer: Int, head: Int) -> UnsafeMutablePointer<Float> {
        v.base + ((layer * nHead + head) * capacity) * headDim
    }

    /// The chain of caches from the root to self, with the number of slots of each that is visible.
    func segments() -> [(cache: KVCache, count: Int)] {
        var chain: [(KVCache, Int)] = []
        var c: KVCache = self
        var visible = length
        while true {
            chain.append((c, visible))
            guard let p = c.prefix else { break }
            visible = c.prefixLength
            c = p
        }
        return chain.reversed()
    }
}

extension KVCache {
    /// Makes this cache a copy of `other` (same model, same prefix, enough capacity): slots, padding, length.
    public func copyContents(of other: KVCache) throws(GFNError) {
        guard other.nLayer == nLayer, other.nHead == nHead, other.headDim == headDim else {
            throw .invalidArgument("caches belong to different models")
        }
        guard other.prefix === prefix, other.prefixLength == prefixLength else {
            throw .invalidArgument("caches extend different prefixes")
        }
        guard other.length <= capacity else { throw .outOfRange("cache capacity \(capacity) < \(other.length)") }
        let n = other.length * headDim
        if n > 0 {
            for l in 0..<nLayer {
                for h in 0..<nHead {
                    kPointer(layer: l, head: h).update(from: other.kPointer(layer: l, head: h), count: n)
                    vPointer(layer: l, head: h).update(from: other.vPointer(layer: l, head: h), count: n)
                }
            }
        }
        length = other.length
        padding = other.padding
    }
}
