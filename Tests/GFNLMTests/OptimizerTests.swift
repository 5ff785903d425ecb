import Foundation
import XCTest
@testable import GFNLM

final class OptimizerTests: XCTestCase {
    func param(_ name: String, _ values: [Float]) throws -> Parameter {
        try Parameter(name: name, value: Tensor(shape: [values.count], values: values))
    }

    func setGrad(_ p: Parameter, _ g: [Float]) {
        for i in 0..<g.count { p.grad.pointer[i] = g[i] }
    }

    /// First step from zero moments: m̂ = g, v̂ = g², so p₁ = p₀(1 − lr·wd) − lr·g/(|g| + eps).
    func testFirstStepByHand() throws {
        let p = try param("w", [1.0, -2.0, 0.5, 3.0])
        setGrad(p, [0.5, -0.25, 2.0, 0])
        let opt = try AdamW(parameters: [p], hyper: .init(lr: 0.1, weightDecay: 0.01))
        let r = opt.step()
        XCTAssertTrue(r.applied)
        XCTAssertEqual(r.step, 1)
        let expected: [Double] = [1.0 * 0.999 - 0.1 * 0.5 / (0.5 + 1e-8),
                                  -2.0 * 0.999 + 0.1 * 0.25 / (0.25 + 1e-8),
                                  0.5 * 0.999 - 0.1 * 2.0 / (2.0 + 1e-8),
                                  3.0 * 0.999]
        for i in 0..<4 { XCTAssertEqual(Double(p.value.pointer[i]), expected[i], accuracy: 1e-6) }
        XCTAssertEqual(r.gradNorm, (0.25 + 0.0625 + 4.0).squareRoot(), accuracy: 1e-6)
    }

    /// torch.optim.AdamW's `_single_tensor_adamw`, written out scalar by scalar (fp32 tensors, Python-float scalars).
    struct TorchAdamW {
        var lr: Double, beta1: Double, beta2: Double, eps: Double, wd: Double
        var m: [Float], v: [Float], step = 0.0
        mutating func update(_ p: inout [Float], _ g: [Float], lrNow: Double) {
            step += 1
            for i in 0..<p.count {
                p[i] = p[i] * Float(1 - lrNow * wd)                              // param.mul_(1 - lr * wd)
                let w = Float(1 - beta1)
                m[i] = w < 0.5 ? m[i] + w * (g[i] - m[i]) : g[i] - (g[i] - m[i]) * (1 - w)  // exp_avg.lerp_(grad, 1-β1)
                v[i] = v[i] * Float(beta2) + Float(1 - beta2) * g[i] * g[i]   // mul_(β2).addcmul_(g, g, 1-β2)
                let bc1 = 1 - pow(beta1, step), bc2 = 1 - pow(beta2, step)
                let stepSize = lrNow / bc1
                let denom = v[i].squareRoot() / Float(bc2.squareRoot()) + Float(eps)
                p[i] = p[i] + Float(-stepSize) * (m[i] / denom)                // addcdiv_(m, denom, -step_size)
            }
        }
    }

    func testSeveralStepsMatchTorchFormulaWithGroupsAndSchedule() throws {
        var rng = RNG(seed: 5)
        let n = 37
        let a0 = (0..<n).map { _ in Float(rng.normal()) }
        let logZ0: [Float] = [0.3]
        let pa = try param("lora", a0), pz = try param("log_z", logZ0)
        let hA = AdamWHyperparameters(lr: 1e-2, beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0.01)
        let hZ = AdamWHyperparameters(lr: 0.1, weightDecay: 0)
        let sched = LRSchedule.warmupLinearDecay(warmupSteps: 2, totalSteps: 8)
        let opt = try AdamW(groups: [ParameterGroup(name: "lora", parameters: [pa], hyper: hA),
                                     ParameterGroup(name: "logz", parameters: [pz], hyper: hZ, schedule: .constant)],
                            schedule: sched)
        var refA = TorchAdamW(lr: hA.lr, beta1: hA.beta1, beta2: hA.beta2, eps: hA.eps, wd: hA.weightDecay,
                              m: Array(repeating: 0, count: n), v: Array(repeating: 0, count: n))
        var refZ = TorchAdamW(lr: hZ.lr, beta1: hZ.beta1, beta2: hZ.beta2, eps: hZ.eps, wd: hZ.weightDecay,
                              m: [0], v: [0])
        var a = a0, z = logZ0
        for s in 0..<6 {
            let ga = (0..<n).map { _ in Float(rng.normal()) }, gz = [Float(rng.normal())]
            setGrad(pa, ga); setGrad(pz, gz)
            let r = opt.step()
            XCTAssertTrue(r.applied)
            XCTAssertEqual(r.learningRates[0], hA.lr * sched.multiplier(step: s), accuracy: 1e-15)
            refA.update(&a, ga, lrNow: hA.lr * sched.multiplier(step: s))
            refZ.update(&z, gz, lrNow: hZ.lr)
            opt.zeroGrad()
            for i in 0..<n { XCTAssertEqual(pa.value.pointer[i], a[i], accuracy: 2e-7 * max(1, abs(a[i])), "step \(s) [\(i)]") }
            XCTAssertEqual(pz.value.pointer[0], z[0], accuracy: 2e-7)
        }
        // step 0 of a warm-up has lr 0: only the moments (and the decay factor 1) were touched
        XCTAssertEqual(sched.multiplier(step: 0), 0)
    }

    /// Values printed by torch 2.15: torch.optim.AdamW([{p}, {z, lr 0.1, wd 0}], lr=0.01, betas=(0.9, 0.99),
    /// weight_decay=0.05) with LambdaLR([min(s/2, 1), 1]); p₀[i] = 0.1·sin i, g_s[i] = 0.2·cos(i + s),
    /// z₀ = 0.5, g_s = 0.3·(s − 2), five steps.
    func testMatchesTorchAdamWWithLambdaLR() throws {
        let p = try param("p", (0..<8).map { Float(0.1 * sin(Double($0))) })
        let z = try param("z", [0.5])
        let opt = try AdamW(groups: [ParameterGroup(parameters: [p], hyper: .init(lr: 0.01, beta2: 0.99, weightDecay: 0.05)),
                                     ParameterGroup(parameters: [z], hyper: .init(lr: 0.1, beta2: 0.99, weightDecay: 0),
                                                    schedule: .constant)],
                            schedule: .linearWarmup(warmupSteps: 2))
        for s in 0..<5 {
            setGrad(p, (0..<8).map { Float(0.2 * cos(Double($0 + s))) })
            setGrad(z, [Float(0.3 * Double(s - 2))])
            XCTAssertTrue(opt.step().applied)
        }
        let torchP: [Float] = [-0.005953735671937466, 0.09896431863307953, 0.11244794726371765, 0.022589072585105896,
                               -0.0874306708574295, -0.11821623146533966, -0.03880016878247261, 0.07432297617197037]
        let torchV: [Float] = [0.0011244473280385137, 0.0007649924955330789, 0.0010150655871257186, 0.0011663860641419888,
                               0.0007903698715381324, 0.0009520053281448781, 0.0011934932554140687, 0.0008308690157718956]
        for i in 0..<8 {
            XCTAssertEqual(p.value.pointer[i], torchP[i], accuracy: 1e-7, "p[\(i)]")
            XCTAssertEqual(opt.moments[0].v[i], torchV[i], accuracy: 1e-9, "v[\(i)]")
        }
        XCTAssertEqual(z.value.pointer[0], 0.7810678482055664, accuracy: 1e-7)
    }

    func testNonFiniteGradientOrLossSkipsStepAndKeepsState() throws {
        let p = try param("w", [1, 2, 3])
        let opt = try AdamW(parameters: [p], hyper: .init(lr: 0.1))
        setGrad(p, [0.1, 0.2, 0.3])
        XCTAssertTrue(opt.step().applied)
        let before = Array(p.value.buffer)
        let mBefore = Array(opt.moments[0].m), vBefore = Array(opt.moments[0].v)
        for bad in [Float.nan, .infinity, -.infinity] {
            setGrad(p, [0.1, bad, 0.3])
            let r = opt.step()
            XCTAssertFalse(r.applied)
            XCTAssertNotNil(r.message)
            XCTAssertEqual(r.step, 1)
            XCTAssertEqual(opt.stepCount, 1)
            XCTAssertEqual(Array(p.value.buffer), before)
            XCTAssertEqual(Array(opt.moments[0].m), mBefore)
            XCTAssertEqual(Array(opt.moments[0].v), vBefore)
        }
        setGrad(p, [0.1, 0.2, 0.3])
        XCTAssertFalse(opt.step(loss: .nan).applied)
        XCTAssertEqual(Array(p.value.buffer), before)
        XCTAssertTrue(opt.step(loss: 1.5).applied)
        XCTAssertEqual(opt.stepCount, 2)
    }

    func testClippingAndMeanAccumulation() throws {
        // clipping: the update equals one with gradients pre-scaled to the max norm
        let g: [Float] = [3, 4]  // norm 5
        let p1 = try param("a", [1, 1]), p2 = try param("b", [1, 1])
        let o1 = try AdamW(parameters: [p1], hyper: .init(lr: 0.1, beta1: 0.5, beta2: 0.5), maxGradNorm: 1)
        let o2 = try AdamW(parameters: [p2], hyper: .init(lr: 0.1, beta1: 0.5, beta2: 0.5))
        for _ in 0..<3 {
            setGrad(p1, g); setGrad(p2, g.map { $0 * Float(1 / (5 + 1e-6)) })
            let r = o1.step(); o2.step()
            XCTAssertEqual(r.gradNorm, 5, accuracy: 1e-6)
            for i in 0..<2 { XCTAssertEqual(p1.value.pointer[i], p2.value.pointer[i], accuracy: 1e-6) }
        }
        // mean over k micro-batches == gradientScale 1/k on the summed gradient
        let q1 = try param("q", [0.5, -0.5]), q2 = try param("r", [0.5, -0.5])
        let a1 = try AdamW(parameters: [q1]), a2 = try AdamW(parameters: [q2])
        setGrad(q1, [0.6, 0.9]); setGrad(q2, [0.2, 0.3])
        a1.step(gradientScale: 1.0 / 3); a2.step()
        XCTAssertEqual(q1.value.array, q2.value.array)
    }

    func testRejectsBadConfiguration() throws {
        let p = try param("w", [1])
        XCTAssertThrowsError(try AdamW(parameters: [p], hyper: .init(lr: -1)))
        XCTAssertThrowsError(try AdamW(parameters: [p], hyper: .init(beta1: 1)))
        XCTAssertThrowsError(try AdamW(groups: [ParameterGroup(parameters: [p]), ParameterGroup(parameters: [p])]))
        XCTAssertThrowsError(try AdamW(parameters: [p], schedule: .warmupLinearDecay(warmupSteps: 5, totalSteps: 2)))
        XCTAssertThrowsError(try AdamW(parameters: [p], maxGradNorm: 0))
    }
}

final class ScheduleTests: XCTestCase {
    func testMultipliers() {
        XCTAssertEqual(LRSchedule.constant.multiplier(step: 0), 1)
        let w = LRSchedule.linearWarmup(warmupSteps: 20)
        XCTAssertEqual(w.multiplier(step: 0), 0)   // LambdaLR: the first step uses λ(0) = 0
        XCTAssertEqual(w.multiplier(step: 5), 0.25)
        XCTAssertEqual(w.multiplier(step: 20), 1)
        XCTAssertEqual(w.multiplier(step: 500), 1)
        XCTAssertEqual(LRSchedule.linearWarmup(warmupSteps: 0).multiplier(step: 0), 1)
        let d = LRSchedule.warmupLinearDecay(warmupSteps: 10, totalSteps: 2560)
        XCTAssertEqual(d.multiplier(step: 0), 0)
        XCTAssertEqual(d.multiplier(step: 5), 0.5)
        XCTAssertEqual(d.multiplier(step: 10), 1)
        XCTAssertEqual(d.multiplier(step: 1285), 0.5)
        XCTAssertEqual(d.multiplier(step: 2560), 0)
        XCTAssertEqual(d.multiplier(step: 3000), 0)
        let c = LRSchedule.cosine(warmupSteps: 4, totalSteps: 104)
        XCTAssertEqual(c.multiplier(step: 2), 0.5)
        XCTAssertEqual(c.multiplier(step: 4), 1, accuracy: 1e-12)
        XCTAssertEqual(c.multiplier(step: 54), 0.5, accuracy: 1e-12)
        XCTAssertEqual(c.multiplier(step: 104), 0, accuracy: 1e-12)
        let c2 = LRSchedule.cosine(warmupSteps: 0, totalSteps: 10, minRatio: 0.1)
        XCTAssertEqual(c2.multiplier(step: 10), 0.1, accuracy: 1e-12)
        XCTAssertEqual(LinearRamp(start: 1.1, end: 0.5, horizon: 150).value(step: 75), 0.8, accuracy: 1e-12)
        XCTAssertEqual(LinearRamp(start: 1.1, end: 0.5, horizon: 150).value(step: 400), 0.5, accuracy: 1e-12)
    }
}
