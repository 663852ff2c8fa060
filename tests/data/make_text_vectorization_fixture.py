"""Writes tests/data/keras_text_vectorization.json: Keras 3's TextVectorization (TensorFlow ops)
on hostile synthetic texts, for each configuration in CASES, and the texts themselves, so that
tests/test_text_vectorization.py compares imdbfast with Keras without Keras installed; and
tests/data/keras_text_model.keras, a small text model Keras saved, with its predictions.

    pip install tensorflow-cpu keras        # Keras 3 with its TensorFlow text ops
    python tests/data/make_text_vectorization_fixture.py [OUT.json] [--texts FILE.json]

With --texts (a JSON list of str, e.g. real reviews) the same cases run on those texts instead;
the test suite's live comparison (IMDBFAST_KERAS_PYTHON) uses that to check real reviews.
"""

from __future__ import annotations

import json
import os
import random
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

CASES = [
    {},
    {"max_tokens": 50, "output_sequence_length": 12, "ngrams": 2},
    {"output_mode": "multi_hot", "ngrams": 2, "max_tokens": 200},
    {"output_mode": "count", "standardize": "lower"},
    {"output_mode": "tf_idf", "ngrams": [1, 3], "max_tokens": 300},
    {"output_mode": "tf_idf", "pad_to_max_tokens": True, "max_tokens": 500},
    {"output_mode": "multi_hot", "split": "character"},
    {"output_mode": "count", "standardize": "strip_punctuation", "ngrams": 3, "max_tokens": 400},
    {"standardize": None, "output_sequence_length": 5},
    {"split": None, "standardize": None},
    {"split": None, "output_mode": "multi_hot"},
]


def synthetic_texts(n: int = 240, seed: int = 7) -> list[str]:
    """Words of few letters (so counts tie often), mixed case, punctuation inside and around
    words, non-ASCII letters (some with upper-case forms Keras does not lower), every ASCII
    whitespace byte and some Unicode spaces, the OOV and mask tokens' spellings, empty texts."""
    rnd = random.Random(seed)
    letters = "abcAB"
    extra = ["é", "É", "Σσ", "ß", "日本", "🙂", "naïve", "[UNK]", "[unk]", "<br />", "don't",
             "e-mail", "U.S.A.", "!!!", "''", "a_b", "x\u00a0y", "p\u3000q", "\u2028"]
    spaces = [" ", " ", " ", "  ", "\t", "\n", "\r\n", "\v", "\f", " \u0085 "]
    punct = list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
    out = []
    for i in range(n):
        if i % 37 == 0:
            out.append("")
            continue
        words = []
        for _ in range(rnd.randint(1, 18)):
            r = rnd.random()
            if r < 0.12:
                w = rnd.choice(extra)
            else:
                w = "".join(rnd.choice(letters) for _ in range(rnd.randint(1, 3)))
                if r < 0.3:
                    w = rnd.choice(punct) + w if rnd.random() < 0.5 else w + rnd.choice(punct)
            words.append(w)
        text = words[0]
        for w in words[1:]:
            text += rnd.choice(spaces) + w
        out.append(text)
    return out


def run(texts: list[str]) -> list[dict]:
    import numpy as np
    from keras import layers

    results = []
    for case in CASES:
        kw = dict(case)
        if isinstance(kw.get("ngrams"), list):
            kw["ngrams"] = tuple(kw["ngrams"])
        layer = layers.TextVectorization(**kw)
        data = np.array(texts, dtype=object)
        if case.get("split", "whitespace") is None:
            data = data[:, None]  # one sample per text (Keras's (N, 1) input)
        layer.adapt(data)
        out = np.asarray(layer(data))
        entry = {"config": case, "vocabulary": [str(t) for t in layer.get_vocabulary()]}
        if case.get("output_mode") == "tf_idf":
            entry["idf"] = np.asarray(layer._lookup_layer.idf_weights).astype(float).tolist()
        if case.get("output_mode", "int") == "int":
            entry["int"] = out.reshape(len(texts), -1).astype(int).tolist()
        else:
            rows = []
            for r in out:
                nz = np.flatnonzero(r)
                rows.append([[int(c), float(r[c])] for c in nz])
            entry["bag"] = rows
            entry["width"] = int(out.shape[1])
        results.append(entry)
    return results


def save_model(texts: list[str], path: str) -> dict:
    """A small text model saved by Keras (its vocabulary as assets, its IDF weights as
    variables), and its predictions, for load_model's test."""
    import keras
    import numpy as np
    import tensorflow as tf
    from keras import layers

    keras.utils.set_random_seed(0)
    tv = layers.TextVectorization(max_tokens=60, ngrams=2, output_mode="tf_idf")
    tv.adapt(np.array(texts, dtype=object))
    # Untrained (Keras 3.15 cannot fit a model holding the string layer, and the weights'
    # values do not matter here): glorot-uniform kernels, zero biases, from the seed.
    model = keras.Sequential([keras.Input(shape=(1,), dtype="string"), tv,
                              layers.Dense(8, activation="relu"), layers.Dropout(0.5),
                              layers.Dense(1, activation="sigmoid")])
    model.compile("rmsprop", "binary_crossentropy", ["accuracy"])
    model.save(path)
    probe = texts[:20]
    return {"texts": probe,
            "predictions": model(tf.constant([[t] for t in probe])).numpy().ravel().tolist()}


def main() -> None:
    args = sys.argv[1:]
    texts = synthetic_texts()
    if "--texts" in args:
        k = args.index("--texts")
        with open(args[k + 1], encoding="utf-8") as f:
            texts = json.load(f)
        del args[k:k + 2]
    out = args[0] if args else os.path.join(os.path.dirname(__file__), "keras_text_vectorization.json")
    import keras

    doc = {"keras": keras.__version__, "texts": texts, "cases": run(texts)}
    if "--texts" not in sys.argv:
        doc["model"] = save_model(texts, os.path.join(os.path.dirname(out), "keras_text_model.keras"))
    with open(out, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, separators=(",", ":"))


if __name__ == "__main__":
    main()
