#!/usr/bin/env bash
# The release library's run-time dependencies: libopenblas and the C/C++ runtime only (ONNX's message classes and
# protobuf-lite are linked in, the Swift runtime too), its soname libgfnlm.so.<GFN_ABI_VERSION>, and only gfn_*
# functions exported.
#
#   Tests/Install/test_needed.sh [LIBRARY]   (default build/libgfnlm.so)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
LIB="${1:-$ROOT/build/libgfnlm.so}"
abi="$(sed -n 's/^#define GFN_ABI_VERSION \([0-9]*\).*/\1/p' "$ROOT/include/gfnlm.h")"
ALLOWED="libopenblas.so.0 libc.so.6 libm.so.6 libstdc++.so.6 libgcc_s.so.1 ld-linux-x86-64.so.2"
needed="$(readelf -d "$LIB" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')"
echo "NEEDED: $(echo $needed)"
bad=""
for n in $needed; do
    case " $ALLOWED " in *" $n "*) ;; *) bad="$bad $n" ;; esac
done
[ -z "$bad" ] || { echo "FAIL: unexpected run-time dependencies:$bad (allowed: $ALLOWED)"; exit 1; }
echo "$needed" | grep -qx "libopenblas.so.0" || { echo "FAIL: libopenblas.so.0 not in NEEDED"; exit 1; }
soname="$(readelf -d "$LIB" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')"
[ "$soname" = "libgfnlm.so.$abi" ] || { echo "FAIL: soname '$soname', expected libgfnlm.so.$abi"; exit 1; }
# exported (global) symbols: gfn_* only (no protobuf, ONNX or Swift symbols leak out of the library)
leaked="$(nm -D --defined-only "$LIB" | awk '$2 ~ /^[TWDBVRiu]$/ && $3 !~ /^gfn_/ {print $3}' | head -5)"
[ -z "$leaked" ] || { echo "FAIL: symbols other than gfn_* exported: $leaked"; exit 1; }
echo "NEEDED list, soname and exports: ok"
