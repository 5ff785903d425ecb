#!/usr/bin/env bash
# Builds the fuzz binaries.
#
#   fuzz/build.sh libfuzzer   build/fuzz/gfnlm_fuzz (libFuzzer + AddressSanitizer, coverage on the Swift core and
#                             the C/C++ shims) and the fuzz_<target> links to it; about 5 minutes on 2 cores
#   fuzz/build.sh replay      build/fuzz/gfnlm_fuzz_replay: the same targets without libFuzzer, linked against the
#                             debug build's objects (`swift build --build-tests` must have run); about 30 seconds
#
# Both compile fuzz/harness/FuzzTargets.swift against the GFNLM module with `@testable import` (its internal
# readers are fuzzed directly). The C++ ONNX shim is instrumented; ONNX's generated message classes
# (Sources/CONNX/onnx) are compiled uninstrumented; libprotobuf-lite is the system one.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
MODE="${1:-libfuzzer}"
SWIFT_BIN="${SWIFT_BIN:-/opt/swift/usr/bin}"
OUT="$ROOT/build/fuzz"
mkdir -p "$OUT"
LIBS=(-lprotobuf-lite -lopenblas -lstdc++ -lm)
TARGETS=(json tokenizer_files tokenize safetensors onnx peft checkpoint replay)

modulemaps() {  # $1: folder for CONNX/CKernels module maps pointing at the sources
    mkdir -p "$1/CONNX" "$1/CKernels"
    printf 'module CONNX {\n    header "%s"\n    export *\n}\n' "$ROOT/Sources/CONNX/include/connx.h" > "$1/CONNX/module.modulemap"
    printf 'module CKernels {\n    header "%s"\n    export *\n}\n' "$ROOT/Sources/CKernels/include/ckernels.h" > "$1/CKernels/module.modulemap"
}

case "$MODE" in
libfuzzer)
    OBJ="$OUT/obj"
    mkdir -p "$OBJ"
    modulemaps "$OBJ/maps"
    SAN=(-fsanitize=address,fuzzer-no-link)
    "$SWIFT_BIN/clang++" -O1 -g "${SAN[@]}" -fPIC -std=c++17 -I"$ROOT/Sources/CONNX" \
        -I"$ROOT/Sources/CONNX/include" -c "$ROOT/Sources/CONNX/connx.cpp" -o "$OBJ/connx.o"
    "$SWIFT_BIN/clang++" -O1 -g "${SAN[@]}" -fPIC -std=c++17 -I"$ROOT/Sources/CONNX" \
        -I"$ROOT/Sources/CONNX/include" -c "$ROOT/Sources/CONNX/wire.cpp" -o "$OBJ/wire.o"
    "$SWIFT_BIN/clang++" -O1 -fPIC -std=c++17 -I"$ROOT/Sources/CONNX" \
        -c "$ROOT/Sources/CONNX/onnx/onnx.pb.cc" -o "$OBJ/onnx.pb.o"
    "$SWIFT_BIN/clang" -O2 -g -march=x86-64-v3 "${SAN[@]}" -I"$ROOT/Sources/CKernels/include" \
        -c "$ROOT/Sources/CKernels/ckernels.c" -o "$OBJ/ckernels.o"
    mapfile -t SOURCES < <(find "$ROOT/Sources/GFNLM" -name '*.swift' | sort)
    # The core as one module with testing enabled (internal readers visible to the harness).
    (cd "$OBJ" && "$SWIFT_BIN/swiftc" -O -g -sanitize=address -sanitize=fuzzer -parse-as-library -enable-testing \
        -module-name GFNLM -emit-module -emit-module-path "$OBJ/GFNLM.swiftmodule" -wmo \
        -Xcc -march=x86-64-v3 -I "$OBJ/maps/CONNX" -I "$OBJ/maps/CKernels" -I "$ROOT/Sources/COpenBLAS" \
        -c "${SOURCES[@]}" -o "$OBJ/GFNLM.o")
    "$SWIFT_BIN/swiftc" -O -g -sanitize=address -sanitize=fuzzer -parse-as-library -module-name GFNLMFuzz \
        -Xcc -march=x86-64-v3 -I "$OBJ" -I "$OBJ/maps/CONNX" -I "$OBJ/maps/CKernels" -I "$ROOT/Sources/COpenBLAS" \
        "$ROOT/fuzz/harness/FuzzTargets.swift" "$ROOT/fuzz/harness/FuzzSeeds.swift" "$ROOT/fuzz/harness/LibFuzzerMain.swift" \
        "$OBJ/GFNLM.o" "$OBJ/connx.o" "$OBJ/wire.o" "$OBJ/onnx.pb.o" "$OBJ/ckernels.o" "${LIBS[@]}" -use-ld=lld -o "$OUT/gfnlm_fuzz"
    for t in "${TARGETS[@]}"; do ln -sf gfnlm_fuzz "$OUT/fuzz_$t"; done
    echo "built $OUT/gfnlm_fuzz (targets: ${TARGETS[*]})"
    ;;
replay)
    DBG="$ROOT/.build/debug"
    [ -d "$DBG/Modules" ] || { echo "no debug build in $DBG: run 'swift build --build-tests' first" >&2; exit 1; }
    OBJ="$OUT/replay-obj"
    mkdir -p "$OBJ"
    modulemaps "$OBJ/maps"
    mapfile -t OBJS < <(find "$DBG/GFNLM.build" "$DBG/CONNX.build" "$DBG/CKernels.build" -name '*.o' | sort)
    "$SWIFT_BIN/swiftc" -Onone -g -module-name GFNLMFuzzReplay -I "$DBG/Modules" \
        -I "$OBJ/maps/CONNX" -I "$OBJ/maps/CKernels" -I "$ROOT/Sources/COpenBLAS" \
        "$ROOT/fuzz/harness/FuzzTargets.swift" "$ROOT/fuzz/harness/FuzzSeeds.swift" "$ROOT/fuzz/harness/ReplayMain.swift" \
        "${OBJS[@]}" "${LIBS[@]}" -o "$OUT/gfnlm_fuzz_replay"
    echo "built $OUT/gfnlm_fuzz_replay"
    ;;
*)
    echo "usage: fuzz/build.sh libfuzzer|replay" >&2
    exit 2
    ;;
esac
