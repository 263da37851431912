#!/usr/bin/env bash
# The one-shot GPU check (issue #9, item 4): installs the pack's missing pure-Python wheels from
# benchmarks/wheels/ (no network there), then runs benchmarks/gpu_checks.py, which writes
# gpu_check.json and gpu_check.md to $OUT (default ./gpu_check_out). Under 8 minutes in all:
# the install has 60 s, the checks 450 s (each stage its own budget, see gpu_checks.py).
#   bash benchmarks/gpu_check.sh              # on the GPU machine
#   bash benchmarks/gpu_check.sh --device cpu --quick   # the same plumbing on a CPU, in a minute
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu_check_out}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
SITE=/tmp/videomama-site
if "$PY" -c "import diffusers, sam2" 2>/dev/null; then
    echo "gpu_check: diffusers and sam2 already importable; nothing installed"
elif ls benchmarks/wheels/*.whl >/dev/null 2>&1; then
    # --target + PYTHONPATH: the machine's own torch, numpy and huggingface_hub stay as they are.
    timeout 60 "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$SITE" benchmarks/wheels/*.whl 2>&1 | tee "$OUT/install.log" | grep -v "^WARNING" || true
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
else
    echo "gpu_check: benchmarks/wheels/ holds no wheels and diffusers is missing; fill it (benchmarks/wheels/README.md)" | tee "$OUT/install.log"
fi
"$PY" -c "import diffusers, sam2; print('gpu_check: diffusers', diffusers.__version__)" 2>&1 | tail -1
start=$(date +%s)
timeout 470 "$PY" benchmarks/gpu_checks.py --out "$OUT" --total 450 "$@"
rc=$?
echo "gpu_check: checks finished rc=$rc in $(( $(date +%s) - start )) s; results in $OUT/gpu_check.json and $OUT/gpu_check.md"
cat "$OUT/gpu_check.md" 2>/dev/null
exit $rc
