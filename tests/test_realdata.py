"""The compiled core on the real IMDB data (skips without it; see conftest.data_dir)."""

import numpy as np
import pytest

import imdbfast
from imdbfast import _core

import reference as ref
from conftest import assert_close
from datautil import make_net

pytestmark = pytest.mark.realdata


def test_encoding_invariants(imdb):
    (tokens, offsets, y), _ = imdb
    x = _core.multi_hot(tokens, offsets, 10000)
    assert (x.n_rows, x.n_cols, x.nnz) == (25000, 10000, 3292468)  # the 25,000 training reviews at num_words=10000
    dense_cols = np.bincount(x.indices, minlength=10000)
    assert dense_cols[1] == 25000  # every review starts with the start token
    assert dense_cols[0] == 0 and dense_cols[3] == 0
    # Train review 0 has 218 tokens, 120 distinct (the data README).
    assert offsets[1] - offsets[0] == 218 and x.indptr[1] == 120
    # Spot-check rows against the reference encoder.
    for r in (0, 100, 200, 24999):
        seq = tokens[offsets[r]:offsets[r + 1]]
        np.testing.assert_array_equal(x.indices[x.indptr[r]:x.indptr[r + 1]], np.unique(seq))


def test_trajectory_on_real_subset_matches_reference(imdb):
    # The first 2,048 training reviews, batches of 512, one epoch plus one step, against the
    # float64 Keras-math model (the full dense set would be 2 GB in float64).
    (tokens, offsets, y), _ = imdb
    n = 2048
    x = _core.multi_hot(tokens[:offsets[n]], offsets[:n + 1], 10000)
    dense = x.to_dense().astype(np.float64)
    labels = y[:n].reshape(-1, 1)
    rng = np.random.default_rng(0)
    weights = ref.init_weights(rng, [10000, 16, 16, 1])
    net = make_net(_core, [10000, 16, 16, 1], ["relu", "relu", "sigmoid"], "bce_logits", "rmsprop", 1e-3)
    net.set_weights(weights)
    model = ref.Model(weights, ["relu", "relu", "sigmoid"])
    losses = []
    for epoch in range(3):
        order = _core.shuffle_order(n, 0, epoch)
        got = net.train_batches(x, labels, None, order, 512, 0, 4, 0, True)[3]
        want = [b[0] for b in model.train_epoch(dense, labels.astype(np.float64), order, 512)[0]]
        assert_close(got, want, rtol=1e-5, atol=0.0, what=f"epoch {epoch}")
        losses += list(got)
    assert len(losses) == 12 and losses[-1] < losses[0]


def test_four_epochs_reach_the_books_accuracy(imdb):
    (tokens, offsets, y), (tt, to, ty) = imdb
    x = _core.multi_hot(tokens, offsets, 10000)
    xt = _core.multi_hot(tt, to, 10000)
    rng = np.random.default_rng(1)
    net = make_net(_core, [10000, 16, 16, 1], ["relu", "relu", "sigmoid"], "bce_logits", "rmsprop", 1e-3)
    net.set_weights(ref.init_weights(rng, [10000, 16, 16, 1]))
    for epoch in range(4):
        net.train_batches(x, y.reshape(-1, 1), None, _core.shuffle_order(25000, 1, epoch), 512, 0, 49)
    loss, correct, n = net.evaluate(xt, ty.reshape(-1, 1), None)
    # The book: 0.884 (one run); Keras's exact math averages 0.880 +- 0.006 over seeds here.
    assert correct / n > 0.865
    assert 0.26 < loss / n < 0.34
