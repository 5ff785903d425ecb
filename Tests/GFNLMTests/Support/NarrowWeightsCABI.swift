import Foundation
import XCTest
@testable import GFNLM
@testable import GFNLMC
import CGFNLM

/// Through the C ABI: the model in `dir` loads with `params` (a narrower weight type), gives finite logits, and
/// refuses ONNX export (which needs fp32 weights) without writing a file. Returns the refusal's message.
@discardableResult
func checkNarrowWeightsThroughCABI(dir: String, params: gfn_model_params, label: String,
                                   file: StaticString = #filePath, line: UInt = #line) -> String {
    var p = params
    var h: OpaquePointer?
    XCTAssertEqual(dir.withCString { gfn_model_load($0, &p, &h) }, 0, label, file: file, line: line)
    guard h != nil else { XCTFail("\(label): no model", file: file, line: line); return "" }
    defer { gfn_model_free(h) }
    var cfg = gfn_model_config(); cfg.size = UInt32(MemoryLayout<gfn_model_config>.size)
    XCTAssertEqual(gfn_model_config_get(h, &cfg), 0, label, file: file, line: line)
    let V = Int(cfg.vocab_size)
    var ids: [Int32] = [1, 2, 3, 4]
    var out = [Float](repeating: 0, count: 4 * V)
    XCTAssertEqual(gfn_model_logits(h, nil, &ids, 1, 4, nil, &out, out.count), 0, label, file: file, line: line)
    XCTAssertTrue(out.allSatisfy { $0.isFinite }, label, file: file, line: line)
    let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("narrow-export-\(getpid()).onnx").path
    XCTAssertEqual(tmp.withCString { gfn_model_export_onnx(h, nil, $0) }, GFNStatus.unsupported.rawValue, label,
                   file: file, line: line)
    XCTAssertFalse(FileIO.exists(tmp), label, file: file, line: line)
    return String(cString: gfn_last_error())
}
