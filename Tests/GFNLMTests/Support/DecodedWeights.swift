@testable import GFNLM

/// An fp32 model whose matrices hold exactly the values of `w`'s bf16 or quantized matrices: the reference that a
/// model with narrower weights is compared with (its arithmetic is then the only difference).
func decodedFP32Weights(_ w: ModelWeights) throws -> ModelWeights {
    func decoded(_ m: WeightMatrix) throws -> Tensor? {
        switch m.storage {
        case .bf16(let b): return try b.decoded()
        case .quant(let q): return try q.decoded()
        default: return nil
        }
    }
    func lin(_ l: Linear) throws -> Linear {
        guard let weight = try decoded(l.matrix) else { return l }
        return try Linear(name: l.name, weight: weight, bias: l.bias)
    }
    var bs: [BlockWeights] = []
    for b in w.blocks {
        let qkv: QKVProjection
        switch b.qkv {
        case .fused(let l): qkv = .fused(try lin(l))
        case .separate(let q, let k, let v): qkv = .separate(q: try lin(q), k: try lin(k), v: try lin(v))
        }
        bs.append(BlockWeights(ln1: b.ln1, ln2: b.ln2, qkv: qkv, attnOut: try lin(b.attnOut), fcIn: try lin(b.fcIn),
                               fcOut: try lin(b.fcOut)))
    }
    var head = w.head
    if case .linear(let l) = w.head { head = .linear(try lin(l)) }
    guard let e = try decoded(w.embedding) else { return w }
    return try ModelWeights(config: w.config, wte: try e.transposed2D(), wpe: w.wpe, blocks: bs, lnF: w.lnF,
                            head: head)
}
