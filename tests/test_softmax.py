"""Multi-class classification (§4.2): a softmax output layer, categorical and sparse
categorical cross-entropy, categorical and top-k accuracy. The kernels against the float64
reference on every backend, trajectories, gradients by finite differences, the metrics'
definitions (argmax ties, in_top_k ties), the Reuters notebook's cells on a synthetic file in
Keras's layout, live Keras where installed, and the errors.

Trajectories are compared within reference.TRAJECTORY (justified there)."""

from __future__ import annotations

import copy
import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest

import imdbfast
from imdbfast import _core, layers, losses, metrics, utils

import reference as ref
from conftest import assert_close, synthetic_sequences
from datautil import assert_epochs_follow_reference, assert_gradients_match, make_net

HAVE_KERAS = (importlib.util.find_spec("keras") is not None and
              any(importlib.util.find_spec(b) is not None for b in ("jax", "tensorflow", "torch")))


def test_softmax_kernel_is_the_reference(kernels, rng):
    z = rng.normal(0, 5, (200, 46)).astype(np.float32)
    z[0] = 80.0  # all equal and large: no overflow, uniform
    z[1, :] = -80.0
    z[1, 7] = 80.0  # one dominant: exp of -160 underflows to 0 cleanly
    a = kernels.softmax_forward(z)
    # exp(z - max z) in float32: the difference itself rounds to |z - max| 2^-24 (here up to
    # ~40 * 6e-8 = 2.4e-6, relative in the exponential), then exp_f32's few ulp and a sum of 46
    assert_close(a, ref.act("softmax", z.astype(np.float64)), rtol=4e-6, atol=1e-12,
                 what="softmax")
    np.testing.assert_allclose(a.sum(axis=1), 1.0, rtol=1e-6)
    with pytest.raises(ValueError, match="softmax"):
        kernels.act_forward(z.ravel(), "softmax")


@pytest.mark.parametrize("loss", ["cce_logits", "cce_from_logits", "mse"])
def test_categorical_loss_kernel_is_the_reference(kernels, rng, loss):
    B, O = 64, 10
    z = rng.normal(0, 3, (B, O)).astype(np.float32)
    act = "linear" if loss == "cce_from_logits" else "softmax"
    a = z.copy() if act == "linear" else kernels.softmax_forward(z)
    y = np.eye(O, dtype=np.float32)[rng.integers(0, O, B)]
    y[3] = 0.1  # a soft row summing to 1
    sw = rng.uniform(0.5, 2, B).astype(np.float32)
    dz, lrow, acc = kernels.loss_forward_backward(z, a, y, sw, act, loss)
    z64, a64, y64 = z.astype(np.float64), a.astype(np.float64), y.astype(np.float64)
    want_l, want_dz, want_acc = ref.loss_and_grad(loss, z64, a64, y64, sw)
    if loss == "mse":
        want_dz = ref.act_grad("softmax", want_dz, z64, a64)
    assert_close(lrow, want_l, rtol=1e-6, atol=1e-7, what="per-row loss")
    assert_close(dz, want_dz, rtol=1e-5, atol=1e-8, what="dz")
    np.testing.assert_array_equal(acc, want_acc)


def test_cce_gradient_matches_finite_differences(rng):
    """The reference's softmax + categorical cross-entropy gradient, and softmax's Jacobian
    under mse (float64, h = 1e-6: see test_gradcheck.py)."""
    for acts, loss in ((["relu", "softmax"], "cce_logits"), (["tanh", "linear"], "cce_from_logits"),
                       (["tanh", "softmax"], "mse")):
        params = [p.astype(np.float64) + rng.normal(0, 0.1, p.shape)
                  for p in ref.init_weights(rng, [9, 5, 4])]
        x = (rng.random((7, 9)) < 0.5).astype(np.float64)
        y = np.eye(4)[rng.integers(0, 4, 7)]
        assert_gradients_match(ref.gradients(params, acts, loss, x, y)[2], params,
                               lambda ps: ref.gradients(ps, acts, loss, x, y)[0],
                               f"{acts} {loss}")


@pytest.mark.parametrize("acts, loss, opt", [
    (["relu", "relu", "softmax"], "cce_logits", "rmsprop"),   # §4.2's model
    (["tanh", "linear"], "cce_from_logits", "adam"),
    (["relu", "softmax"], "mse", "sgd"),
])
def test_multiclass_trajectory_matches_reference(kernels, rng, threads, acts, loss, opt):
    n, D, O, bs = 500, 800, 46, 100
    seqs = synthetic_sequences(rng, n, D, mean_len=30)
    x, dense = imdbfast.multi_hot(seqs, D), ref.multi_hot(seqs, D)
    y = np.eye(O, dtype=np.float32)[rng.integers(0, O, n)]
    dims = [D] + [32] * (len(acts) - 1) + [O]
    weights = ref.init_weights(rng, dims)
    lr = 0.05 if opt == "sgd" else 1e-3
    net = make_net(kernels, dims, acts, loss, opt, lr)
    net.set_weights(weights)
    model = ref.Model(weights, acts, loss, opt, learning_rate=lr)
    for epoch in range(2):
        order = _core.shuffle_order(n, 4, epoch)
        loss_sum, correct, rows, per_batch, per_acc = net.train_batches(
            x, y, None, order, bs, 0, 5, threads, True)
        ref_batches, ref_loss, ref_acc = model.train_epoch(dense, y.astype(np.float64), order, bs)
        assert_close(per_batch, [b[0] for b in ref_batches], **ref.TRAJECTORY,
                     what=f"epoch {epoch} batch losses")
        assert loss_sum / rows == pytest.approx(ref_loss, rel=1e-5)
        # argmax of float32 outputs may pick another of two within rounding: one row of slack
        assert abs(correct - ref_acc * rows) <= 1
    for i, (g, want) in enumerate(zip(net.get_weights(), model.params)):
        assert_close(g, want, rtol=1e-4, atol=1e-5, what=f"weights {i}")


# ---- the metrics ----------------------------------------------------------------------------

def test_categorical_metrics_follow_keras_definitions():
    p = np.array([[0.1, 0.6, 0.3], [0.4, 0.4, 0.2], [0.2, 0.3, 0.5], [0.5, 0.25, 0.25],
                  [np.nan, 0.2, 0.1]], np.float32)
    y = np.eye(3, dtype=np.float32)[[1, 1, 0, 2, 1]]
    m = metrics.CategoricalAccuracy()
    m.update_state(y, p)
    # argmax ties go to the first index (row 1 predicts 0); a NaN output never wins (row 4: 1)
    assert m.result() == pytest.approx(2 / 5)
    s = metrics.SparseCategoricalAccuracy()
    s.update_state(np.array([1, 1, 0, 2, 1]), p)
    assert s.result() == m.result()
    t = metrics.TopKCategoricalAccuracy(k=2)
    t.update_state(y, p)
    # in_top_k: fewer than k outputs above the true class's (ties count for it; NaN loses)
    want = [1, 1, 0, 1, 1]
    assert t.result() == pytest.approx(np.mean(want))
    sk = metrics.SparseTopKCategoricalAccuracy(k=1)
    sk.update_state([[1], [0], [2], [0], [1]], p)
    assert sk.result() == pytest.approx(np.mean([1, 1, 1, 1, 1]))  # (0.4 ties 0.4: counts)
    c = metrics.CategoricalCrossentropy()
    q = p[:4] / p[:4].sum(axis=1, keepdims=True)
    c.update_state(y[:4], p[:4])
    assert c.result() == pytest.approx(np.mean(-np.log(np.clip(q, 1e-7, 1 - 1e-7))[y[:4] == 1]),
                                       rel=1e-6)
    with pytest.raises(ValueError, match="class ids"):
        s.update_state(np.array([0, 3, 1, 1, 1]), p)
    with pytest.raises(ValueError, match="k"):
        metrics.TopKCategoricalAccuracy(k=0)


def test_accuracy_resolves_as_keras():
    one = imdbfast.Sequential([layers.Input((5,)), layers.Dense(1, "sigmoid")])
    many = imdbfast.Sequential([layers.Input((5,)), layers.Dense(3, "softmax")])
    one.compile("rmsprop", "binary_crossentropy", metrics=["accuracy"])
    many.compile("rmsprop", "categorical_crossentropy", metrics=["accuracy", "acc"])
    assert type(one._metrics[0][1]).__name__ == "BinaryAccuracy"
    assert [type(m).__name__ for _, m in many._metrics] == ["CategoricalAccuracy"] * 2
    assert many.metrics_names == ["loss", "accuracy", "acc"]


# ---- the Reuters notebook -------------------------------------------------------------------

def write_learnable_reuters(path, n=2400, vocab=3000, seed=0):
    """Newswires in Keras's layout whose words say their topic: each of the 46 topics has 30
    words of its own, and a wire mixes a dozen of them with common words."""
    rng = np.random.default_rng(seed)
    topics = rng.integers(0, 46, n)
    own = rng.permutation(np.arange(100, vocab))[:46 * 30].reshape(46, 30)
    xs = np.empty(n, dtype=object)
    xs[:] = [list(map(int, np.concatenate([rng.choice(own[t], 12), rng.integers(1, 100, 20)])))
             for t in topics]
    np.savez(path, x=xs, y=topics)


def vectorize_sequences(sequences, dimension=10000):  # the book's cell, unchanged
    results = np.zeros((len(sequences), dimension))
    for i, sequence in enumerate(sequences):
        for j in sequence:
            results[i, j] = 1.
    return results


def test_the_reuters_notebook_runs_with_imports_changed(tmp_path, monkeypatch):
    """§4.2's cells on a synthetic file in Reuters's layout: one-hot labels and
    categorical_crossentropy, the random baseline, predict's distributions, integer labels
    with sparse_categorical_crossentropy, the information bottleneck."""
    write_learnable_reuters(tmp_path / "reuters.npz")
    (tmp_path / "reuters_word_index.json").write_text(json.dumps({"said": 1, "mln": 2}))
    monkeypatch.setenv("IMDBFAST_DATA", str(tmp_path))
    from imdbfast.datasets import reuters  # was: from tensorflow.keras.datasets import reuters
    from imdbfast.utils import to_categorical  # was: from tensorflow.keras.utils import ...
    (train_data, train_labels), (test_data, test_labels) = reuters.load_data(num_words=10000)
    assert len(train_data) == 1920 and len(test_data) == 480
    word_index = reuters.get_word_index()
    reverse_word_index = dict([(value, key) for (key, value) in word_index.items()])
    decoded_newswire = " ".join([reverse_word_index.get(i - 3, "?") for i in train_data[0]])
    assert decoded_newswire.startswith("?")
    x_train = vectorize_sequences(train_data)
    x_test = vectorize_sequences(test_data)
    y_train = to_categorical(train_labels)
    y_test = to_categorical(test_labels)
    assert y_train.shape == (1920, 46)

    model = imdbfast.Sequential([layers.Dense(64, activation="relu"),
                                 layers.Dense(64, activation="relu"),
                                 layers.Dense(46, activation="softmax")], seed=0)
    model.compile(optimizer="rmsprop", loss="categorical_crossentropy",
                  metrics=["accuracy", metrics.TopKCategoricalAccuracy(k=3)])
    x_val, partial_x_train = x_train[:500], x_train[500:]
    y_val, partial_y_train = y_train[:500], y_train[500:]
    history = model.fit(partial_x_train, partial_y_train, epochs=20, batch_size=512,
                        validation_data=(x_val, y_val), verbose=0)
    h = history.history
    assert sorted(h) == ["accuracy", "loss", "top_k_categorical_accuracy", "val_accuracy",
                         "val_loss", "val_top_k_categorical_accuracy"]
    assert h["loss"][-1] < h["loss"][0] / 4 and h["val_accuracy"][-1] > 0.9
    assert all(t >= a for t, a in zip(h["val_top_k_categorical_accuracy"], h["val_accuracy"]))
    results = model.evaluate(x_test, y_test, verbose=0)
    assert results[1] > 0.9
    test_labels_copy = copy.copy(test_labels)
    np.random.default_rng(0).shuffle(test_labels_copy)
    hits_array = np.array(test_labels) == np.array(test_labels_copy)
    assert hits_array.mean() < 0.1  # the random baseline
    predictions = model.predict(x_test, verbose=0)
    assert predictions[0].shape == (46,)
    np.testing.assert_allclose(predictions.sum(axis=1), 1.0, rtol=1e-5)
    assert np.mean(np.argmax(predictions, axis=1) == test_labels) == pytest.approx(results[1])

    y_train = np.array(train_labels)  # integer labels
    y_test = np.array(test_labels)
    model.compile(optimizer="rmsprop", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    sparse_eval = model.evaluate(x_test, y_test, verbose=0)
    model.compile(optimizer="rmsprop", loss="categorical_crossentropy", metrics=["accuracy"])
    assert model.evaluate(x_test, to_categorical(test_labels), verbose=0) == sparse_eval

    bottleneck = imdbfast.Sequential([layers.Dense(64, activation="relu"),
                                      layers.Dense(4, activation="relu"),
                                      layers.Dense(46, activation="softmax")], seed=0)
    bottleneck.compile(optimizer="rmsprop", loss="sparse_categorical_crossentropy",
                       metrics=["accuracy"])
    hb = bottleneck.fit(partial_x_train, y_train[500:], epochs=20, batch_size=128,
                        validation_data=(x_val, y_train[:500]), verbose=0).history
    assert hb["val_accuracy"][-1] < h["val_accuracy"][-1]  # 4 units lose information


# ---- errors ---------------------------------------------------------------------------------

def classifier(classes=5, D=20):
    m = imdbfast.Sequential([layers.Input((D,)), layers.Dense(8, activation="relu"),
                             layers.Dense(classes, activation="softmax")], seed=0)
    m.compile("rmsprop", "categorical_crossentropy", metrics=["accuracy"])
    return m


@pytest.mark.parametrize("loss, y, match", [
    ("sparse_categorical_crossentropy", np.array([0, 1, 5, 2]), r"class id 5 \(row 2\)"),
    ("sparse_categorical_crossentropy", np.array([0, 1, -1, 2]), "out of range"),
    ("sparse_categorical_crossentropy", np.array([0, 1.5, 1, 2]), "whole numbers"),
    ("sparse_categorical_crossentropy", np.eye(5)[[0, 1, 2, 3]], "class ids"),
    ("categorical_crossentropy", np.eye(5)[[0, 1, 2, 3]] * 0.5, "row 0 sums to 0.5"),
    ("categorical_crossentropy", np.eye(5)[[0, 1, 2, 3]] * 2 - 1, r"labels in \[0, 1\]"),
    ("categorical_crossentropy", np.array([0, 1, 2, 3]), "expected shape"),
])
def test_bad_labels_are_refused_and_change_nothing(loss, y, match):
    m = classifier()
    m.compile("rmsprop", loss, metrics=["accuracy"])
    before = m.get_weights()
    x = np.ones((4, 20), np.float32)
    with pytest.raises((ValueError, TypeError), match=match):
        m.fit(x, y, verbose=0)
    for a, b in zip(m.get_weights(), before):
        np.testing.assert_array_equal(a, b)


def test_softmax_and_cross_entropy_go_together():
    m = imdbfast.Sequential([layers.Input((5,)), layers.Dense(3, "sigmoid")])
    with pytest.raises(ValueError, match="needs a softmax output layer"):
        m.compile("rmsprop", "categorical_crossentropy")
    m.compile("rmsprop", losses.CategoricalCrossentropy(from_logits=True))  # sigmoid as logits
    with pytest.raises(ValueError, match="softmax is supported on the output layer only"):
        imdbfast.Sequential([layers.Input((5,)), layers.Dense(3, "softmax"), layers.Dense(1)])
    with pytest.raises(ValueError, match="ignore_class"):
        losses.SparseCategoricalCrossentropy(ignore_class=0)


def test_label_smoothing_as_keras(rng):
    y = np.eye(4, dtype=np.float32)[[0, 3]]
    np.testing.assert_allclose(losses.CategoricalCrossentropy(label_smoothing=0.2).smoothed(y),
                               y * 0.8 + 0.05)


_KERAS_SIDE = r"""
import importlib.util, json, os, sys
os.environ.setdefault("KERAS_BACKEND", next(b for b in ("jax", "tensorflow", "torch")
                                            if importlib.util.find_spec(b)))
import numpy as np, keras
folder = sys.argv[1]
d = np.load(os.path.join(folder, "in.npz"))
out = {}
for loss, y in (("categorical_crossentropy", d["onehot"]),
                ("sparse_categorical_crossentropy", d["ids"])):
    m = keras.Sequential.from_config(json.load(open(os.path.join(folder, "config.json"))))
    m.set_weights([d[f"w{i}"] for i in range(6)])
    m.compile(keras.optimizers.RMSprop(), loss, metrics=["accuracy",
              keras.metrics.TopKCategoricalAccuracy(k=3) if loss.startswith("cat") else
              keras.metrics.SparseTopKCategoricalAccuracy(k=3)])
    h = m.fit(d["x"], y, epochs=3, batch_size=64, shuffle=False, verbose=0)
    for k, v in h.history.items():
        out[loss + "/" + k] = np.array(v)
    out[loss + "/pred"] = m.predict(d["x"], verbose=0)
np.savez(os.path.join(folder, "out.npz"), **out)
"""


@pytest.mark.skipif(not HAVE_KERAS, reason="Keras 3 with a backend not installed")
def test_multiclass_training_as_keras(tmp_path, rng):
    """Our config in Keras, the same weights and batches: histories and predictions agree to
    float32 rounding (Keras's JAX backend computes the loss from clipped probabilities, ours
    from the logits: equal away from saturation)."""
    seqs = synthetic_sequences(rng, 400, 300, mean_len=30)
    x = imdbfast.multi_hot_dense(seqs, 300)
    ids = rng.integers(0, 10, 400)
    onehot = utils.to_categorical(ids, 10)
    m = imdbfast.Sequential([layers.Input((300,)), layers.Dense(32, activation="relu"),
                             layers.Dense(32, activation="relu"),
                             layers.Dense(10, activation="softmax")], seed=3)
    (tmp_path / "config.json").write_text(json.dumps(m.get_config()))
    w0 = m.get_weights()
    np.savez(tmp_path / "in.npz", x=x, ids=ids, onehot=onehot,
             **{f"w{i}": w for i, w in enumerate(w0)})
    r = subprocess.run([sys.executable, "-c", _KERAS_SIDE, str(tmp_path)], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    k = np.load(tmp_path / "out.npz")
    for loss, y, top in (("categorical_crossentropy", onehot,
                          metrics.TopKCategoricalAccuracy(k=3)),
                         ("sparse_categorical_crossentropy", ids,
                          metrics.SparseTopKCategoricalAccuracy(k=3))):
        m.set_weights(w0)
        m.compile("rmsprop", loss, metrics=["accuracy", top])
        h = m.fit(x, y, epochs=3, batch_size=64, shuffle=False, verbose=0).history
        for key, v in h.items():
            np.testing.assert_allclose(v, k[f"{loss}/{key}"], rtol=1e-5, atol=1e-6,
                                       err_msg=f"{loss} {key}")
        np.testing.assert_allclose(m.predict(x, verbose=0), k[f"{loss}/pred"], atol=1e-6)


def test_ten_epochs_follow_the_reference(kernels, rng):
    """#19's fidelity bar: softmax + categorical cross-entropy over 10 epochs (40 steps) with
    the same weights and batch order stays within reference.TRAJECTORY (1e-5 relative)."""
    n, D, O, bs = 200, 600, 46, 50
    seqs = synthetic_sequences(rng, n, D, mean_len=30)
    x, dense = imdbfast.multi_hot(seqs, D), ref.multi_hot(seqs, D)
    y = np.eye(O, dtype=np.float32)[rng.integers(0, O, n)]
    dims, acts = [D, 64, 64, O], ["relu", "relu", "softmax"]
    weights = ref.init_weights(rng, dims)
    net = make_net(kernels, dims, acts, "cce_logits", "rmsprop")
    net.set_weights(weights)
    model = ref.Model(weights, acts, "cce_logits", "rmsprop", learning_rate=1e-3)
    assert_epochs_follow_reference(net, model, x, y, dense, bs, 10)
