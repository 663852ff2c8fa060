"""imdbfast.datasets.imdb against a plain-Python transcription of Keras's load_data, the safe
reader against hostile files, the cache, and the Sequences type."""

import io
import os
import pickle
import zipfile

import numpy as np
import pytest

import imdbfast
from imdbfast import Sequences
from imdbfast.datasets import imdb

from conftest import data_dir
from datautil import keras_load_data_lists as keras_load_data


def write_npz(path, x_train, y_train, x_test, y_test):
    def obj(rows):
        a = np.empty(len(rows), dtype=object)
        a[:] = [r if isinstance(r, (str, bytes)) else list(r) for r in rows]
        return a
    np.savez(path, x_train=obj(x_train), y_train=np.asarray(y_train), x_test=obj(x_test),
             y_test=np.asarray(y_test))


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("IMDBFAST_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def small(tmp_path, rng, cache):
    def reviews(n):
        return [list(np.minimum(rng.zipf(1.4, size=int(rng.integers(0, 40))), 300)) for _ in range(n)]
    path = tmp_path / "imdb.npz"
    write_npz(path, reviews(60), rng.integers(0, 2, 60), reviews(50), rng.integers(0, 2, 50))
    return path


ARGS = [
    {}, {"num_words": 50}, {"num_words": 50, "skip_top": 5}, {"num_words": 50, "oov_char": None},
    {"start_char": None}, {"start_char": None, "index_from": 0}, {"maxlen": 20},
    {"maxlen": 20, "num_words": 30, "skip_top": 10, "oov_char": None}, {"seed": 7},
    {"index_from": 0, "skip_top": 3}, {"num_words": 100, "start_char": 5, "oov_char": 9},
]


@pytest.mark.parametrize("kw", ARGS, ids=[str(a) for a in ARGS])
def test_load_data_equals_keras(small, kw):
    (xt, yt), (xv, yv) = imdb.load_data(str(small), **kw)
    (kt, kyt), (kv, kyv) = keras_load_data(small, **kw)
    assert isinstance(xt, Sequences) and xt.equals(kt) and xv.equals(kv)
    np.testing.assert_array_equal(yt, kyt)
    np.testing.assert_array_equal(yv, kyv)
    # A second load reads the cache: same answer.
    (xt2, _), _ = imdb.load_data(str(small), **kw)
    assert xt2.equals(xt)


def test_cache_is_invalidated_when_the_source_changes(small, cache, rng):
    (x1, _), _ = imdb.load_data(str(small))
    assert any(cache.iterdir())
    write_npz(small, [[1, 2, 3]] * 5, [1] * 5, [[4]] * 3, [0] * 3)
    os.utime(small, ns=(1, 1))  # a different modification time, whatever the clock did
    (x2, y2), _ = imdb.load_data(str(small))
    assert len(x2) == 5 and x2[0] == [1, 4, 5, 6]


def test_num_words_none_quirk_and_errors(small):
    (xt, _), (xv, _) = imdb.load_data(str(small))
    (kt, _), (kv, _) = keras_load_data(small)
    top = max(max(r) for r in list(kt) + list(kv) if r)
    assert xt.equals(kt)  # the largest id becomes OOV, as Keras
    with pytest.raises(ValueError, match="maxlen"):
        imdb.load_data(str(small), maxlen=1)  # every review has the start token
    with pytest.raises(ValueError, match="oov_char"):
        imdb.load_data(str(small), num_words=2)
    with pytest.raises(ValueError, match="num_words"):
        imdb.load_data(str(small), num_words=-1)
    assert top > 0


def hostile_npz(path, marker):
    """An npz whose x_train pickle would run a shell command if unpickled naively."""
    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))
    data = pickle.dumps(np.array([Evil()], dtype=object), protocol=4)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("x_train.npy", _npy_bytes(data))
        for k in ("y_train", "x_test", "y_test"):
            b = io.BytesIO()
            np.save(b, np.zeros(1, dtype=np.int64))
            z.writestr(k + ".npy", b.getvalue())


def _npy_bytes(pickled):
    b = io.BytesIO()  # the header writer adds the magic string itself
    np.lib.format.write_array_header_1_0(b, {"descr": "|O", "fortran_order": False, "shape": (1,)})
    b.write(pickled)
    return b.getvalue()


def test_hostile_pickle_is_refused_and_nothing_runs(tmp_path, cache):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.npz"
    hostile_npz(path, marker)
    with pytest.raises(ValueError, match="refus"):
        imdb.load_data(str(path))
    assert not marker.exists()


@pytest.mark.parametrize("make, match", [
    (lambda p: p.write_bytes(b"PK\x03\x04 truncated"), "not a readable npz"),
    (lambda p: p.write_bytes(b""), "not a readable npz"),
    (lambda p: np.savez(p, x_train=np.zeros(3)), "missing"),
    (lambda p: write_npz(p, [[1]], [0.5], [[1]], [0]), "integer labels"),
    (lambda p: write_npz(p, [[1.5]], [0], [[1]], [0]), "non-integer"),
    (lambda p: write_npz(p, [[-3]], [0], [[1]], [0]), "negative"),
    (lambda p: write_npz(p, [[2**32 + 5]], [0], [[1]], [0]), "does not fit"),
    (lambda p: write_npz(p, [["a"]], [0], [[1]], [0]), "integers"),
    (lambda p: write_npz(p, [["12"]], [0], [[1]], [0]), "integers"),  # not the id 12
    (lambda p: write_npz(p, ["a review as text"], [0], [[1]], [0]), "element 0 is str"),
    (lambda p: write_npz(p, [b"\x01\x02"], [0], [[1]], [0]), "element 0 is bytes"),
    (lambda p: write_npz(p, [[1], [2]], [0], [[1]], [0]), "one per sequence"),
])
def test_broken_files_are_refused_clearly(tmp_path, cache, make, match):
    path = tmp_path / "bad.npz"
    make(path)
    with pytest.raises(ValueError, match=match):
        imdb.load_data(str(path))


def test_missing_file_says_where_to_put_it(tmp_path, monkeypatch, cache):
    monkeypatch.delenv("IMDBFAST_DATA", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    with pytest.raises(FileNotFoundError, match="IMDBFAST_DATA"):
        imdb.load_data("nothing_here.npz")
    with pytest.raises(FileNotFoundError, match="no such file"):
        imdb.load_data(str(tmp_path / "sub" / "x.npz"))


def test_search_order(tmp_path, monkeypatch, small, cache):
    keras_home = tmp_path / "keras"
    (keras_home / "datasets").mkdir(parents=True)
    write_npz(keras_home / "datasets" / "imdb.npz", [[7]], [1], [[8]], [0])
    monkeypatch.setenv("KERAS_HOME", str(keras_home))
    monkeypatch.delenv("IMDBFAST_DATA", raising=False)
    (x, _), _ = imdb.load_data()
    assert x == [[1, 10]]  # Keras's cache, reused
    monkeypatch.setenv("IMDBFAST_DATA", str(small.parent))
    (x, _), _ = imdb.load_data()
    assert len(x) == 60  # $IMDBFAST_DATA comes first


def test_sequences_behave_like_keras_object_arrays():
    s = Sequences.from_lists([[1, 2, 3], [], [4], [5, 6]], num_words=10)
    assert len(s) == 4 and s.shape == (4,) and s[0] == [1, 2, 3] and s[-1] == [5, 6] and s[1] == []
    assert list(s) == [[1, 2, 3], [], [4], [5, 6]]
    assert s[1:3].tolist() == [[], [4]] and s[::2].tolist() == [[1, 2, 3], [4]]
    assert s[[3, 0]].tolist() == [[5, 6], [1, 2, 3]]
    assert s[np.array([True, False, False, True])].tolist() == [[1, 2, 3], [5, 6]]
    a = np.asarray(s, dtype=object)
    assert a.dtype == object and a.shape == (4,) and a[0] == [1, 2, 3]
    assert s.equals(Sequences.from_lists([[1, 2, 3], [], [4], [5, 6]])) and not s.equals([[1]])
    assert s[1:3].num_words == 10
    assert max(max(x) for x in s if x) == 6
    with pytest.raises(IndexError):
        s[4]
    with pytest.raises(TypeError, match="ragged"):
        np.asarray(s, dtype=np.int64)
    with pytest.raises(ValueError, match="offsets"):
        Sequences(np.array([1, 2]), np.array([0, 3]))
    np.testing.assert_array_equal(imdbfast.multi_hot(s, 10).to_dense()[3], np.eye(10)[5] + np.eye(10)[6])
    assert "4 rows" in repr(s)


def test_word_index_and_decoding(tmp_path, monkeypatch):
    (tmp_path / "imdb_word_index.json").write_text('{"the": 1, "movie": 2, "great": 3}')
    monkeypatch.setenv("IMDBFAST_DATA", str(tmp_path))
    wi = imdb.get_word_index()
    assert wi == {"the": 1, "movie": 2, "great": 3}
    assert imdb.decode_review([1, 4, 6, 2, 5, 99], wi) == "? the great ? movie ?"
    assert imdb.reverse_word_index(wi)[3] == "great"
    (tmp_path / "bad.json").write_text('["not", "a", "dict"]')
    with pytest.raises(ValueError, match="word index"):
        imdb.get_word_index(str(tmp_path / "bad.json"))


@pytest.mark.realdata
def test_real_data_matches_keras_facts(monkeypatch, tmp_path):
    d = data_dir()
    if d is None:
        pytest.skip("real IMDB data not found: set IMDBFAST_DATA to the folder holding imdb.npz")
    monkeypatch.setenv("IMDBFAST_DATA", str(d))
    (xt, yt), (xv, yv) = imdb.load_data(num_words=10000)
    assert (len(xt), len(xv)) == (25000, 25000)
    assert yt.sum() == 12500 and yv.sum() == 12500
    assert xt[100][:6] == [1, 13, 244, 6, 87, 337] and yt[100] == 0
    assert xt[200][:6] == [1, 14, 9, 6, 227, 196] and yt[200] == 1
    assert len(xt[0]) == 218 and len(set(xt[0])) == 120 and xt.lengths().max() == 2494
    tokens = np.unique(np.concatenate([xt.tokens, xv.tokens]))
    assert tokens[0] == 1 and 0 not in tokens and 3 not in tokens and tokens[-1] == 9999
    # The seed-113 permutations: train review i is raw review first[i] (Keras's published
    # indices). With num_words=None the largest id overall is dropped (oov_char=None), as Keras.
    (raw_t, _), (raw_v, _) = imdb.load_data(num_words=None, start_char=None, index_from=0,
                                             oov_char=None)
    with np.load(d / "imdb.npz", allow_pickle=True) as f:
        raw_train, raw_test = f["x_train"], f["x_test"]
    top = max(max(max(r) for r in raw_train if r), max(max(r) for r in raw_test if r))
    for mine, raw, first in ((raw_t, raw_train, [7798, 13226, 18078, 793, 17499]),
                             (raw_v, raw_test, [22748, 4083, 8015, 13688, 5310])):
        for i, j in enumerate(first):
            assert mine[i] == [w for w in raw[j] if w < top]
