@testable import GFNLM

/// A LoRA adapter on `targets` whose B factors are random (seeded) instead of PEFT's zeros, so that it changes
/// the model's outputs: what tests of adapter routing need.
func randomizedAdapter(_ m: Model, seed: UInt64, targets: [String]) throws -> LoRAAdapter {
    let a = try LoRAAdapter(model: m.weights, config: LoRAConfig(r: 4, alpha: 8, targets: targets), seed: seed)
    var rng = RNG(seed: seed &+ 100)
    for name in a.moduleNames {
        guard let f = a.factors(for: name) else { continue }
        for i in 0..<f.b.count { f.b.pointer[i] = Float(rng.normal()) * 0.3 }
    }
    if let f = a.headFactors { for i in 0..<f.b.count { f.b.pointer[i] = Float(rng.normal()) * 0.3 } }
    return a
}
