// The platform C library (libm, POSIX threads, files, mmap), imported once for the whole module: every other file
// of GFNLM sees it through this re-export instead of repeating its own conditional import. Only Linux is built and
// tested; the other branches name the module a port would need.
#if canImport(Glibc)
@_exported import Glibc
#elseif canImport(Musl)
@_exported import Musl
#elseif canImport(Darwin)
@_exported import Darwin
#else
#error("gfnlm needs a C library with libm and POSIX threads")
#endif
