import Foundation
import XCTest
@testable import GFNLM
import CKernels
import CGFNLM
@testable import GFNLMC

/// The converted weight cache: CRC-32C against known values and the portable code, a round trip for every weight
/// format on GPT-2 / GPT-J fixtures (embedded, external-data and fp16 exports) with logits bit-identical to the ONNX
/// load, stale sources (mtime, replaced file, content edited in place with the mtime restored), damaged files
/// (payload, metadata, header, version, magic, truncated, extended), an unwritable directory, and concurrent loads.
final class WeightCacheTests: XCTestCase {
    /// Collects log lines.
    final class Log: @unchecked Sendable {
        private let lock = NSLock()
        private var lines: [(LogLevel, String)] = []
        var function: LogFunction { { [self] level, m in lock.lock(); lines.append((level, m)); lock.unlock() } }
        var all: [(LogLevel, String)] { lock.lock(); defer { lock.unlock() }; return lines }
        func clear() { lock.lock(); lines = []; lock.unlock() }
    }

    static let fixtures = ["gpt2-tiny/legacy17", "gptj-tiny/external-onefile", "gpt2-tiny/fp16"]

    /// A private copy of a fixture folder (caches are written beside the model).
    static func copy(_ fixture: String, _ tag: String) throws -> String {
        let dst = TestFiles.tempDir("weight-cache-\(tag)-\(fixture.replacingOccurrences(of: "/", with: "-"))")
        let fm = FileManager.default
        for f in try fm.contentsOfDirectory(atPath: dst) { try fm.removeItem(atPath: FileIO.join(dst, f)) }
        let src = FileIO.join(TestFiles.fixtures, fixture)
        for f in try fm.contentsOfDirectory(atPath: src) where f.hasPrefix("model.onnx") {
            try fm.copyItem(atPath: FileIO.join(src, f), toPath: FileIO.join(dst, f))
        }
        return dst
    }

    static func logits(_ w: ModelWeights) throws -> [Float] {
        let V = w.config.vocabSize
        return try BF16Tests.logits(w, (0..<12).map { Int32(($0 * 37 + 11) % V) }, rows: 2)
    }

    static func load(_ dir: String, _ type: WeightType, _ mode: WeightCacheMode, log: Log? = nil,
                     directory: String? = nil) throws -> (weights: ModelWeights, outcome: WeightCache.Outcome) {
        try WeightCache.load(path: dir, weightType: type, threads: 2,
                             options: WeightCacheOptions(mode: mode, directory: directory, log: log?.function))
    }

    static func cachePath(_ dir: String, _ type: WeightType) -> String { FileIO.join(dir, "model.onnx.gfnlm-\(type).cache") }

    func testCRC32C() {
        XCTAssertEqual(gfk_crc32c(0, "123456789", 9), 0xE306_9283)
        XCTAssertEqual(gfk_crc32c_portable(0, "123456789", 9), 0xE306_9283)
        XCTAssertEqual(gfk_crc32c(0, "", 0), 0)
        var rng = RNG(seed: 3)
        let bytes = (0..<200_000).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        bytes.withUnsafeBytes { b in
            let p = b.baseAddress!
            // every alignment and lengths around the three-chain block (3 × 8192 bytes)
            for n in [0, 1, 7, 8, 9, 63, 4096, 24_575, 24_576, 24_577, 49_160, 100_003, 199_990] {
                for off in 0..<8 where off + n <= b.count {
                    XCTAssertEqual(gfk_crc32c(7, p + off, n), gfk_crc32c_portable(7, p + off, n), "n \(n) off \(off)")
                }
            }
            // continuing a checksum equals one pass
            XCTAssertEqual(gfk_crc32c(gfk_crc32c(0, p, 30_001), p + 30_001, 169_999), gfk_crc32c(0, p, 200_000))
        }
        print("crc32c hardware: \(gfk_crc32c_is_hardware())")
    }

    /// Every format on every architecture / storage: the first load writes the cache, the second reads it, and both
    /// give the ONNX load's logits bit for bit.
    func testRoundTripEveryFormat() throws {
        for fixture in Self.fixtures {
            let dir = try Self.copy(fixture, "roundtrip")
            for type in [WeightType.f32, .bf16, .int8, .q4] {
                let reference = try Self.logits(try ONNXModelLoader.load(path: dir, weightType: type, threads: 2))
                let log = Log()
                let first = try Self.load(dir, type, .readWrite, log: log)
                XCTAssertFalse(first.outcome.used)
                XCTAssertTrue(first.outcome.written, "\(fixture) \(type): \(log.all)")
                XCTAssertEqual(first.outcome.rejection, "no cache file yet")
                XCTAssertTrue(FileIO.exists(Self.cachePath(dir, type)))
                let second = try Self.load(dir, type, .readOnly, log: log)
                XCTAssertTrue(second.outcome.used, "\(fixture) \(type): \(log.all)")
                XCTAssertEqual(second.weights.weightType, type)
                XCTAssertEqual(second.weights.config, first.weights.config)
                XCTAssertEqual(second.weights.matrixBytes, first.weights.matrixBytes)
                XCTAssertTrue(second.weights.keepAlive.isEmpty)
                XCTAssertEqual(try Self.logits(second.weights), reference, "\(fixture) \(type)")
                // fp32 keeps where its weights sit in the graph (export with merged adapters still works)
                XCTAssertEqual(second.weights.onnxSource?.tensorNames, type == .f32
                               ? try ONNXModelLoader.load(path: dir).onnxSource?.tensorNames : nil)
                XCTAssertTrue(log.all.contains { $0.0 == .info && $0.1.contains("from the weight cache") })
                XCTAssertFalse(log.all.contains { $0.0 == .warn }, "\(log.all)")
            }
            // one file per format, no temporary files left
            let names = try FileManager.default.contentsOfDirectory(atPath: dir)
            XCTAssertEqual(names.filter { $0.hasSuffix(".cache") }.count, 4)
            XCTAssertFalse(names.contains { $0.contains(".tmp.") }, "\(names)")
        }
    }

    /// A GFlowNet-relevant path: Model.load with the cache option gives the same model.
    func testModelLoadOption() throws {
        let dir = try Self.copy("gpt2-tiny/legacy17", "model")
        let a = try Model.load(path: dir, threads: 2, weightType: .int8, weightCache: WeightCacheOptions(mode: .readWrite))
        XCTAssertTrue(FileIO.exists(Self.cachePath(dir, .int8)))
        let b = try Model.load(path: dir, threads: 2, weightType: .int8, weightCache: WeightCacheOptions(mode: .readOnly))
        XCTAssertEqual(try a.logits(ids: [1, 2, 3, 4], batch: 1, seqLen: 4), try b.logits(ids: [1, 2, 3, 4], batch: 1, seqLen: 4))
        // off (the default) neither reads nor writes
        try FileManager.default.removeItem(atPath: Self.cachePath(dir, .int8))
        _ = try Model.load(path: dir, threads: 2, weightType: .int8)
        XCTAssertFalse(FileIO.exists(Self.cachePath(dir, .int8)))
    }

    static func setMtime(_ path: String, seconds: Int, nanoseconds: Int = 0) {
        var times = [timespec(tv_sec: seconds, tv_nsec: nanoseconds), timespec(tv_sec: seconds, tv_nsec: nanoseconds)]
        XCTAssertEqual(utimensat(AT_FDCWD, path, &times, 0), 0)
    }

    static func mtime(_ path: String) -> timespec {
        var st = stat()
        stat(path, &st)
        return st.st_mtim
    }

    func testStaleSourcesAreNotUsed() throws {
        let dir = try Self.copy("gptj-tiny/external-onefile", "stale")
        let model = FileIO.join(dir, "model.onnx"), data = FileIO.join(dir, "model.onnx.data")
        _ = try Self.load(dir, .int8, .readWrite)
        let log = Log()
        // 1. the .onnx touched
        Self.setMtime(model, seconds: 1_700_000_000)
        var r = try Self.load(dir, .int8, .readOnly, log: log)
        XCTAssertFalse(r.outcome.used)
        XCTAssertTrue(r.outcome.rejection?.contains("model.onnx changed since the cache was written: modification time") == true,
                      "\(String(describing: r.outcome.rejection))")
        XCTAssertTrue(log.all.contains { $0.0 == .info && $0.1.contains("not used") })
        // read-write: rewritten, then used
        r = try Self.load(dir, .int8, .readWrite)
        XCTAssertTrue(r.outcome.written)
        XCTAssertTrue(try Self.load(dir, .int8, .readOnly).outcome.used)
        // 2. the external data edited in place (same size and inode) with its mtime put back: the sampled digest
        let before = Self.mtime(data)
        let fd = open(data, O_RDWR)
        var b: UInt8 = 0
        XCTAssertEqual(pread(fd, &b, 1, 100), 1)
        b ^= 0x40
        XCTAssertEqual(pwrite(fd, &b, 1, 100), 1)
        close(fd)
        Self.setMtime(data, seconds: before.tv_sec, nanoseconds: before.tv_nsec)
        r = try Self.load(dir, .int8, .readOnly)
        XCTAssertFalse(r.outcome.used)
        XCTAssertTrue(r.outcome.rejection?.contains("model.onnx.data changed") == true
                      && r.outcome.rejection?.contains("digest") == true, "\(String(describing: r.outcome.rejection))")
        // the ONNX load reads the edited file
        XCTAssertEqual(try Self.logits(r.weights), try Self.logits(try ONNXModelLoader.load(path: dir, weightType: .int8, threads: 2)))
        // 3. the data file replaced by a copy (new inode)
        _ = try Self.load(dir, .int8, .readWrite)
        try FileManager.default.copyItem(atPath: data, toPath: data + ".new")
        XCTAssertEqual(rename(data + ".new", data), 0)
        r = try Self.load(dir, .int8, .readOnly)
        XCTAssertFalse(r.outcome.used)
        XCTAssertTrue(r.outcome.rejection?.contains("changed") == true, "\(String(describing: r.outcome.rejection))")
        // 4. another weight format's cache is not this one's
        let other = Self.cachePath(dir, .q4)
        _ = try Self.load(dir, .int8, .readWrite)
        try FileManager.default.copyItem(atPath: Self.cachePath(dir, .int8), toPath: other)
        r = try Self.load(dir, .q4, .readOnly)
        XCTAssertFalse(r.outcome.used)
        XCTAssertEqual(r.outcome.rejection, "it holds int8 weights, not q4")
    }

    /// Damage of every kind: not used (a warning), the ONNX load's result, no crash; read-only leaves the file as
    /// it is, read-write replaces it with a good one.
    func testDamagedCachesAreNotUsed() throws {
        let dir = try Self.copy("gpt2-tiny/fp16", "damaged")
        let path = Self.cachePath(dir, .q4)
        _ = try Self.load(dir, .q4, .readWrite)
        let good = try Data(contentsOf: URL(fileURLWithPath: path))
        let reference = try Self.logits(try ONNXModelLoader.load(path: dir, weightType: .q4, threads: 2))
        var metaEnd = 32
        good.withUnsafeBytes { metaEnd += Int($0.loadUnaligned(fromByteOffset: 16, as: UInt64.self)) }
        func withHeaderCRC(_ d: Data) -> Data {
            var d = d
            let crc = d.prefix(28).withUnsafeBytes { gfk_crc32c(0, $0.baseAddress, 28) }
            withUnsafeBytes(of: crc.littleEndian) { d.replaceSubrange(28..<32, with: $0) }
            return d
        }
        let cases: [(String, (Data) -> Data, String)] = [
            ("payload byte", { var d = $0; d[d.count - 5] ^= 1; return d }, "payload checksum mismatch"),
            ("first payload byte", { var d = $0; d[WeightCacheFormat.align(metaEnd)] ^= 0x80; return d }, "payload checksum mismatch"),
            ("metadata byte", { var d = $0; d[40] ^= 1; return d }, "metadata checksum mismatch"),
            ("truncated", { $0.prefix($0.count - 1) }, "truncated"),
            ("truncated to the header", { $0.prefix(100) }, "truncated"),
            ("empty", { _ in Data() }, "truncated"),
            ("extended", { $0 + Data([0]) }, "extended"),
            ("magic", { var d = $0; d[0] = UInt8(ascii: "X"); return d }, "bad magic"),
            ("version", { var d = $0; d[8] = 3; return withHeaderCRC(d) }, "format version 3"),
            ("header checksum", { var d = $0; d[12] = 1; return d }, "header checksum mismatch"),
            ("metadata length", { var d = $0; d[23] = 0x7f; return withHeaderCRC(d) }, "metadata length"),
        ]
        for (what, damage, expected) in cases {
            let bad = damage(good)
            try bad.write(to: URL(fileURLWithPath: path))
            let log = Log()
            let r = try Self.load(dir, .q4, .readOnly, log: log)
            XCTAssertFalse(r.outcome.used, what)
            XCTAssertTrue(r.outcome.rejection?.contains(expected) == true, "\(what): \(String(describing: r.outcome.rejection))")
            XCTAssertTrue(log.all.contains { $0.0 == .warn && $0.1.contains(expected) }, "\(what): \(log.all)")
            XCTAssertEqual(try Self.logits(r.weights), reference, what)
            XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: path)), bad, "read-only must not rewrite (\(what))")
        }
        // a cache in the previous layout (version 1, fp32 scales) is stale: logged at INFO, not as damage
        do {
            var d = good
            d[8] = 1
            try withHeaderCRC(d).write(to: URL(fileURLWithPath: path))
            let log = Log()
            let r = try Self.load(dir, .q4, .readOnly, log: log)
            XCTAssertFalse(r.outcome.used)
            XCTAssertTrue(r.outcome.rejection?.contains("older cache format (version 1") == true,
                          String(describing: r.outcome.rejection))
            XCTAssertTrue(log.all.contains { $0.0 == .info && $0.1.contains("older cache format") }, "\(log.all)")
            XCTAssertFalse(log.all.contains { $0.0 == .warn }, "\(log.all)")
        }
        // a temporary file of a writer that died is removed by the next write
        let orphan = path + ".tmp.4194303.1f"
        try good.prefix(1000).write(to: URL(fileURLWithPath: orphan))
        let r = try Self.load(dir, .q4, .readWrite)
        XCTAssertTrue(r.outcome.written)
        XCTAssertFalse(FileIO.exists(orphan))
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: path)), good, "the rewritten cache is the same bytes")
        XCTAssertTrue(try Self.load(dir, .q4, .readOnly).outcome.used)
    }

    /// Metadata edited with valid checksums (a crafted or buggy file): every inconsistency is still refused.
    func testInconsistentMetadataWithValidChecksums() throws {
        let dir = try Self.copy("gpt2-tiny/legacy17", "crafted")
        let path = Self.cachePath(dir, .q4)
        _ = try Self.load(dir, .q4, .readWrite)
        let good = try Data(contentsOf: URL(fileURLWithPath: path))
        let length = good.withUnsafeBytes { Int($0.loadUnaligned(fromByteOffset: 16, as: UInt64.self)) }
        let meta = String(decoding: good[32..<32 + length], as: UTF8.self)
        let reference = try Self.logits(try ONNXModelLoader.load(path: dir, weightType: .q4, threads: 2))
        /// The file with `from` replaced by `to` (same length) in the metadata, checksums recomputed.
        func edited(_ from: String, _ to: String) throws -> Data {
            XCTAssertEqual(from.utf8.count, to.utf8.count)
            XCTAssertTrue(meta.contains(from), from)
            let m = Data(meta.replacingOccurrences(of: from, with: to).utf8)
            var d = good
            d.replaceSubrange(32..<32 + length, with: m)
            let crc = m.withUnsafeBytes { gfk_crc32c(0, $0.baseAddress, $0.count) }
            withUnsafeBytes(of: crc.littleEndian) { d.replaceSubrange(24..<28, with: $0) }
            let h = d.prefix(28).withUnsafeBytes { gfk_crc32c(0, $0.baseAddress, 28) }
            withUnsafeBytes(of: h.littleEndian) { d.replaceSubrange(28..<32, with: $0) }
            return d
        }
        let cases: [(String, String, String)] = [
            ("\"n_layer\":2", "\"n_layer\":3", "transformer.h.2.ln_1.weight missing"),
            ("\"n_embd\":64", "\"n_embd\":32", "inconsistent"),
            ("\"n_inner\":256", "\"n_inner\":128", "inconsistent with its configuration"),
            ("transformer.ln_f.bias", "transformer.ln_f.biaz", "transformer.ln_f.bias missing"),
            ("\"kind\":\"q6\"", "\"kind\":\"q4\"", "payload lengths do not match"),
            ("\"kind\":\"q6\"", "\"kind\":\"xx\"", "malformed tensor entry"),
            ("\"weights\":\"q4\"", "\"weights\":\"q5\"", "holds q5 weights"),
        ]
        for (from, to, expected) in cases {
            let bad = try edited(from, to)
            try bad.write(to: URL(fileURLWithPath: path))
            let r = try Self.load(dir, .q4, .readOnly)
            XCTAssertFalse(r.outcome.used, to)
            XCTAssertTrue(r.outcome.rejection?.contains(expected) == true, "\(to): \(String(describing: r.outcome.rejection))")
            XCTAssertEqual(try Self.logits(r.weights), reference, to)
        }
    }

    /// Payloads read on several threads (the path of large models): the same weights; damage anywhere still found.
    func testParallelRead() throws {
        let dir = try Self.copy("gptj-tiny/external-onefile", "parallel")
        let model = FileIO.join(dir, "model.onnx"), path = Self.cachePath(dir, .bf16)
        let reference = try Self.logits(try Self.load(dir, .bf16, .readWrite).weights)
        for threads in [2, 3, 7] {
            let w = try WeightCache.read(cachePath: path, modelPath: model, weightType: .bf16, threads: threads,
                                         bytesPerThread: 1)
            XCTAssertEqual(try Self.logits(w), reference, "\(threads) threads")
        }
        var d = try Data(contentsOf: URL(fileURLWithPath: path))
        d[d.count - 9] ^= 4
        try d.write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try WeightCache.read(cachePath: path, modelPath: model, weightType: .bf16, threads: 3,
                                                  bytesPerThread: 1)) { error in
            XCTAssertTrue((error as? CacheRejection)?.reason.contains("payload checksum mismatch") == true, "\(error)")
        }
    }

    /// A directory that cannot be written: the load succeeds without a cache, with a warning.
    func testUnwritableDirectoryMeansNoCache() throws {
        let dir = try Self.copy("gpt2-tiny/legacy17", "readonly")
        let reference = try Self.logits(try ONNXModelLoader.load(path: dir, weightType: .bf16, threads: 2))
        var unwritable = ["/proc"]   // not even root may create files there
        if geteuid() != 0 {
            let ro = TestFiles.tempDir("weight-cache-ro")
            chmod(ro, 0o555)
            unwritable.append(ro)
        }
        for d in unwritable {
            let log = Log()
            let r = try Self.load(dir, .bf16, .readWrite, log: log, directory: d)
            XCTAssertFalse(r.outcome.used)
            XCTAssertFalse(r.outcome.written)
            XCTAssertTrue(log.all.contains { $0.0 == .warn && $0.1.contains("no weight cache written") }, "\(log.all)")
            XCTAssertEqual(try Self.logits(r.weights), reference)
        }
    }

    /// An explicit cache directory: named after the model and its real path, used from there.
    func testCacheDirectory() throws {
        let dir = try Self.copy("gpt2-tiny/legacy17", "cachedir")
        let cacheDir = TestFiles.tempDir("weight-cache-dir")
        let r = try Self.load(dir, .int8, .readWrite, directory: cacheDir)
        XCTAssertTrue(r.outcome.written)
        let path = try XCTUnwrap(r.outcome.path)
        XCTAssertTrue(path.hasPrefix(cacheDir + "/model.onnx."))
        XCTAssertTrue(path.hasSuffix(".gfnlm-int8.cache"))
        XCTAssertFalse(FileIO.exists(Self.cachePath(dir, .int8)))
        XCTAssertTrue(try Self.load(dir, .int8, .readOnly, directory: cacheDir).outcome.used)
        // another model of the same file name gets another cache file
        let dir2 = try Self.copy("gptj-tiny/external-onefile", "cachedir")
        XCTAssertNotEqual(try WeightCache.file(modelPath: FileIO.join(dir2, "model.onnx"), weightType: .int8,
                                               directory: cacheDir), path)
    }

    /// Loads of the same model in parallel, all writing: every load correct, and the cache left valid.
    func testConcurrentLoads() throws {
        let dir = try Self.copy("gptj-tiny/external-onefile", "concurrent")
        let reference = try Self.logits(try ONNXModelLoader.load(path: dir, weightType: .int8, threads: 1))
        let n = 6
        let results = Locked<[Int: [Float]]>([:])
        let failures = Locked<[String]>([])
        DispatchQueue.concurrentPerform(iterations: n) { i in
            do {
                let r = try WeightCache.load(path: dir, weightType: .int8, threads: 1,
                                             options: WeightCacheOptions(mode: i % 3 == 2 ? .readOnly : .readWrite))
                let l = try Self.logits(r.weights)
                results.withLock { $0[i] = l }
            } catch {
                failures.withLock { $0.append("\(error)") }
            }
        }
        XCTAssertEqual(failures.withLock { $0 }, [])
        for i in 0..<n { XCTAssertEqual(results.withLock { $0[i] }, reference, "load \(i)") }
        let r = try Self.load(dir, .int8, .readOnly)
        XCTAssertTrue(r.outcome.used)
        XCTAssertEqual(try Self.logits(r.weights), reference)
        XCTAssertFalse(try FileManager.default.contentsOfDirectory(atPath: dir).contains { $0.contains(".tmp.") })
    }
}

// MARK: C ABI

extension WeightCacheTests {
    func testCABIOptionAndOlderStructSize() throws {
        let dir = try Self.copy("gpt2-tiny/legacy17", "cabi")
        var p = gfn_model_default_params()
        XCTAssertEqual(Int(p.size), MemoryLayout<gfn_model_params>.size)
        XCTAssertEqual(p.weight_cache, Int32(GFN_WEIGHT_CACHE_OFF.rawValue))
        XCTAssertNil(p.weight_cache_dir)
        var h: OpaquePointer?
        p.weight_type = Int32(GFN_WEIGHTS_INT8.rawValue)
        p.weight_cache = Int32(GFN_WEIGHT_CACHE_READ_WRITE.rawValue)
        XCTAssertEqual(dir.withCString { gfn_model_load($0, &p, &h) }, 0)
        gfn_model_free(h); h = nil
        XCTAssertTrue(FileIO.exists(Self.cachePath(dir, .int8)))
        // the previous version of the struct (32 bytes) ends before weight_cache: the garbage after it is ignored
        try FileManager.default.removeItem(atPath: Self.cachePath(dir, .int8))
        var old = p
        old.size = 32
        old.weight_cache = 77
        XCTAssertEqual(dir.withCString { gfn_model_load($0, &old, &h) }, 0)
        gfn_model_free(h); h = nil
        XCTAssertFalse(FileIO.exists(Self.cachePath(dir, .int8)))
        // an unknown mode, an empty folder
        p.weight_cache = 3
        XCTAssertEqual(dir.withCString { gfn_model_load($0, &p, &h) }, GFNStatus.invalidArgument.rawValue)
        XCTAssertTrue(String(cString: gfn_last_error()).contains("weight_cache"))
        p.weight_cache = Int32(GFN_WEIGHT_CACHE_READ_ONLY.rawValue)
        let status = "".withCString { empty in
            p.weight_cache_dir = empty
            return dir.withCString { gfn_model_load($0, &p, &h) }
        }
        XCTAssertEqual(status, GFNStatus.invalidArgument.rawValue)
        XCTAssertTrue(String(cString: gfn_last_error()).contains("weight_cache_dir"))
        XCTAssertNil(h)
    }
}
