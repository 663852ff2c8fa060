"""Turning what users pass as ``x`` into the compiled core's inputs.

Sequences of token ids (lists, Keras's object arrays, anything exposing flat ``tokens`` and
``offsets``) become flat int32 tokens + int64 offsets; matrices (the book's dense 0/1 array,
scipy.sparse, imdbfast's own CSR) become a :class:`CSR`. All counting, sorting and encoding is
done by the compiled core; this module only checks types and shapes and flattens lists.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from . import _core
from ._checks import check_int
from ._core import CSR

_INT32_MAX = np.iinfo(np.int32).max


def _is_sparse_matrix(x: Any) -> bool:
    # scipy.sparse without importing scipy: it is optional.
    return hasattr(x, "tocsr") and hasattr(x, "nnz") and hasattr(x, "shape")


def flatten_sequences(sequences: Any, name: str = "x") -> tuple[np.ndarray, np.ndarray]:
    """Flat int32 tokens and int64 offsets (N + 1) of a sequence of token sequences."""
    tokens = getattr(sequences, "tokens", None)
    offsets = getattr(sequences, "offsets", None)
    if isinstance(tokens, np.ndarray) and isinstance(offsets, np.ndarray):
        return _checked_tokens(tokens, name), exact_ints(offsets, np.int64, f"{name}: offsets")
    if isinstance(sequences, (str, bytes)) or not hasattr(sequences, "__len__"):
        raise TypeError(f"{name}: expected a sequence of token sequences, got {type(sequences).__name__}")
    n = len(sequences)
    parts = []
    lengths = np.empty(n, dtype=np.int64)
    for i in range(n):
        try:
            s = sequences[i]
        except (IndexError, KeyError) as e:
            raise ValueError(f"{name}: element {i} of {n} could not be read ({e!r}): does its "
                             "len() match its contents?") from None
        if isinstance(s, (str, bytes)) or not hasattr(s, "__len__"):
            raise TypeError(f"{name}: element {i} is {type(s).__name__}, expected a sequence of ints")
        a = np.asarray(s)
        if a.ndim != 1 and a.size != 0:
            raise ValueError(f"{name}: element {i} has shape {a.shape}, expected a flat sequence")
        parts.append(a.reshape(-1))
        lengths[i] = a.size
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    if flat.size == 0:
        flat = flat.astype(np.int64)
    return _checked_tokens(flat, name), offsets


def exact_ints(values: Any, dtype: Any, name: str, low: int | None = None,
               range_error: type = ValueError) -> np.ndarray:
    """``values`` as a contiguous ``dtype`` array, only when every value is an integer that fits:
    no silent cast (2**32 + 5 is not 5, 1.7 is not 1; "12", b"12" and True are not integers).
    Integral floats are accepted (1.0 is 1). Out of [low, dtype's max]: ``range_error``."""
    a = values if isinstance(values, np.ndarray) else np.asarray(values)
    info = np.iinfo(dtype)
    lo_ok = info.min if low is None else max(low, info.min)
    kind = a.dtype.kind
    if kind == "O":
        flat = a.reshape(-1)
        for v in flat:
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer, float,
                                                                     np.floating)):
                raise TypeError(f"{name}: must hold integers, found {type(v).__name__} {v!r}")
        a = flat.astype(np.float64) if any(isinstance(v, (float, np.floating)) for v in flat) \
            else flat.reshape(a.shape)
        kind = a.dtype.kind
    if kind == "f":
        with np.errstate(invalid="ignore"):
            if not np.all(np.isfinite(a)) or np.any(a != np.round(a)):
                raise TypeError(f"{name}: must hold integers, found a non-integer value")
    elif kind not in "iuO":
        raise TypeError(f"{name}: must hold integers, got dtype {a.dtype}")
    if a.size:
        lo, hi = a.min(), a.max()
        if lo < lo_ok:
            raise range_error(f"{name} {int(lo)} is " +
                              ("negative" if lo_ok == 0 else f"below {lo_ok}"))
        if hi > info.max:
            raise range_error(f"{name} {int(hi)} does not fit {np.dtype(dtype).name}")
    return np.ascontiguousarray(a.astype(dtype, copy=False))


def _checked_tokens(flat: np.ndarray, name: str) -> np.ndarray:
    return exact_ints(flat, np.int32, f"{name}: token", low=0, range_error=IndexError)


def check_threads(threads: Any) -> int:
    """A ``threads=`` argument of the encoding functions: None or 0 (the default), or 1 to
    2**31 - 1."""
    return check_int(threads, "threads", 0, _INT32_MAX, none_ok=True) or 0


def multi_hot(sequences: Any, num_words: int, *, threads: int = 0, name: str = "sequences") -> CSR:
    """Multi-hot encode token sequences as a CSR matrix of shape (N, num_words).

    Row i holds a 1 in each column that occurs in ``sequences[i]`` (duplicates count once), the
    same matrix as the book's ``vectorize_sequences`` without materialising its zeros.
    """
    tokens, offsets = flatten_sequences(sequences, name)
    try:
        return _core.multi_hot(tokens, offsets, _check_dim(num_words), check_threads(threads))
    except IndexError as e:  # the core's messages say "sequences:"; name the caller's argument
        msg = str(e)
        if name != "sequences" and msg.startswith("sequences:"):
            raise IndexError(name + msg[len("sequences"):]) from None
        raise


def multi_hot_dense(sequences: Any, num_words: int, *, threads: int = 0
                    ) -> npt.NDArray[np.float32]:
    """The book's dense float32 multi-hot matrix (N, num_words). Prefer :func:`multi_hot`."""
    tokens, offsets = flatten_sequences(sequences, "sequences")
    return _core.multi_hot_dense(tokens, offsets, _check_dim(num_words), check_threads(threads))


def _check_dim(num_words: Any) -> int:
    return check_int(num_words, "num_words", 1, _INT32_MAX, kind=TypeError)


def _numeric_matrix(x: np.ndarray, name: str) -> np.ndarray:
    for v in x.reshape(-1):
        if not isinstance(v, (int, float, np.number, np.bool_)) or isinstance(v, complex):
            raise TypeError(f"{name}: a 2-D object array is a matrix and must hold numbers, found "
                            f"{type(v).__name__} {v!r}")
    return x.astype(np.float64)


def _check_float32_range(v: np.ndarray, name: str) -> None:
    """Values the float32 cast would change silently: finite floats beyond its range (they
    would become inf) and integers beyond 2**24 (rounded). NaN and inf are refused later."""
    if not v.size:
        return
    if v.dtype.kind == "f" and v.dtype.itemsize > 4:
        with np.errstate(invalid="ignore"):
            over = np.abs(v) > np.finfo(np.float32).max
        if over.any() and np.isfinite(v[over]).any():
            raise ValueError(f"{name}: holds {v[over][np.isfinite(v[over])][0]:g}, beyond "
                             f"float32's range (imdbfast computes in float32)")
    elif v.dtype.kind in "iu" and v.dtype.itemsize > 2:
        if v.max() > 2**24 or v.min() < -2**24:
            raise ValueError(f"{name}: holds integers beyond 2**24, which float32 (imdbfast's "
                             f"precision) would round")


def to_csr(x: Any, num_words: int | None = None, *, threads: int = 0, name: str = "x") -> CSR:
    """Any supported ``x`` as a CSR matrix with ``num_words`` columns (inferred for matrices).

    Accepts an imdbfast CSR, a scipy.sparse matrix, a 2-D numeric array (dense rows, zeros
    dropped, values kept) or a sequence of token sequences (multi-hot; needs ``num_words``).
    """
    threads = check_threads(threads)
    if isinstance(x, CSR):
        m = x
    elif _is_sparse_matrix(x):
        s = x.tocsr()
        if not s.has_canonical_format:  # duplicate entries add up, as scipy's toarray reads them
            s = s.copy()
            s.sum_duplicates()
        n_rows, n_cols = s.shape
        if s.nnz and s.indices.max() > _INT32_MAX:
            raise ValueError(f"{name}: column index does not fit int32")
        if s.dtype.kind not in "fiub":
            raise TypeError(f"{name}: a sparse matrix must be numeric, got dtype {s.dtype}")
        _check_float32_range(s.data, name)
        data = np.ascontiguousarray(s.data, dtype=np.float32)
        m = CSR(np.ascontiguousarray(s.indptr, dtype=np.int64),
                np.ascontiguousarray(s.indices, dtype=np.int32),
                None if np.all(data == 1.0) else data, int(n_rows), int(n_cols), threads)
    elif isinstance(x, np.ndarray) and x.ndim == 2:
        if x.dtype == object:  # a matrix that holds Python numbers (Keras reads it as one),
            x = _numeric_matrix(x, name)  # never rows of token ids
        if x.dtype.kind not in "fiub":
            raise TypeError(f"{name}: a 2-D array must be numeric, got dtype {x.dtype}")
        _check_float32_range(x, name)
        if x.dtype not in (np.float32, np.float64):
            x = x.astype(np.float32)  # ints and bools: exact in float32 for 0/1 and counts
        m = _core.csr_from_dense(np.ascontiguousarray(x), threads)
    elif isinstance(x, np.ndarray) and (x.dtype != object or x.ndim > 2):
        raise ValueError(f"{name}: a numeric array must be 2-D (rows, features), got shape {x.shape}")
    else:
        if num_words is None:
            raise ValueError(f"{name}: token sequences need num_words (the input dimension)")
        return multi_hot(x, num_words, threads=threads, name=name)
    if num_words is not None and m.n_cols != num_words:
        raise ValueError(f"{name}: has {m.n_cols} columns, expected {num_words}")
    return m
