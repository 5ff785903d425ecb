/// The native GPT-2 / GPT-J forward pass in fp32 (llm.c style: one function per operation, all matrix products
/// through BLAS). Immutable and shareable by any number of threads; every call brings its own `ForwardWorkspace`
/// (scratch memory) and `KVCache`s.
public final class Transformer: @unchecked Sendable {
    public let weights: ModelWeights
    public var config: ModelConfig { weights.config }
    /// Threads used for attention and element-wise work (BLAS uses its own pool).
    public let threads: Int
    /// Whether fp32 products of at least `PackedMatrix.minRows` rows use the weights' packed copies (where
    /// `ModelWeights.packForRowBatches` made them) instead of cblas_sgemm. Results differ from the unpacked path
    /// at rounding level, so only the transformers that ask for it use them (a GFlowNet trainer's); the model's
    /// own transformer keeps its results whether or not a trainer packed its weights.
    public let usesPackedWeights: Bool
    /// Whether decoding steps (T = 1) and the head of `logits(decoding: true)` use products whose arithmetic for a
    /// row does not depend on the other rows (`BLAS.gemmRowInvariant`): a sequence then gets the same tokens and
    /// log-probabilities whatever else shares its decoding batch (a `Batcher` mixing requests, or one
    /// `InferenceContext.sample` call). Prefill (one prompt, T tokens) keeps the fastest products: its rows are
    /// always the same prompt's.
    public let rowInvariantDecoding: Bool
    /// The model's compute budget, shared by every transformer on these weights (see `ComputeGate`).
    public var gate: ComputeGate { weights.computeGate }
    /// GPT-J rotary tables: cos and sin of position·inv_freq, [n_positions, rotary_dim/2].
    let rotaryCos: [Float]
    let rotarySin: [Float]

    public init(weights: ModelWeights, threads: Int = Parallel.cpuCount, usesPackedWeights: Bool = false,
                rowInvariantDecoding: Bool = false) {
        BLAS.useOwnThreads()
        self.weights = weights
        self.threads = max(1, threads)
        self.usesPackedWeights = usesPackedWeights
        self.rowInvariantDecoding = rowInvariantDecoding
        let c = weights.config
        if c.arch == .gptj {
            let half = c.rotaryDim / 2
            var cosT = [Float](repeating: 0, count: c.nPositions * half)
            var sinT = [Float](repeating: 0, count: c.nPositions * half)
            // As Hugging Face computes it: inv_freq = 1 / base^(2i/R) in fp32, angle = pos · inv_freq in fp32.
            for i in 0..<half {
                let expo = Float(2 * i) / Float(c.rotaryDim)
                let invFreq: Float = 1 / powf(c.rotaryBase, expo)
                for p in 0..<c.nPositions {
                    let angle = Float(p) * invFreq
                    cosT[p * half + i] = cosf(angle)
                    sinT[p * half + i] = sinf(angle)
                }
            }
            rotaryCos = cosT
            rotarySin = sinT
        } else {
            rotaryCos = []
            rotarySin = []
        }
    }

    /// A KV cache for this model.
    public func makeCache(capacity: Int, prefix: KVCache? = nil) throws(GFNError) -> KVCache {
        try KVCache(config: config, capacity: capacity, prefix: prefix)
    }

    // MARK: - Forward

    /// Runs `rows` sequences of `T` new tokens each (`tokens` row-major [rows, T]) through the model, appending
    /// their keys and values to `caches[r]`. `padding[r]` (optional) marks the first slots of row r as left
    /// padding; it is only allowed on an empty cache without prefix. Returns the final hidden states (after ln_f),
    /// [rows·T, n_embd], valid until the next use of `workspace`. With `trace`, every activation the backward pass
    /// needs is kept there instead of in the workspace.
    ///
    /// `adapterGroups` (inference only, instead of `adapter`): rows of one batch under different adapters, each
    /// group a contiguous range of rows with its own low-rank delta over the shared base products.
    public func forward(tokens: UnsafeBufferPointer<Int32>, rows: Int, T: Int, caches: [KVCache],
                        padding: [Int]? = nil, adapter: LoRAAdapter? = nil, adapterGroups: [AdapterGroup]? = nil,
                        workspace: ForwardWorkspace, trace: ForwardTrace? = nil)
        throws(GFNError) -> UnsafeMutablePointer<Float> {
        guard rows > 0, T > 0 else { throw .invalidArgument("empty batch (rows = \(rows), T = \(T))") }
        return try gate.run { () throws(GFNError) -> UnsafeMutablePointer<Float> in
            try forwardHoldingGate(tokens: tokens, layout: RowLayout(rows: rows, T: T), caches: caches,
                                   padding: padding, adapter: adapter, adapterGroups: adapterGroups,
                                   rowInvariant: rowInvariantDecoding && T == 1, workspace: workspace, trace: trace)
        }
    }

    /// Prefills prompts of different lengths in one pass: `tokens` holds the prompts one after the other,
    /// `lengths[r]` tokens for row r, appended to `caches[r]`. The matrix products run over all prompts' tokens
    /// together (the weights are read once for all of them); attention stays per prompt. With
    /// `rowInvariantDecoding` every product uses the row-invariant kernels, so a prompt's cache and hidden states
    /// are bit-identical to prefilling it alone, whatever else is in the pass (on quantized weights the two integer
    /// kernels share one arithmetic, so the number of rows may choose between them). Returns the final hidden states
    /// [Σ lengths, n_embd] (row r's last token at Σ_{j≤r} lengths[j] − 1), valid until the next use of `workspace`.
    public func prefill(tokens: UnsafeBufferPointer<Int32>, lengths: [Int], caches: [KVCache],
                        adapter: LoRAAdapter? = nil, adapterGroups: [AdapterGroup]? = nil,
                        workspace: ForwardWorkspace) throws(GFNError) -> UnsafeMutablePointer<Float> {
        guard !lengths.isEmpty, lengths.allSatisfy({ $0 > 0 }) else {
            throw .invalidArgument("prefill needs at least one prompt and no empty prompt (lengths \(lengths))")
        }
        return try gate.run { () throws(GFNError) -> UnsafeMutablePointer<Float> in
            try forwardHoldingGate(tokens: tokens, layout: RowLayout(lengths: lengths), caches: caches,
                                   padding: nil, adapter: adapter, adapterGroups: adapterGroups,
                                   rowInvariant: rowInvariantDecoding, workspace: workspace, trace: nil)
        }
    }

    private func forwardHoldingGate(tokens: UnsafeBufferPointer<Int32>, layout: RowLayout, caches: [KVCache],
                                    padding: [Int]?, adapter: LoRAAdapter?, adapterGroups: [AdapterGroup]?,
                                    rowInvariant: Bool, workspace: ForwardWorkspace, trace: ForwardTrace?)
        throws(GFNError) -> UnsafeMutablePointer<Float> {
        let c = config
        let rows = layout.rows
        let lora = try LoRARouting(adapter: adapter, groups: adapterGroups, layout: layout, traced: trace != nil)
        let E = c.nEmbd, I = c.nInner, H = c.nHead, D = c.headDim
        guard trace == nil || layout.isUniform else { throw .internalError("a traced forward needs equal row lengths") }
        guard tokens.count == layout.tokens else {
            throw .invalidArgument("token buffer holds \(tokens.count) ids, expected \(layout.tokens)")
        }
        guard caches.count == rows else { throw .invalidArgument("\(caches.count) caches for \(rows) rows") }
        if let padding, padding.count != rows { throw .invalidArgument("\(padding.count) padding values for \(rows) rows") }
        for (r, cache) in caches.enumerated() {
            guard cache.nLayer == c.nLayer, cache.nHead == H, cache.headDim == D else {
                throw .invalidArgument("cache of row \(r) belongs to a different model")
            }
            let T = layout.lengths[r]
            guard cache.length + T <= cache.capacity else {
                throw .outOfRange("row \(r): KV cache full (\(cache.length) + \(T) > capacity \(cache.capacity))")
            }
            for j in 0..<r where caches[j] === cache { throw .invalidArgument("rows \(j) and \(r) share one cache") }
            let pad = padding?[r] ?? 0
            if pad != 0 {
                guard cache.length == 0, cache.prefix == nil, pad > 0, pad <= T else {
                    throw .invalidArgument("row \(r): padding \(pad) is only allowed on an empty cache without prefix")
                }
            }
            let lastPos = cache.positionBase + (cache.length + T) - max(cache.padding, pad) - 1
            guard lastPos < c.nPositions else {
                throw .outOfRange("row \(r): position \(lastPos) is beyond the model's \(c.nPositions) positions")
            }
            for t in pad..<T {
                let tok = tokens[layout.offsets[r] + t]
                guard tok >= 0 && Int(tok) < c.vocabSize else {
                    throw .outOfRange("token id \(tok) at row \(r), position \(t) is outside the vocabulary (0..<\(c.vocabSize))")
                }
            }
        }
        // Commit padding and remember where this chunk starts.
        let start = caches.map { $0.length }
        if let padding { for r in 0..<rows where padding[r] > 0 { caches[r].padding = padding[r] } }
        let N = layout.tokens
        let segs = caches.enumerated().map { r, cache in cache.segmentsAfterAppending(layout.lengths[r]) }
        let keys = segs.map { $0.reduce(0) { $0 + $1.count } }
        let maxRank = lora.maxRank
        let plan = ForwardPlan(config: c, layout: layout, keys: keys, maxRank: maxRank, threads: threads)

        if let trace {
            try trace.begin(plan: plan, adapter: adapter)
        } else {
            try workspace.begin(plan: plan)
        }
        func buffers(_ l: Int) -> LayerBuffers { trace?.layers[l] ?? workspace.layer }
        let x = trace?.residual ?? workspace.residual  // [N, E] residual stream

        // Embeddings.
        let positions = try workspace.positions(N)
        for r in 0..<rows {
            let cache = caches[r]
            for t in 0..<layout.lengths[r] {
                let slot = start[r] + t
                positions[layout.offsets[r] + t] = slot < cache.padding ? -1 : Int32(cache.position(ofSlot: slot))
            }
        }
        embed(tokens: tokens, positions: positions, count: N, into: x)

        for l in 0..<c.nLayer {
            let b = buffers(l)
            let block = weights.blocks[l]
            if let xIn = b.xIn { xIn.update(from: x, count: N * E) }
            layerNorm(x, b.ln1, rows: N, weights: block.ln1, mean: b.ln1Mean, rstd: b.ln1Rstd)
            // q | k | v into qkv [N, 3E]
            switch block.qkv {
            case .fused(let lin):
                try applyLinear(lin, x: b.ln1, ldx: E, m: N, y: b.qkv, ldy: 3 * E, lora: lora, rowInvariant: rowInvariant, buffers: b, trace: trace)
            case .separate(let q, let k, let v):
                try applyLinear(q, x: b.ln1, ldx: E, m: N, y: b.qkv, ldy: 3 * E, lora: lora, rowInvariant: rowInvariant, buffers: b, trace: trace)
                try applyLinear(k, x: b.ln1, ldx: E, m: N, y: b.qkv + E, ldy: 3 * E, lora: lora, rowInvariant: rowInvariant, buffers: b, trace: trace)
                try applyLinear(v, x: b.ln1, ldx: E, m: N, y: b.qkv + 2 * E, ldy: 3 * E, lora: lora, rowInvariant: rowInvariant, buffers: b, trace: trace)
            }
            if c.arch == .gptj { rotate(b.qkv, positions: positions, count: N) }
            storeKV(layer: l, qkv: b.qkv, layout: layout, caches: caches, start: start)
            attention(layer: l, qkv: b.qkv, out: b.att, layout: layout, caches: caches, start: start,
                      segments: segs, keys: keys, buffers: b)
            switch c.arch {
            case .gpt2:
                try applyLinear(block.attnOut, x: b.att, ldx: E, m: N, y: b.tmp, ldy: E, lora: lora, rowInvariant: rowInvariant, buffers: b, trace: trace)
                Kernels.add(x, b.tmp, count: N * E)
                if let xMid = b.xMid { xMid.update(from: x, count: N * E) }
                guard let ln2 = block.ln2, let ln2Out = b.ln2 else { throw .internalError("GPT-2 block without ln_2") }
                layerNorm(x, ln2Out, rows: N, weights: ln2, mean: b.ln2Mean, rstd: b.ln2Rstd)
                try applyLinear(block.fcIn, x: ln2Out, ldx: E, m: N, y: b.fc, ldy: I, lora: lora, rowInvariant: rowInvariant, buffers: b, trace: trace)
                activation(b.fc, b.act, count: N * I)
                try applyLinear(block.fcOut, x: b.act, ldx: I, m: N, y: b.tmp, ldy: E, lora: lora, rowInvariant: rowInvariant, buffers: b, trace: trace)
                Kernels.add(x, b.tmp, count: N * E)
            case .gptj:
                // Parallel residual: x + attn(ln_1 x) + mlp(ln_1 x).
                try applyLinear(block.attnOut, x: b.att, ldx: E, m: N, y: b.tmp, ldy: E, lora: lora, rowInvariant: rowInvariant, buffers: b, trace: trace)
                Kernels.add(x, b.tmp, count: N * E)
                try applyLinear(block.fcIn, x: b.ln1, ldx: E, m: N, y: b.fc, ldy: I, lora: lora, rowInvariant: rowInvariant, buffers: b, trace: trace)
                activation(b.fc, b.act, count: N * I)
                try applyLinear(block.fcOut, x: b.act, ldx: I, m: N, y: b.tmp, ldy: E, lora: lora, rowInvariant: rowInvariant, buffers: b, trace: trace)
                Kernels.add(x, b.tmp, count: N * E)
            }
        }
        for r in 0..<rows { caches[r].length = start[r] + layout.lengths[r] }
        trace?.record(tokens: tokens, caches: caches, start: start, positions: positions, segments: segs, keys: keys)
        let hidden = trace?.hidden ?? workspace.hidden
        if let pre = trace?.preFinal { pre.update(from: x, count: N * E) }
        layerNorm(x, hidden, rows: N, weights: weights.lnF, mean: trace?.lnFMean, rstd: trace?.lnFRstd)
        return hidden
    }

    /// Logits [count, V] for `count` hidden rows (contiguous [count, E]), plus the adapter's update of `lm_head`
    /// when it has one (the policy; pass nil for the base model).
    ///
    /// `decoding`: the rows are sequences of a decoding batch (with `rowInvariantDecoding`, each row's logits then
    /// do not depend on the other rows). `adapterGroups` (instead of `adapter`): per-row-range adapters, as in
    /// `forward`.
    public func logits(hidden: UnsafePointer<Float>, count: Int, adapter: LoRAAdapter?,
                       adapterGroups: [AdapterGroup]? = nil, decoding: Bool = false,
                       into out: UnsafeMutablePointer<Float>) throws(GFNError) {
        let c = config
        let lora = try LoRARouting(adapter: adapter, groups: adapterGroups, layout: RowLayout(rows: count, T: 1),
                                   traced: false)
        let rowInvariant = rowInvariantDecoding && decoding
        try gate.run { () throws(GFNError) in
            switch weights.head {
            case .tied:
                weights.embedding.multiply(x: hidden, ldx: c.nEmbd, m: count, y: out, ldy: c.vocabSize,
                                           threads: threads, packed: usesPackedWeights, rowInvariant: rowInvariant)
            case .linear(let lin):
                lin.apply(x: hidden, ldx: c.nEmbd, m: count, y: out, ldy: c.vocabSize, threads: threads,
                          packed: usesPackedWeights, rowInvariant: rowInvariant)
            }
            guard count > 0 else { return }
            for group in lora.groups {
                guard let f = group.adapter.headFactors else { continue }
                try checkHeadFactors(f)
                let r = f.rank, n = group.rows.count, r0 = group.rows.lowerBound
                try withUnsafeTemporaryAllocation(of: Float.self, capacity: n * r) { (u) throws(GFNError) in
                    guard let up = u.baseAddress else { return }
                    if rowInvariant {
                        try addLowRankRowInvariant(f, x: hidden + r0 * c.nEmbd, ldx: c.nEmbd, m: n, u: up,
                                                   y: out + r0 * c.vocabSize, ldy: c.vocabSize)
                    } else {
                        addHeadUpdate(f, x: hidden + r0 * c.nEmbd, count: n, u: up, out: out + r0 * c.vocabSize)
                    }
                }
            }
        }
    }

    /// out[count, V] += scale · u · Bᵀ with u = x · Aᵀ ([count, r], written): the LoRA branch of the head.
    func addHeadUpdate(_ f: LoRAFactors, x: UnsafePointer<Float>, count: Int, u: UnsafeMutablePointer<Float>,
                       out: UnsafeMutablePointer<Float>) {
        let E = config.nEmbd, V = config.vocabSize, r = f.rank
        BLAS.gemm(m: count, n: r, k: E, a: x, lda: E, b: f.a.pointer, ldb: E, transB: true, c: u, ldc: r,
                  threads: threads)
        BLAS.gemm(m: count, n: V, k: r, a: u, lda: r, b: f.b.pointer, ldb: r, transB: true, c: out, ldc: V,
                  alpha: f.scale, beta: 1, threads: threads)
    }

    /// y[m, out] += scale · (x · Aᵀ) · Bᵀ with row-invariant products (u [m, r] is scratch): the LoRA branch of a
    /// decoding step, each row's delta independent of the other rows.
    func addLowRankRowInvariant(_ f: LoRAFactors, x: UnsafePointer<Float>, ldx: Int, m: Int,
                                u: UnsafeMutablePointer<Float>, y: UnsafeMutablePointer<Float>,
                                ldy: Int) throws(GFNError) {
        let r = f.rank, nIn = f.inFeatures, nOut = f.outFeatures
        BLAS.gemmRowInvariant(m: m, n: r, k: nIn, a: x, lda: ldx, b: f.a.pointer, ldb: nIn, transB: true,
                              c: u, ldc: r, threads: 1)
        let delta = try scratchPool.take(m * nOut)  // pooled: no allocation per step once warm
        defer { scratchPool.give(delta) }
        BLAS.gemmRowInvariant(m: m, n: nOut, k: r, a: u, lda: r, b: f.b.pointer, ldb: r, transB: true,
                              c: delta.base, ldc: nOut, threads: threads)
        for i in 0..<m { Kernels.axpy(y + i * ldy, f.scale, delta.base + i * nOut, count: nOut) }
    }

    func checkHeadFactors(_ f: LoRAFactors) throws(GFNError) {
        guard f.inFeatures == config.nEmbd, f.outFeatures == config.vocabSize else {
            throw .state("LoRA factors for lm_head have shape A \(f.a.shape), B \(f.b.shape); the head is \(config.nEmbd)→\(config.vocabSize)")
        }
    }

    // MARK: - Pieces

    func embed(tokens: UnsafeBufferPointer<Int32>, positions: UnsafeMutablePointer<Int32>, count: Int,
               into x: UnsafeMutablePointer<Float>) {
        let E = config.nEmbd
        let emb = weights.embedding
        let wpe = weights.wpe?.pointer
        for i in 0..<count {
            let xi = x + i * E
            let pos = Int(positions[i])
            if pos < 0 {
                xi.update(repeating: 0, count: E)
                continue
            }
            emb.column(Int(tokens[i]), into: xi)
            if let wpe { Kernels.add(xi, wpe + pos * E, count: E) }
        }
    }

    func layerNorm(_ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, rows: Int, weights w: LayerNormWeights,
                   mean: UnsafeMutablePointer<Float>?, rstd: UnsafeMutablePointer<Float>?) {
        let E = config.nEmbd, eps = config.layerNormEps
        let g = w.gamma.pointer, b = w.beta.pointer
        let t = rows * E >= 1 << 16 ? threads : 1
        Parallel.chunks(rows, threads: t) { _, range in
            let o = range.lowerBound
            Kernels.layerNorm(x + o * E, out + o * E, rows: range.count, n: E, gamma: g, beta: b, eps: eps,
                              mean: mean.map { $0 + o }, rstd: rstd.map { $0 + o })
        }
    }

    func activation(_ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, count: Int) {
        let act = config.activation
        let chunk = 1 << 14
        let t = count >= 1 << 16 ? threads : 1
        Parallel.chunks((count + chunk - 1) / chunk, threads: t) { _, range in
            let lo = range.lowerBound * chunk, hi = min(count, range.upperBound * chunk)
            switch act {
            case .geluNew: Kernels.geluNew(x + lo, out + lo, count: hi - lo)
            case .gelu: Kernels.geluErf(x + lo, out + lo, count: hi - lo)
            }
        }
    }

    /// y[m, out] = x[m, in]·W + b (+ scale·(x·Aᵀ)·Bᵀ for each row group whose adapter has this module).
    func applyLinear(_ lin: Linear, x: UnsafePointer<Float>, ldx: Int, m: Int, y: UnsafeMutablePointer<Float>,
                     ldy: Int, lora: LoRARouting, rowInvariant: Bool,
                     buffers: LayerBuffers, trace: ForwardTrace?) throws(GFNError) {
        let nIn = lin.inFeatures, nOut = lin.outFeatures
        lin.apply(x: x, ldx: ldx, m: m, y: y, ldy: ldy, threads: threads, packed: usesPackedWeights,
                  rowInvariant: rowInvariant)
        for group in lora.groups {
            guard let f = group.adapter.factors(for: lin.name) else { continue }
            guard f.inFeatures == nIn, f.outFeatures == nOut else {
                throw .state("LoRA factors for \(lin.name) have shape A \(f.a.shape), B \(f.b.shape); the module is \(nIn)→\(nOut)")
            }
            let r = f.rank
            let span = lora.layout.tokenRange(ofRows: group.rows)
            let n0 = span.lowerBound, n = span.count
            let t = buffers.loraOutput(lin.name) ?? buffers.loraScratch
            if rowInvariant {
                try addLowRankRowInvariant(f, x: x + n0 * ldx, ldx: ldx, m: n, u: t, y: y + n0 * ldy, ldy: ldy)
                continue
            }
            var xa = x + n0 * ldx, lda = ldx
            if let trace, let mask = buffers.loraMasks[lin.name], let scratch = trace.dropScratch {
                // Training-mode LoRA dropout on the branch input (inverted: kept values scaled by 1/(1−p)).
                trace.dropout(x: x, ldx: ldx, m: m, n: nIn, mask: mask, out: scratch)
                xa = UnsafePointer(scratch); lda = nIn
            }
            // t[n, r] = x · Aᵀ, then y += scale · t · Bᵀ
            BLAS.gemm(m: n, n: r, k: nIn, a: xa, lda: lda, b: f.a.pointer, ldb: nIn, transB: true, c: t, ldc: r,
                      threads: threads)
            BLAS.gemm(m: n, n: nOut, k: r, a: t, lda: r, b: f.b.pointer, ldb: r, transB: true, c: y + n0 * ldy,
                      ldc: ldy, alpha: f.scale, beta: 1, threads: threads)
        }
    }

    /// GPT-J's interleaved rotary embedding on the first rotary_dim dimensions of every q and k head: each pair
    /// (x₂ⱼ, x₂ⱼ₊₁) turns by θ = position·base^(−2j/rotary_dim). `inverse` turns by −θ instead, which is the
    /// backward pass (the rotation is orthogonal, its transpose is the inverse); the sign flip is exact, so the
    /// forward arithmetic is the same either way.
    func rotate(_ qkv: UnsafeMutablePointer<Float>, positions: UnsafePointer<Int32>, count: Int, inverse: Bool = false) {
        let c = config
        let E = c.nEmbd, H = c.nHead, D = c.headDim, half = c.rotaryDim / 2
        let sign: Float = inverse ? -1 : 1
        rotaryCos.withUnsafeBufferPointer { cosB in
            rotarySin.withUnsafeBufferPointer { sinB in
                guard let cosT = cosB.baseAddress, let sinT = sinB.baseAddress else { return }
                for i in 0..<count {
                    let pos = Int(positions[i])
                    if pos < 0 { continue }
                    let cs = cosT + pos * half, sn = sinT + pos * half
                    for part in 0..<2 {  // q then k
                        let base = qkv + i * 3 * E + part * E
                        for h in 0..<H {
                            let v = base + h * D
                            for j in 0..<half {
                                let x1 = v[2 * j], x2 = v[2 * j + 1], s = sign * sn[j]
                                v[2 * j] = x1 * cs[j] - x2 * s
                                v[2 * j + 1] = x2 * cs[j] + x1 * s
                            }
                        }
                    }
                }
            }
        }
    }

    /// Copies this chunk's keys and values (qkv columns E..<3E) into each row's cache.
    func storeKV(layer l: Int, qkv: UnsafePointer<Float>, layout: RowLayout, caches: [KVCache], start: [Int]) {
        let c = config
        let E = c.nEmbd, H = c.nHead, D = c.headDim
        for r in 0..<layout.rows {
            let cache = caches[r]
            for h in 0..<H {
                let kDst = cache.kPointer(layer: l, head: h), vDst = cache.vPointer(layer: l, head: h)
                for t in 0..<layout.lengths[r] {
                    let src = qkv + (layout.offsets[r] + t) * 3 * E + h * D
                    (kDst + (start[r] + t) * D).update(from: src + E, count: D)
                    (vDst + (start[r] + t) * D).update(from: src + 2 * E, count: D)
                }
            }
        }
    }

    /// Causal multi-head attention of this chunk's queries over each row's visible keys (prefix chain, then its
    /// own slots up to the query). Writes [N, E] to `out`; with a trace, keeps the probabilities.
    func attention(layer l: Int, qkv: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>, layout: RowLayout,
                   caches: [KVCache], start: [Int], segments: [[KVSegment]], keys: [Int], buffers: LayerBuffers) {
        let c = config
        let E = c.nEmbd, H = c.nHead, D = c.headDim
        let scale = 1 / Float(D).squareRoot()
        let work = layout.rows * H
        let threadsHere = (layout.tokens * (keys.max() ?? 0) * H * D) >= 1 << 15 ? threads : 1
        Parallel.chunks(work, threads: threadsHere) { worker, range in
            for item in range {
                let r = item / H, h = item % H
                let cache = caches[r]
                let segs = segments[r]
                let K = keys[r]
                let T = layout.lengths[r]
                let probs = buffers.probabilities(row: r, head: h, worker: worker)
                let q = qkv + layout.offsets[r] * 3 * E + h * D
                let o = out + layout.offsets[r] * E + h * D
                // scores [T, K]
                var col = 0
                for s in segs {
                    if s.count > 0 {
                        BLAS.gemm(m: T, n: s.count, k: D, a: q, lda: 3 * E,
                                  b: s.cache.kPointer(layer: l, head: h), ldb: D, transB: true,
                                  c: probs + col, ldc: K, alpha: scale)
                    }
                    col += s.count
                }
                // masks and softmax per query
                let ownCol = K - segs[segs.count - 1].count
                for t in 0..<T {
                    let row = probs + t * K
                    let slot = start[r] + t
                    if slot < cache.padding {
                        row.update(repeating: 0, count: K)
                        continue
                    }
                    var colBase = 0
                    for (si, s) in segs.enumerated() where si < segs.count - 1 {
                        if s.padding > 0 { (row + colBase).update(repeating: -.infinity, count: min(s.padding, s.count)) }
                        colBase += s.count
                    }
                    // own segment: slots < padding and slots > query are masked
                    let own = row + ownCol
                    if cache.padding > 0 { own.update(repeating: -.infinity, count: cache.padding) }
                    let after = slot + 1
                    let ownCount = segs[segs.count - 1].count
                    if after < ownCount { (own + after).update(repeating: -.infinity, count: ownCount - after) }
                    Kernels.softmaxInPlace(row, n: K)
                }
                // out [T, D] = Σ_seg P[:, seg] · V_seg
                col = 0
                var first = true
                for s in segs {
                    if s.count > 0 {
                        BLAS.gemm(m: T, n: D, k: s.count, a: probs + col, lda: K,
                                  b: s.cache.vPointer(layer: l, head: h), ldb: D, c: o, ldc: E,
                                  beta: first ? 0 : 1)
                        first = false
                    }
                    col += s.count
                }
                if first {
                    for t in 0..<T { (o + t * E).update(repeating: 0, count: D) }
                }
            }
        }
    }
}

/// One run of keys in a row's attention: a cache of the chain and how many of its slots are visible.
struct KVSegment {
    let cache: KVCache
    let count: Int
    let padding: Int
}

extension KVCache {
    /// The row's segments as the next forward chunk of `T` tokens will see them (own segment grown by T).
    func segmentsAfterAppending(_ T: Int) -> [KVSegment] {
        var out: [KVSegment] = []
        for (cache, count) in segments() {
            let n = cache === self ? count + T : count
            out.append(KVSegment(cache: cache, count: n, padding: cache.padding))
        }
        return out
    }
}

/// Rows of a batch that run under one adapter (inference; `Transformer.forward(adapterGroups:)`).
public struct AdapterGroup: @unchecked Sendable {
    public let adapter: LoRAAdapter
    /// Rows (sequences) of the batch, a contiguous range.
    public let rows: Range<Int>
    public init(adapter: LoRAAdapter, rows: Range<Int>) {
        self.adapter = adapter
        self.rows = rows
    }
}

/// Which adapter applies to which rows in one pass: one adapter for every row (training, a context call) or
/// several groups (a batcher mixing requests).
struct LoRARouting {
    let groups: [AdapterGroup]
    /// Where each row's tokens lie: group g covers the flattened rows of its sequences.
    let layout: RowLayout
    var maxRank: Int {
        groups.map { g in
            max(g.adapter.factors.values.map(\.rank).max() ?? 0, g.adapter.headFactors?.rank ?? 0)
        }.max() ?? 0
    }

    init(adapter: LoRAAdapter?, groups: [AdapterGroup]?, layout: RowLayout, traced: Bool) throws(GFNError) {
        self.layout = layout
        let rows = layout.rows
        if let groups {
            guard adapter == nil else { throw .invalidArgument("pass either one adapter or adapter groups") }
            guard !traced || groups.isEmpty else { throw .invalidArgument("adapter groups are for inference only") }
            var covered = 0..<0
            for g in groups.sorted(by: { $0.rows.lowerBound < $1.rows.lowerBound }) {
                guard g.rows.lowerBound >= covered.upperBound, g.rows.upperBound <= rows else {
                    throw .invalidArgument("adapter groups overlap or leave the batch's \(rows) rows")
                }
                covered = g.rows
            }
            self.groups = groups.filter { !$0.rows.isEmpty }
        } else if let adapter {
            self.groups = [AdapterGroup(adapter: adapter, rows: 0..<rows)]
        } else {
            self.groups = []
        }
    }
}
