/// Where the tokens of one forward chunk lie: row r's `lengths[r]` new tokens are the flattened rows
/// `offsets[r] ..< offsets[r] + lengths[r]` of every activation. Uniform (every row T tokens) for training, scoring
/// and decoding; ragged for a batched prefill of prompts of different lengths.
struct RowLayout {
    let lengths: [Int]
    let offsets: [Int]
    let tokens: Int
    let maxLength: Int
    let isUniform: Bool

    init(rows: Int, T: Int) {
        lengths = Array(repeating: T, count: rows)
        offsets = (0..<rows).map { $0 * T }
        tokens = rows * T
        maxLength = T
        isUniform = true
    }

    init(lengths: [Int]) {
        self.lengths = lengths
        var off = 0
        offsets = lengths.map { n in defer { off += n }; return off }
        tokens = off
        maxLength = lengths.max() ?? 0
        isUniform = Set(lengths).count <= 1
    }

    var rows: Int { lengths.count }
    /// Flattened rows of sequences `range` (contiguous).
    func tokenRange(ofRows range: Range<Int>) -> Range<Int> {
        guard !range.isEmpty else { return 0..<0 }
        return offsets[range.lowerBound]..<(offsets[range.upperBound - 1] + lengths[range.upperBound - 1])
    }
}

/// Sizes of one forward call.
struct ForwardPlan {
    let config: ModelConfig
    let layout: RowLayout
    /// Visible keys per row after this chunk.
    let keys: [Int]
    let maxRank: Int
    let threads: Int

    var rows: Int { layout.rows }
    /// Tokens per row (the longest row's for a ragged layout, which only inference uses).
    var T: Int { layout.maxLength }
    var tokens: Int { layout.tokens }
    var maxKeys: Int { keys.max() ?? 0 }
}

/// Pointers to one layer's activations. In inference every layer shares one set of scratch buffers (those only
/// the backward pass needs are nil); in a trace every layer has its own.
final class LayerBuffers {
    var xIn: UnsafeMutablePointer<Float>?
    var ln1: UnsafeMutablePointer<Float>
    var ln1Mean: UnsafeMutablePointer<Float>?
    var ln1Rstd: UnsafeMutablePointer<Float>?
    var qkv: UnsafeMutablePointer<Float>
    var att: UnsafeMutablePointer<Float>
    var xMid: UnsafeMutablePointer<Float>?
    var ln2: UnsafeMutablePointer<Float>?
    var ln2Mean: UnsafeMutablePointer<Float>?
    var ln2Rstd: UnsafeMutablePointer<Float>?
    var fc: UnsafeMutablePointer<Float>
    var act: UnsafeMutablePointer<Float>
    var tmp: UnsafeMutablePointer<Float>
    var loraScratch: UnsafeMutablePointer<Float>
    /// Trace: x·Aᵀ of every adapted module of this layer, [N, r], by module name.
    var loraOutputs: [String: UnsafeMutablePointer<Float>] = [:]
    /// Trace with LoRA dropout: the keep mask of every adapted module's input, [N, in], holding 0 (dropped) or
    /// 1/(1−p) (kept, inverted dropout), by module name.
    var loraMasks: [String: UnsafeMutablePointer<Float>] = [:]
    /// Attention probabilities: trace → [row][head][T][K_row] (offsets per row); inference → per-worker [T, Kmax].
    var probs: UnsafeMutablePointer<Float>
    var probsRowOffset: [Int] = []
    var probsRowKeys: [Int] = []
    var probsWorkerStride = 0
    var T = 0
    var heads = 0
    var perRow = false

    init(ln1: UnsafeMutablePointer<Float>, qkv: UnsafeMutablePointer<Float>, att: UnsafeMutablePointer<Float>,
         fc: UnsafeMutablePointer<Float>, act: UnsafeMutablePointer<Float>, tmp: UnsafeMutablePointer<Float>,
         loraScratch: UnsafeMutablePointer<Float>, probs: UnsafeMutablePointer<Float>) {
        self.ln1 = ln1; self.qkv = qkv; self.att = att; self.fc = fc; self.act = act; self.tmp = tmp
        self.loraScratch = loraScratch; self.probs = probs
    }

    func loraOutput(_ name: String) -> UnsafeMutablePointer<Float>? { loraOutputs[name] }

    @inline(__always)
    func probabilities(row: Int, head: Int, worker: Int) -> UnsafeMutablePointer<Float> {
        if perRow { return probs + probsRowOffset[row] + head * T * probsRowKeys[row] }
        return probs + worker * probsWorkerStride
    }
}

/// Scratch memory for forward passes, owned by one caller (a context, a sampler, a trainer). Grows to the
/// largest batch seen and is reused, so steady-state decoding allocates nothing.
public final class ForwardWorkspace: @unchecked Sendable {
    let arena: Arena
    private(set) var residual: UnsafeMutablePointer<Float>
    private(set) var hidden: UnsafeMutablePointer<Float>
    private(set) var layer: LayerBuffers
    private var positionStorage: UnsafeMutablePointer<Int32>
    private var positionCapacity: Int

    public init() throws(GFNError) {
        arena = try Arena(capacity: 16 * 16)
        let p = try arena.take(16)
        residual = p; hidden = p
        layer = LayerBuffers(ln1: p, qkv: p, att: p, fc: p, act: p, tmp: p, loraScratch: p, probs: p)
        positionCapacity = 16
        positionStorage = UnsafeMutablePointer<Int32>.allocate(capacity: positionCapacity)
    }

    deinit { positionStorage.deallocate() }

    func positions(_ n: Int) throws(GFNError) -> UnsafeMutablePointer<Int32> {
        if n > positionCapacity {
            positionStorage.deallocate()
            positionCapacity = n
            positionStorage = UnsafeMutablePointer<Int32>.allocate(capacity: n)
        }
        return positionStorage
    }

    func begin(plan: ForwardPlan) throws(GFNError) {
        let c = plan.config
        let N = plan.tokens, E = c.nEmbd, I = c.nInner
        let workers = max(1, plan.threads)
        let probStride = plan.T * plan.maxKeys
        let sizes = [N * E, N * E, N * E, N * 3 * E, N * E, N * I, N * I, N * E, N * max(plan.maxRank, 1),
                     workers * probStride, N * E]
        try arena.reserve(Arena.footprint(sizes))
        residual = try arena.take(N * E)
        hidden = try arena.take(N * E)
        let ln1 = try arena.take(N * E)
        let qkv = try arena.take(N * 3 * E)
        let att = try arena.take(N * E)
        let fc = try arena.take(N * I)
        let act = try arena.take(N * I)
        let tmp = try arena.take(N * E)
        let lora = try arena.take(N * max(plan.maxRank, 1))
        let probs = try arena.take(workers * probStride)
        let b = LayerBuffers(ln1: ln1, qkv: qkv, att: att, fc: fc, act: act, tmp: tmp, loraScratch: lora, probs: probs)
        b.ln2 = try arena.take(N * E)
        b.probsWorkerStride = probStride
        b.T = plan.T
        b.heads = c.nHead
        layer = b
    }
}

/// Everything a backward pass needs from one forward call: per-layer activations, attention probabilities,
/// LoRA intermediates, the final LayerNorm statistics, and which caches/positions were used.
public final class ForwardTrace: @unchecked Sendable {
    let arena: Arena
    private(set) var layers: [LayerBuffers] = []
    private(set) var residual: UnsafeMutablePointer<Float>?
    private(set) var hidden: UnsafeMutablePointer<Float>?
    private(set) var preFinal: UnsafeMutablePointer<Float>?
    private(set) var lnFMean: UnsafeMutablePointer<Float>?
    private(set) var lnFRstd: UnsafeMutablePointer<Float>?
    private(set) var plan: ForwardPlan?
    private(set) var tokens: [Int32] = []
    private(set) var caches: [KVCache] = []
    private(set) var start: [Int] = []
    private(set) var positions: [Int32] = []
    private(set) var segments: [[KVSegment]] = []
    private(set) var adapter: LoRAAdapter?
    /// The generator for LoRA dropout masks. When it is set and the adapter's dropout is positive, traced forwards
    /// apply dropout on the LoRA branch input (training mode) and advance it; when nil (the default) the traced
    /// forward is deterministic, like inference.
    public var dropoutRNG: RNG?
    /// The dropout probability the last traced forward used (0: none).
    public private(set) var dropoutP: Float = 0
    /// Scratch for the dropped LoRA input, [N, max(n_embd, n_inner)] (only with dropout).
    private(set) var dropScratch: UnsafeMutablePointer<Float>?

    public init() throws(GFNError) {
        arena = try Arena(capacity: 0)
    }

    /// Rows (sequences) of the last traced forward.
    public var rows: Int { plan?.rows ?? 0 }
    /// Tokens per row of the last traced forward.
    public var T: Int { plan?.T ?? 0 }
    /// The caches the rows were appended to.
    public var rowCaches: [KVCache] { caches }
    /// The slot in its cache where each row's chunk starts.
    public var rowStarts: [Int] { start }
    /// Position ids of the chunk's tokens, [rows·T], −1 for left padding.
    public var tokenPositions: [Int32] { positions }
    /// The final hidden states (after ln_f) of the last traced forward, [rows·T, n_embd].
    public var hiddenStates: UnsafePointer<Float>? { hidden.map { UnsafePointer($0) } }

    /// Fills `mask` ([m, n]) with a fresh inverted-dropout mask and writes the dropped input x·mask to `out`.
    func dropout(x: UnsafePointer<Float>, ldx: Int, m: Int, n: Int, mask: UnsafeMutablePointer<Float>,
                 out: UnsafeMutablePointer<Float>) {
        var rng = dropoutRNG ?? RNG(seed: 0)
        ForwardTrace.dropout(x: x, ldx: ldx, m: m, n: n, p: dropoutP, rng: &rng, mask: mask, out: out)
        dropoutRNG = rng
    }

    /// LoRA's inverted dropout (PEFT's lora_dropout): mask[i, j] = 0 with probability p, else 1/(1−p), drawn
    /// row-major from `rng`; out = x·mask ([m, n], x with leading dimension ldx).
    static func dropout(x: UnsafePointer<Float>, ldx: Int, m: Int, n: Int, p: Float, rng: inout RNG,
                        mask: UnsafeMutablePointer<Float>, out: UnsafeMutablePointer<Float>) {
        let keep = 1 / (1 - p)
        for i in 0..<m {
            let mi = mask + i * n, oi = out + i * n, xi = x + i * ldx
            for j in 0..<n {
                let k: Float = rng.uniformFloat() < p ? 0 : keep
                mi[j] = k
                oi[j] = xi[j] * k
            }
        }
    }

    func begin(plan: ForwardPlan, adapter: LoRAAdapter?) throws(GFNError) {
        let c = plan.config
        let N = plan.tokens, E = c.nEmbd, I = c.nInner, H = c.nHead
        let probsCount = plan.keys.reduce(0) { $0 + H * plan.T * $1 }
        let gpt2 = c.arch == .gpt2
        var perLayer: [Int] = [N * E, N * E, N, N, 3 * N * E, N * E, N * I, N * I, N * E, N * max(plan.maxRank, 1), probsCount]
        if gpt2 { perLayer += [N * E, N * E, N, N] }
        let p = (adapter?.dropout ?? 0)
        let useDropout = dropoutRNG != nil && p > 0 && p < 1
        dropoutP = useDropout ? p : 0
        var loraSizes: [[Int]] = []
        for l in 0..<c.nLayer {
            var s: [Int] = []
            if let adapter {
                for name in ForwardTrace.moduleNames(layer: l, config: c) {
                    if let f = adapter.factors(for: name) {
                        s.append(N * f.rank)
                        if useDropout { s.append(N * f.inFeatures) }
                    }
                }
            }
            loraSizes.append(s)
        }
        let total = c.nLayer * Arena.footprint(perLayer) + Arena.footprint(loraSizes.flatMap { $0 })
            + Arena.footprint([N * E, N * E, N * E, N, N]) + (useDropout ? Arena.footprint([N * max(E, I)]) : 0)
        try arena.reserve(total)
        var ls: [LayerBuffers] = []
        for l in 0..<c.nLayer {
            let xIn = try arena.take(N * E)
            let ln1 = try arena.take(N * E)
            let m1 = try arena.take(N), r1 = try arena.take(N)
            let qkv = try arena.take(3 * N * E)
            let att = try arena.take(N * E)
            let fc = try arena.take(N * I)
            let act = try arena.take(N * I)
            let tmp = try arena.take(N * E)
            let lora = try arena.take(N * max(plan.maxRank, 1))
            let probs = try arena.take(probsCount)
            let b = LayerBuffers(ln1: ln1, qkv: qkv, att: att, fc: fc, act: act, tmp: tmp, loraScratch: lora, probs: probs)
            b.xIn = xIn; b.ln1Mean = m1; b.ln1Rstd = r1
            if gpt2 {
                b.xMid = try arena.take(N * E)
                b.ln2 = try arena.take(N * E)
                b.ln2Mean = try arena.take(N)
                b.ln2Rstd = try arena.take(N)
            }
            b.perRow = true
            b.T = plan.T
            b.heads = H
            var off = 0
            b.probsRowOffset = plan.keys.map { k in defer { off += H * plan.T * k }; return off }
            b.probsRowKeys = plan.keys
            if let adapter {
                for name in ForwardTrace.moduleNames(layer: l, config: c) {
                    if let f = adapter.factors(for: name) {
                        b.loraOutputs[name] = try arena.take(N * f.rank)
                        if useDropout { b.loraMasks[name] = try arena.take(N * f.inFeatures) }
                    }
                }
            }
            ls.append(b)
        }
        dropScratch = useDropout ? try arena.take(N * max(E, I)) : nil
        layers = ls
        residual = try arena.take(N * E)
        hidden = try arena.take(N * E)
        preFinal = try arena.take(N * E)
        lnFMean = try arena.take(N)
        lnFRstd = try arena.take(N)
        self.plan = plan
        self.adapter = adapter
    }

    func record(tokens: UnsafeBufferPointer<Int32>, caches: [KVCache], start: [Int], positions: UnsafePointer<Int32>,
                segments: [[KVSegment]], keys: [Int]) {
        self.tokens = Array(tokens)
        self.caches = caches
        self.start = start
        self.positions = Array(UnsafeBufferPointer(start: positions, count: tokens.count))
        self.segments = segments
    }

    /// The Hugging Face module names of one layer's linear maps, for both architectures.
    static func moduleNames(layer l: Int, config c: ModelConfig) -> [String] {
        let p = "transformer.h.\(l)."
        switch c.arch {
        case .gpt2: return [p + "attn.c_attn", p + "attn.c_proj", p + "mlp.c_fc", p + "mlp.c_proj"]
        case .gptj: return [p + "attn.q_proj", p + "attn.k_proj", p + "attn.v_proj", p + "attn.out_proj",
                            p + "mlp.fc_in", p + "mlp.fc_out"]
        }
    }
}
