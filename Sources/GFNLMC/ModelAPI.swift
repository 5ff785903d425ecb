import CGFNLM
import GFNLM

final class ModelHandle {
    let model: Model
    /// The model's tokenizer as a borrowed handle (registered while the model lives).
    let tokenizerHandle: OpaquePointer?

    init(_ model: Model) {
        self.model = model
        self.tokenizerHandle = model.tokenizer.map { handles.register(TokenizerHandle($0, borrowed: true)) }
    }
}

@c @implementation
public func gfn_model_default_params() -> gfn_model_params {
    gfn_model_params(size: UInt32(MemoryLayout<gfn_model_params>.size), n_threads: 0, tokenizer_path: nil,
                     weight_type: Int32(GFN_WEIGHTS_F32.rawValue), batch_invariant: 1, reserved: 0,
                     weight_cache: Int32(GFN_WEIGHT_CACHE_OFF.rawValue), weight_cache_dir: nil,
                     quantize_activations: 1)
}

/// Size of the fourth version of gfn_model_params (with weight_cache and weight_cache_dir, before
/// quantize_activations): where quantize_activations now starts (the old sizeof, 40 on LP64).
let modelParamsV4Size = MemoryLayout<gfn_model_params>.offset(of: \gfn_model_params.quantize_activations)!

/// Size of the third version of gfn_model_params (with batch_invariant and reserved, before weight_cache): where
/// weight_cache now starts, rounded up to the struct's alignment (the old sizeof, 32 on LP64).
let modelParamsV3Size = (MemoryLayout<gfn_model_params>.offset(of: \gfn_model_params.weight_cache)! + 7) & ~7

/// Size of the second version of gfn_model_params (with weight_type): its end, padding included, is where
/// batch_invariant now starts plus that padding, i.e. the old sizeof (24 on LP64).
let modelParamsV2Size = (MemoryLayout<gfn_model_params>.offset(of: \gfn_model_params.weight_type)! + 4 + 7) & ~7

/// Size of the first version of gfn_model_params (size, n_threads, tokenizer_path), before weight_type.
let modelParamsV1Size = MemoryLayout<gfn_model_params>.offset(of: \gfn_model_params.weight_type)!

@c @implementation
public func gfn_model_load(_ path: UnsafePointer<CChar>?, _ params: UnsafePointer<gfn_model_params>?,
                         _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    capi { () throws(GFNError) in
        let p = try requireString(path, "path")
        let o = try requirePointer(out, "out")
        var prm = gfn_model_default_params()
        if let params {
            let size = params.pointee.size
            try checkStructSize(size, min: modelParamsV1Size, current: MemoryLayout<gfn_model_params>.size,
                                "gfn_model_params")
            // Read only the fields the caller's struct has (an older, smaller struct ends before weight_type).
            prm.n_threads = params.pointee.n_threads
            prm.tokenizer_path = params.pointee.tokenizer_path
            if Int(size) >= modelParamsV2Size {
                prm.weight_type = params.pointee.weight_type
            }
            if Int(size) >= modelParamsV3Size {
                prm.batch_invariant = params.pointee.batch_invariant
                guard params.pointee.reserved == 0 else {
                    throw .invalidArgument("gfn_model_params.reserved must be 0 (got \(params.pointee.reserved))")
                }
            }
            if Int(size) >= modelParamsV4Size {
                prm.weight_cache = params.pointee.weight_cache
                prm.weight_cache_dir = params.pointee.weight_cache_dir
            }
            if Int(size) >= MemoryLayout<gfn_model_params>.size {
                prm.quantize_activations = params.pointee.quantize_activations
            }
        }
        guard prm.n_threads >= 0 else { throw .invalidArgument("n_threads is negative (\(prm.n_threads))") }
        guard let weightType = WeightType(rawValue: prm.weight_type) else {
            throw .invalidArgument("weight_type is \(prm.weight_type); expected GFN_WEIGHTS_F32 (0), GFN_WEIGHTS_BF16 (1), "
                                   + "GFN_WEIGHTS_INT8 (2) or GFN_WEIGHTS_Q4 (3)")
        }
        let tokPath: String? = prm.tokenizer_path == nil ? nil : try requireString(prm.tokenizer_path, "tokenizer_path")
        guard prm.batch_invariant == 0 || prm.batch_invariant == 1 else {
            throw .invalidArgument("batch_invariant is \(prm.batch_invariant); expected 0 or 1")
        }
        guard prm.quantize_activations == 0 || prm.quantize_activations == 1 else {
            throw .invalidArgument("quantize_activations is \(prm.quantize_activations); expected 0 or 1")
        }
        guard let cacheMode = WeightCacheMode(rawValue: prm.weight_cache) else {
            throw .invalidArgument("weight_cache is \(prm.weight_cache); expected GFN_WEIGHT_CACHE_OFF (0), "
                                   + "GFN_WEIGHT_CACHE_READ_WRITE (1) or GFN_WEIGHT_CACHE_READ_ONLY (2)")
        }
        let cacheDir: String? = prm.weight_cache_dir == nil ? nil : try requireString(prm.weight_cache_dir, "weight_cache_dir")
        if let cacheDir, cacheDir.isEmpty { throw .invalidArgument("weight_cache_dir is empty (NULL: beside the model)") }
        let cache = WeightCacheOptions(mode: cacheMode, directory: cacheDir, log: { level, message in
            logSink.emit(gfn_log_level(rawValue: UInt32(level.rawValue)), message)
        })
        let model = try Model.load(path: p, tokenizerPath: tokPath, threads: Int(prm.n_threads), weightType: weightType,
                                   batchInvariant: prm.batch_invariant == 1, weightCache: cache,
                                   quantizedActivations: prm.quantize_activations == 1)
        if weightType == .bf16, let failure = BF16Matrix.takeKernelSelfCheckFailure() {
            logSink.emit(GFN_LOG_WARN, failure)
        }
        if weightType.isQuantized, let failure = QuantMatrix.takeKernelSelfCheckFailure() {
            logSink.emit(GFN_LOG_WARN, failure)
        }
        o.pointee = handles.register(ModelHandle(model))
    }
}

@c @implementation
public func gfn_model_free(_ model: OpaquePointer?) {
    guard let h = handles.remove(model, as: ModelHandle.self) else { return }
    if let t = h.tokenizerHandle { handles.remove(t, as: TokenizerHandle.self) }
}

@c @implementation
public func gfn_model_config_get(_ model: OpaquePointer?, _ out: UnsafeMutablePointer<gfn_model_config>?) -> Int32 {
    capi { () throws(GFNError) in
        let h = try handles.lookup(model, as: ModelHandle.self, "model")
        let o = try requirePointer(out, "out")
        try checkStructSize(o.pointee.size, min: MemoryLayout<gfn_model_config>.size,
                            current: MemoryLayout<gfn_model_config>.size, "gfn_model_config")
        let c = h.model.config
        var r = gfn_model_config()
        r.size = UInt32(MemoryLayout<gfn_model_config>.size)
        copyToCharArray(c.arch.rawValue, &r.arch)
        copyToCharArray(c.activation.rawValue, &r.activation)
        r.n_layer = Int32(c.nLayer); r.n_head = Int32(c.nHead); r.head_dim = Int32(c.headDim)
        r.n_embd = Int32(c.nEmbd); r.n_inner = Int32(c.nInner); r.vocab_size = Int32(c.vocabSize)
        r.n_positions = Int32(c.nPositions); r.rotary_dim = Int32(c.rotaryDim)
        r.layer_norm_eps = c.layerNormEps
        r.rotary_base = c.arch == .gptj ? c.rotaryBase : 0
        r.tied_head = c.tiedHead ? 1 : 0
        r.head_bias = c.headBias ? 1 : 0
        o.pointee = r
    }
}

@c @implementation
public func gfn_model_tokenizer(_ model: OpaquePointer?, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    capi { () throws(GFNError) in
        let h = try handles.lookup(model, as: ModelHandle.self, "model")
        try requirePointer(out, "out").pointee = h.tokenizerHandle
    }
}

@c @implementation
public func gfn_model_logits(_ model: OpaquePointer?, _ adapter: OpaquePointer?, _ ids: UnsafePointer<Int32>?,
                             _ batch: Int32, _ seqLen: Int32, _ mask: UnsafePointer<Int32>?,
                             _ logits: UnsafeMutablePointer<Float>?, _ capacity: Int) -> Int32 {
    capi { () throws(GFNError) in
        let h = try handles.lookup(model, as: ModelHandle.self, "model")
        let a = try adapterFor(adapter, model: h.model)
        try writeLogits(h.model, a, ids, batch, seqLen, mask, logits, capacity)
    }
}
