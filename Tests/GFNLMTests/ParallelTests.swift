import Foundation
import XCTest
@testable import GFNLM

/// `Parallel.chunks` on the worker pool and on its libdispatch fallback: every index once, worker numbers below the
/// thread count and never shared by two chunks at the same time, nested and concurrent regions complete.
final class ParallelTests: XCTestCase {
    /// Runs one region and checks it; returns the number of problems.
    private static func checkRegion(count: Int, threads: Int) -> Int {
        let hits = UnsafeMutablePointer<Int32>.allocate(capacity: max(count, 1))
        hits.initialize(repeating: 0, count: max(count, 1))
        let inside = UnsafeMutablePointer<Int32>.allocate(capacity: max(threads, 1))
        inside.initialize(repeating: 0, count: max(threads, 1))
        defer { hits.deallocate(); inside.deallocate() }
        let problems = Atomic(0)
        let box = UncheckedSendable((hits, inside))
        Parallel.chunks(count, threads: threads) { worker, range in
            let (hits, inside) = box.value
            guard worker >= 0, worker < max(threads, 1) else { problems.add(1); return }
            if problems.adjust(inside + worker, by: 1) != 1 { problems.add(1) }
            for i in range { hits[i] += 1 }
            usleep(50)  // long enough for the other participants' chunks to overlap this one
            _ = problems.adjust(inside + worker, by: -1)
        }
        var bad = problems.value
        for i in 0..<count where hits[i] != 1 { bad += 1 }
        return bad
    }

    func testEveryIndexOnceWithDistinctWorkers() {
        for threads in [1, 2, 3, Parallel.cpuCount, Parallel.cpuCount + 2] {
            for count in [0, 1, 2, 3, 7, 64, 1000] {
                XCTAssertEqual(Self.checkRegion(count: count, threads: threads), 0, "count \(count), threads \(threads)")
            }
        }
    }

    func testNestedRegionsComplete() {
        let total = Atomic(0)
        Parallel.chunks(8, threads: 2) { _, outer in
            for _ in outer {
                Parallel.chunks(100, threads: 2) { _, inner in total.add(inner.count) }
            }
        }
        XCTAssertEqual(total.value, 800)
    }

    func testConcurrentCallersAllComplete() {
        let bad = Atomic(0)
        DispatchQueue.concurrentPerform(iterations: 4) { caller in
            for i in 0..<500 { bad.add(ParallelTests.checkRegion(count: 1 + (i * 7 + caller) % 97, threads: 2)) }
        }
        XCTAssertEqual(bad.value, 0)
    }
}

/// A counter shared by the chunks of a region, and lock-protected updates of other shared counters (a lock keeps
/// the test independent of the code under test).
private final class Atomic: @unchecked Sendable {
    private var v: Int
    private let lock = NSLock()
    init(_ v: Int) { self.v = v }
    func add(_ d: Int) { lock.lock(); v += d; lock.unlock() }
    var value: Int { lock.lock(); defer { lock.unlock() }; return v }
    /// Adds `d` to `*p` under the lock and returns the new value.
    func adjust(_ p: UnsafeMutablePointer<Int32>, by d: Int32) -> Int32 {
        lock.lock(); defer { lock.unlock() }
        p.pointee += d
        return p.pointee
    }
}
