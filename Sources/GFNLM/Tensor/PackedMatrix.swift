import CKernels
import Synchronization

/// An fp32 matrix W [K, N] (y = x·W) packed once into the panel layout of OpenBLAS's own sgemm kernel
/// (`ckernels.h`, packedgemm.c), so that products of more than a few rows skip the per-call packing of the weight
/// that `cblas_sgemm` does (a quarter to a third of the time of a 64-row product; from 8 rows on it also beats the
/// few-row kernels, which stream the unpacked weight). A second copy of the weight:
/// made only on request (`ModelWeights.packForRowBatches`) and only for weights that are never written.
public final class PackedMatrix: @unchecked Sendable {
    /// K: rows of W (input features).
    public let rows: Int
    /// N: columns of W (output features).
    public let cols: Int
    let storage: FloatStorage

    /// Rows from which products on a packed copy beat the few-row kernels (which stream the unpacked weights):
    /// 1 thread, GPT-2 small shapes, 4 / 8 / 16 rows: 27–31 vs 25–29, 44–48 vs 37–42, 66–71 vs 32–51 GFLOP/s.
    public static let minRows = 8

    /// Whether OpenBLAS's kernel for this CPU was found and verified (see `gfk_packed_available`).
    public static var isAvailable: Bool { gfk_packed_available() != 0 }

    /// Bytes of packed storage.
    public var bytes: Int { storage.count * 4 }

    /// Packs `src`: W row-major [rows, cols] with leading dimension `ld` (`transposed` false), or Wᵀ row-major
    /// [cols, rows] (`transposed` true, the tied head). `.unsupported` when the packed kernel is not available.
    public init(_ src: UnsafePointer<Float>, ld: Int, transposed: Bool, rows: Int, cols: Int,
                threads: Int = 1) throws(GFNError) {
        guard Self.isAvailable else {
            throw .unsupported("packed sgemm is not available with this OpenBLAS (core '\(Self.coreName)')")
        }
        guard rows > 0, cols > 0 else { throw .invalidArgument("packed matrix of shape [\(rows), \(cols)]") }
        self.rows = rows
        self.cols = cols
        // Packing writes every float but the slack: no zero-fill of the whole copy first (≈ 0.5 GB for GPT-2 small).
        storage = try FloatStorage(count: gfk_packed_count(Int64(rows), Int64(cols)), zeroed: false)
        let payload = rows * cols
        (storage.base + payload).initialize(repeating: 0, count: storage.count - payload)
        let blocks = (rows + Int(GFK_PACKED_KC) - 1) / Int(GFK_PACKED_KC)
        let dst = UncheckedSendable(storage.base)
        Parallel.chunks(blocks, threads: rows * cols >= 1 << 18 ? threads : 1) { _, range in
            gfk_packed_pack(src, Int64(ld), transposed ? 1 : 0, Int64(rows), Int64(cols), dst.value,
                            Int64(range.lowerBound), Int64(range.upperBound))
        }
    }

    /// OpenBLAS's core name as the packed path sees it ("ZEN", "HASWELL", …; empty when unknown).
    public static var coreName: String { String(cString: gfk_packed_core()) }

    /// y[m, cols] = x[m, rows] · W (overwrites y), the column blocks split across `threads`. False (nothing done)
    /// when no scratch memory for the packed activations could be had.
    public func multiply(x: UnsafePointer<Float>, ldx: Int, m: Int, y: UnsafeMutablePointer<Float>, ldy: Int,
                         threads: Int) -> Bool {
        if m <= 0 { return true }
        let K = rows, N = cols
        guard let scratch = try? scratchPool.take(gfk_packed_activation_count(Int64(m), Int64(K))) else { return false }
        defer { scratchPool.give(scratch) }
        gfk_packed_pack_activations(x, Int64(ldx), Int64(m), Int64(K), scratch.base)
        let blocks = (N + Int(GFK_PACKED_MC) - 1) / Int(GFK_PACKED_MC)
        let w = UncheckedSendable(UnsafePointer(storage.base)), xp = UncheckedSendable(UnsafePointer(scratch.base))
        let yy = UncheckedSendable(y)
        let t = m * K * N >= 1 << 20 ? max(1, threads) : 1
        Parallel.chunks(blocks, threads: t) { _, range in
            gfk_packed_gemm(Int64(m), Int64(K), Int64(N), w.value, xp.value, yy.value, Int64(ldy),
                            Int64(range.lowerBound), Int64(range.upperBound))
        }
        return true
    }
}

/// Where a `WeightMatrix` keeps its packed copy once one is made (shared by copies of the struct; set once).
final class PackedSlot: Sendable {
    let matrix = Locked<PackedMatrix?>(nil)
}
