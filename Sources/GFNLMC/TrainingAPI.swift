import CGFNLM
import GFNLM

// MARK: - adapters

@c @implementation
public func gfn_lora_default_params() -> gfn_lora_params {
    gfn_lora_params(size: UInt32(MemoryLayout<gfn_lora_params>.size), r: 8, alpha: 8, dropout: 0, targets: nil,
                    use_rslora: 0, seed: 0)
}

@c @implementation
public func gfn_adapter_new(_ model: OpaquePointer?, _ params: UnsafePointer<gfn_lora_params>?,
                          _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    capi { () throws(GFNError) in
        let m = try handles.lookup(model, as: ModelHandle.self, "model")
        let o = try requirePointer(out, "out")
        var p = gfn_lora_default_params()
        if let params {
            try checkStructSize(params.pointee.size, min: MemoryLayout<gfn_lora_params>.size,
                                current: MemoryLayout<gfn_lora_params>.size, "gfn_lora_params")
            p = params.pointee
        }
        var targets = LoRAConfig.defaultTargets(for: m.model.config.arch)
        if p.targets != nil {
            let t = try requireString(p.targets, "targets")
            targets = t.split(separator: ",").map { String($0).trimmedSpaces }.filter { !$0.isEmpty }
            guard !targets.isEmpty else { throw .invalidArgument("targets is empty") }
        }
        let cfg = LoRAConfig(r: Int(p.r), alpha: p.alpha, dropout: p.dropout, targets: targets, useRSLoRA: p.use_rslora != 0)
        let adapter = try LoRAAdapter(model: m.model.weights, config: cfg, seed: p.seed)
        o.pointee = handles.register(AdapterHandle(adapter, model: m.model))
    }
}

@c @implementation
public func gfn_adapter_load(_ model: OpaquePointer?, _ directory: UnsafePointer<CChar>?,
                           _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    capi { () throws(GFNError) in
        let m = try handles.lookup(model, as: ModelHandle.self, "model")
        let dir = try requireString(directory, "directory")
        let o = try requirePointer(out, "out")
        let adapter = try LoRAAdapter.load(peftDirectory: dir, model: m.model.weights)
        o.pointee = handles.register(AdapterHandle(adapter, model: m.model))
    }
}

@c @implementation
public func gfn_adapter_save(_ adapter: OpaquePointer?, _ directory: UnsafePointer<CChar>?) -> Int32 {
    capi { () throws(GFNError) in
        let a = try handles.lookup(adapter, as: AdapterHandle.self, "adapter")
        try a.adapter.save(peftDirectory: try requireString(directory, "directory"), model: a.model.weights)
    }
}

@c @implementation
public func gfn_adapter_parameter_count(_ adapter: OpaquePointer?, _ out: UnsafeMutablePointer<Int64>?) -> Int32 {
    capi { () throws(GFNError) in
        let a = try handles.lookup(adapter, as: AdapterHandle.self, "adapter")
        try requirePointer(out, "out").pointee = Int64(a.adapter.parameterCount)
    }
}

@c @implementation
public func gfn_adapter_free(_ adapter: OpaquePointer?) {
    handles.remove(adapter, as: AdapterHandle.self)
}

func writeLogits(_ model: Model, _ adapter: LoRAAdapter?, _ ids: UnsafePointer<Int32>?, _ batch: Int32, _ seqLen: Int32,
                 _ mask: UnsafePointer<Int32>?, _ logits: UnsafeMutablePointer<Float>?, _ capacity: Int) throws(GFNError) {
    guard batch > 0, seqLen > 0 else { throw .invalidArgument("batch (\(batch)) and seq_len (\(seqLen)) must be positive") }
    let n = Int(batch) * Int(seqLen)
    let V = model.config.vocabSize
    // batch·seq_len·vocab can overflow Int for hostile sizes (2^31 · 2^31 · V): refuse instead of trapping
    let (needed, overflow) = n.multipliedReportingOverflow(by: V)
    guard !overflow else {
        throw .outOfRange("batch (\(batch)) · seq_len (\(seqLen)) · vocab (\(V)) logits overflow the address space")
    }
    guard capacity >= needed else {
        throw GFNError(.bufferTooSmall, "logits needs \(needed) floats (batch·seq_len·vocab); capacity is \(capacity)")
    }
    let idArray = Array(UnsafeBufferPointer(start: try requirePointer(ids, "ids"), count: n))
    let maskArray = mask.map { Array(UnsafeBufferPointer(start: $0, count: n)) }
    let out = try requirePointer(logits, "logits")
    try model.logits(ids: idArray, batch: Int(batch), seqLen: Int(seqLen), mask: maskArray, adapter: adapter, into: out)
}

@c @implementation
public func gfn_model_export_onnx(_ model: OpaquePointer?, _ adapter: OpaquePointer?, _ path: UnsafePointer<CChar>?) -> Int32 {
    capi { () throws(GFNError) in
        let h = try handles.lookup(model, as: ModelHandle.self, "model")
        let a = try adapterFor(adapter, model: h.model)
        try ONNXExporter.export(model: h.model, adapter: a, to: try requireString(path, "path"))
    }
}

// MARK: - SFT

final class SFTHandle {
    let trainer: SFTTrainer
    let model: Model
    let adapterHandle: AdapterHandle?
    init(_ trainer: SFTTrainer, model: Model, adapter: AdapterHandle?) {
        self.trainer = trainer; self.model = model; self.adapterHandle = adapter
    }
}

@c @implementation
public func gfn_train_default_params() -> gfn_train_params {
    gfn_train_params(size: UInt32(MemoryLayout<gfn_train_params>.size), lr: 1e-4, beta1: 0.9, beta2: 0.999, eps: 1e-8,
                     weight_decay: 0.01, warmup_steps: 0, total_steps: 0, cosine: 0, max_grad_norm: 0)
}

func readTrainParams(_ p: gfn_train_params) throws(GFNError) -> (AdamWHyperparameters, LRSchedule, Double?) {
    let h = AdamWHyperparameters(lr: p.lr, beta1: p.beta1, beta2: p.beta2, eps: p.eps, weightDecay: p.weight_decay)
    try h.validate()
    let w = Int(p.warmup_steps), t = Int(p.total_steps)
    guard w >= 0, t >= 0 else { throw .invalidArgument("warmup_steps and total_steps must be ≥ 0") }
    let schedule: LRSchedule
    if t > 0 {
        schedule = p.cosine != 0 ? .cosine(warmupSteps: w, totalSteps: t) : .warmupLinearDecay(warmupSteps: w, totalSteps: t)
    } else {
        if p.cosine != 0 { throw .invalidArgument("a cosine schedule needs total_steps") }
        schedule = w > 0 ? .linearWarmup(warmupSteps: w) : .constant
    }
    try schedule.validate()
    guard p.max_grad_norm >= 0 && p.max_grad_norm.isFinite else { throw .invalidArgument("max_grad_norm must be ≥ 0") }
    return (h, schedule, p.max_grad_norm > 0 ? p.max_grad_norm : nil)
}

func readPairs(_ a: UnsafePointer<UnsafePointer<Int32>?>?, _ al: UnsafePointer<Int32>?,
               _ b: UnsafePointer<UnsafePointer<Int32>?>?, _ bl: UnsafePointer<Int32>?, _ n: Int32,
               _ what: (String, String)) throws(GFNError) -> [SFTExample] {
    guard n > 0 else { throw .invalidArgument("n must be positive (got \(n))") }
    let ap = try requirePointer(a, what.0), alp = try requirePointer(al, what.0 + "_lengths")
    let bp = try requirePointer(b, what.1), blp = try requirePointer(bl, what.1 + "_lengths")
    var out: [SFTExample] = []
    for i in 0..<Int(n) {
        out.append(SFTExample(context: try readIds(ap[i], alp[i], "\(what.0)[\(i)]"),
                              target: try readIds(bp[i], blp[i], "\(what.1)[\(i)]")))
    }
    return out
}

func fill(_ out: UnsafeMutablePointer<gfn_sft_stats>?, _ s: SFTStats) throws(GFNError) {
    guard let out else { return }
    try checkStructSize(out.pointee.size, min: MemoryLayout<gfn_sft_stats>.size,
                        current: MemoryLayout<gfn_sft_stats>.size, "gfn_sft_stats")
    out.pointee = gfn_sft_stats(size: UInt32(MemoryLayout<gfn_sft_stats>.size), loss: s.loss, perplexity: s.perplexity,
                                tokens: Int32(clamping: s.tokens), step: Int32(clamping: s.step), grad_norm: s.gradNorm,
                                learning_rate: s.learningRate, applied: s.applied ? 1 : 0)
}

@c @implementation
public func gfn_sft_new(_ model: OpaquePointer?, _ adapter: OpaquePointer?, _ params: UnsafePointer<gfn_train_params>?,
                      _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    capi { () throws(GFNError) in
        let m = try handles.lookup(model, as: ModelHandle.self, "model")
        let o = try requirePointer(out, "out")
        var p = gfn_train_default_params()
        if let params {
            try checkStructSize(params.pointee.size, min: MemoryLayout<gfn_train_params>.size,
                                current: MemoryLayout<gfn_train_params>.size, "gfn_train_params")
            p = params.pointee
        }
        let (h, sched, clip) = try readTrainParams(p)
        var ah: AdapterHandle?
        if adapter != nil {
            ah = try handles.lookup(adapter, as: AdapterHandle.self, "adapter")
            guard ah?.model === m.model else { throw .state("the adapter was made for another model") }
        }
        let t = try SFTTrainer(transformer: m.model.transformer, adapter: ah?.adapter, hyper: h, schedule: sched,
                               maxGradNorm: clip)
        o.pointee = handles.register(SFTHandle(t, model: m.model, adapter: ah))
    }
}

@c @implementation
public func gfn_sft_step(_ sft: OpaquePointer?, _ contexts: UnsafePointer<UnsafePointer<Int32>?>?,
                       _ contextLengths: UnsafePointer<Int32>?, _ targets: UnsafePointer<UnsafePointer<Int32>?>?,
                       _ targetLengths: UnsafePointer<Int32>?, _ n: Int32, _ out: UnsafeMutablePointer<gfn_sft_stats>?) -> Int32 {
    capi { () throws(GFNError) in
        let h = try handles.lookup(sft, as: SFTHandle.self, "sft")
        let batch = try readPairs(contexts, contextLengths, targets, targetLengths, n, ("contexts", "targets"))
        try fill(out, try h.trainer.step(batch))
    }
}

@c @implementation
public func gfn_sft_evaluate(_ sft: OpaquePointer?, _ contexts: UnsafePointer<UnsafePointer<Int32>?>?,
                           _ contextLengths: UnsafePointer<Int32>?, _ targets: UnsafePointer<UnsafePointer<Int32>?>?,
                           _ targetLengths: UnsafePointer<Int32>?, _ n: Int32, _ out: UnsafeMutablePointer<gfn_sft_stats>?) -> Int32 {
    capi { () throws(GFNError) in
        let h = try handles.lookup(sft, as: SFTHandle.self, "sft")
        let batch = try readPairs(contexts, contextLengths, targets, targetLengths, n, ("contexts", "targets"))
        try fill(out, try h.trainer.evaluate(batch))
    }
}

@c @implementation
public func gfn_sft_set_label_candidates(_ sft: OpaquePointer?, _ ids: UnsafePointer<Int32>?, _ n: Int32) -> Int32 {
    capi { () throws(GFNError) in
        let h = try handles.lookup(sft, as: SFTHandle.self, "sft")
        let c = try readIds(ids, n, "ids")
        let V = h.trainer.transformer.config.vocabSize
        guard c.allSatisfy({ $0 >= 0 && Int($0) < V }) else { throw .outOfRange("label candidates outside the vocabulary (\(V))") }
        guard Set(c).count == c.count else { throw .invalidArgument("label candidates must be distinct") }
        guard c.count != 1 else { throw .invalidArgument("one label candidate gives a constant loss: give two or more, or none") }
        h.trainer.labelCandidates = c.isEmpty ? nil : c
    }
}

@c @implementation
public func gfn_sft_snapshot_model(_ sft: OpaquePointer?, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    capi { () throws(GFNError) in
        let h = try handles.lookup(sft, as: SFTHandle.self, "sft")
        let o = try requirePointer(out, "out")
        guard h.trainer.adapter == nil else {
            throw .state("snapshot_model is for full-parameter training; this trainer trains an adapter")
        }
        let weights = try h.trainer.transformer.weights.trainableCopy()
        let model = Model(transformer: Transformer(weights: weights, threads: h.model.transformer.threads,
                                                   rowInvariantDecoding: h.model.transformer.rowInvariantDecoding),
                          tokenizer: h.model.tokenizer, path: h.model.path)
        o.pointee = handles.register(ModelHandle(model))
    }
}

@c @implementation
public func gfn_sft_export_onnx(_ sft: OpaquePointer?, _ path: UnsafePointer<CChar>?) -> Int32 {
    capi { () throws(GFNError) in
        let h = try handles.lookup(sft, as: SFTHandle.self, "sft")
        let p = try requireString(path, "path")
        if let a = h.trainer.adapter {
            try ONNXExporter.export(model: h.model, adapter: a, to: p)
        } else {
            try ONNXExporter.export(model: h.model, weights: h.trainer.transformer.weights, to: p)
        }
    }
}

@c @implementation
public func gfn_sft_save(_ sft: OpaquePointer?, _ directory: UnsafePointer<CChar>?) -> Int32 {
    capi { () throws(GFNError) in
        let h = try handles.lookup(sft, as: SFTHandle.self, "sft")
        let dir = try requireString(directory, "directory")
        guard writesCheckpoints(h.trainer.distributed) else { return }   // distributed: rank 0 writes
        try h.trainer.save(checkpoint: dir)
    }
}

@c @implementation
public func gfn_sft_load(_ sft: OpaquePointer?, _ directory: UnsafePointer<CChar>?) -> Int32 {
    capi { () throws(GFNError) in
        let h = try handles.lookup(sft, as: SFTHandle.self, "sft")
        try h.trainer.load(checkpoint: try requireString(directory, "directory"))
        h.trainer.distributed?.resetVerification()   // every rank must have loaded the same state
    }
}

@c @implementation
public func gfn_sft_free(_ sft: OpaquePointer?) {
    handles.remove(sft, as: SFTHandle.self)
}

extension String {
    var trimmedSpaces: String {
        var s = Substring(self)
        while s.first == " " { s = s.dropFirst() }
        while s.last == " " { s = s.dropLast() }
        return String(s)
    }
}
