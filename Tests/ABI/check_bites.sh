#!/usr/bin/env bash
# Proves that the compiler checks the C exports against include/gfnlm.h: Sources/GFNLMC implements the header's
# declarations with `@c @implementation`, so an export whose Swift signature drifts from the header must fail to
# compile. Each case below is a small file type-checked against the real header (seconds, no build of the library):
# the first matches the header and must compile (so a failure below is the mismatch, not the set-up); every other
# one drifts in one way and must be refused with the compiler's mismatch diagnostic.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
SWIFTC="${SWIFTC:-swiftc}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cat > "$WORK/module.modulemap" <<MAP
module GFNLMHeader { header "$ROOT/include/gfnlm.h" export * }
MAP

# compile NAME EXPECT(ok|fail) PATTERN BODY
failures=0
compile() {
    local name="$1" expect="$2" pattern="$3" body="$4"
    printf 'import GFNLMHeader\n%s\n' "$body" > "$WORK/$name.swift"
    if "$SWIFTC" -typecheck -I "$WORK" "$WORK/$name.swift" > "$WORK/$name.log" 2>&1; then
        if [ "$expect" = ok ]; then echo "ok   $name: compiles"; return; fi
        echo "FAIL $name: a mismatched declaration compiled"; failures=$((failures + 1))
    else
        if [ "$expect" = fail ] && grep -q "$pattern" "$WORK/$name.log"; then
            echo "ok   $name: refused ($(grep -m1 -o 'error: .*' "$WORK/$name.log" | cut -c1-110))"; return
        fi
        echo "FAIL $name:"; cat "$WORK/$name.log"; failures=$((failures + 1))
    fi
}

compile matching ok "" '
@c @implementation public func gfn_abi_version() -> Int32 { 0 }
@c @implementation public func gfn_model_free(_ model: OpaquePointer?) {}
@c @implementation public func gfn_version() -> UnsafePointer<CChar> { gfn_last_error() }'
compile wrong_return fail "does not match type" '
@c @implementation public func gfn_abi_version() -> Int64 { 0 }'
compile wrong_parameter fail "does not match type" '
@c @implementation public func gfn_tokenizer_eos(_ t: OpaquePointer?, _ out: UnsafeMutablePointer<Int64>?) -> Int32 { 0 }'
compile missing_parameter fail "could not find imported function" '
@c @implementation public func gfn_model_free() {}'
compile nullability fail "does not match type" '
@c @implementation public func gfn_version() -> UnsafePointer<CChar>? { nil }'
compile not_in_header fail "could not find imported function" '
@c @implementation public func gfn_not_in_the_header() -> Int32 { 0 }'

if [ "$failures" -ne 0 ]; then echo "ABI check: $failures case(s) failed"; exit 1; fi
echo "ABI check bites: every mismatched declaration was refused"
