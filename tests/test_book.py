"""The book's results on the real IMDB data through the Keras-style API (issue acceptance).

Skips without the data (see conftest). The book reports one run at 0.884 test accuracy; Keras's
exact math in float64 averages 0.880 (std 0.006 over 10 seeds) on this data.
"""

from types import SimpleNamespace

import numpy as np
import pytest

import imdbfast
from imdbfast import layers, regularizers

import reference as ref

pytestmark = pytest.mark.realdata


def ragged(tokens, offsets, lo=0, hi=None):
    """Rows [lo, hi) as flat tokens + offsets, the form the data loader hands over."""
    hi = len(offsets) - 1 if hi is None else hi
    return SimpleNamespace(tokens=tokens[offsets[lo]:offsets[hi]], offsets=offsets[lo:hi + 1] - offsets[lo])


def book_model(seed):
    m = imdbfast.Sequential([layers.Input((10000,)), layers.Dense(16, activation="relu"),
                             layers.Dense(16, activation="relu"),
                             layers.Dense(1, activation="sigmoid")], seed=seed)
    m.compile(optimizer="rmsprop", loss="binary_crossentropy", metrics=["accuracy"])
    return m


def test_final_cell_four_epochs_over_five_seeds(imdb):
    (tok, off, y), (tt, to, ty) = imdb
    x, xt = ragged(tok, off), ragged(tt, to)
    accs, losses = [], []
    for seed in range(5):
        m = book_model(seed)
        m.fit(x, y, epochs=4, batch_size=512, verbose=0)
        loss, acc = m.evaluate(xt, ty, verbose=0)
        accs.append(acc)
        losses.append(loss)
    assert np.mean(accs) >= 0.875 and min(accs) >= 0.865, accs
    assert all(0.27 <= l <= 0.33 for l in losses), losses


def test_twenty_epochs_show_overfitting(imdb):
    (tok, off, y), _ = imdb
    m = book_model(0)
    h = m.fit(ragged(tok, off, 10000), y[10000:], epochs=20, batch_size=512, verbose=0,
              validation_data=(ragged(tok, off, 0, 10000), y[:10000]))
    val = h.history["val_loss"]
    best = int(np.argmin(val))
    assert 1 <= best <= 5, val  # lowest within epochs 2-6 (1-based)
    assert val[-1] > val[best] + 0.1  # and rising after
    assert h.history["accuracy"][-1] > 0.99


def test_batch_size_five(imdb):
    (tok, off, y), (tt, to, ty) = imdb
    m = book_model(0)
    m.fit(ragged(tok, off), y, epochs=4, batch_size=5, verbose=0)
    assert m.evaluate(ragged(tt, to), ty, verbose=0)[1] >= 0.86


def test_fidelity_on_real_subset(imdb):
    # Same initial weights, shuffle=False: per-epoch loss and accuracy over 5 epochs follow the
    # float64 Keras-math model within 1e-4 relative (measured: ~1e-6).
    (tok, off, y), _ = imdb
    n = 2048
    m = book_model(0)
    m.build()
    model = ref.Model(m.get_weights(), ["relu", "relu", "sigmoid"])
    h = m.fit(ragged(tok, off, 0, n), y[:n], epochs=5, batch_size=512, shuffle=False, verbose=0)
    x = imdbfast.multi_hot(ragged(tok, off, 0, n), 10000).to_dense().astype(np.float64)
    yy = y[:n].astype(np.float64).reshape(-1, 1)
    for epoch in range(5):
        _, loss, acc = model.train_epoch(x, yy, np.arange(n), 512)
        assert h.history["loss"][epoch] == pytest.approx(loss, rel=1e-4)
        assert h.history["accuracy"][epoch] == pytest.approx(acc, abs=1e-12)


@pytest.mark.slow
def test_chapter_five_capacity_smaller_and_bigger_models(imdb):
    """§5.4.1 (fighting overfitting by capacity), validation_split=0.4 as the book: the bigger
    model (Dense(512) x2) overfits within 2-3 epochs; the smaller one (Dense(4) x2) later and
    more slowly than the original (recorded in docs/PERFORMANCE.md, "The book's chapter 5")."""
    (tok, off, y), _ = imdb
    x = ragged(tok, off)

    def val_losses(units, epochs, seed=0):
        m = imdbfast.Sequential([layers.Input((10000,)), layers.Dense(units, activation="relu"),
                                 layers.Dense(units, activation="relu"),
                                 layers.Dense(1, activation="sigmoid")], seed=seed)
        m.compile("rmsprop", "binary_crossentropy", ["accuracy"])
        return m.fit(x, y, epochs=epochs, batch_size=512, validation_split=0.4,
                     verbose=0).history["val_loss"]

    bigger = val_losses(512, 6)
    assert int(np.argmin(bigger)) <= 2 and bigger[-1] > min(bigger) + 0.03, bigger
    original, smaller = val_losses(16, 20), val_losses(4, 20)
    assert int(np.argmin(smaller)) > int(np.argmin(original)), (smaller, original)
    assert smaller[-1] < original[-1]  # overfits more slowly: lower loss at epoch 20


@pytest.mark.slow
def test_chapter_five_weight_regularization(imdb):
    """§5.4.2: kernel_regularizer=regularizers.l2(0.002) on both hidden layers, 20 epochs at
    batch 512, validation_split=0.4: the validation loss (penalty included, as Keras reports
    it) ends well below the original model's, which overfits; l1 and l1_l2 train too (recorded
    in docs/PERFORMANCE.md, "The book's chapter 5")."""
    (tok, off, y), _ = imdb
    x = ragged(tok, off)

    def history(reg, seed=0):
        m = imdbfast.Sequential([
            layers.Input((10000,)),
            layers.Dense(16, kernel_regularizer=reg, activation="relu"),
            layers.Dense(16, kernel_regularizer=reg, activation="relu"),
            layers.Dense(1, activation="sigmoid")], seed=seed)
        m.compile(optimizer="rmsprop", loss="binary_crossentropy", metrics=["accuracy"])
        return m.fit(x, y, epochs=20, batch_size=512, validation_split=0.4,
                     verbose=0).history

    original = history(None)["val_loss"]
    l2 = history(regularizers.l2(0.002))
    assert l2["val_loss"][-1] < original[-1] - 0.1, (l2["val_loss"], original)
    assert l2["val_accuracy"][-1] > 0.85
    for reg in (regularizers.l1(0.001), regularizers.l1_l2(l1=0.001, l2=0.001)):
        h = history(reg)
        assert h["val_loss"][-1] < original[-1] and h["val_accuracy"][-1] > 0.83, h


@pytest.mark.slow
def test_chapter_five_dropout(imdb):
    """§5.4.3: Dropout(0.5) after each hidden layer, 20 epochs at batch 512,
    validation_split=0.4: the dropout model's validation loss stays below the original's once
    the original starts to overfit (measured: from epoch 6-7 on; every epoch from 8 here) and
    ends well below it (recorded in docs/PERFORMANCE.md, "The book's chapter 5")."""
    (tok, off, y), _ = imdb
    x = ragged(tok, off)

    def val_losses(rate, seed=0):
        stack = [layers.Input((10000,)), layers.Dense(16, activation="relu")]
        stack += [layers.Dropout(rate)] if rate else []
        stack += [layers.Dense(16, activation="relu")]
        stack += [layers.Dropout(rate)] if rate else []
        m = imdbfast.Sequential(stack + [layers.Dense(1, activation="sigmoid")], seed=seed)
        m.compile(optimizer="rmsprop", loss="binary_crossentropy", metrics=["accuracy"])
        return m.fit(x, y, epochs=20, batch_size=512, validation_split=0.4,
                     verbose=0).history["val_loss"]

    original, dropout = val_losses(0), val_losses(0.5)
    assert all(d < o for d, o in zip(dropout[7:], original[7:])), (dropout, original)
    assert dropout[-1] < original[-1] - 0.05
