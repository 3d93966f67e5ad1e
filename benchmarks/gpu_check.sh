#!/usr/bin/env bash
# The checks that need a CUDA GPU, in one go: the gpu-marked tests (tests/gpu/test_cuda.py, tests/unit/test_streams.py; the
# default study on CUDA against the CPU through the stage layer among them), the training benchmark on CUDA up to
# 16,384 replicas, and the default study timed on CUDA and on the same machine's CPU (benchmarks/device_study.py).
# Neither Prefect nor DVC is needed, and a preflight checks that nothing these steps run imports either: a machine
# with torch, numpy, scipy, pandas, statsmodels, matplotlib (the stage bodies draw figures), pyyaml, safetensors,
# tqdm, pytest, pydantic and arch will do.
#
#   bash benchmarks/gpu_check.sh            # from the repository root, on a machine where torch sees a GPU
#   DRY=1 bash benchmarks/gpu_check.sh      # anywhere: the same steps on the CPU at toy sizes (gpu tests skip);
#                                           # checks the script, the imports and the stage loop, in about a minute
#
# PY picks the interpreter (default .venv/bin/python, else python3); it needs a CUDA build of torch (the
# Makefile's default torch==2.13.0 from PyPI is one on Linux; a +cpu wheel is not) and the dev extra.
# Each step has its own time limit, about 12 minutes in all (the default study runs twice on each device: once
# in the tests, which compare the results, once in device_study, which times it); every step runs even if one
# before it failed.
# Output goes to $OUT (default: a new temporary folder): one log per step, and each step's last line (the
# benchmarks' JSON) in summary.txt.
# Exit status: 0 when every step passed, else 1.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
DRY=${DRY:-0}
OUT=${OUT:-$(mktemp -d -t gpu_check.XXXXXX)}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1  # a step stopped at its time limit still leaves its log
echo "logs in $OUT"
status=0

DRY=$DRY "$PY" - <<'EOF' || exit 1
import importlib, os, sys

missing = []
for name in ("torch", "numpy", "scipy", "pandas", "statsmodels", "matplotlib", "yaml", "safetensors", "tqdm",
             "pytest", "pydantic", "arch"):
    try:
        importlib.import_module(name)
    except ImportError as exc:
        missing.append(f"{name} ({exc})")
assert not missing, f"missing: {', '.join(missing)}"
sys.path.insert(0, os.getcwd())
import stages.registry, stages.run, benchmarks.device_study, tests.gpu.test_cuda, tests.unit.test_streams  # noqa: E401,F401

loaded = {m.split(".")[0] for m, mod in sys.modules.items() if mod is not None}  # None: an import blocked
loaded = sorted(loaded & {"prefect", "dvc", "flows", "tasks"})
assert not loaded, f"the steps below must not need Prefect or DVC, but importing them loaded {loaded}"
import torch

if os.environ["DRY"] != "1":
    assert torch.cuda.is_available(), f"torch {torch.__version__} sees no CUDA device"
    print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name(0)}")
else:
    print(f"DRY=1: torch {torch.__version__} on the CPU, toy sizes")
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

if [ "$DRY" = 1 ]; then
    device=cpu
    speed=(--epochs 2 --repeats 1 --replicas 4 --dropout-replicas 4)
    study=(--devices cpu --set seeds.count=4 --set data.n_train=300 --set data.n_valid=50 --set data.n_test=500
           --set train.epochs=5 --set markets.epochs=5 --set markets.reps=200)
else
    device=cuda
    speed=(--epochs 50 --repeats 3 --replicas 64 1024 4096 16384)
    study=(--devices cuda cpu)
fi
step pytest_gpu 300 "$PY" -m pytest -m gpu -p no:cacheprovider -q -rs tests/gpu/test_cuda.py tests/unit/test_streams.py
step train_speed 150 "$PY" benchmarks/train_speed.py --device "$device" "${speed[@]}"
step device_study 240 "$PY" benchmarks/device_study.py "${study[@]}"
exit $status
