"""Multi-hot encoding and CSR conversions against the float64 reference (exact: 0/1 values)."""

import numpy as np
import pytest

import imdbfast
from imdbfast import _core, layers

import reference as ref
from conftest import flat, synthetic_sequences


def csr_dense(m):
    return m.to_dense().astype(np.float64)


@pytest.mark.parametrize("num_words", [1, 7, 100, 10000])
def test_multi_hot_matches_reference(rng, num_words, threads):
    seqs = synthetic_sequences(rng, 300, num_words, empty_every=17)
    seqs[5] = [num_words - 1] * 4 + [0, 0]  # duplicates, the largest index and 0
    m = imdbfast.multi_hot(seqs, num_words, threads=threads)
    assert (m.n_rows, m.n_cols, m.binary) == (300, num_words, True)
    np.testing.assert_array_equal(csr_dense(m), ref.multi_hot(seqs, num_words))
    # Rows sorted and unique, as the kernels require.
    for r in range(m.n_rows):
        cols = m.indices[m.indptr[r]:m.indptr[r + 1]]
        assert np.all(np.diff(cols) > 0)
    dense = imdbfast.multi_hot_dense(seqs, num_words, threads=threads)
    assert dense.dtype == np.float32 and dense.shape == (300, num_words)
    np.testing.assert_array_equal(dense, ref.multi_hot(seqs, num_words))


def test_multi_hot_sorted_fallback_for_wide_sparse_rows(rng):
    # Few tokens spread over a huge vocabulary take the sort path instead of the bitmap scan.
    seqs = [list(rng.integers(0, 50_000_000, size=int(rng.integers(0, 30)))) for _ in range(50)]
    seqs[3] = [49_999_999, 0, 49_999_999, 12345]
    m = imdbfast.multi_hot(seqs, 50_000_000)
    for r, s in enumerate(seqs):
        np.testing.assert_array_equal(m.indices[m.indptr[r]:m.indptr[r + 1]], np.unique(np.asarray(s, dtype=np.int64)))


def test_multi_hot_same_for_any_thread_count(rng):
    tokens, offsets = flat(synthetic_sequences(rng, 2000, 5000))
    a = _core.multi_hot(tokens, offsets, 5000, 1)
    b = _core.multi_hot(tokens, offsets, 5000, 2)
    np.testing.assert_array_equal(a.indptr, b.indptr)
    np.testing.assert_array_equal(a.indices, b.indices)


def test_input_forms_agree(rng):
    seqs = synthetic_sequences(rng, 50, 300)
    expected = ref.multi_hot(seqs, 300)
    as_object = np.empty(len(seqs), dtype=object)
    as_object[:] = [list(s) for s in seqs]
    tuples = [tuple(s) for s in seqs]
    arrays = [np.asarray(s, dtype=np.int64) for s in seqs]
    for form in (seqs, as_object, tuples, arrays):
        np.testing.assert_array_equal(csr_dense(imdbfast.to_csr(form, 300)), expected)
    # Dense matrices in float64, float32, int and bool; values other than 1 are kept.
    for dtype in (np.float64, np.float32, np.int64, np.bool_):
        m = imdbfast.to_csr(expected.astype(dtype))
        assert m.binary
        np.testing.assert_array_equal(csr_dense(m), expected)
    counts = expected * 3.5
    m = imdbfast.to_csr(counts)
    assert not m.binary
    np.testing.assert_array_equal(csr_dense(m), counts)
    # An imdbfast CSR passes through untouched.
    m = imdbfast.to_csr(expected)
    assert imdbfast.to_csr(m) is m


def test_scipy_sparse_input(rng):
    sp = pytest.importorskip("scipy.sparse")
    dense = (rng.random((40, 60)) < 0.1) * rng.integers(1, 4, size=(40, 60)).astype(np.float64)
    m = imdbfast.to_csr(sp.csr_matrix(dense))
    np.testing.assert_array_equal(csr_dense(m), dense)
    m = imdbfast.to_csr(sp.coo_matrix(dense))  # any scipy format is converted
    np.testing.assert_array_equal(csr_dense(m), dense)


def test_csr_from_arrays_sorts_and_merges_duplicates():
    indptr = np.array([0, 3, 3, 6], dtype=np.int64)
    indices = np.array([5, 1, 5, 2, 2, 0], dtype=np.int32)
    data = np.array([1.0, 2.0, 0.5, 3.0, 4.0, 1.0], dtype=np.float32)
    m = imdbfast.CSR(indptr, indices, data, 3, 6)
    expected = np.zeros((3, 6))
    expected[0, 1], expected[0, 5] = 2.0, 1.5  # duplicates are summed, as scipy does
    expected[2, 0], expected[2, 2] = 1.0, 7.0
    np.testing.assert_array_equal(csr_dense(m), expected)
    binary = imdbfast.CSR(indptr, indices, None, 3, 6)  # a multi-hot keeps a single 1
    np.testing.assert_array_equal(csr_dense(binary), expected > 0)


def test_take_rows_and_views(rng):
    seqs = synthetic_sequences(rng, 30, 50)
    m = imdbfast.multi_hot(seqs, 50)
    rows = np.array([29, 0, 0, 7], dtype=np.int64)
    np.testing.assert_array_equal(csr_dense(m.take(rows)), ref.multi_hot([seqs[r] for r in rows], 50))
    assert not m.indices.flags.writeable  # views of an immutable matrix
    with pytest.raises(IndexError, match="rows"):
        m.take(np.array([30], dtype=np.int64))


def test_empty_inputs():
    m = imdbfast.multi_hot([], 10)
    assert (m.n_rows, m.nnz) == (0, 0)
    m = imdbfast.multi_hot([[], []], 10)
    assert (m.n_rows, m.nnz) == (2, 0)
    assert imdbfast.multi_hot_dense([[]], 3).tolist() == [[0.0, 0.0, 0.0]]


@pytest.mark.parametrize("bad, exc, match", [
    ([[1, 2, 10]], IndexError, "outside"),           # token == num_words
    ([[1, -1]], IndexError, "negative"),
    ([[1.5]], TypeError, "integers"),
    ([["a"]], TypeError, "integers"),
    ([1, 2], TypeError, "element 0"),
    ("abc", TypeError, "sequence"),
    ([[[1, 2]]], ValueError, "flat"),
])
def test_bad_sequences(bad, exc, match):
    with pytest.raises(exc, match=match):
        imdbfast.multi_hot(bad, 10)


def test_bad_core_arguments():
    tokens = np.array([1, 2, 3], dtype=np.int32)
    with pytest.raises(TypeError, match="tokens: expected a int32"):
        _core.multi_hot(tokens.astype(np.int64), np.array([0, 3], dtype=np.int64), 10)
    with pytest.raises(ValueError, match="offsets: not monotone"):
        _core.multi_hot(tokens, np.array([0, 2, 1, 3], dtype=np.int64), 10)
    with pytest.raises(ValueError, match="does not match the token count"):
        _core.multi_hot(tokens, np.array([0, 2], dtype=np.int64), 10)
    with pytest.raises(ValueError, match="must start at 0"):
        _core.multi_hot(tokens, np.array([1, 3], dtype=np.int64), 10)
    with pytest.raises(ValueError, match="num_words"):
        _core.multi_hot(tokens, np.array([0, 3], dtype=np.int64), 0)
    with pytest.raises(ValueError, match="C-contiguous"):
        _core.multi_hot(np.arange(6, dtype=np.int32)[::2], np.array([0, 3], dtype=np.int64), 10)
    with pytest.raises(ValueError, match="NaN"):
        imdbfast.to_csr(np.array([[0.0, np.nan]]))
    with pytest.raises(ValueError, match="2-D"):
        imdbfast.to_csr(np.zeros(5))
    with pytest.raises(ValueError, match="num_words"):
        imdbfast.to_csr([[1, 2]])
    with pytest.raises(ValueError, match="columns, expected"):
        imdbfast.to_csr(np.zeros((2, 5)), 6)
    with pytest.raises(TypeError, match="num_words"):
        imdbfast.multi_hot([[1]], 10.0)
    with pytest.raises(IndexError, match="column"):
        imdbfast.CSR(np.array([0, 1], dtype=np.int64), np.array([9], dtype=np.int32), None, 1, 5)


@pytest.mark.parametrize("n_rows", [2**63 - 1, 2**62 + 1, -1])
def test_csr_shape_that_would_overflow_is_refused(n_rows):
    # n_rows + 1 (the indptr length) must not wrap around into "any length" and read past it
    with pytest.raises(ValueError, match="n_rows"):
        imdbfast.CSR(np.array([0, 1], dtype=np.int64), np.array([0], dtype=np.int32), None,
                     n_rows, 10)


# ---- no silent casts ------------------------------------------------------------------------------

@pytest.mark.parametrize("tokens, exc", [
    ([2**32 + 5], IndexError),           # not 5
    (np.array([2**32 + 5]), IndexError),
    (np.array([2**63], dtype=np.uint64), IndexError),
    ([2**64], IndexError),                # beyond int64: an object array
    ([1.7], TypeError),                   # not 1
    ([float("nan")], TypeError),
    (["12"], TypeError),                  # not the id 12
    ([b"12"], TypeError),
    ([True], TypeError),
    (np.array([1, True], dtype=object), TypeError),
    ([-1], IndexError),
])
def test_token_values_are_never_cast(tokens, exc):
    with pytest.raises(exc):
        imdbfast.multi_hot([tokens], 10)
    with pytest.raises((exc, ValueError)):
        imdbfast.Sequences(tokens, [0, len(tokens)])


@pytest.mark.parametrize("offsets", [[0, 1.7], [0, "1"], [0, 2**64], np.array([0.0, 0.5])])
def test_offsets_are_never_cast(offsets):
    with pytest.raises((TypeError, ValueError)):
        imdbfast.Sequences([1], offsets)


def test_integral_floats_are_ids():
    # Keras indexes with them; 3.0 is 3
    assert imdbfast.multi_hot([[1.0, 3.0]], 5).indices.tolist() == [1, 3]
    assert imdbfast.Sequences(np.array([1.0, 3.0]), np.array([0.0, 2.0])).tokens.tolist() == [1, 3]


def test_a_2d_object_array_is_a_matrix_not_token_lists():
    x = np.array([[0, 1, 1], [1, 0, 0]], dtype=object)
    want = imdbfast.multi_hot([[1, 2], [0]], 3)
    got = imdbfast._encoding.to_csr(x)
    assert (got.n_rows, got.n_cols) == (2, 3)
    assert got.indptr.tolist() == want.indptr.tolist()
    assert got.indices.tolist() == want.indices.tolist()
    m = imdbfast.Sequential([layers.Dense(1, activation="sigmoid")], seed=0)
    m.compile("rmsprop", "binary_crossentropy")
    m.fit(x, np.array([0, 1]), verbose=0)
    np.testing.assert_array_equal(m.predict(x, verbose=0), m.predict(x.astype(np.float32),
                                                                     verbose=0))
    with pytest.raises(TypeError, match="must hold numbers"):
        m.predict(np.array([["a", "b", "c"]], dtype=object), verbose=0)


@pytest.mark.parametrize("call", [
    lambda t: imdbfast.multi_hot([[1]], 5, threads=t),
    lambda t: imdbfast.multi_hot_dense([[1]], 5, threads=t),
    lambda t: imdbfast.CSR(np.array([0, 1]), np.array([0], np.int32), None, 1, 5, t),
    lambda t: imdbfast.multi_hot([[1]], 5).to_dense(t),
    lambda t: imdbfast.multi_hot([[1]], 5).take(np.array([0]), t),
    lambda t: imdbfast.set_num_threads(t),
])
@pytest.mark.parametrize("threads", [2**31, 2**64, -1, 1.5, True, "2"])
def test_threads_out_of_range_name_the_argument(call, threads):
    try:
        with pytest.raises((TypeError, ValueError), match=r"^(threads|n): "):
            call(threads)
    finally:
        imdbfast.set_num_threads(0)


def test_csr_shape_out_of_range_names_the_argument():
    for rows, cols, match in [(2**63, 5, "n_rows"), (1, 2**40, "n_cols"), (1.0, 5, "n_rows"),
                              (1, 0, "n_cols")]:
        with pytest.raises((TypeError, ValueError), match=match):
            imdbfast.CSR(np.array([0, 1]), np.array([0], np.int32), None, rows, cols)


def test_an_edited_word_index_is_not_served_stale():
    from imdbfast.datasets import imdb

    index = {"great": 1, "movie": 2}
    assert imdb.texts_to_sequences(["a great movie"], index).tokens.tolist() == [1, 4, 5]
    index["a"] = 3  # edited in place: the cached vocabulary must not be reused
    assert imdb.texts_to_sequences(["a great movie"], index).tokens.tolist() == [1, 6, 4, 5]
    del index["great"]
    assert imdb.texts_to_sequences(["a great movie"], index).tokens.tolist() == [1, 6, 5]
    for bad in ({"a": True}, {"a": 2**70}, {"a": "1"}):
        with pytest.raises((TypeError, ValueError), match="word_index"):
            imdb.texts_to_sequences(["a"], bad)


def test_a_models_word_index_is_a_read_only_copy():
    import pickle

    index = {"great": 1}
    m = imdbfast.Sequential([layers.Dense(1)])
    m.word_index = index
    index["movie"] = 2  # the model kept its own copy
    assert dict(m.word_index) == {"great": 1}
    with pytest.raises(TypeError, match="read-only"):
        m.word_index["movie"] = 2
    with pytest.raises(TypeError, match="read-only"):
        m.word_index.update(movie=2)
    assert pickle.loads(pickle.dumps(m.word_index)) == {"great": 1}
    with pytest.raises(TypeError, match="word_index"):
        m.word_index = ["great"]


def test_scipy_duplicates_add_up_even_when_every_value_is_one():
    """A binary-looking scipy matrix with a duplicate entry holds a 2 (scipy's toarray): read
    as 1 it would give another answer than the dense matrix."""
    sp = pytest.importorskip("scipy.sparse")
    for make in (sp.csr_matrix, sp.csr_array):
        s = make((np.ones(3, np.float64), np.array([2, 2, 4]), np.array([0, 3])), shape=(1, 5))
        np.testing.assert_array_equal(imdbfast.to_csr(s).to_dense(), s.toarray())
    model = imdbfast.Sequential([imdbfast.Input((5,)), imdbfast.layers.Dense(4, activation="relu"),
                                 imdbfast.layers.Dense(1, activation="sigmoid")], seed=0)
    np.testing.assert_array_equal(model.predict(s, verbose=0), model.predict(s.toarray(), verbose=0))
    with pytest.raises(TypeError, match=r"x: a sparse matrix must be numeric, got dtype complex"):
        imdbfast.to_csr(sp.csr_matrix(np.array([[1 + 1j, 0]])))


@pytest.mark.parametrize("dense, match", [
    (np.array([[1e300, 0.0, 1.0]]), r"x: holds 1e\+300, beyond float32's range"),
    (np.array([[-1e39, 0.0]]), r"x: holds -1e\+39, beyond float32's range"),
    (np.array([[2**24 + 1, 0]], np.int64), r"x: holds integers beyond 2\*\*24"),
    (np.array([[0, -2**31]], np.int32), r"x: holds integers beyond 2\*\*24"),
])
def test_values_the_float32_cast_would_change_are_refused(dense, match):
    with pytest.raises(ValueError, match=match):
        imdbfast.to_csr(dense)
    sp = pytest.importorskip("scipy.sparse")
    with pytest.raises(ValueError, match=match):
        imdbfast.to_csr(sp.csr_matrix(dense))
    # the largest exact values still pass
    ok = np.array([[2**24, -2**24, 0]], np.int64)
    np.testing.assert_array_equal(imdbfast.to_csr(ok).to_dense(), ok.astype(np.float32))
    big = np.array([[float(np.finfo(np.float32).max), 1.0]])
    assert np.isfinite(imdbfast.to_csr(big).to_dense()).all()
