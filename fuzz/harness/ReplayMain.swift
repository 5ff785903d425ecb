// Replays inputs through the fuzz targets without libFuzzer (`make fuzz-smoke`), and writes the seeds that are
// made with gfnlm itself (`--make-seeds`).
//
//   gfnlm_fuzz_replay TARGET FILE|DIR...     every file (recursively) once; exit 0 when none trapped
//   gfnlm_fuzz_replay --make-seeds DIR      writes DIR/<target>/* seeds
@testable import GFNLM
#if canImport(Glibc)
import Glibc
#endif

@main
struct ReplayMain {
    static func main() {
        let args = Array(CommandLine.arguments.dropFirst())
        if args.first == "--make-seeds", args.count == 2 {
            FuzzSeeds.make(into: args[1])
            return
        }
        guard args.count >= 2, FuzzTargets.names.contains(args[0]) else {
            fputs("usage: gfnlm_fuzz_replay TARGET FILE|DIR... | --make-seeds DIR\n"
                  + "targets: \(FuzzTargets.names.joined(separator: ", "))\n", stderr)
            exit(2)
        }
        let seconds = getenv("GFNLM_FUZZ_REPLAY_TIMEOUT").flatMap { UInt32(String(cString: $0)) } ?? 60
        var files: [String] = []
        for a in args.dropFirst() { collect(a, into: &files) }
        files.sort()
        let verbose = getenv("GFNLM_FUZZ_VERBOSE") != nil
        for f in files {
            guard let data = try? FileIO.read(f) else { fputs("cannot read \(f)\n", stderr); exit(1) }
            if verbose { fputs("\(args[0]): \(f)\n", stderr) }
            // a hang fails the replay: SIGALRM's default action ends the process
            alarm(seconds)
            FuzzTargets.run(args[0], data)
            alarm(0)
        }
        print("\(args[0]): replayed \(files.count) inputs")
    }

    static func collect(_ path: String, into files: inout [String]) {
        var st = stat()
        guard stat(path, &st) == 0 else { return }
        if (st.st_mode & S_IFMT) != S_IFDIR {
            files.append(path)
            return
        }
        guard let d = opendir(path) else { return }
        var names: [String] = []
        while let e = readdir(d) {
            let n = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if n != "." && n != ".." && !n.hasPrefix(".") { names.append(n) }
        }
        closedir(d)
        for n in names { collect(path + "/" + n, into: &files) }
    }
}
