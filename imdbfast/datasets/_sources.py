"""Where the datasets' files come from and how an npz of token lists is read: the search order
(an explicit path, $IMDBFAST_DATA, Keras's cache, imdbfast's cache, else a checked download from
Keras's origin), the restricted unpickler, and the flat-array cache of a converted file
(imdb.py's docstring). IMDB's and Reuters' files share all of it."""

from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from .._files import NpzReader, open_regular, write_atomically

# The splits of a file of token lists, each (x member, y member): IMDB's come split, Reuters'
# whole (load_data splits it).
IMDB_SPLITS = {"train": ("x_train", "y_train"), "test": ("x_test", "y_test")}
WHOLE = {"all": ("x", "y")}
_CACHE_VERSION = 1
# Keras's origin and published checksums; $IMDBFAST_ORIGIN replaces the origin (a mirror).
ORIGIN = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
KNOWN_FILES = {
    "imdb.npz": ("sha256", "69664113be75683a8fe16e3ed0ab59fda8886cb3cd7ada244f7d9544e4676b9f"),
    "imdb_word_index.json": ("md5", "bfafd718b763782e994055a2d397834f"),
    "reuters.npz": ("sha256", "d6586e694ee56d7a4e65172e12b3e987c03096cb01eab99753921ef915959916"),
    "reuters_word_index.json": ("md5", "4d44cc38712099c9e383dc6e5f11a921"),
    "boston_housing.npz": ("sha256",
                           "f553886a1f8d56431e820c5b82552d9d95cfcb96d1e678153f8839538947dff5"),
}


def cache_dir() -> Path:
    if os.environ.get("IMDBFAST_CACHE"):
        return Path(os.environ["IMDBFAST_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "imdbfast"


def locate(path: str) -> Path:
    p = Path(os.fspath(path)).expanduser()
    if p.is_file():
        return p
    if p.exists():
        open_regular(p, "path").close()  # refuses a folder, FIFO or device by name
    if p.parent != Path(".") or p.is_absolute():
        raise FileNotFoundError(f"{path}: no such file")
    candidates = []
    if os.environ.get("IMDBFAST_DATA"):
        candidates.append(Path(os.environ["IMDBFAST_DATA"]) / p)
    keras_home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    candidates += [Path(keras_home) / "datasets" / p, cache_dir() / p]
    for c in candidates:
        if c.is_file():
            return c
    where = (f"{path} not found. Put the Keras dataset file there or point imdbfast at it: an "
             "explicit path, $IMDBFAST_DATA (a folder), or one of: " +
             ", ".join(str(c) for c in candidates))
    if p.name not in KNOWN_FILES or os.environ.get("IMDBFAST_OFFLINE"):
        raise FileNotFoundError(where + ".")
    url = os.environ.get("IMDBFAST_ORIGIN", ORIGIN).rstrip("/") + "/" + p.name
    try:
        download(url, cache_dir() / p.name, *KNOWN_FILES[p.name])
    except (OSError, ValueError) as e:
        raise FileNotFoundError(f"{where}. Downloading {url} failed: {e}") from None
    return cache_dir() / p.name


def download(url: str, dest: Path, algorithm: str, digest: str, *, timeout: float = 30.0,
             progress: Any = None) -> Path:
    """Fetch ``url`` into ``dest``: streamed to a temporary file beside it, checked against
    ``digest`` (``algorithm`` as hashlib names it), renamed into place only if it matches, so an
    interrupted or corrupt download never leaves a file that looks complete. A progress line goes
    to ``progress`` (default: stderr)."""
    import sys
    import urllib.request

    out = progress if progress is not None else sys.stderr
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)

    def fetch(f) -> None:  # raising here removes the temporary file
        h = hashlib.new(algorithm)
        with urllib.request.urlopen(url, timeout=timeout) as r:
            total = int(r.headers.get("Content-Length") or 0)
            print(f"Downloading data from {url}", file=out, flush=True)
            done = 0
            while True:
                chunk = r.read(1 << 20)
                if not chunk:
                    break
                f.write(chunk)
                h.update(chunk)
                done += len(chunk)
                if total:
                    filled = int(30 * done / total)
                    out.write(f"\r{done >> 20}/{total >> 20} MB [{'=' * filled}{'.' * (30 - filled)}]")
                    out.flush()
            if total:
                out.write("\n")
            if total and done != total:
                raise OSError(f"the download stopped after {done} of {total} bytes")
        if h.hexdigest() != digest:
            raise ValueError(f"{algorithm} of the download is {h.hexdigest()}, expected {digest}")

    write_atomically(dest, fetch, "download")
    return dest


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


def _read_member(z: NpzReader, name: str) -> np.ndarray:
    arr = z.read(name, object_loader=lambda f: _ArrayOnlyUnpickler(f).load())
    if not isinstance(arr, np.ndarray) or arr.ndim != 1:
        raise ValueError(f"{z.where}: {name} is not a 1-D array")
    return arr


def _flatten(arr: np.ndarray, name: str, where: Path):
    # each review a sequence of integer word ids: a str or bytes review is not read as its
    # characters, nor "12" as 12
    from .._encoding import flatten_sequences

    try:
        return flatten_sequences(arr, name)
    except (TypeError, ValueError, IndexError) as e:
        raise ValueError(f"{where}: {e}") from None


def _convert(where: Path, splits: dict) -> dict:
    """The raw (unshuffled, unshifted) data of an npz as flat arrays, safely."""
    keys = [k for pair in splits.values() for k in pair]
    try:
        with NpzReader(where, "load_data") as z:
            missing = [k for k in keys if k not in z]
            if missing:
                raise ValueError(f"{where}: missing {', '.join(missing)}")
            arrays = {k: _read_member(z, k) for k in keys}
    except (zipfile.BadZipFile, EOFError, OSError) as e:
        raise ValueError(f"{where}: not a readable npz file ({e})") from None
    except pickle.UnpicklingError as e:
        raise ValueError(f"{where}: refused: {e}") from None
    out = {}
    for split, (xk, yk) in splits.items():
        x, y = arrays[xk], arrays[yk]
        if y.dtype.kind not in "iub" or y.shape != x.shape:
            raise ValueError(f"{where}: {yk} must be integer labels, one per sequence")
        tokens, offsets = _flatten(x, xk, where)
        out[split] = (tokens, offsets, y.astype(np.int64))
    return out


def read_raw(where: Path, splits: dict = IMDB_SPLITS) -> dict:
    """{split: (tokens, offsets, labels)} of a file of token lists, from imdbfast's cache of
    it (made on the first read)."""
    st = where.stat()
    layout = "" if splits == IMDB_SPLITS else f"|{sorted(splits.items())}"
    key = hashlib.sha256(f"{where.resolve()}|{st.st_size}|{st.st_mtime_ns}|{_CACHE_VERSION}"
                         f"{layout}".encode())
    cache = cache_dir() / f"{where.stem}-{key.hexdigest()[:20]}"
    names = [f"{s}_{n}" for s in splits for n in ("tokens", "offsets", "labels")]
    if (cache / "complete").is_file():
        try:  # memory-mapped: the arrays are read as the kernels touch them
            a = {n: np.load(cache / f"{n}.npy", mmap_mode="r", allow_pickle=False) for n in names}
            return {s: (a[s + "_tokens"], a[s + "_offsets"], a[s + "_labels"]) for s in splits}
        except (OSError, ValueError):
            pass  # a damaged cache is rebuilt below
    raw = _convert(where, splits)
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
