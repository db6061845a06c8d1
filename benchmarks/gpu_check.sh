#!/usr/bin/env bash
# The prepared GPU check (issue 13): bf16 training throughput and MFU of an OLMo-1B-shaped model,
# probe-scoring throughput, and a 2-rank step under torchrun; prints a table and writes gpu_check.md.
# Nothing from the hub; under 8 minutes on one H200. `--dry-run`: the same path on the CPU at toy shapes.
#   bash benchmarks/gpu_check.sh [--dry-run] [--out FILE]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}
exec timeout 480 "$PY" benchmarks/gpu_check.py "$@"
