#!/usr/bin/env bash
# The one-call GPU check (benchmarks/gpu_check.py --build): builds the checkout offline for sm_90
# into a local prefix, then runs the CUDA tests and benchmarks against that install, writing a
# table, the raw JSON and the logs into --out. Without a GPU it builds and reports "no GPU".
#   bash benchmarks/gpu_check.sh --out DIR [--data .data] [--budget 480] [--arch 90]
set -uo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-python3}" benchmarks/gpu_check.py --build "$@"
