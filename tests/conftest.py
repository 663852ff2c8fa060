"""Shared fixtures. The float64 reference lives in reference.py, data helpers in datautil.py.

Tests that need the real IMDB data skip, with the reason, when datautil.data_dir() finds none.
"""

from __future__ import annotations

import os
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# Property-based tests (hypothesis). `ci`, the default, and `long` (ten times the examples, for
# the sanitizer runs) are derandomised: the same examples on every run, so CI cannot flake.
# `hunt` draws new examples every run, for looking for bugs locally. IMDBFAST_HYPOTHESIS=name.
_SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large]
settings.register_profile("ci", max_examples=40, deadline=None, derandomize=True, database=None,
                          suppress_health_check=_SLOW_OK)
settings.register_profile("long", max_examples=400, deadline=None, derandomize=True,
                          database=None, suppress_health_check=_SLOW_OK)
settings.register_profile("hunt", max_examples=2000, deadline=None, suppress_health_check=_SLOW_OK)
settings.load_profile(os.environ.get("IMDBFAST_HYPOTHESIS", "ci"))

# A relative IMDBFAST_DATA (`IMDBFAST_DATA=../shared/data pytest`) is relative to where pytest
# started: made absolute here, so tests that run code in another directory (subprocesses with
# their own cwd) find the same folder.
if os.environ.get("IMDBFAST_DATA"):
    os.environ["IMDBFAST_DATA"] = os.path.abspath(os.environ["IMDBFAST_DATA"])

import imdbfast
from datautil import data_dir, flat, keras_load_data, synthetic_sequences  # noqa: F401


@pytest.fixture(scope="session")
def imdb():
    d = data_dir()
    if d is None:
        pytest.skip("real IMDB data not found: set IMDBFAST_DATA to the folder holding imdb.npz")
    return keras_load_data(d)


def assert_close(out, ref, *, rtol: float, atol: float, what: str = ""):
    """|out - ref| <= atol + rtol |ref|, elementwise, with the worst element in the message."""
    out = np.asarray(out)
    ref = np.asarray(ref)
    assert out.shape == ref.shape, f"{what}: shape {out.shape} != reference {ref.shape}"
    err = np.abs(out.astype(np.float64) - ref)
    bound = atol + rtol * np.abs(ref)
    if not np.all(err <= bound):
        i = np.unravel_index(np.argmax(err - bound), err.shape)
        raise AssertionError(f"{what}: worst at {i}: got {out[i]!r}, reference {ref[i]!r}, "
                             f"|diff| {err[i]:.3g} > {bound[i]:.3g} (rtol {rtol}, atol {atol})")


@pytest.fixture
def rng(request):
    # A fresh, reproducible stream per test.
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


def core_switches():
    """imdbfast._testing (the core's test switches, built with the test option), or a skip."""
    try:
        from imdbfast import _testing
    except ImportError:
        pytest.skip("imdbfast was built without its test modules (pip install with "
                    "-Ccmake.define.IMDBFAST_CUDA_SIM=ON)")
    return _testing


def _gpu_module(kind: str):
    """imdbfast._cuda (a real GPU) or imdbfast._cuda_sim (its kernels run on the host), or a
    skip saying why it is not available here."""
    from imdbfast import _backend

    if kind == "sim":
        try:
            from imdbfast import _cuda_sim
        except ImportError:
            pytest.skip("imdbfast was built without the CUDA simulator (pip install with "
                        "-Ccmake.define.IMDBFAST_CUDA_SIM=ON to run the GPU code on the host)")
        return _cuda_sim
    mod = _backend._cuda
    if mod is None:
        pytest.skip("imdbfast was built without the CUDA module (no nvcc, or IMDBFAST_CUDA=OFF)")
    devices, reason = mod.devices()
    if not devices:
        pytest.skip(f"no usable GPU: {reason}")
    return mod


# Every backend the kernel and training tests run on: the CPU core, the CUDA kernels on the
# host simulator (always, where built), and the CUDA kernels on a GPU (marked `cuda`; skipped
# without one). `pytest -m cuda` runs just the GPU cases.
BACKENDS = [pytest.param("cpu", id="cpu"), pytest.param("sim", id="cuda-sim"),
            pytest.param("cuda", id="cuda", marks=pytest.mark.cuda)]


@pytest.fixture(params=BACKENDS)
def kernels(request):
    """The module whose single-kernel functions a test calls: _core, _cuda_sim or _cuda (all
    three have the same signatures)."""
    if request.param == "cpu":
        from imdbfast import _core
        return _core
    return _gpu_module(request.param)


@pytest.fixture(params=BACKENDS)
def device(request, monkeypatch):
    """A model device string for the backend: 'cpu', or 'cuda' served by the simulator or by
    a real GPU."""
    if request.param == "cpu":
        return "cpu"
    from imdbfast import _backend
    monkeypatch.setattr(_backend, "_module", _gpu_module(request.param))
    return "cuda"


@pytest.fixture(params=[1, 2], ids=["1thread", "2threads"])
def threads(request):
    return request.param


__all__ = ["imdbfast"]
