"""``load_data`` and ``get_word_index`` for the IMDB reviews, identical to Keras's results.

Where the file comes from, in order: an explicit path; ``$IMDBFAST_DATA`` (a folder); Keras's
cache (``$KERAS_HOME/datasets`` or ``~/.keras/datasets``), so Keras users need no second copy;
imdbfast's cache (``$IMDBFAST_CACHE`` or ``~/.cache/imdbfast``); else a download from Keras's
origin into imdbfast's cache, checked against Keras's published hash before use and written
atomically. Offline (or with ``IMDBFAST_OFFLINE=1``) a clear error says where to put the file. A
file found on disk is not checked against the download hash.

Safe: the npz's object arrays are unpickled by a restricted unpickler that can only rebuild
NumPy arrays (as Keras 3 does); anything else is refused before it runs. Fast: the first load
of a file converts it to flat arrays cached in imdbfast's cache folder (keyed by the file's path,
size and modification time); later loads read the flat arrays and apply Keras's algorithm
vectorised, in tens of milliseconds instead of seconds.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np
import numpy.typing as npt

from .. import _core
from .._checks import check_int
from .._files import open_regular
from ..sequences import Sequences
from ._sources import KNOWN_FILES, ORIGIN, download  # noqa: F401 (public here, as before)
from ._sources import locate as _locate, read_raw as _read_raw

def load_data(path: str = "imdb.npz", num_words: int | None = None, skip_top: int = 0,
              maxlen: int | None = None, seed: int = 113, start_char: int | None = 1,
              oov_char: int | None = 2, index_from: int = 3, **kwargs: Any
              ) -> tuple[tuple[Sequences, npt.NDArray[np.int64]],
                         tuple[Sequences, npt.NDArray[np.int64]]]:
    """Keras's ``imdb.load_data``: ((x_train, y_train), (x_test, y_test)).

    x are :class:`imdbfast.Sequences` (flat, list-like), y int64 arrays. Reviews are shuffled with
    ``np.random.RandomState(seed)`` (train, then test with the same generator), prefixed with
    ``start_char``, shifted by ``index_from``, dropped if ``len >= maxlen``, and words outside
    ``[skip_top, num_words)`` become ``oov_char`` (or are removed if it is None) — the start
    token included, and with num_words=None the largest index becomes OOV, exactly as Keras.
    Extra keyword arguments are ignored, as Keras 3 does.
    """
    check_sequence_args(num_words, skip_top, maxlen, seed, start_char, oov_char, index_from)
    raw = _read_raw(_locate(path))
    rng = np.random.RandomState(seed)
    parts = []
    for split in ("train", "test"):
        tokens, offsets, labels = raw[split]
        order = np.arange(offsets.size - 1)
        rng.shuffle(order)
        parts.append((tokens, offsets, labels, order, split))
    return tuple(keras_sequences(parts, num_words, skip_top, maxlen, start_char, oov_char,
                                 index_from, maxlen_error=True))


def check_sequence_args(num_words, skip_top, maxlen, seed, start_char, oov_char, index_from):
    """load_data's shared arguments (IMDB's and Reuters'), checked as Keras would need them."""
    for name, v in (("skip_top", skip_top), ("seed", seed), ("index_from", index_from)):
        check_int(v, name, 0)
    for name, v in (("num_words", num_words), ("maxlen", maxlen), ("start_char", start_char),
                    ("oov_char", oov_char)):
        if v is not None:
            check_int(v, name, 0)
    if num_words and oov_char is not None and oov_char >= num_words:
        raise ValueError(f"num_words: {num_words} cannot hold the reserved oov_char={oov_char}")


def keras_sequences(parts, num_words, skip_top, maxlen, start_char, oov_char, index_from,
                    maxlen_error: bool) -> list:
    """Keras's encoding of shuffled token lists, vectorised: parts are (tokens, offsets,
    labels, order, name); each becomes (Sequences, labels) of the rows in ``order``, prefixed
    with start_char, shifted by index_from, kept if shorter than maxlen, with ids outside
    [skip_top, num_words) made oov_char (or dropped) — num_words=None: the largest id over all
    parts, which then becomes OOV, as Keras."""
    out = []
    for tokens, offsets, labels, order, name in parts:
        # Keras: [start_char] + [w + index_from for w in x], in one pass.
        t, o = _core.ragged_take(tokens, offsets, order, -1 if start_char is None else start_char,
                                 index_from)
        labels = labels[order]
        if maxlen:
            keep = np.flatnonzero(np.diff(o) < maxlen)
            if keep.size == 0 and maxlen_error:
                raise ValueError(f"maxlen: after keeping sequences shorter than maxlen={maxlen}, "
                                 f"no {name} sequence is left. Increase maxlen.")
            s = Sequences(t, o).take(keep)
            t, o, labels = s.tokens, s.offsets, labels[keep]
        out.append((t, o, labels))
    if not num_words:
        num_words = max(int(p[0].max()) if p[0].size else 0 for p in out)
    encoded = []
    for tokens, offsets, labels in out:  # tokens are fresh copies: filter them in place
        bad = tokens >= num_words
        if skip_top:
            bad |= tokens < skip_top
        if oov_char is not None:
            np.putmask(tokens, bad, np.int32(oov_char))
        else:
            kept = np.concatenate(([0], np.cumsum(~bad, dtype=np.int64)))
            tokens, offsets = tokens[~bad], kept[offsets]
        del bad
        encoding = dict(num_words=num_words, skip_top=skip_top, start_char=start_char,
                        oov_char=oov_char, index_from=index_from)
        encoded.append((Sequences(tokens, offsets, num_words, encoding), labels))
    return encoded


def get_word_index(path: str = "imdb_word_index.json") -> dict[str, int]:
    """Keras's word index: word -> frequency rank (1 = most frequent), not shifted."""
    where = _locate(path)
    with open_regular(where, "get_word_index") as f:
        data = f.read()
    try:
        index = json.loads(data.decode("utf-8"))
    except ValueError as e:  # (UnicodeDecodeError is one)
        raise ValueError(f"get_word_index: {str(where)!r} is not valid JSON ({e})") from None
    if not isinstance(index, dict) or not all(isinstance(k, str) and type(v) is int and v >= 0
                                              for k, v in index.items()):
        raise ValueError(f"get_word_index: {str(where)!r} is not a word index (a JSON object of "
                         "word -> non-negative int)")
    return index


def reverse_word_index(word_index: dict[str, int] | None = None) -> dict[int, str]:
    """rank -> word, the dictionary the book builds to decode reviews."""
    return {v: k for k, v in (word_index or get_word_index()).items()}


def decode_review(sequence: Any, word_index: dict[str, int] | None = None,
                  index_from: int = 3) -> str:
    """The book's decoding: ids below ``index_from`` (padding, start, OOV) and unknown ids
    become '?'."""
    reverse = reverse_word_index(word_index)
    return " ".join(reverse.get(int(i) - index_from, "?") for i in sequence)


# ---- raw text -----------------------------------------------------------------------------

_TEXT_PER_CALL = 4 << 20  # characters per compiled encode call (it reads ~75 MB/s on 2 cores)


class WordIndex(dict):
    """A read-only word -> rank dictionary (a model's word index): an edit raises instead of
    leaving encodings made from it stale. ``dict(index)`` is an editable copy."""

    def _read_only(self, *args: Any, **kwargs: Any):
        raise TypeError("this word index is read-only (a model's): edit a copy, dict(index), and "
                        "assign it")

    __setitem__ = __delitem__ = __ior__ = update = pop = popitem = clear = setdefault = _read_only

    def copy(self) -> dict:
        return dict(self)

    def __reduce__(self):
        return (WordIndex, (dict(self),))


# The compiled vocabulary of the last word index used, so that encoding a few texts at a time
# costs no rebuild: for the IMDB file keyed by its path, size and mtime; for a WordIndex by
# identity (it cannot change); for any other dict by identity and equality with a snapshot (a
# dict edited in place is rebuilt, not served stale).
_file_vocab: list = [None, None]  # [file key, Vocabulary]
_dict_vocab: list = [None, None, None]  # [dict, snapshot or None, Vocabulary]


def _vocabulary(word_index: dict | None):
    if word_index is None:
        where = _locate("imdb_word_index.json")
        st = where.stat()
        key = (str(where.resolve()), st.st_size, st.st_mtime_ns)
        if _file_vocab[0] != key:
            _file_vocab[:] = [key, _core.Vocabulary(get_word_index(str(where)))]
        return _file_vocab[1]
    if not isinstance(word_index, dict):
        raise TypeError(f"word_index: expected a dict of word -> rank, got {type(word_index).__name__}")
    index, snapshot, vocab = _dict_vocab
    frozen = type(word_index) is WordIndex
    if index is word_index and (frozen or snapshot == word_index):
        return vocab
    vocab = _core.Vocabulary(word_index)
    _dict_vocab[:] = [word_index, None if frozen else dict(word_index), vocab]
    return vocab


def texts_to_sequences(texts: Any, word_index: dict[str, int] | None = None,
                       num_words: int | None = None,
                       skip_top: int = 0, start_char: int | None = 1, oov_char: int | None = 2,
                       index_from: int = 3, *, threads: int = 0) -> Sequences:
    """Raw review strings -> word ids exactly as the IMDB data was built and load_data encodes
    it (compiled; all cores): ASCII letters lower-cased, ASCII punctuation except the apostrophe
    and ASCII whitespace separate words, words missing from the index are dropped; then
    ``[start_char] + (rank + index_from)``, ids outside ``[skip_top, num_words)`` -> oov_char
    (dropped if None). ``num_words=None`` keeps every id."""
    if isinstance(texts, (str, bytes)):
        raise TypeError("texts: expected a list of strings, got a single string (wrap it in a list)")
    for name, v in (("skip_top", skip_top), ("index_from", index_from)):
        check_int(v, name, 0)
    for name, v in (("num_words", num_words), ("start_char", start_char), ("oov_char", oov_char)):
        if v is not None:
            check_int(v, name, 0)
    from .._encoding import check_threads

    threads = check_threads(threads)
    vocab = _vocabulary(word_index)
    texts = list(texts)
    args = (num_words or 0, skip_top, -1 if start_char is None else start_char,
            -1 if oov_char is None else oov_char, index_from, threads)
    # In calls of about _TEXT_PER_CALL characters (~50 ms): Ctrl-C is seen in between.
    parts, i = [], 0
    while i < len(texts) or not parts:
        j, size = i, 0
        while j < len(texts) and (j == i or size < _TEXT_PER_CALL):
            size += len(texts[j]) if isinstance(texts[j], str) else 0
            j += 1
        parts.append(vocab.encode(texts[i:j], *args))
        i = j
    if len(parts) == 1:
        tokens, offsets = parts[0]
    else:
        tokens = np.concatenate([t for t, _ in parts])
        shift = np.cumsum([0] + [t.size for t, _ in parts[:-1]])
        offsets = np.concatenate([[0]] + [o[1:] + k for (_, o), k in zip(parts, shift)])
    encoding = dict(num_words=num_words, skip_top=skip_top, start_char=start_char,
                    oov_char=oov_char, index_from=index_from)
    return Sequences(tokens, offsets, num_words, encoding)


def load_aclimdb(path: str | os.PathLike, split: str = "train",
                 word_index: dict[str, int] | None = None, **encoding: Any
                 ) -> tuple[Sequences, npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The Stanford Large Movie Review Dataset (``aclImdb/{train,test}/{pos,neg}/<id>_<rating>.txt``)
    as ``(x, labels, ratings)``: x the encoded reviews (:func:`texts_to_sequences` with
    ``encoding``'s arguments), labels 1 for pos and 0 for neg, ratings 1-10. Positive reviews come
    first, then negative, each in file-name order: the order of the rows in imdb.npz.

    ``path`` is the ``aclImdb`` folder, a folder holding it, or the ``aclImdb_v1.tar.gz``
    archive itself (read without unpacking)."""
    texts, labels, ratings = read_aclimdb(path, split)
    return texts_to_sequences(texts, word_index, **encoding), labels, ratings


def read_aclimdb(path: str | os.PathLike, split: str = "train"
                 ) -> tuple[list[str], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The raw reviews of :func:`load_aclimdb`, in the same order: ``(texts, labels, ratings)``,
    texts a list of str (for TextVectorization, scikit-learn's vectorizers, or your own
    tokenizer). :func:`read_aclimdb_splits` reads train and test in one pass."""
    if split not in ("train", "test"):
        raise ValueError(f"split: expected 'train' or 'test', got {split!r}")
    return _read_acl(path, (split,))[split]


def read_aclimdb_splits(path: str | os.PathLike) -> tuple[tuple[list[str], npt.NDArray[np.int64],
                                                                npt.NDArray[np.int64]], ...]:
    """``(train, test)``, each ``(texts, labels, ratings)`` as :func:`read_aclimdb` gives it,
    from one pass over the folder or archive (the archive is decompressed once, ~0.5 s)."""
    both = _read_acl(path, ("train", "test"))
    return both["train"], both["test"]


def _read_acl(path: str | os.PathLike, splits: tuple[str, ...]) -> dict:
    p = Path(os.fspath(path)).expanduser()
    if p.exists() and not p.is_dir():
        open_regular(p, "load_aclimdb").close()  # refuses a FIFO or device
    if p.is_file():
        found = _read_acl_archive(p, splits)
    elif p.is_dir():
        found = {}
        for split in splits:
            root = p if (p / split).is_dir() else p / "aclImdb"
            if not (root / split / "pos").is_dir() or not (root / split / "neg").is_dir():
                raise FileNotFoundError(f"{p}: no aclImdb/{split}/pos and /neg folders here")
            found[split] = {}
            for sub in ("pos", "neg"):
                folder = root / split / sub
                try:
                    names = sorted(n for n in os.listdir(folder) if n.endswith(".txt"))
                except OSError as e:
                    raise OSError(f"{folder}: cannot be read ({e.strerror})") from None
                found[split][sub] = []
                for name in names:
                    with open_regular(folder / name, "load_aclimdb") as f:
                        found[split][sub].append((name, _decode(f.read(), folder / name)))
    else:
        raise FileNotFoundError(f"{p}: no such file or folder")
    out = {}
    for split in splits:
        texts, labels, ratings = [], [], []
        for label, sub in ((1, "pos"), (0, "neg")):
            for name, text in sorted(found[split][sub]):
                ratings.append(_rating(name, p))
                labels.append(label)
                texts.append(text)
        out[split] = (texts, np.array(labels, dtype=np.int64), np.array(ratings, dtype=np.int64))
    return out


def _rating(name: str, where: Any) -> int:
    try:
        rating = int(name.rsplit(".", 1)[0].split("_")[1])
    except (IndexError, ValueError):
        raise ValueError(f"{where}: file {name!r} is not named <id>_<rating>.txt") from None
    return rating


def _decode(data: bytes, where: Any) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{where}: not UTF-8 text ({e})") from None


def _read_acl_archive(p: Path, splits: tuple[str, ...]) -> dict:
    """{split: {"pos": [(name, text)], "neg": [...]}} from the archive, read once. A gzip'd
    tar is streamed (decompressed a megabyte at a time) and its ustar/GNU headers walked
    directly, keeping only the wanted reviews (not ``unsup``): 10x tarfile's speed, memory for
    the kept texts only. Any other compression, or a member kind this walk does not know,
    goes through tarfile."""
    import tarfile
    import zlib

    found: dict = {s: {"pos": [], "neg": []} for s in splits}

    def wanted(name: str) -> bool:
        parts = name.split("/")
        return len(parts) >= 4 and parts[-3] in found and parts[-2] in ("pos", "neg") and \
            parts[-1].endswith(".txt")

    def keep(name: str, data: bytes) -> None:
        parts = name.split("/")
        found[parts[-3]][parts[-2]].append((parts[-1], _decode(data, f"{p}:{name}")))

    try:
        with open_regular(p, "load_aclimdb") as f:
            gzipped = f.read(2) == b"\x1f\x8b"
            f.seek(0)
            walked = gzipped and _walk_tar(_GzipStream(f), wanted, keep)
        if not walked:
            found = {s: {"pos": [], "neg": []} for s in splits}
            with tarfile.open(p, "r:*") as tar:
                for member in tar:
                    if member.isfile() and wanted(member.name):
                        keep(member.name, tar.extractfile(member).read())
    except (OSError, EOFError, zlib.error, tarfile.TarError, _BadTar) as e:
        raise ValueError(f"{p}: not a readable aclImdb archive ({e})") from None
    for split in splits:
        if not found[split]["pos"] or not found[split]["neg"]:
            raise ValueError(f"{p}: no {split}/pos and {split}/neg reviews in this archive")
    return found


class _BadTar(Exception):
    pass


class _GzipStream:
    """The decompressed bytes of a gzip file (one member or several), read a megabyte at a time:
    take(n) returns the next n bytes, skip(n) passes them."""

    def __init__(self, f: Any):
        import zlib

        self._zlib, self.f = zlib, f
        self.d = zlib.decompressobj(31)
        self.buf, self.pos = bytearray(), 0
        self.trailer = False  # bytes after the last member that are not gzip (padding): ignored

    def _more(self) -> bool:
        while True:
            raw = b"" if self.trailer else self.f.read(1 << 20)
            if not raw:
                if not self.d.eof and not self.trailer:
                    raise _BadTar("the gzip stream ends early")
                return False
            out = b""
            while raw:
                if self.d.eof:  # another gzip member follows, or padding (as gzip readers allow)
                    if raw[:2] != b"\x1f\x8b":
                        self.trailer = True
                        break
                    self.d = self._zlib.decompressobj(31)
                out += self.d.decompress(raw)
                raw = self.d.unused_data if self.d.eof else b""
            if out:
                if self.pos > (1 << 22):
                    del self.buf[:self.pos]
                    self.pos = 0
                self.buf += out
                return True

    def take(self, n: int) -> bytes | None:
        """The next n bytes; None at the end of the stream (nothing left at all)."""
        while len(self.buf) - self.pos < n:
            if not self._more():
                if len(self.buf) == self.pos:
                    return None
                raise _BadTar("a member runs past the end of the archive")
        out = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        return out

    def skip(self, n: int) -> None:
        while n > 0:
            avail = len(self.buf) - self.pos
            if avail == 0:
                if not self._more():
                    raise _BadTar("a member runs past the end of the archive")
                continue
            k = min(avail, n)
            self.pos += k
            n -= k


def _walk_tar(stream: _GzipStream, wanted: Callable[[str], bool],
              keep: Callable[[str, bytes], None]) -> bool:
    """Calls keep(name, data) for each wanted regular file of the tar stream; False (nothing
    more should be trusted) at a header it does not handle, so the caller falls back to tarfile."""
    long_name = None
    while True:
        h = stream.take(512)
        if h is None or h.count(0) == 512:
            return True  # the end-of-archive block (or the end of the stream, as tarfile takes it)
        size_field = h[124:136].split(b"\0", 1)[0].strip()
        if not size_field or not all(48 <= c <= 55 for c in size_field):
            return False  # base-256 sizes, or not a tar header
        size, kind = int(size_field, 8), h[156:157]
        padded = (size + 511) // 512 * 512
        name = h[:100].split(b"\0", 1)[0]
        if h[257:262] == b"ustar" and h[345:500].strip(b"\0"):
            name = h[345:500].split(b"\0", 1)[0] + b"/" + name
        if kind == b"L":  # GNU long name: the next header's
            body = stream.take(padded)
            if body is None:
                raise _BadTar("a long name runs past the end of the archive")
            long_name = body[:size].split(b"\0", 1)[0]
        elif kind in (b"0", b"\0"):
            full = (long_name or name).decode("utf-8", "replace")
            long_name = None
            if wanted(full):
                body = stream.take(padded)
                if body is None:
                    raise _BadTar("a member runs past the end of the archive")
                keep(full, body[:size])
            else:
                stream.skip(padded)
        elif kind in (b"5", b"1", b"2", b"g"):  # folders, links, global pax: nothing to read
            stream.skip(padded)
            long_name = None
        else:
            return False  # pax per-file headers, sparse files...: tarfile knows them


# ---- files --------------------------------------------------------------------------------
