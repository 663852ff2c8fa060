"""``Sequences``: ragged token sequences kept flat (int32 tokens + int64 offsets).

It is what ``imdbfast.datasets.imdb.load_data`` returns and behaves like Keras's object arrays
of lists (``len``, ``x[i]`` -> list of ints, iteration, slicing, integer and boolean indexing,
``shape``/``dtype``/``ndim``/``size``, ``tolist``, ``copy``, elementwise ``==``,
``np.asarray(x)``), while the compiled core reads the flat arrays directly: no Python lists are
built unless someone asks for them. What only an object array can do (item assignment, in-place
shuffles, the other ndarray methods) fails with a message saying how to get one:
``np.asarray(x, dtype=object)``. README's table lists each operation.
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import numpy.typing as npt

from . import _core


class Sequences:
    """Rows ``tokens[offsets[i]:offsets[i + 1]]``. ``num_words``, when known, is the vocabulary
    size the tokens were filtered to (models use it as their input dimension); ``encoding``, when
    the rows came from words, records how (load_data's arguments), so that a model trained on
    them can encode raw text the same way."""

    __slots__ = ("tokens", "offsets", "num_words", "encoding")

    def __init__(self, tokens: Any, offsets: Any, num_words: int | None = None,
                 encoding: dict | None = None):
        from ._encoding import exact_ints

        tokens = exact_ints(tokens, np.int32, "Sequences: tokens", low=0)
        offsets = exact_ints(offsets, np.int64, "Sequences: offsets")
        if tokens.ndim != 1 or offsets.ndim != 1 or offsets.size < 1:
            raise ValueError("Sequences: tokens and offsets must be 1-D, offsets of length N + 1")
        if offsets[0] != 0 or offsets[-1] != tokens.size or np.any(np.diff(offsets) < 0):
            raise ValueError("Sequences: offsets must rise from 0 to len(tokens)")
        self.tokens, self.offsets, self.num_words = tokens, offsets, num_words
        self.encoding = encoding

    @classmethod
    def from_lists(cls, sequences: Any, num_words: int | None = None) -> "Sequences":
        from ._encoding import flatten_sequences

        tokens, offsets = flatten_sequences(sequences, "sequences")
        return cls(tokens, offsets, num_words)

    def __len__(self) -> int:
        return self.offsets.size - 1

    @property
    def shape(self) -> tuple[int]:
        return (len(self),)

    # As Keras's object array: a 1-D array of Python lists.
    dtype = np.dtype(object)
    ndim = 1

    @property
    def size(self) -> int:
        return len(self)

    def tolist(self) -> list[list[int]]:
        return list(self)

    def copy(self) -> "Sequences":
        return Sequences(self.tokens.copy(), self.offsets.copy(), self.num_words,
                         None if self.encoding is None else dict(self.encoding))

    def astype(self, dtype: Any) -> npt.NDArray[Any]:
        return self.__array__(dtype)

    def equals(self, other: Any) -> bool:
        """Whether other holds the same rows (one bool, unlike the elementwise ``==``)."""
        if isinstance(other, Sequences):
            return bool(np.array_equal(self.offsets, other.offsets) and
                        np.array_equal(self.tokens, other.tokens))
        try:
            return len(other) == len(self) and bool(np.all(self == other))
        except (TypeError, ValueError):
            return False

    def lengths(self) -> npt.NDArray[np.int64]:
        return np.diff(self.offsets)

    def __getitem__(self, key: Any):
        if key is Ellipsis:
            return self
        if isinstance(key, tuple):  # as a 1-D object array: x[(i,)] is x[i]; x[i, j] too many
            if len(key) != 1:
                raise IndexError(f"too many indices for Sequences: they are 1-D, but {len(key)} "
                                 "were indexed")
            return self[key[0]]
        if isinstance(key, (bool, np.bool_)):
            raise IndexError("Sequences: a boolean scalar index (which adds an axis to an array) "
                             "is not supported; use a boolean mask of one entry per sequence")
        if isinstance(key, (int, np.integer)):
            n = len(self)
            i = int(key) + n if key < 0 else int(key)
            if not 0 <= i < n:
                raise IndexError(f"index {key} is out of range for {n} sequences")
            return self.tokens[self.offsets[i]:self.offsets[i + 1]].tolist()
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            if step == 1:
                lo, hi = self.offsets[start], self.offsets[max(start, stop)]
                return Sequences(self.tokens[lo:hi], self.offsets[start:max(start, stop) + 1] - lo,
                                 self.num_words, self.encoding)
            return self.take(np.arange(start, stop, step))
        rows = np.asarray(key)
        if rows.size == 0 and rows.ndim == 1:  # x[[]]: no rows, as numpy
            rows = rows.astype(np.int64)
        if rows.dtype == bool:
            if rows.shape != (len(self),):
                raise IndexError(f"boolean index of shape {rows.shape} for {len(self)} sequences")
            rows = np.flatnonzero(rows)
        if rows.dtype.kind not in "iu":
            raise IndexError("Sequences are indexed by ints, slices, int arrays or boolean masks")
        if rows.ndim != 1:
            raise IndexError(f"Sequences are 1-D: an index array must be 1-D, got shape {rows.shape}")
        return self.take(rows)

    def take(self, rows: Any) -> "Sequences":
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        rows = np.where(rows < 0, rows + len(self), rows)
        tokens, offsets = _core.ragged_take(self.tokens, self.offsets, np.ascontiguousarray(rows))
        return Sequences(tokens, offsets, self.num_words, self.encoding)

    def __iter__(self) -> Iterator[list]:
        for i in range(len(self)):
            yield self.tokens[self.offsets[i]:self.offsets[i + 1]].tolist()

    def __array__(self, dtype=None, copy=None):
        if dtype is not None and np.dtype(dtype) != object:
            raise TypeError("Sequences are ragged: only dtype=object is possible "
                            "(use multi_hot or .tokens / .offsets)")
        out = np.empty(len(self), dtype=object)
        out[:] = list(self)
        return out

    def __setitem__(self, key: Any, value: Any) -> None:
        raise TypeError("Sequences do not support item assignment (the rows are stored flat for "
                        "the compiled core): for a shuffled copy use x[np.random.permutation(len("
                        "x))]; for Keras's mutable object array, np.asarray(x, dtype=object)")

    def __eq__(self, other: Any):  # type: ignore[override]
        """Row by row, as an object array compares: a bool array (use ``equals`` for one
        bool)."""
        if isinstance(other, Sequences):
            if len(other) != len(self):
                raise ValueError(f"operands could not be broadcast together with shapes "
                                 f"({len(self)},) ({len(other)},)")
            same = self.lengths() == other.lengths()
            for i in np.flatnonzero(same):
                same[i] = np.array_equal(self.tokens[self.offsets[i]:self.offsets[i + 1]],
                                         other.tokens[other.offsets[i]:other.offsets[i + 1]])
            return same
        if isinstance(other, (list, tuple, np.ndarray)):
            if len(other) != len(self):
                raise ValueError(f"operands could not be broadcast together with shapes "
                                 f"({len(self)},) ({len(other)},)")
            return np.array([list(a) == b if hasattr(a, "__len__") else False
                             for a, b in zip(other, self)], dtype=bool)
        if np.isscalar(other) or other is None:  # a list never equals a scalar
            return np.zeros(len(self), dtype=bool)
        return NotImplemented

    def __ne__(self, other: Any):  # type: ignore[override]
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else ~eq

    __hash__ = None  # type: ignore[assignment]

    def __getattr__(self, name: str) -> Any:
        if hasattr(np.ndarray, name) and not name.startswith("__"):
            raise AttributeError(f"Sequences has no {name!r} (it keeps the rows flat for the "
                                 "compiled core): np.asarray(x, dtype=object) gives Keras's "
                                 f"object array, which has it")
        raise AttributeError(f"'Sequences' object has no attribute {name!r}")

    def __repr__(self) -> str:
        head = ", ".join(str(self[i][:5])[:-1] + ", ...]" for i in range(min(2, len(self))))
        return f"Sequences({len(self)} rows, {self.tokens.size} tokens: [{head}{', ...' if len(self) > 2 else ''}])"
