"""A Sequential whose first layer is TextVectorization: raw strings in fit, evaluate and predict
(the same numbers as the model on the vectorised CSR), saving, loading and pickling with the
vocabulary, and the errors of such a model."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

import imdbfast
from imdbfast import layers


def corpus(rng, n=400):
    filler = [f"w{i}" for i in range(60)]
    y = rng.integers(0, 2, n)
    texts = [" ".join(list(rng.choice(filler, size=rng.integers(5, 25))) +
                      ["good" if t else "bad"]) for t in y]
    return texts, y


def text_model(tv, seed=0):
    m = imdbfast.Sequential([tv, layers.Dense(8, activation="relu"), layers.Dropout(0.5),
                             layers.Dense(1, activation="sigmoid")], seed=seed)
    m.compile("rmsprop", "binary_crossentropy", ["accuracy"])
    return m


@pytest.mark.parametrize("mode", ["multi_hot", "count", "tf_idf"])
def test_strings_in_equal_the_vectorised_matrix_in(rng, mode):
    texts, y = corpus(rng)
    tv = layers.TextVectorization(max_tokens=100, output_mode=mode, ngrams=2)
    tv.adapt(texts)
    m = text_model(tv)
    h = m.fit(texts, y, epochs=3, batch_size=32, verbose=0, validation_split=0.25, shuffle=False)
    plain = imdbfast.Sequential([layers.Input((tv.output_width,)), layers.Dense(8, activation="relu"),
                                 layers.Dropout(0.5), layers.Dense(1, activation="sigmoid")], seed=0)
    plain.compile("rmsprop", "binary_crossentropy", ["accuracy"])
    hp = plain.fit(tv(texts), y, epochs=3, batch_size=32, verbose=0, validation_split=0.25,
                   shuffle=False)
    assert h.history == hp.history
    for a, b in zip(m.get_weights(), plain.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(m.predict(texts, verbose=0), plain.predict(tv(texts), verbose=0))
    assert m.evaluate(texts, y, verbose=0) == plain.evaluate(tv(texts), y, verbose=0)
    assert m.train_on_batch(texts[:32], y[:32]) == plain.train_on_batch(tv(texts[:32]), y[:32])
    np.testing.assert_array_equal(m.predict_texts(texts[:5]), m.predict(texts[:5], verbose=0))


def test_layers_summary_and_adapting_after_adding(rng, capsys):
    texts, y = corpus(rng)
    tv = layers.TextVectorization(max_tokens=50, output_mode="multi_hot")
    m = text_model(tv)
    assert m.layers[0] is tv and tv.name == "text_vectorization" and not m.built
    with pytest.raises(ValueError, match="adapt the TextVectorization layer first"):
        m.build()
    tv.adapt(texts)  # Keras allows it until the model is built
    m.fit(texts, y, epochs=1, verbose=0)
    assert m.built and m.get_layer(index=1).kernel.shape == (50, 8)
    m.summary()
    table = capsys.readouterr().out
    assert "(TextVectorization)" in table and "(None, 50)" in table
    with pytest.raises(ValueError, match="built model"):
        tv.adapt(texts[:10])  # would change the Dense layer's input width
    assert tv.vocabulary_size() == 50  # unchanged


def test_save_load_and_pickle_keep_the_vocabulary_and_idf(rng, tmp_path):
    texts, y = corpus(rng)
    tv = layers.TextVectorization(max_tokens=80, output_mode="tf_idf", ngrams=2)
    tv.adapt(texts)
    m = text_model(tv, seed=3)
    m.fit(texts, y, epochs=2, verbose=0)
    want = m.predict(texts, verbose=0)
    m.save(tmp_path / "m.npz")
    back = imdbfast.load_model(tmp_path / "m.npz")
    assert back.layers[0].get_vocabulary() == tv.get_vocabulary()
    np.testing.assert_array_equal(back.layers[0].idf_weights, tv.idf_weights)
    np.testing.assert_array_equal(back.predict(texts, verbose=0), want)
    again = pickle.loads(pickle.dumps(m))
    np.testing.assert_array_equal(again.predict(texts, verbose=0), want)
    again.fit(texts, y, epochs=1, verbose=0)  # and it trains on


def test_keras_files_of_a_text_model_round_trip(rng, tmp_path):
    pytest.importorskip("h5py")
    texts, y = corpus(rng)
    for mode in ("multi_hot", "tf_idf"):
        tv = layers.TextVectorization(max_tokens=80, output_mode=mode, ngrams=2)
        tv.adapt(texts)
        m = text_model(tv, seed=4)
        m.fit(texts, y, epochs=2, verbose=0)
        m.save(tmp_path / "m.keras")  # the vocabulary as Keras's assets, the IDF as variables
        back = imdbfast.load_model(tmp_path / "m.keras")
        assert back.layers[0].get_vocabulary() == tv.get_vocabulary()
        np.testing.assert_array_equal(back.predict(texts, verbose=0), m.predict(texts, verbose=0))
        m.save_weights(tmp_path / "m.weights.h5")
        fresh = text_model(layers.TextVectorization.from_config(tv.get_config()), seed=9)
        fresh.layers[0].set_vocabulary(tv.get_vocabulary(), tv.idf_weights if mode == "tf_idf" else None)
        fresh.build()
        fresh.load_weights(tmp_path / "m.weights.h5")
        for a, b in zip(fresh.get_weights(), m.get_weights()):
            np.testing.assert_array_equal(a, b)


def test_a_term_keras_files_cannot_hold_is_refused_and_a_damaged_vocabulary_too(tmp_path):
    pytest.importorskip("h5py")
    tv = layers.TextVectorization(split="character", output_mode="count")
    tv.adapt(["ab\nc"])  # learns the term "\n"
    m = text_model(tv)
    m.build()
    with pytest.raises(ValueError, match="newline"):
        m.save(tmp_path / "m.keras")
    assert not (tmp_path / "m.keras").exists()
    m.save(tmp_path / "m.npz")  # imdbfast's format holds any term
    assert imdbfast.load_model(tmp_path / "m.npz").layers[0].get_vocabulary() == tv.get_vocabulary()
    with pytest.raises(ValueError, match="empty term"):
        tv._restore(["a", ""], None)
    assert tv.get_vocabulary()[1:] == tv._terms  # unchanged


def test_loads_a_text_model_keras_saved():
    # tests/data/keras_text_model.keras: TextVectorization(tf_idf, bigrams) -> Dense -> Dropout
    # -> Dense, saved by Keras 3.15 (tests/data/make_text_vectorization_fixture.py)
    pytest.importorskip("h5py")
    from pathlib import Path

    data = Path(__file__).parent / "data"
    want = json.loads((data / "keras_text_vectorization.json").read_text(encoding="utf-8"))["model"]
    m = imdbfast.load_model(data / "keras_text_model.keras")
    assert isinstance(m.layers[0], layers.TextVectorization) and m.layers[0].output_mode == "tf_idf"
    # float32 sums of a few products in another order than Keras's: within 1e-6, as the other
    # Keras-file tests (test_keras_port.KERAS_ATOL)
    np.testing.assert_allclose(m.predict(want["texts"], verbose=0).ravel(), want["predictions"],
                               atol=1e-6, rtol=0)


def test_what_a_text_model_refuses(rng):
    texts, y = corpus(rng)
    with pytest.raises(ValueError, match="Embedding"):
        imdbfast.Sequential([layers.TextVectorization(), layers.Dense(1)])
    with pytest.raises(ValueError, match="first layer"):
        imdbfast.Sequential([layers.Input((5,)), layers.TextVectorization(output_mode="count")])
    with pytest.raises(ValueError, match="first layer"):
        imdbfast.Sequential([layers.Dense(2), layers.TextVectorization(output_mode="count")])
    with pytest.raises(ValueError, match="must follow a Dense"):
        imdbfast.Sequential([layers.TextVectorization(output_mode="count"), layers.Dropout(0.5)])
    tv = layers.TextVectorization(output_mode="multi_hot")
    tv.adapt(texts)
    m = text_model(tv)
    with pytest.raises(TypeError, match=r"x\[1\]: expected a str"):
        m.fit(["ok", 3], [0, 1], verbose=0)
    with pytest.raises(TypeError, match="x: expected a list"):
        m.predict(tv(texts), verbose=0)  # a text model takes strings
    with pytest.raises(ValueError, match="word_index does not apply"):
        m.predict_texts(texts, word_index={"a": 1})
    assert not m.built  # nothing was built by refused calls... until a good one
    m.predict(texts[:3], verbose=0)
    assert m.built


_KERAS_LOADS = r"""
import json, os, sys
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import keras, tensorflow as tf
m = keras.models.load_model(sys.argv[1])
texts = json.load(open(sys.argv[2]))
print(json.dumps({"vocabulary": [str(t) for t in m.layers[0].get_vocabulary()],
                  "predictions": m(tf.constant([[t] for t in texts])).numpy().ravel().tolist()}))
"""


def test_keras_loads_a_text_model_imdbfast_saved(rng, tmp_path):
    import subprocess

    from test_text_vectorization import _keras_python

    exe = _keras_python()
    if exe is None:
        pytest.skip("IMDBFAST_KERAS_PYTHON does not name a Python with Keras 3 and TensorFlow")
    pytest.importorskip("h5py")
    texts, y = corpus(rng)
    tv = layers.TextVectorization(max_tokens=80, output_mode="tf_idf", ngrams=2)
    tv.adapt(texts)
    m = text_model(tv, seed=5)
    m.fit(texts, y, epochs=2, verbose=0)
    m.save(tmp_path / "m.keras")
    (tmp_path / "texts.json").write_text(json.dumps(texts[:50]))
    r = subprocess.run([exe, "-c", _KERAS_LOADS, str(tmp_path / "m.keras"), str(tmp_path / "texts.json")],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["vocabulary"] == tv.get_vocabulary()
    np.testing.assert_allclose(out["predictions"], m.predict(texts[:50], verbose=0).ravel(),
                               atol=1e-6, rtol=0)  # (as test_loads_a_text_model_keras_saved)
