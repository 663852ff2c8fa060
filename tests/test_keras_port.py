"""Keras idioms ported unchanged, one per test: construction and introspection, layer objects,
per-batch callbacks, Keras 3's files. Keras's own behaviour comes from files Keras wrote
(tests/data, made by tests/data/make_keras_files.py) and, where Keras is installed, from Keras
itself run in a subprocess (its backend's threads stay out of this process, which forks)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import imdbfast
from imdbfast import callbacks, layers

DATA = Path(__file__).resolve().parent / "data"
HAVE_H5PY = importlib.util.find_spec("h5py") is not None
needs_h5py = pytest.mark.skipif(not HAVE_H5PY, reason="h5py not installed (the keras-io extra)")
HAVE_KERAS = (importlib.util.find_spec("keras") is not None and
              any(importlib.util.find_spec(b) is not None for b in ("jax", "tensorflow", "torch")))
needs_keras = pytest.mark.skipif(not HAVE_KERAS,
                                 reason="Keras 3 with a backend (jax, tensorflow or torch) not "
                                        "installed")
# Keras's numbers are float32 computed in another order: 1e-6 absolute on probabilities
# (float32's resolution near 0.5 is 6e-8; a few steps of training accumulate a few ulps).
KERAS_ATOL = 1e-6


def expected():
    return np.load(DATA / "keras_expected.npz")


def small(seed: int | None = 3, compile: bool = True) -> imdbfast.Sequential:
    """The model of tests/data/make_keras_files.py, with Keras's initial weights."""
    m = imdbfast.Sequential([imdbfast.Input(shape=(50,)), layers.Dense(8, activation="relu"),
                             layers.Dense(1, activation="sigmoid")], seed=seed)
    rng = np.random.default_rng(11)
    m.set_weights([rng.uniform(-0.3, 0.3, (50, 8)).astype(np.float32), np.zeros(8, np.float32),
                   rng.uniform(-0.3, 0.3, (8, 1)).astype(np.float32), np.zeros(1, np.float32)])
    if compile:
        m.compile(imdbfast.optimizers.RMSprop(momentum=0.5), "binary_crossentropy", ["accuracy"])
    return m


def book(**kw) -> imdbfast.Sequential:
    return imdbfast.Sequential([imdbfast.Input(shape=(10000,)),
                                layers.Dense(16, activation="relu"),
                                layers.Dense(16, activation="relu"),
                                layers.Dense(1, activation="sigmoid")], **kw)


# ---- construction and introspection ---------------------------------------------------------
def test_input_at_the_top_level_builds_the_model_at_construction():
    m = book(seed=1)
    assert m.built and m.count_params() == 160305
    w = m.get_weights()
    assert [a.shape for a in w] == [(10000, 16), (16,), (16, 16), (16,), (16, 1), (1,)]
    m.set_weights([np.zeros_like(a) for a in w])
    assert all(not a.any() for a in m.get_weights())


def test_input_dim_or_input_shape_on_the_first_layer_also_builds():
    for first in (layers.Dense(4, input_dim=30), layers.Dense(4, input_shape=(30,))):
        m = imdbfast.Sequential([first, layers.Dense(1)])
        assert m.built and m.input_shape == (None, 30) and m.output_shape == (None, 1)


def test_add_builds_and_keeps_the_earlier_weights():
    m = imdbfast.Sequential([imdbfast.Input((30,))], seed=4)
    assert not m.built
    m.add(layers.Dense(4, "relu"))
    first = m.get_weights()
    m.add(layers.Dense(1, "sigmoid"))
    np.testing.assert_array_equal(m.get_weights()[0], first[0])
    # the same draws as the model built in one go
    whole = imdbfast.Sequential([imdbfast.Input((30,)), layers.Dense(4, "relu"),
                                 layers.Dense(1, "sigmoid")], seed=4)
    for a, b in zip(m.get_weights(), whole.get_weights()):
        np.testing.assert_array_equal(a, b)
    popped = m.pop()
    assert popped.units == 1 and len(m.get_weights()) == 2
    np.testing.assert_array_equal(m.get_weights()[0], first[0])


@pytest.mark.parametrize("shape", [(None, 30), [None, 30], (30,), 30])
def test_build_takes_keras_input_shapes(shape):
    m = imdbfast.Sequential([layers.Dense(4), layers.Dense(1)])
    assert not m.built
    with pytest.raises(RuntimeError, match="not built"):
        m.get_weights()
    m.build(input_shape=shape)
    assert m.built and m.input_shape == (None, 30)
    with pytest.raises(ValueError, match="built for input shape"):
        m.build((None, 31))


def test_build_refuses_bad_shapes():
    m = imdbfast.Sequential([layers.Dense(4)])
    for bad in ((None, 3, 4), (None, 0), "30", (None, -1)):
        with pytest.raises((ValueError, TypeError)):
            m.build(bad)
    assert not m.built


def test_summary_is_keras_3s_text(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # Keras's default width (88) in the files too
    keras_text = json.loads((DATA / "keras_summary.json").read_text())
    m = book(seed=0)
    got = []
    m.summary(print_fn=got.append)
    assert got == [keras_text["book"]]
    got = []
    m.summary(print_fn=got.append, line_length=70)
    assert got == [keras_text["book_70"]]
    got = []
    m.summary(print_fn=got.append, show_trainable=True)
    assert got == [keras_text["book_trainable"]]
    m.compile("rmsprop", "binary_crossentropy", ["accuracy"])
    m.fit(np.eye(8, 10000, dtype=np.float32), np.ones(8), batch_size=4, verbose=0)
    got = []
    m.summary(print_fn=got.append)
    assert got == [keras_text["book_fitted"]]  # with the optimizer's variables


def test_summary_of_an_unbuilt_model_wraps_as_keras(capsys):
    keras_text = json.loads((DATA / "keras_summary.json").read_text())
    m = imdbfast.Sequential([layers.Dense(16, name="hidden"), layers.Dense(1, name="out")],
                            name="small")
    m.summary(line_length=50)  # no print_fn: printed
    assert capsys.readouterr().out == keras_text["unbuilt_50"]


def test_layers_are_named_as_keras_names_them():
    m = imdbfast.Sequential([layers.Dense(4, name="hidden"), layers.Dense(4), layers.Dense(1)])
    assert [l.name for l in m.layers] == ["hidden", "dense", "dense_1"]
    assert m.get_layer("dense_1") is m.layers[2] and m.get_layer(index=0).name == "hidden"
    with pytest.raises(ValueError, match="No such layer: nope"):
        m.get_layer("nope")
    with pytest.raises(ValueError, match="unique names"):
        m.add(layers.Dense(2, name="hidden"))
    with pytest.raises(ValueError, match="already belongs"):
        imdbfast.Sequential([m.layers[0]])
    for bad in ("", "a/b", 3):
        with pytest.raises(ValueError, match="name"):
            layers.Dense(2, name=bad)


def test_layer_objects_hold_their_weights_in_the_model():
    m = small()
    d = m.layers[0]
    assert (d.units, d.activation, d.trainable, d.count_params()) == (8, "relu", True, 408)
    k, b = d.get_weights()
    np.testing.assert_array_equal(d.kernel, k)
    np.testing.assert_array_equal(d.kernel.numpy(), k)
    assert d.kernel.path == "dense/kernel" and d.bias.name == "bias"
    d.kernel[:] = 0  # a copy: the model is unchanged
    np.testing.assert_array_equal(m.get_weights()[0], k)
    d.set_weights([k * 2, b + 1])
    np.testing.assert_array_equal(m.get_weights()[0], k * 2)
    np.testing.assert_array_equal(m.get_weights()[1], b + 1)
    with pytest.raises(ValueError, match="shape"):
        d.set_weights([k.T, b])
    np.testing.assert_array_equal(m.get_weights()[0], k * 2)  # unchanged by the refusal
    assert [w.path for w in m.weights] == ["dense/kernel", "dense/bias", "dense_1/kernel",
                                           "dense_1/bias"]
    assert len(m.trainable_weights) == 4 and m.non_trainable_weights == []
    assert d.input_shape == (None, 50) and m.layers[1].input_shape == (None, 8)
    with pytest.raises(RuntimeError, match="not built"):
        layers.Dense(3).kernel


def test_configs_are_keras_3s():
    m = small()
    cfg = m.get_config()
    assert [l["class_name"] for l in cfg["layers"]] == ["InputLayer", "Dense", "Dense"]
    assert cfg["build_input_shape"] == [None, 50]
    dense = cfg["layers"][1]["config"]
    assert dense["units"] == 8 and dense["activation"] == "relu" and dense["use_bias"] is True
    assert dense["kernel_initializer"]["class_name"] == "GlorotUniform"
    c = imdbfast.Sequential.from_config(cfg)
    assert c.get_config() == cfg and c.built
    # a config Keras wrote (a .keras file's config.json)
    with zipfile.ZipFile(DATA / "keras_small.keras") as z:
        keras_cfg = json.loads(z.read("config.json"))["config"]
    k = imdbfast.Sequential.from_config(keras_cfg)
    assert [l.units for l in k.layers] == [8, 1] and k.input_shape == (None, 50)
    with zipfile.ZipFile(DATA / "keras_dropout.keras") as z:
        dropout_cfg = json.loads(z.read("config.json"))["config"]
    d = imdbfast.Sequential.from_config(dropout_cfg)
    assert [type(l).__name__ for l in d.layers] == ["Dense", "Dropout", "Dense"]
    assert d.layers[1].rate == 0.5 and d.layers[1].name == "dropout"
    bad = json.loads(json.dumps(dropout_cfg))
    bad["layers"][2]["class_name"] = "BatchNormalization"
    with pytest.raises(ValueError, match="BatchNormalization"):
        imdbfast.Sequential.from_config(bad)
    with pytest.raises(ValueError, match="use_bias"):
        layers.Dense(3, use_bias=False)
    with pytest.raises(ValueError, match="kernel_constraint"):
        layers.Dense(3, kernel_constraint="non_neg")


def test_calling_the_model_and_the_on_batch_methods():
    e = expected()
    x, y = e["x"], e["y"]
    m = small()
    np.testing.assert_array_equal(m(x), m.predict(x, verbose=0))
    np.testing.assert_array_equal(m.predict_on_batch(x), m.predict(x, verbose=0))
    assert m.test_on_batch(x, y) == m.evaluate(x, y, verbose=0)
    assert list(m.test_on_batch(x, y, return_dict=True)) == ["accuracy", "loss"]
    # train_on_batch: one step on all rows = fit with one batch, no shuffle (bitwise)
    twin = small()
    loss, acc = m.train_on_batch(x, y)
    h = twin.fit(x, y, batch_size=len(x), epochs=1, shuffle=False, verbose=0)
    assert (loss, acc) == (h.history["loss"][0], h.history["accuracy"][0])
    for a, b in zip(m.get_weights(), twin.get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(RuntimeError, match="compile"):
        small(compile=False).train_on_batch(x, y)


def test_evaluate_keys_and_zero_epochs_as_keras():
    e = expected()
    m = small()
    assert list(m.evaluate(e["x"], e["y"], verbose=0, return_dict=True)) == \
        json.loads(str(e["evaluate_keys"]))
    before = m.get_weights()
    h = m.fit(e["x"], e["y"], epochs=0, verbose=0)
    assert h.history == {} and h.epoch == []
    for a, b in zip(before, m.get_weights()):
        np.testing.assert_array_equal(a, b)


# ---- callbacks per batch ----------------------------------------------------------------------
class Recorder(callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.events: list = []

    def on_train_batch_begin(self, batch, logs=None):
        self.events.append(("train_begin", batch, logs))

    def on_train_batch_end(self, batch, logs=None):
        self.events.append(("train", batch, dict(logs)))

    def on_test_batch_end(self, batch, logs=None):
        self.events.append(("test", batch, dict(logs)))

    def on_test_begin(self, logs=None):
        self.events.append(("test_begin", None, logs))


def test_batch_hooks_run_per_batch_with_keras_logs():
    """Against the logs Keras passed (keras_expected.npz): the same batches, the running mean
    of the loss and accuracy since the epoch began."""
    e = expected()
    x, y = e["x"], e["y"]
    m = small()
    rec = Recorder()
    h = m.fit(x, y, epochs=2, batch_size=16, shuffle=False, verbose=0, callbacks=[rec],
              validation_data=(x[:40], y[:40]), validation_batch_size=16)
    train = np.array([[b, l["loss"], l["accuracy"]] for k, b, l in rec.events if k == "train"])
    test = np.array([[b, l["loss"], l["accuracy"]] for k, b, l in rec.events if k == "test"])
    np.testing.assert_array_equal(train[:, 0], e["train_batch_logs"][:, 0])
    np.testing.assert_allclose(train[:, 1:], e["train_batch_logs"][:, 1:], rtol=1e-5, atol=0)
    np.testing.assert_array_equal(test[:, 0], e["test_batch_logs"][:, 0])
    np.testing.assert_allclose(test[:, 1:], e["test_batch_logs"][:, 1:], rtol=1e-5, atol=0)
    assert [k for k, _, _ in rec.events].count("train_begin") == 12
    assert all(l == {} for k, _, l in rec.events if k in ("train_begin", "test_begin"))
    # the last batch's running logs are the epoch's
    assert train[5, 1] == h.history["loss"][0] and train[11, 1] == h.history["loss"][1]
    keras_history = json.loads(str(e["history"]))
    for k, v in keras_history.items():
        np.testing.assert_allclose(h.history[k], v, rtol=1e-5, err_msg=k)


def test_returning_per_batch_changes_no_bit():
    e = expected()
    a, b = small(), small()
    a.fit(e["x"], e["y"], epochs=3, batch_size=8, verbose=0, seed=5)
    b.fit(e["x"], e["y"], epochs=3, batch_size=8, verbose=0, seed=5, callbacks=[Recorder()])
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    assert a.history.history == b.history.history


def test_legacy_batch_hooks_and_lambda_callbacks():
    e = expected()
    seen = []

    class Legacy(callbacks.Callback):
        def on_batch_end(self, batch, logs=None):
            seen.append(("legacy", batch))

    lam = callbacks.LambdaCallback(on_batch_begin=lambda b, logs: seen.append(("lambda", b)))
    small().fit(e["x"], e["y"], epochs=1, batch_size=32, verbose=0, callbacks=[Legacy(), lam])
    assert seen == [("lambda", 0), ("legacy", 0), ("lambda", 1), ("legacy", 1), ("lambda", 2),
                    ("legacy", 2)]
    with pytest.raises(TypeError, match="unknown hook"):
        callbacks.LambdaCallback(on_batch_finish=print)


def test_evaluate_and_predict_take_callbacks():
    e = expected()
    m = small()
    rec = Recorder()
    whole = m.evaluate(e["x"], e["y"], verbose=0)
    # per batch: the sums grouped differently, equal to double rounding
    assert m.evaluate(e["x"], e["y"], batch_size=40, verbose=0, callbacks=[rec]) == \
        pytest.approx(whole, rel=1e-12)
    tests = [b for k, b, _ in rec.events if k == "test"]
    assert tests == [0, 1, 2] and rec.events[0][0] == "test_begin"
    outputs = []
    p = m.predict(e["x"], batch_size=40, verbose=0, callbacks=[callbacks.LambdaCallback(
        on_predict_batch_end=lambda b, logs: outputs.append((b, logs["outputs"].copy())))])
    assert [b for b, _ in outputs] == [0, 1, 2]
    np.testing.assert_array_equal(np.concatenate([o for _, o in outputs]), p)


# ---- Keras 3's files --------------------------------------------------------------------------
@needs_h5py
def test_keras_files_written_by_keras_load():
    e = expected()
    m = imdbfast.load_model(DATA / "keras_small.keras")
    with zipfile.ZipFile(DATA / "keras_small.keras") as z:
        names = [l["config"]["name"] for l in json.loads(z.read("config.json"))["config"]["layers"]
                 if l["class_name"] == "Dense"]
    assert [l.name for l in m.layers] == names  # Keras's names kept
    assert type(m.optimizer).__name__ == "RMSprop" and m.optimizer.get_config()["momentum"] == 0.5
    assert m._net.iterations == int(e["iterations"])
    np.testing.assert_allclose(m.predict(e["x"], verbose=0), e["predictions"], atol=KERAS_ATOL,
                               rtol=0)
    w = small()
    w.load_weights(DATA / "keras_small.weights.h5")
    np.testing.assert_allclose(w.predict(e["x"], verbose=0), e["predictions"], atol=KERAS_ATOL,
                               rtol=0)
    d = imdbfast.load_model(DATA / "keras_dropout.keras")  # (tests/test_dropout.py: more)
    assert [l.name for l in d.layers][1] == "dropout"


@needs_h5py
def test_keras_file_round_trip(tmp_path):
    e = expected()
    m = small()
    m.fit(e["x"], e["y"], epochs=2, batch_size=16, verbose=0, seed=1)
    m.save(tmp_path / "m.keras")
    with zipfile.ZipFile(tmp_path / "m.keras") as z:
        assert sorted(z.namelist()) == ["config.json", "metadata.json", "model.weights.h5"]
        config = json.loads(z.read("config.json"))
    assert config["class_name"] == "Sequential" and config["compile_config"]["loss"] == \
        "binary_crossentropy"
    c = imdbfast.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(c.predict(e["x"], verbose=0), m.predict(e["x"], verbose=0))
    assert c._net.iterations == m._net.iterations
    # continued training: the slots came back (caught up, so equal to float rounding)
    m.fit(e["x"], e["y"], epochs=1, batch_size=16, verbose=0, seed=2)
    c.fit(e["x"], e["y"], epochs=1, batch_size=16, verbose=0, seed=2)
    for a, b in zip(m.get_weights(), c.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-6, rtol=0)
    m.save_weights(tmp_path / "m.weights.h5")
    fresh = small()
    fresh.load_weights(tmp_path / "m.weights.h5")
    np.testing.assert_array_equal(fresh.get_weights()[0], m.get_weights()[0])


@needs_h5py
def test_keras_files_refuse_bad_input_and_change_nothing(tmp_path):
    m = small()
    with pytest.raises(ValueError, match="legacy Keras H5"):
        m.save(tmp_path / "m.h5")
    with pytest.raises(ValueError, match="legacy Keras H5"):
        imdbfast.load_model(tmp_path / "m.h5")
    with pytest.raises(ValueError, match=r"must end in `\.weights\.h5`"):
        m.save_weights(tmp_path / "m.h5")
    (tmp_path / "bad.keras").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a readable .keras file"):
        imdbfast.load_model(tmp_path / "bad.keras")
    with pytest.raises(ValueError, match="file not found"):
        imdbfast.load_model(tmp_path / "missing.keras")
    other = imdbfast.Sequential([imdbfast.Input((50,)), layers.Dense(7), layers.Dense(1)])
    other.save_weights(tmp_path / "o.weights.h5")
    before = m.get_weights()
    with pytest.raises(ValueError, match="expects"):
        m.load_weights(tmp_path / "o.weights.h5")
    for a, b in zip(before, m.get_weights()):
        np.testing.assert_array_equal(a, b)
    m.save(tmp_path / "o.keras")
    with pytest.raises(FileExistsError):
        m.save(tmp_path / "o.keras", overwrite=False)


def test_keras_files_without_h5py_name_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "h5py", None)
    m = small()
    with pytest.raises(ImportError, match=r"imdbfast\[keras-io\]"):
        m.save(tmp_path / "m.keras")
    with pytest.raises(ImportError, match=r"imdbfast\[keras-io\]"):
        imdbfast.load_model(DATA / "keras_small.keras")
    assert not (tmp_path / "m.keras").exists()
    m.save(tmp_path / "m.npz")  # imdbfast's own format needs nothing


_KERAS_SIDE = r"""
import importlib.util, os, sys
os.environ.setdefault("KERAS_BACKEND", next(b for b in ("jax", "tensorflow", "torch")
                                            if importlib.util.find_spec(b)))
import numpy as np, keras
folder = sys.argv[1]
x = np.load(os.path.join(folder, "x.npy"))
ours = keras.models.load_model(os.path.join(folder, "ours.keras"))
mine = keras.Sequential([keras.Input(shape=(50,)), keras.layers.Dense(8, activation="relu"),
                         keras.layers.Dense(1, activation="sigmoid")])
mine.load_weights(os.path.join(folder, "ours.weights.h5"))
np.savez(os.path.join(folder, "keras_out.npz"), model=ours.predict(x, verbose=0),
         weights=mine.predict(x, verbose=0), iterations=int(ours.optimizer.iterations))
"""


@needs_h5py
@needs_keras
def test_keras_reads_what_imdbfast_writes(tmp_path):
    e = expected()
    m = small()
    m.fit(e["x"], e["y"], epochs=2, batch_size=16, verbose=0, seed=1)
    m.save(tmp_path / "ours.keras")
    m.save_weights(tmp_path / "ours.weights.h5")
    np.save(tmp_path / "x.npy", e["x"])
    r = subprocess.run([sys.executable, "-c", _KERAS_SIDE, str(tmp_path)], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    out = np.load(tmp_path / "keras_out.npz")
    ours = m.predict(e["x"], verbose=0)
    np.testing.assert_allclose(out["model"], ours, atol=KERAS_ATOL, rtol=0)
    np.testing.assert_allclose(out["weights"], ours, atol=KERAS_ATOL, rtol=0)
    assert int(out["iterations"]) == m._net.iterations


# ---- Keras's callbacks ------------------------------------------------------------------------
def keras_callback_runs():
    return json.loads(str(expected()["callbacks"]))


def test_reduce_lr_on_plateau_and_csv_logger_as_keras(tmp_path):
    e, k = expected(), keras_callback_runs()
    m = small()
    h = m.fit(e["x"], e["y"], epochs=6, batch_size=16, shuffle=False, verbose=0,
              validation_data=(e["x"][:40], e["y"][:40]),
              callbacks=[callbacks.ReduceLROnPlateau(monitor="loss", patience=1, factor=0.5,
                                                     min_delta=0.01),
                         callbacks.CSVLogger(tmp_path / "log.csv")])
    # the learning rates are decisions (float32 values, as Keras reads its variable): exact
    assert h.history["learning_rate"] == k["plateau_history"]["learning_rate"]
    for key, v in k["plateau_history"].items():
        np.testing.assert_allclose(h.history[key], v, rtol=1e-5, err_msg=key)
    ours = list(csv_rows(tmp_path / "log.csv"))
    theirs = list(csv_rows(k["csv"]))
    assert ours[0] == theirs[0]  # the header
    np.testing.assert_allclose(np.array(ours[1:], float), np.array(theirs[1:], float), rtol=1e-5)


def csv_rows(source):
    import csv
    import io

    text = Path(source).read_text() if isinstance(source, Path) else source
    return csv.reader(io.StringIO(text))


def test_learning_rate_scheduler_as_keras():
    e, k = expected(), keras_callback_runs()
    m = small()
    h = m.fit(e["x"], e["y"], epochs=3, batch_size=16, shuffle=False, verbose=0, callbacks=[
        callbacks.LearningRateScheduler(lambda epoch, lr: lr * 0.5 if epoch else 0.01)])
    np.testing.assert_allclose(h.history["learning_rate"],
                               k["scheduler_history"]["learning_rate"], rtol=1e-7)
    for key in ("loss", "accuracy"):
        np.testing.assert_allclose(h.history[key], k["scheduler_history"][key], rtol=1e-5)
    assert m.optimizer.learning_rate == pytest.approx(0.0025)
    with pytest.raises(ValueError, match="should be a float"):
        m.fit(e["x"], e["y"], verbose=0,
              callbacks=[callbacks.LearningRateScheduler(lambda epoch: "fast")])
    with pytest.raises(ValueError, match="learning_rate"):
        m.optimizer.learning_rate = -1.0


@needs_h5py
def test_model_checkpoint_formats_paths_and_keeps_the_best(tmp_path):
    e = expected()
    m = small()
    pattern = str(tmp_path / "ck" / "m-{epoch:02d}-{val_loss:.3f}.keras")
    best = callbacks.ModelCheckpoint(pattern, save_best_only=True, monitor="val_accuracy")
    every = callbacks.ModelCheckpoint(str(tmp_path / "w-{epoch}.weights.h5"),
                                      save_weights_only=True)
    batches = callbacks.ModelCheckpoint(str(tmp_path / "b-{epoch}-{batch}.keras"), save_freq=4)
    h = m.fit(e["x"], e["y"], epochs=3, batch_size=16, verbose=0, seed=3,
              validation_data=(e["x"][:40], e["y"][:40]), callbacks=[best, every, batches])
    saved = sorted(p.name for p in (tmp_path / "ck").iterdir())
    accs = h.history["val_accuracy"]
    improved = [i for i in range(3) if accs[i] > max(accs[:i], default=-1)]
    assert saved == sorted(f"m-{i + 1:02d}-{h.history['val_loss'][i]:.3f}.keras" for i in improved)
    assert sorted(p.name for p in tmp_path.glob("w-*")) == ["w-1.weights.h5", "w-2.weights.h5",
                                                          "w-3.weights.h5"]
    # 6 batches per epoch, a save every 4: after batches 4 and 8 and 12 and 16
    assert sorted(p.name for p in tmp_path.glob("b-*")) == ["b-1-4.keras", "b-2-2.keras",
                                                          "b-2-6.keras", "b-3-4.keras"]
    last = imdbfast.load_model(tmp_path / "b-3-4.keras")
    assert last.count_params() == m.count_params()
    with pytest.raises(ValueError, match="must end in `.keras`"):
        callbacks.ModelCheckpoint(str(tmp_path / "m.npz"))
    with pytest.raises(ValueError, match="save_freq"):
        callbacks.ModelCheckpoint(str(tmp_path / "m.keras"), save_freq="sometimes")
    with pytest.raises(KeyError, match="Failed to format"):
        small().fit(e["x"], e["y"], verbose=0, callbacks=[
            callbacks.ModelCheckpoint(str(tmp_path / "{nope}.keras"))])


def test_terminate_on_nan_stops_at_the_batch():
    e = expected()

    def overflowing():  # a linear output whose float32 products overflow: an infinite loss
        m = imdbfast.Sequential([imdbfast.Input((50,)), layers.Dense(8, "relu"), layers.Dense(1)])
        m.compile("sgd", "mse")
        m.set_weights([np.full(w.shape, 1e20, np.float32) for w in m.get_weights()])
        return m

    seen = []
    h = overflowing().fit(e["x"], e["y"], epochs=3, batch_size=16, verbose=0, callbacks=[
        callbacks.TerminateOnNaN(),
        callbacks.LambdaCallback(on_batch_end=lambda b, logs: seen.append(b))])
    assert seen == [0] and len(h.epoch) == 1 and not np.isfinite(h.history["loss"][0])
    with pytest.raises(RuntimeError, match="NaN or Inf loss"):
        overflowing().fit(e["x"], e["y"], verbose=0,
                          callbacks=[callbacks.TerminateOnNaN(raise_error=True)])


# ---- frozen layers ----------------------------------------------------------------------------
def frozen_small(backend: str = "cpu") -> imdbfast.Sequential:
    m = small(compile=False)
    if backend != "cpu":
        m = imdbfast.Sequential.from_config(m.get_config(), device=backend)
        m.set_weights(small(compile=False).get_weights())
    m.layers[0].trainable = False
    m.compile(imdbfast.optimizers.Adam(), "binary_crossentropy", ["accuracy"])
    return m


def test_a_frozen_layer_keeps_its_weights_and_the_rest_trains_as_keras():
    e, k = expected(), keras_callback_runs()
    m = frozen_small()
    before = m.get_weights()
    h = m.fit(e["x"], e["y"], epochs=3, batch_size=16, shuffle=False, verbose=0)
    after = m.get_weights()
    np.testing.assert_array_equal(after[0], before[0])
    np.testing.assert_array_equal(after[1], before[1])
    assert not np.array_equal(after[2], before[2])
    for key, v in k["frozen_history"].items():
        np.testing.assert_allclose(h.history[key], v, rtol=1e-5, err_msg=key)
    np.testing.assert_allclose(m.predict(e["x"], verbose=0), k["frozen_predictions"],
                               atol=KERAS_ATOL, rtol=0)
    assert [w.path for w in m.trainable_weights] == ["dense_1/kernel", "dense_1/bias"]
    assert [w.path for w in m.non_trainable_weights] == ["dense/kernel", "dense/bias"]


@pytest.mark.parametrize("optimizer", ["rmsprop", "sgd", "adam",
                                       imdbfast.optimizers.SGD(momentum=0.9)])
@pytest.mark.parametrize("frozen", [0, 1])
def test_freezing_works_for_every_optimizer_and_layer(optimizer, frozen):
    e = expected()
    m = small(compile=False)
    m.layers[frozen].trainable = False
    m.compile(optimizer, "binary_crossentropy")
    before = m.get_weights()
    m.fit(e["x"], e["y"], epochs=2, batch_size=16, verbose=0, seed=0)
    after = m.get_weights()
    for p in range(4):
        assert np.array_equal(after[p], before[p]) == (p // 2 == frozen), p


def test_trainable_takes_effect_at_compile_as_keras():
    e = expected()
    m = small()
    m.layers[0].trainable = False  # after compile: not yet
    before = m.get_weights()[0]
    m.fit(e["x"], e["y"], verbose=0)
    assert not np.array_equal(m.get_weights()[0], before)
    m.compile("rmsprop", "binary_crossentropy")
    frozen = m.get_weights()[0]
    m.fit(e["x"], e["y"], verbose=0)
    np.testing.assert_array_equal(m.get_weights()[0], frozen)
    with pytest.raises(ValueError, match="trainable"):
        m.layers[0].trainable = "no"


def test_frozen_summary_and_files(tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    keras_text = json.loads((DATA / "keras_summary.json").read_text())
    f = imdbfast.Sequential([layers.Dense(16, name="hidden"), layers.Dense(1, name="out")],
                            name="frozen")
    f.layers[0].trainable = False
    f.build((None, 7))
    got = []
    f.summary(print_fn=got.append, show_trainable=True)
    assert got == [keras_text["frozen"]]
    assert f.get_config()["layers"][1]["config"]["trainable"] is False
    assert imdbfast.Sequential.from_config(f.get_config()).layers[0].trainable is False


@needs_h5py
def test_frozen_keras_file_loads_with_its_optimizer_state():
    e, k = expected(), keras_callback_runs()
    m = imdbfast.load_model(DATA / "keras_frozen.keras")
    assert [l.trainable for l in m.layers] == [False, True]
    np.testing.assert_allclose(m.predict(e["x"], verbose=0), k["frozen_predictions"],
                               atol=KERAS_ATOL, rtol=0)
    assert m._net.iterations == 18
    before = m.get_weights()[0]
    m.fit(e["x"], e["y"], verbose=0)
    np.testing.assert_array_equal(m.get_weights()[0], before)


@pytest.mark.parametrize("kind", [pytest.param("sim", id="cuda-sim"),
                                  pytest.param("cuda", id="cuda", marks=pytest.mark.cuda)])
def test_frozen_layers_on_the_gpu(kind):
    from conftest import _gpu_module
    from imdbfast import _backend

    module = _gpu_module(kind)
    e = expected()
    previous = _backend.use_cuda_module(module)
    try:
        gpu = frozen_small("cuda")
        before = gpu.get_weights()
        hg = gpu.fit(e["x"], e["y"], epochs=2, batch_size=16, shuffle=False, verbose=0)
        after = gpu.get_weights()
    finally:
        _backend.use_cuda_module(previous)
    hc = frozen_small().fit(e["x"], e["y"], epochs=2, batch_size=16, shuffle=False, verbose=0)
    np.testing.assert_array_equal(after[0], before[0])
    np.testing.assert_array_equal(after[1], before[1])
    assert not np.array_equal(after[2], before[2])
    # the GPU's sums run in another order: float32 rounding apart
    np.testing.assert_allclose(hg.history["loss"], hc.history["loss"], rtol=1e-5)


# ---- metrics ----------------------------------------------------------------------------------
def test_compile_metrics_by_string_and_object_as_keras():
    e, k = expected(), keras_callback_runs()
    m = small(compile=False)
    m.compile(imdbfast.optimizers.RMSprop(momentum=0.5), "binary_crossentropy",
              metrics=["acc", "mse", "mae", "binary_crossentropy", "AUC", "precision", "recall",
                       imdbfast.metrics.BinaryAccuracy(threshold=0.3), imdbfast.metrics.AUC(),
                       imdbfast.metrics.Precision(thresholds=0.4), imdbfast.metrics.Recall()])
    h = m.fit(e["x"], e["y"], epochs=2, batch_size=16, shuffle=False, verbose=0,
              validation_data=(e["x"][:40], e["y"][:40]))
    assert sorted(h.history) == sorted(k["metrics_history"])  # Keras's names, _1 for repeats
    for key, v in k["metrics_history"].items():
        # float32 sums in Keras: 1e-5 relative (AUC and the counts' ratios are exact in double)
        np.testing.assert_allclose(h.history[key], v, rtol=1e-5, atol=1e-7, err_msg=key)
    ev = m.evaluate(e["x"], e["y"], verbose=0, return_dict=True)
    assert list(ev) == sorted(ev) and set(ev) == {k for k in h.history if not k.startswith("val_")}
    values = m.evaluate(e["x"], e["y"], verbose=0)
    assert values == [ev[n] for n in m.metrics_names]  # zip(metrics_names, evaluate()) works


def test_metrics_standalone_as_keras():
    k = keras_callback_runs()
    probe = k["metric_probe"]
    p, t, w = (np.array(probe[n], np.float32) for n in ("p", "t", "w"))
    made = {"auc": imdbfast.metrics.AUC(), "auc_7": imdbfast.metrics.AUC(num_thresholds=7),
            "precision": imdbfast.metrics.Precision(),
            "recall": imdbfast.metrics.Recall(thresholds=0.3),
            "binary_accuracy": imdbfast.metrics.BinaryAccuracy(),
            "mse": imdbfast.metrics.MeanSquaredError(),
            "mae": imdbfast.metrics.MeanAbsoluteError(),
            "bce": imdbfast.metrics.BinaryCrossentropy()}
    for name, metric in made.items():
        metric.update_state(t, p)
        plain = metric.result()
        metric.reset_state()
        metric.update_state(t[:100], p[:100], sample_weight=w[:100])  # in two parts: sums
        metric.update_state(t[100:], p[100:], sample_weight=w[100:])
        np.testing.assert_allclose([plain, metric.result()], k["standalone"][name], rtol=2e-6,
                                   err_msg=name)


def test_metrics_refuse_what_they_do_not_compute():
    with pytest.raises(ValueError, match="curve"):
        imdbfast.metrics.AUC(curve="PR")
    with pytest.raises(ValueError, match="top_k"):
        imdbfast.metrics.Precision(top_k=2)
    with pytest.raises(ValueError, match="num_thresholds"):
        imdbfast.metrics.AUC(num_thresholds=1)
    with pytest.raises(TypeError, match="metrics: expected a list"):
        small(compile=False).compile("rmsprop", metrics="accuracy")
    m = imdbfast.metrics.AUC()
    with pytest.raises(ValueError, match="shapes"):
        m.update_state(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="sample_weight"):
        m.update_state(np.ones(3), np.ones(3), sample_weight=[1, -1, 1])
    nan = imdbfast.metrics.AUC()  # a diverged model's NaN outputs: the lowest bucket, no crash
    nan.update_state([[1.0], [0.0], [1.0]], [[np.nan], [0.2], [np.inf]])
    assert 0.0 <= nan.result() <= 1.0
    from imdbfast import _core
    state = np.zeros(_core.metric_state_size("auc"))
    with pytest.raises(ValueError, match="rows: index 5 out of range"):
        _core.metric_update("auc", state, np.ones((1, 1), np.float32), np.ones((2, 1), np.float32),
                            None, np.array([5]))
    assert not state.any()


def test_the_training_outputs_are_the_rows_predictions_before_their_step():
    """What the metrics see: each trained row's output before the step that uses it."""
    e = expected()
    m = small()
    x = e["x"][:16]
    before = m.predict(x, verbose=0)
    out = np.empty((16, 1), np.float32)
    m._net.train_batches(imdbfast.to_csr(x), e["y"][:16, None].copy(), None,
                         np.arange(16, dtype=np.int64), 16, 0, 1, 1, outputs=out)
    np.testing.assert_allclose(out, before, rtol=1e-6, atol=0)  # (train and predict sum apart)
    with pytest.raises(ValueError, match="outputs"):
        m._net.train_batches(imdbfast.to_csr(x), e["y"][:16, None].copy(), None,
                             np.arange(16, dtype=np.int64), 16, 0, 1, 1,
                             outputs=np.empty((15, 1), np.float32))


@needs_h5py
def test_metric_objects_survive_the_files(tmp_path):
    m = small(compile=False)
    m.compile("rmsprop", "binary_crossentropy", ["accuracy", imdbfast.metrics.AUC(name="roc")])
    m.save(tmp_path / "m.keras")
    m.save(tmp_path / "m.npz")
    for p in ("m.keras", "m.npz"):
        assert imdbfast.load_model(tmp_path / p).metrics_names == ["loss", "accuracy", "roc"]


@pytest.mark.parametrize("kind", [pytest.param("sim", id="cuda-sim"),
                                  pytest.param("cuda", id="cuda", marks=pytest.mark.cuda)])
def test_metrics_on_the_gpu(kind):
    from conftest import _gpu_module
    from imdbfast import _backend

    module = _gpu_module(kind)
    e = expected()
    metrics = ["accuracy", "AUC", "precision", "mae"]

    def run(device):
        m = imdbfast.Sequential.from_config(small(compile=False).get_config(), device=device)
        m.set_weights(small(compile=False).get_weights())
        m.compile("adam", "binary_crossentropy", metrics)
        return m.fit(e["x"], e["y"], epochs=2, batch_size=16, shuffle=False, verbose=0,
                     validation_data=(e["x"][:40], e["y"][:40])).history

    previous = _backend.use_cuda_module(module)
    try:
        gpu = run("cuda")
    finally:
        _backend.use_cuda_module(previous)
    cpu = run("cpu")
    assert sorted(gpu) == sorted(cpu)
    for key in cpu:  # the GPU's sums run in another order: float32 rounding apart
        np.testing.assert_allclose(gpu[key], cpu[key], rtol=1e-5, atol=1e-6, err_msg=key)


# ---- losses -----------------------------------------------------------------------------------
@pytest.mark.parametrize("key", ["from_logits", "smoothing", "mse"])
def test_loss_objects_as_keras(key):
    e, k = expected(), keras_callback_runs()
    loss, last = {"from_logits": (imdbfast.losses.BinaryCrossentropy(from_logits=True), None),
                  "smoothing": (imdbfast.losses.BinaryCrossentropy(label_smoothing=0.2),
                                "sigmoid"),
                  "mse": (imdbfast.losses.MeanSquaredError(), "sigmoid")}[key]
    m = imdbfast.Sequential([imdbfast.Input((50,)), layers.Dense(8, "relu"),
                             layers.Dense(1, last)])
    m.set_weights(small(compile=False).get_weights())
    m.compile("rmsprop", loss, ["accuracy", "AUC"])
    h = m.fit(e["x"], e["y"], epochs=2, batch_size=16, shuffle=False, verbose=0,
              validation_data=(e["x"][:40], e["y"][:40]))
    assert sorted(h.history) == sorted(k["losses"][key])
    for name, v in k["losses"][key].items():
        np.testing.assert_allclose(h.history[name], v, rtol=1e-5, atol=1e-7, err_msg=name)


def test_losses_refuse_bad_arguments():
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="label_smoothing"):
            imdbfast.losses.BinaryCrossentropy(label_smoothing=bad)
    with pytest.raises(ValueError, match="reduction"):
        imdbfast.losses.MeanSquaredError(reduction="sum")
    with pytest.raises(ValueError, match="loss: unknown 'hinge'"):
        small(compile=False).compile("rmsprop", "hinge")
    m = small(compile=False)
    m.compile("rmsprop", imdbfast.losses.BinaryCrossentropy(label_smoothing=0.1))
    c = imdbfast.Sequential.from_config(m.get_config())
    c.compile_from_config(m.get_compile_config())
    assert c._loss.label_smoothing == 0.1


# ---- data the way Keras returns it --------------------------------------------------------------
def _object_array(rows):
    """What keras.datasets.imdb.load_data returns: a 1-D object array of lists."""
    a = np.empty(len(rows), dtype=object)
    a[:] = [list(r) for r in rows]
    return a


def _plain(v):
    """A result in comparable form: object arrays and Sequences as lists of lists."""
    if isinstance(v, (imdbfast.Sequences, np.ndarray)) and getattr(v, "dtype", None) == object:
        return [list(r) for r in v]
    if isinstance(v, np.ndarray):
        return v.tolist()
    return v


ROWS = [[1, 14, 22], [1, 5], [], [1, 7, 7, 9], [1, 2, 3, 4, 5]]
# (operation, works on Sequences: same result as Keras's object array / fails saying how)
SAME = {
    "len": lambda x: len(x),
    "index": lambda x: x[1],
    "negative index": lambda x: x[-1],
    "numpy int index": lambda x: x[np.int64(3)],
    "slice": lambda x: x[1:4],
    "strided slice": lambda x: x[::2],
    "int list": lambda x: x[[4, 0]],
    "int array": lambda x: x[np.array([3, 3, 1])],
    "boolean mask": lambda x: x[np.array([len(r) > 2 for r in x])],
    "ellipsis": lambda x: x[...],
    "iterate": lambda x: [len(r) for r in x],
    "shape": lambda x: x.shape,
    "dtype": lambda x: x.dtype,
    "ndim": lambda x: x.ndim,
    "size": lambda x: x.size,
    "tolist": lambda x: x.tolist(),
    "copy": lambda x: x.copy(),
    "astype(object)": lambda x: x.astype(object),
    "np.asarray": lambda x: np.asarray(x),
    "np.asarray(object)": lambda x: np.asarray(x, dtype=object),
    "elementwise ==": lambda x: x[:2] == x[:2],
    "elementwise != ": lambda x: x[:3] != x[[0, 0, 2]],
    "== scalar": lambda x: x == 5,
    "np.array_equal": lambda x: np.array_equal(x, x),
    "max id": lambda x: max(max(r) for r in x if r),
    "permutation index": lambda x: x[np.random.default_rng(0).permutation(len(x))],
    "np.concatenate": lambda x: np.concatenate([x, x[:1]]),
    "decode": lambda x: " ".join(str(i - 3) for i in x[0]),
}
FAILS = {
    "item assignment": lambda x: x.__setitem__(0, [1, 2]),
    "np.random.shuffle": lambda x: np.random.default_rng(0).shuffle(x),
    "legacy np.random.shuffle": lambda x: np.random.shuffle(x),
    "ndarray method": lambda x: x.argsort(),
    "reshape": lambda x: x.reshape(-1, 1),
}


@pytest.mark.parametrize("op", sorted(SAME))
def test_sequences_work_as_keras_object_arrays(op):
    keras_x, ours = _object_array(ROWS), imdbfast.Sequences.from_lists(ROWS)
    assert _plain(SAME[op](ours)) == _plain(SAME[op](keras_x))


@pytest.mark.parametrize("op", sorted(FAILS))
@pytest.mark.filterwarnings("ignore:you are shuffling")  # (NumPy's, for any non-ndarray)
def test_sequences_say_how_to_get_the_object_array(op):
    FAILS[op](_object_array(ROWS))  # Keras's object array can
    ours = imdbfast.Sequences.from_lists(ROWS)
    with pytest.raises((TypeError, AttributeError), match=r"np\.asarray\(x, dtype=object\)"):
        FAILS[op](ours)
    assert ours.tolist() == ROWS  # untouched


def test_a_history_among_the_callbacks_is_the_one_fit_returns():
    e = expected()
    h = callbacks.History()
    m = small()
    got = m.fit(e["x"], e["y"], epochs=2, verbose=0, callbacks=[h])
    assert got is h and m.history is h and len(h.history["loss"]) == 2
    seen = []

    class Bar(callbacks.ProgbarLogger):  # the user's progress bar replaces the default one
        def on_epoch_end(self, epoch, logs=None):
            seen.append(epoch)

    m.fit(e["x"], e["y"], epochs=2, verbose=1, callbacks=[Bar()])
    assert seen == [0, 1]


@needs_h5py
def test_an_unbuilt_model_saves_as_keras_does(tmp_path):
    m = imdbfast.Sequential([layers.Dense(4, "relu"), layers.Dense(1, "sigmoid")])
    m.compile("adam", "binary_crossentropy", ["AUC"])
    m.save(tmp_path / "u.keras")
    back = imdbfast.load_model(tmp_path / "u.keras")
    assert not back.built and [l.units for l in back.layers] == [4, 1]
    assert back.metrics_names == ["loss", "AUC"]
    e = expected()
    back.fit(e["x"], e["y"], verbose=0)  # built by its first fit
    assert back.input_shape == (None, 50)


def test_a_keras_optimizer_config_with_clipping_is_refused_by_name():
    from imdbfast import _keras_files

    keras_defaults = {"name": "adam", "learning_rate": 0.001, "weight_decay": None,
                      "clipnorm": None, "global_clipnorm": None, "clipvalue": None,
                      "use_ema": False, "ema_momentum": 0.99, "ema_overwrite_frequency": None,
                      "loss_scale_factor": None, "gradient_accumulation_steps": None,
                      "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-07, "amsgrad": False}
    assert _keras_files._optimizer_from_keras({"class_name": "Adam", "config": keras_defaults}) \
        == imdbfast.optimizers.Adam()
    with pytest.raises(ValueError, match=r"Adam: clipnorm=1.0 is not supported by imdbfast"):
        _keras_files._optimizer_from_keras({"class_name": "Adam",
                                            "config": {**keras_defaults, "clipnorm": 1.0}})
