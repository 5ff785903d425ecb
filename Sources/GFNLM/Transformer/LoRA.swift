/// The low-rank update of one linear map, in PEFT's layout: A [r, in], B [out, r], y += scale · (x·Aᵀ)·Bᵀ.
/// The tensors share storage with the adapter: an optimiser updates them in place.
public struct LoRAFactors: @unchecked Sendable {
    public let a: Tensor
    public let b: Tensor
    public var scale: Float

    public init(a: Tensor, b: Tensor, scale: Float) throws(GFNError) {
        guard a.rank == 2, b.rank == 2, b.shape[1] == a.shape[0] else {
            throw .invalidArgument("LoRA factor shapes A \(a.shape), B \(b.shape) do not match")
        }
        self.a = a; self.b = b; self.scale = scale
    }

    public var rank: Int { a.shape[0] }
    public var inFeatures: Int { a.shape[1] }
    public var outFeatures: Int { b.shape[0] }
}

/// LoRA hyper-parameters with PEFT's meaning (`peft.LoraConfig`).
///
/// - `targets`: Hugging Face module names. An entry matches a module whose full name equals it or ends with
///   "." + entry (PEFT's rule), so on GPT-2 `c_proj` matches both `attn.c_proj` and `mlp.c_proj`, while
///   `attn.c_proj` matches only the attention projection. GPT-2 modules: `c_attn`, `c_proj`, `c_fc`; GPT-J:
///   `q_proj`, `k_proj`, `v_proj`, `out_proj`, `fc_in`, `fc_out`; both: `lm_head` (the output head, also when it
///   is tied to the token embedding: the update applies to the logits only, never to the embedding lookup).
/// - scale: `alpha / r`, or `alpha / √r` with `useRSLoRA`.
/// - `dropout`: inverted dropout on the LoRA branch input, applied only in training forwards (a `ForwardTrace`
///   with `dropoutRNG` set); inference never drops.
public struct LoRAConfig: Sendable, Equatable {
    public var r: Int
    public var alpha: Float
    public var dropout: Float
    public var targets: [String]
    public var useRSLoRA: Bool
    /// Written to adapter_config.json as `base_model_name_or_path` (PEFT stores the model id or a path).
    public var baseModelNameOrPath: String?

    public init(r: Int = 8, alpha: Float = 8, dropout: Float = 0, targets: [String], useRSLoRA: Bool = false,
                baseModelNameOrPath: String? = nil) {
        self.r = r; self.alpha = alpha; self.dropout = dropout; self.targets = targets
        self.useRSLoRA = useRSLoRA; self.baseModelNameOrPath = baseModelNameOrPath
    }

    /// The largest rank accepted (a sanity bound against absurd sizes).
    public static let maxRank = 1 << 16

    /// PEFT's default targets: GPT-2 `["c_attn"]`, GPT-J `["q_proj", "v_proj"]`.
    public static func defaultTargets(for arch: Architecture) -> [String] {
        switch arch {
        case .gpt2: return ["c_attn"]
        case .gptj: return ["q_proj", "v_proj"]
        }
    }

    /// The multiplier of the low-rank branch.
    public var scale: Float {
        useRSLoRA ? alpha / Float(r).squareRoot() : alpha / Float(r)
    }

    public func validate() throws(GFNError) {
        guard r > 0 else { throw .invalidArgument("LoRA rank r must be positive, got \(r)") }
        guard r <= LoRAConfig.maxRank else { throw .invalidArgument("LoRA rank r = \(r) is above the limit \(LoRAConfig.maxRank)") }
        guard alpha.isFinite else { throw .invalidArgument("LoRA alpha must be finite, got \(alpha)") }
        guard dropout >= 0 && dropout < 1 else { throw .invalidArgument("LoRA dropout must be in [0, 1), got \(dropout)") }
        guard !targets.isEmpty else { throw .invalidArgument("LoRA target_modules is empty") }
        for t in targets where t.isEmpty { throw .invalidArgument("LoRA target_modules contains an empty name") }
    }

    /// PEFT's rule: `entry` matches `module` when they are equal or `module` ends with "." + entry.
    public static func matches(module: String, entry: String) -> Bool {
        module == entry || module.hasSuffix("." + entry)
    }

    /// True when any target matches the module.
    public func matches(module: String) -> Bool {
        targets.contains { LoRAConfig.matches(module: module, entry: $0) }
    }
}

/// A set of LoRA updates keyed by Hugging Face module name ("transformer.h.0.attn.c_attn"). The base weights are
/// never modified: with an adapter the forward pass adds the low-rank branch (the policy), without one it is the
/// untouched base model (the reference / reward model). The same `ModelWeights` serve both.
public final class LoRAAdapter: @unchecked Sendable {
    public private(set) var factors: [String: LoRAFactors]
    /// Dropout probability on the LoRA branch input (training forwards only).
    public var dropout: Float
    /// The configuration the adapter was made or loaded with (nil for adapters assembled from raw factors).
    public let config: LoRAConfig?

    public init(factors: [String: LoRAFactors], dropout: Float = 0, config: LoRAConfig? = nil) {
        self.factors = factors
        self.dropout = dropout
        self.config = config
    }

    public func factors(for name: String) -> LoRAFactors? { factors[name] }

    /// Hugging Face's name of the output head (`GPT2LMHeadModel.lm_head`, `GPTJForCausalLM.lm_head`).
    public static let headModule = "lm_head"

    /// The update of the output head, if the adapter has one.
    public var headFactors: LoRAFactors? { factors[LoRAAdapter.headModule] }

    /// Adapted module names in model order (layer by layer, then the order of `ModelWeights.linears`).
    public var moduleNames: [String] {
        factors.keys.sorted { a, b in
            let ka = LoRAAdapter.sortKey(a), kb = LoRAAdapter.sortKey(b)
            return ka.layer != kb.layer ? ka.layer < kb.layer : (ka.rank != kb.rank ? ka.rank < kb.rank : a < b)
        }
    }

    /// (layer, order within the layer) parsed from "transformer.h.{i}.<module>"; unknown names sort last.
    static func sortKey(_ name: String) -> (layer: Int, rank: Int) {
        let parts = name.split(separator: ".")
        guard parts.count >= 4, parts[0] == "transformer", parts[1] == "h", let l = Int(parts[2]) else {
            return (Int.max, 0)
        }
        let rest = parts[3...].joined(separator: ".")
        let order = ["attn.c_attn", "attn.q_proj", "attn.k_proj", "attn.v_proj", "attn.c_proj", "attn.out_proj",
                     "mlp.c_fc", "mlp.fc_in", "mlp.c_proj", "mlp.fc_out"]
        return (l, order.firstIndex(of: rest) ?? order.count)
    }

    /// A new adapter for `model` with PEFT's initialisation: A Kaiming-uniform with a = √5 (as
    /// `torch.nn.init.kaiming_uniform_`: bound = gain·√(3/fan_in) with gain = √(2/(1+a²)), i.e. 1/√in), B zero,
    /// so the adapted model starts equal to the base model. A is drawn from `RNG(seed:)` module by module in model
    /// order, row-major. Throws, naming the model's modules, when no target matches.
    public convenience init(model: ModelWeights, config: LoRAConfig, seed: UInt64) throws(GFNError) {
        try config.validate()
        var rng = RNG(seed: seed)
        var factors: [String: LoRAFactors] = [:]
        var available: [String] = []
        func add(_ name: String, nIn: Int, nOut: Int) throws(GFNError) {
            available.append(name)
            guard config.matches(module: name) else { return }
            let a = try Tensor(zeros: [config.r, nIn])
            let bound = 1 / Double(nIn).squareRoot()
            let p = a.pointer
            for i in 0..<a.count { p[i] = Float((2 * rng.uniform() - 1) * bound) }
            factors[name] = try LoRAFactors(a: a, b: try Tensor(zeros: [nOut, config.r]), scale: config.scale)
        }
        for block in model.blocks {
            for lin in block.linears { try add(lin.name, nIn: lin.inFeatures, nOut: lin.outFeatures) }
        }
        // The head comes last (model order), so adding it leaves every block's initial A unchanged.
        try add(LoRAAdapter.headModule, nIn: model.config.nEmbd, nOut: model.config.vocabSize)
        if factors.isEmpty {
            let short = Set(available.map { name -> String in
                let parts = name.split(separator: ".")
                return parts.count >= 2 ? parts.suffix(2).joined(separator: ".") : name
            }).sorted()
            throw .invalidArgument("LoRA target_modules \(config.targets) match no module of this model; "
                + "available: \(short.joined(separator: ", ")) (a bare name such as \"\(short.first.map { String($0.split(separator: ".").last ?? "") } ?? "")\" matches every layer)")
        }
        self.init(factors: factors, dropout: config.dropout, config: config)
    }

    /// An independent copy (new storage for every factor).
    public func copy() throws(GFNError) -> LoRAAdapter {
        var out: [String: LoRAFactors] = [:]
        for (k, f) in factors { out[k] = try LoRAFactors(a: f.a.copy(), b: f.b.copy(), scale: f.scale) }
        return LoRAAdapter(factors: out, dropout: dropout, config: config)
    }

    /// Total number of trainable values (Σ r·(in + out)).
    public var parameterCount: Int { factors.values.reduce(0) { $0 + $1.a.count + $1.b.count } }
}

extension LoRAAdapter {
    static let tiedHeadMergeMessage = "a LoRA update of lm_head cannot be merged into a head tied to the token "
        + "embedding (the merged head would no longer be the embedding); use the adapter unmerged"

    /// A copy of `model` with every adapted weight replaced by W + scale·(B·A)ᵀ (gfnlm's [in, out] layout; PEFT's
    /// `merge_and_unload` with fan_in_fan_out), for export. Unadapted tensors are shared, not copied.
    /// Refused (`.unsupported`) for bf16 weights.
    public func mergedWeights(_ model: ModelWeights) throws(GFNError) -> ModelWeights {
        try validate(against: model)
        if headFactors != nil, case .tied = model.head {
            throw .unsupported(LoRAAdapter.tiedHeadMergeMessage)
        }
        guard model.weightType == .f32 else {
            throw .unsupported("merging a LoRA adapter needs fp32 weights; this model's matrices are stored in \(model.weightType)")
        }
        func merge(_ l: Linear) throws(GFNError) -> Linear {
            guard let f = factors(for: l.name) else { return l }
            let w = try l.weight.copy()
            // W[in, out] += s · Aᵀ[in, r] · Bᵀ[r, out]
            BLAS.gemm(m: l.inFeatures, n: l.outFeatures, k: f.rank, a: f.a.pointer, lda: f.inFeatures, transA: true,
                      b: f.b.pointer, ldb: f.rank, transB: true, c: w.pointer, ldc: l.outFeatures, alpha: f.scale, beta: 1)
            return try Linear(name: l.name, weight: w, bias: l.bias)
        }
        var blocks: [BlockWeights] = []
        for b in model.blocks {
            let qkv: QKVProjection
            switch b.qkv {
            case .fused(let l): qkv = .fused(try merge(l))
            case .separate(let q, let k, let v): qkv = .separate(q: try merge(q), k: try merge(k), v: try merge(v))
            }
            blocks.append(BlockWeights(ln1: b.ln1, ln2: b.ln2, qkv: qkv, attnOut: try merge(b.attnOut),
                                       fcIn: try merge(b.fcIn), fcOut: try merge(b.fcOut)))
        }
        var head = model.head
        if case .linear(let h) = model.head { head = .linear(try merge(h)) }
        return try ModelWeights(config: model.config, wte: model.wte, wpe: model.wpe, blocks: blocks, lnF: model.lnF,
                                head: head, keepAlive: model.keepAlive)
    }
}
