import XCTest
@testable import GFNLM

/// Hand-built GPT-2/GPT-J graphs that vary what real exports keep fixed: Gemm transB/alpha/beta, MatMul+Add,
/// LayerNorm decomposition, activations, head-count sources, untied heads, fused attention, mismatched eps.
final class ONNXSyntheticTests: XCTestCase {
    enum Act { case tanh, erf, geluOp(String), fastGelu, relu }
    enum Norm { case layerNorm, decomposed }
    struct Options {
        var arch: Architecture = .gpt2
        var E = 8, nHead = 2, V = 16, P = 12, nInner = 32, L = 2, rotaryDim = 2
        var gemm = true
        var transB = false
        var alpha: Float = 1, beta: Float = 1
        var act: Act = .tanh
        var norm: Norm = .layerNorm
        var eps: Float = 1e-5
        var lnFEps: Float? = nil
        var headCountInReshape = true
        var tied = true
        var fusedAttentionNode = false
        var rotaryBase: Double = 10000
    }

    /// Builds the graph; `expected` maps every HF tensor name to its values in gfnlm's layout ([in, out]).
    final class Maker {
        var nodes: [PB] = []
        var inits: [PB] = []
        var n = 0
        var seed: Float = 0.1
        var expected: [String: [Float]] = [:]

        func fresh(_ p: String) -> String { n += 1; return "\(p)_\(n)" }

        func values(_ count: Int) -> [Float] {
            seed += 0.37
            let s = seed
            return (0..<count).map { i in (sin(Float(i) * 1.7 + s) * 0.5).rounded(toPlaces: 5) }
        }

        @discardableResult
        func const(_ dims: [Int], _ v: [Float], name: String? = nil) -> String {
            let nm = name ?? fresh("c")
            inits.append(ONNXBuild.tensor(name: nm, dataType: 1, dims: dims.map { Int64($0) }, raw: ONNXBuild.floatBytes(v)))
            return nm
        }

        func ints(_ v: [Int64]) -> String {
            let nm = fresh("i")
            var raw: [UInt8] = []
            for x in v { withUnsafeBytes(of: x.littleEndian) { raw += $0 } }
            inits.append(ONNXBuild.tensor(name: nm, dataType: 7, dims: [Int64(v.count)], raw: raw))
            return nm
        }

        func op(_ type: String, _ inputs: [String], _ attrs: [PB] = [], domain: String = "", outputs: Int = 1) -> [String] {
            let outs = (0..<outputs).map { _ in fresh(type) }
            nodes.append(ONNXBuild.node(type, inputs: inputs, outputs: outs, domain: domain, attributes: attrs))
            return outs
        }
        func op1(_ type: String, _ inputs: [String], _ attrs: [PB] = [], domain: String = "") -> String {
            op(type, inputs, attrs, domain: domain)[0]
        }

        static func intAttr(_ name: String, _ v: Int64) -> PB { var a = PB(); a.string(1, name); a.int(3, v); a.int(20, 2); return a }
        static func floatAttr(_ name: String, _ v: Float) -> PB { var a = PB(); a.string(1, name); a.float(2, v); a.int(20, 1); return a }
        static func intsAttr(_ name: String, _ v: [Int64]) -> PB {
            var a = PB(); a.string(1, name); for x in v { a.int(8, x) }; a.int(20, 7); return a
        }
        static func stringAttr(_ name: String, _ v: String) -> PB { var a = PB(); a.string(1, name); a.string(4, v); a.int(20, 3); return a }
    }

    /// y = x·W + b in one of the styles; records the expected [in, out] weight and bias under `name`.
    private func linear(_ m: Maker, _ o: Options, _ x: String, _ nIn: Int, _ nOut: Int, name: String, bias: Bool) -> String {
        let w = m.values(nIn * nOut)           // [in, out]
        let b = bias ? m.values(nOut) : []
        m.expected[name + ".weight"] = w.map { $0 * o.alpha }
        if bias { m.expected[name + ".bias"] = b.map { $0 * o.beta } }
        if o.gemm && o.arch == .gpt2 {
            var wStored = w
            var dims = [nIn, nOut]
            if o.transB {
                wStored = (0..<nOut * nIn).map { k in w[(k % nIn) * nOut + k / nIn] }
                dims = [nOut, nIn]
            }
            let flat = m.op1("Reshape", [x, m.ints([-1, Int64(nIn)])])
            var inputs = [flat, m.const(dims, wStored)]
            if bias { inputs.append(m.const([nOut], b)) }
            let y = m.op1("Gemm", inputs, [Maker.intAttr("transB", o.transB ? 1 : 0), Maker.floatAttr("alpha", o.alpha),
                                           Maker.floatAttr("beta", o.beta)])
            return m.op1("Reshape", [y, m.ints([1, -1, Int64(nOut)])])
        }
        let y = m.op1("MatMul", [x, m.const([nIn, nOut], w)])
        return bias ? m.op1("Add", [y, m.const([nOut], b)]) : y
    }

    private func norm(_ m: Maker, _ o: Options, _ x: String, name: String, eps: Float) -> String {
        let g = m.values(o.E).map { 1 + $0 }, b = m.values(o.E)
        m.expected[name + ".weight"] = g
        m.expected[name + ".bias"] = b
        switch o.norm {
        case .layerNorm:
            return m.op1("LayerNormalization", [x, m.const([o.E], g), m.const([o.E], b)],
                         [Maker.intAttr("axis", -1), Maker.floatAttr("epsilon", eps)])
        case .decomposed:
            let axes = [Maker.intsAttr("axes", [-1])]
            let mean = m.op1("ReduceMean", [x], axes)
            let d = m.op1("Sub", [x, mean])
            let sq = m.op1("Pow", [d, m.const([], [2])])
            let v = m.op1("ReduceMean", [sq], axes)
            let ve = m.op1("Add", [v, m.const([], [eps])])
            let s = m.op1("Sqrt", [ve])
            let nrm = m.op1("Div", [d, s])
            let mul = m.op1("Mul", [nrm, m.const([o.E], g)])
            return m.op1("Add", [mul, m.const([o.E], b)])
        }
    }

    private func activation(_ m: Maker, _ o: Options, _ x: String) -> String {
        switch o.act {
        case .tanh:
            let x3 = m.op1("Pow", [x, m.const([], [3])])
            let inner = m.op1("Add", [x, m.op1("Mul", [m.const([], [0.044715]), x3])])
            let t = m.op1("Tanh", [m.op1("Mul", [m.const([], [0.7978845608]), inner])])
            return m.op1("Mul", [m.op1("Mul", [m.const([], [0.5]), x]), m.op1("Add", [m.const([], [1]), t])])
        case .erf:
            let e = m.op1("Erf", [m.op1("Div", [x, m.const([], [1.4142135])])])
            return m.op1("Mul", [m.op1("Mul", [x, m.op1("Add", [e, m.const([], [1])])]), m.const([], [0.5])])
        case .geluOp(let approx):
            return m.op1("Gelu", [x], [Maker.stringAttr("approximate", approx)])
        case .fastGelu:
            return m.op1("FastGelu", [x], domain: "com.microsoft")
        case .relu:
            return m.op1("Relu", [x])
        }
    }

    private func heads(_ m: Maker, _ o: Options, _ x: String, shapeSource: String) -> String {
        let hd = o.E / o.nHead
        let target = o.headCountInReshape ? m.ints([0, 0, Int64(o.nHead), Int64(hd)]) : m.op1("Shape", [shapeSource])
        return m.op1("Reshape", [x, target])
    }

    private func rotate(_ m: Maker, _ o: Options, _ x4: String, sin: String, cos: String) -> String {
        let hd = o.E / o.nHead
        let axis3 = m.ints([3])
        let rot = m.op1("Slice", [x4, m.ints([0]), m.ints([Int64(o.rotaryDim)]), axis3])
        let pass = m.op1("Slice", [x4, m.ints([Int64(o.rotaryDim)]), m.ints([Int64(hd)]), axis3])
        let r = m.op1("Add", [m.op1("Mul", [rot, cos]), m.op1("Mul", [rot, sin])])
        return m.op1("Concat", [r, pass], [Maker.intAttr("axis", 3)])
    }

    func build(_ o: Options) -> (bytes: [UInt8], expected: [String: [Float]]) {
        let m = Maker()
        let E = o.E, hd = o.E / o.nHead
        let wte = m.values(o.V * E)
        m.expected["transformer.wte.weight"] = wte
        let wteName = m.const([o.V, E], wte, name: "wte")
        var x = m.op1("Gather", [wteName, "input_ids"])
        var sin = "", cos = ""
        if o.arch == .gpt2 {
            let wpe = m.values(o.P * E)
            m.expected["transformer.wpe.weight"] = wpe
            x = m.op1("Add", [x, m.op1("Gather", [m.const([o.P, E], wpe), "position_ids"])])
        } else {
            // Rotary table [P, R] as a Constant node: sin | cos.
            let R = o.rotaryDim
            var table: [Float] = []
            for p in 0..<o.P {
                let th = (0..<R / 2).map { i in Double(p) * pow(o.rotaryBase, -2.0 * Double(i) / Double(R)) }
                table += th.map { Float(Foundation_sin($0)) } + th.map { Float(Foundation_cos($0)) }
            }
            var a = PB(); a.string(1, "value")
            a.message(5, ONNXBuild.tensor(name: "", dataType: 1, dims: [Int64(o.P), Int64(R)], raw: ONNXBuild.floatBytes(table)))
            a.int(20, 4)
            let tab = m.op1("Constant", [], [a])
            let sc = m.op1("Unsqueeze", [m.op1("Gather", [tab, "position_ids"]), m.ints([2])])  // [b, s, 1, R]
            sin = m.op1("Slice", [sc, m.ints([0]), m.ints([Int64(R / 2)]), m.ints([3])])
            cos = m.op1("Slice", [sc, m.ints([Int64(R / 2)]), m.ints([Int64(R)]), m.ints([3])])
        }
        for l in 0..<o.L {
            let p = "transformer.h.\(l)"
            let h = norm(m, o, x, name: "\(p).ln_1", eps: o.eps)
            var q: String, k: String, v: String
            if o.arch == .gpt2 {
                let qkv = linear(m, o, h, E, 3 * E, name: "\(p).attn.c_attn", bias: true)
                let parts = m.op("Split", [qkv, m.ints([Int64(E), Int64(E), Int64(E)])], [Maker.intAttr("axis", -1)], outputs: 3)
                (q, k, v) = (parts[0], parts[1], parts[2])
            } else {
                q = linear(m, o, h, E, E, name: "\(p).attn.q_proj", bias: false)
                k = linear(m, o, h, E, E, name: "\(p).attn.k_proj", bias: false)
                v = linear(m, o, h, E, E, name: "\(p).attn.v_proj", bias: false)
            }
            var q4 = heads(m, o, q, shapeSource: "shape_src"), k4 = heads(m, o, k, shapeSource: "shape_src")
            let v4 = heads(m, o, v, shapeSource: "shape_src")
            if o.arch == .gptj {
                q4 = rotate(m, o, q4, sin: sin, cos: cos)
                k4 = rotate(m, o, k4, sin: sin, cos: cos)
            }
            let qt = m.op1("Transpose", [q4], [Maker.intsAttr("perm", [0, 2, 1, 3])])
            let kt = m.op1("Transpose", [k4], [Maker.intsAttr("perm", [0, 2, 3, 1])])
            let vt = m.op1("Transpose", [v4], [Maker.intsAttr("perm", [0, 2, 1, 3])])
            let s = m.op1("Div", [m.op1("MatMul", [qt, kt]), m.const([], [Float(hd).squareRoot()])])
            let pr = m.op1("Softmax", [m.op1("Add", [s, "mask"])], [Maker.intAttr("axis", -1)])
            let ctx = m.op1("Transpose", [m.op1("MatMul", [pr, vt])], [Maker.intsAttr("perm", [0, 2, 1, 3])])
            let merged = m.op1("Reshape", [ctx, m.ints([0, 0, Int64(E)])])
            if o.arch == .gpt2 {
                let a = linear(m, o, merged, E, E, name: "\(p).attn.c_proj", bias: true)
                x = m.op1("Add", [x, a])
                let h2 = norm(m, o, x, name: "\(p).ln_2", eps: o.eps)
                let f = linear(m, o, h2, E, o.nInner, name: "\(p).mlp.c_fc", bias: true)
                let g = linear(m, o, activation(m, o, f), o.nInner, E, name: "\(p).mlp.c_proj", bias: true)
                x = m.op1("Add", [x, g])
            } else {
                let a = linear(m, o, merged, E, E, name: "\(p).attn.out_proj", bias: false)
                let f = linear(m, o, h, E, o.nInner, name: "\(p).mlp.fc_in", bias: true)
                let g = linear(m, o, activation(m, o, f), o.nInner, E, name: "\(p).mlp.fc_out", bias: true)
                x = m.op1("Add", [m.op1("Add", [a, g]), x])
            }
        }
        let hf = norm(m, o, x, name: "transformer.ln_f", eps: o.lnFEps ?? o.eps)
        let logits: String
        if o.tied {
            logits = m.op1("MatMul", [hf, m.op1("Transpose", [wteName], [Maker.intsAttr("perm", [1, 0])])])
        } else {
            var oo = o
            oo.gemm = false; oo.alpha = 1; oo.beta = 1
            logits = linear(m, oo, hf, E, o.V, name: "lm_head", bias: o.arch == .gptj)
        }
        if o.fusedAttentionNode {
            _ = m.op1("Attention", [hf], domain: "com.microsoft")
        }
        let g = ONNXBuild.graph(
            nodes: m.nodes, initializers: m.inits,
            inputs: [ONNXBuild.valueInfo("input_ids", elemType: 7, dims: [nil, nil]),
                     ONNXBuild.valueInfo("position_ids", elemType: 7, dims: [nil, nil]),
                     ONNXBuild.valueInfo("mask", elemType: 1, dims: [nil, 1, nil, nil]),
                     ONNXBuild.valueInfo("shape_src", elemType: 1, dims: [nil, nil, nil, nil])],
            outputs: [ONNXBuild.valueInfo(logits, elemType: 1, dims: [nil, nil, Int64(o.V)])])
        var mp = PB()
        mp.int(1, 8)
        mp.string(2, "synthetic")
        mp.message(7, g)
        var os = PB(); os.string(1, ""); os.int(2, 20); mp.message(8, os)
        var ms = PB(); ms.string(1, "com.microsoft"); ms.int(2, 1); mp.message(8, ms)
        return (mp.bytes, m.expected)
    }

    var tmp: TempDir!
    override func setUp() { tmp = TempDir() }
    override func tearDown() { tmp.remove() }

    @discardableResult
    private func loadAndCheck(_ o: Options, config: String? = nil, file: StaticString = #filePath, line: UInt = #line) throws -> ModelWeights {
        let (bytes, expected) = build(o)
        try tmp.write("model.onnx", bytes)
        if let config { try FileIO.writeAtomically(tmp.file("config.json"), Array(config.utf8)) }
        let w = try ONNXModelLoader.load(path: tmp.path)
        let c = w.config
        XCTAssertEqual(c.arch, o.arch, file: file, line: line)
        XCTAssertEqual(c.nLayer, o.L, file: file, line: line)
        XCTAssertEqual(c.nHead, o.nHead, file: file, line: line)
        XCTAssertEqual(c.headDim, o.E / o.nHead, file: file, line: line)
        XCTAssertEqual(c.nInner, o.nInner, file: file, line: line)
        XCTAssertEqual(c.vocabSize, o.V, file: file, line: line)
        XCTAssertEqual(c.nPositions, o.P, file: file, line: line)
        XCTAssertEqual(c.layerNormEps, o.eps, file: file, line: line)
        XCTAssertEqual(c.tiedHead, o.tied, file: file, line: line)
        if o.arch == .gptj {
            XCTAssertEqual(c.rotaryDim, o.rotaryDim, file: file, line: line)
            XCTAssertEqual(Double(c.rotaryBase), o.rotaryBase, accuracy: o.rotaryBase * 1e-4, file: file, line: line)
        }
        var ours: [String: Tensor] = [:]
        ours["transformer.wte.weight"] = try w.wte
        if let p = w.wpe { ours["transformer.wpe.weight"] = p }
        ours["transformer.ln_f.weight"] = w.lnF.gamma
        ours["transformer.ln_f.bias"] = w.lnF.beta
        for (i, b) in w.blocks.enumerated() {
            ours["transformer.h.\(i).ln_1.weight"] = b.ln1.gamma
            ours["transformer.h.\(i).ln_1.bias"] = b.ln1.beta
            if let l2 = b.ln2 { ours["transformer.h.\(i).ln_2.weight"] = l2.gamma; ours["transformer.h.\(i).ln_2.bias"] = l2.beta }
        }
        for l in w.linears {
            ours[l.name + ".weight"] = try l.weight
            if let b = l.bias { ours[l.name + ".bias"] = b }
        }
        XCTAssertEqual(Set(ours.keys), Set(expected.keys), file: file, line: line)
        for (k, v) in expected {
            XCTAssertEqual(ours[k]?.array, v, k, file: file, line: line)
        }
        return w
    }

    func testGPT2GemmPlain() throws { try loadAndCheck(Options()) }

    func testGPT2GemmTransBAlphaBeta() throws {
        var o = Options()
        o.transB = true; o.alpha = 2; o.beta = 0.5
        try loadAndCheck(o)
    }

    func testGPT2MatMulAddDecomposedErf() throws {
        var o = Options()
        o.gemm = false; o.norm = .decomposed; o.act = .erf; o.eps = 1e-6
        let w = try loadAndCheck(o)
        XCTAssertEqual(w.config.activation, .gelu)
    }

    func testActivations() throws {
        for (act, want) in [(Act.geluOp("tanh"), Activation.geluNew), (.geluOp("none"), .gelu), (.fastGelu, .geluNew),
                            (.tanh, .geluNew)] {
            var o = Options()
            o.act = act
            XCTAssertEqual(try loadAndCheck(o).config.activation, want, "\(act)")
        }
        var o = Options()
        o.act = .relu
        let (bytes, _) = build(o)
        try tmp.write("relu.onnx", bytes)
        XCTAssertThrowsError(try ONNXModelLoader.load(path: tmp.file("relu.onnx"))) { e in
            let e = e as? GFNError
            XCTAssertEqual(e?.status, .unsupported)
            XCTAssertTrue(e?.message.contains("activation") == true && e?.message.contains("Relu") == true, e?.message ?? "")
        }
    }

    func testGPT2UntiedHead() throws {
        var o = Options()
        o.tied = false
        let w = try loadAndCheck(o)
        guard case .linear(let h) = w.head else { return XCTFail("expected an untied head") }
        XCTAssertEqual(h.name, "lm_head")
    }

    func testGPTJ() throws {
        var o = Options()
        o.arch = .gptj; o.tied = false; o.gemm = false
        try loadAndCheck(o)
        o.rotaryDim = 4; o.rotaryBase = 500000
        try loadAndCheck(o)
    }

    func testHeadCountFromConfigJSON() throws {
        var o = Options()
        o.headCountInReshape = false
        let (bytes, _) = build(o)
        try tmp.write("model.onnx", bytes)
        XCTAssertThrowsError(try ONNXModelLoader.load(path: tmp.path)) { e in
            XCTAssertTrue((e as? GFNError)?.message.contains("number of attention heads") == true)
        }
        try loadAndCheck(o, config: #"{"model_type": "gpt2", "n_head": 2}"#)
    }

    func testFusedAttentionRefused() throws {
        var o = Options()
        o.fusedAttentionNode = true
        let (bytes, _) = build(o)
        try tmp.write("model.onnx", bytes)
        XCTAssertThrowsError(try ONNXModelLoader.load(path: tmp.path)) { e in
            let e = e as? GFNError
            XCTAssertEqual(e?.status, .unsupported)
            XCTAssertTrue(e?.message.contains("com.microsoft::Attention (fused attention)") == true, e?.message ?? "")
        }
    }

    func testMismatchedEpsRefused() throws {
        var o = Options()
        o.lnFEps = 1e-6
        let (bytes, _) = build(o)
        try tmp.write("model.onnx", bytes)
        XCTAssertThrowsError(try ONNXModelLoader.load(path: tmp.path)) { e in
            XCTAssertTrue((e as? GFNError)?.message.contains("epsilon") == true)
        }
    }
}

private func Foundation_sin(_ x: Double) -> Double { sin(x) }
private func Foundation_cos(_ x: Double) -> Double { cos(x) }

private extension Float {
    func rounded(toPlaces p: Int) -> Float {
        let k = Float(pow(10.0, Double(p)))
        return (self * k).rounded() / k
    }
}
