import CGFNLM
import GFNLM

/// The host's all-reduce callback with its user data; called on the stepping thread.
final class AllReduceBox: @unchecked Sendable {
    let fn: gfn_allreduce_fn
    let userData: UnsafeMutableRawPointer?
    init(fn: gfn_allreduce_fn, userData: UnsafeMutableRawPointer?) { self.fn = fn; self.userData = userData }

    func callAsFunction(_ b: UnsafeMutableBufferPointer<Float>) throws(GFNError) {
        let rc = fn(userData, b.baseAddress, Int64(b.count))
        guard rc == 0 else {
            throw GFNError(.callback, "the all-reduce callback returned \(rc) for a buffer of \(b.count) floats: the ranks "
                           + "are out of step, stop every rank (MPI_Abort)")
        }
    }
}

@c @implementation
public func gfn_distributed_default_params() -> gfn_distributed_params {
    gfn_distributed_params(size: UInt32(MemoryLayout<gfn_distributed_params>.size), rank: 0, world_size: 1,
                           allreduce: nil, user_data: nil, exchange_replay: 0)
}

/// The exchange the params describe; nil for a single process (NULL params, or world size 1 without a callback).
func makeExchange(_ params: UnsafePointer<gfn_distributed_params>?) throws(GFNError) -> GradientExchange? {
    guard let params else { return nil }
    try checkStructSize(params.pointee.size, min: MemoryLayout<gfn_distributed_params>.size,
                        current: MemoryLayout<gfn_distributed_params>.size, "gfn_distributed_params")
    let p = params.pointee
    guard p.world_size >= 1 else { throw .invalidArgument("world_size must be ≥ 1 (got \(p.world_size))") }
    guard let fn = p.allreduce else {
        guard p.world_size == 1 else { throw .invalidArgument("world_size \(p.world_size) needs an allreduce callback") }
        guard p.rank == 0 else { throw .invalidArgument("rank \(p.rank) outside 0..<1") }
        return nil
    }
    let box = AllReduceBox(fn: fn, userData: p.user_data)
    let ex = try GradientExchange(rank: Int(p.rank), worldSize: Int(p.world_size)) { (b) throws(GFNError) in try box(b) }
    ex.exchangeReplay = p.exchange_replay != 0
    return ex
}

@c @implementation
public func gfn_gflownet_set_distributed(_ trainer: OpaquePointer?, _ params: UnsafePointer<gfn_distributed_params>?) -> Int32 {
    capi { () throws(GFNError) in
        let h = try handles.lookup(trainer, as: GFlowNetHandle.self, "trainer")
        h.trainer.setDistributed(try makeExchange(params))
    }
}

@c @implementation
public func gfn_sft_set_distributed(_ sft: OpaquePointer?, _ params: UnsafePointer<gfn_distributed_params>?) -> Int32 {
    capi { () throws(GFNError) in
        let h = try handles.lookup(sft, as: SFTHandle.self, "sft")
        h.trainer.setDistributed(try makeExchange(params))
    }
}

/// Only rank 0 writes checkpoints; other ranks' saves succeed without writing.
func writesCheckpoints(_ e: GradientExchange?) -> Bool { (e?.rank ?? 0) == 0 }
