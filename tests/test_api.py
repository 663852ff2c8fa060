"""The Keras-compatible API: shapes, History, callbacks, errors, saving, and Keras's math."""

import io
import json
import warnings
from contextlib import redirect_stdout

import numpy as np
import pytest

import imdbfast
from imdbfast import callbacks, layers, optimizers

import reference as ref
from conftest import synthetic_sequences

D = 500


@pytest.fixture
def data(rng):
    seqs = synthetic_sequences(rng, 600, D, mean_len=30)
    # Labels that depend on the words, so that models can learn something.
    y = np.array([int(sum(1 for w in s if w % 2) > len(s) / 2) for s in seqs])
    return seqs, y


def book_model(seed=0, units=16, act="relu", depth=2, input_dim=D):
    return imdbfast.Sequential([layers.Input((input_dim,))] +
                               [layers.Dense(units, activation=act) for _ in range(depth)] +
                               [layers.Dense(1, activation="sigmoid")], seed=seed)


def compiled(**kw):
    m = book_model(**kw)
    m.compile(optimizer="rmsprop", loss="binary_crossentropy", metrics=["accuracy"])
    return m


def test_fit_returns_history_with_sorted_keys(data):
    seqs, y = data
    m = compiled()
    h = m.fit(seqs[:500], y[:500], epochs=3, batch_size=64, validation_data=(seqs[500:], y[500:]),
              verbose=0)
    assert list(h.history) == ["accuracy", "loss", "val_accuracy", "val_loss"]
    assert all(len(v) == 3 and all(isinstance(x, float) for x in v) for v in h.history.values())
    assert h.epoch == [0, 1, 2]
    assert h.params == {"verbose": 0, "epochs": 3, "steps": 8}
    assert m.history is h
    assert h.history["loss"][-1] < h.history["loss"][0]


def test_metric_name_follows_the_string(data):
    seqs, y = data
    m = book_model()
    m.compile("rmsprop", "binary_crossentropy", metrics=["acc"])
    h = m.fit(seqs, y, epochs=1, verbose=0, validation_split=0.2)
    assert list(h.history) == ["acc", "loss", "val_acc", "val_loss"]
    m.compile("rmsprop", "binary_crossentropy")
    assert list(m.fit(seqs, y, epochs=1, verbose=0).history) == ["loss"]
    assert isinstance(m.evaluate(seqs, y, verbose=0), float)


def test_predict_and_evaluate_shapes(data):
    seqs, y = data
    m = compiled()
    m.fit(seqs, y, epochs=1, verbose=0)
    p = m.predict(seqs, verbose=0)
    assert p.dtype == np.float32 and p.shape == (600, 1) and np.all((p > 0) & (p < 1))
    loss, acc = m.evaluate(seqs, y, verbose=0)
    d = m.evaluate(seqs, y, verbose=0, return_dict=True)
    assert d == {"loss": loss, "accuracy": acc}
    assert acc == pytest.approx(np.mean((p[:, 0] > 0.5) == y))


def test_input_forms_give_identical_training(data):
    sp = pytest.importorskip("scipy.sparse")
    seqs, y = data
    dense = imdbfast.multi_hot_dense(seqs, D)
    obj = np.empty(len(seqs), dtype=object)
    obj[:] = seqs
    forms = [seqs, obj, dense, dense.astype(np.float64), sp.csr_matrix(dense), imdbfast.multi_hot(seqs, D)]
    labels = [y, y.astype(np.float32).reshape(-1, 1), y.astype(bool), y.astype(np.int8)]
    results = []
    for i, x in enumerate(forms):
        m = compiled(seed=3)
        m.fit(x, labels[i % len(labels)], epochs=2, batch_size=50, verbose=0, seed=9)
        results.append(m.get_weights())
    for w in results[1:]:
        for a, b in zip(results[0], w):
            np.testing.assert_array_equal(a, b)


def test_weights_layout_and_init(data):
    m = book_model(input_dim=10000)
    m.build()
    w = m.get_weights()
    assert [a.shape for a in w] == [(10000, 16), (16,), (16, 16), (16,), (16, 1), (1,)]
    assert all(a.dtype == np.float32 for a in w)
    assert m.count_params() == 160305
    for kernel, limit in zip(w[0::2], (0.0244753, 0.4330127, 0.5940885)):  # glorot-uniform
        assert np.abs(kernel).max() <= limit
        if kernel.size >= 256:  # enough draws to come close to the limit
            assert np.abs(kernel).max() > 0.95 * limit
    assert all(np.all(b == 0) for b in w[1::2])
    same = book_model(input_dim=10000)
    same.build()
    np.testing.assert_array_equal(same.get_weights()[0], w[0])  # seeded
    w[0][:] = 1.0
    m.set_weights(w)
    assert np.all(m.get_weights()[0] == 1.0)


def test_seed_and_threads_give_bitwise_identical_weights(data):
    seqs, y = data
    runs = []
    for threads in (1, 2, 1):
        m = compiled(seed=5)
        m.fit(seqs, y, epochs=3, batch_size=256, verbose=0, threads=threads)
        runs.append(m.get_weights())
    for w in runs[1:]:
        for a, b in zip(runs[0], w):
            np.testing.assert_array_equal(a, b)
    other = compiled(seed=6)
    other.fit(seqs, y, epochs=3, batch_size=256, verbose=0)
    assert not np.array_equal(other.get_weights()[0], runs[0][0])


@pytest.mark.parametrize("opt, loss, act, depth, units, lr", [
    ("rmsprop", "binary_crossentropy", "relu", 2, 16, 1e-3),
    ("adam", "binary_crossentropy", "relu", 2, 16, 1e-3),
    ("sgd", "binary_crossentropy", "relu", 2, 16, 0.05),
    ("rmsprop", "mse", "relu", 2, 16, 1e-3),
    ("rmsprop", "binary_crossentropy", "tanh", 2, 16, 1e-3),
    ("rmsprop", "binary_crossentropy", "relu", 1, 32, 1e-3),
    ("rmsprop", "binary_crossentropy", "relu", 3, 64, 1e-3),
])
def test_fidelity_to_keras_math(data, opt, loss, act, depth, units, lr):
    # From the same weights with shuffle=False, epoch logs follow the float64 Keras-math model.
    seqs, y = data
    m = book_model(seed=1, units=units, act=act, depth=depth)
    m.compile(optimizers.get(opt).__class__(learning_rate=lr), loss, ["accuracy"])
    m.build()
    model = ref.Model(m.get_weights(), [act] * depth + ["sigmoid"],
                      "bce_logits" if loss == "binary_crossentropy" else "mse", opt, learning_rate=lr)
    h = m.fit(seqs, y, epochs=5, batch_size=64, shuffle=False, verbose=0)
    x = ref.multi_hot(seqs, D)
    yy = y.astype(np.float64).reshape(-1, 1)
    for epoch in range(5):
        _, want_loss, want_acc = model.train_epoch(x, yy, np.arange(len(seqs)), 64)
        # float32 vs float64 over 50 steps: ~1e-6 relative; the bar is 1e-4
        assert h.history["loss"][epoch] == pytest.approx(want_loss, rel=1e-4)
        assert h.history["accuracy"][epoch] == pytest.approx(want_acc, abs=1e-12)
    assert h.history["loss"][-1] < h.history["loss"][0]  # every "thing to try" learns


def test_validation_split_takes_the_last_fraction(data):
    seqs, y = data
    m = compiled()
    calls = []
    cb = callbacks.LambdaCallback(on_epoch_end=lambda e, logs: calls.append(dict(logs)))
    h = m.fit(seqs, y, epochs=1, batch_size=100, validation_split=0.25, verbose=0, callbacks=[cb])
    assert h.params["steps"] == 5  # 450 training rows
    val_loss, val_acc = m.evaluate(seqs[450:], y[450:], verbose=0)
    assert h.history["val_loss"][0] == pytest.approx(val_loss, rel=1e-12)
    assert calls[0] == {k: v[0] for k, v in h.history.items()}


def test_sample_and_class_weights(data):
    seqs, y = data
    m = compiled()
    m.build()
    w0 = m.get_weights()
    base = m.evaluate(seqs, y, verbose=0)[0]
    assert m.evaluate(seqs, y, sample_weight=np.full(600, 2.0), verbose=0)[0] == pytest.approx(2 * base)
    a, b = compiled(seed=2), compiled(seed=2)
    a.fit(seqs, y, epochs=1, verbose=0, seed=1, class_weight={0: 1.0, 1: 3.0})
    b.fit(seqs, y, epochs=1, verbose=0, seed=1, sample_weight=np.where(y == 1, 3.0, 1.0))
    np.testing.assert_array_equal(a.get_weights()[0], b.get_weights()[0])
    assert not np.array_equal(a.get_weights()[0], w0[0])


def test_early_stopping_keras3_semantics(data):
    seqs, y = data

    class Scripted(callbacks.Callback):  # feeds EarlyStopping a chosen val_loss sequence
        def __init__(self, values):
            super().__init__()
            self.values = values

        def on_epoch_end(self, epoch, logs=None):
            logs["val_loss"] = self.values[epoch]

    # Order matters: the scripted values are written before EarlyStopping reads them.
    m = compiled()
    es = callbacks.EarlyStopping(patience=2, restore_best_weights=True)
    snapshots = []
    keep = callbacks.LambdaCallback(on_epoch_end=lambda e, logs: snapshots.append(m.get_weights()))
    h = m.fit(seqs, y, epochs=10, verbose=0, callbacks=[Scripted([5, 3, 4, 4, 1, 1, 1, 1, 1, 1]), es, keep])
    assert h.epoch == [0, 1, 2, 3] and es.stopped_epoch == 3 and m.stop_training
    np.testing.assert_array_equal(m.get_weights()[0], snapshots[1][0])  # best epoch restored
    # Keras 3 restores the best weights even when training runs to the end.
    m = compiled()
    snapshots = []
    es = callbacks.EarlyStopping(patience=5, restore_best_weights=True)
    m.fit(seqs, y, epochs=4, verbose=0, callbacks=[Scripted([3, 1, 2, 2]), es, keep])
    assert es.stopped_epoch == 0
    np.testing.assert_array_equal(m.get_weights()[0], snapshots[1][0])
    # mode='auto' maximises accuracy. An epoch that improves on the best never stops training;
    # with a baseline, the patience counter is only reset by beating the baseline too.
    class ScriptedAcc(Scripted):
        def on_epoch_end(self, epoch, logs=None):
            logs["accuracy"] = self.values[epoch]

    acc = [0.5, 0.5, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6]

    def stopped_after(**kw):
        es = callbacks.EarlyStopping(monitor="accuracy", patience=2, **kw)
        return len(compiled().fit(seqs, y, epochs=10, verbose=0, callbacks=[ScriptedAcc(acc), es]).epoch)

    assert stopped_after() == 5
    assert stopped_after(baseline=2.0) == 2
    assert stopped_after(baseline=2.0, start_from_epoch=3) == 5
    assert stopped_after(min_delta=0.2) == 3  # +0.1 is not an improvement of at least 0.2
    with pytest.raises(ValueError, match="mode"):
        callbacks.EarlyStopping(monitor="val_thing").on_train_begin()
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        compiled().fit(seqs, y, epochs=1, verbose=0, callbacks=[callbacks.EarlyStopping()])
    assert "not available" in str(w[0].message)


def test_stop_training_and_lambda_callback(data):
    seqs, y = data
    m = compiled()
    seen = []

    def stop(epoch, logs):
        seen.append(epoch)
        if epoch == 1:
            m.stop_training = True

    h = m.fit(seqs, y, epochs=5, verbose=0, callbacks=[callbacks.LambdaCallback(on_epoch_end=stop)])
    assert seen == [0, 1] and h.epoch == [0, 1]


def test_zero_epochs_run_none_as_keras(data):
    seqs, y = data
    m = compiled()
    m.build()
    before = m.get_weights()
    for kw in (dict(epochs=0), dict(epochs=2, initial_epoch=2), dict(epochs=1, initial_epoch=5)):
        h = m.fit(seqs, y, verbose=0, **kw)
        assert h.epoch == [] and h.history == {}
    assert m._net.iterations == 0
    for a, b in zip(before, m.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_huge_batch_size_is_one_batch(data):
    seqs, y = data
    a, b = compiled(), compiled()
    a.fit(seqs, y, batch_size=2**70, epochs=1, verbose=0, seed=0)
    b.fit(seqs, y, batch_size=len(y), epochs=1, verbose=0, seed=0)
    assert a._net.iterations == 1
    for u, v in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(u, v)


def test_initial_epoch_runs_the_remaining_epochs(data):
    seqs, y = data
    h = compiled().fit(seqs, y, epochs=5, initial_epoch=3, verbose=0)
    assert h.epoch == [3, 4]


def test_progress_output_matches_history(data):
    seqs, y = data
    out = io.StringIO()
    with redirect_stdout(out):
        h = compiled().fit(seqs, y, epochs=2, batch_size=128, validation_split=0.2, verbose=1)
    lines = out.getvalue().splitlines()
    assert lines[0] == "Epoch 1/2" and lines[2] == "Epoch 2/2"
    assert lines[1].startswith("4/4 ━━━━━━━━━━━━━━━━━━━━ ")
    assert f"- accuracy: {h.history['accuracy'][0]:.4f} - loss: {h.history['loss'][0]:.4f} - " \
           f"val_accuracy: {h.history['val_accuracy'][0]:.4f} - val_loss: {h.history['val_loss'][0]:.4f}" in lines[1]
    out = io.StringIO()
    with redirect_stdout(out):
        compiled().fit(seqs, y, epochs=1, batch_size=128, verbose=2)
    assert out.getvalue().startswith("5/5 - ") and "ms/step" in out.getvalue() or "us/step" in out.getvalue()
    out = io.StringIO()
    with redirect_stdout(out):
        m = compiled()
        m.fit(seqs, y, epochs=2, verbose=0)
        m.evaluate(seqs, y, verbose=0)
        m.predict(seqs, verbose=0)
    assert out.getvalue() == ""  # silent unless asked


def test_save_load_round_trip_is_exact(data, tmp_path):
    seqs, y = data
    m = compiled(seed=4)
    m.fit(seqs, y, epochs=2, verbose=0, seed=1)
    path = tmp_path / "model.npz"
    m.save(path)
    r = imdbfast.load_model(path)
    for a, b in zip(m.get_weights(), r.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert r.optimizer == m.optimizer and r.metrics_names == ["loss", "accuracy"]
    m.fit(seqs, y, epochs=1, verbose=0, seed=2)
    r.fit(seqs, y, epochs=1, verbose=0, seed=2)
    for a, b in zip(m.get_weights(), r.get_weights()):
        np.testing.assert_array_equal(a, b)  # the optimizer state travelled too
    assert list(tmp_path.iterdir()) == [path]  # no temporary files left behind
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not an imdbfast model"):
        imdbfast.load_model(bad)
    np.savez(bad, config=np.array('{"format": "other"}'))
    with pytest.raises(ValueError, match="unsupported format"):
        imdbfast.load_model(bad)
    uncompiled = book_model()
    uncompiled.build()
    uncompiled.save(tmp_path / "u.npz")
    u = imdbfast.load_model(tmp_path / "u.npz")
    np.testing.assert_array_equal(u.get_weights()[0], uncompiled.get_weights()[0])


@pytest.mark.parametrize("optimizer", ["rmsprop", "adam"])
def test_a_checkpoint_changes_no_bit(data, tmp_path, optimizer):
    """Saving mid-training leaves the run's bits alone, and the file resumes it exactly (RMSprop
    keeps W1's untouched rows lazy: the file holds the step each row is current through)."""
    seqs, y = data

    def model():
        m = book_model(seed=3)
        m.compile(optimizer, "binary_crossentropy", ["accuracy"])
        return m

    saved = model()
    saved.fit(seqs, y, epochs=2, batch_size=64, verbose=0, seed=5)
    saved.save(tmp_path / "ckpt.npz")
    saved.fit(seqs, y, epochs=2, batch_size=64, verbose=0, seed=5, initial_epoch=0)
    resumed = imdbfast.load_model(tmp_path / "ckpt.npz")
    resumed.fit(seqs, y, epochs=2, batch_size=64, verbose=0, seed=5, initial_epoch=0)
    again = model()  # the same two fits, never saved
    again.fit(seqs, y, epochs=2, batch_size=64, verbose=0, seed=5)
    again.fit(seqs, y, epochs=2, batch_size=64, verbose=0, seed=5, initial_epoch=0)
    for a, b, c in zip(again.get_weights(), saved.get_weights(), resumed.get_weights()):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)


def test_version_1_model_files_still_load(data, tmp_path):
    from imdbfast import models

    seqs, y = data
    m = compiled(seed=4)
    m.fit(seqs, y, epochs=1, verbose=0, seed=1)
    m.save(tmp_path / "v2.npz")
    with np.load(tmp_path / "v2.npz") as f:
        arrays = {k: f[k] for k in f.files if k not in ("checksum", "slot_synced")}
    config = json.loads(str(arrays["config"]))
    config["version"] = 1
    arrays["config"] = np.array(json.dumps(config))
    # version 1 stored W1's slots brought up to date
    arrays.update({f"slot_0_{s}": a for s, a in enumerate(m._net.get_slots()[0])})
    arrays["checksum"] = np.array(imdbfast._persist.checksum(arrays))
    np.savez(tmp_path / "v1.npz", **arrays)
    r = imdbfast.load_model(tmp_path / "v1.npz")
    for a, b in zip(r.get_weights(), m.get_weights()):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(r._net.get_slots(), m._net.get_slots()):
        for u, v in zip(a, b):
            np.testing.assert_array_equal(u, v)


def test_imdbfast_fit_one_call(data):
    seqs, y = data
    m = imdbfast.fit(seqs, y, input_dim=D, epochs=3, batch_size=64, seed=0, verbose=0,
                     validation_split=0.2)
    assert [l.units for l in m.layers] == [16, 16, 1] and m.layers[-1].activation == "sigmoid"
    assert list(m.history.history) == ["accuracy", "loss", "val_accuracy", "val_loss"]
    m2 = imdbfast.fit(seqs, y, input_dim=D, layers=(32,), activation="tanh", optimizer="adam",
                      loss="mse", epochs=1, verbose=0)
    assert [l.units for l in m2.layers] == [32, 1]
    assert imdbfast.fit(seqs, y, epochs=1, verbose=0).layers[0].units == 16  # default 10,000 inputs
    if imdbfast.cuda_available():  # a real GPU: "cuda" trains there, "auto" picks it
        assert imdbfast.fit(seqs, y, input_dim=D, device="cuda", epochs=1, verbose=0).device == "cuda:0"
        assert imdbfast.Sequential(device="auto").device.startswith("cuda")
    else:
        with pytest.raises(RuntimeError, match="use device='cpu'"):
            imdbfast.fit(seqs, y, input_dim=D, device="cuda", verbose=0)
        assert imdbfast.Sequential(device="auto").device == "cpu"


@pytest.mark.parametrize("call, exc, match", [
    (lambda m, s, y: m.fit(s, y[:-1], verbose=0), ValueError, "labels for"),
    (lambda m, s, y: m.fit(s, y * 2, verbose=0), ValueError, r"labels in \[0, 1\]"),
    (lambda m, s, y: m.fit(s, np.where(y == 1, np.nan, 0), verbose=0), ValueError, "NaN"),
    (lambda m, s, y: m.fit(s, y, validation_split=1.5, verbose=0), ValueError, "validation_split"),
    (lambda m, s, y: m.fit(s, y, validation_split=1e-17, verbose=0), ValueError, "validation_split"),
    (lambda m, s, y: m.fit(s, y, epochs=-1, verbose=0), ValueError, "epochs"),
    (lambda m, s, y: m.fit(s, y, threads=2**31, verbose=0), ValueError, "threads"),
    (lambda m, s, y: m.fit(s, y, seed=2**64, verbose=0), ValueError, "seed"),
    (lambda m, s, y: m.fit(s, y, initial_epoch=2**63, verbose=0), ValueError, "initial_epoch"),
    (lambda m, s, y: m.fit(s, y, batch_size=0, verbose=0), ValueError, "batch_size"),
    (lambda m, s, y: m.fit(s, y, verbose=3), ValueError, "verbose"),
    (lambda m, s, y: m.fit(s, y, shuffle="batch", verbose=0), ValueError, "shuffle"),
    (lambda m, s, y: m.fit(s, y, sample_weight=np.ones(3), verbose=0), ValueError, "sample_weight"),
    (lambda m, s, y: m.fit(s, y, sample_weight=np.ones(600), class_weight={0: 1}, verbose=0), ValueError, "together"),
    (lambda m, s, y: m.fit(s, y, validation_data=(s,), verbose=0), ValueError, "validation_data"),
    (lambda m, s, y: m.fit([[D]] * 600, y, verbose=0), IndexError, "outside"),
    (lambda m, s, y: m.fit(np.zeros((600, D + 1)), y, verbose=0), ValueError, "columns"),
    (lambda m, s, y: m.fit(s, y, callbacks=[object()], verbose=0), TypeError, "Callback"),
    (lambda m, s, y: m.fit(s, y, threads=0, verbose=0), ValueError, "threads"),
    (lambda m, s, y: m.set_weights(m.get_weights()[:-1]), ValueError, "expected 6"),
    (lambda m, s, y: m.set_weights([np.zeros((2, 2))] * 6), ValueError, "shape"),
])
def test_bad_input_is_refused_and_changes_nothing(data, call, exc, match):
    seqs, y = data
    m = compiled()
    m.build()
    before = m.get_weights()
    with pytest.raises(exc, match=match):
        call(m, seqs, y)
    for a, b in zip(before, m.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert m._net.iterations == 0


def test_bad_model_definitions():
    with pytest.raises(ValueError, match="optimizer: unknown 'nadam'; valid"):
        book_model().compile("nadam")
    with pytest.raises(ValueError, match="loss: unknown 'hinge'; valid"):
        book_model().compile("rmsprop", "hinge")
    with pytest.raises(ValueError, match="metrics: unknown 'f1'; valid"):
        book_model().compile("rmsprop", metrics=["f1"])
    with pytest.raises(ValueError, match="activation: unknown 'gelu'; valid"):
        layers.Dense(3, activation="gelu")
    with pytest.raises(ValueError, match="units"):
        layers.Dense(0)
    with pytest.raises(ValueError, match="learning_rate"):
        optimizers.RMSprop(learning_rate=-1)
    with pytest.raises(RuntimeError, match="compile"):
        book_model().fit([[1]], [1])
    unbuilt = imdbfast.Sequential([layers.Dense(1, activation="sigmoid")])
    with pytest.raises(RuntimeError, match="not built"):
        unbuilt.get_weights()
    with pytest.raises(RuntimeError, match="not built"):
        unbuilt.predict.__self__.get_weights()
    unbuilt.compile()
    with pytest.raises(ValueError, match="input dimension"):
        unbuilt.predict([[1, 2]])
    with pytest.raises(ValueError, match="device"):
        imdbfast.Sequential(device="tpu")
    with pytest.raises(TypeError, match="Dense"):
        imdbfast.Sequential(["relu"])


def test_input_dimension_inferred_from_a_matrix(data):
    seqs, y = data
    m = imdbfast.Sequential([layers.Dense(4, activation="relu"), layers.Dense(1, activation="sigmoid")])
    m.compile()
    m.fit(imdbfast.multi_hot_dense(seqs, D), y, epochs=1, verbose=0)
    assert m.get_weights()[0].shape == (D, 4)
    m.predict(seqs, verbose=0)  # sequences now encode with the known dimension


# Each optional extra is imported only where it is used, and a missing one is an ImportError
# naming what needed it and the pip command (imdbfast._optional), never a NameError later on.
@pytest.mark.parametrize("module, call, message", [
    ("matplotlib", lambda: imdbfast.plots.plot_history({"loss": [1.0, 0.5]}),
     "plotting needs matplotlib: pip install 'imdbfast[plot]'"),
    ("pandas", lambda: imdbfast.experiments.Results([{"a": 1}]).dataframe(),
     "Results.dataframe needs pandas: pip install pandas"),
])
def test_a_missing_extra_is_named(monkeypatch, module, call, message):
    import sys

    import imdbfast.experiments
    import imdbfast.plots

    for name in list(sys.modules):  # as if never installed: every submodule's import fails
        if name == module or name.startswith(module + "."):
            monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(ImportError) as e:
        call()
    assert str(e.value) == message


# ---- Keras 3's argument forms that a ported notebook uses -----------------------------------
def weights_after(fit_kw=None, compile_kw=None, data=None, **model_kw):
    seqs, y = data
    m = book_model(**model_kw)
    ckw = dict(optimizer="rmsprop", loss="binary_crossentropy", metrics=["accuracy"])
    ckw.update(compile_kw or {})
    m.compile(**ckw)
    h = m.fit(seqs, y, **{"epochs": 2, "batch_size": 64, "verbose": 0, **(fit_kw or {})})
    return m.get_weights(), h.history


def same(a, b):
    return all(np.array_equal(p, q) for p, q in zip(a, b))


def test_keras_argument_forms_train_as_their_plain_equivalents(data):
    base, hist = weights_after(data=data, fit_kw={"validation_split": 0.25})
    for fit_kw, compile_kw in [
            ({"validation_split": np.float32(0.25)}, {}),  # numpy scalars are numbers
            ({"validation_split": 0.25, "verbose": False}, {}),
            ({"validation_split": 0.25}, {"loss": "BinaryCrossentropy"}),  # a class name
            ({"validation_split": 0.25}, {"jit_compile": False, "run_eagerly": True,
                                          "auto_scale_loss": False, "steps_per_execution": 1,
                                          "loss_weights": None, "weighted_metrics": None}),
            ({"validation_split": 0.25}, {"optimizer": optimizers.RMSprop(
                name="rmsprop", clipnorm=None, weight_decay=None, use_ema=False,
                ema_momentum=0.99)})]:
        w, h = weights_after(data=data, fit_kw=fit_kw, compile_kw=compile_kw)
        assert same(w, base) and h == hist, (fit_kw, compile_kw)


def test_validation_freq_as_a_list_of_epochs(data):
    seqs, y = data
    m = compiled()
    h = m.fit(seqs[:500], y[:500], epochs=4, batch_size=64, verbose=0,
              validation_data=(seqs[500:], y[500:]), validation_freq=[1, 3])
    assert len(h.history["loss"]) == 4 and len(h.history["val_loss"]) == 2  # as Keras 3
    every2 = compiled().fit(seqs[:500], y[:500], epochs=4, batch_size=64, verbose=0,
                            validation_data=(seqs[500:], y[500:]), validation_freq=2)
    assert len(every2.history["val_loss"]) == 2
    for bad in ([0], [1, "a"], 0):
        with pytest.raises(ValueError, match="validation_freq"):
            compiled().fit(seqs, y, epochs=1, verbose=0, validation_split=0.2,
                           validation_freq=bad)


@pytest.mark.parametrize("compile_kw, match", [
    ({"loss_weights": [2.0]}, r"compile: loss_weights=\[2.0\] is not supported"),
    ({"weighted_metrics": ["accuracy"]}, r"compile: weighted_metrics=\['accuracy'\] is not"),
    ({"steps_per_execution": 2}, r"compile: steps_per_execution=2 is not supported"),
    ({"jit_compile": "xla"}, r"compile: jit_compile: expected 'auto', True or False"),
    ({"run_eagerly": 1.5}, r"compile: run_eagerly: expected True or False"),
])
def test_compile_arguments_it_cannot_honour_are_refused_by_name(compile_kw, match):
    with pytest.raises(ValueError, match=match):
        book_model().compile("rmsprop", "binary_crossentropy", **compile_kw)


@pytest.mark.parametrize("cls", [optimizers.RMSprop, optimizers.Adam, optimizers.SGD])
def test_keras_optimizer_arguments_that_change_the_update_are_refused_by_name(cls):
    for k, v in (("clipnorm", 1.0), ("clipvalue", 0.5), ("global_clipnorm", 1.0),
                 ("weight_decay", 0.01), ("use_ema", True), ("gradient_accumulation_steps", 2),
                 ("loss_scale_factor", 128.0)):
        with pytest.raises(ValueError, match=rf"{cls.__name__}: {k}={v!r} is not supported"):
            cls(**{k: v})
    with pytest.raises(TypeError, match=rf"{cls.__name__}: unexpected argument 'lr'"):
        cls(lr=0.1)
    assert cls(name="x", clipnorm=None, ema_overwrite_frequency=None) == cls()


def test_class_weight_keys_are_class_indices(data):
    seqs, y = data
    base, _ = weights_after(data=data, fit_kw={"class_weight": {0: 1.0, 1: 3.0}})
    for cw in ({0.0: 1.0, 1.0: 3.0}, {np.int64(0): 1, np.int32(1): np.float32(3.0)}):
        w, _ = weights_after(data=data, fit_kw={"class_weight": cw})
        assert same(w, base), cw
    m = compiled()
    before = m.get_weights()
    for cw, exc, match in (({"a": 1.0}, ValueError, r"class_weight: keys must be class indices"),
                           ({0.5: 3.0}, ValueError, r"class_weight: keys must be class indices"),
                           ({True: 3.0}, ValueError, r"class_weight: keys must be class indices"),
                           ({0: "x"}, TypeError, r"class_weight\[0\]: expected a number"),
                           ({1: -1.0}, ValueError, r"class_weight\[1\]: must be >= 0")):
        with pytest.raises(exc, match=match):
            m.fit(seqs, y, epochs=1, verbose=0, class_weight=cw)
    assert same(m.get_weights(), before)


def test_numpy_scalars_and_keras_defaults_in_callbacks_metrics_and_calls(data):
    seqs, y = data
    assert callbacks.EarlyStopping(patience=np.int64(2)).patience == 2
    with pytest.raises(ValueError, match=r"patience: expected an int >= 0"):
        callbacks.EarlyStopping(patience=1.5)
    assert imdbfast.metrics.Precision(thresholds=np.float32(0.25)).threshold == 0.25
    with pytest.raises(ValueError, match=r"thresholds: must be <= 1"):  # Keras: in [0, 1]
        imdbfast.metrics.Precision(thresholds=2.0)
    assert imdbfast.metrics.AUC(num_thresholds=np.int64(50)).num_thresholds == 50
    m = compiled()
    np.testing.assert_array_equal(m(seqs[:5], training=None), m.predict(seqs[:5], verbose=0))


def test_sequences_index_as_a_1d_object_array():
    from imdbfast.sequences import Sequences

    x = Sequences(np.array([1, 2, 3, 4, 5, 6], np.int32), np.array([0, 2, 3, 6]), 10)
    o = np.asarray(x, dtype=object)
    assert x[(1,)] == o[(1,)] == [3]
    assert len(x[[]]) == len(o[[]]) == 0
    with pytest.raises(IndexError):
        o[0, 0]
    # too many indices, a boolean scalar (an array would gain an axis), a 2-D index array
    for key in ((0, 0), True, np.bool_(False), np.array([[0, 1]])):
        with pytest.raises(IndexError):
            x[key]


def test_lossy_conversions_are_refused(data):
    m = compiled()
    w = m.get_weights()
    with pytest.raises(TypeError, match=r"set_weights: array 0 must hold real numbers"):
        m.set_weights([w[0] + 1j] + w[1:])
    assert same(m.get_weights(), w)
    with pytest.raises(ValueError, match=r"ngrams.*\[1, 1024\]"):
        layers.TextVectorization(ngrams=2**62)
    with pytest.raises(IndexError, match=r"^x: token"):  # the argument's name, not "sequences"
        m.predict([[1, D + 5]], verbose=0)


def test_labels_and_weights_beyond_float32_say_so(data):
    seqs, y = data
    m = compiled()
    big = np.where(np.arange(len(y)) == 3, 1e40, y.astype(np.float64))
    with pytest.raises(ValueError, match=r"y: labels hold NaN or infinity in float32"):
        m.fit(seqs, big, epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"sample_weight: weights must be finite \(in float32"):
        m.fit(seqs, y, epochs=1, verbose=0, sample_weight=big)


def test_loss_objects_survive_files_and_pickles_and_metrics_names_zip_with_evaluate(data, tmp_path):
    import copy
    import pickle

    from imdbfast import losses

    seqs, y = data
    m = book_model()
    m.compile("rmsprop", losses.BinaryCrossentropy(label_smoothing=0.1), ["accuracy"])
    m.fit(seqs, y, epochs=1, verbose=0)
    assert m.metrics_names == ["loss", "accuracy"]  # Keras 3: the loss tracker first
    ev = m.evaluate(seqs, y, verbose=0)
    assert dict(zip(m.metrics_names, ev)) == m.evaluate(seqs, y, verbose=0, return_dict=True)
    m.save(tmp_path / "m.npz")
    for back in (imdbfast.load_model(tmp_path / "m.npz"), pickle.loads(pickle.dumps(m)),
                 copy.deepcopy(m)):
        assert isinstance(back.loss, losses.BinaryCrossentropy)
        assert back.loss.get_config() == m.loss.get_config()
    m.compile("rmsprop", "binary_crossentropy")
    assert m.metrics_names == ["loss"]
    assert imdbfast.Sequential([layers.Dense(1)]).metrics_names == []  # not compiled


def test_a_weights_file_name_is_not_a_model_file(tmp_path):
    m = compiled()
    for call in (lambda p: m.save(p), lambda p: imdbfast.load_model(p)):
        with pytest.raises(ValueError, match=r"a \.weights\.h5 file holds weights only"):
            call(tmp_path / "m.weights.h5")
    assert not (tmp_path / "m.weights.h5").exists()


def test_model_call_in_training_mode_is_inference_or_refused(data):
    seqs, y = data
    m = compiled()
    np.testing.assert_array_equal(m(seqs[:5], training=True), m(seqs[:5]))  # Dense only: the same
    d = imdbfast.Sequential([layers.Input((D,)), layers.Dense(8, activation="relu"),
                             layers.Dropout(0.5), layers.Dense(1, activation="sigmoid")], seed=0)
    with pytest.raises(ValueError, match=r"training=True: this model has Dropout"):
        d(seqs[:5], training=True)
    np.testing.assert_array_equal(d(seqs[:5], training=False), d.predict(seqs[:5], verbose=0))
