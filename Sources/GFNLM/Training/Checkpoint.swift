/// Training-state checkpoints: one directory written atomically (a temporary sibling renamed into place, so a
/// crash leaves the previous checkpoint or the new one, never half of one), holding
///
/// - `adapter_config.json` + `adapter_model.safetensors`: the LoRA adapter in PEFT's layout (LoRA training);
/// - `parameters.safetensors`: every other trained tensor by parameter name, in gfnlm's layout (full-parameter
///   weights with linear weights [in, out]; a GFlowNet's log Z; …);
/// - `optimizer.safetensors`: AdamW's moments, `<parameter>.exp_avg` / `<parameter>.exp_avg_sq`;
/// - `trainer_state.json`: step (the schedule position), hyper-parameters and schedules of every group, gradient
///   clipping, RNG states (hex words), and the caller's `extra` JSON;
/// - the caller's extra files (a replay buffer, …).
///
/// Everything is stored exactly (fp32 bits, repr doubles, full RNG state), so a resumed run continues
/// bit-identically to an uninterrupted one.
public enum TrainingCheckpoint {
    public static let stateFile = "trainer_state.json"
    public static let parametersFile = "parameters.safetensors"
    public static let optimizerFile = "optimizer.safetensors"
    static let formatName = "gfnlm-training-state"
    /// Largest step count a checkpoint may hold (2^53: exact as a double, and far from overflowing when counted on).
    static let maxStep: Int = 1 << 53

    /// What `load` returns besides the restored parameters and optimiser.
    public struct Restored {
        public let rngs: [String: RNG]
        public let extra: JSONObject
        /// The caller's extra files that were asked for and present.
        public let files: [String: [UInt8]]
        public let step: Int
    }

    /// Names of optimiser parameters that are factors of `adapter` (stored in the PEFT files).
    static func adapterParameterNames(_ adapter: LoRAAdapter?) -> Set<String> {
        guard let adapter else { return [] }
        var s = Set<String>()
        for m in adapter.moduleNames { s.insert(m + ".lora_A.weight"); s.insert(m + ".lora_B.weight") }
        return s
    }

    public static func save(directory: String, model: ModelWeights, adapter: LoRAAdapter?, optimizer: AdamW,
                            rngs: [String: RNG] = [:], extra: JSONObject = JSONObject(),
                            files: [(String, [UInt8])] = []) throws(GFNError) {
        var out: [(String, [UInt8])] = []
        let inAdapter = adapterParameterNames(adapter)
        if let adapter {
            try adapter.validate(against: model)
            out += try adapter.peftFiles(arch: model.config.arch)
        }
        var params: [SafetensorsTensor] = []
        var moments: [SafetensorsTensor] = []
        for (p, mom) in zip(optimizer.parameters, optimizer.moments) {
            if !inAdapter.contains(p.name) {
                params.append(SafetensorsTensor(name: p.name, shape: p.value.shape, floats: p.value.array))
            }
            moments.append(SafetensorsTensor(name: p.name + ".exp_avg", shape: p.value.shape, floats: Array(mom.m)))
            moments.append(SafetensorsTensor(name: p.name + ".exp_avg_sq", shape: p.value.shape, floats: Array(mom.v)))
        }
        out.append((parametersFile, try Safetensors.serialize(tensors: params, metadata: ["format": "gfnlm"])))
        out.append((optimizerFile, try Safetensors.serialize(tensors: moments, metadata: ["format": "gfnlm"])))
        var st = JSONObject()
        st["format"] = .string(formatName)
        st["version"] = 1
        st["step"] = .int(Int64(optimizer.stepCount))
        st["schedule"] = encode(optimizer.schedule)
        st["max_grad_norm"] = optimizer.maxGradNorm.map { .double($0) } ?? .null
        st["groups"] = .array(optimizer.groups.map { g in
            var o = JSONObject()
            o["name"] = .string(g.name)
            o["lr"] = .double(g.hyper.lr)
            o["beta1"] = .double(g.hyper.beta1)
            o["beta2"] = .double(g.hyper.beta2)
            o["eps"] = .double(g.hyper.eps)
            o["weight_decay"] = .double(g.hyper.weightDecay)
            o["schedule"] = g.schedule.map(encode) ?? .null
            o["parameters"] = .array(g.parameters.map { .string($0.name) })
            return .object(o)
        })
        var r = JSONObject()
        for k in rngs.keys.sorted() {
            guard let g = rngs[k] else { continue }
            let s = g.state
            r[k] = .array([s.0, s.1, s.2, s.3].map { .string(hex($0)) })
        }
        st["rng"] = .object(r)
        st["extra"] = .object(extra)
        out.append((stateFile, JSONValue.object(st).serializedBytes(JSONWriteOptions(indent: 2, sortKeys: true))))
        let reserved = Set(out.map { $0.0 })
        for (name, _) in files where reserved.contains(name) {
            throw .invalidArgument("extra checkpoint file \(name) collides with a file gfnlm writes")
        }
        try AtomicDirectory.write(directory, files: out + files)
    }

    /// Restores parameters (in place: the adapter's factors, the model's tensors, any other optimiser parameter),
    /// optimiser moments, step, hyper-parameters and schedules from `directory`, after checking that names and
    /// shapes match the live objects (nothing is changed when they do not). `extraFiles` names caller files to
    /// read back. `expect` holds entries the checkpoint's `extra` must have (e.g. the kind of trainer that wrote
    /// it), `checkExtra` validates the whole `extra` object (the caller's own fields) and `checkFile` each extra file
    /// that is present: all run before anything is changed, so a checkpoint of another run, or with a corrupt extra
    /// field or file, leaves the live objects untouched.
    public static func load(directory: String, model: ModelWeights, adapter: LoRAAdapter?, optimizer: AdamW,
                            extraFiles: [String] = [], expect: JSONObject = JSONObject(),
                            checkExtra: (JSONObject) throws(GFNError) -> Void = { _ in },
                            checkFile: (String, [UInt8]) throws(GFNError) -> Void = { _, _ in }) throws(GFNError) -> Restored {
        let statePath = FileIO.join(directory, stateFile)
        let st = try JSONValue.parse(contentsOf: statePath)
        func fail(_ m: String) -> GFNError { GFNError(.format, "\(statePath): \(m)") }
        guard st["format"]?.string == formatName else { throw fail("not a gfnlm training checkpoint") }
        guard st["version"]?.int == 1 else { throw GFNError(.unsupported, "\(statePath): unknown version \(st["version"]?.serialized() ?? "?")") }
        // Steps are counted with + 1 by the trainers: a bound far below Int.max keeps a hostile count from trapping.
        guard let step = st["step"]?.int, step >= 0 else { throw fail("step is missing") }
        guard step < maxStep else { throw fail("step \(step) exceeds \(maxStep)") }
        if let s = st["extra"]?["step"], !(s.int.map { $0 >= 0 && $0 < maxStep } ?? false) {
            throw fail("extra.step \(s.serialized()) must be an integer in 0..<\(maxStep)")
        }
        for (key, want) in expect {
            let have = st["extra"]?[key]
            guard have == want else {
                throw GFNError(.state, "\(statePath): a checkpoint of another run (its \(key) is \(have?.serialized() ?? "missing"), "
                               + "this trainer needs \(want.serialized()))")
            }
        }
        try checkExtra(st["extra"]?.object ?? JSONObject())
        guard let groups = st["groups"]?.array, groups.count == optimizer.groups.count else {
            throw GFNError(.state, "\(statePath): the checkpoint has \(st["groups"]?.array?.count ?? 0) parameter groups, the optimiser \(optimizer.groups.count)")
        }
        var hypers: [AdamWHyperparameters] = []
        var schedules: [LRSchedule?] = []
        for (g, live) in zip(groups, optimizer.groups) {
            let names = g["parameters"]?.array?.compactMap { $0.string } ?? []
            guard names == live.parameters.map({ $0.name }) else {
                throw GFNError(.state, "\(statePath): group \(live.name) holds other parameters than the optimiser's")
            }
            guard let lr = g["lr"]?.double, let b1 = g["beta1"]?.double, let b2 = g["beta2"]?.double,
                  let eps = g["eps"]?.double, let wd = g["weight_decay"]?.double else { throw fail("group hyper-parameters missing") }
            let h = AdamWHyperparameters(lr: lr, beta1: b1, beta2: b2, eps: eps, weightDecay: wd)
            try h.validate()
            hypers.append(h)
            if let s = g["schedule"], !s.isNull { schedules.append(try decode(s, path: statePath)) } else { schedules.append(nil) }
        }
        guard let schedValue = st["schedule"] else { throw fail("schedule missing") }
        let schedule = try decode(schedValue, path: statePath)
        let maxNorm = st["max_grad_norm"]?.double
        if let m = maxNorm, !(m > 0) { throw fail("max_grad_norm \(m) must be positive or null") }
        var rngs: [String: RNG] = [:]
        if let r = st["rng"]?.object {
            for (k, v) in r {
                let words = v.array?.compactMap { $0.string.flatMap { UInt64($0.hasPrefix("0x") ? String($0.dropFirst(2)) : $0, radix: 16) } } ?? []
                guard words.count == 4 else { throw fail("rng \(k) must be four hex words") }
                rngs[k] = RNG(state: (words[0], words[1], words[2], words[3]))
            }
        }
        // tensors: read and check everything before writing anything
        var loadedAdapter: LoRAAdapter?
        if let adapter {
            let a = try LoRAAdapter.load(peftDirectory: directory, model: model)
            guard Set(a.factors.keys) == Set(adapter.factors.keys) else {
                throw GFNError(.state, "\(directory): the checkpoint's adapter adapts other modules than the live adapter")
            }
            for (k, f) in adapter.factors {
                guard let g = a.factors[k], g.a.shape == f.a.shape, g.b.shape == f.b.shape else {
                    throw GFNError(.state, "\(directory): adapter module \(k) has other shapes than the live adapter")
                }
            }
            loadedAdapter = a
        }
        let inAdapter = adapterParameterNames(adapter)
        let paramsPath = FileIO.join(directory, parametersFile), optPath = FileIO.join(directory, optimizerFile)
        let ps = try Safetensors.load(path: paramsPath)
        let os = try Safetensors.load(path: optPath)
        var values: [[Float]?] = []
        var ms: [[Float]] = [], vs: [[Float]] = []
        for p in optimizer.parameters {
            if inAdapter.contains(p.name) {
                values.append(nil)
            } else {
                guard ps.contains(p.name), try ps.shape(p.name) == p.value.shape else {
                    throw GFNError(.state, "\(paramsPath): parameter \(p.name) is missing or has another shape than \(p.value.shape)")
                }
                values.append(try ps.floats(p.name))
            }
            for (suffix, isM) in [(".exp_avg", true), (".exp_avg_sq", false)] {
                let key = p.name + suffix
                guard os.contains(key), try os.shape(key) == p.value.shape else {
                    throw GFNError(.state, "\(optPath): \(key) is missing or has another shape than \(p.value.shape)")
                }
                if isM { ms.append(try os.floats(key)) } else { vs.append(try os.floats(key)) }
            }
        }
        var extraOut: [String: [UInt8]] = [:]
        for name in extraFiles {
            let path = FileIO.join(directory, name)
            if FileIO.exists(path) {
                let bytes = try FileIO.read(path)
                try checkFile(name, bytes)
                extraOut[name] = bytes
            }
        }
        // commit
        if let adapter, let loadedAdapter { try adapter.assign(from: loadedAdapter) }
        for (i, p) in optimizer.parameters.enumerated() {
            if let v = values[i] { v.withUnsafeBufferPointer { b in if let s = b.baseAddress { p.value.pointer.update(from: s, count: p.count) } } }
        }
        for (i, mom) in optimizer.moments.enumerated() {
            ms[i].withUnsafeBufferPointer { b in if let s = b.baseAddress { mom.m.baseAddress?.update(from: s, count: mom.m.count) } }
            vs[i].withUnsafeBufferPointer { b in if let s = b.baseAddress { mom.v.baseAddress?.update(from: s, count: mom.v.count) } }
        }
        for (i, g) in optimizer.groups.enumerated() { g.hyper = hypers[i]; g.schedule = schedules[i] }
        optimizer.schedule = schedule
        optimizer.maxGradNorm = maxNorm
        try optimizer.restore(stepCount: step)
        return Restored(rngs: rngs, extra: st["extra"]?.object ?? JSONObject(), files: extraOut, step: step)
    }

    static func hex(_ v: UInt64) -> String {
        let s = String(v, radix: 16)
        return "0x" + String(repeating: "0", count: 16 - s.count) + s
    }

    static func encode(_ s: LRSchedule) -> JSONValue {
        var o = JSONObject()
        switch s {
        case .constant: o["kind"] = "constant"
        case .linearWarmup(let w):
            o["kind"] = "linear_warmup"; o["warmup_steps"] = .int(Int64(w))
        case .warmupLinearDecay(let w, let t):
            o["kind"] = "warmup_linear_decay"; o["warmup_steps"] = .int(Int64(w)); o["total_steps"] = .int(Int64(t))
        case .cosine(let w, let t, let m):
            o["kind"] = "cosine"; o["warmup_steps"] = .int(Int64(w)); o["total_steps"] = .int(Int64(t)); o["min_ratio"] = .double(m)
        }
        return .object(o)
    }

    static func decode(_ v: JSONValue, path: String) throws(GFNError) -> LRSchedule {
        let w = v["warmup_steps"]?.int ?? 0, t = v["total_steps"]?.int ?? 0
        let s: LRSchedule
        switch v["kind"]?.string {
        case "constant": s = .constant
        case "linear_warmup": s = .linearWarmup(warmupSteps: w)
        case "warmup_linear_decay": s = .warmupLinearDecay(warmupSteps: w, totalSteps: t)
        case "cosine": s = .cosine(warmupSteps: w, totalSteps: t, minRatio: v["min_ratio"]?.double ?? 0)
        default: throw GFNError(.format, "\(path): unknown schedule \(v.serialized())")
        }
        try s.validate()
        return s
    }
}

extension SFTTrainer {
    /// Writes a training checkpoint (see `TrainingCheckpoint`): adapter or full weights, optimiser, step,
    /// schedule, dropout RNG.
    public func save(checkpoint directory: String) throws(GFNError) {
        var extra = JSONObject()
        extra["trainer"] = "sft"
        extra["mode"] = adapter == nil ? "full" : "lora"
        var rngs: [String: RNG] = [:]
        if let r = dropoutRNG { rngs["dropout"] = r }
        try TrainingCheckpoint.save(directory: directory, model: transformer.weights, adapter: adapter,
                                    optimizer: optimizer, rngs: rngs, extra: extra)
    }

    /// Restores a checkpoint written by `save(checkpoint:)` into this trainer (made with the same model, adapter
    /// targets and rank, or both full-parameter).
    public func load(checkpoint directory: String) throws(GFNError) {
        // the trainer kind and mode are checked before anything changes
        let r = try TrainingCheckpoint.load(directory: directory, model: transformer.weights, adapter: adapter,
                                            optimizer: optimizer,
                                            expect: ["trainer": "sft", "mode": .string(adapter == nil ? "full" : "lora")])
        dropoutRNG = r.rngs["dropout"]
        optimizer.zeroGrad()
        pendingLoss = 0
        pendingTokens = 0
    }
}
