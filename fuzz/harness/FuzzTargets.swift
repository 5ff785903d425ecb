// Fuzz targets of gfnlm's readers. Each target takes arbitrary bytes and must never trap, hang or allocate without
// bound: a malformed input is a thrown GFNError, nothing else. Where a reader has a checkable property (a JSON
// value re-parses to itself, byte-level BPE is lossless, a saved adapter reloads) the target checks it and traps on
// a violation, so libFuzzer reports it as a crash.
//
// The same file is linked into the libFuzzer binary (fuzz/harness/LibFuzzerMain.swift, built by fuzz/build.sh with
// -sanitize=fuzzer,address) and into the replay binary (fuzz/harness/ReplayMain.swift) that `make fuzz-smoke`
// builds against the debug module to replay the stored corpus and the crash regressions.
//
// Multi-file inputs (tokenizer files, PEFT directories, checkpoints) are sections separated by `FuzzSections.separator`.
@testable import GFNLM
#if canImport(Glibc)
import Glibc
#endif

public enum FuzzTargets {
    public static let names = ["json", "tokenizer_files", "tokenize", "safetensors", "onnx", "peft", "checkpoint",
                               "replay"]

    /// Runs one input through a target. Returns false for an unknown target name.
    @discardableResult
    public static func run(_ target: String, _ data: [UInt8]) -> Bool {
        switch target {
        case "json": json(data)
        case "tokenizer_files": tokenizerFiles(data)
        case "tokenize": tokenize(data)
        case "safetensors": safetensors(data)
        case "onnx": onnx(data)
        case "peft": peft(data)
        case "checkpoint": checkpoint(data)
        case "replay": replay(data)
        default: return false
        }
        return true
    }

    static func violated(_ what: String) -> Never {
        fputs("fuzz property violated: \(what)\n", stderr)
        abort()
    }

    // MARK: json

    /// Any JSON value the parser accepts re-parses to itself from both writers' output.
    static func json(_ data: [UInt8]) {
        guard let v = try? JSONValue.parse(data) else { return }
        for options in [JSONWriteOptions.compact, .pythonPretty, JSONWriteOptions(indent: 1, sortKeys: false)] {
            let out = v.serializedBytes(options)
            guard let w = try? JSONValue.parse(out) else {
                violated("the writer's output does not parse: \(String(decoding: out.prefix(200), as: UTF8.self))")
            }
            guard w == v else { violated("parse(serialize(v)) != v for \(String(decoding: out.prefix(200), as: UTF8.self))") }
        }
    }

    // MARK: tokenizer files

    /// Sections: tokenizer.json | text, or vocab.json | merges.txt | text. Loading, encoding and decoding must not trap.
    static func tokenizerFiles(_ data: [UInt8]) {
        let s = FuzzSections.split(data)
        guard let first = s.first else { return }
        let tok: Tokenizer?
        let text: [UInt8]
        let options = TokenizerOptions(cacheCapacity: 64)
        if first.count > 0 && FuzzSections.contains(first, Array("\"model\"".utf8)) {
            tok = try? Tokenizer.fromTokenizerJSON(bytes: first, options: options)
            text = s.count > 1 ? s[1] : Array("Hello world <|endoftext|> ünïcode".utf8)
        } else {
            tok = try? Tokenizer.fromVocabMerges(vocab: first, merges: s.count > 1 ? s[1] : [], options: options)
            text = s.count > 2 ? s[2] : Array("Hello world <|endoftext|> ünïcode".utf8)
        }
        guard let tok else { return }
        for special in [true, false] {
            let ids = tok.encode(bytes: text, allowSpecial: special)
            _ = try? tok.decodeBytes(ids)
            _ = try? tok.decode(ids)
        }
        // arbitrary ids, in and out of range
        var ids: [Int32] = []
        var i = 0
        while i + 4 <= text.count && ids.count < 256 {
            ids.append(Int32(bitPattern: UInt32(text[i]) | UInt32(text[i + 1]) << 8 | UInt32(text[i + 2]) << 16 | UInt32(text[i + 3]) << 24))
            i += 4
        }
        _ = try? tok.decode(ids)
        _ = try? tok.decode(ids.map { Int32(truncatingIfNeeded: Int(UInt32(bitPattern: $0)) % max(1, tok.vocabSize)) })
        _ = tok.token(for: ids.first ?? 0)
    }

    // MARK: tokenize (the real GPT-2 tokenizer)

    nonisolated(unsafe) static var gpt2Tokenizer: Tokenizer?

    /// Byte-level BPE is lossless: decodeBytes(encode(bytes)) == bytes for every byte string, with or without
    /// special-token matching; arbitrary ids decode without trapping.
    static func tokenize(_ data: [UInt8]) {
        if gpt2Tokenizer == nil {
            do {
                gpt2Tokenizer = try Tokenizer.load(path: FuzzWorkspace.root + "/Tests/Fixtures/tokenizer/tokenizer.json")
            } catch {
                violated("cannot load the GPT-2 tokenizer (set GFNLM_FUZZ_ROOT to the repository): \(error)")
            }
        }
        guard let tok = gpt2Tokenizer else { return }
        // encode(bytes:) replaces invalid UTF-8 by U+FFFD first (documented), so compare with that text's bytes
        let expected = Array(String(decoding: data, as: UTF8.self).utf8)
        for special in [false, true] {
            let ids = tok.encode(bytes: data, allowSpecial: special)
            guard let back = try? tok.decodeBytes(ids) else { violated("encode produced an id decode refuses") }
            guard back == expected else { violated("decodeBytes(encode(x, allowSpecial: \(special))) != x") }
        }
        if let s = String(validating: data, as: UTF8.self) {
            let ids = tok.encode(s, allowSpecial: false)
            guard (try? tok.decode(ids)) == s else { violated("decode(encode(s)) != s for valid UTF-8") }
        }
        var ids: [Int32] = []
        var i = 0
        while i + 2 <= data.count {
            ids.append(Int32(UInt16(data[i]) | UInt16(data[i + 1]) << 8))
            i += 2
        }
        _ = try? tok.decode(ids)
    }

    // MARK: safetensors

    /// Parse, read every tensor as floats and as raw bytes; a file that parses and holds only float tensors
    /// survives a write/read round trip unchanged.
    static func safetensors(_ data: [UInt8]) {
        guard let st = try? Safetensors(bytes: data) else { return }
        var tensors: [SafetensorsTensor] = []
        var allFloat = true
        for name in st.names {
            guard let info = st.info(name) else { violated("a listed tensor has no info") }
            guard let raw = try? st.rawBytes(name) else { violated("rawBytes of a listed tensor failed") }
            guard raw.count == info.dataOffsets.count else { violated("rawBytes has the wrong length") }
            _ = try? st.int64s(name)
            if let f = try? st.floats(name) {
                let n = info.shape.reduce(1, *)
                guard f.count == n else { violated("floats(\(name)) has \(f.count) values for shape \(info.shape)") }
                if info.dtype == .f32 {
                    tensors.append(SafetensorsTensor(name: name, shape: info.shape, floats: f))
                } else {
                    allFloat = false
                }
            } else {
                allFloat = false
            }
        }
        if allFloat {
            guard let bytes = try? Safetensors.serialize(tensors: tensors, metadata: st.metadata.isEmpty ? nil : st.metadata),
                  let again = try? Safetensors(bytes: bytes) else { violated("an f32 file does not round-trip") }
            guard again.names.sorted() == st.names.sorted() else { violated("names changed in the round trip") }
            for name in st.names {
                guard (try? again.shape(name)) == (try? st.shape(name)),
                      (try? again.rawBytes(name)) == (try? st.rawBytes(name)) else { violated("\(name) changed in the round trip") }
            }
        }
    }

    // MARK: onnx

    /// The input is model.onnx in a folder that also holds the seed models' external data files, a symlink out
    /// of the folder and a subfolder. A model that loads must run a forward pass.
    static func onnx(_ data: [UInt8]) {
        let dir = FuzzWorkspace.onnxFolder
        let path = dir + "/model.onnx"
        FuzzWorkspace.write(path, data)
        guard let weights = try? ONNXModelLoader.load(path: path) else { return }
        let c = weights.config
        guard c.vocabSize > 0, c.nPositions >= 2 else { return }
        let model = Model(transformer: Transformer(weights: weights, threads: 1), tokenizer: nil)
        let ids: [Int32] = [0, Int32(min(1, c.vocabSize - 1))]
        guard (try? model.logits(ids: ids, batch: 1, seqLen: 2)) != nil else {
            violated("a model that loaded cannot run a forward pass")
        }
    }

    // MARK: PEFT adapters

    nonisolated(unsafe) static var tinyModels: [Model] = []

    /// The tiny GPT-2 and GPT-J the adapter and checkpoint targets load into (and that made their seeds).
    static func tinyModel(_ arch: Architecture) -> Model {
        if tinyModels.isEmpty {
            for a in [Architecture.gpt2, .gptj] {
                guard let w = try? ModelWeights.random(config: .tiny(a, vocab: 16, embd: 8, layers: 1, heads: 2, positions: 16),
                                                       seed: 3, std: 0.3) else { violated("tiny model") }
                tinyModels.append(Model(transformer: Transformer(weights: w, threads: 1), tokenizer: nil))
            }
        }
        return tinyModels[arch == .gpt2 ? 0 : 1]
    }

    /// Sections: adapter_config.json | adapter_model.safetensors. An adapter that loads must run, save and reload
    /// to the same factors.
    static func peft(_ data: [UInt8]) {
        let dir = FuzzWorkspace.fresh("peft")
        FuzzSections.writeFiles(data, into: dir, names: [LoRAAdapter.peftConfigFile, LoRAAdapter.peftWeightsFile])
        for arch in [Architecture.gpt2, .gptj] {
            let m = tinyModel(arch)
            guard let a = try? LoRAAdapter.load(peftDirectory: dir, model: m.weights) else { continue }
            _ = try? m.logits(ids: [1, 2, 3], batch: 1, seqLen: 3, adapter: a)
            let out = FuzzWorkspace.fresh("peft-out")
            if (try? a.save(peftDirectory: out, model: m.weights)) != nil {
                guard let b = try? LoRAAdapter.load(peftDirectory: out, model: m.weights) else {
                    violated("a saved adapter does not reload")
                }
                // bit patterns, not ==: an adapter file may hold NaN weights, which round-trip exactly but are
                // never == themselves (a false alarm of this property, found by the first campaign)
                func bits(_ v: [Float]) -> [UInt32] { v.map { $0.bitPattern } }
                for name in a.moduleNames {
                    guard let f = a.factors(for: name), let g = b.factors(for: name), bits(f.a.array) == bits(g.a.array),
                          bits(f.b.array) == bits(g.b.array), f.scale.bitPattern == g.scale.bitPattern else {
                        violated("adapter \(name) changed in a round trip")
                    }
                }
            }
        }
    }

    // MARK: checkpoints

    static let checkpointFiles = [TrainingCheckpoint.stateFile, TrainingCheckpoint.parametersFile,
                                  TrainingCheckpoint.optimizerFile, LoRAAdapter.peftConfigFile,
                                  LoRAAdapter.peftWeightsFile, GFlowNetTrainer.bufferFile]

    static func gflownetTrainer() throws(GFNError) -> GFlowNetTrainer {
        let m = tinyModel(.gpt2)
        let adapter = try LoRAAdapter(model: m.weights, config: LoRAConfig(r: 2, alpha: 4, targets: ["c_attn"]), seed: 1)
        var c = GFlowNetConfig()
        c.batchSize = 2
        c.onPolicyProbability = 0.3
        c.replayProbability = 0.5
        c.bufferCapacity = 4
        c.schedule = .constant
        c.learningRate = 1e-2
        let reward = RandomIntegerReward(numberTokens: [1, 2, 3], termination: 0)
        return try GFlowNetTrainer(model: m, adapter: adapter, reward: reward, prompts: [PromptSpec(x: [4, 5])],
                                   rollout: RolloutSettings(termination: 0, maxLength: 4), config: c)
    }

    static func sftTrainer(lora: Bool) throws(GFNError) -> SFTTrainer {
        let m = tinyModel(.gpt2)
        let adapter = lora ? try LoRAAdapter(model: m.weights, config: LoRAConfig(r: 2, alpha: 4, targets: ["c_attn"]), seed: 1) : nil
        return try SFTTrainer(transformer: m.transformer, adapter: adapter, hyper: AdamWHyperparameters(lr: 1e-2))
    }

    /// Sections: trainer_state.json | parameters.safetensors | optimizer.safetensors | adapter_config.json |
    /// adapter_model.safetensors | replay_buffer.json, loaded into a GFlowNet trainer and into SFT trainers (LoRA and
    /// full); a trainer that accepted the checkpoint must train on (errors allowed, traps not), and a trainer that
    /// refused it must be unchanged.
    static func checkpoint(_ data: [UInt8]) {
        let dir = FuzzWorkspace.fresh("ckpt")
        FuzzSections.writeFiles(data, into: dir, names: checkpointFiles)
        let batch = [SFTExample(context: [1, 2], target: [3, 4])]
        if let t = try? gflownetTrainer() {
            let before = t.adapter.moduleNames.compactMap { t.adapter.factors(for: $0)?.a.array }
            if (try? t.load(checkpoint: dir)) != nil {
                _ = try? t.trainStep()
                _ = try? t.sample(prompt: [4, 5], count: 2)
            } else {
                let after = t.adapter.moduleNames.compactMap { t.adapter.factors(for: $0)?.a.array }
                guard before == after else { violated("a refused checkpoint changed the GFlowNet trainer's adapter") }
            }
        }
        for lora in [true, false] {
            guard let t = try? sftTrainer(lora: lora) else { continue }
            if (try? t.load(checkpoint: dir)) != nil {
                _ = try? t.step(batch)
            }
        }
    }

    // MARK: replay buffer

    /// A buffer that deserializes can be sampled, added to and serialized, and re-reads to the same items.
    static func replay(_ data: [UInt8]) {
        guard let b = try? ReplayBuffer.deserialize(data) else { return }
        var rng = RNG(seed: 1)
        for k in b.keys { _ = b.sample(k, count: 3, rng: &rng) }
        let bytes = b.serialized()
        guard let c = try? ReplayBuffer.deserialize(bytes) else { violated("a serialized buffer does not re-read") }
        guard c.keys == b.keys, b.keys.allSatisfy({ c.items($0) == b.items($0) }) else {
            violated("the buffer changed in a round trip")
        }
        if let k = b.keys.first {
            _ = try? b.add(k, ReplayItem(logR: 0.5, text: "x", actions: [1, 2], logRewards: [0, 0, 0.5], truncated: false))
        }
    }
}

// MARK: - sections and files

public enum FuzzSections {
    /// Separates the files of a multi-file input (in fuzz/dict/sections.dict so libFuzzer can insert it).
    public static let separator: [UInt8] = Array("\n~~gfnlm-fuzz-section~~\n".utf8)

    public static func split(_ data: [UInt8]) -> [[UInt8]] {
        var out: [[UInt8]] = []
        var start = 0, i = 0
        let sep = separator, n = sep.count
        while i + n <= data.count {
            if data[i] == sep[0] && Array(data[i..<(i + n)]) == sep {
                out.append(Array(data[start..<i]))
                i += n
                start = i
            } else {
                i += 1
            }
        }
        out.append(Array(data[start...]))
        return out
    }

    public static func join(_ parts: [[UInt8]]) -> [UInt8] {
        var out: [UInt8] = []
        for (i, p) in parts.enumerated() {
            if i > 0 { out += separator }
            out += p
        }
        return out
    }

    static func contains(_ hay: [UInt8], _ needle: [UInt8]) -> Bool {
        guard needle.count <= hay.count else { return false }
        for i in 0...(hay.count - needle.count) where hay[i] == needle[0] {
            if Array(hay[i..<(i + needle.count)]) == needle { return true }
        }
        return false
    }

    /// Writes section k to names[k]; sections beyond the names are ignored, names beyond the sections are absent.
    static func writeFiles(_ data: [UInt8], into dir: String, names: [String]) {
        for (k, part) in split(data).enumerated() where k < names.count {
            FuzzWorkspace.write(dir + "/" + names[k], part)
        }
    }
}

public enum FuzzWorkspace {
    /// The repository (fixtures, fuzz/data): $GFNLM_FUZZ_ROOT, else the current directory.
    public static let root: String = {
        if let p = getenv("GFNLM_FUZZ_ROOT") { return String(cString: p) }
        var buf = [CChar](repeating: 0, count: 4096)
        guard getcwd(&buf, buf.count) != nil else { return "." }
        return String(cString: buf)
    }()

    /// A private temporary folder, removed at exit.
    nonisolated(unsafe) static var baseStorage: String?
    static var base: String {
        if let b = baseStorage { return b }
        var template = Array((String(cString: getenv("TMPDIR") ?? strdup("/tmp")) + "/gfnlm-fuzz-XXXXXX").utf8CString)
        guard let p = mkdtemp(&template) else { violatedIO("mkdtemp") }
        let b = String(cString: p)
        baseStorage = b
        atexit { if let b = FuzzWorkspace.baseStorage { _ = try? AtomicDirectory.removeTree(b) } }
        return b
    }

    static func violatedIO(_ what: String) -> Never {
        fputs("fuzz harness: \(what) failed: \(String(cString: strerror(errno)))\n", stderr)
        abort()
    }

    /// An empty folder `name` inside the workspace (emptied on every call).
    static func fresh(_ name: String) -> String {
        let d = base + "/" + name
        _ = try? AtomicDirectory.removeTree(d)
        guard mkdir(d, 0o755) == 0 else { violatedIO("mkdir \(d)") }
        return d
    }

    static func write(_ path: String, _ bytes: [UInt8]) {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { violatedIO("open \(path)") }
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + done, bytes.count - done) }
            guard n > 0 else { violatedIO("write \(path)") }
            done += n
        }
        close(fd)
    }

    /// The ONNX target's folder: fuzz/data/onnx's external data files, `escape.data` → a file outside the folder,
    /// `loop.data` → itself, `sub/` (a folder where a file is expected).
    nonisolated(unsafe) static var onnxFolderStorage: String?
    static var onnxFolder: String {
        if let d = onnxFolderStorage { return d }
        let d = fresh("onnx")
        let src = root + "/fuzz/data/onnx"
        if let dp = opendir(src) {
            while let e = readdir(dp) {
                let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
                if name == "." || name == ".." { continue }
                if let bytes = try? FileIO.read(src + "/" + name) { write(d + "/" + name, bytes) }
            }
            closedir(dp)
        } else {
            fputs("fuzz harness: warning: \(src) not found (set GFNLM_FUZZ_ROOT); external-data seeds will not load\n", stderr)
        }
        write(base + "/outside.data", [UInt8](repeating: 0, count: 4096))
        _ = symlink(base + "/outside.data", d + "/escape.data")
        _ = symlink(d + "/loop.data", d + "/loop.data")
        _ = mkdir(d + "/sub", 0o755)
        onnxFolderStorage = d
        return d
    }
}
