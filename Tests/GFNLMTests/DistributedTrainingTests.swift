import Foundation
import XCTest
@testable import GFNLM

/// Data-parallel training without MPI: K replicas on K threads of this process, joined by an all-reduce over shared
/// memory (sum in rank order, divided by K: the same bytes for every rank, as MPI's Allreduce gives). The mpirun
/// tests (bindings/python/tests/test_distributed.py) run the same over processes and hosts.
final class DistributedTrainingTests: XCTestCase {
    /// A barrier all-reduce for K threads.
    final class ThreadWorld: @unchecked Sendable {
        let k: Int
        let cond = NSCondition()
        var buffers: [[Float]]
        var result: [Float] = []
        var arrived = 0, generation = 0
        var calls = 0

        init(_ k: Int) { self.k = k; buffers = Array(repeating: [], count: k) }

        /// `slot`: the thread's place in the world (its rank unless a test makes two threads claim one rank).
        func exchange(rank: Int, slot: Int? = nil) throws(GFNError) -> GradientExchange {
            let slot = slot ?? rank
            return try GradientExchange(rank: rank, worldSize: k) { [self] (b) throws(GFNError) in
                cond.lock()
                defer { cond.unlock() }
                let gen = generation
                buffers[slot] = Array(b)
                arrived += 1
                if arrived == k {
                    var r = buffers[0]
                    for j in 1..<k {
                        guard buffers[j].count == r.count else { fatalError("ranks passed different lengths") }
                        for i in r.indices { r[i] += buffers[j][i] }
                    }
                    for i in r.indices { r[i] /= Float(k) }
                    result = r
                    arrived = 0
                    generation += 1
                    calls += 1
                    cond.broadcast()
                } else {
                    while generation == gen { cond.wait() }
                }
                for i in 0..<b.count { b[i] = result[i] }
            }
        }
    }

    static let allowed: [Int32] = [1, 2, 3]

    func trainer(batch: Int, objective: Objective, lr: Double = 1e-2, replay: Double = 0) throws -> GFlowNetTrainer {
        let cfg = ModelConfig.tiny(.gpt2, vocab: 16, embd: 32, layers: 2, heads: 4, positions: 16)
        let w = try ModelWeights.random(config: cfg, seed: 3, std: 0.3)
        let model = Model(transformer: Transformer(weights: w, threads: 1), tokenizer: nil)
        var table: [[Int32]: Double] = [[]: 0.4]
        var rng = RNG(seed: 5)
        var frontier: [[Int32]] = [[]]
        for _ in 0..<3 {
            frontier = frontier.flatMap { s in Self.allowed.map { s + [$0] } }
            for z in frontier { table[z] = 1.5 * rng.normal() }
        }
        let reward = CallbackReward { _, states throws(GFNError) in states.map { table[$0] ?? -50 } }
        let adapter = try LoRAAdapter(model: w, config: LoRAConfig(r: 4, alpha: 8, targets: ["c_attn", "c_fc"]), seed: 9)
        var settings = RolloutSettings(termination: 0, maxLength: 3)
        settings.adjustment = LogitAdjustment(allowed: Self.allowed, disallowedPenalty: -.infinity)
        var c = GFlowNetConfig()
        c.objective = objective
        c.batchSize = batch
        c.gradAccumulation = 2
        c.learningRate = lr
        c.schedule = .constant
        c.replayProbability = replay
        c.seed = 4
        return try GFlowNetTrainer(model: model, adapter: adapter, reward: reward, prompts: [PromptSpec(x: [7, 8])],
                                   rollout: settings, config: c)
    }

    /// Runs `body(rank)` on one thread per rank and waits for all.
    func onThreads(_ k: Int, _ body: @escaping @Sendable (Int) -> Void) {
        let group = DispatchGroup()
        for r in 0..<k {
            group.enter()
            let t = Thread { body(r); group.leave() }
            t.stackSize = 8 << 20
            t.start()
        }
        group.wait()
    }

    final class Box<T>: @unchecked Sendable { var value: T; init(_ v: T) { value = v } }

    func values(_ t: GFlowNetTrainer) -> [Float] {
        t.optimizer.parameters.flatMap { $0.value.array } + t.logZ.value.array
    }

    /// 2 replicas × batch 4 stay bit-identical and follow one process × batch 8 (same trajectories: rank-sliced row
    /// seeds; SubTB's pooled normaliser and DB's active rows re-weighted) up to float rounding.
    func checkEquivalence(_ objective: Objective) throws {
        let steps = 4
        let world = ThreadWorld(2)
        let replicas = try (0..<2).map { r throws -> GFlowNetTrainer in
            let t = try trainer(batch: 4, objective: objective)
            t.setDistributed(try world.exchange(rank: r))
            return t
        }
        let errors = Box<[String]>([])
        let lock = NSLock()
        let losses = Box<[[Double]]>([[], []])
        onThreads(2) { r in
            do {
                for _ in 0..<steps {
                    let s = try replicas[r].trainStep()
                    lock.lock(); losses.value[r].append(s.loss); lock.unlock()
                }
            } catch { lock.lock(); errors.value.append("\(error)"); lock.unlock() }
        }
        XCTAssertEqual(errors.value, [])
        XCTAssertEqual(values(replicas[0]), values(replicas[1]), "replicas must stay bit-identical")
        XCTAssertEqual(losses.value[0], losses.value[1])
        let single = try trainer(batch: 8, objective: objective)
        var singleLosses: [Double] = []
        for _ in 0..<steps { singleLosses.append(try single.trainStep().loss) }
        let a = values(replicas[0]), b = values(single)
        let start = values(try trainer(batch: 8, objective: objective))
        let moved = zip(b, start).map { abs($0 - $1) }.max() ?? 0
        let diff = zip(a, b).map { abs($0 - $1) }.max() ?? 0
        XCTAssertGreaterThan(moved, 1e-3)
        XCTAssertLessThan(diff, 1e-3 * moved, "\(objective): 2 × 4 vs 1 × 8 differ by \(diff) (moved \(moved))")
        for (x, y) in zip(losses.value[0], singleLosses) { XCTAssertEqual(x, y, accuracy: 1e-4 * max(1, abs(y))) }
        // one exchange per step and, for the pooled losses, one per pass (2 micro-batches of one prompt: 1 pass)
        let pooled: Bool
        switch objective { case .subTB, .db: pooled = true; default: pooled = false }
        XCTAssertEqual(world.calls, 2 + steps * (pooled ? 2 : 1))  // + digest and rank check
    }

    func testSubTBReplicasMatchTheMergedBatch() throws { try checkEquivalence(.subTB) }
    func testTBReplicasMatchTheMergedBatch() throws { try checkEquivalence(.tb) }
    func testDBReplicasMatchTheMergedBatch() throws { try checkEquivalence(.db) }

    /// Ranks with different batch sizes or learning rates are refused at the first step, on every rank, naming the
    /// difference; nothing changes.
    func testMismatchedConfigurationsAreRefusedOnEveryRank() throws {
        let world = ThreadWorld(2)
        let a = try trainer(batch: 4, objective: .subTB)
        let b = try trainer(batch: 5, objective: .subTB, lr: 2e-2)
        a.setDistributed(try world.exchange(rank: 0))
        b.setDistributed(try world.exchange(rank: 1))
        let before = values(a)
        let messages = Box<[String]>(["", ""])
        let lock = NSLock()
        onThreads(2) { r in
            do throws(GFNError) { try [a, b][r].trainStep() } catch {
                lock.lock(); messages.value[r] = "\(error.status) \(error.message)"; lock.unlock()
            }
        }
        for m in messages.value {
            XCTAssertTrue(m.hasPrefix("state"), m)
            XCTAssertTrue(m.contains("batch_size (this rank: "), m)
            XCTAssertTrue(m.contains("optimizer group lora"), m)
            XCTAssertFalse(m.contains("model configuration"), m)
        }
        XCTAssertTrue(messages.value[0].contains("batch_size (this rank: 4)"))
        XCTAssertTrue(messages.value[1].contains("batch_size (this rank: 5)"))
        XCTAssertEqual(values(a), before)
        XCTAssertEqual(a.step, 0)
    }

    /// exchangeReplay: the best trajectory of every step reaches every rank's buffer (which otherwise holds only what
    /// the rank sampled); the replicas stay bit-identical.
    func testReplayExchangeSharesEachStepsBestTrajectory() throws {
        let key = PromptSpec(x: [7, 8]).key
        for share in [false, true] {
            let world = ThreadWorld(2)
            let ts = try (0..<2).map { r throws -> GFlowNetTrainer in
                let t = try trainer(batch: 4, objective: .subTB, replay: 0.5)
                let ex = try world.exchange(rank: r)
                ex.exchangeReplay = share
                t.setDistributed(ex)
                return t
            }
            let errors = Box<[String]>([])
            let lock = NSLock()
            onThreads(2) { r in
                do throws(GFNError) { for _ in 0..<3 { try ts[r].trainStep() } } catch {
                    lock.lock(); errors.value.append(error.message); lock.unlock()
                }
            }
            XCTAssertEqual(errors.value, [])
            XCTAssertEqual(values(ts[0]), values(ts[1]))
            let items = ts.map { t in Set(t.buffer.items(key).map { "\($0.actions) \($0.logR)" }) }
            let top = ts.map { $0.buffer.items(key).map(\.logR).max() ?? -.infinity }
            let shared = items[0].intersection(items[1])
            XCTAssertFalse(items[0].isEmpty || items[1].isEmpty)
            XCTAssertNotEqual(items[0], items[1], "buffers stay per rank apart from the shared items")
            if share {
                // the overall best trajectory so far (the best of some step) is in both buffers, exactly
                XCTAssertEqual(top[0], top[1])
                XCTAssertFalse(shared.isEmpty)
            } else {
                XCTAssertTrue(shared.count < min(items[0].count, items[1].count))
            }
        }
    }

    /// The replay slot round trip: an item packed by rank 1 of 3, averaged as floats (÷ 3), comes back bit for bit
    /// at rank 0 (actions, log R and every per-state log R), and rank 0 skips its own slot.
    func testReplaySlotsRoundTripExactly() throws {
        let t = try trainer(batch: 4, objective: .subTB, replay: 0.5)
        let key = t.prompts[0].key
        let item = ReplayItem(logR: -3.141592653589793e-7, text: "x", actions: [3, 1, 2],
                              logRewards: [0.1, -1e300, .pi, -3.141592653589793e-7], truncated: true)
        let worse = ReplayItem(logR: -9, text: "y", actions: [2], logRewards: [0, -9], truncated: false)
        let k = 3
        let payload = t.replayPayload([(key, worse), (key, item)], rank: 1, worldSize: k)
        XCTAssertEqual(payload.count, k * t.replaySlot)
        let mean = payload.map { $0 / Float(k) }
        let got = t.receivedItems(mean, rank: 0, worldSize: k)
        XCTAssertEqual(got.count, 1)
        XCTAssertEqual(got.first?.0, key)
        XCTAssertEqual(got.first?.1.actions, item.actions)
        XCTAssertEqual(got.first?.1.logR.bitPattern, item.logR.bitPattern)
        XCTAssertEqual(got.first?.1.logRewards.map(\.bitPattern), item.logRewards.map(\.bitPattern))
        XCTAssertEqual(got.first?.1.truncated, true)
        XCTAssertTrue(t.receivedItems(mean, rank: 1, worldSize: k).isEmpty)
    }

    /// Two processes that both claim rank 0 are refused.
    func testDuplicateRanksAreRefused() throws {
        let world = ThreadWorld(2)
        let ts = try (0..<2).map { _ in try trainer(batch: 4, objective: .tb) }
        for (i, t) in ts.enumerated() { t.setDistributed(try world.exchange(rank: 0, slot: i)) }
        let messages = Box<[String]>(["", ""])
        let lock = NSLock()
        onThreads(2) { r in
            do throws(GFNError) { try ts[r].trainStep() } catch { lock.lock(); messages.value[r] = error.message; lock.unlock() }
        }
        for m in messages.value { XCTAssertTrue(m.contains("rank 0 is claimed by 2 processes"), m) }
    }
}
