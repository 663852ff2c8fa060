"""The book's next notebooks, as far as they run today: the Reuters and Boston loaders (§4.2,
§4.3) element for element against transcriptions of Keras's code on synthetic files in Keras's
layout (the real files are not on these machines), ``utils.to_categorical``, and §4.3's
regression cells (13 dense features, mse, mae, K-fold by hand)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import imdbfast
from imdbfast import layers
from imdbfast.datasets import boston_housing, reuters


# ---- transcriptions of keras/src/datasets (Keras 3.15), on numpy alone -----------------------
def keras_reuters(path, num_words=None, skip_top=0, maxlen=None, test_split=0.2, seed=113,
                  start_char=1, oov_char=2, index_from=3):
    with np.load(path, allow_pickle=True) as f:  # (our own synthetic file)
        xs, labels = f["x"], f["y"]
    rng = np.random.RandomState(seed)
    indices = np.arange(len(xs))
    rng.shuffle(indices)
    xs = xs[indices]
    labels = labels[indices]
    if start_char is not None:
        xs = [[start_char] + [w + index_from for w in x] for x in xs]
    elif index_from:
        xs = [[w + index_from for w in x] for x in xs]
    if maxlen:
        new_seq, new_label = [], []
        for x, y in zip(xs, labels):
            if len(x) < maxlen:
                new_seq.append(x)
                new_label.append(y)
        xs, labels = new_seq, new_label
    if not num_words:
        num_words = max(max(x) for x in xs)
    if oov_char is not None:
        xs = [[w if skip_top <= w < num_words else oov_char for w in x] for x in xs]
    else:
        xs = [[w for w in x if skip_top <= w < num_words] for x in xs]
    idx = int(len(xs) * (1 - test_split))
    x_train, y_train = np.array(xs[:idx], dtype="object"), np.array(labels[:idx])
    x_test, y_test = np.array(xs[idx:], dtype="object"), np.array(labels[idx:])
    return (x_train, y_train), (x_test, y_test)


def keras_boston(path, test_split=0.2, seed=113):
    with np.load(path, allow_pickle=False) as f:
        x = f["x"]
        y = f["y"]
    rng = np.random.RandomState(seed)
    indices = np.arange(len(x))
    rng.shuffle(indices)
    x = x[indices]
    y = y[indices]
    x_train = np.array(x[: int(len(x) * (1 - test_split))])
    y_train = np.array(y[: int(len(x) * (1 - test_split))])
    x_test = np.array(x[int(len(x) * (1 - test_split)):])
    y_test = np.array(y[int(len(x) * (1 - test_split)):])
    return (x_train, y_train), (x_test, y_test)


def keras_to_categorical(x, num_classes=None):
    x = np.array(x, dtype="int64")
    input_shape = x.shape
    if input_shape and input_shape[-1] == 1 and len(input_shape) > 1:
        input_shape = tuple(input_shape[:-1])
    x = x.reshape(-1)
    if not num_classes:
        num_classes = np.max(x) + 1
    batch_size = x.shape[0]
    categorical = np.zeros((batch_size, num_classes))
    categorical[np.arange(batch_size), x] = 1
    return np.reshape(categorical, input_shape + (num_classes,))


# ---- synthetic files in Keras's layout ---------------------------------------------------------
def write_reuters(path, n=300, vocab=500, seed=0):
    rng = np.random.default_rng(seed)
    xs = np.empty(n, dtype=object)
    # (no empty newswire, as in the real file: Keras's own code fails on one without start_char)
    xs[:] = [list(map(int, rng.integers(1, vocab, rng.integers(1, 60)))) for _ in range(n)]
    np.savez(path, x=xs, y=rng.integers(0, 46, n))
    return path


def write_boston(path, n=506, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 13))
    x = z * rng.uniform(0.1, 100, 13) + rng.uniform(0, 50, 13)  # features on their own scales
    y = 22 + 4 * z[:, 0] - 3 * z[:, 5] + 2 * z[:, 0] * z[:, 1] + rng.normal(size=n)
    np.savez(path, x=x, y=y)
    return path


def plain(seqs):
    return [list(s) for s in seqs]


@pytest.mark.parametrize("kwargs", [{}, {"num_words": 100}, {"maxlen": 30}, {"skip_top": 5},
                                    {"oov_char": None, "num_words": 50}, {"start_char": None},
                                    {"start_char": None, "index_from": 0}, {"test_split": 0.5},
                                    {"seed": 7, "num_words": 200, "maxlen": 40, "skip_top": 2}])
def test_reuters_load_data_is_keras(tmp_path, kwargs):
    path = write_reuters(tmp_path / "reuters.npz")
    (xt, yt), (xv, yv) = reuters.load_data(str(path), **kwargs)
    (kt, kyt), (kv, kyv) = keras_reuters(path, **kwargs)
    assert plain(xt) == plain(kt) and plain(xv) == plain(kv)
    np.testing.assert_array_equal(yt, kyt)
    np.testing.assert_array_equal(yv, kyv)
    assert isinstance(xt, imdbfast.Sequences)


def test_reuters_word_index_labels_and_bad_files(tmp_path, monkeypatch):
    (tmp_path / "reuters_word_index.json").write_text('{"said": 1, "mln": 2}')
    monkeypatch.setenv("IMDBFAST_DATA", str(tmp_path))
    monkeypatch.setenv("IMDBFAST_OFFLINE", "1")
    assert reuters.get_word_index() == {"said": 1, "mln": 2}
    assert len(reuters.get_label_names()) == 46 and reuters.get_label_names()[3] == "earn"
    bad = np.empty(2, dtype=object)
    bad[:] = [[1, 2], "not ids"]
    np.savez(tmp_path / "bad.npz", x=bad, y=np.array([0, 1]))
    with pytest.raises(ValueError, match="bad.npz"):
        reuters.load_data(str(tmp_path / "bad.npz"))

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    evil = np.empty(1, dtype=object)
    evil[0] = Evil()
    with open(tmp_path / "evil.npy", "wb") as f:
        np.lib.format.write_array(f, evil, allow_pickle=True)
    import zipfile
    with zipfile.ZipFile(tmp_path / "evil.npz", "w") as z:
        z.write(tmp_path / "evil.npy", "x.npy")
        z.writestr("y.npy", pickle.dumps(0))
    with pytest.raises(ValueError, match="refused"):
        reuters.load_data(str(tmp_path / "evil.npz"))
    with pytest.raises(FileNotFoundError, match="reuters.npz"):
        reuters.load_data()  # offline, not in $IMDBFAST_DATA
    for bad_split in (-0.1, 1.5):
        with pytest.raises(ValueError, match="test_split"):
            reuters.load_data(str(write_reuters(tmp_path / "r.npz")), test_split=bad_split)


@pytest.mark.parametrize("kwargs", [{}, {"test_split": 0.0}, {"test_split": 0.5, "seed": 3}])
def test_boston_load_data_is_keras(tmp_path, kwargs):
    path = write_boston(tmp_path / "boston_housing.npz")
    got, want = boston_housing.load_data(str(path), **kwargs), keras_boston(path, **kwargs)
    for g, w in zip(got, want):
        for a, b in zip(g, w):
            np.testing.assert_array_equal(a, b)
            assert a.dtype == b.dtype


def test_boston_refuses_bad_arguments_and_files(tmp_path):
    path = write_boston(tmp_path / "boston_housing.npz")
    with pytest.raises(ValueError, match="test_split"):
        boston_housing.load_data(str(path), test_split=1.0)
    obj = np.empty(2, dtype=object)
    obj[:] = [1, 2]
    np.savez(tmp_path / "o.npz", x=obj, y=np.ones(2))
    with pytest.raises(ValueError, match="pickles are not read"):
        boston_housing.load_data(str(tmp_path / "o.npz"))
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(ValueError, match="not a readable npz"):
        boston_housing.load_data(str(tmp_path / "junk.npz"))


@pytest.mark.parametrize("labels, n", [([0, 3, 1], None), ([[2], [0]], None), ([1, 1], 5),
                                       (np.array([[0, 1], [2, 0]]), 3), ([], 4)])
def test_to_categorical_is_keras(labels, n):
    got = imdbfast.utils.to_categorical(labels, n)
    want = keras_to_categorical(labels, n) if len(labels) else np.zeros((0, 4))
    np.testing.assert_array_equal(got, want)
    assert got.dtype == want.dtype


def test_to_categorical_refuses_bad_labels():
    for bad, n in (([0, -1], None), ([0, 5], 3), ([0.5], None), (["a"], None)):
        with pytest.raises(ValueError):
            imdbfast.utils.to_categorical(bad, n)


def test_the_regression_notebook_runs_with_imports_changed(tmp_path, monkeypatch):
    """§4.3's cells on a synthetic file in Boston's layout: normalisation, the model-building
    function, K-fold validation by hand, batch sizes 16 and 1."""
    write_boston(tmp_path / "boston_housing.npz")
    monkeypatch.setenv("IMDBFAST_DATA", str(tmp_path))
    from imdbfast.datasets import boston_housing as bh  # was: from tensorflow.keras.datasets ...
    (train_data, train_targets), (test_data, test_targets) = bh.load_data()
    mean = train_data.mean(axis=0)
    train_data -= mean
    std = train_data.std(axis=0)
    train_data /= std
    test_data -= mean
    test_data /= std

    def build_model():
        model = imdbfast.Sequential([layers.Dense(64, activation="relu"),
                                     layers.Dense(64, activation="relu"), layers.Dense(1)],
                                    seed=0)
        model.compile(optimizer="rmsprop", loss="mse", metrics=["mae"])
        return model

    k = 4
    num_val_samples = len(train_data) // k
    all_scores = []
    for i in range(k):
        val_data = train_data[i * num_val_samples: (i + 1) * num_val_samples]
        val_targets = train_targets[i * num_val_samples: (i + 1) * num_val_samples]
        partial_train_data = np.concatenate([train_data[:i * num_val_samples],
                                             train_data[(i + 1) * num_val_samples:]], axis=0)
        partial_train_targets = np.concatenate([train_targets[:i * num_val_samples],
                                                train_targets[(i + 1) * num_val_samples:]], axis=0)
        model = build_model()
        history = model.fit(partial_train_data, partial_train_targets,
                            validation_data=(val_data, val_targets), epochs=60, batch_size=16,
                            verbose=0)
        val_mse, val_mae = model.evaluate(val_data, val_targets, verbose=0)
        all_scores.append(val_mae)
        assert val_mae == pytest.approx(history.history["val_mae"][-1], rel=1e-9)
    # a trained model beats predicting the mean by far (the targets' noise is 1, their mean
    # absolute deviation ~4; the book trains 100-500 epochs, 60 suffice for half of it)
    baseline = np.mean(np.abs(train_targets - train_targets.mean()))
    assert np.mean(all_scores) < baseline / 2
    model = build_model()
    model.fit(train_data, train_targets, epochs=3, batch_size=1, verbose=0)  # batch size 1
    test_mse_score, test_mae_score = model.evaluate(test_data, test_targets, verbose=0)
    assert np.isfinite(test_mse_score) and test_mae_score < baseline * 1.5
    assert model.predict(test_data, verbose=0).shape == (len(test_data), 1)


def test_reuters_with_empty_newswires(tmp_path):
    """Where Keras's own code fails (max() of an empty list without start_char), imdbfast
    computes num_words over the ids there are."""
    xs = np.empty(3, dtype=object)
    xs[:] = [[5, 6], [], [9]]
    np.savez(tmp_path / "r.npz", x=xs, y=np.array([1, 2, 3]))
    (xt, yt), (xv, yv) = reuters.load_data(str(tmp_path / "r.npz"), start_char=None,
                                           test_split=0.0, seed=1)
    # shifted by 3: [8, 9], [], [12]; num_words = 12, so 12 becomes oov_char 2
    assert sorted(map(tuple, plain(xt))) == [(), (2,), (8, 9)]
