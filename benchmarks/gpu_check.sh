#!/usr/bin/env bash
# Build imdbfast with its CUDA module for the GPU here, then run benchmarks/gpu_check.py.
# --no-build-isolation: GPU machines may have no network; the build requirements
# (scikit-build-core, pybind11, numpy) must then be installed already.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet --no-build-isolation . -Ccmake.define.IMDBFAST_CUDA=ON
python benchmarks/gpu_check.py "$@"
