#if canImport(Glibc)
import Glibc
#endif

/// Writing a directory of files as one atomic unit: everything goes into a temporary sibling directory which
/// is renamed over the destination at the end, so a crash leaves either the old directory or the new one,
/// never a half-written mix.
enum AtomicDirectory {
    /// Writes `files` (name → bytes; names without "/") into `path` atomically, replacing what was there.
    static func write(_ path: String, files: [(String, [UInt8])]) throws(GFNError) {
        guard !path.isEmpty else { throw .invalidArgument("empty directory path") }
        var p = path
        while p.count > 1 && p.hasSuffix("/") { p.removeLast() }
        let parent = FileIO.dirname(of: p)
        try FileIO.makeDirectories(parent)
        if FileIO.exists(p) && !FileIO.isDirectory(p) { throw .io("\(p) exists and is not a directory") }
        let tmp = p + ".tmp.\(getpid())"
        if FileIO.exists(tmp) { try removeTree(tmp) }
        guard mkdir(tmp, 0o755) == 0 else { throw .io("cannot create directory \(tmp): \(FileIO.errnoString())") }
        do throws(GFNError) {
            for (name, bytes) in files {
                guard !name.isEmpty, !name.contains("/"), name != ".", name != ".." else {
                    throw GFNError.invalidArgument("bad file name \"\(name)\" in a checkpoint directory")
                }
                try writeFile(FileIO.join(tmp, name), bytes)
            }
            try syncDirectory(tmp)
            if FileIO.exists(p) {
                let old = p + ".old.\(getpid())"
                if FileIO.exists(old) { try removeTree(old) }
                guard rename(p, old) == 0 else { throw GFNError.io("cannot move \(p) aside: \(FileIO.errnoString())") }
                guard rename(tmp, p) == 0 else {
                    let e = FileIO.errnoString()
                    _ = rename(old, p)
                    throw GFNError.io("cannot rename \(tmp) to \(p): \(e)")
                }
                try? removeTree(old)
            } else {
                guard rename(tmp, p) == 0 else { throw GFNError.io("cannot rename \(tmp) to \(p): \(FileIO.errnoString())") }
            }
            try? syncDirectory(parent)
        } catch {
            try? removeTree(tmp)
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
        guard fsync(fd) == 0 else { throw .io("cannot sync \(path): \(FileIO.errnoString())") }
    }

    static func syncDirectory(_ path: String) throws(GFNError) {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw .io("cannot open directory \(path): \(FileIO.errnoString())") }
        defer { close(fd) }
        _ = fsync(fd)
    }

    /// Removes a file or a directory tree (like `rm -r`, without following symbolic links).
    static func removeTree(_ path: String) throws(GFNError) {
        var st = stat()
        guard lstat(path, &st) == 0 else { return }
        if (st.st_mode & S_IFMT) == S_IFDIR {
            guard let d = opendir(path) else { throw .io("cannot open directory \(path): \(FileIO.errnoString())") }
            var names: [String] = []
            while let e = readdir(d) {
                let name = withUnsafePointer(to: e.pointee.d_name) { p in
                    p.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
                }
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
