import XCTest
@testable import GFNLM

final class SmokeTests: XCTestCase {
    func testTensorRoundTrip() throws {
        let t = try Tensor(shape: [2, 3], values: [1, 2, 3, 4, 5, 6])
        XCTAssertEqual(try t.transposed2D().array, [1, 4, 2, 5, 3, 6])
    }
}
