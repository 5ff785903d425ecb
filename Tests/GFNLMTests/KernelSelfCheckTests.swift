import XCTest
import CGFNLM
import CKernels
@testable import GFNLM
@testable import GFNLMC

/// The AVX512-BF16 kernel's start-up self-check, both outcomes, through the test hook (gfk_bf16_test_selfcheck):
/// mode 2 makes the candidate kernel wrong (the check must fail, the AVX2 kernel serve, and one warning reach the
/// log callback); mode 1 makes a plain-C emulation of the AVX512-BF16 arithmetic the candidate (the check must pass
/// and the products then run the candidate). On this CPU-independent path the real kernel never runs.
final class KernelSelfCheckTests: XCTestCase {
    final class Capture: @unchecked Sendable {
        let lines = Locked<[(Int32, String)]>([])
    }

    private let fixture = FileIO.join(FileIO.join(TestFiles.fixtures, "gpt2-tiny"), "legacy17")
    private let ids: [Int32] = [1, 2, 3, 4, 5]

    override func tearDown() {
        _ = gfk_bf16_test_selfcheck(0)   // the real CPU and kernel again
        _ = gfk_q_vnni_test(0)
        gfn_log_set(nil, nil)
    }

    private func capturing(_ capture: Capture) {
        let fn: gfn_log_fn = { level, message, userData in
            guard let userData else { return }
            let c = Unmanaged<Capture>.fromOpaque(userData).takeUnretainedValue()
            let text = String(cString: message)
            c.lines.withLock { $0.append((level, text)) }
        }
        gfn_log_set(fn, Unmanaged.passUnretained(capture).toOpaque())
    }

    private func load(_ weightType: gfn_weight_type) throws -> OpaquePointer {
        var p = gfn_model_default_params()
        p.weight_type = Int32(weightType.rawValue)
        var h: OpaquePointer?
        XCTAssertEqual(fixture.withCString { gfn_model_load($0, &p, &h) }, 0, String(cString: gfn_last_error()))
        return try XCTUnwrap(h)
    }

    /// Exactly one message so far: a warning that a self-check failed and the AVX2 kernel serves instead.
    private func assertOneFallbackWarning(_ capture: Capture, file: StaticString = #filePath, line: UInt = #line) {
        let lines = capture.lines.withLock { $0 }
        XCTAssertEqual(lines.count, 1, file: file, line: line)
        XCTAssertEqual(lines.first?.0, Int32(GFN_LOG_WARN.rawValue), file: file, line: line)
        XCTAssertTrue(lines.first?.1.contains("self-check") == true && lines.first?.1.contains("AVX2 kernel instead") == true,
                      lines.first?.1 ?? "", file: file, line: line)
    }

    private func logits(_ h: OpaquePointer) -> [Float] {
        var cfg = gfn_model_config(); cfg.size = UInt32(MemoryLayout<gfn_model_config>.size)
        XCTAssertEqual(gfn_model_config_get(h, &cfg), 0)
        var out = [Float](repeating: .nan, count: ids.count * Int(cfg.vocab_size))
        var x = ids
        XCTAssertEqual(gfn_model_logits(h, nil, &x, 1, Int32(ids.count), nil, &out, out.count), 0)
        return out
    }

    /// Sets the hook's mode (the kernel it must lead to: AVX512-BF16 or not), starts capturing the log and loads
    /// a bf16 model.
    private func start(mode: Int32, expectAVX512: Bool, _ capture: Capture) throws -> OpaquePointer {
        capturing(capture)
        XCTAssertEqual(gfk_bf16_test_selfcheck(mode), expectAVX512 ? 1 : 0, "kernel after hook mode \(mode)")
        XCTAssertEqual(BF16Matrix.usesAVX512BF16, expectAVX512)
        return try load(GFN_WEIGHTS_BF16)
    }

    func testMismatchFallsBackToAVX2AndWarnsOnce() throws {
        let capture = Capture()
        let h = try start(mode: 2, expectAVX512: false, capture)   // a failed self-check keeps the AVX2 kernel
        defer { gfn_model_free(h) }
        assertOneFallbackWarning(capture)
        let served = logits(h)
        // what served them is the AVX2 kernel: the same bits as with AVX512-BF16 switched off
        XCTAssertFalse(BF16Matrix.allowAVX512BF16(false))
        XCTAssertEqual(logits(h), served)
        // once per failed check, not per model
        let h2 = try load(GFN_WEIGHTS_BF16)
        gfn_model_free(h2)
        XCTAssertEqual(capture.lines.withLock { $0.count }, 1)
    }

    func testPassUsesTheCheckedKernel() throws {
        let capture = Capture()
        let h = try start(mode: 1, expectAVX512: true, capture)   // the emulated arithmetic passes the self-check
        defer { gfn_model_free(h) }
        XCTAssertEqual(capture.lines.withLock { $0.count }, 0, "no warning after a passed check")
        let candidate = logits(h)
        XCTAssertFalse(BF16Matrix.allowAVX512BF16(false))
        let avx2 = logits(h)
        let f = try load(GFN_WEIGHTS_F32)
        defer { gfn_model_free(f) }
        let f32 = logits(f)
        // the candidate ran (it rounds activations to bf16, the AVX2 kernel does not) …
        XCTAssertNotEqual(candidate, avx2)
        // … and stays as close to fp32 as bf16 allows
        let scale = f32.map { abs($0) }.max() ?? 1
        let candidateError = zip(candidate, f32).map { abs($0 - $1) }.max() ?? .infinity
        let avx2Error = zip(avx2, f32).map { abs($0 - $1) }.max() ?? .infinity
        XCTAssertLessThan(candidateError, 0.05 * scale, "candidate vs fp32")
        XCTAssertLessThan(avx2Error, 0.05 * scale, "AVX2 vs fp32")
    }

    // The VNNI integer kernels' self-check (gfk_q_vnni_test): mode 2 makes the candidate one ulp off in one output,
    // mode 1 makes an exact AVX2 emulation of the VNNI kernel the candidate. Either way the logits must be the AVX2
    // kernel's bits (the VNNI kernels reproduce them exactly); the C kernel test checks the emulation on every shape.

    private func startQuant(mode: Int32, expectVNNI: Bool, _ capture: Capture) throws -> OpaquePointer {
        capturing(capture)
        XCTAssertEqual(gfk_q_vnni_test(mode), expectVNNI ? 1 : 0, "kernel after hook mode \(mode)")
        XCTAssertEqual(QuantMatrix.panelKernel.contains("VNNI"), expectVNNI, QuantMatrix.panelKernel)
        return try load(GFN_WEIGHTS_INT8)
    }

    func testQuantMismatchFallsBackToAVX2AndWarnsOnce() throws {
        guard QuantMatrix.usesAVX2 else { throw XCTSkip("no AVX2: the VNNI kernels are never candidates") }
        let capture = Capture()
        let h = try startQuant(mode: 2, expectVNNI: false, capture)
        defer { gfn_model_free(h) }
        assertOneFallbackWarning(capture)
        XCTAssertEqual(QuantMatrix.panelKernel, "AVX2")
        let served = logits(h)
        XCTAssertFalse(QuantMatrix.allowVNNI(false))
        XCTAssertEqual(logits(h), served)
        let h2 = try load(GFN_WEIGHTS_Q4)   // once per failed check, not per model
        gfn_model_free(h2)
        XCTAssertEqual(capture.lines.withLock { $0.count }, 1)
    }

    func testQuantPassUsesTheCheckedKernel() throws {
        guard QuantMatrix.usesAVX2 else { throw XCTSkip("no AVX2: the VNNI kernels are never candidates") }
        let capture = Capture()
        let h = try startQuant(mode: 1, expectVNNI: true, capture)
        defer { gfn_model_free(h) }
        XCTAssertEqual(capture.lines.withLock { $0.count }, 0, "no warning after a passed check")
        XCTAssertTrue(QuantMatrix.panelKernel.contains("emulated"), QuantMatrix.panelKernel)
        XCTAssertTrue(SystemInfo.line().contains("int8/4-bit products: VNNI (emulated"), SystemInfo.line())
        let candidate = logits(h)
        XCTAssertFalse(QuantMatrix.allowVNNI(false))
        XCTAssertEqual(QuantMatrix.panelKernel, "AVX2")
        XCTAssertEqual(logits(h), candidate, "the VNNI kernels give the AVX2 kernel's bits")
    }
}
