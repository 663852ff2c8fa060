"""``layers.TextVectorization``: Keras 3's layer (standardise, split, n-grams, a vocabulary by
frequency, int / multi_hot / count / tf_idf outputs) with the tokenising, counting and lookups in
compiled code (cpp/vectorize.cpp), multi-threaded, the GIL released.

Where it differs from Keras (docs/ARCHITECTURE.md says why): bag outputs are an imdbfast CSR
(float32 values; Keras gives a dense int64 or float32 tensor); bytes must be UTF-8; callables for
``standardize``/``split``, ``ragged=True`` and ``output_mode="one_hot"`` are refused; with
``split=None`` each text is one sample in every mode; a second ``adapt`` may change a bag
layer's width until the layer is in a built model.
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from . import _core
from ._checks import check_int, check_layer_dtype, check_layer_name, check_threads

MASK, OOV = "", "[UNK]"
STANDARDIZE = ("lower_and_strip_punctuation", "lower", "strip_punctuation")
SPLIT = {None: 0, "whitespace": 1, "character": 2}
MODES = ("int", "multi_hot", "count", "tf_idf")
BAG_CODES = {"multi_hot": 0, "count": 1, "tf_idf": 2}
_ALIASES = {"binary": "multi_hot", "tf-idf": "tf_idf"}


def as_texts(data: Any, name: str) -> list[str]:
    """A list of str from a str/bytes sequence or array (1-D, or (N, 1) as Keras takes); bytes
    must be UTF-8. Anything else is refused, naming the element."""
    if isinstance(data, np.ndarray):
        if data.ndim == 2 and data.shape[1] == 1:
            data = data[:, 0]
        elif data.ndim != 1:
            raise ValueError(f"{name}: expected a 1-D array of strings (or shape (N, 1)), got "
                             f"shape {data.shape}")
        if data.dtype.kind not in "USO":
            raise TypeError(f"{name}: expected strings, got an array of {data.dtype}")
        data = data.tolist()
    elif isinstance(data, (str, bytes)) or not isinstance(data, (list, tuple)):
        raise TypeError(f"{name}: expected a list, tuple or array of strings, got "
                        f"{type(data).__name__}")
    out = []
    for i, t in enumerate(data):
        if isinstance(t, (list, tuple)) and len(t) == 1:  # a row of an (N, 1) nested list
            t = t[0]
        if isinstance(t, str):
            out.append(t)
        elif isinstance(t, (bytes, np.bytes_)):
            try:
                out.append(bytes(t).decode("utf-8"))
            except UnicodeDecodeError as e:
                raise ValueError(f"{name}[{i}]: bytes that are not UTF-8 ({e.reason} at byte "
                                 f"{e.start}); decode them first, e.g. "
                                 "b.decode('utf-8', 'replace')") from None
        else:
            raise TypeError(f"{name}[{i}]: expected a str (or UTF-8 bytes), got "
                            f"{type(t).__name__}")
    return out


def _surrogate_error(texts: list[str], name: str) -> ValueError:
    for i, t in enumerate(texts):
        try:
            t.encode("utf-8")
        except UnicodeEncodeError as e:
            return ValueError(f"{name}[{i}]: a lone surrogate at character {e.start} is not "
                              "text (it has no UTF-8)")
    return ValueError(f"{name}: not encodable as UTF-8")


# Each token starts one n-gram per n: past this, ngrams=N is work (and a tuple of N sizes)
# no text could use.
_MAX_NGRAM = 1024


def _check_ngrams(ngrams: Any) -> tuple[int, ...] | None:
    bad = ValueError("`ngrams` must be None, an integer, or a tuple of integers. Received: "
                     f"ngrams={ngrams!r} (imdbfast: the integers must be in [1, {_MAX_NGRAM}])")
    if ngrams is None:
        return None
    if isinstance(ngrams, (int, np.integer)) and not isinstance(ngrams, bool):
        if not 1 <= ngrams <= _MAX_NGRAM:
            raise bad
        return tuple(range(1, int(ngrams) + 1))
    if isinstance(ngrams, tuple) and ngrams and all(
            isinstance(w, (int, np.integer)) and not isinstance(w, bool) and 1 <= w <= _MAX_NGRAM
            for w in ngrams):
        return tuple(int(w) for w in ngrams)
    raise bad


class TextVectorization:
    """Keras 3's ``TextVectorization``: ``adapt(texts)`` learns a vocabulary (the most frequent
    terms, ties broken by the terms' bytes, high to low); calling the layer on a list of
    strings gives the (N, L) int64 sequences ("int": 0 padding, 1 OOV) or a CSR of the bag of
    terms ("multi_hot", "count", "tf_idf": column 0 OOV)."""

    def __init__(self, max_tokens: int | None = None,
                 standardize: str | None = "lower_and_strip_punctuation",
                 split: str | None = "whitespace", ngrams: Any = None, output_mode: str = "int",
                 output_sequence_length: int | None = None, pad_to_max_tokens: bool = False,
                 vocabulary: Any = None, idf_weights: Any = None, sparse: bool = False,
                 ragged: bool = False, encoding: str = "utf-8", name: str | None = None,
                 **kwargs: Any):
        check_layer_dtype(kwargs.pop("dtype", None))
        for arg in ("trainable", "vocabulary_size", "has_input_vocabulary"):
            kwargs.pop(arg, None)  # configs carry them; nothing to learn from them here
        for arg, v in kwargs.items():
            raise TypeError(f"TextVectorization: unsupported argument {arg}={v!r}")
        if callable(standardize) or callable(split):
            raise ValueError("standardize, split: callables are not supported by imdbfast "
                             "(the text rules run in compiled code); use one of "
                             f"{STANDARDIZE + (None,)} and {tuple(SPLIT)}")
        if standardize not in STANDARDIZE + (None,):
            raise ValueError("Unknown value for `standardize` argument of TextVectorization. "
                             f"Allowed values are: {STANDARDIZE}. Received: "
                             f"standardize={standardize}")
        if split not in SPLIT:
            raise ValueError("Unknown value for `split` argument of TextVectorization. Allowed "
                             "values are: ('whitespace', 'character'). Received: "
                             f"split={split}")
        output_mode = _ALIASES.get(output_mode, output_mode)
        if output_mode == "one_hot":
            raise ValueError("output_mode='one_hot': not supported by imdbfast's "
                             "TextVectorization; use 'multi_hot' (a bag of terms) or 'int'")
        if output_mode not in MODES:
            raise ValueError("Unknown value for `output_mode` argument of TextVectorization. "
                             f"Allowed values are: {MODES}. Received: output_mode={output_mode}")
        self._ngrams_arg = ngrams
        self._ngrams = _check_ngrams(ngrams)
        if output_mode == "int":
            if output_sequence_length is not None:
                output_sequence_length = check_int(output_sequence_length,
                                                   "output_sequence_length", 0, 2**31 - 1)
        elif output_sequence_length is not None:
            raise ValueError("`output_sequence_length` must not be set if `output_mode` is not "
                             f"'int'. Received output_sequence_length={output_sequence_length}.")
        if ragged:
            raise ValueError("ragged=True: not supported by imdbfast; 'int' rows are padded "
                             "(output_sequence_length=None pads to the longest text)")
        if sparse and output_mode == "int":
            raise ValueError("`sparse` may only be true if `output_mode` is `'one_hot'`, "
                             "`'multi_hot'`, `'count'` or `'tf_idf'`. Received: sparse=True and "
                             "output_mode=int")
        if encoding not in ("utf-8", "UTF-8", "utf8"):
            raise ValueError(f"encoding: imdbfast reads UTF-8 only, got {encoding!r}")
        reserved = 2 if output_mode == "int" else 1
        if max_tokens is not None:
            if isinstance(max_tokens, bool) or not isinstance(max_tokens, (int, np.integer)) \
                    or max_tokens <= 1:
                raise ValueError("If set, `max_tokens` must be greater than 1. Received: "
                                 f"max_tokens={max_tokens}")
            if max_tokens <= reserved:
                raise ValueError(f"max_tokens={max_tokens} leaves no room for terms: "
                                 "output_mode='int' reserves index 0 for padding and 1 for OOV, "
                                 "so max_tokens must be greater than 2")
            max_tokens = int(max_tokens)
        if pad_to_max_tokens and max_tokens is None:
            raise ValueError("If pad_to_max_tokens is True, must set `max_tokens`. Received: "
                             "max_tokens=None")
        if idf_weights is not None and output_mode != "tf_idf":
            raise ValueError("`idf_weights` should only be set if `output_mode` is `'tf_idf'`. "
                             f"Received: idf_weights={idf_weights} and output_mode={output_mode}")
        if vocabulary is not None and output_mode == "tf_idf" and idf_weights is None:
            raise ValueError("When specifying the `vocabulary` argument, in TF-IDF output mode, "
                             "the `idf_weights` argument must also be provided.")
        self.name = check_layer_name(name)
        self.max_tokens = max_tokens
        self.standardize = standardize
        self.split = split
        self.output_mode = output_mode
        self.output_sequence_length = output_sequence_length
        self.pad_to_max_tokens = bool(pad_to_max_tokens)
        self.sparse = bool(sparse)
        self.threads: int | None = None
        self._reserved = reserved
        self._terms: list[str] = []
        self._idf: np.ndarray | None = None  # (width,) float32, tf_idf only
        self._lookup: Any = None
        self._vocabulary_set = False
        is_path = isinstance(vocabulary, (str, bytes)) or hasattr(vocabulary, "__fspath__")
        # (a file's vocabulary is not kept in the config, as Keras: it travels as the terms)
        self._input_vocabulary = None if vocabulary is None or is_path else list(vocabulary)
        self._input_idf = None if idf_weights is None else list(np.asarray(idf_weights, np.float64).tolist())
        self.trainable = True  # (no weights: Keras's flag, kept for the summary)
        self._model_ref: Any = None
        if vocabulary is not None:
            self._in_constructor = True
            try:
                self.set_vocabulary(vocabulary, idf_weights)
            finally:
                del self._in_constructor
        self._has_input_vocabulary = vocabulary is not None

    # ---- the rules, as the core takes them --------------------------------------------------
    def _rules(self) -> tuple:
        lower = self.standardize in ("lower", "lower_and_strip_punctuation")
        strip = self.standardize in ("strip_punctuation", "lower_and_strip_punctuation")
        return lower, strip, SPLIT[self.split], list(self._ngrams or ())

    def _nthreads(self) -> int:
        t = check_threads(self.threads)
        return 0 if t is None else t

    # ---- vocabulary ------------------------------------------------------------------------
    def adapt(self, data: Any, batch_size: int | None = None, steps: int | None = None) -> None:
        """Learns the vocabulary (and, for "tf_idf", the document frequencies) from texts: a
        list, tuple or array of strings, or an iterable of such batches. Nothing changes when
        the data is refused."""
        if self._has_input_vocabulary:
            raise ValueError(f"Cannot adapt layer '{self.name or 'text_vectorization'}' after "
                             "setting a static vocabulary via `vocabulary` argument or "
                             "`set_vocabulary()` method.")
        if steps is not None:
            raise ValueError("steps: only for a tf.data.Dataset, which imdbfast does not take")
        self._check_unbuilt("adapt")
        if isinstance(data, str):
            texts = [data]
        elif isinstance(data, (bytes, list, tuple, np.ndarray)):
            texts = as_texts(data, "data")
        elif isinstance(data, Iterable):
            texts = []
            for k, batch in enumerate(data):
                texts.extend(as_texts(batch, f"data (batch {k})"))
        else:
            raise TypeError(f"data: expected strings or an iterable of batches of strings, got "
                            f"{type(data).__name__}")
        keep = -1 if self.max_tokens is None else self.max_tokens - self._reserved
        try:
            terms, counts, docs = _core.count_terms(texts, *self._rules(), [MASK, OOV], keep,
                                                    self._nthreads())
        except UnicodeEncodeError:
            raise _surrogate_error(texts, "data") from None
        if len(terms) == 0:
            raise ValueError("adapt: the data holds no terms (every text is empty after "
                             "standardize and split); the vocabulary is unchanged")
        idf = None
        if self.output_mode == "tf_idf":
            # Keras: log(1 + N / (1 + df)) in float64, cast to float32; OOV gets their mean.
            w = np.log(1.0 + len(texts) / (1.0 + docs.astype(np.float64))).astype(np.float32)
            oov = np.float32(np.mean(w, dtype=np.float64))
            idf = np.concatenate([[oov], w]).astype(np.float32)
        self._install(list(terms), idf)

    def set_vocabulary(self, vocabulary: Any, idf_weights: Any = None) -> None:
        """Sets the vocabulary (and, for "tf_idf", its IDF weights) directly, as Keras's
        ``set_vocabulary``: a sequence of distinct terms, or a path to a file of one term per
        line; the special tokens may lead it in Keras's order (['', '[UNK]'] for "int")."""
        self._check_unbuilt("set_vocabulary")
        mode = self.output_mode
        if mode == "tf_idf" and idf_weights is None:
            raise ValueError("`idf_weights` must be set if output_mode is 'tf_idf'.")
        if mode != "tf_idf" and idf_weights is not None:
            raise ValueError("`idf_weights` should only be set if output_mode is `'tf_idf'`. "
                             f"Received: output_mode={mode} and idf_weights={idf_weights}")
        if isinstance(vocabulary, (str, bytes)) or hasattr(vocabulary, "__fspath__"):
            from ._files import open_regular
            with open_regular(vocabulary, "set_vocabulary") as f:
                vocab = f.read().decode("utf-8").split("\n")
            if vocab and vocab[-1] == "":
                vocab.pop()
        else:
            vocab = as_texts(np.asarray(vocabulary) if isinstance(vocabulary, np.ndarray)
                             else list(vocabulary), "vocabulary")
        if not vocab:
            raise ValueError(f"Cannot set an empty vocabulary. Received: vocabulary={vocab}")
        try:
            "".join(vocab).encode("utf-8")
        except UnicodeEncodeError:
            raise _surrogate_error(vocab, "vocabulary") from None
        special = [MASK, OOV] if mode == "int" else [OOV]
        passed = len(vocab)
        with_specials = vocab[:len(special)] == special
        if with_specials:
            vocab = vocab[len(special):]
        seen: set = set()
        repeated = sorted({t for t in vocab if t in seen or seen.add(t)})  # type: ignore[func-returns-value]
        if repeated:
            raise ValueError("The passed vocabulary has at least one repeated term. Please "
                             f"uniquify your dataset. The repeated terms are: {repeated}")
        if MASK in seen:
            raise ValueError("Found reserved mask token at unexpected location in `vocabulary`. "
                             "Note that passed `vocabulary` does not need to include the OOV and "
                             "mask tokens. Either remove all mask and OOV tokens, or include "
                             f"them only at the start of the vocabulary in precisely this order: "
                             f"{special}. Received: mask_token= at vocabulary index "
                             f"[{vocab.index(MASK)}]")
        if self.max_tokens is not None and self._reserved + len(vocab) > self.max_tokens:
            raise ValueError("Attempted to set a vocabulary larger than the maximum vocab size. "
                             f"Received vocabulary size is {self._reserved + len(vocab)}; "
                             f"`max_tokens` is {self.max_tokens}.")
        idf = None
        if mode == "tf_idf":
            w = np.asarray(idf_weights, dtype=np.float64)
            if w.ndim != 1:
                raise ValueError(f"TF-IDF data must be a 1-index array. Received: {w.shape}")
            if len(w) != passed:
                raise ValueError("`idf_weights` must be the same length as vocabulary. "
                                 f"len(idf_weights) is {len(w)}; len(vocabulary) is {passed}")
            if not np.all(np.isfinite(w)):
                raise ValueError("idf_weights: every weight must be finite")
            # Keras: with the special token given, its weight is the first; else their mean
            idf = (w if with_specials else np.concatenate([[np.average(w)], w])).astype(np.float32)
        self._install(vocab, idf)
        if not getattr(self, "_in_constructor", False):
            self._input_vocabulary = self._input_idf = None  # (the config no longer holds it)

    def _install(self, terms: list[str], idf: np.ndarray | None) -> None:
        """The new vocabulary, all at once (the lookup is built, refusing duplicates, before
        anything is replaced); IDF weights shorter than the output are padded with zeros."""
        lookup = _core.TermIndex(terms, self._reserved)
        if idf is not None and len(idf) < self._width_for(len(terms)):
            idf = np.concatenate([idf, np.zeros(self._width_for(len(terms)) - len(idf), np.float32)])
        self._terms, self._idf = terms, None if idf is None else np.asarray(idf, np.float32)
        self._lookup, self._vocabulary_set = lookup, True

    def _check_unbuilt(self, what: str) -> None:
        model = self._model_ref() if self._model_ref is not None else None
        if model is not None and model.built and self.output_mode != "int" \
                and not self.pad_to_max_tokens:
            raise ValueError(f"{what}: this layer feeds the built model {model.name!r}, whose "
                             "first Dense layer's input width is the vocabulary's size; use "
                             "pad_to_max_tokens=True to change the vocabulary of a built model")

    def get_vocabulary(self, include_special_tokens: bool = True) -> list[str]:
        """The terms by index (with '' and '[UNK]' first for "int", '[UNK]' for the others)."""
        special = [MASK, OOV] if self.output_mode == "int" else [OOV]
        return (special if include_special_tokens else []) + list(self._terms)

    def vocabulary_size(self) -> int:
        """The vocabulary's size, the special tokens included."""
        return self._reserved + len(self._terms)

    def _width_for(self, n_terms: int) -> int:
        return self.max_tokens if self.pad_to_max_tokens else self._reserved + n_terms  # type: ignore[return-value]

    @property
    def output_width(self) -> int:
        """Columns of a bag output: max_tokens when pad_to_max_tokens, else the vocabulary's size."""
        return self._width_for(len(self._terms))

    @property
    def units(self) -> int:
        """The output width, as a model's summary shows it."""
        return self.output_width

    def _restore(self, terms: list[str], idf: np.ndarray | None) -> None:
        """A saved vocabulary and IDF weights (padded as saved), exactly."""
        if (idf is None) != (self.output_mode != "tf_idf") or (
                idf is not None and len(idf) != self._width_for(len(terms))):
            raise ValueError("the saved IDF weights do not fit the layer's vocabulary")
        if "" in terms:
            raise ValueError("the saved vocabulary holds an empty term")
        self._install(list(terms), idf)

    @property
    def idf_weights(self) -> np.ndarray | None:
        """The IDF weight of each output column ("tf_idf"; None otherwise), OOV's first."""
        return None if self._idf is None else self._idf.copy()

    # ---- calling ---------------------------------------------------------------------------
    def __call__(self, inputs: Any) -> Any:
        """(N, L) int64 sequences ("int") or an imdbfast CSR (N, output_width) of the bag of
        terms: 1 ("multi_hot", binary), counts, or counts x IDF ("tf_idf"), float32."""
        if not self._vocabulary_set:
            if self.output_mode != "int" and not self.pad_to_max_tokens:
                raise RuntimeError(f"When using `output_mode={self.output_mode}` and "
                                   "`pad_to_max_tokens=False`, you must set the layer's "
                                   "vocabulary before calling it. Either pass a `vocabulary` "
                                   "argument to the layer, or call `adapt` with some sample data.")
            raise RuntimeError("TextVectorization: no vocabulary yet; call adapt(texts) or pass "
                               "vocabulary=")
        if isinstance(inputs, (str, bytes)):
            raise TypeError("inputs: expected a list of strings (a batch), got a single "
                            f"{type(inputs).__name__}; wrap it in a list")
        return self._vectorize(as_texts(inputs, "inputs"), "inputs")

    def _vectorize(self, texts: list[str], name: str) -> Any:
        """The output for texts already checked by as_texts (a model's fit/predict)."""
        try:
            if self.output_mode == "int":
                seq = -1 if self.output_sequence_length is None else self.output_sequence_length
                return self._lookup.ids(texts, *self._rules(), 1, seq, self._nthreads())
            return self._lookup.bag(texts, *self._rules(), 0, self.output_width,
                                   BAG_CODES[self.output_mode], self._idf, self._nthreads())
        except UnicodeEncodeError:
            raise _surrogate_error(texts, name) from None

    call = __call__

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        if self.output_mode == "int":
            return (input_shape[0], self.output_sequence_length)
        return (input_shape[0], self.output_width)

    # ---- configs and pickling --------------------------------------------------------------
    def get_config(self) -> dict:
        return {"name": self.name, "trainable": True, "dtype": "float32",
                "max_tokens": self.max_tokens, "standardize": self.standardize,
                "split": self.split, "ngrams": self._ngrams_arg, "output_mode": self.output_mode,
                "output_sequence_length": self.output_sequence_length,
                "pad_to_max_tokens": self.pad_to_max_tokens, "sparse": self.sparse,
                "ragged": False, "vocabulary": self._input_vocabulary,
                "idf_weights": self._input_idf, "encoding": "utf-8",
                "vocabulary_size": self.vocabulary_size()}

    @classmethod
    def from_config(cls, config: dict) -> "TextVectorization":
        config = dict(config)
        if isinstance(config.get("ngrams"), list):
            config["ngrams"] = tuple(config["ngrams"])
        return cls(**config)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_lookup"] = None  # rebuilt from the terms
        state["_model_ref"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if self._vocabulary_set:
            self._lookup = _core.TermIndex(self._terms, self._reserved)

    # Keras's layer surface: no weights of its own to train.
    weights = trainable_weights = non_trainable_weights = property(lambda self: [])
    losses = property(lambda self: [])

    def get_weights(self) -> list:
        return []

    def count_params(self) -> int:
        return 0

    def __repr__(self) -> str:
        return (f"TextVectorization(output_mode={self.output_mode!r}, "
                f"vocabulary_size={self.vocabulary_size()})")

