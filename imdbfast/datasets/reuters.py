"""Keras's Reuters newswire topics (§4.2 of the book): ``load_data``, ``get_word_index``,
``get_label_names``, with Keras's algorithm and results, read as imdb.py reads IMDB (the same
search order, restricted unpickler and flat-array cache: _sources.py)."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from .._checks import check_float
from ..sequences import Sequences
from ._sources import WHOLE, locate as _locate, read_raw as _read_raw
from .imdb import check_sequence_args, keras_sequences
from .imdb import get_word_index as _get_word_index

LABEL_NAMES = ("cocoa", "grain", "veg-oil", "earn", "acq", "wheat", "copper", "housing",
               "money-supply", "coffee", "sugar", "trade", "reserves", "ship", "cotton",
               "carcass", "crude", "nat-gas", "cpi", "money-fx", "interest", "gnp", "meal-feed",
               "alum", "oilseed", "gold", "tin", "strategic-metal", "livestock", "retail", "ipi",
               "iron-steel", "rubber", "heat", "jobs", "lei", "bop", "zinc", "orange",
               "pet-chem", "dlr", "gas", "silver", "wpi", "hog", "lead")


def load_data(path: str = "reuters.npz", num_words: int | None = None, skip_top: int = 0,
              maxlen: int | None = None, test_split: float = 0.2, seed: int = 113,
              start_char: int | None = 1, oov_char: int | None = 2, index_from: int = 3,
              **kwargs: Any) -> tuple[tuple[Sequences, npt.NDArray[np.int64]],
                                      tuple[Sequences, npt.NDArray[np.int64]]]:
    """Keras's ``reuters.load_data``: ((x_train, y_train), (x_test, y_test)), y the topic ids
    (0-45). All newswires are shuffled with ``np.random.RandomState(seed)``, encoded as IMDB's
    reviews are (start_char, index_from, maxlen, num_words, skip_top, oov_char), then split:
    the first ``int(n * (1 - test_split))`` are the training set."""
    check_sequence_args(num_words, skip_top, maxlen, seed, start_char, oov_char, index_from)
    test_split = check_float("test_split", test_split)
    if not 0.0 <= test_split <= 1.0:
        raise ValueError(f"test_split: must be in [0, 1], got {test_split!r}")
    tokens, offsets, labels = _read_raw(_locate(path), WHOLE)["all"]
    order = np.arange(offsets.size - 1)
    np.random.RandomState(seed).shuffle(order)
    [(x, y)] = keras_sequences([(tokens, offsets, labels, order, "newswire")], num_words,
                               skip_top, maxlen, start_char, oov_char, index_from,
                               maxlen_error=True)
    idx = int(len(x) * (1 - test_split))
    return (x[:idx], y[:idx]), (x[idx:], y[idx:])


def get_word_index(path: str = "reuters_word_index.json") -> dict[str, int]:
    """Keras's Reuters word index: word -> frequency rank (not shifted by index_from)."""
    return _get_word_index(path)


def get_label_names() -> tuple[str, ...]:
    """The 46 topics' names, by label id, as Keras lists them."""
    return LABEL_NAMES
