"""The compiled core's hot paths on the IMDB workload (pytest-benchmark).

    pytest benchmarks --benchmark-only                 # all
    pytest benchmarks --benchmark-only -k epoch        # one group

Targets (issue: compiled CPU core; 2 threads, real data): epoch at batch 512 <= 10 ms, epoch at
batch 5 <= 150 ms, multi-hot encoding of 25,000 reviews <= 20 ms, predict on 25,000 <= 5 ms.
docs/PERFORMANCE.md records the measured numbers and how they compare with the peers.
"""

import numpy as np
import pytest

from imdbfast import _core

from conftest import book_net

THREADS = [1, 2]


@pytest.mark.benchmark(group="multi_hot")
@pytest.mark.parametrize("threads", THREADS)
def test_multi_hot_encode(benchmark, data, threads):
    x = benchmark(_core.multi_hot, data.tokens, data.offsets, 10000, threads)
    assert x.n_rows == len(data.offsets) - 1 and x.nnz == data.x.nnz
    benchmark.extra_info["reviews_per_s"] = x.n_rows / benchmark.stats["median"]
    benchmark.extra_info["tokens_per_s"] = len(data.tokens) / benchmark.stats["median"]


def time_epoch(benchmark, x, y, batch_size, threads, rounds, warmup_rounds):
    """One epoch of the book's model from Keras's init (a fresh model each round, built outside
    the timing); returns the mean loss, after checking every row was seen."""
    n = x.n_rows
    nb = -(-n // batch_size)

    def epoch(net, order):
        return net.train_batches(x, y, None, order, batch_size, 0, nb, threads)

    loss, correct, rows, _, _ = benchmark.pedantic(
        epoch, setup=lambda: ((book_net(), _core.shuffle_order(n, 0, 0)), {}),
        rounds=rounds, warmup_rounds=warmup_rounds)
    assert rows == n
    return loss / rows


@pytest.mark.benchmark(group="epoch_bs512")
@pytest.mark.parametrize("threads", THREADS)
def test_epoch_batch512(benchmark, data, threads):
    loss = time_epoch(benchmark, data.x, data.y2, 512, threads, rounds=15, warmup_rounds=2)
    assert 0.3 < loss < 0.7  # first epoch from Keras's init: ~0.5
    benchmark.extra_info["reviews_per_s"] = data.x.n_rows / benchmark.stats["median"]
    benchmark.extra_info["nnz_per_s"] = data.x.nnz / benchmark.stats["median"]


@pytest.mark.benchmark(group="epoch_bs5")
@pytest.mark.parametrize("threads", THREADS)
def test_epoch_batch5(benchmark, data, threads):
    assert time_epoch(benchmark, data.x, data.y2, 5, threads, rounds=5, warmup_rounds=1) < 0.6
    benchmark.extra_info["steps_per_s"] = -(-data.x.n_rows // 5) / benchmark.stats["median"]


@pytest.fixture(scope="module")
def trained(data):
    net = book_net()
    n = data.x.n_rows
    for e in range(4):
        net.train_batches(data.x, data.y2, None, _core.shuffle_order(n, 0, e), 512, 0, -(-n // 512))
    return net


@pytest.mark.benchmark(group="predict")
@pytest.mark.parametrize("threads", THREADS)
def test_predict(benchmark, data, trained, threads):
    p = benchmark(trained.predict, data.xt, threads)
    assert p.shape == (data.xt.n_rows, 1) and np.all((p >= 0) & (p <= 1))
    accuracy = np.mean((p[:, 0] > 0.5) == (data.t_y > 0.5))
    if "real" in data.source:
        assert accuracy > 0.85
    benchmark.extra_info["reviews_per_s"] = data.xt.n_rows / benchmark.stats["median"]


@pytest.mark.benchmark(group="evaluate")
@pytest.mark.parametrize("threads", THREADS)
def test_evaluate(benchmark, data, trained, threads):
    loss, correct, n = benchmark(trained.evaluate, data.xt, data.t_y2, None, threads)
    assert n == data.xt.n_rows and 0 < loss / n < 1
    benchmark.extra_info["reviews_per_s"] = n / benchmark.stats["median"]


@pytest.fixture(scope="module")
def scaled(data):
    """The training set tiled 1x, 4x and 16x (rows repeated; every epoch shuffles them)."""
    out = {}
    for k in (1, 4, 16):
        rows = np.tile(np.arange(data.x.n_rows, dtype=np.int64), k)
        out[k] = (data.x.take(rows), np.tile(data.y2, (k, 1)))
    return out


@pytest.mark.benchmark(group="epoch_scaling")
@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("scale", [1, 4, 16])
def test_epoch_scaling(benchmark, scaled, scale, threads):
    x, y = scaled[scale]
    loss = time_epoch(benchmark, x, y, 512, threads, rounds=3 if scale == 16 else 7, warmup_rounds=1)
    assert loss < 0.7
    benchmark.extra_info["ns_per_nonzero"] = benchmark.stats["median"] / x.nnz * 1e9
    benchmark.extra_info["rows"] = x.n_rows
