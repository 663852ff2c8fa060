"""Shared fixtures. The float64 reference lives in reference.py, data helpers in datautil.py.

Tests that need the real IMDB data skip, with the reason, when datautil.data_dir() finds none.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest

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


@pytest.fixture(params=[1, 2], ids=["1thread", "2threads"])
def threads(request):
    return request.param


__all__ = ["imdbfast"]
