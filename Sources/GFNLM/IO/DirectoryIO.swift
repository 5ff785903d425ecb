import Synchronization

/// Writing a directory of files as one atomic unit: everything goes into a temporary sibling directory which
/// replaces the destination at the end, so a crash leaves either the old directory or the new one, never a
/// half-written mix — and never no directory: an existing destination is swapped with the new one in one step
/// (renameat2 RENAME_EXCHANGE); only where the file system cannot exchange is it moved aside first.
/// Temporaries of processes that died while writing (`<name>.tmp.<pid>.<n>`, `<name>.old.<pid>.<n>`) are removed
/// by the next write.
enum AtomicDirectory {
    /// Distinguishes concurrent writes of one process.
    private static let counter = Atomic<Int>(0)

    private typealias RenameAt2 = @convention(c) (Int32, UnsafePointer<CChar>?, Int32, UnsafePointer<CChar>?, UInt32) -> Int32
    /// glibc's renameat2 (not visible to Swift without _GNU_SOURCE), looked up once.
    private static let renameat2: RenameAt2? = {
        guard let sym = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "renameat2") else { return nil }
        return unsafeBitCast(sym, to: RenameAt2.self)
    }()

    /// Atomically exchanges two existing paths; false when the system or file system cannot (the caller falls back).
    static func exchange(_ a: String, _ b: String) -> Bool {
        guard let f = renameat2 else { return false }
        let atFDCWD: Int32 = -100, renameExchange: UInt32 = 1 << 1
        return f(atFDCWD, a, atFDCWD, b, renameExchange) == 0
    }

    /// Writes `files` (name → bytes; names without "/") into `path` atomically, replacing what was there.
    static func write(_ path: String, files: [(String, [UInt8])]) throws(GFNError) {
        guard !path.isEmpty else { throw .invalidArgument("empty directory path") }
        var p = path
        while p.count > 1 && p.hasSuffix("/") { p.removeLast() }
        let parent = FileIO.dirname(of: p)
        try FileIO.makeDirectories(parent)
        if FileIO.exists(p) && !FileIO.isDirectory(p) { throw .io("\(p) exists and is not a directory") }
        removeStaleTemporaries(of: p)
        let tag = "\(getpid()).\(counter.add(1, ordering: .relaxed).newValue)"
        let tmp = p + ".tmp." + tag
        if FileIO.exists(tmp) { try removeTree(tmp) }
        guard mkdir(tmp, 0o755) == 0 else { throw .io("cannot create directory \(tmp): \(FileIO.errnoString())") }
        var superseded: String?   // where the previous checkpoint ends up, removed once the new one is durable
        do throws(GFNError) {
            for (name, bytes) in files {
                guard !name.isEmpty, !name.contains("/"), name != ".", name != ".." else {
                    throw GFNError.invalidArgument("bad file name \"\(name)\" in a checkpoint directory")
                }
                try writeFile(FileIO.join(tmp, name), bytes)
            }
            try syncDirectory(tmp)
            if FileIO.exists(p) && exchange(tmp, p) {
                superseded = tmp   // p is the new checkpoint now, tmp the old one
            } else if FileIO.exists(p) {
                let old = p + ".old." + tag
                if FileIO.exists(old) { try removeTree(old) }
                guard rename(p, old) == 0 else { throw GFNError.io("cannot move \(p) aside: \(FileIO.errnoString())") }
                guard rename(tmp, p) == 0 else {
                    let e = FileIO.errnoString()
                    _ = rename(old, p)
                    throw GFNError.io("cannot rename \(tmp) to \(p): \(e)")
                }
                superseded = old
            } else {
                guard rename(tmp, p) == 0 else { throw GFNError.io("cannot rename \(tmp) to \(p): \(FileIO.errnoString())") }
            }
            // the rename is durable only once the parent directory is synced: a failure is reported (the new
            // checkpoint is in place, but may not survive a power loss); the old one is removed only after it
            try syncDirectory(parent)
            if let superseded { try? removeTree(superseded) }
        } catch {
            try? removeTree(tmp)
            if let superseded, superseded != tmp { try? removeTree(superseded) }
            throw error
        }
    }

    /// Writes and fsyncs one file (no rename: the enclosing directory is what is renamed).
    static func writeFile(_ path: String, _ bytes: [UInt8]) throws(GFNError) {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw .io("cannot create \(path): \(FileIO.errnoString())") }
        defer { close(fd) }
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes { buf -> Int in
                guard let base = buf.baseAddress else { return 0 }
                return Glibc.write(fd, base + done, bytes.count - done)
            }
            if n < 0 {
                if errno == EINTR { continue }
                throw .io("cannot write \(path): \(FileIO.errnoString())")
            }
            done += n
        }
        var rc = fsync(fd)
        while rc != 0 && errno == EINTR { rc = fsync(fd) }
        guard rc == 0 else { throw .io("cannot sync \(path): \(FileIO.errnoString())") }
    }

    /// Removes `<path>.tmp.<pid>.<n>` / `<path>.old.<pid>.<n>` siblings (also the older `<path>.tmp.<pid>`) left by
    /// processes that no longer run. Best effort: errors are ignored.
    static func removeStaleTemporaries(of path: String) {
        let parent = FileIO.dirname(of: path), base = FileIO.basename(of: path)
        guard let d = opendir(parent) else { return }
        var stale: [String] = []
        while let e = readdir(d) {
            let name = FileIO.entryName(e)
            for kind in [".tmp.", ".old."] where name.hasPrefix(base + kind) {
                let rest = name.dropFirst(base.count + kind.count)
                guard let pid = Int32(rest.prefix { $0 != "." }), pid > 0, pid != getpid() else { continue }
                if kill(pid, 0) != 0 && errno == ESRCH { stale.append(name) }
            }
        }
        closedir(d)
        for name in stale { try? removeTree(FileIO.join(parent, name)) }
    }

    /// fsyncs a directory (its entries: created, renamed files). File systems that cannot sync a directory
    /// (EINVAL, ENOTSUP) are accepted; any other failure is an error.
    static func syncDirectory(_ path: String) throws(GFNError) {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw .io("cannot open directory \(path): \(FileIO.errnoString())") }
        defer { close(fd) }
        var rc = fsync(fd)
        while rc != 0 && errno == EINTR { rc = fsync(fd) }
        guard rc == 0 || errno == EINVAL || errno == ENOTSUP else {
            throw .io("cannot sync directory \(path): \(FileIO.errnoString())")
        }
    }

    /// Removes a file or a directory tree (like `rm -r`, without following symbolic links).
    static func removeTree(_ path: String) throws(GFNError) {
        var st = stat()
        guard lstat(path, &st) == 0 else { return }
        if (st.st_mode & S_IFMT) == S_IFDIR {
            guard let d = opendir(path) else { throw .io("cannot open directory \(path): \(FileIO.errnoString())") }
            var names: [String] = []
            while let e = readdir(d) {
                let name = FileIO.entryName(e)
                if name != "." && name != ".." { names.append(name) }
            }
            closedir(d)
            for n in names { try removeTree(FileIO.join(path, n)) }
            guard rmdir(path) == 0 else { throw .io("cannot remove directory \(path): \(FileIO.errnoString())") }
        } else {
            guard unlink(path) == 0 else { throw .io("cannot remove \(path): \(FileIO.errnoString())") }
        }
    }
}

extension JSONValue {
    /// A Float as JSON the way Python would print the same decimal: 0.1 (not 0.10000000149011612); integral
    /// values as integers (PEFT writes `"lora_alpha": 16`).
    static func shortFloat(_ v: Float) -> JSONValue {
        if v.isFinite && v == v.rounded() && abs(v) < 1e15 { return .int(Int64(v)) }
        return .double(Double("\(v)") ?? Double(v))
    }
}
