"""Files imdbfast reads and writes, defended: only regular files are opened (a FIFO would block
forever, a device could be endless), an .npy member's size is checked against its header before
anything is allocated, and a file is written by renaming a temporary file into place, whose
leftovers from a killed writer the next write removes."""

from __future__ import annotations

import errno
import os
import socket
import stat
import tempfile
import threading
import zipfile
from typing import Any, BinaryIO

import numpy as np

# Deflate expands by at most 1032:1, so a member cannot hold more than this many bytes per
# compressed byte; a header that claims more is a lie, refused before its array is allocated.
_DEFLATE_MAX_RATIO = 1032
_KINDS = {stat.S_IFIFO: "a FIFO", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
          stat.S_IFSOCK: "a socket", stat.S_IFDIR: "a folder"}


def _kind(mode: int) -> str:
    return _KINDS.get(stat.S_IFMT(mode), "not a regular file")


def open_regular(path: str | os.PathLike, what: str) -> BinaryIO:
    """``path`` opened for binary reading, if it is a regular file (checked on the open file, so
    nothing can be swapped in between); otherwise ValueError naming ``what``."""
    p = os.fspath(path)
    try:  # O_NONBLOCK: opening a FIFO must not wait for a writer
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except IsADirectoryError:
        raise ValueError(f"{what}: {p!r} is a folder, not a file") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise ValueError(f"{what}: {p!r} is {_kind(mode)}, not a regular file")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def refuse_special(path: str | os.PathLike, what: str) -> None:
    """ValueError if ``path`` exists and is not a regular file: writing there would replace a
    FIFO or a device with a file (or fail on a folder)."""
    p = os.fspath(path)
    try:
        mode = os.stat(p).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISREG(mode):
        raise ValueError(f"{what}: {p!r} is {_kind(mode)}, not a regular file: refusing to "
                         "replace it")


class NpzReader:
    """The members of an .npz, each read only after its header's claim was checked against what
    the archive can hold. Pickled (object) members are refused unless ``object_loader`` is
    given (a callable reading a pickle from the member's stream)."""

    def __init__(self, path: Any, what: str):
        """``path``: a file's path, or a binary file object (read in place)."""
        self.what = what
        if hasattr(path, "read"):
            self.where, self._file = getattr(path, "name", "<bytes>"), path
        else:
            self.where, self._file = os.fspath(path), open_regular(path, what)
        try:
            self._zip = zipfile.ZipFile(self._file)
        except BaseException:
            self._file.close()
            raise

    def __enter__(self) -> "NpzReader":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self._zip.close()
        self._file.close()

    @property
    def files(self) -> list:
        return [n[:-4] for n in self._zip.namelist() if n.endswith(".npy")]

    def __contains__(self, name: str) -> bool:
        return name + ".npy" in self._zip.namelist()

    def _bad(self, name: str, problem: str) -> ValueError:
        return ValueError(f"{self.what}: {self.where!r}: member {name!r} {problem}")

    def read(self, name: str, object_loader: Any = None) -> Any:
        try:
            info = self._zip.getinfo(name + ".npy")
        except KeyError:
            raise self._bad(name, "is missing") from None
        stored = info.compress_type == zipfile.ZIP_STORED
        if info.file_size > (info.compress_size if stored else
                             _DEFLATE_MAX_RATIO * info.compress_size + 1024):
            raise self._bad(name, f"claims {info.file_size:,} bytes from {info.compress_size:,}: "
                                  "the archive is damaged")
        with self._zip.open(info) as f:
            try:
                version = np.lib.format.read_magic(f)
                header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                          else np.lib.format.read_array_header_2_0)
                shape, fortran, dtype = header(f)
            except ValueError as e:
                raise self._bad(name, f"has a broken .npy header ({e})") from None
            if dtype.hasobject:
                if object_loader is None:
                    raise self._bad(name, "holds Python objects (pickles are not read)")
                return object_loader(f)
            count = 1
            for n in shape:
                count *= int(n)
            nbytes = count * dtype.itemsize
            if nbytes > info.file_size:
                raise self._bad(name, f"claims shape {shape} of {dtype} ({nbytes:,} bytes) in a "
                                      f"member of {info.file_size:,} bytes")
            arr = np.empty(count, dtype=dtype)
            view, done = memoryview(arr.view(np.uint8) if nbytes else bytearray()), 0
            while done < nbytes:
                n = f.readinto(view[done:])
                if not n:
                    raise self._bad(name, "is truncated")
                done += n
            if f.read(1):  # reading to the end also makes zipfile check the member's CRC
                raise self._bad(name, "holds more bytes than its header says")
        return arr.reshape(shape, order="F" if fortran else "C")


# ---- writing ----------------------------------------------------------------------------------

_TMP_TAG = ".imdbfast-tmp"


def _umask() -> int:
    """The process's umask (read by setting it: there is no getter; a lock keeps threads
    from seeing the temporary value)."""
    with _UMASK_LOCK:
        m = os.umask(0o022)
        os.umask(m)
    return m


_UMASK_LOCK = threading.Lock()


def _tmp_prefix(path: str) -> str:
    return f".{os.path.basename(path)}."


def _host() -> str:
    return socket.gethostname().replace(".", "_")


def _remove_leftovers(path: str) -> None:
    """Temporary files of earlier writes of ``path`` whose writer (this host, that pid) is gone."""
    folder = os.path.dirname(os.path.abspath(path))
    prefix, host = _tmp_prefix(path), _host()
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        if not (name.startswith(prefix) and name.endswith(_TMP_TAG)):
            continue
        parts = name[len(prefix):-len(_TMP_TAG)].split(".")
        if len(parts) < 3 or parts[0] != host or not parts[1].isdigit():
            continue
        pid = int(parts[1])
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
            continue  # still running: its write may be under way
        except ProcessLookupError:
            pass
        except PermissionError:
            continue  # alive, someone else's
        try:
            os.unlink(os.path.join(folder, name))
        except OSError:
            pass


def write_atomically(path: str | os.PathLike, write: Any, what: str) -> None:
    """Call ``write(binary file)`` on a temporary file beside ``path``, then rename it into
    place: readers see the old file or the whole new one. Refuses to replace anything but a
    regular file; removes temporary files that killed writers left. As a plain open() would, a
    symlink's target is written (the link stays) and the file's permissions are the existing
    file's, or the umask's for a new one (mkstemp's own are 0600)."""
    p = os.fspath(path)
    refuse_special(p, what)
    if os.path.islink(p):
        p = os.path.realpath(p)
    try:
        mode = stat.S_IMODE(os.stat(p).st_mode)
    except FileNotFoundError:
        mode = 0o666 & ~_umask()
    folder = os.path.dirname(os.path.abspath(p))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{what}: {p!r}: the folder {folder!r} does not exist")
    _remove_leftovers(p)
    fd, tmp = tempfile.mkstemp(prefix=f"{_tmp_prefix(p)}{_host()}.{os.getpid()}.",
                               suffix=_TMP_TAG, dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            os.fchmod(f.fileno(), mode)
        os.replace(tmp, p)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError as e:
            if e.errno != errno.ENOENT:
                raise
        raise
