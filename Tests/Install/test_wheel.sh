#!/usr/bin/env bash
# The wheel from `make wheel`, pip-installed into a fresh virtual environment, used from a temporary directory with
# GFNLM_LIBRARY unset and neither the repository's bindings nor its build/ on any path: imports, finds its own
# bundled library, samples from the demo model and runs three GFlowNet steps (Tests/Install/wheel_smoke.py).
# numpy comes from PyPI (pip's cache after the first run).
#
#   Tests/Install/test_wheel.sh WHEEL
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
WHEEL="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
MODEL="${GFNLM_DEMO_MODEL:-$ROOT/models/demo-gpt2}"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
if [ ! -f "$MODEL/model.onnx" ]; then echo "(skipped the wheel test: the demo model $MODEL is absent)"; exit 0; fi
listing="$(python3 -m zipfile -l "$WHEEL")"
for f in gfnlm/libgfnlm.so gfnlm/py.typed; do
    grep -q "^$f " <<< "$listing" || { echo "FAIL: $WHEEL carries no $f"; exit 1; }
done
python3 -m venv "$TMP/venv"
"$TMP/venv/bin/pip" install --quiet --disable-pip-version-check "$WHEEL"
cp "$ROOT/Tests/Install/wheel_smoke.py" "$TMP/"
cd "$TMP"
env -u GFNLM_LIBRARY -u PYTHONPATH -u LD_LIBRARY_PATH "$TMP/venv/bin/python" wheel_smoke.py "$MODEL"
