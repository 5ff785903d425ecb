// libFuzzer entry points. One binary serves every target: the target is the binary's name without "fuzz_"
// (fuzz/build.sh makes fuzz_<target> symlinks) or $GFNLM_FUZZ_TARGET.
#if canImport(Glibc)
import Glibc
#endif

nonisolated(unsafe) var selectedTarget = ""

@_cdecl("LLVMFuzzerInitialize")
public func fuzzerInitialize(_ argc: UnsafeMutablePointer<Int32>?,
                             _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>?) -> Int32 {
    if let e = getenv("GFNLM_FUZZ_TARGET") {
        selectedTarget = String(cString: e)
    } else if let argv, let a = argv.pointee, let a0 = a[0] {
        var name = String(cString: a0)
        if let slash = name.lastIndex(of: "/") { name = String(name[name.index(after: slash)...]) }
        if name.hasPrefix("fuzz_") { name.removeFirst(5) }
        selectedTarget = name
    }
    guard FuzzTargets.names.contains(selectedTarget) else {
        fputs("unknown fuzz target '\(selectedTarget)'; targets: \(FuzzTargets.names.joined(separator: ", "))\n", stderr)
        exit(2)
    }
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = size == 0 ? [] : Array(UnsafeBufferPointer(start: data, count: size))
    FuzzTargets.run(selectedTarget, bytes)
    return 0
}
