import Foundation
@testable import GFNLM

/// A deliberately simple double-precision GPT-2 / GPT-J forward pass (no cache, one sequence), used as an
/// independent reference for the optimised one.
struct NaiveGPT {
    let w: ModelWeights
    var c: ModelConfig { w.config }

    func vec(_ t: Tensor) -> [Double] { t.array.map(Double.init) }
    /// W [in, out] row-major, decoded when stored in bf16.
    func vec(_ m: WeightMatrix) -> [Double] {
        switch m.storage {
        case .f32(let t, let transposed): return transposed ? vec(try! t.transposed2D()) : vec(t)
        case .bf16(let b): return vec(try! b.decoded())
        case .quant(let q): return vec(try! q.decoded())
        }
    }

    func layerNorm(_ x: [Double], _ p: LayerNormWeights) -> [Double] {
        let n = Double(x.count)
        let mu = x.reduce(0, +) / n
        let v = x.map { ($0 - mu) * ($0 - mu) }.reduce(0, +) / n
        let r = 1 / (v + Double(c.layerNormEps)).squareRoot()
        let g = vec(p.gamma), b = vec(p.beta)
        return (0..<x.count).map { (x[$0] - mu) * r * g[$0] + b[$0] }
    }

    func linear(_ x: [Double], _ l: Linear, lora: LoRAAdapter? = nil) -> [Double] {
        let W = vec(l.matrix)
        let nIn = l.inFeatures, nOut = l.outFeatures
        var y = l.bias.map(vec) ?? [Double](repeating: 0, count: nOut)
        for i in 0..<nIn where x[i] != 0 {
            for o in 0..<nOut { y[o] += x[i] * W[i * nOut + o] }
        }
        if let f = lora?.factors(for: l.name) {
            let A = vec(f.a), B = vec(f.b), r = f.rank
            var t = [Double](repeating: 0, count: r)
            for k in 0..<r { for i in 0..<nIn { t[k] += x[i] * A[k * nIn + i] } }
            for o in 0..<nOut { for k in 0..<r { y[o] += Double(f.scale) * t[k] * B[o * r + k] } }
        }
        return y
    }

    func gelu(_ x: Double) -> Double {
        switch c.activation {
        case .geluNew: return 0.5 * x * (1 + tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)))
        case .gelu: return 0.5 * x * (1 + erf(x / 2.0.squareRoot()))
        }
    }

    func rotate(_ v: inout [Double], offset: Int, pos: Int) {
        let R = c.rotaryDim
        for j in 0..<(R / 2) {
            let invFreq = 1 / pow(Double(c.rotaryBase), Double(2 * j) / Double(R))
            let a = Double(pos) * invFreq
            let x1 = v[offset + 2 * j], x2 = v[offset + 2 * j + 1]
            v[offset + 2 * j] = x1 * cos(a) - x2 * sin(a)
            v[offset + 2 * j + 1] = x2 * cos(a) + x1 * sin(a)
        }
    }

    /// Logits [T][V] for one sequence at positions 0..<T.
    func logits(_ tokens: [Int32], lora: LoRAAdapter? = nil) -> [[Double]] {
        let E = c.nEmbd, H = c.nHead, D = c.headDim, T = tokens.count
        let wte: [Double]
        switch w.embedding.storage {
        case .f32(let t, _): wte = vec(t)  // [V, E]
        case .bf16(let b): wte = vec(try! b.decoded().transposed2D())
        case .quant(let q): wte = vec(try! q.decoded().transposed2D())
        }
        let wpe = w.wpe.map(vec)
        var x: [[Double]] = (0..<T).map { t in
            var e = Array(wte[Int(tokens[t]) * E..<(Int(tokens[t]) + 1) * E])
            if let wpe { for i in 0..<E { e[i] += wpe[t * E + i] } }
            return e
        }
        for block in w.blocks {
            let h = x.map { layerNorm($0, block.ln1) }
            var q = [[Double]](), k = [[Double]](), v = [[Double]]()
            for t in 0..<T {
                switch block.qkv {
                case .fused(let l):
                    let o = linear(h[t], l, lora: lora)
                    q.append(Array(o[0..<E])); k.append(Array(o[E..<2 * E])); v.append(Array(o[2 * E..<3 * E]))
                case .separate(let lq, let lk, let lv):
                    q.append(linear(h[t], lq, lora: lora)); k.append(linear(h[t], lk, lora: lora)); v.append(linear(h[t], lv, lora: lora))
                }
                if c.arch == .gptj {
                    for hh in 0..<H { rotate(&q[t], offset: hh * D, pos: t); rotate(&k[t], offset: hh * D, pos: t) }
                }
            }
            var att = [[Double]](repeating: [Double](repeating: 0, count: E), count: T)
            for hh in 0..<H {
                for t in 0..<T {
                    var s = [Double](repeating: 0, count: t + 1)
                    for j in 0...t {
                        var d = 0.0
                        for i in 0..<D { d += q[t][hh * D + i] * k[j][hh * D + i] }
                        s[j] = d / Double(D).squareRoot()
                    }
                    let m = s.max()!
                    let e = s.map { exp($0 - m) }
                    let z = e.reduce(0, +)
                    for j in 0...t { for i in 0..<D { att[t][hh * D + i] += e[j] / z * v[j][hh * D + i] } }
                }
            }
            for t in 0..<T {
                let a = linear(att[t], block.attnOut, lora: lora)
                switch c.arch {
                case .gpt2:
                    for i in 0..<E { x[t][i] += a[i] }
                    let h2 = layerNorm(x[t], block.ln2!)
                    let m = linear(linear(h2, block.fcIn, lora: lora).map(gelu), block.fcOut, lora: lora)
                    for i in 0..<E { x[t][i] += m[i] }
                case .gptj:
                    let m = linear(linear(h[t], block.fcIn, lora: lora).map(gelu), block.fcOut, lora: lora)
                    for i in 0..<E { x[t][i] += a[i] + m[i] }
                }
            }
        }
        return x.map { xt in
            let hf = layerNorm(xt, w.lnF)
            var z: [Double]
            switch w.head {
            case .tied:
                z = (0..<c.vocabSize).map { vv in (0..<E).reduce(0.0) { $0 + hf[$1] * wte[vv * E + $1] } }
            case .linear(let l):
                z = linear(hf, l)
            }
            if let f = lora?.headFactors {  // the head's LoRA branch (logits only, never the embedding lookup)
                let A = vec(f.a), B = vec(f.b), r = f.rank
                let t = (0..<r).map { k in (0..<E).reduce(0.0) { $0 + hf[$1] * A[k * E + $1] } }
                for o in 0..<c.vocabSize { for k in 0..<r { z[o] += Double(f.scale) * t[k] * B[o * r + k] } }
            }
            return z
        }
    }
}
