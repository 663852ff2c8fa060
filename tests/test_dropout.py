"""Dropout (chapter 5: layers.Dropout(0.5) after each hidden layer): the counter-based masks
against their NumPy transcription and their statistics against theory, the same bits on every
thread count and backend, training against the float64 reference with the same masks,
inference as the identity, the Keras API, files and errors.

Trajectories are compared within reference.TRAJECTORY (justified there)."""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import imdbfast
from imdbfast import _core, layers

import reference as ref
from conftest import assert_close, synthetic_sequences
from datautil import assert_gpu_fit_matches_cpu, assert_gradients_match, make_net

DATA = Path(__file__).resolve().parent / "data"


def sim_module():
    try:
        from imdbfast import _cuda_sim
    except ImportError:
        return None
    return _cuda_sim


# ---- the masks ------------------------------------------------------------------------------

def test_masks_are_the_reference_hash_on_every_backend(kernels, rng):
    a = rng.normal(0, 1, (300, 24)).astype(np.float32)
    rows = rng.permutation(1000)[:300].astype(np.int64)
    for seed, rate, step in [(0, 0.5, 0), (12345, 0.2, 7), (2**63 - 1, 0.9, 10**12)]:
        d = kernels.dropout(a, rows, seed, rate, step)
        keep = ref.dropout_keep(seed, step, rows, 24, rate)
        np.testing.assert_array_equal(d != 0, keep & (a != 0))
        # a / float32(1 - rate), as Keras divides: exact to float32 rounding
        np.testing.assert_array_equal(d[keep], (a / np.float32(1 - rate))[keep])


@settings(max_examples=40, deadline=None)
@given(B=st.integers(1, 40), H=st.integers(1, 70), seed=st.integers(0, 2**63 - 1),
       rate=st.floats(0, 0.99), step=st.integers(0, 2**40), data=st.data())
def test_masks_are_bitwise_the_same_on_the_cpu_and_the_gpu_simulator(B, H, seed, rate, step,
                                                                      data):
    sim = sim_module()
    if sim is None:
        pytest.skip("imdbfast was built without the CUDA simulator")
    rows = np.array(data.draw(st.lists(st.integers(0, 10**9), min_size=B, max_size=B)),
                    dtype=np.int64)
    a = np.linspace(-2, 2, B * H, dtype=np.float32).reshape(B, H)
    cpu = _core.dropout(a, rows, seed, rate, step)
    np.testing.assert_array_equal(cpu, sim.dropout(a, rows, seed, rate, step))
    np.testing.assert_array_equal(cpu != 0, ref.dropout_keep(seed, step, rows, H, rate) & (a != 0))


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.8])
def test_masked_activations_have_the_theoretical_mean_and_variance(rate):
    """On ones, inverted dropout gives mean 1 and variance rate / (1 - rate); the keep
    fraction is 1 - rate. 4000 x 64 elements: 6 standard errors is a bound a correct mask
    fails about once in 10^9 runs, and a biased or correlated one fails at once."""
    n, H = 4000, 64
    ones = np.ones((n, H), np.float32)
    d = _core.dropout(ones, np.arange(n, dtype=np.int64), 99, rate, 3).astype(np.float64)
    N = d.size
    var = rate / (1 - rate)
    assert abs(d.mean() - 1) < 6 * np.sqrt(var / N)
    assert abs((d != 0).mean() - (1 - rate)) < 6 * np.sqrt(rate * (1 - rate) / N)
    # the sample variance's standard error, sqrt((mu4 - var^2) / N) for this two-point law
    # (0 at rate 0.5), plus its O(var / N) bias from the sample mean
    kp = 1 - rate
    mu4 = kp * (1 / kp - 1) ** 4 + (1 - kp) * 1
    assert abs(d.var() - var) < 6 * np.sqrt((mu4 - var ** 2) / N) + 10 * var / N
    # independent across steps, rows and units: no correlation beyond noise
    other = _core.dropout(ones, np.arange(n, dtype=np.int64), 99, rate, 4) != 0
    kept = d != 0
    for x, y in [(kept, other), (kept[:-1], kept[1:]), (kept[:, :-1], kept[:, 1:])]:
        r = np.corrcoef(x.ravel(), y.ravel())[0, 1]
        assert abs(r) < 6 / np.sqrt(x.size), r


def test_rate_zero_is_the_identity_and_bad_rates_are_refused(kernels):
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    rows = np.arange(3, dtype=np.int64)
    np.testing.assert_array_equal(kernels.dropout(a, rows, 1, 0.0, 0), a)
    for bad in (1.0, -0.1, float("nan")):
        with pytest.raises(ValueError, match="rate"):
            kernels.dropout(a, rows, 1, bad, 0)


# ---- training --------------------------------------------------------------------------------

def data(rng, n, D, mean_len=30):
    seqs = synthetic_sequences(rng, n, D, mean_len=mean_len, empty_every=50)
    return imdbfast.multi_hot(seqs, D), rng.integers(0, 2, (n, 1)).astype(np.float32), \
        ref.multi_hot(seqs, D)


CASES = [
    # (acts, units, optimizer, dropouts (rate, seed) per layer)
    (["relu", "relu", "sigmoid"], 16, "rmsprop", [(0.5, 11), (0.5, 12), None]),  # the book
    (["tanh", "sigmoid"], 32, "adam", [(0.3, 5), None]),
    (["relu", "sigmoid", "relu", "sigmoid"], 8, "sgd", [None, (0.2, 1), (0.6, 2), None]),
]


@pytest.mark.parametrize("acts, units, opt, drops", CASES, ids=["book", "adam-tanh", "sgd-deep"])
def test_dropout_trajectory_matches_reference(kernels, rng, threads, acts, units, opt, drops):
    n, D, bs = 600, 1000, 100
    x, y, dense = data(rng, n, D)
    dims = [D] + [units] * (len(acts) - 1) + [1]
    weights = ref.init_weights(rng, dims)
    fields = [{} if d is None else {"dropout": d[0], "dropout_seed": d[1]} for d in drops]
    lr = 0.05 if opt == "sgd" else 1e-3
    net = make_net(kernels, dims, acts, "bce_logits", opt, lr, layers=fields)
    net.set_weights(weights)
    model = ref.Model(weights, acts, "bce_logits", opt, dropouts=drops, learning_rate=lr)
    for epoch in range(2):
        order = _core.shuffle_order(n, 9, epoch)
        loss_sum, correct, rows, per_batch, per_acc = net.train_batches(
            x, y, None, order, bs, 0, 6, threads, True)
        ref_batches, ref_loss, _ = model.train_epoch(dense, y.astype(np.float64), order, bs)
        assert_close(per_batch, [b[0] for b in ref_batches], **ref.TRAJECTORY,
                     what=f"epoch {epoch} batch losses")
        assert loss_sum / rows == pytest.approx(ref_loss, rel=1e-5)
    for i, (g, want) in enumerate(zip(net.get_weights(), model.params)):
        assert_close(g, want, rtol=1e-4, atol=1e-5, what=f"weights {i}")
    # inference is the identity: evaluate equals the reference without masks
    loss_sum, _, rows = net.evaluate(x, y, None, threads)
    assert loss_sum / rows == pytest.approx(model.evaluate(dense, y.astype(np.float64))[0],
                                            rel=1e-5)


def test_dropout_gradient_matches_finite_differences(rng):
    """The reference's gradient with fixed masks (what the core is checked against), by
    central differences (float64, h = 1e-6: see test_gradcheck.py)."""
    acts = ["tanh", "tanh", "sigmoid"]
    params = [p.astype(np.float64) + rng.normal(0, 0.1, p.shape)
              for p in ref.init_weights(rng, [10, 6, 5, 1])]
    x = (rng.random((8, 10)) < 0.4).astype(np.float64)
    y = rng.integers(0, 2, (8, 1)).astype(np.float64)
    masks = [ref.dropout_factors(3, 0, np.arange(8), 6, 0.5),
             ref.dropout_factors(4, 0, np.arange(8), 5, 0.3), None]
    assert_gradients_match(ref.gradients(params, acts, "bce_logits", x, y, None, masks)[2],
                           params,
                           lambda ps: ref.gradients(ps, acts, "bce_logits", x, y, None, masks)[0])


def train_state(x, y, weights, threads, module=_core):
    net = make_net(module, [x.n_cols, 16, 16, 1], ["relu", "relu", "sigmoid"], "bce_logits",
                   "rmsprop", layers=[{"dropout": 0.5, "dropout_seed": 3},
                                      {"dropout": 0.25, "dropout_seed": 4}, {}])
    net.set_weights(weights)
    n = x.n_rows
    for e in range(2):
        net.train_batches(x, y, None, _core.shuffle_order(n, 3, e), 512, 0, -(-n // 512), threads)
    return net.get_weights()


def test_dropout_training_is_bitwise_identical_for_any_thread_count(rng):
    x, y, _ = data(rng, 3000, 2000, mean_len=60)
    weights = ref.init_weights(rng, [2000, 16, 16, 1])
    w1 = train_state(x, y, weights, 1)
    for threads in (2, 3, 5):
        for a, b in zip(w1, train_state(x, y, weights, threads)):
            np.testing.assert_array_equal(a, b)


# ---- the Keras API ----------------------------------------------------------------------------

def chapter_five(rate=0.5, seed=0, D=400):
    m = imdbfast.Sequential([layers.Input((D,)), layers.Dense(16, activation="relu"),
                             layers.Dropout(rate), layers.Dense(16, activation="relu"),
                             layers.Dropout(rate), layers.Dense(1, activation="sigmoid")],
                            seed=seed)
    m.compile(optimizer="rmsprop", loss="binary_crossentropy", metrics=["accuracy"])
    return m


def plain(m):
    p = imdbfast.Sequential([layers.Input((m.input_shape[1],)),
                             layers.Dense(16, activation="relu"),
                             layers.Dense(16, activation="relu"),
                             layers.Dense(1, activation="sigmoid")])
    p.compile(optimizer="rmsprop", loss="binary_crossentropy", metrics=["accuracy"])
    p.set_weights(m.get_weights())
    return p


def xy(rng, n=600, D=400):
    seqs = synthetic_sequences(rng, n, D, mean_len=30)
    return imdbfast.multi_hot_dense(seqs, D), rng.integers(0, 2, n).astype(np.float32)


def test_dropout_layers_as_keras(rng):
    m = chapter_five()
    assert [l.name for l in m.layers] == ["dense", "dropout", "dense_1", "dropout_1", "dense_2"]
    d = m.get_layer("dropout")
    assert d.rate == 0.5 and d.get_weights() == [] and d.count_params() == 0
    assert d.output_shape == (None, 16) and d.weights == []
    assert m.count_params() == 400 * 16 + 16 + 16 * 16 + 16 + 17
    assert d.get_config() == {"name": "dropout", "trainable": True, "dtype": "float32",
                              "rate": 0.5, "seed": None, "noise_shape": None}
    x, y = xy(rng)
    # inference is the identity: predict and evaluate equal the model without the Dropouts
    p = plain(m)
    np.testing.assert_array_equal(m.predict(x, verbose=0), p.predict(x, verbose=0))
    assert m.evaluate(x, y, verbose=0) == p.evaluate(x, y, verbose=0)
    h = m.fit(x, y, epochs=2, batch_size=64, verbose=0)
    hp = plain(chapter_five()).fit(x, y, epochs=2, batch_size=64, verbose=0)
    assert h.history["loss"][0] != hp.history["loss"][0]  # training is masked


def test_the_same_seed_gives_the_same_bits_and_another_seed_others(rng):
    x, y = xy(rng)

    def run(model_seed, **layer):
        m = imdbfast.Sequential([layers.Input((400,)), layers.Dense(16, activation="relu"),
                                 layers.Dropout(0.5, **layer), layers.Dense(1, "sigmoid")],
                                seed=model_seed)
        m.compile("rmsprop", "binary_crossentropy")
        m.fit(x, y, epochs=2, batch_size=64, verbose=0, seed=1)
        return m.get_weights()

    a, b = run(0), run(0)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    c = run(0, seed=7)  # the layer's own seed changes its masks, not the initial weights
    assert not np.array_equal(a[2], c[2])


def test_a_checkpoint_resumes_bit_for_bit(rng, tmp_path):
    x, y = xy(rng)
    whole = chapter_five(seed=None)
    half = imdbfast.Sequential.from_config(whole.get_config())
    half.compile(optimizer="rmsprop", loss="binary_crossentropy", metrics=["accuracy"])
    half.set_weights(whole.get_weights())
    whole.fit(x, y, epochs=4, batch_size=64, verbose=0, seed=5)
    half.fit(x, y, epochs=2, batch_size=64, verbose=0, seed=5)
    half.save(tmp_path / "half.npz")
    resumed = imdbfast.load_model(tmp_path / "half.npz")
    copy = pickle.loads(pickle.dumps(resumed))
    for m in (resumed, copy):
        m.fit(x, y, epochs=4, initial_epoch=2, batch_size=64, verbose=0, seed=5)
        for u, v in zip(m.get_weights(), whole.get_weights()):
            np.testing.assert_array_equal(u, v)


def test_keras_files_with_dropout(tmp_path, rng):
    pytest.importorskip("h5py", reason="h5py not installed (the keras-io extra)")
    k = imdbfast.load_model(DATA / "keras_dropout.keras")  # written by Keras 3.15
    assert [type(l).__name__ for l in k.layers] == ["Dense", "Dropout", "Dense"]
    x = rng.random((5, 50)).astype(np.float32)
    w = k.get_weights()
    want = 1 / (1 + np.exp(-(np.maximum(x @ w[0] + w[1], 0) @ w[2] + w[3])))
    np.testing.assert_allclose(k.predict(x, verbose=0), want, rtol=1e-5, atol=1e-6)
    m = chapter_five()
    m.save(tmp_path / "m.keras")
    with zipfile.ZipFile(tmp_path / "m.keras") as z:
        import h5py
        with h5py.File(io.BytesIO(z.read("model.weights.h5"))) as h5:
            assert sorted(h5["layers"]) == ["dense", "dense_1", "dense_2", "dropout",
                                            "dropout_1"]
            assert len(h5["layers/dropout/vars"]) == 0
    again = imdbfast.load_model(tmp_path / "m.keras")
    assert [l.rate for l in again.layers if isinstance(l, layers.Dropout)] == [0.5, 0.5]
    for u, v in zip(again.get_weights(), m.get_weights()):
        np.testing.assert_array_equal(u, v)


def test_summary_lists_the_dropout_layers_as_keras(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    m = chapter_five(D=10000)
    lines = []
    m.summary(print_fn=lines.append)
    text = "\n".join(lines)
    # Keras 3.15's rows for this model (keras.Sequential(...).summary(), a wide terminal)
    assert ("│ dropout_1 (Dropout)                  │ (None, 16)                  │               "
            "0 │") in text
    assert "Total params: 160,305 (626.19 KB)" in text
    u = imdbfast.Sequential([layers.Dense(16), layers.Dropout(0.5), layers.Dense(1)])
    lines = []
    u.summary(show_trainable=True, print_fn=lines.append)
    assert ("│ dropout (Dropout)                     │ ?                             │              "
            "0 │    -    │") in "\n".join(lines)


@pytest.mark.parametrize("make, match", [
    (lambda: layers.Dropout(1.0), "rate"),
    (lambda: layers.Dropout(-0.1), "rate"),
    (lambda: layers.Dropout("0.5"), "rate"),
    (lambda: layers.Dropout(0.5, noise_shape=(None, 1)), "noise_shape"),
    (lambda: layers.Dropout(0.5, seed=-1), "seed"),
    (lambda: imdbfast.Sequential([layers.Input((5,)), layers.Dropout(0.2), layers.Dense(1)]),
     "must follow a Dense"),
    (lambda: imdbfast.Sequential([layers.Dense(3), layers.Dropout(0.2), layers.Dropout(0.2)]),
     "must follow a Dense"),
])
def test_bad_dropouts_are_refused_by_name(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


def test_a_last_dropout_predicts_but_does_not_train(rng):
    x, y = xy(rng, 50, 400)
    m = imdbfast.Sequential([layers.Input((400,)), layers.Dense(1, "sigmoid"),
                             layers.Dropout(0.5)], seed=0)
    m.compile("rmsprop", "binary_crossentropy")
    before = m.get_weights()
    assert m.predict(x, verbose=0).shape == (50, 1)
    with pytest.raises(ValueError, match="ends with Dropout"):
        m.fit(x, y, verbose=0)
    with pytest.raises(ValueError, match="ends with Dropout"):
        m.train_on_batch(x, y)
    for u, v in zip(m.get_weights(), before):
        np.testing.assert_array_equal(u, v)
    m.add(layers.Dense(1, "sigmoid"))  # then it is a hidden layer's Dropout
    m.compile("rmsprop", "binary_crossentropy")
    m.fit(x, y, verbose=0)
    assert m.pop().units == 1 and isinstance(m.pop(), layers.Dropout)


@pytest.mark.parametrize("kind", [pytest.param("sim", id="cuda-sim"),
                                  pytest.param("cuda", id="cuda", marks=pytest.mark.cuda)])
def test_dropout_on_the_gpu_matches_the_cpu(rng, kind):
    from conftest import _gpu_module

    x, y = xy(rng)
    assert_gpu_fit_matches_cpu(_gpu_module(kind), chapter_five(), x, y)  # (the same masks)


_KERAS_SIDE = r"""
import importlib.util, os, sys
os.environ.setdefault("KERAS_BACKEND", next(b for b in ("jax", "tensorflow", "torch")
                                            if importlib.util.find_spec(b)))
import numpy as np, keras
folder = sys.argv[1]
m = keras.models.load_model(os.path.join(folder, "m.keras"))
x = np.load(os.path.join(folder, "x.npy"))
names = [type(l).__name__ for l in m.layers]
np.savez(os.path.join(folder, "out.npz"), pred=m.predict(x, verbose=0), names=np.array(names),
         rate=m.layers[1].rate)
"""


def test_keras_loads_a_dropout_model_imdbfast_wrote(tmp_path, rng):
    import importlib.util
    import subprocess
    import sys
    if importlib.util.find_spec("h5py") is None or importlib.util.find_spec("keras") is None or \
            not any(importlib.util.find_spec(b) for b in ("jax", "tensorflow", "torch")):
        pytest.skip("Keras 3 with a backend and h5py not installed")
    x, y = xy(rng, 100)
    m = chapter_five(rate=0.3)
    m.fit(x, y, epochs=1, batch_size=32, verbose=0)
    m.save(tmp_path / "m.keras")
    np.save(tmp_path / "x.npy", x)
    r = subprocess.run([sys.executable, "-c", _KERAS_SIDE, str(tmp_path)], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    out = np.load(tmp_path / "out.npz")
    assert list(out["names"]) == ["Dense", "Dropout", "Dense", "Dropout", "Dense"]
    assert float(out["rate"]) == 0.3
    # Keras's inference is the identity too; float32 sums in another order
    np.testing.assert_allclose(out["pred"], m.predict(x, verbose=0), atol=1e-6, rtol=0)
