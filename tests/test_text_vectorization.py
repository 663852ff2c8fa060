"""layers.TextVectorization: element for element against Keras 3 (a fixture Keras wrote, and
Keras itself when IMDBFAST_KERAS_PYTHON names a Python with Keras and TensorFlow), against a
plain-Python transcription of Keras's algorithm on random texts, and its errors."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import imdbfast
from imdbfast import layers

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

DATA = Path(__file__).parent / "data"
FIXTURE = DATA / "keras_text_vectorization.json"
PUNCT = set(b"!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
SPACE = set(b" \t\n\v\f\r")


# ---- a transcription of Keras's algorithm (TF ops as bytes, IndexLookup's adapt) -----------
def ref_terms(text: str, cfg: dict) -> list[bytes]:
    std = cfg.get("standardize", "lower_and_strip_punctuation")
    b = text.encode("utf-8")
    if std in ("lower", "lower_and_strip_punctuation"):  # tf.strings.lower: ASCII only
        b = bytes(c + 32 if 65 <= c <= 90 else c for c in b)
    if std in ("strip_punctuation", "lower_and_strip_punctuation"):
        b = bytes(c for c in b if c not in PUNCT)
    split = cfg.get("split", "whitespace")
    if split is None:
        tokens = [b]
    elif split == "whitespace":
        tokens, cur = [], bytearray()
        for c in b + b" ":
            if c in SPACE:
                if cur:
                    tokens.append(bytes(cur))
                cur = bytearray()
            else:
                cur.append(c)
    else:
        tokens = [ch.encode("utf-8") for ch in b.decode("utf-8")]
    ngrams = cfg.get("ngrams")
    if ngrams is None:
        return tokens
    widths = range(1, ngrams + 1) if isinstance(ngrams, int) else ngrams
    return [b" ".join(tokens[i:i + w]) for w in widths for i in range(len(tokens) - w + 1)]


def ref_vectorize(texts: list[str], cfg: dict) -> dict:
    mode = cfg.get("output_mode", "int")
    reserved = 2 if mode == "int" else 1
    counts: Counter = Counter()
    docs: Counter = Counter()
    per_text = [ref_terms(t, cfg) for t in texts]
    for terms in per_text:
        counts.update(terms)
        docs.update(set(terms))
    for special in (b"", b"[UNK]"):
        counts.pop(special, None)
    tokens = np.array(list(counts), dtype=object)
    order = np.lexsort((tokens, np.array([counts[t] for t in tokens])))[::-1] if len(tokens) else []
    vocab = [tokens[i] for i in order]
    if cfg.get("max_tokens"):
        vocab = vocab[:cfg["max_tokens"] - reserved]
    index = {t: reserved + i for i, t in enumerate(vocab)}
    out = {"vocabulary": ([""] if mode == "int" else []) + ["[UNK]"] + [t.decode() for t in vocab]}
    if mode == "int":
        rows = [[0 if t == b"" else index.get(t, 1) for t in terms] for terms in per_text]
        L = cfg.get("output_sequence_length")
        L = max((len(r) for r in rows), default=0) if L is None else L
        out["int"] = [(r + [0] * L)[:L] for r in rows]
        return out
    idf = None
    if mode == "tf_idf":
        w = np.log(1 + len(texts) / (1 + np.array([docs[t] for t in vocab], np.float64))).astype(np.float32)
        idf = np.concatenate([[np.float32(np.mean(w, dtype=np.float64)) if len(w) else 0], w])
        width = cfg["max_tokens"] if cfg.get("pad_to_max_tokens") else len(idf)
        idf = np.concatenate([idf, np.zeros(width - len(idf))]).astype(np.float32)
        out["idf"] = idf.tolist()
    rows = []
    for terms in per_text:
        c = Counter(index.get(t, 0) for t in terms if t != b"")
        val = {"multi_hot": lambda k: 1.0, "count": lambda k: float(c[k]),
               "tf_idf": lambda k: float(np.float32(c[k]) * idf[k])}[mode]
        rows.append([[k, val(k)] for k in sorted(c)])
    out["bag"] = rows
    return out


def ours(texts: list[str], cfg: dict, threads: int | None = None) -> dict:
    kw = dict(cfg)
    if isinstance(kw.get("ngrams"), list):
        kw["ngrams"] = tuple(kw["ngrams"])
    v = layers.TextVectorization(**kw)
    v.threads = threads
    v.adapt(texts)
    res = v(texts)
    out = {"vocabulary": v.get_vocabulary()}
    if v.output_mode == "int":
        assert res.dtype == np.int64
        out["int"] = res.tolist()
        return out
    if v.output_mode == "tf_idf":
        out["idf"] = v.idf_weights.tolist()
    assert res.n_cols == v.output_width
    d = res.to_dense()
    out["bag"] = [[[int(c), float(r[c])] for c in np.flatnonzero(r)] for r in d]
    out["width"] = res.n_cols
    return out


def assert_same(got: dict, want: dict, what: str) -> None:
    """Equal element for element, but for the OOV token's IDF weight (and so the OOV column of
    "tf_idf" rows): Keras gives it TensorFlow's float32 reduce_mean of the weights, whose
    summation order (Eigen's vectorised blocks) depends on the CPU; imdbfast rounds the float64
    mean. Measured: 0 or 1 ulp apart; allowed: 2."""
    assert got["vocabulary"] == want["vocabulary"], what
    for key in ("int", "width"):
        if key in want:
            assert got[key] == want[key], f"{what}: {key}"
    if "idf" in want:
        assert got["idf"][1:] == want["idf"][1:], f"{what}: idf"
        np.testing.assert_array_max_ulp(np.float32(got["idf"][0]), np.float32(want["idf"][0]), 2)
    if "bag" in want:
        oov_close = "idf" in want
        assert len(got["bag"]) == len(want["bag"]), what
        for i, (g, w) in enumerate(zip(got["bag"], want["bag"])):
            assert [c for c, _ in g] == [c for c, _ in w], f"{what}: row {i} columns"
            for (c, vg), (_, vw) in zip(g, w):
                if c == 0 and oov_close:
                    np.testing.assert_array_max_ulp(np.float32(vg), np.float32(vw), 2)
                else:
                    assert vg == vw, f"{what}: row {i} column {c}"


# ---- Keras's own output (fixture) ----------------------------------------------------------
FIX = json.loads(FIXTURE.read_text(encoding="utf-8"))


@pytest.mark.parametrize("case", FIX["cases"], ids=lambda c: json.dumps(c["config"]))
def test_equals_keras_text_vectorization(case):
    assert_same(ours(FIX["texts"], case["config"]), case, json.dumps(case["config"]))


def test_the_reference_transcription_equals_keras_too():
    # so that the property tests below compare against Keras's algorithm
    for case in FIX["cases"]:
        texts = FIX["texts"]
        want = ref_vectorize(texts, case["config"])
        assert want["vocabulary"] == case["vocabulary"]
        for key in ("int", "bag"):
            if key in case:
                assert want[key] == case[key], (case["config"], key)


# ---- property: any texts, any thread count ----------------------------------------------
ALPHABET = st.sampled_from(list("abAB") + list(" \t\n\r\v\f") + list(".,'!-_") +
                           ["é", "É", "ß", "日", "\u00a0", "\u3000", "🙂"])
TEXTS = st.lists(st.text(ALPHABET, max_size=40), min_size=1, max_size=30)
CONFIGS = st.fixed_dictionaries({}, optional={
    "output_mode": st.sampled_from(["int", "multi_hot", "count", "tf_idf"]),
    "ngrams": st.one_of(st.integers(1, 3), st.sampled_from([(2,), (1, 3), (3, 1)])),
    "max_tokens": st.integers(3, 30),
    "standardize": st.sampled_from([None, "lower", "strip_punctuation"]),
    "split": st.sampled_from(["character", None]),
})


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(texts=TEXTS, cfg=CONFIGS)
def test_matches_the_reference_for_any_texts_and_thread_count(texts, cfg):
    if cfg.get("split", "whitespace") is None:
        cfg.pop("ngrams", None)  # Keras's n-grams need split tokens
    want = ref_vectorize(texts, cfg)
    if len(want["vocabulary"]) == (2 if cfg.get("output_mode", "int") == "int" else 1):
        with pytest.raises(ValueError, match="holds no terms"):  # nothing to learn
            ours(texts, cfg)
        return
    for threads in (1, 2, 3):
        got = ours(texts, cfg, threads)
        got.pop("width", None)
        assert got == want, threads


def test_many_texts_split_across_threads_give_the_same_result(rng):
    words = ["w%d" % i for i in range(3000)]
    texts = [" ".join(rng.choice(words, size=rng.integers(0, 200))) for _ in range(3000)]
    cfg = {"output_mode": "tf_idf", "ngrams": 2, "max_tokens": 2000}
    one = ours(texts, cfg, 1)
    assert ours(texts, cfg, 2) == one and ours(texts, cfg, 4) == one
    want = ref_vectorize(texts, cfg)
    assert one["vocabulary"] == want["vocabulary"]


# ---- the rest of Keras's surface ---------------------------------------------------------
def test_vocabulary_argument_set_vocabulary_and_special_tokens():
    v = layers.TextVectorization(vocabulary=["x", "y"])
    assert v.get_vocabulary() == ["", "[UNK]", "x", "y"] and v.vocabulary_size() == 4
    assert v(["x z y", ""]).tolist() == [[2, 1, 3], [0, 0, 0]]
    assert layers.TextVectorization(vocabulary=["", "[UNK]", "x"]).get_vocabulary() == ["", "[UNK]", "x"]
    b = layers.TextVectorization(vocabulary=["[UNK]", "x"], output_mode="count")
    assert b.get_vocabulary() == ["[UNK]", "x"]
    assert b(["x x q"]).to_dense().tolist() == [[1.0, 2.0]]
    t = layers.TextVectorization(vocabulary=["a", "b"], idf_weights=[0.5, 2.0], output_mode="tf_idf")
    assert t.idf_weights.tolist() == [1.25, 0.5, 2.0]  # OOV: the mean, as Keras
    assert t(["a b z"]).to_dense().tolist() == [[1.25, 0.5, 2.0]]
    assert v.get_vocabulary(include_special_tokens=False) == ["x", "y"]
    with pytest.raises(ValueError, match="Cannot adapt layer"):
        v.adapt(["a"])
    s = layers.TextVectorization()
    s.set_vocabulary(["p", "q"])
    s.adapt(["r r s"])  # set_vocabulary does not freeze it (as Keras)
    assert s.get_vocabulary() == ["", "[UNK]", "r", "s"]


def test_pad_to_max_tokens_and_output_sequence_length():
    v = layers.TextVectorization(max_tokens=8, pad_to_max_tokens=True, output_mode="tf_idf")
    v.adapt(["a b a", "c"])
    assert v(["a b c z"]).n_cols == 8 and v.idf_weights[4:].tolist() == [0.0] * 4
    s = layers.TextVectorization(output_sequence_length=3)
    s.adapt(["a b c d", "c"])
    assert s(["a b c d e", "c"]).shape == (2, 3)
    assert layers.TextVectorization(output_sequence_length=0, vocabulary=["a"])(["a a"]).shape == (1, 0)


def test_inputs_keras_takes():
    v = layers.TextVectorization()
    v.adapt(np.array([["b a"], ["a"]]))  # (N, 1), as Keras
    assert v.get_vocabulary() == ["", "[UNK]", "a", "b"]
    assert v(np.array(["a b"])).tolist() == [[2, 3]]
    assert v([b"a b", "b"]).tolist() == [[2, 3], [3, 0]]  # UTF-8 bytes
    assert v(("a",)).tolist() == [[2]]
    g = layers.TextVectorization()
    g.adapt(iter([["a a"], ["b"]]))  # an iterable of batches
    assert g.get_vocabulary() == ["", "[UNK]", "a", "b"]
    w = layers.TextVectorization()
    w.adapt("one text")  # a str is one document, as Keras
    assert w.get_vocabulary() == ["", "[UNK]", "text", "one"]


@pytest.mark.parametrize("kwargs, match", [
    ({"max_tokens": 1}, "greater than 1"),
    ({"max_tokens": 2}, "leaves no room"),
    ({"max_tokens": 2.5}, "greater than 1"),
    ({"ngrams": 0}, "ngrams"),
    ({"ngrams": [1, 2]}, "ngrams"),
    ({"ngrams": (1, 0)}, "ngrams"),
    ({"output_mode": "onehot"}, "Unknown value for `output_mode`"),
    ({"output_mode": "one_hot"}, "not supported"),
    ({"standardize": "upper"}, "Unknown value for `standardize`"),
    ({"standardize": str.lower}, "callables"),
    ({"split": "comma"}, "Unknown value for `split`"),
    ({"output_mode": "multi_hot", "output_sequence_length": 3}, "must not be set"),
    ({"output_sequence_length": -1}, "output_sequence_length"),
    ({"pad_to_max_tokens": True, "output_mode": "multi_hot"}, "must set `max_tokens`"),
    ({"vocabulary": ["a", "b", "a"]}, "repeated term"),
    ({"vocabulary": ["a", ""]}, "reserved mask token"),
    ({"vocabulary": []}, "empty vocabulary"),
    ({"vocabulary": ["a", "b", "c"], "max_tokens": 3}, "larger than the maximum"),
    ({"vocabulary": ["a"], "output_mode": "tf_idf"}, "idf_weights"),
    ({"vocabulary": ["a"], "idf_weights": [1.0, 2.0], "output_mode": "tf_idf"}, "same length"),
    ({"vocabulary": ["a"], "idf_weights": [np.nan], "output_mode": "tf_idf"}, "finite"),
    ({"vocabulary": ["a"], "idf_weights": [1.0]}, "only be set"),
    ({"ragged": True}, "ragged"),
    ({"sparse": True}, "sparse"),
    ({"encoding": "latin-1"}, "UTF-8"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        layers.TextVectorization(**kwargs)


@pytest.mark.parametrize("data, exc, match", [
    (["a", None], TypeError, r"data\[1\]: expected a str"),
    (["a", 3], TypeError, r"data\[1\]"),
    ([b"caf\xe9"], ValueError, r"data\[0\]: bytes that are not UTF-8"),
    (["ok", "\ud800"], ValueError, r"data\[1\]: a lone surrogate"),
    (np.zeros(3), TypeError, "float64"),
    (np.array([["a", "b"]]), ValueError, "shape"),
    (42, TypeError, "data"),
])
def test_bad_texts_leave_the_vocabulary_as_it_was(data, exc, match):
    v = layers.TextVectorization()
    v.adapt(["keep this"])
    with pytest.raises(exc, match=match):
        v.adapt(data)
    assert v.get_vocabulary() == ["", "[UNK]", "this", "keep"]
    with pytest.raises(exc, match=match.replace("data", "inputs")):
        v(data)


def test_the_core_checks_its_arguments():
    from imdbfast import _core

    ix = _core.TermIndex(["a", "b"], 1)
    assert ix.end == 3 and len(ix) == 2
    rules = (True, True, 1, [])
    with pytest.raises(ValueError, match="n_cols"):
        ix.bag(["a b"], *rules, 0, 2, 0, None)  # index 2 would not fit
    with pytest.raises(ValueError, match="oov"):
        ix.bag(["a b"], *rules, 3, 3, 0, None)
    with pytest.raises(ValueError, match="mode"):
        ix.bag(["a b"], *rules, 0, 3, 7, None)
    with pytest.raises(TypeError, match="idf"):
        ix.bag(["a b"], *rules, 0, 3, 2, np.ones(3))  # float64: not cast
    with pytest.raises(ValueError, match="idf"):
        ix.bag(["a b"], *rules, 0, 3, 2, np.ones(2, np.float32))
    with pytest.raises(ValueError, match="appears twice"):
        _core.TermIndex(["a", "a"], 0)
    with pytest.raises(ValueError, match="first"):
        _core.TermIndex(["a"], -1)
    with pytest.raises(ValueError, match="split"):
        _core.count_terms(["a"], True, True, 5, [], [], -1)
    with pytest.raises(ValueError, match="ngrams"):
        _core.count_terms(["a"], True, True, 1, [0], [], -1)
    with pytest.raises(TypeError, match="element 1"):
        _core.count_terms(["a", b"b"], True, True, 1, [], [], -1)
    assert ix.bag(["a b", "q"], *rules, 0, 3, 1, None).to_dense().tolist() == [[0, 1, 1], [1, 0, 0]]


def test_calling_before_a_vocabulary_exists():
    with pytest.raises(RuntimeError, match="you must set the layer's vocabulary"):
        layers.TextVectorization(output_mode="multi_hot")(["a"])
    with pytest.raises(RuntimeError, match="no vocabulary yet"):
        layers.TextVectorization()(["a"])
    assert layers.TextVectorization().vocabulary_size() == 2
    assert layers.TextVectorization(output_mode="count").get_vocabulary() == ["[UNK]"]
    with pytest.raises(TypeError, match="single str"):
        layers.TextVectorization(vocabulary=["a"])("a")


def test_data_without_terms_is_refused_and_the_vocabulary_kept():
    v = layers.TextVectorization(output_mode="tf_idf")
    v.adapt(["keep me"])
    for data in ([], ["", " !!! "]):
        with pytest.raises(ValueError, match="holds no terms"):
            v.adapt(data)
    assert v.get_vocabulary() == ["[UNK]", "me", "keep"]


def test_vocabulary_files_specials_and_their_idf(tmp_path):
    f = tmp_path / "vocab.txt"
    f.write_text("x\ny\n", encoding="utf-8")
    v = layers.TextVectorization(vocabulary=str(f))
    assert v.get_vocabulary() == ["", "[UNK]", "x", "y"] and v.get_config()["vocabulary"] is None
    # the special token given with its own weight (what get_vocabulary/idf_weights return)
    t = layers.TextVectorization(vocabulary=["[UNK]", "a", "b"], idf_weights=[0.5, 1.0, 2.0],
                                 output_mode="tf_idf")
    assert t.idf_weights.tolist() == [0.5, 1.0, 2.0]
    again = layers.TextVectorization(vocabulary=t.get_vocabulary(), idf_weights=t.idf_weights,
                                     output_mode="tf_idf")
    assert again.idf_weights.tolist() == [0.5, 1.0, 2.0]
    with pytest.raises(ValueError, match="same length"):
        layers.TextVectorization(vocabulary=["[UNK]", "a", "b"], idf_weights=[1.0, 2.0],
                                 output_mode="tf_idf")
    with pytest.raises(ValueError, match=r"vocabulary\[1\]: a lone surrogate"):
        layers.TextVectorization(vocabulary=["a", "\ud800"])
    s = layers.TextVectorization(vocabulary=["p"])
    s.set_vocabulary(["q", "r"])  # the config's vocabulary is no longer the layer's
    assert s.get_config()["vocabulary"] is None


def test_config_round_trip_and_pickle():
    v = layers.TextVectorization(max_tokens=10, ngrams=2, output_mode="tf_idf")
    v.adapt(["a b a", "c d"])
    cfg = v.get_config()
    assert cfg["ngrams"] == 2 and cfg["vocabulary"] is None and cfg["vocabulary_size"] == v.vocabulary_size()
    again = layers.TextVectorization.from_config(cfg)
    assert again.get_config() == dict(cfg, vocabulary_size=1)
    p = pickle.loads(pickle.dumps(v))
    assert p.get_vocabulary() == v.get_vocabulary()
    np.testing.assert_array_equal(p(["a c z"]).to_dense(), v(["a c z"]).to_dense())


# ---- Keras itself, live, on real reviews when both are here -------------------------------
@pytest.fixture
def data_dir():
    from datautil import data_dir as find

    d = find()
    if d is None or not (Path(d) / "aclImdb_v1.tar.gz").exists():
        pytest.skip("the aclImdb archive was not found (IMDBFAST_DATA or ../shared/data)")
    return Path(d)


def _keras_python() -> str | None:
    """IMDBFAST_KERAS_PYTHON, else this Python when it has Keras and TensorFlow."""
    import importlib.util

    exe = os.environ.get("IMDBFAST_KERAS_PYTHON")
    if exe:
        return exe if Path(exe).exists() else None
    have = all(importlib.util.find_spec(m) is not None for m in ("keras", "tensorflow"))
    return sys.executable if have else None


@pytest.mark.realdata
@pytest.mark.slow
@pytest.mark.skipif(_keras_python() is None, reason="IMDBFAST_KERAS_PYTHON does not name a Python "
                    "with Keras 3 and TensorFlow (TextVectorization needs TensorFlow's ops)")
def test_equals_live_keras_on_real_reviews(tmp_path, data_dir):
    from imdbfast.datasets import imdb

    (train, _, _), _ = imdb.read_aclimdb_splits(data_dir / "aclImdb_v1.tar.gz")
    texts = train[:1500] + train[-1500:]  # both labels
    src = tmp_path / "texts.json"
    src.write_text(json.dumps(texts), encoding="utf-8")
    out = tmp_path / "keras.json"
    r = subprocess.run([_keras_python(), str(DATA / "make_text_vectorization_fixture.py"), str(out),
                        "--texts", str(src)], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    for case in json.loads(out.read_text(encoding="utf-8"))["cases"]:
        assert_same(ours(texts, case["config"]), case, json.dumps(case["config"]))
