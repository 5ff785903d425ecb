/// LoRA adapters in Hugging Face PEFT's directory layout, so they move between gfnlm and PEFT in both directions:
///
/// - `adapter_config.json`: PEFT's fields (`peft_type` "LORA", `r`, `lora_alpha`, `lora_dropout`,
///   `target_modules`, `fan_in_fan_out` (true for GPT-2's Conv1D), `bias` "none", `task_type` "CAUSAL_LM",
///   `use_rslora`, `base_model_name_or_path`, `inference_mode`, `modules_to_save`, …), Python's
///   `json.dumps(indent=2, sort_keys=True)` layout.
/// - `adapter_model.safetensors`: F32 tensors `base_model.model.<module>.lora_A.weight` [r, in] and
///   `….lora_B.weight` [out, r], metadata {"format": "pt"}.
///
/// The directory is written atomically (temporary directory, then rename).
extension LoRAAdapter {
    public static let peftConfigFile = "adapter_config.json"
    public static let peftWeightsFile = "adapter_model.safetensors"
    static let peftKeyPrefix = "base_model.model."

    /// The adapter_config.json object PEFT would write for this adapter on a model of architecture `arch`.
    public func peftConfig(arch: Architecture) throws(GFNError) -> JSONValue {
        let names = moduleNames
        guard let first = names.first, let f0 = factors(for: first) else { throw .state("empty adapter") }
        let r = f0.rank
        for n in names where factors(for: n)?.rank != r {
            throw .unsupported("adapter modules have different ranks; PEFT's rank_pattern is not written")
        }
        let cfg = config
        let useRS = cfg?.useRSLoRA ?? false
        let alpha: Float = cfg?.alpha ?? (useRS ? f0.scale * Float(r).squareRoot() : f0.scale * Float(r))
        for n in names where factors(for: n)?.scale != f0.scale {
            throw .unsupported("adapter modules have different scales; PEFT's alpha_pattern is not written")
        }
        // target_modules: the configured entries, or the bare module names (c_attn, q_proj, ...)
        let targets = cfg?.targets ?? Array(Set(names.map { String($0.split(separator: ".").last ?? "") })).sorted()
        var o = JSONObject()
        o["alpha_pattern"] = .object(JSONObject())
        o["auto_mapping"] = .null
        o["base_model_name_or_path"] = cfg?.baseModelNameOrPath.map { .string($0) } ?? .null
        o["bias"] = "none"
        o["fan_in_fan_out"] = .bool(arch == .gpt2)
        o["inference_mode"] = true
        o["init_lora_weights"] = true
        o["layers_pattern"] = .null
        o["layers_to_transform"] = .null
        o["lora_alpha"] = JSONValue.shortFloat(alpha)
        o["lora_dropout"] = JSONValue.shortFloat(dropout)
        o["modules_to_save"] = .null
        o["peft_type"] = "LORA"
        o["r"] = .int(Int64(r))
        o["rank_pattern"] = .object(JSONObject())
        o["revision"] = .null
        o["target_modules"] = .array(targets.sorted().map { .string($0) })
        o["task_type"] = "CAUSAL_LM"
        o["use_dora"] = false
        o["use_rslora"] = .bool(useRS)
        return .object(o)
    }

    /// Saves the adapter in PEFT's layout into directory `path` (created or replaced atomically).
    public func save(peftDirectory path: String, model: ModelWeights) throws(GFNError) {
        try validate(against: model)
        try AtomicDirectory.write(path, files: try peftFiles(arch: model.config.arch))
    }

    /// The two files of the PEFT layout, in memory.
    func peftFiles(arch: Architecture) throws(GFNError) -> [(String, [UInt8])] {
        // Python's json.dumps(indent=2, sort_keys=True), no trailing newline (PEFT's to_json_string + write)
        let json = try peftConfig(arch: arch).serializedBytes(.pythonPretty)
        var tensors: [SafetensorsTensor] = []
        for name in moduleNames {
            guard let f = factors(for: name) else { continue }
            tensors.append(SafetensorsTensor(name: LoRAAdapter.peftKeyPrefix + name + ".lora_A.weight", shape: f.a.shape, floats: f.a.array))
            tensors.append(SafetensorsTensor(name: LoRAAdapter.peftKeyPrefix + name + ".lora_B.weight", shape: f.b.shape, floats: f.b.array))
        }
        let st = try Safetensors.serialize(tensors: tensors, metadata: ["format": "pt"])
        return [(LoRAAdapter.peftConfigFile, json), (LoRAAdapter.peftWeightsFile, st)]
    }

    /// Checks every module exists in `model` with matching shapes.
    public func validate(against model: ModelWeights) throws(GFNError) {
        let modules = LoRAAdapter.adaptableModules(model)
        for name in moduleNames {
            guard let f = factors(for: name) else { continue }
            guard let m = modules[name] else {
                throw .state("adapter module \(name) does not exist in this model (it has \(model.config.nLayer) layers of \(model.config.arch.rawValue))")
            }
            guard f.inFeatures == m.inFeatures, f.outFeatures == m.outFeatures else {
                throw .state("adapter module \(name): lora_A \(f.a.shape) / lora_B \(f.b.shape) do not fit the model's \(m.inFeatures)→\(m.outFeatures) map")
            }
        }
    }

    /// Every module a LoRA update may target, with its sizes: the blocks' linear maps and the output head.
    static func adaptableModules(_ model: ModelWeights) -> [String: (inFeatures: Int, outFeatures: Int)] {
        var out: [String: (inFeatures: Int, outFeatures: Int)] = [:]
        for b in model.blocks { for l in b.linears { out[l.name] = (l.inFeatures, l.outFeatures) } }
        out[headModule] = (model.config.nEmbd, model.config.vocabSize)
        return out
    }

    /// Loads a PEFT LoRA adapter directory for `model`: validates the config (LoRA only, bias "none", no DoRA,
    /// no per-module rank/alpha patterns), takes the adapted modules from the tensor keys, and refuses keys or
    /// shapes that do not fit the model, with messages that name the offending tensor.
    public static func load(peftDirectory path: String, model: ModelWeights) throws(GFNError) -> LoRAAdapter {
        let cfgPath = FileIO.join(path, peftConfigFile)
        let json = try JSONValue.parse(contentsOf: cfgPath)
        guard let o = json.object else { throw .format("\(cfgPath): not a JSON object") }
        func fail(_ m: String) -> GFNError { GFNError(.format, "\(cfgPath): \(m)") }
        guard let type = o["peft_type"]?.string else { throw fail("peft_type is missing") }
        guard type == "LORA" else { throw GFNError(.unsupported, "\(cfgPath): peft_type \(type) is not LORA") }
        guard let r = o["r"]?.int, r > 0, r <= LoRAConfig.maxRank else {
            throw fail("r must be an integer in 1...\(LoRAConfig.maxRank)")
        }
        guard let alphaD = o["lora_alpha"]?.double ?? .some(8), alphaD.isFinite else { throw fail("lora_alpha must be a number") }
        let dropout = o["lora_dropout"]?.double ?? 0
        guard dropout >= 0 && dropout < 1 else { throw fail("lora_dropout \(dropout) is outside [0, 1)") }
        let useRS = o["use_rslora"]?.bool ?? false
        if let b = o["bias"]?.string, b != "none" {
            throw GFNError(.unsupported, "\(cfgPath): bias \"\(b)\" is not supported (only \"none\")")
        }
        if o["use_dora"]?.bool == true { throw GFNError(.unsupported, "\(cfgPath): DoRA adapters are not supported") }
        for key in ["rank_pattern", "alpha_pattern"] {
            if let p = o[key]?.object, !p.isEmpty {
                throw GFNError(.unsupported, "\(cfgPath): \(key) (per-module rank/alpha) is not supported")
            }
        }
        if let m = o["modules_to_save"]?.array, !m.isEmpty {
            throw GFNError(.unsupported, "\(cfgPath): modules_to_save is not supported")
        }
        var targets: [String] = []
        if let arr = o["target_modules"]?.array {
            for t in arr {
                guard let s = t.string else { throw fail("target_modules must hold strings") }
                targets.append(s)
            }
        } else if let s = o["target_modules"]?.string {
            targets = [s]  // a regular expression in PEFT; the tensor keys decide which modules are loaded
        }
        let config = LoRAConfig(r: r, alpha: Float(alphaD), dropout: Float(dropout), targets: targets,
                                useRSLoRA: useRS, baseModelNameOrPath: o["base_model_name_or_path"]?.string)
        let stPath = FileIO.join(path, peftWeightsFile)
        let st = try Safetensors.load(path: stPath)
        let modules = adaptableModules(model)
        var aT: [String: Tensor] = [:], bT: [String: Tensor] = [:]
        for key in st.names {
            var k = key
            if k.hasPrefix(peftKeyPrefix) { k.removeFirst(peftKeyPrefix.count) }
            if k.hasPrefix(headModule + ".base_layer.") {
                // PEFT saves the head's own weights beside its LoRA factors (save_embedding_layers); they must be
                // this model's head, since gfnlm never replaces base weights.
                try checkSavedHead(st, key: key, part: String(k.dropFirst(headModule.count + ".base_layer.".count)),
                                   model: model, file: stPath)
                continue
            }
            let isA = k.hasSuffix(".lora_A.weight"), isB = k.hasSuffix(".lora_B.weight")
            guard isA || isB else {
                throw GFNError(.unsupported, "\(stPath): tensor \(key) is not a LoRA A/B weight (bias, DoRA magnitude or modules_to_save are not supported)")
            }
            let module = String(k.dropLast(".lora_A.weight".count))
            guard let lin = modules[module] else {
                throw GFNError(.state, "\(stPath): tensor \(key) names module \(module), which this model does not have")
            }
            let shape = try st.shape(key)
            let want = isA ? [r, lin.inFeatures] : [lin.outFeatures, r]
            guard shape == want else {
                throw GFNError(.state, "\(stPath): \(key) has shape \(shape); this model needs \(want) (r = \(r), \(module) is \(lin.inFeatures)→\(lin.outFeatures))")
            }
            let t = try Tensor(shape: shape, values: try st.floats(key))
            if isA { aT[module] = t } else { bT[module] = t }
        }
        guard !aT.isEmpty || !bT.isEmpty else { throw GFNError(.format, "\(stPath): no LoRA tensors") }
        var factors: [String: LoRAFactors] = [:]
        for module in Set(aT.keys).union(bT.keys) {
            guard let a = aT[module], let b = bT[module] else {
                throw GFNError(.format, "\(stPath): module \(module) has only one of lora_A / lora_B")
            }
            factors[module] = try LoRAFactors(a: a, b: b, scale: config.scale)
        }
        return LoRAAdapter(factors: factors, dropout: Float(dropout), config: config)
    }

    /// Compares a saved copy of the head (`lm_head.base_layer.weight` [V, E] or `.bias` [V]) with the model's,
    /// within bf16 rounding; throws when it differs (an adapter for another model, or a resized vocabulary).
    static func checkSavedHead(_ st: Safetensors, key: String, part: String, model: ModelWeights,
                               file: String) throws(GFNError) {
        let E = model.config.nEmbd, V = model.config.vocabSize
        func close(_ a: Float, _ b: Float) -> Bool { abs(a - b) <= 5e-3 * max(abs(a), abs(b)) + 1e-6 }
        let shape = try st.shape(key)
        switch part {
        case "weight":
            guard shape == [V, E] else {
                throw GFNError(.state, "\(file): \(key) has shape \(shape); this model's head is [\(V), \(E)]")
            }
            let saved = try st.floats(key)
            let matrix: WeightMatrix
            switch model.head {
            case .tied: matrix = model.embedding
            case .linear(let l): matrix = l.matrix
            }
            var row = [Float](repeating: 0, count: E)
            for v in 0..<V {
                row.withUnsafeMutableBufferPointer { matrix.column(v, into: $0.baseAddress!) }
                for e in 0..<E where !close(row[e], saved[v * E + e]) {
                    throw GFNError(.state, "\(file): \(key) differs from this model's head at [\(v), \(e)] (\(saved[v * E + e]) vs \(row[e])): the adapter was saved with another output head")
                }
            }
        case "bias":
            guard shape == [V] else { throw GFNError(.state, "\(file): \(key) has shape \(shape); this model's head bias is [\(V)]") }
            let saved = try st.floats(key)
            var have = [Float](repeating: 0, count: V)
            if case .linear(let l) = model.head, let b = l.bias { have = b.array }
            for v in 0..<V where !close(have[v], saved[v]) {
                throw GFNError(.state, "\(file): \(key) differs from this model's head bias at \(v) (\(saved[v]) vs \(have[v]))")
            }
        default:
            throw GFNError(.unsupported, "\(file): tensor \(key) is not supported")
        }
    }

    /// Copies another adapter's factor values into this one's tensors (same modules and shapes), in place.
    public func assign(from other: LoRAAdapter) throws(GFNError) {
        guard Set(other.factors.keys) == Set(factors.keys) else {
            throw .state("adapters adapt different modules: \(other.moduleNames) vs \(moduleNames)")
        }
        for (name, f) in factors {
            guard let g = other.factors[name], g.a.shape == f.a.shape, g.b.shape == f.b.shape else {
                throw .state("adapter module \(name) has different shapes")
            }
            f.a.pointer.update(from: g.a.pointer, count: f.a.count)
            f.b.pointer.update(from: g.b.pointer, count: f.b.count)
        }
    }
}
