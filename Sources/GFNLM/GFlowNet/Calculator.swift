/// The arithmetic tool of the paper's §4.4: after the policy samples "=" the calculator
/// evaluates the expression before it and appends " <value>" as context (tool tokens are scored by the reward but
/// are never actions of the policy).
public struct Calculator: Sendable, Equatable {
    public enum Mode: Int32, Sendable, Equatable {
        /// Reproduces the reference exactly, including its bug: for more than two operands only the last
        /// "operator operand" pair is evaluated (" 6 - 0 - 4" → −4).
        case referenceCompatible = 0
        /// Evaluates the last two operands with the operator between them (" 12 - 30 - 4" → 30 − 4 = 26).
        case fixed = 1
    }

    public var mode: Mode
    /// Token ids that trigger the tool (GPT-2: 796 " =" and 28 "=").
    public var triggers: [Int32]
    /// Maximum number of operands evaluated (the reference's limit_capability, 2); 0 = no limit.
    public var limit: Int

    public init(mode: Mode = .referenceCompatible, triggers: [Int32] = [796, 28], limit: Int = 2) {
        self.mode = mode
        self.triggers = triggers
        self.limit = limit
    }

    /// The text to append after the row's full text (prompt + generated + earlier tool output), or nil when
    /// nothing is appended (empty expression, evaluation error).
    public func output(forText text: String) -> String? {
        // expr = text.split("Answer:")[-1].split(",")[-1].split(".")[-1].split("=")[0]
        var expr = Substring(text)
        if let r = lastRange(of: "Answer:", in: expr) { expr = expr[r.upperBound...] }
        if let i = expr.lastIndex(of: ",") { expr = expr[expr.index(after: i)...] }
        if let i = expr.lastIndex(of: ".") { expr = expr[expr.index(after: i)...] }
        if let i = expr.firstIndex(of: "=") { expr = expr[..<i] }
        var e = String(expr)
        if e.isEmpty { return nil }
        if limit > 1 { e = limited(e) }
        guard let v = Calculator.evaluate(e) else { return nil }
        return " " + String(v)
    }

    /// Python's re.finditer(r"-?\d+") operand spans.
    static func operandRanges(_ s: [Character]) -> [Range<Int>] {
        var out: [Range<Int>] = []
        var i = 0
        while i < s.count {
            let start = i
            var j = i
            if s[j] == "-" { j += 1 }
            if j < s.count, s[j].isASCII, s[j].isNumber {
                while j < s.count, s[j].isASCII, s[j].isNumber { j += 1 }
                out.append(start..<j)
                i = j
            } else {
                i += 1
            }
        }
        return out
    }

    func limited(_ e: String) -> String {
        let chars = Array(e)
        let ops = Calculator.operandRanges(chars)
        guard ops.count > limit else { return e }
        switch mode {
        case .referenceCompatible:
            // The reference keeps only what follows the second-to-last operand: " - 4".
            return String(chars[ops[ops.count - 2].upperBound...])
        case .fixed:
            return String(chars[ops[ops.count - 2].lowerBound...])
        }
    }

    /// Evaluates what Python's eval would for sums of integer literals: optional spaces, unary and binary + / −,
    /// integers without leading zeros (except "0…0"). Anything else (or overflow) → nil.
    public static func evaluate(_ s: String) -> Int? {
        let c = Array(s.utf8)
        var i = 0
        func skip() { while i < c.count, c[i] == 32 || c[i] == 9 { i += 1 } }
        func unary() -> Int? {
            skip()
            guard i < c.count else { return nil }
            if c[i] == UInt8(ascii: "-") { i += 1; return unary().map { -$0 } }
            if c[i] == UInt8(ascii: "+") { i += 1; return unary() }
            let start = i
            while i < c.count, c[i] >= 48, c[i] <= 57 { i += 1 }
            guard i > start, i - start <= 18 else { return nil }
            let digits = c[start..<i]
            if digits.count > 1 && digits.first == 48 && digits.contains(where: { $0 != 48 }) { return nil }
            var v = 0
            for d in digits { v = v * 10 + Int(d - 48) }
            return v
        }
        guard var acc = unary() else { return nil }
        while true {
            skip()
            if i == c.count { return acc }
            let op = c[i]
            guard op == UInt8(ascii: "+") || op == UInt8(ascii: "-") else { return nil }
            i += 1
            guard let rhs = unary() else { return nil }
            let (v, o) = op == UInt8(ascii: "+") ? acc.addingReportingOverflow(rhs) : acc.subtractingReportingOverflow(rhs)
            if o { return nil }
            acc = v
        }
    }

    private func lastRange(of needle: String, in s: Substring) -> Range<Substring.Index>? {
        var found: Range<Substring.Index>?
        var start = s.startIndex
        while start < s.endIndex, let r = s[start...].range(of: needle) {
            found = r
            start = r.upperBound
        }
        return found
    }
}

extension Substring {
    /// First occurrence of `needle` (no Foundation).
    func range(of needle: String) -> Range<Substring.Index>? {
        let n = Array(needle)
        guard !n.isEmpty else { return nil }
        var i = startIndex
        while i < endIndex {
            var j = i, k = 0
            while k < n.count, j < endIndex, self[j] == n[k] { j = index(after: j); k += 1 }
            if k == n.count { return i..<j }
            i = index(after: i)
        }
        return nil
    }
}
