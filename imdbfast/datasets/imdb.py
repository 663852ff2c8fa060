"""``load_data`` and ``get_word_index`` for the IMDB reviews, identical to Keras's results.

Where the file comes from, in order: an explicit path; ``$IMDBFAST_DATA`` (a folder); Keras's
cache (``$KERAS_HOME/datasets`` or ``~/.keras/datasets``), so Keras users need no second copy;
imdbfast's cache (``$IMDBFAST_CACHE`` or ``~/.cache/imdbfast``). Downloading is not built yet:
without a file, a clear error says where to put one.

Safe: the npz's object arrays are unpickled by a restricted unpickler that can only rebuild
NumPy arrays (as Keras 3 does); anything else is refused before it runs. Fast: the first load
of a file converts it to flat arrays cached in imdbfast's cache folder (keyed by the file's path,
size and modification time); later loads read the flat arrays and apply Keras's algorithm
vectorised, in tens of milliseconds instead of seconds.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from .. import _core
from ..sequences import Sequences

_KEYS = ("x_train", "y_train", "x_test", "y_test")
_CACHE_VERSION = 1


def load_data(path: str = "imdb.npz", num_words: int | None = None, skip_top: int = 0,
              maxlen: int | None = None, seed: int = 113, start_char: int | None = 1,
              oov_char: int | None = 2, index_from: int = 3, **kwargs: Any):
    """Keras's ``imdb.load_data``: ((x_train, y_train), (x_test, y_test)).

    x are :class:`imdbfast.Sequences` (flat, list-like), y int64 arrays. Reviews are shuffled with
    ``np.random.RandomState(seed)`` (train, then test with the same generator), prefixed with
    ``start_char``, shifted by ``index_from``, dropped if ``len >= maxlen``, and words outside
    ``[skip_top, num_words)`` become ``oov_char`` (or are removed if it is None) — the start
    token included, and with num_words=None the largest index becomes OOV, exactly as Keras.
    Extra keyword arguments are ignored, as Keras 3 does.
    """
    for name, v in (("skip_top", skip_top), ("seed", seed), ("index_from", index_from)):
        _check_int(name, v, low=0)
    for name, v in (("num_words", num_words), ("maxlen", maxlen), ("start_char", start_char),
                    ("oov_char", oov_char)):
        if v is not None:
            _check_int(name, v, low=0)
    if num_words and oov_char is not None and oov_char >= num_words:
        raise ValueError(f"num_words: {num_words} cannot hold the reserved oov_char={oov_char}")
    raw = _read_raw(_locate(path))

    rng = np.random.RandomState(seed)
    parts = []
    for split in ("train", "test"):
        tokens, offsets, labels = raw[split]
        order = np.arange(offsets.size - 1)
        rng.shuffle(order)
        # Keras: shuffle, then [start_char] + [w + index_from for w in review], in one pass.
        t, o = _core.ragged_take(tokens, offsets, order, -1 if start_char is None else start_char,
                                 index_from)
        parts.append((t, o, labels[order]))
    if maxlen:
        for i, name in enumerate(("train", "test")):
            tokens, offsets, labels = parts[i]
            keep = np.flatnonzero(np.diff(offsets) < maxlen)
            if keep.size == 0:
                raise ValueError(f"maxlen: after keeping sequences shorter than maxlen={maxlen}, "
                                 f"no {name} sequence is left. Increase maxlen.")
            s = Sequences(tokens, offsets).take(keep)
            parts[i] = (s.tokens, s.offsets, labels[keep])
    if not num_words:
        num_words = max(int(p[0].max()) if p[0].size else 0 for p in parts)
    out = []
    for tokens, offsets, labels in parts:  # tokens are fresh copies: filter them in place
        bad = tokens >= num_words
        if skip_top:
            bad |= tokens < skip_top
        if oov_char is not None:
            np.putmask(tokens, bad, np.int32(oov_char))
        else:
            kept = np.concatenate(([0], np.cumsum(~bad, dtype=np.int64)))
            tokens, offsets = tokens[~bad], kept[offsets]
        del bad
        out.append((Sequences(tokens, offsets, num_words), labels))
    return tuple(out)


def get_word_index(path: str = "imdb_word_index.json") -> dict:
    """Keras's word index: word -> frequency rank (1 = most frequent), not shifted."""
    with open(_locate(path), encoding="utf-8") as f:
        index = json.load(f)
    if not isinstance(index, dict) or not all(isinstance(v, int) for v in index.values()):
        raise ValueError(f"{path}: not a word index (a JSON object of word -> int)")
    return index


def reverse_word_index(word_index: dict | None = None) -> dict:
    """rank -> word, the dictionary the book builds to decode reviews."""
    return {v: k for k, v in (word_index or get_word_index()).items()}


def decode_review(sequence: Any, word_index: dict | None = None, index_from: int = 3) -> str:
    """The book's decoding: ids below ``index_from`` (padding, start, OOV) and unknown ids
    become '?'."""
    reverse = reverse_word_index(word_index)
    return " ".join(reverse.get(int(i) - index_from, "?") for i in sequence)


# ---- files --------------------------------------------------------------------------------

def _cache_dir() -> Path:
    if os.environ.get("IMDBFAST_CACHE"):
        return Path(os.environ["IMDBFAST_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "imdbfast"


def _locate(path: str) -> Path:
    p = Path(os.fspath(path)).expanduser()
    if p.is_file():
        return p
    if p.parent != Path(".") or p.is_absolute():
        raise FileNotFoundError(f"{path}: no such file")
    candidates = []
    if os.environ.get("IMDBFAST_DATA"):
        candidates.append(Path(os.environ["IMDBFAST_DATA"]) / p)
    keras_home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    candidates += [Path(keras_home) / "datasets" / p, _cache_dir() / p]
    for c in candidates:
        if c.is_file():
            return c
    raise FileNotFoundError(
        f"{path} not found. Put the Keras IMDB file there or point imdbfast at it: an explicit "
        f"path, $IMDBFAST_DATA (a folder), or one of: " + ", ".join(str(c) for c in candidates) +
        ". (Downloading is not available in this version.)")


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Rebuilds NumPy arrays and nothing else: any other global is refused before it runs."""

    # Array reconstruction, dtypes, and NumPy scalars (a dtype plus raw bytes): none can call
    # anything else. Keras's own files hold Python ints; files written from NumPy ints need
    # `scalar`.
    ALLOWED = {(m, n) for m in ("numpy._core.multiarray", "numpy.core.multiarray")
               for n in ("_reconstruct", "scalar")} | {("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module: str, name: str):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: the file may only hold "
                                     "arrays of integer lists")


def _read_member(z: zipfile.ZipFile, name: str, where: Path) -> np.ndarray:
    with z.open(name + ".npy") as f:
        try:
            version = np.lib.format.read_magic(f)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = read_header(f)
        except ValueError as e:
            raise ValueError(f"{where}: {name} has a broken .npy header ({e})") from None
        if dtype.hasobject:
            arr = _ArrayOnlyUnpickler(f).load()
        else:
            count = int(np.prod(shape))
            arr = np.frombuffer(f.read(count * dtype.itemsize), dtype=dtype)
            if arr.size != count:
                raise ValueError(f"{where}: {name} is truncated")
            arr = arr.reshape(shape, order="F" if fortran else "C")
    if not isinstance(arr, np.ndarray) or arr.ndim != 1:
        raise ValueError(f"{where}: {name} is not a 1-D array")
    return arr


def _flatten(arr: np.ndarray, name: str, where: Path):
    try:
        lengths = np.fromiter((len(s) for s in arr), np.int64, arr.size)
        flat = np.fromiter((w for s in arr for w in s), np.float64, int(lengths.sum()))
    except (TypeError, ValueError):
        raise ValueError(f"{where}: {name} must hold sequences of integers") from None
    if flat.size and (not np.all(flat == np.floor(flat)) or flat.min() < 0 or flat.max() > 2**31 - 1):
        raise ValueError(f"{where}: {name} holds a token that is negative, not an integer, or too large")
    offsets = np.zeros(arr.size + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return flat.astype(np.int32), offsets


def _convert(where: Path) -> dict:
    """The raw (unshuffled, unshifted) data of an npz as flat arrays, safely."""
    try:
        with zipfile.ZipFile(where) as z:
            names = {n[:-4] for n in z.namelist() if n.endswith(".npy")}
            missing = [k for k in _KEYS if k not in names]
            if missing:
                raise ValueError(f"{where}: missing {', '.join(missing)}")
            arrays = {k: _read_member(z, k, where) for k in _KEYS}
    except (zipfile.BadZipFile, EOFError, OSError) as e:
        raise ValueError(f"{where}: not a readable npz file ({e})") from None
    except pickle.UnpicklingError as e:
        raise ValueError(f"{where}: refused: {e}") from None
    out = {}
    for split in ("train", "test"):
        x, y = arrays["x_" + split], arrays["y_" + split]
        if y.dtype.kind not in "iub" or y.shape != x.shape:
            raise ValueError(f"{where}: y_{split} must be integer labels, one per review")
        tokens, offsets = _flatten(x, "x_" + split, where)
        out[split] = (tokens, offsets, y.astype(np.int64))
    return out


def _read_raw(where: Path) -> dict:
    st = where.stat()
    key = hashlib.sha256(f"{where.resolve()}|{st.st_size}|{st.st_mtime_ns}|{_CACHE_VERSION}".encode())
    cache = _cache_dir() / f"{where.stem}-{key.hexdigest()[:20]}"
    names = [f"{s}_{n}" for s in ("train", "test") for n in ("tokens", "offsets", "labels")]
    if (cache / "complete").is_file():
        try:  # memory-mapped: the arrays are read as the kernels touch them
            a = {n: np.load(cache / f"{n}.npy", mmap_mode="r", allow_pickle=False) for n in names}
            return {s: (a[s + "_tokens"], a[s + "_offsets"], a[s + "_labels"]) for s in ("train", "test")}
        except (OSError, ValueError):
            pass  # a damaged cache is rebuilt below
    raw = _convert(where)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".imdbfast-", dir=cache.parent))
        for s in raw:
            for n, arr in zip(("tokens", "offsets", "labels"), raw[s]):
                np.save(tmp / f"{s}_{n}.npy", arr)
        (tmp / "complete").touch()
        try:
            os.replace(tmp, cache)  # atomic: readers see a complete folder or none
        except OSError:  # another process won the race, or an old cache is in the way
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    except OSError:
        pass  # no writable cache: every load converts again (slower, still correct)
    return raw


def _check_int(name: str, v: Any, low: int) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
        raise ValueError(f"{name}: expected an int >= {low}, got {v!r}")
