#!/usr/bin/env bash
# `make install` into a temporary prefix, then use it as a C host would: build examples/c/generate.c with nothing but
# `pkg-config --cflags --libs gfnlm` and run it; configure and build a five-line CMake project that uses
# find_package(gfnlm) and run that; a DESTDIR (staged) install keeps the final paths; `make uninstall` removes every
# file. Needs the release library (make lib), pkg-config and cmake.
#
#   Tests/Install/test_install.sh
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
MODEL="$ROOT/Tests/Fixtures/gpt2-realvocab/legacy17"
TOKENIZER="$ROOT/Tests/Fixtures/tokenizer"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
PREFIX="$TMP/prefix"
fail() { echo "FAIL: $*" >&2; exit 1; }
version="$(sed -n 's/^#define GFN_VERSION_STRING "\(.*\)"/\1/p' "$ROOT/include/gfnlm.h")"
abi="$(sed -n 's/^#define GFN_ABI_VERSION \([0-9]*\).*/\1/p' "$ROOT/include/gfnlm.h")"

echo "== make install PREFIX=$PREFIX"
make -s -C "$ROOT" install PREFIX="$PREFIX" >/dev/null
lib="$PREFIX/lib"
[ -f "$lib/libgfnlm.so.$version" ] && [ ! -L "$lib/libgfnlm.so.$version" ] || fail "no $lib/libgfnlm.so.$version"
[ "$(readlink "$lib/libgfnlm.so.$abi")" = "libgfnlm.so.$version" ] || fail "libgfnlm.so.$abi link"
[ "$(readlink "$lib/libgfnlm.so")" = "libgfnlm.so.$abi" ] || fail "libgfnlm.so link"
readelf -d "$lib/libgfnlm.so.$version" | grep "Library soname: \[libgfnlm.so.$abi\]" >/dev/null || fail "soname"
cmp -s "$ROOT/include/gfnlm.h" "$PREFIX/include/gfnlm.h" || fail "header"
for f in lib/pkgconfig/gfnlm.pc lib/cmake/gfnlm/gfnlmConfig.cmake lib/cmake/gfnlm/gfnlmConfigVersion.cmake; do
    [ -f "$PREFIX/$f" ] || fail "no $f"
done

echo "== pkg-config: build examples/c/generate.c"
export PKG_CONFIG_PATH="$lib/pkgconfig"
[ "$(pkg-config --modversion gfnlm)" = "$version" ] || fail "pkg-config --modversion: $(pkg-config --modversion gfnlm)"
flags="$(pkg-config --cflags --libs gfnlm)"
echo "pkg-config --cflags --libs gfnlm: $flags"
gcc -std=c11 -Wall -Wextra -Werror "$ROOT/examples/c/generate.c" $flags -o "$TMP/generate"
readelf -d "$TMP/generate" | grep "Shared library: \[libgfnlm.so.$abi\]" >/dev/null || fail "generate does not need libgfnlm.so.$abi"
# a library in a non-system prefix is found through LD_LIBRARY_PATH, as for any library installed there
LD_LIBRARY_PATH="$lib" ldd "$TMP/generate" | grep "libgfnlm.so.$abi => $lib/" >/dev/null || fail "ldd: not the installed library"
LD_LIBRARY_PATH="$lib" "$TMP/generate" "$MODEL" "Hello world" "$TOKENIZER" > "$TMP/generate.out"
cat "$TMP/generate.out"
[ -s "$TMP/generate.out" ] || fail "generate printed nothing"

echo "== CMake: find_package(gfnlm)"
mkdir -p "$TMP/cmake-project"
cp "$ROOT/examples/c/generate.c" "$TMP/cmake-project/"
cat > "$TMP/cmake-project/CMakeLists.txt" <<CMAKE
cmake_minimum_required(VERSION 3.16)
project(consumer C)
find_package(gfnlm $version REQUIRED)
add_executable(generate generate.c)
target_link_libraries(generate PRIVATE gfnlm::gfnlm)
CMAKE
cmake -S "$TMP/cmake-project" -B "$TMP/cmake-build" -DCMAKE_PREFIX_PATH="$PREFIX" > "$TMP/cmake.log" \
    || { cat "$TMP/cmake.log"; fail "cmake configure"; }
cmake --build "$TMP/cmake-build" > "$TMP/cmake-build.log" || { cat "$TMP/cmake-build.log"; fail "cmake build"; }
# CMake's build-tree RUNPATH points at the imported library's directory: no LD_LIBRARY_PATH needed
ldd "$TMP/cmake-build/generate" | grep "libgfnlm.so.$abi => $lib/" >/dev/null || fail "CMake build: not the installed library"
"$TMP/cmake-build/generate" "$MODEL" "Hello world" "$TOKENIZER" > "$TMP/cmake.out"
cmp -s "$TMP/generate.out" "$TMP/cmake.out" || fail "the CMake-built example printed something else"
# a version the package does not satisfy is refused
sed -i "s/find_package(gfnlm $version REQUIRED)/find_package(gfnlm 99.0 REQUIRED)/" "$TMP/cmake-project/CMakeLists.txt"
if cmake -S "$TMP/cmake-project" -B "$TMP/cmake-build2" -DCMAKE_PREFIX_PATH="$PREFIX" > "$TMP/cmake2.log" 2>&1; then
    fail "find_package(gfnlm 99.0) succeeded"
fi

echo "== pip install bindings/python: the bindings alone find the installed library through pkg-config"
python3 -m venv "$TMP/venv"
"$TMP/venv/bin/pip" install --quiet --disable-pip-version-check "$ROOT/bindings/python"
rm -rf "$ROOT/bindings/python/build"
(cd "$TMP" && env -u GFNLM_LIBRARY -u PYTHONPATH -u LD_LIBRARY_PATH "$TMP/venv/bin/python" -c '
import os, sys, gfnlm
assert gfnlm.library_path == sys.argv[1], gfnlm.library_path
assert not os.path.exists(os.path.join(os.path.dirname(gfnlm.__file__), "libgfnlm.so"))
m = gfnlm.Model.load(sys.argv[2], tokenizer=sys.argv[3])
print("bindings alone:", gfnlm.__version__, gfnlm.library_path, m)' "$lib/libgfnlm.so.$abi" "$MODEL" "$TOKENIZER")
# without pkg-config's help and with nothing installed where the loader looks, the error names every place tried
if out="$(cd "$TMP" && env -u GFNLM_LIBRARY -u PYTHONPATH -u LD_LIBRARY_PATH PKG_CONFIG_PATH= \
          "$TMP/venv/bin/python" -c 'import gfnlm' 2>&1)"; then
    if ! ldconfig -p | grep "libgfnlm.so.$abi " >/dev/null; then fail "import gfnlm succeeded with no library to find"; fi
else
    grep "cannot load libgfnlm" <<< "$out" >/dev/null && grep "inside the package" <<< "$out" >/dev/null \
        && grep "libgfnlm.so.$abi (installed" <<< "$out" >/dev/null || { echo "$out"; fail "the ImportError"; }
fi

echo "== make uninstall"
make -s -C "$ROOT" uninstall PREFIX="$PREFIX" >/dev/null
left="$(find "$PREFIX" -type f -o -type l)"
[ -z "$left" ] || fail "left after uninstall: $left"

echo "== DESTDIR staging"
make -s -C "$ROOT" install DESTDIR="$TMP/stage" PREFIX=/opt/gfnlm >/dev/null
[ -f "$TMP/stage/opt/gfnlm/lib/libgfnlm.so.$version" ] || fail "DESTDIR install"
grep -qx "prefix=/opt/gfnlm" "$TMP/stage/opt/gfnlm/lib/pkgconfig/gfnlm.pc" || fail "gfnlm.pc prefix under DESTDIR"
grep -q '"/opt/gfnlm/lib/libgfnlm.so.'"$version"'"' "$TMP/stage/opt/gfnlm/lib/cmake/gfnlm/gfnlmConfig.cmake" \
    || fail "gfnlmConfig.cmake path under DESTDIR"
make -s -C "$ROOT" uninstall DESTDIR="$TMP/stage" PREFIX=/opt/gfnlm >/dev/null
[ -z "$(find "$TMP/stage" -type f -o -type l)" ] || fail "DESTDIR uninstall left files"
echo "install test passed"
