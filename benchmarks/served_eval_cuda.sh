#!/usr/bin/env bash
# benchmarks/served_eval.py on a GPU with a 1B-shaped model, as one command (issue #17's CUDA measurement):
#
#   bash benchmarks/served_eval_cuda.sh
#
# Needs a python with evomerge's dependencies and CUDA torch (PYTHON, default .venv/bin/python) and a python with
# a CUDA build of vLLM (EVOMERGE_VLLM_PYTHON, default: the same python) — `pip install vllm==<the catalogue's
# image tag without the v>` on a machine with network; a machine without network needs both ready. Writes
# benchmarks/results/served_eval_cuda.md; about 5 minutes on one H100 (three 1B checkpoints are generated first).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
export EVOMERGE_VLLM_PYTHON=${EVOMERGE_VLLM_PYTHON:-$python}
export PYTHONPATH=$PWD/operator${PYTHONPATH:+:$PYTHONPATH}
"$python" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'" \
  || { echo "served_eval_cuda: $python has no CUDA torch or sees no GPU" >&2; exit 1; }
"$EVOMERGE_VLLM_PYTHON" -c "import vllm" \
  || { echo "served_eval_cuda: $EVOMERGE_VLLM_PYTHON cannot import vllm — set EVOMERGE_VLLM_PYTHON" >&2; exit 1; }
exec "$python" -P benchmarks/served_eval.py --shape 1b --device cuda --candidates 8 --cold-candidates 2 \
  --work "${WORK:-/tmp/served-eval-1b}" --markdown-out benchmarks/results/served_eval_cuda.md "$@"
