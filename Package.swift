// swift-tools-version: 6.0
// gfnlm: GFlowNet fine-tuning and amortized sampling for GPT-2 / GPT-J ONNX exports, as a C-ABI library.
import PackageDescription
import Foundation

// protobuf-lite (the runtime of ONNX's message classes compiled into CONNX): the shared system library by default;
// the release build (`make lib`) sets GFNLM_PROTOBUF_LITE_ARCHIVE to a position-independent static archive built
// from Debian's protobuf source (Debian's own libprotobuf-lite.a is not PIC: local-exec TLS in arena.o), so the
// shipped library needs no libprotobuf at run time.
let protobufLinking: [LinkerSetting] = {
    if let archive = ProcessInfo.processInfo.environment["GFNLM_PROTOBUF_LITE_ARCHIVE"], !archive.isEmpty {
        return [.unsafeFlags(["-Xlinker", archive])]
    }
    return [.linkedLibrary("protobuf-lite")]
}()

// x86-64-v3 (AVX2 + FMA) is the code-generation baseline: Swift's SIMD FMA/rounding become libm calls below it
// (measured with Swift 6.x on x86-64). Wider kernels (AVX-512, AVX512-BF16) are chosen at run time in CKernels.
let simdFlags: [SwiftSetting] = [.unsafeFlags(["-Xcc", "-march=x86-64-v3"])]

let package = Package(
    name: "gfnlm",
    products: [
        .library(name: "gfnlm", type: .dynamic, targets: ["GFNLMC"]),
    ],
    targets: [
        .systemLibrary(name: "COpenBLAS", path: "Sources/COpenBLAS",
                       pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        .target(name: "CONNX",
                cxxSettings: [.headerSearchPath("."),
                              .unsafeFlags(["-fvisibility=hidden", "-fvisibility-inlines-hidden"])],
                linkerSettings: protobufLinking),
        .target(name: "CKernels",
                cSettings: [.unsafeFlags(["-O3", "-fvisibility=hidden", "-march=x86-64-v3"])],
                linkerSettings: [.linkedLibrary("m")]),
        // The core is optimised in debug builds too: the test suite trains real (tiny) models.
        .target(name: "GFNLM", dependencies: ["COpenBLAS", "CONNX", "CKernels"],
                swiftSettings: simdFlags + [.unsafeFlags(["-O"], .when(configuration: .debug))],
                linkerSettings: [.linkedLibrary("m")]),
        // The public header include/gfnlm.h, imported into Swift: the exports implement its declarations
        // (`@c @implementation`), so the compiler refuses a signature that drifts from the header.
        .target(name: "CGFNLM"),
        .target(name: "GFNLMC", dependencies: ["GFNLM", "CGFNLM"],
                swiftSettings: simdFlags,
                // the soname (libgfnlm.so.<GFN_ABI_VERSION>) is set by `make lib` from include/gfnlm.h
                linkerSettings: [.unsafeFlags(["-Xlinker", "-z", "-Xlinker", "nodelete"])]),
        .testTarget(name: "GFNLMTests", dependencies: ["GFNLM", "GFNLMC"], swiftSettings: simdFlags),
    ],
    cxxLanguageStandard: .cxx17
)
