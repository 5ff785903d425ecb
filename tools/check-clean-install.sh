#!/usr/bin/env bash
# The clean-machine check (`make check-clean-install`): a Debian 12 root made with debootstrap where only libopenblas0
# and python3 (+ python3-venv) are installed from apt, no compiler, no Swift, no protobuf or ONNX. Into it go the
# library through `make install DESTDIR=<root>`, the C example built outside with nothing but
# `pkg-config --cflags --libs gfnlm` (against the staged install), the wheel from `make wheel` (pip-installed into
# a venv; numpy from PyPI, or Debian's python3-numpy when PyPI cannot be reached), and the models. Then, inside the
# root (chroot, private mount namespace): ldd of the library finds everything, the C example runs, and the wheel's
# Python example (Tests/Install/wheel_smoke.py: sampling + three GFlowNet steps) runs.
#
# The debootstrap'ed base is cached as CACHE/debian12-base.tar (a few minutes the first time); each run unpacks a
# fresh copy, so nothing from an earlier run leaks in. Needs root (debootstrap, chroot, mounts).
#
#   tools/check-clean-install.sh WHEEL [CACHE]
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WHEEL="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
CACHE="${2:-$ROOT/.build-deps}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
BASE="$CACHE/debian12-base.tar"
PACKAGES="libopenblas0,python3,python3-venv"
MODEL="$ROOT/models/demo-gpt2"
FIXTURE="$ROOT/Tests/Fixtures/gpt2-realvocab/legacy17"
TOKENIZER="$ROOT/Tests/Fixtures/tokenizer"
[ "$(id -u)" = 0 ] || { echo "check-clean-install needs root (debootstrap, chroot)"; exit 1; }
[ -f "$MODEL/model.onnx" ] || { echo "the demo model $MODEL is absent"; exit 1; }
mkdir -p "$CACHE"

if [ ! -f "$BASE" ]; then
    command -v debootstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends debootstrap
    tmp="$CACHE/debian12-bootstrap"
    rm -rf "$tmp"
    echo "== debootstrap bookworm (minbase + $PACKAGES) from $MIRROR"
    debootstrap --variant=minbase --include="$PACKAGES" bookworm "$tmp" "$MIRROR" > "$CACHE/debootstrap.log" 2>&1 \
        || { tail -30 "$CACHE/debootstrap.log"; exit 1; }
    chroot "$tmp" apt-get clean
    tar -C "$tmp" -cf "$BASE.tmp" .
    mv "$BASE.tmp" "$BASE"
    rm -rf "$tmp"
fi

R="$(mktemp -d "$CACHE/clean-root.XXXXXX")"
trap 'rm -rf "$R"' EXIT
tar -C "$R" -xf "$BASE"
echo "== a fresh Debian 12 root in $R"
# what apt installed beyond the minimal base: the check's premise
for p in libprotobuf32 libprotobuf-lite32 libonnx1 gcc g++ cmake pkg-config; do
    if chroot "$R" dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep "install ok installed" >/dev/null; then
        echo "FAIL: $p is installed in the clean root"; exit 1
    fi
done
[ ! -e "$R/opt/swift" ] || { echo "FAIL: a Swift toolchain in the clean root"; exit 1; }

echo "== make install DESTDIR=$R PREFIX=/usr/local"
make -s -C "$ROOT" install DESTDIR="$R" PREFIX=/usr/local >/dev/null
echo "== the C example, built with pkg-config --cflags --libs gfnlm against the staged install"
flags="$(PKG_CONFIG_SYSROOT_DIR="$R" PKG_CONFIG_LIBDIR="$R/usr/local/lib/pkgconfig" pkg-config --cflags --libs gfnlm)"
echo "   $flags"
gcc -std=c11 -O2 "$ROOT/examples/c/generate.c" $flags -o "$R/usr/local/bin/gfnlm-generate"
mkdir -p "$R/opt/gfnlm/models" "$R/opt/gfnlm/fixture"
cp -r "$MODEL" "$R/opt/gfnlm/models/demo-gpt2"
cp -r "$FIXTURE" "$R/opt/gfnlm/fixture/model"
cp -r "$TOKENIZER" "$R/opt/gfnlm/fixture/tokenizer"
cp "$WHEEL" "$R/opt/gfnlm/"
cp "$ROOT/Tests/Install/wheel_smoke.py" "$R/opt/gfnlm/"
cp /etc/resolv.conf "$R/etc/resolv.conf" 2>/dev/null || true
# Network plumbing, not a package: where this machine reaches PyPI through a TLS-intercepting proxy, pip in the root
# needs that proxy's CA (PIP_CERT / SSL_CERT_FILE of this machine). Nothing else from the environment goes in.
pass_env=()
host_ca="${PIP_CERT:-${SSL_CERT_FILE:-}}"
if [ -n "$host_ca" ] && [ -f "$host_ca" ]; then
    cp "$host_ca" "$R/etc/host-network-ca.crt"
    pass_env=(PIP_CERT=/etc/host-network-ca.crt)
fi

cat > "$R/opt/gfnlm/check.sh" <<'EOF'
#!/bin/sh
set -eu
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8
ldconfig
echo "-- installed packages: $(dpkg-query -W -f='${Package}\n' | wc -l) (minbase + libopenblas0 python3 python3-venv)"
echo "-- ldd /usr/local/lib/libgfnlm.so.2"
ldd /usr/local/lib/libgfnlm.so.2
if ldd /usr/local/lib/libgfnlm.so.2 | grep "not found"; then echo "FAIL: unresolved dependencies"; exit 1; fi
echo "-- the installed C example"
gfnlm-generate /opt/gfnlm/fixture/model "Hello world" /opt/gfnlm/fixture/tokenizer
echo "-- the wheel in a venv"
python3 -m venv /opt/venv
if ! /opt/venv/bin/pip install --quiet --disable-pip-version-check /opt/gfnlm/*.whl; then
    echo "(PyPI unreachable from the root: numpy from Debian instead)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-numpy
    rm -rf /opt/venv && python3 -m venv --system-site-packages /opt/venv
    /opt/venv/bin/pip install --quiet --disable-pip-version-check --no-deps /opt/gfnlm/*.whl
fi
cd /tmp
/opt/venv/bin/python /opt/gfnlm/wheel_smoke.py /opt/gfnlm/models/demo-gpt2
EOF
chmod +x "$R/opt/gfnlm/check.sh"
echo "== inside the root"
unshare -m sh -c "mount --rbind /dev '$R/dev' && mount -t proc proc '$R/proc' && mount -t sysfs sys '$R/sys' && \
    chroot '$R' /usr/bin/env -i ${pass_env[*]:-} /opt/gfnlm/check.sh"
echo "check-clean-install: passed"
