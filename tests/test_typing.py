"""The public API is typed (py.typed): a user's script type-checks under mypy --strict with no
Any leaking out of imdbfast (--disallow-any-expr: every expression the script builds from
imdbfast's results has a precise type)."""

import os
import subprocess
import sys

import pytest

pytest.importorskip("mypy")
pytestmark = pytest.mark.skipif("san.so" in os.environ.get("LD_PRELOAD", ""),
                                reason="type checking has no compiled code to sanitize")

USER_SCRIPT = '''
import numpy as np
import numpy.typing as npt

import imdbfast
from imdbfast import layers
from imdbfast.datasets import imdb


def train() -> imdbfast.Sequential:
    (x_train, y_train), (x_test, y_test) = imdb.load_data(num_words=10000)
    model = imdbfast.Sequential([layers.Dense(16, activation="relu"),
                                 layers.Dense(16, activation="relu"),
                                 layers.Dense(1, activation="sigmoid")], seed=0)
    model.compile(optimizer="rmsprop", loss="binary_crossentropy", metrics=["accuracy"])
    history = model.fit(x_train, y_train, epochs=4, batch_size=512, verbose=0)
    losses: list[float] = history.history["loss"]
    print(losses)
    return model


def scores(model: imdbfast.Sequential, x: imdbfast.Sequences) -> npt.NDArray[np.float32]:
    return model.predict(x, verbose=0)


def quick(x: imdbfast.CSR, y: npt.NDArray[np.int64]) -> float:
    m = imdbfast.fit(x, y, epochs=1)
    m.save("m.npz")
    m2 = imdbfast.load_model("m.npz")
    result = m2.evaluate(x, y, verbose=0)
    n: int = x.n_rows
    print(n, imdbfast.get_num_threads())
    return float(result[0]) if isinstance(result, list) else 0.0


def more(texts: list[str]) -> None:
    seqs = imdb.texts_to_sequences(texts)
    tokens: npt.NDArray[np.int32] = seqs.tokens
    x = imdbfast.multi_hot(seqs, 10000)
    dense = imdbfast.multi_hot_dense(seqs, 10000)
    model = imdbfast.load_model("m.npz")
    weights = model.get_weights()
    p = model.predict_texts(texts)
    wi = imdb.get_word_index()
    rev = imdb.reverse_word_index(wi)
    print(tokens, x.nnz, dense.shape, weights[0].shape, p.shape, rev.get(1))
    h = model.history
    if h is not None:
        print(h.history["loss"][-1], h.epoch)
    texts2, labels, ratings = imdb.read_aclimdb("aclImdb", "test")
    print(len(texts2), labels.shape, ratings.dtype, imdbfast.__version__)
'''


def test_a_users_script_type_checks_strictly_with_no_any(tmp_path):
    (tmp_path / "user.py").write_text(USER_SCRIPT)
    r = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--disallow-any-expr",
                        "--no-incremental", "user.py"], cwd=tmp_path, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
