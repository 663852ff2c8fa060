"""Shared fixtures: the float64 reference lives in reference.py; data helpers live here.

The real IMDB data is read from $IMDBFAST_DATA (a folder holding imdb.npz), else from
../shared/data beside the repository; tests that need it skip with the reason when neither
exists.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import numpy as np
import pytest

import imdbfast

REPO = Path(__file__).resolve().parent.parent


def data_dir() -> Path | None:
    env = os.environ.get("IMDBFAST_DATA")
    candidates = [Path(env)] if env else []
    candidates.append(REPO.parent / "shared" / "data")
    for c in candidates:
        if (c / "imdb.npz").is_file():
            return c
    return None


def keras_load_data(path: Path, num_words: int = 10000):
    """Keras's imdb.load_data algorithm in plain Python (the trusted test copy of the data).

    Returns ((tokens, offsets, y) for train, (tokens, offsets, y) for test) with tokens flat.
    """
    with np.load(path / "imdb.npz", allow_pickle=True) as f:
        x_train, y_train, x_test, y_test = f["x_train"], f["y_train"], f["x_test"], f["y_test"]
    rng = np.random.RandomState(113)
    idx = np.arange(len(x_train))
    rng.shuffle(idx)
    x_train, y_train = x_train[idx], y_train[idx]
    idx = np.arange(len(x_test))
    rng.shuffle(idx)
    x_test, y_test = x_test[idx], y_test[idx]
    out = []
    for xs, ys in ((x_train, y_train), (x_test, y_test)):
        lengths = np.array([len(s) + 1 for s in xs], dtype=np.int64)
        offsets = np.zeros(len(xs) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        tokens = np.concatenate([np.concatenate(([1], np.asarray(s, dtype=np.int64) + 3)) for s in xs])
        tokens[tokens >= num_words] = 2  # start token included, as Keras
        out.append((tokens.astype(np.int32), offsets, np.asarray(ys, dtype=np.float32)))
    return out


@pytest.fixture(scope="session")
def imdb():
    d = data_dir()
    if d is None:
        pytest.skip("real IMDB data not found: set IMDBFAST_DATA to the folder holding imdb.npz")
    return keras_load_data(d)


def synthetic_sequences(rng: np.random.Generator, n: int, num_words: int, mean_len: int = 40,
                        empty_every: int = 0):
    """IMDB-shaped ragged data: Zipf-distributed word ids, varied lengths, duplicates."""
    seqs = []
    for i in range(n):
        if empty_every and i % empty_every == 0:
            seqs.append([])
            continue
        length = int(rng.integers(1, 2 * mean_len))
        words = np.minimum(rng.zipf(1.3, size=length) - 1, num_words - 1)
        seqs.append([int(w) for w in words])
    return seqs


def flat(seqs):
    lengths = np.array([len(s) for s in seqs], dtype=np.int64)
    offsets = np.zeros(len(seqs) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    tokens = np.array([t for s in seqs for t in s], dtype=np.int32)
    return tokens, offsets


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
