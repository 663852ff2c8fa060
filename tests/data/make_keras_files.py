"""Makes the Keras-written files that tests/test_keras_port.py reads, with real Keras 3.

    KERAS_BACKEND=jax python tests/data/make_keras_files.py      # (keras, jax, h5py installed)

Writes, beside this script:
  keras_small.keras         Input(50) -> Dense(8, relu) -> Dense(1, sigmoid), RMSprop, fitted
  keras_small.weights.h5    the same model's save_weights
  keras_dropout.keras       a model with a Dropout layer (Input, Dense(8), Dropout(0.5), Dense(1))
  keras_frozen.keras        the small model with its first layer frozen, Adam, fitted
  keras_expected.npz        the probe rows and what Keras computed on them (see below)
  keras_summary.json        Keras's summary() texts for several models and widths
The data and the initial weights come from fixed NumPy seeds, so imdbfast's tests rebuild the
same model and compare.
"""

import json
import os
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ["COLUMNS"] = "200"  # summary()'s default width then is Keras's 88

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import layers  # noqa: E402

HERE = Path(__file__).resolve().parent


def data():
    rng = np.random.default_rng(7)
    x = (rng.random((96, 50)) < 0.15).astype(np.float32)
    y = (rng.random(96) < 0.5).astype(np.float32)
    return x, y


def initial_weights():
    rng = np.random.default_rng(11)
    return [rng.uniform(-0.3, 0.3, (50, 8)).astype(np.float32), np.zeros(8, np.float32),
            rng.uniform(-0.3, 0.3, (8, 1)).astype(np.float32), np.zeros(1, np.float32)]


def small_model():
    m = keras.Sequential([keras.Input(shape=(50,)), layers.Dense(8, activation="relu"),
                          layers.Dense(1, activation="sigmoid")])
    m.set_weights(initial_weights())
    m.compile(optimizer=keras.optimizers.RMSprop(momentum=0.5), loss="binary_crossentropy",
              metrics=["accuracy"])
    return m


class BatchLogs(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.train, self.test = [], []

    def on_train_batch_end(self, batch, logs=None):
        self.train.append([batch, logs["loss"], logs["accuracy"]])

    def on_test_batch_end(self, batch, logs=None):
        self.test.append([batch, logs["loss"], logs["accuracy"]])


def summaries():
    out = {}
    book = keras.Sequential([keras.Input(shape=(10000,)), layers.Dense(16, activation="relu"),
                             layers.Dense(16, activation="relu"),
                             layers.Dense(1, activation="sigmoid")])
    text = []
    book.summary(print_fn=text.append)
    out["book"] = text[0]
    text = []
    book.summary(print_fn=text.append, line_length=70)
    out["book_70"] = text[0]
    text = []
    book.summary(print_fn=text.append, show_trainable=True)
    out["book_trainable"] = text[0]
    unbuilt = keras.Sequential([layers.Dense(16, name="hidden"), layers.Dense(1, name="out")],
                               name="small")
    text = []
    unbuilt.summary(print_fn=text.append, line_length=50)
    out["unbuilt_50"] = text[0]
    frozen = keras.Sequential([layers.Dense(16, name="hidden"), layers.Dense(1, name="out")],
                              name="frozen")
    frozen.layers[0].trainable = False
    frozen.build((None, 7))
    text = []
    frozen.summary(print_fn=text.append, show_trainable=True)
    out["frozen"] = text[0]
    book.compile(optimizer="rmsprop", loss="binary_crossentropy", metrics=["accuracy"])
    x = (np.random.default_rng(0).random((8, 10000)) < 0.01).astype(np.float32)
    book.fit(x, np.ones(8), epochs=1, batch_size=4, verbose=0)
    text = []
    book.summary(print_fn=text.append)
    out["book_fitted"] = text[0]
    return out


def learning_rate_runs(x, y):
    """The learning-rate callbacks and the CSV log, each on a fresh copy of the model."""
    s = small_model()
    csv_path = HERE / "_log.csv"
    hs = s.fit(x, y, epochs=6, batch_size=16, shuffle=False, verbose=0,
               validation_data=(x[:40], y[:40]),
               callbacks=[keras.callbacks.ReduceLROnPlateau(monitor="loss", patience=1,
                                                            factor=0.5, min_delta=0.01),
                          keras.callbacks.CSVLogger(csv_path)])
    csv_text = csv_path.read_text()
    csv_path.unlink()
    t = small_model()
    ht = t.fit(x, y, epochs=3, batch_size=16, shuffle=False, verbose=0, callbacks=[
        keras.callbacks.LearningRateScheduler(lambda epoch, lr: lr * 0.5 if epoch else 0.01)])
    f = small_model()
    f.layers[0].trainable = False
    f.compile(optimizer=keras.optimizers.Adam(), loss="binary_crossentropy",
              metrics=["accuracy"])
    hf = f.fit(x, y, epochs=3, batch_size=16, shuffle=False, verbose=0)
    f.save(HERE / "keras_frozen.keras")
    g = small_model()
    g.compile(optimizer=keras.optimizers.RMSprop(momentum=0.5), loss="binary_crossentropy",
              metrics=["acc", "mse", "mae", "binary_crossentropy", "AUC", "precision", "recall",
                       keras.metrics.BinaryAccuracy(threshold=0.3), keras.metrics.AUC(),
                       keras.metrics.Precision(thresholds=0.4), keras.metrics.Recall()])
    hg = g.fit(x, y[:, None], epochs=2, batch_size=16, shuffle=False, verbose=0,
               validation_data=(x[:40], y[:40, None]))
    rng = np.random.default_rng(5)
    p = rng.random((300, 1)).astype(np.float32)
    p[:20] = 0.0
    p[20:40] = 1.0
    p[40:60] = np.round(p[40:60] * 199) / 199  # on the thresholds
    t = (rng.random((300, 1)) < p).astype(np.float32)
    w = rng.random(300).astype(np.float32)
    standalone = {}
    for name, metric in [("auc", keras.metrics.AUC()), ("auc_7", keras.metrics.AUC(num_thresholds=7)),
                         ("precision", keras.metrics.Precision()),
                         ("recall", keras.metrics.Recall(thresholds=0.3)),
                         ("binary_accuracy", keras.metrics.BinaryAccuracy()),
                         ("mse", keras.metrics.MeanSquaredError()),
                         ("mae", keras.metrics.MeanAbsoluteError()),
                         ("bce", keras.metrics.BinaryCrossentropy())]:
        metric.update_state(t, p)
        plain = float(metric.result())
        metric.reset_state()
        metric.update_state(t, p, sample_weight=w)
        standalone[name] = [plain, float(metric.result())]
    losses = {}
    for key, loss, last in [
            ("from_logits", keras.losses.BinaryCrossentropy(from_logits=True), None),
            ("smoothing", keras.losses.BinaryCrossentropy(label_smoothing=0.2), "sigmoid"),
            ("mse", keras.losses.MeanSquaredError(), "sigmoid")]:
        q = keras.Sequential([keras.Input(shape=(50,)), layers.Dense(8, activation="relu"),
                              layers.Dense(1, activation=last)])
        q.set_weights(initial_weights())
        q.compile(optimizer="rmsprop", loss=loss, metrics=["accuracy", "AUC"])
        hq = q.fit(x, y[:, None], epochs=2, batch_size=16, shuffle=False, verbose=0,
                   validation_data=(x[:40], y[:40, None]))
        losses[key] = hq.history
    return {"losses": losses, "metrics_history": hg.history, "metric_probe": {"p": p.tolist(), "t": t.tolist(),
                                                            "w": w.tolist()},
            "standalone": standalone,
            "plateau_history": hs.history, "csv": csv_text, "scheduler_history": ht.history,
            "frozen_history": hf.history, "frozen_predictions": f.predict(x, verbose=0).tolist()}


def main():
    # First, so that the layers get Keras's first names (dense, dense_1, ...; Keras counts per
    # process).
    (HERE / "keras_summary.json").write_text(json.dumps(summaries(), indent=1,
                                                        ensure_ascii=False) + "\n")
    x, y = data()
    m = small_model()
    logs = BatchLogs()
    h = m.fit(x, y, epochs=2, batch_size=16, shuffle=False, verbose=0, callbacks=[logs],
              validation_data=(x[:40], y[:40]), validation_batch_size=16)
    m.save(HERE / "keras_small.keras")
    m.save_weights(HERE / "keras_small.weights.h5")
    ev = m.evaluate(x, y, verbose=0, return_dict=True)
    np.savez(HERE / "keras_expected.npz", x=x, y=y, predictions=m.predict(x, verbose=0),
             train_batch_logs=np.array(logs.train), test_batch_logs=np.array(logs.test),
             history=json.dumps(h.history), evaluate_keys=json.dumps(list(ev)),
             iterations=int(m.optimizer.iterations),
             callbacks=json.dumps(learning_rate_runs(x, y)))

    d = keras.Sequential([keras.Input(shape=(50,)), layers.Dense(8, activation="relu"),
                          layers.Dropout(0.5), layers.Dense(1, activation="sigmoid")])
    d.save(HERE / "keras_dropout.keras")
    print("keras", keras.__version__, "backend", keras.backend.backend(), "->", HERE)


if __name__ == "__main__":
    main()
