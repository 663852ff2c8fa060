"""Fixtures for the benchmarks: the real IMDB data when found, else a synthetic IMDB-shaped set.

Run with ``pytest benchmarks --benchmark-only`` (they are not part of the default test run).
Every benchmark checks its result after timing and reports throughput in ``extra_info``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from datautil import data_dir, keras_load_data, make_net, synthetic_imdb  # noqa: E402

from imdbfast import _core  # noqa: E402


class Data:
    def __init__(self):
        d = data_dir()
        if d is not None:
            (self.tokens, self.offsets, self.y), (self.t_tokens, self.t_offsets, self.t_y) = keras_load_data(d)
            self.source = "real IMDB data (" + str(d) + ")"
            self.real = True
        else:
            self.tokens, self.offsets, self.y = synthetic_imdb(seed=0)
            self.t_tokens, self.t_offsets, self.t_y = synthetic_imdb(seed=1)
            self.source = "synthetic IMDB-shaped data (IMDBFAST_DATA not set)"
            self.real = False
        self.x = _core.multi_hot(self.tokens, self.offsets, 10000)
        self.xt = _core.multi_hot(self.t_tokens, self.t_offsets, 10000)
        self.y2 = self.y.reshape(-1, 1)
        self.t_y2 = self.t_y.reshape(-1, 1)


@pytest.fixture(scope="session")
def data():
    return Data()


def book_net(seed: int = 0, optimizer: str = "rmsprop", module=_core):
    """The book's model with Keras's glorot-uniform init (on `module`: _core or _cuda)."""
    rng = np.random.default_rng(seed)
    dims = [10000, 16, 16, 1]
    net = make_net(module, dims, ["relu", "relu", "sigmoid"], "bce_logits", optimizer, 1e-3)
    weights = []
    for i, o in zip(dims[:-1], dims[1:]):
        limit = np.sqrt(6.0 / (i + o))
        weights += [rng.uniform(-limit, limit, (i, o)).astype(np.float32), np.zeros(o, np.float32)]
    net.set_weights(weights)
    return net


@pytest.fixture(autouse=True)
def _source(request, benchmark, data):
    benchmark.extra_info["data"] = data.source
