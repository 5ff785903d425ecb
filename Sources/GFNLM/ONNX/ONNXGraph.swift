import CONNX

/// A parsed ONNX file: owns the C++ `ModelProto` (through the CONNX shim). Tensors borrowed from its `raw_data`
/// keep this object alive; it frees the proto when the last one goes.
final class ONNXFile: @unchecked Sendable {
    /// The .onnx path as given.
    let path: String
    /// The directory holding the model (external data locations are relative to it).
    let directory: String
    let handle: OpaquePointer

    init(path: String) throws(GFNError) {
        var out: OpaquePointer? = nil
        var err = [CChar](repeating: 0, count: 1024)
        let rc = err.withUnsafeMutableBufferPointer { buf in connx_open(path, &out, buf.baseAddress, buf.count) }
        let message = String(decoding: err.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        guard rc == CONNX_OK, let out else {
            switch Int(rc) {
            case Int(CONNX_EIO): throw .io(message)
            case Int(CONNX_EFORMAT): throw .format(message)
            case Int(CONNX_ETOOLARGE): throw .unsupported(message)
            default: throw .internalError(message.isEmpty ? "cannot parse \(path)" : message)
            }
        }
        self.path = path
        self.directory = FileIO.dirname(of: path)
        self.handle = out
    }

    deinit { connx_free(handle) }
}

/// One attribute of a node, copied out of the proto (tensor attributes stay in the proto: see `hasTensor`).
struct ONNXAttribute {
    let name: String
    let type: Int32
    let f: Float
    let i: Int64
    let s: [UInt8]
    let floats: [Float]
    let ints: [Int64]
    let hasTensor: Bool
    let hasGraph: Bool

    var string: String { String(decoding: s, as: UTF8.self) }
}

struct ONNXNode {
    let index: Int
    let opType: String
    /// "" for the default domain (also when the file says "ai.onnx").
    let domain: String
    let name: String
    let inputs: [String]
    let outputs: [String]
    let attributes: [ONNXAttribute]

    func attribute(_ name: String) -> ONNXAttribute? { attributes.first { $0.name == name } }
    /// Index of the attribute (for tensor attributes, which are read through `TensorRef`).
    func attributeIndex(_ name: String) -> Int? { attributes.firstIndex { $0.name == name } }
    func int(_ name: String, default d: Int64) -> Int64 { attribute(name)?.i ?? d }
    func float(_ name: String, default d: Float) -> Float { attribute(name)?.f ?? d }

    /// Input `j`, or nil when absent or omitted ("").
    func input(_ j: Int) -> String? {
        guard j >= 0 && j < inputs.count, !inputs[j].isEmpty else { return nil }
        return inputs[j]
    }

    /// "op_type" or "domain::op_type", with the node name, for messages.
    var label: String {
        let op = domain.isEmpty ? opType : "\(domain)::\(opType)"
        return name.isEmpty ? op : "\(op) '\(name)'"
    }
}

struct ONNXValueInfo {
    let name: String
    /// TensorProto.DataType of the elements (0 when unknown or not a tensor).
    let elemType: Int32
    /// Dims (-1 for symbolic/unknown ones); nil when the shape is unknown.
    let dims: [Int]?
    let dimParams: [String]
}

/// Where a tensor lives in the proto: graph initializer `index` (node == -1), or the `t` of attribute `index` of
/// node `node`.
struct TensorRef: Hashable {
    let node: Int32
    let index: Int32
    static func initializer(_ i: Int) -> TensorRef { TensorRef(node: -1, index: Int32(i)) }
    var isInitializer: Bool { node == -1 }
}

/// A Swift view of the graph: nodes, values, initializers and producer/consumer maps.
final class ONNXGraph {
    let file: ONNXFile
    let irVersion: Int64
    let producer: String
    /// (domain, version); domain "" = ai.onnx.
    let opsets: [(domain: String, version: Int64)]
    let nodes: [ONNXNode]
    let inputs: [ONNXValueInfo]
    let outputs: [ONNXValueInfo]
    let valueInfo: [String: ONNXValueInfo]
    /// Initializer name → its index.
    let initializers: [String: Int]
    let initializerCount: Int
    /// Value name → the node that produces it.
    let producerOf: [String: Int]
    /// Value name → the nodes that consume it (each node once, in graph order).
    let consumersOf: [String: [Int]]
    let functionCount: Int
    let sparseInitializerCount: Int

    init(file: ONNXFile) throws(GFNError) {
        self.file = file
        let h = file.handle
        var info = connx_model_info()
        guard connx_model_get_info(h, &info) == CONNX_OK else { throw .internalError("cannot read model info of \(file.path)") }
        guard info.has_graph != 0 else {
            throw .format("\(file.path) is not an ONNX model: it has no graph (is it truncated or another protobuf?)")
        }
        irVersion = info.ir_version
        let pn = Self.str(info.producer_name), pv = Self.str(info.producer_version)
        producer = pv.isEmpty ? pn : pn + " " + pv
        functionCount = Int(info.function_count)
        sparseInitializerCount = Int(info.sparse_initializer_count)

        var opsets: [(String, Int64)] = []
        for i in 0..<max(0, info.opset_count) {
            var d: UnsafePointer<CChar>? = nil
            var v: Int64 = 0
            if connx_opset(h, i, &d, &v) == CONNX_OK {
                let dom = Self.str(d)
                opsets.append((dom == "ai.onnx" ? "" : dom, v))
            }
        }
        self.opsets = opsets

        func values(_ kind: Int32, _ count: Int32) -> [ONNXValueInfo] {
            var out: [ONNXValueInfo] = []
            out.reserveCapacity(Int(max(0, count)))
            for i in 0..<max(0, count) {
                var v = connx_value()
                guard connx_value_get(h, kind, i, &v) == CONNX_OK else { continue }
                var dims: [Int]? = nil
                var params: [String] = []
                if v.has_shape != 0 {
                    var ds: [Int] = []
                    for d in 0..<max(0, v.rank) {
                        var dv: Int64 = -1
                        var dp: UnsafePointer<CChar>? = nil
                        if connx_value_dim(h, kind, i, d, &dv, &dp) == CONNX_OK {
                            ds.append(dv >= 0 && dv <= Int64(Int32.max) ? Int(dv) : -1)
                            params.append(Self.str(dp))
                        } else {
                            ds.append(-1); params.append("")
                        }
                    }
                    dims = ds
                }
                out.append(ONNXValueInfo(name: Self.str(v.name), elemType: v.elem_type, dims: dims, dimParams: params))
            }
            return out
        }
        inputs = values(Int32(CONNX_GRAPH_INPUT), info.input_count)
        outputs = values(Int32(CONNX_GRAPH_OUTPUT), info.output_count)
        var vi: [String: ONNXValueInfo] = [:]
        for v in values(Int32(CONNX_GRAPH_VALUE_INFO), info.value_info_count) { vi[v.name] = v }
        for v in inputs + outputs where vi[v.name] == nil { vi[v.name] = v }
        valueInfo = vi

        var inits: [String: Int] = [:]
        initializerCount = Int(max(0, info.initializer_count))
        for i in 0..<Int32(initializerCount) {
            var t = connx_tensor()
            guard connx_tensor_get(h, -1, i, &t) == CONNX_OK else { continue }
            let name = Self.str(t.name)
            if inits[name] == nil { inits[name] = Int(i) }
        }
        initializers = inits

        var nodes: [ONNXNode] = []
        nodes.reserveCapacity(Int(max(0, info.node_count)))
        var producerOf: [String: Int] = [:]
        var consumersOf: [String: [Int]] = [:]
        for i in 0..<max(0, info.node_count) {
            var n = connx_node()
            guard connx_node_get(h, i, &n) == CONNX_OK else { throw .internalError("cannot read node \(i) of \(file.path)") }
            var ins: [String] = []
            for j in 0..<max(0, n.input_count) { ins.append(Self.str(connx_node_input(h, i, j))) }
            var outs: [String] = []
            for j in 0..<max(0, n.output_count) { outs.append(Self.str(connx_node_output(h, i, j))) }
            var attrs: [ONNXAttribute] = []
            for a in 0..<max(0, n.attribute_count) {
                var at = connx_attribute()
                guard connx_node_attribute(h, i, a, &at) == CONNX_OK else { continue }
                let s: [UInt8] = at.s_len > 0 && at.s != nil
                    ? Array(UnsafeRawBufferPointer(start: at.s, count: min(at.s_len, 1 << 20)).bindMemory(to: UInt8.self))
                    : []
                let floats: [Float] = at.floats_count > 0 && at.floats != nil
                    ? Array(UnsafeBufferPointer(start: at.floats, count: Int(at.floats_count))) : []
                let ints: [Int64] = at.ints_count > 0 && at.ints != nil
                    ? Array(UnsafeBufferPointer(start: at.ints, count: Int(at.ints_count))) : []
                attrs.append(ONNXAttribute(name: Self.str(at.name), type: at.type, f: at.f, i: at.i, s: s,
                                           floats: floats, ints: ints, hasTensor: at.has_t != 0,
                                           hasGraph: at.has_g != 0 || at.graphs_count > 0))
            }
            let dom = Self.str(n.domain)
            let node = ONNXNode(index: Int(i), opType: Self.str(n.op_type), domain: dom == "ai.onnx" ? "" : dom,
                                name: Self.str(n.name), inputs: ins, outputs: outs, attributes: attrs)
            for o in outs where !o.isEmpty {
                if producerOf[o] != nil {
                    throw .format("\(file.path): value '\(o)' is produced by two nodes (invalid graph)")
                }
                producerOf[o] = Int(i)
            }
            var seen = Set<String>()
            for x in ins where !x.isEmpty && seen.insert(x).inserted {
                consumersOf[x, default: []].append(Int(i))
            }
            nodes.append(node)
        }
        self.nodes = nodes
        self.producerOf = producerOf
        self.consumersOf = consumersOf
    }

    /// The opset version of a domain ("" = ai.onnx), if imported.
    func opsetVersion(_ domain: String) -> Int64? { opsets.first { $0.domain == domain }?.version }

    /// The producing node of a value, if any.
    func producerNode(_ value: String) -> ONNXNode? {
        guard let i = producerOf[value] else { return nil }
        return nodes[i]
    }

    func consumers(_ value: String) -> [Int] { consumersOf[value] ?? [] }

    /// A name for messages: the file.
    var path: String { file.path }

    static func str(_ p: UnsafePointer<CChar>?) -> String {
        guard let p else { return "" }
        return String(cString: p)
    }
}
