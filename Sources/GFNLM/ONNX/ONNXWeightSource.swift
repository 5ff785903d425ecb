/// Where the weights of a model loaded by `ONNXModelLoader` live in its ONNX file: for every Hugging Face tensor
/// name (`transformer.h.0.attn.c_attn.weight`, `transformer.wte.weight`, `lm_head.weight`, …), the node inputs
/// that read it and how the operand as stored maps to gfnlm's layout. `ONNXExporter` writes changed weights back
/// into the original graph through it. Recorded at load time; the file itself is not kept open for it.
public final class ONNXWeightSource: Sendable {
    /// The .onnx file the model was loaded from.
    public let path: String
    /// Counts of the graph as loaded, checked again on export (the file must not have changed).
    let nodeCount: Int
    let initializerCount: Int
    /// Tensor name → the node inputs that read it (usually one; several when the graph reads a table twice).
    let slots: [String: [WeightSlot]]

    init(path: String, nodeCount: Int, initializerCount: Int, slots: [String: [WeightSlot]]) {
        self.path = path
        self.nodeCount = nodeCount
        self.initializerCount = initializerCount
        self.slots = slots
    }

    /// The Hugging Face names of the tensors whose place in the graph is known, sorted.
    public var tensorNames: [String] { slots.keys.sorted() }
}

/// One node input that reads a weight, and how gfnlm's tensor relates to the operand there:
/// gfnlm = scale · operandᵀ (a 2-D operand, e.g. Gemm transB = 1) when `transposed`, else scale · operand with the
/// same elements in the same order (the operand's shape may differ, e.g. a bias [1, out]).
struct WeightSlot: Sendable {
    let slot: InputSlot
    /// The node's op_type and the input's value name as loaded (checked on export).
    let opType: String
    let inputName: String
    let transposed: Bool
    /// Gemm alpha (weights) or beta (biases); 1 elsewhere.
    let scale: Float
}
