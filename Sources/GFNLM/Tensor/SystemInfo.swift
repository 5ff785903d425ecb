import CKernels
import COpenBLAS

/// What the library runs on, as one line (as llama.cpp's `llama_print_system_info`): the CPU features its kernels
/// dispatch on, the kernel that each kind of product uses now, the default thread count and the BLAS build. The
/// kernels named are the ones in use after environment variables, run-time switches and start-up self-checks, so
/// computing the line runs those checks if they have not run yet.
public enum SystemInfo {
    public static func line() -> String {
        func flag(_ value: Int32) -> String { value != 0 ? "1" : "0" }
        var fields = [
            "CPUs \(Parallel.cpuCount)",
            "AVX2 = \(flag(gfk_cpu_has_avx2()))",
            "AVX512-BF16 = \(flag(gfk_cpu_has_avx512bf16()))",
            "AVX-VNNI = \(flag(gfk_cpu_has_avx_vnni()))",
            "AVX512-VNNI = \(flag(gfk_cpu_has_avx512_vnni()))",
            "bf16 products: \(BF16Matrix.usesAVX512BF16 ? "AVX512-BF16" : "AVX2")",
            "int8/4-bit products: \(QuantMatrix.panelKernel) (many rows), \(QuantMatrix.usesAVX2 ? "AVX2" : "portable") (few rows)",
        ]
        if let config = openblas_get_config() { fields.append(String(cString: config)) }   // "OpenBLAS 0.3.21 …"
        return fields.joined(separator: " | ")
    }
}
