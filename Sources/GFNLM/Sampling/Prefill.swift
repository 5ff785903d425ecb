/// A prompt to prefill and the adapter it runs under (nil: the base model).
struct PrefillItem {
    let prompt: [Int32]
    let adapter: LoRAAdapter?
}

extension InferenceContext {
    /// Prompt tokens one batched prefill pass takes at most; a longer list of prompts takes several passes (the
    /// scratch memory of a pass grows with its tokens).
    static let prefillTokensPerPass = 2048

    /// Runs every prompt through the model into a new cache (capacity: the prompt) and writes its last-position
    /// logits to `logits + i·V`. Prompts share passes: the weights are read once per pass for all their tokens,
    /// which is what makes a burst of short prompts cheap. Rows under one adapter are grouped, so a pass may mix
    /// adapters. With the model's batch invariance on, each prompt's cache and logits are bit-identical to
    /// prefilling it alone (`Transformer.prefill`).
    func prefill(_ items: [PrefillItem], logits: UnsafeMutablePointer<Float>) throws(GFNError) -> [KVCache] {
        var caches: [KVCache?] = Array(repeating: nil, count: items.count)
        var pass: [Int] = []
        var passTokens = 0
        for i in items.indices {
            if !pass.isEmpty && passTokens + items[i].prompt.count > Self.prefillTokensPerPass {
                try prefillPass(items, pass, logits: logits, caches: &caches)
                pass.removeAll(keepingCapacity: true)
                passTokens = 0
            }
            pass.append(i)
            passTokens += items[i].prompt.count
        }
        if !pass.isEmpty { try prefillPass(items, pass, logits: logits, caches: &caches) }
        var out: [KVCache] = []
        out.reserveCapacity(items.count)
        for cache in caches {
            guard let cache else { throw .internalError("a prompt was not prefilled") }
            out.append(cache)
        }
        return out
    }

    /// One pass over `items[members]`: rows ordered by adapter (each adapter's rows contiguous, as
    /// `AdapterGroup` needs), then the head on each prompt's last hidden state.
    private func prefillPass(_ items: [PrefillItem], _ members: [Int], logits: UnsafeMutablePointer<Float>,
                             caches: inout [KVCache?]) throws(GFNError) {
        let c = model.config
        let E = c.nEmbd, V = c.vocabSize
        var order: [Int] = []
        var groups: [AdapterGroup] = []
        var seen: [ObjectIdentifier] = []
        for i in members where items[i].adapter == nil { order.append(i) }
        for i in members {
            guard let a = items[i].adapter, !seen.contains(ObjectIdentifier(a)) else { continue }
            seen.append(ObjectIdentifier(a))
            let first = order.count
            for j in members where items[j].adapter === a { order.append(j) }
            groups.append(AdapterGroup(adapter: a, rows: first..<order.count))
        }
        let lengths = order.map { items[$0].prompt.count }
        var tokens: [Int32] = []
        tokens.reserveCapacity(lengths.reduce(0, +))
        for i in order { tokens += items[i].prompt }
        var passCaches: [KVCache] = []
        for n in lengths { passCaches.append(try transformer.makeCache(capacity: n)) }
        let last = try FloatStorage(count: order.count * E)
        let out = try FloatStorage(count: order.count * V)
        // One turn of the compute budget for the pass and its head (concurrent callers alternate per pass).
        try transformer.gate.run { () throws(GFNError) in
            let hidden = try tokens.withUnsafeBufferPointer { (tb) throws(GFNError) in
                try transformer.prefill(tokens: tb, lengths: lengths, caches: passCaches, adapterGroups: groups,
                                        workspace: workspace)
            }
            var end = 0
            for (r, n) in lengths.enumerated() {
                end += n
                (last.base + r * E).update(from: hidden + (end - 1) * E, count: E)
            }
            try transformer.logits(hidden: last.base, count: order.count, adapter: nil, adapterGroups: groups,
                                   decoding: true, into: out.base)
        }
        for (r, i) in order.enumerated() {
            (logits + i * V).update(from: out.base + r * V, count: V)
            caches[i] = passCaches[r]
        }
    }
}
