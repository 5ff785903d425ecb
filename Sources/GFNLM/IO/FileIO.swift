/// Small file helpers over POSIX calls (gfnlm does not use Foundation).
public enum FileIO {
    /// Reads a whole file. Throws `.io` if it cannot be opened or read, `.outOfMemory` beyond `limit` bytes.
    public static func read(_ path: String, limit: Int = 1 << 34) throws(GFNError) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .io("cannot open \(path): \(errnoString())") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw .io("cannot stat \(path): \(errnoString())") }
        if (st.st_mode & S_IFMT) == S_IFDIR { throw .io("\(path) is a directory, not a file") }
        let size = Int(st.st_size)
        guard size <= limit else { throw GFNError(.outOfMemory, "\(path) is \(size) bytes, over the limit of \(limit)") }
        var out = [UInt8](repeating: 0, count: size)
        var done = 0
        while done < size {
            let n = out.withUnsafeMutableBytes { buf in Glibc.read(fd, buf.baseAddress! + done, size - done) }
            if n < 0 {
                if errno == EINTR { continue }
                throw .io("cannot read \(path): \(errnoString())")
            }
            if n == 0 { break }
            done += n
        }
        if done < size { out.removeLast(size - done) }
        return out
    }

    /// Reads a whole file as UTF-8 text.
    public static func readText(_ path: String, limit: Int = 1 << 31) throws(GFNError) -> String {
        let bytes = try read(path, limit: limit)
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Writes `bytes` to `path` atomically: a temporary file in the same directory, fsync, rename.
    public static func writeAtomically(_ path: String, _ bytes: [UInt8]) throws(GFNError) {
        let tmp = path + ".tmp.\(getpid())"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw .io("cannot create \(tmp): \(errnoString())") }
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes { buf in Glibc.write(fd, buf.baseAddress! + done, bytes.count - done) }
            if n < 0 {
                if errno == EINTR { continue }
                let e = errnoString()
                close(fd); unlink(tmp)
                throw .io("cannot write \(tmp): \(e)")
            }
            done += n
        }
        if fsync(fd) != 0 {
            let e = errnoString()
            close(fd); unlink(tmp)
            throw .io("cannot sync \(tmp): \(e)")
        }
        close(fd)
        guard rename(tmp, path) == 0 else {
            let e = errnoString()
            unlink(tmp)
            throw .io("cannot rename \(tmp) to \(path): \(e)")
        }
    }

    public static func exists(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0
    }

    public static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    /// Creates a directory and its parents (like `mkdir -p`).
    public static func makeDirectories(_ path: String) throws(GFNError) {
        if isDirectory(path) { return }
        let parent = dirname(of: path)
        if parent != path && !parent.isEmpty && !isDirectory(parent) { try makeDirectories(parent) }
        if mkdir(path, 0o755) != 0 && errno != EEXIST { throw .io("cannot create directory \(path): \(errnoString())") }
    }

    /// The directory part of a path ("." when there is none).
    public static func dirname(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        if slash == path.startIndex { return "/" }
        return String(path[..<slash])
    }

    /// The last component of a path.
    public static func basename(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return path }
        return String(path[path.index(after: slash)...])
    }

    public static func join(_ a: String, _ b: String) -> String {
        if a.isEmpty { return b }
        return a.hasSuffix("/") ? a + b : a + "/" + b
    }

    static func errnoString() -> String { String(cString: strerror(errno)) }

    /// The name of a `readdir` entry, read in place up to its NUL. (Copying `d_name` whole would read past the end
    /// of a short record: the entry is only `d_reclen` bytes, not the 256 that `d_name` declares.)
    static func entryName(_ e: UnsafeMutablePointer<dirent>) -> String {
        withUnsafeMutablePointer(to: &e.pointee.d_name) { p in
            String(cString: UnsafeMutableRawPointer(p).assumingMemoryBound(to: CChar.self))
        }
    }
}

/// A read-only memory map of a whole file, unmapped when the object dies.
public final class MappedFile: @unchecked Sendable {
    public let path: String
    public let base: UnsafeRawPointer?
    public let size: Int

    public init(path: String) throws(GFNError) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .io("cannot open \(path): \(FileIO.errnoString())") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw .io("cannot stat \(path): \(FileIO.errnoString())") }
        if (st.st_mode & S_IFMT) == S_IFDIR { throw .io("\(path) is a directory, not a file") }
        self.path = path
        self.size = Int(st.st_size)
        if size == 0 {
            base = nil
            return
        }
        let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0)
        guard let p, p != MAP_FAILED else { throw .io("cannot map \(path): \(FileIO.errnoString())") }
        base = UnsafeRawPointer(p)
    }

    deinit {
        if let base { munmap(UnsafeMutableRawPointer(mutating: base), size) }
    }

    /// The mapped bytes (empty for an empty file).
    public var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: size) }
}
