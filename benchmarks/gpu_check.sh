#!/usr/bin/env bash
# The checks that need a CUDA GPU, in one go: the gpu-marked tests, the training benchmark on CUDA up to
# 16,384 replicas, and the default study on CUDA against the same machine's CPU (through the stage layer).
# Neither Prefect nor DVC is needed: a machine with torch, the scientific stack, pytest, pydantic and arch will do.
#
#   bash benchmarks/gpu_check.sh            # from the repository root, on a machine where torch sees a GPU
#
# PY picks the interpreter (default .venv/bin/python, else python3); it needs a CUDA build of torch (the
# Makefile's default torch==2.13.0 from PyPI is one on Linux; a +cpu wheel is not) and the dev extra.
# Each step has its own time limit, about 12 minutes in all (the gpu tests include the default study on both
# devices); every step runs even if one before it failed.
# Output goes to $OUT (default: a new temporary folder): one log per step, and each step's last line (the
# benchmarks' JSON) in summary.txt.
# Exit status: 0 when every step passed, else 1.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
OUT=${OUT:-$(mktemp -d -t gpu_check.XXXXXX)}
mkdir -p "$OUT"
echo "logs in $OUT"
status=0

"$PY" - <<'EOF' || exit 1
import torch
assert torch.cuda.is_available(), f"torch {torch.__version__} sees no CUDA device"
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name(0)}")
EOF

step() {  # step NAME SECONDS COMMAND...: run, log to $OUT/NAME.log, keep the last line (the JSON) in summary.txt
    local name=$1 limit=$2
    shift 2
    echo "== $name: $*"
    timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
    local rc=$?
    echo "$name rc=$rc: $(tail -n 1 "$OUT/$name.log")" | tee -a "$OUT/summary.txt"
    [ "$rc" -eq 0 ] || status=1
}

step pytest_gpu 300 "$PY" -m pytest -m gpu -p no:cacheprovider -q -rs tests/test_gpu.py tests/test_streams.py
step train_speed 150 "$PY" benchmarks/train_speed.py --device cuda --epochs 50 --repeats 3 \
    --replicas 64 1024 4096 16384
step device_study 240 "$PY" benchmarks/device_study.py --devices cuda cpu
exit $status
