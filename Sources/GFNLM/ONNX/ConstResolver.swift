import Synchronization

/// A constant value of the graph: an initializer, a Constant node, or a small expression over them. The shape is
/// known at once; the data is computed on first use and kept.
final class ConstValue {
    enum Payload {
        case floats(FloatStorage)
        case ints([Int64])
    }

    let shape: [Int]
    /// Element type as stored or computed (FLOAT for computed floats, INT64 for computed ints).
    let dataType: Int32
    /// The tensor this value equals element for element (up to reshape, cast to a wider float, and a 2-D transpose
    /// when `rootTransposed`); nil when it is computed.
    let root: TensorRef?
    let rootTransposed: Bool
    private var cached: Payload?
    private let compute: () throws(GFNError) -> Payload

    init(shape: [Int], dataType: Int32, root: TensorRef?, rootTransposed: Bool = false,
         compute: @escaping () throws(GFNError) -> Payload) {
        self.shape = shape
        self.dataType = dataType
        self.root = root
        self.rootTransposed = rootTransposed
        self.compute = compute
    }

    var isFloat: Bool { ONNXDataType.isFloat(dataType) }
    var count: Int { shape.reduce(1, *) }
    var rank: Int { shape.count }

    func payload() throws(GFNError) -> Payload {
        if let c = cached { return c }
        let p = try compute()
        if Self.cachingSuspended.load(ordering: .relaxed) == 0 { cached = p }
        return p
    }

    /// While > 0, computed payloads are not memoized (the bf16 loader reads each large matrix once and must not
    /// keep its fp32 values alive). Only memory use depends on it, never a value.
    static let cachingSuspended = Atomic<Int>(0)

    /// Runs `body` without memoizing payloads computed meanwhile (on any thread).
    static func withoutCaching<T>(_ body: () throws(GFNError) -> T) throws(GFNError) -> T {
        cachingSuspended.add(1, ordering: .relaxed)
        defer { cachingSuspended.subtract(1, ordering: .relaxed) }
        return try body()
    }

    /// The values as fp32 (count elements).
    func floats() throws(GFNError) -> FloatStorage {
        switch try payload() {
        case .floats(let s): return s
        case .ints(let v):
            let s = try FloatStorage(count: v.count)
            for i in 0..<v.count { s.base[i] = Float(v[i]) }
            return s
        }
    }

    /// The values as Int64 (floats truncated toward zero). Only for small tensors.
    func ints() throws(GFNError) -> [Int64] {
        switch try payload() {
        case .ints(let v): return v
        case .floats(let s):
            guard s.count <= TensorLimits.maxIntElements else { throw .unsupported("float tensor too large to read as integers") }
            return (0..<s.count).map { i in
                let x = s.base[i]
                return x.isFinite && abs(x) < 9.2e18 ? Int64(x) : 0
            }
        }
    }

    /// The single value of a one-element constant.
    func scalar() throws(GFNError) -> Double? {
        guard count == 1 else { return nil }
        switch try payload() {
        case .ints(let v): return v.first.map { Double($0) }
        case .floats(let s): return s.count == 1 ? Double(s.base[0]) : nil
        }
    }
}

/// Folds constants of the graph (the first step of recognising an export), memoized: initializers, Constant nodes (including
/// external data in their attribute), and Identity/Cast/Transpose/Unsqueeze/Squeeze/Reshape/Flatten/Concat/
/// Gather/Slice/Mul/Div/Add/Sub/Pow/Sqrt/Neg/Reciprocal over constants. Also `partialInts` for shape vectors whose
/// entries are partly known.
final class ConstResolver {
    let graph: ONNXGraph
    let reader: TensorDataReader
    private var memo: [String: ConstValue] = [:]
    private var notConst = Set<String>()
    private var partialMemo: [String: [Int64?]] = [:]
    private var partialNone = Set<String>()
    static let maxDepth = 200

    init(graph: ONNXGraph, reader: TensorDataReader) {
        self.graph = graph
        self.reader = reader
    }

    func isConst(_ name: String) -> Bool { (try? value(name)) != nil }

    /// The constant value of `name`, or nil when it depends on a graph input. Throws on corrupt tensors.
    func value(_ name: String) throws(GFNError) -> ConstValue? { try value(name, depth: 0) }

    private func value(_ name: String, depth: Int) throws(GFNError) -> ConstValue? {
        if name.isEmpty { return nil }
        if let v = memo[name] { return v }
        if notConst.contains(name) { return nil }
        guard depth < Self.maxDepth else {
            throw .format("\(graph.path): constant expression for '\(name)' is nested more than \(Self.maxDepth) deep")
        }
        let v = try make(name, depth: depth)
        if let v { memo[name] = v } else { notConst.insert(name) }
        return v
    }

    private func tensorValue(_ ref: TensorRef) throws(GFNError) -> ConstValue {
        let h = try reader.header(ref)
        let reader = self.reader
        let isFloat = ONNXDataType.isFloat(h.dataType)
        return ConstValue(shape: h.shape, dataType: h.dataType, root: ref) { () throws(GFNError) -> ConstValue.Payload in
            isFloat ? .floats(try reader.floats(h)) : .ints(try reader.ints(h))
        }
    }

    private func make(_ name: String, depth: Int) throws(GFNError) -> ConstValue? {
        if let i = graph.initializers[name] { return try tensorValue(.initializer(i)) }
        guard let node = graph.producerNode(name) else { return nil }
        guard node.domain.isEmpty else { return nil }
        let d = depth + 1
        func input(_ j: Int) throws(GFNError) -> ConstValue? {
            guard let n = node.input(j) else { return nil }
            return try value(n, depth: d)
        }
        func constInts(_ j: Int) throws(GFNError) -> [Int64]? {
            guard let v = try input(j) else { return nil }
            return try v.ints()
        }
        // Only the first output of multi-output nodes is folded (none of the folded ops has more).
        guard node.outputs.first == name else { return nil }

        switch node.opType {
        case "Constant":
            return try constantNode(node)
        case "Identity":
            return try input(0)
        case "Cast":
            guard let x = try input(0) else { return nil }
            let to = Int32(truncatingIfNeeded: node.int("to", default: Int64(ONNXDataType.float)))
            return cast(x, to: to)
        case "Transpose":
            guard let x = try input(0) else { return nil }
            var perm = node.attribute("perm")?.ints.map { Int($0) } ?? Array((0..<x.rank).reversed())
            perm = perm.map { $0 < 0 ? $0 + x.rank : $0 }
            guard perm.count == x.rank, Set(perm) == Set(0..<x.rank) else {
                throw .format("\(graph.path): \(node.label) has an invalid perm \(perm) for shape \(x.shape)")
            }
            return transpose(x, perm: perm)
        case "Reshape":
            guard let x = try input(0), let target = try constInts(1) else { return nil }
            let allowZero = node.int("allowzero", default: 0) != 0
            guard let shape = Self.reshapeTarget(x.shape, target, allowZero: allowZero) else {
                throw .format("\(graph.path): \(node.label) cannot reshape \(x.shape) to \(target)")
            }
            return view(x, shape)
        case "Flatten":
            guard let x = try input(0) else { return nil }
            var axis = Int(node.int("axis", default: 1))
            if axis < 0 { axis += x.rank }
            guard axis >= 0 && axis <= x.rank else { return nil }
            return view(x, [x.shape[..<axis].reduce(1, *), x.shape[axis...].reduce(1, *)])
        case "Unsqueeze", "Squeeze":
            guard let x = try input(0) else { return nil }
            var axes: [Int64]? = node.attribute("axes")?.ints
            if axes == nil, node.input(1) != nil {
                guard let a = try constInts(1) else { return nil }
                axes = a
            }
            if node.opType == "Unsqueeze" {
                guard let axes else { return nil }
                let outRank = x.rank + axes.count
                let norm = Set(axes.map { Int($0 < 0 ? $0 + Int64(outRank) : $0) })
                guard norm.count == axes.count, norm.allSatisfy({ $0 >= 0 && $0 < outRank }) else { return nil }
                var shape: [Int] = []
                var k = 0
                for i in 0..<outRank {
                    if norm.contains(i) { shape.append(1) } else if k < x.rank { shape.append(x.shape[k]); k += 1 }
                }
                return view(x, shape)
            } else {
                var shape: [Int] = []
                if let axes {
                    let norm = Set(axes.map { Int($0 < 0 ? $0 + Int64(x.rank) : $0) })
                    for (i, s) in x.shape.enumerated() where !(norm.contains(i) && s == 1) { shape.append(s) }
                } else {
                    shape = x.shape.filter { $0 != 1 }
                }
                return view(x, shape)
            }
        case "Concat":
            var parts: [ConstValue] = []
            for j in 0..<node.inputs.count {
                guard let p = try input(j) else { return nil }
                parts.append(p)
            }
            return try concat(parts, axis: Int(node.int("axis", default: 0)), node: node)
        case "Add", "Sub", "Mul", "Div", "Pow":
            guard let a = try input(0), let b = try input(1) else { return nil }
            return try binary(node, a, b)
        case "Sqrt", "Neg", "Reciprocal":
            guard let x = try input(0) else { return nil }
            return unary(node.opType, x)
        case "Gather":
            guard let x = try input(0), let idx = try input(1), !idx.isFloat, idx.count <= TensorLimits.maxIntElements
            else { return nil }
            return try gather(x, idx, axis: Int(node.int("axis", default: 0)), node: node)
        case "Slice":
            guard let x = try input(0) else { return nil }
            var starts: [Int64], ends: [Int64], axes: [Int64]?, steps: [Int64]?
            if node.input(1) != nil {
                guard let s = try constInts(1), let e = try constInts(2) else { return nil }
                starts = s; ends = e
                axes = node.input(3) != nil ? try constInts(3) : nil
                steps = node.input(4) != nil ? try constInts(4) : nil
                if node.input(3) != nil && axes == nil { return nil }
                if node.input(4) != nil && steps == nil { return nil }
            } else {
                guard let s = node.attribute("starts")?.ints, let e = node.attribute("ends")?.ints else { return nil }
                starts = s; ends = e
                axes = node.attribute("axes")?.ints
                steps = nil
            }
            return try slice(x, starts: starts, ends: ends, axes: axes, steps: steps, node: node)
        case "Shape":
            guard let x = try input(0) else { return nil }
            let r = Int64(x.rank)
            var start = node.int("start", default: 0), end = node.int("end", default: r)
            if start < 0 { start += r }
            if end < 0 { end += r }
            start = max(0, min(r, start)); end = max(start, min(r, end))
            let dims = x.shape[Int(start)..<Int(end)].map { Int64($0) }
            return ConstValue(shape: [dims.count], dataType: ONNXDataType.int64, root: nil) { .ints(dims) }
        default:
            return nil
        }
    }

    private func constantNode(_ node: ONNXNode) throws(GFNError) -> ConstValue? {
        for (k, a) in node.attributes.enumerated() {
            switch a.name {
            case "value":
                guard a.hasTensor else { return nil }
                return try tensorValue(TensorRef(node: Int32(node.index), index: Int32(k)))
            case "value_float":
                let f = a.f
                return ConstValue(shape: [], dataType: ONNXDataType.float, root: nil) { () throws(GFNError) in
                    let s = try FloatStorage(count: 1); s.base[0] = f; return .floats(s)
                }
            case "value_floats":
                let fs = a.floats
                return ConstValue(shape: [fs.count], dataType: ONNXDataType.float, root: nil) { () throws(GFNError) in
                    let s = try FloatStorage(count: fs.count)
                    for i in 0..<fs.count { s.base[i] = fs[i] }
                    return .floats(s)
                }
            case "value_int":
                let v = a.i
                return ConstValue(shape: [], dataType: ONNXDataType.int64, root: nil) { .ints([v]) }
            case "value_ints":
                let v = a.ints
                return ConstValue(shape: [v.count], dataType: ONNXDataType.int64, root: nil) { .ints(v) }
            default:
                continue
            }
        }
        return nil
    }

    // MARK: folding helpers

    private func view(_ x: ConstValue, _ shape: [Int]) -> ConstValue {
        ConstValue(shape: shape, dataType: x.dataType, root: x.root, rootTransposed: x.rootTransposed) { () throws(GFNError) in
            try x.payload()
        }
    }

    private func cast(_ x: ConstValue, to: Int32) -> ConstValue {
        if ONNXDataType.isFloat(to) {
            // A cast to a wider float keeps the values (and the identity with the root tensor).
            let keepRoot = x.isFloat && (to == ONNXDataType.float || to == ONNXDataType.double || to == x.dataType)
            return ConstValue(shape: x.shape, dataType: to == ONNXDataType.double ? ONNXDataType.float : to,
                              root: keepRoot ? x.root : nil, rootTransposed: keepRoot && x.rootTransposed) { () throws(GFNError) in
                let f = try x.floats()
                if to == ONNXDataType.float16 || to == ONNXDataType.bfloat16, x.dataType != to {
                    let s = try FloatStorage(count: f.count)
                    for i in 0..<f.count {
                        s.base[i] = to == ONNXDataType.float16
                            ? Float(Float16(f.base[i]))
                            : Float(bitPattern: Self.roundToBF16(f.base[i]) << 16)
                    }
                    return .floats(s)
                }
                return .floats(f)
            }
        }
        return ConstValue(shape: x.shape, dataType: ONNXDataType.int64, root: nil) { () throws(GFNError) in
            let v = try x.ints()
            return .ints(to == ONNXDataType.bool ? v.map { $0 != 0 ? 1 : 0 } : v)
        }
    }

    static func roundToBF16(_ x: Float) -> UInt32 {
        let b = x.bitPattern
        if x.isNaN { return (b >> 16) | 0x40 }
        let rounding = UInt32(0x7FFF) + ((b >> 16) & 1)
        return (b &+ rounding) >> 16
    }

    /// The transpose of a 2-D constant (lazy; keeps the root identity).
    func transposed2D(_ x: ConstValue) -> ConstValue { transpose(x, perm: [1, 0]) }

    /// The same data with another shape of the same element count.
    func reshaped(_ x: ConstValue, _ shape: [Int]) -> ConstValue { view(x, shape) }

    private func transpose(_ x: ConstValue, perm: [Int]) -> ConstValue {
        let outShape = perm.map { x.shape[$0] }
        if perm == Array(0..<x.rank) { return view(x, outShape) }
        var root: TensorRef? = nil
        var transposed = false
        // Only a 2-D transpose (possibly of a reshaped tensor) is tracked as the root's transpose.
        if x.rank == 2, x.root != nil { root = x.root; transposed = !x.rootTransposed }
        let inShape = x.shape
        return ConstValue(shape: outShape, dataType: x.isFloat ? x.dataType : ONNXDataType.int64, root: root,
                          rootTransposed: transposed) { () throws(GFNError) in
            let n = inShape.reduce(1, *)
            var inStrides = [Int](repeating: 1, count: inShape.count)
            if inShape.count > 1 { for i in stride(from: inShape.count - 2, through: 0, by: -1) { inStrides[i] = inStrides[i + 1] * inShape[i + 1] } }
            let srcStrides = perm.map { inStrides[$0] }
            switch try x.payload() {
            case .floats(let f):
                let s = try FloatStorage(count: n)
                if inShape.count == 2 {
                    Self.transpose2D(f.base, s.base, rows: inShape[0], cols: inShape[1])
                } else {
                    var k = 0
                    Self.forEachOffset(outShape, srcStrides) { off in s.base[k] = f.base[off]; k += 1 }
                }
                return .floats(s)
            case .ints(let v):
                var out = [Int64](); out.reserveCapacity(n)
                Self.forEachOffset(outShape, srcStrides) { off in out.append(v[off]) }
                return .ints(out)
            }
        }
    }

    /// dst[c][r] = src[r][c], in cache-friendly tiles.
    static func transpose2D(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>, rows: Int, cols: Int) {
        let tile = 32
        var r0 = 0
        while r0 < rows {
            let r1 = min(rows, r0 + tile)
            var c0 = 0
            while c0 < cols {
                let c1 = min(cols, c0 + tile)
                for r in r0..<r1 {
                    let srow = src + r * cols
                    for c in c0..<c1 { dst[c * rows + r] = srow[c] }
                }
                c0 = c1
            }
            r0 = r1
        }
    }

    /// Calls `body` with the source offset of every element of `shape` in row-major order, where stepping
    /// dimension i moves the source by strides[i].
    static func forEachOffset(_ shape: [Int], _ strides: [Int], _ body: (Int) -> Void) {
        let n = shape.reduce(1, *)
        if n == 0 { return }
        let r = shape.count
        if r == 0 { body(0); return }
        var idx = [Int](repeating: 0, count: r)
        var off = 0
        for _ in 0..<n {
            body(off)
            var d = r - 1
            while d >= 0 {
                idx[d] += 1
                off += strides[d]
                if idx[d] < shape[d] { break }
                off -= strides[d] * shape[d]
                idx[d] = 0
                d -= 1
            }
        }
    }

    static func reshapeTarget(_ inShape: [Int], _ target: [Int64], allowZero: Bool) -> [Int]? {
        let n = inShape.reduce(1, *)
        var out: [Int] = []
        var infer: Int? = nil
        for (i, t) in target.enumerated() {
            if t == -1 {
                if infer != nil { return nil }
                infer = i; out.append(1)
            } else if t == 0 && !allowZero {
                guard i < inShape.count else { return nil }
                out.append(inShape[i])
            } else if t < 0 || t > Int64(TensorLimits.maxDim) {
                return nil
            } else {
                out.append(Int(t))
            }
        }
        var known = 1
        for (i, s) in out.enumerated() where i != infer {
            let (p, o) = known.multipliedReportingOverflow(by: s)
            if o { return nil }
            known = p
        }
        if let i = infer {
            guard known > 0, n % known == 0 else { return nil }
            out[i] = n / known
        } else if known != n {
            return nil
        }
        return out
    }

    private func concat(_ parts: [ConstValue], axis a: Int, node: ONNXNode) throws(GFNError) -> ConstValue? {
        guard let first = parts.first else { return nil }
        let r = first.rank
        let axis = a < 0 ? a + r : a
        guard axis >= 0 && axis < r else { throw .format("\(graph.path): \(node.label) has axis \(a) for rank \(r)") }
        var outShape = first.shape
        outShape[axis] = 0
        for p in parts {
            guard p.rank == r else { throw .format("\(graph.path): \(node.label) concatenates ranks \(parts.map { $0.rank })") }
            for i in 0..<r where i != axis && p.shape[i] != first.shape[i] {
                throw .format("\(graph.path): \(node.label) concatenates shapes \(parts.map { $0.shape })")
            }
            outShape[axis] = outShape[axis] &+ p.shape[axis]
        }
        try checkedCount(outShape, node)
        let isFloat = parts.contains { $0.isFloat }
        let outer = first.shape[..<axis].reduce(1, *)
        return ConstValue(shape: outShape, dataType: isFloat ? ONNXDataType.float : ONNXDataType.int64, root: nil) { () throws(GFNError) in
            let inner = outShape[(axis + 1)...].reduce(1, *)
            if isFloat {
                let s = try FloatStorage(count: outShape.reduce(1, *))
                var k = 0
                let srcs = try parts.map { (p) throws(GFNError) in try p.floats() }
                for o in 0..<outer {
                    for (p, src) in zip(parts, srcs) {
                        let len = p.shape[axis] * inner
                        for j in 0..<len { s.base[k] = src.base[o * len + j]; k += 1 }
                    }
                }
                return .floats(s)
            } else {
                var out: [Int64] = []
                let srcs = try parts.map { (p) throws(GFNError) in try p.ints() }
                for o in 0..<outer {
                    for (p, src) in zip(parts, srcs) {
                        let len = p.shape[axis] * inner
                        out.append(contentsOf: src[(o * len)..<(o * len + len)])
                    }
                }
                return .ints(out)
            }
        }
    }

    /// Refuses computed constants whose element count overflows or exceeds a sane bound.
    func checkedCount(_ shape: [Int], _ node: ONNXNode) throws(GFNError) {
        var n = 1
        for d in shape {
            let (p, o) = n.multipliedReportingOverflow(by: d)
            guard d >= 0, !o, p <= TensorLimits.maxBytes / 8 else {
                throw .format("\(graph.path): \(node.label) would produce a constant of shape \(shape), over the sane bound")
            }
            n = p
        }
    }

    static func broadcast(_ a: [Int], _ b: [Int]) -> [Int]? {
        let r = max(a.count, b.count)
        var out = [Int](repeating: 1, count: r)
        for i in 0..<r {
            let x = i < r - a.count ? 1 : a[i - (r - a.count)]
            let y = i < r - b.count ? 1 : b[i - (r - b.count)]
            if x == y || y == 1 { out[i] = x } else if x == 1 { out[i] = y } else { return nil }
        }
        return out
    }

    /// Strides of `shape` aligned to `outShape` for broadcasting (0 where the dimension is broadcast).
    static func broadcastStrides(_ shape: [Int], to outShape: [Int]) -> [Int] {
        let r = outShape.count
        var strides = [Int](repeating: 0, count: r)
        var s = 1
        for i in stride(from: shape.count - 1, through: 0, by: -1) {
            let o = i + (r - shape.count)
            strides[o] = shape[i] == 1 ? 0 : s
            s *= shape[i]
        }
        return strides
    }

    private func binary(_ node: ONNXNode, _ a: ConstValue, _ b: ConstValue) throws(GFNError) -> ConstValue? {
        guard let outShape = Self.broadcast(a.shape, b.shape) else {
            throw .format("\(graph.path): \(node.label) cannot broadcast \(a.shape) with \(b.shape)")
        }
        try checkedCount(outShape, node)
        let op = node.opType
        let isFloat = a.isFloat || b.isFloat
        let sa = Self.broadcastStrides(a.shape, to: outShape), sb = Self.broadcastStrides(b.shape, to: outShape)
        return ConstValue(shape: outShape, dataType: isFloat ? ONNXDataType.float : ONNXDataType.int64, root: nil) { () throws(GFNError) in
            let n = outShape.reduce(1, *)
            var offA: [Int] = []; offA.reserveCapacity(n)
            var offB: [Int] = []; offB.reserveCapacity(n)
            Self.forEachOffset(outShape, sa) { offA.append($0) }
            Self.forEachOffset(outShape, sb) { offB.append($0) }
            if isFloat {
                let x = try a.floats(), y = try b.floats()
                let s = try FloatStorage(count: n)
                for i in 0..<n {
                    let u = x.base[offA[i]], v = y.base[offB[i]]
                    switch op {
                    case "Add": s.base[i] = u + v
                    case "Sub": s.base[i] = u - v
                    case "Mul": s.base[i] = u * v
                    case "Div": s.base[i] = u / v
                    default: s.base[i] = powf(u, v)
                    }
                }
                return .floats(s)
            } else {
                let x = try a.ints(), y = try b.ints()
                var out = [Int64](repeating: 0, count: n)
                for i in 0..<n {
                    let u = x[offA[i]], v = y[offB[i]]
                    switch op {
                    case "Add": out[i] = u &+ v
                    case "Sub": out[i] = u &- v
                    case "Mul": out[i] = u &* v
                    case "Div": out[i] = v == 0 ? 0 : (u == Int64.min && v == -1 ? u : u / v)
                    default:
                        var r: Int64 = 1
                        if v >= 0 && v < 64 { for _ in 0..<v { r = r &* u } } else { r = 0 }
                        out[i] = r
                    }
                }
                return .ints(out)
            }
        }
    }

    private func unary(_ op: String, _ x: ConstValue) -> ConstValue {
        ConstValue(shape: x.shape, dataType: ONNXDataType.float, root: nil) { () throws(GFNError) in
            let f = try x.floats()
            let s = try FloatStorage(count: f.count)
            for i in 0..<f.count {
                let v = f.base[i]
                switch op {
                case "Sqrt": s.base[i] = v.squareRoot()
                case "Neg": s.base[i] = -v
                default: s.base[i] = 1 / v
                }
            }
            return .floats(s)
        }
    }

    private func gather(_ x: ConstValue, _ idx: ConstValue, axis a: Int, node: ONNXNode) throws(GFNError) -> ConstValue? {
        let r = x.rank
        let axis = a < 0 ? a + r : a
        guard axis >= 0 && axis < r else { throw .format("\(graph.path): \(node.label) has axis \(a) for rank \(r)") }
        let indices = try idx.ints()
        let dim = x.shape[axis]
        var norm: [Int] = []
        for i in indices {
            let j = i < 0 ? i + Int64(dim) : i
            guard j >= 0 && j < Int64(dim) else {
                throw .format("\(graph.path): \(node.label) gathers index \(i) from a dimension of \(dim)")
            }
            norm.append(Int(j))
        }
        let outShape = Array(x.shape[..<axis]) + idx.shape + Array(x.shape[(axis + 1)...])
        try checkedCount(outShape, node)
        let outer = x.shape[..<axis].reduce(1, *), inner = x.shape[(axis + 1)...].reduce(1, *)
        let isFloat = x.isFloat
        return ConstValue(shape: outShape, dataType: isFloat ? ONNXDataType.float : ONNXDataType.int64, root: nil) { () throws(GFNError) in
            if isFloat {
                let f = try x.floats()
                let s = try FloatStorage(count: outer * norm.count * inner)
                var k = 0
                for o in 0..<outer { for j in norm { for t in 0..<inner { s.base[k] = f.base[(o * dim + j) * inner + t]; k += 1 } } }
                return .floats(s)
            } else {
                let v = try x.ints()
                var out: [Int64] = []
                for o in 0..<outer { for j in norm { for t in 0..<inner { out.append(v[(o * dim + j) * inner + t]) } } }
                return .ints(out)
            }
        }
    }

    private func slice(_ x: ConstValue, starts: [Int64], ends: [Int64], axes: [Int64]?, steps: [Int64]?,
                       node: ONNXNode) throws(GFNError) -> ConstValue? {
        let r = x.rank
        let axes = axes ?? (0..<Int64(starts.count)).map { $0 }
        let steps = steps ?? [Int64](repeating: 1, count: starts.count)
        guard starts.count == ends.count, axes.count == starts.count, steps.count == starts.count else {
            throw .format("\(graph.path): \(node.label) has mismatched starts/ends/axes/steps")
        }
        var begin = [Int](repeating: 0, count: r)
        var step = [Int](repeating: 1, count: r)
        var outShape = x.shape
        for k in 0..<starts.count {
            var ax = Int(axes[k]); if ax < 0 { ax += r }
            guard ax >= 0 && ax < r, steps[k] != 0 else { throw .format("\(graph.path): \(node.label) has an invalid axis or step") }
            let dim = Int64(x.shape[ax])
            let st = steps[k]
            func clampIndex(_ v: Int64, _ lo: Int64, _ hi: Int64) -> Int64 {
                var v = v
                if v < 0 { v += dim }
                return max(lo, min(hi, v))
            }
            let s: Int64, e: Int64
            if st > 0 {
                s = clampIndex(starts[k], 0, dim); e = clampIndex(ends[k], 0, dim)
            } else {
                s = clampIndex(starts[k], -1, dim - 1); e = clampIndex(ends[k], -1, dim - 1)
            }
            let mag = st == Int64.min ? Int64.max : abs(st)
            let len: Int64 = st > 0 ? (e > s ? (e - s - 1) / mag + 1 : 0) : (s > e ? (s - e - 1) / mag + 1 : 0)
            begin[ax] = Int(s); step[ax] = Int(st); outShape[ax] = Int(len)
        }
        let inShape = x.shape
        let isFloat = x.isFloat
        return ConstValue(shape: outShape, dataType: isFloat ? ONNXDataType.float : ONNXDataType.int64, root: nil) { () throws(GFNError) in
            var inStrides = [Int](repeating: 1, count: r)
            if r > 1 { for i in stride(from: r - 2, through: 0, by: -1) { inStrides[i] = inStrides[i + 1] * inShape[i + 1] } }
            let base = zip(begin, inStrides).reduce(0) { $0 + $1.0 * $1.1 }
            let strides = (0..<r).map { inStrides[$0] * step[$0] }
            if isFloat {
                let f = try x.floats()
                let s = try FloatStorage(count: outShape.reduce(1, *))
                var k = 0
                Self.forEachOffset(outShape, strides) { off in s.base[k] = f.base[base + off]; k += 1 }
                return .floats(s)
            } else {
                let v = try x.ints()
                var out: [Int64] = []
                Self.forEachOffset(outShape, strides) { off in out.append(v[base + off]) }
                return .ints(out)
            }
        }
    }

    // MARK: partial shape vectors

    /// The entries of a 1-D integer value where known: constants fully, `Shape(x)` entries as unknown (or known
    /// from value_info), through Concat/Unsqueeze/Squeeze/Cast/Identity/Gather/Slice and elementwise arithmetic.
    func partialInts(_ name: String) -> [Int64?]? { partialInts(name, depth: 0) }

    private func partialInts(_ name: String, depth: Int) -> [Int64?]? {
        if let p = partialMemo[name] { return p }
        if partialNone.contains(name) || depth > Self.maxDepth { return nil }
        let r = makePartial(name, depth: depth + 1)
        if let r { partialMemo[name] = r } else { partialNone.insert(name) }
        return r
    }

    private func makePartial(_ name: String, depth: Int) -> [Int64?]? {
        if let c = try? value(name), !c.isFloat {
            guard c.rank <= 1, c.count <= 64, let v = try? c.ints() else { return nil }
            return v.map { Optional($0) }
        }
        let fallback: [Int64?]? = {
            guard let d = graph.valueInfo[name]?.dims, d.count <= 1 else { return nil }
            if d.isEmpty { return [nil] }
            guard d[0] >= 0 && d[0] <= 64 else { return nil }
            return [Int64?](repeating: nil, count: d[0])
        }()
        guard let node = graph.producerNode(name), node.domain.isEmpty, node.outputs.first == name else { return fallback }
        func sub(_ j: Int) -> [Int64?]? {
            guard let n = node.input(j) else { return nil }
            return partialInts(n, depth: depth)
        }
        switch node.opType {
        case "Identity", "Cast", "Unsqueeze", "Squeeze":
            return sub(0) ?? fallback
        case "Concat":
            var out: [Int64?] = []
            for j in 0..<node.inputs.count {
                guard let p = sub(j) else { return fallback }
                out += p
            }
            return out
        case "Shape":
            guard let x = node.input(0), let dims = graph.valueInfo[x]?.dims else { return fallback }
            let r = Int64(dims.count)
            var start = node.int("start", default: 0), end = node.int("end", default: r)
            if start < 0 { start += r }
            if end < 0 { end += r }
            start = max(0, min(r, start)); end = max(start, min(r, end))
            return dims[Int(start)..<Int(end)].map { $0 >= 0 ? Int64($0) : nil }
        case "Gather":
            guard let idxName = node.input(1), let idx = try? value(idxName), let iv = try? idx.ints(),
                  idx.rank <= 1 else { return fallback }
            // Entries of an unknown shape vector (Shape of a value without value_info) stay unknown.
            guard let data = sub(0) else { return [Int64?](repeating: nil, count: iv.count) }
            var out: [Int64?] = []
            for i in iv {
                let j = i < 0 ? i + Int64(data.count) : i
                guard j >= 0 && j < Int64(data.count) else { return fallback }
                out.append(data[Int(j)])
            }
            return out
        case "Slice":
            guard node.input(1) != nil,
                  let s = node.input(1).flatMap({ try? value($0) }).flatMap({ try? $0.ints() }),
                  let e = node.input(2).flatMap({ try? value($0) }).flatMap({ try? $0.ints() }),
                  s.count == 1, e.count == 1 else { return fallback }
            guard let data = sub(0) else {
                // Unknown entries: the length is still known for 0 ≤ start ≤ end ≤ 64.
                guard s[0] >= 0, e[0] >= s[0], e[0] - s[0] <= 64 else { return fallback }
                return [Int64?](repeating: nil, count: Int(e[0] - s[0]))
            }
            let n = Int64(data.count)
            var a = s[0], b = e[0]
            if a < 0 { a += n }
            if b < 0 { b += n }
            a = max(0, min(n, a)); b = max(a, min(n, b))
            return Array(data[Int(a)..<Int(b)])
        case "Add", "Sub", "Mul", "Div":
            guard let x = sub(0), let y = sub(1) else { return fallback }
            let n = max(x.count, y.count)
            guard (x.count == n || x.count == 1) && (y.count == n || y.count == 1) else { return fallback }
            return (0..<n).map { i -> Int64? in
                guard let u = x[x.count == 1 ? 0 : i], let v = y[y.count == 1 ? 0 : i] else { return nil }
                switch node.opType {
                case "Add": return u &+ v
                case "Sub": return u &- v
                case "Mul": return u &* v
                default: return v == 0 || (u == Int64.min && v == -1) ? nil : u / v
                }
            }
        default:
            return fallback
        }
    }
}
