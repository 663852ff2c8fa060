"""Keras's Boston housing prices (§4.3 of the book): ``load_data`` with Keras's algorithm,
read without pickles, found as the other datasets' files are (_sources.py)."""

from __future__ import annotations

import zipfile

import numpy as np
import numpy.typing as npt

from .._checks import check_float, check_int
from .._files import NpzReader
from ._sources import locate as _locate


def load_data(path: str = "boston_housing.npz", test_split: float = 0.2, seed: int = 113
              ) -> tuple[tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]],
                         tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]]:
    """Keras's ``boston_housing.load_data``: ((x_train, y_train), (x_test, y_test)): 13
    features per house and its median price in k$, shuffled with
    ``np.random.RandomState(seed)``, the first ``int(n * (1 - test_split))`` for training."""
    test_split = check_float("test_split", test_split)
    if not 0 <= test_split < 1:
        raise ValueError(f"Invalid `test_split` argument: {test_split}. It must be between 0 "
                         "and 1 (exclusive of 1).")
    check_int(seed, "seed", 0)
    where = _locate(path)
    try:
        with NpzReader(where, "load_data") as z:
            for k in ("x", "y"):
                if k not in z:
                    raise ValueError(f"{where}: missing {k}")
            x, y = z.read("x"), z.read("y")  # (no object members: refused by the reader)
    except (zipfile.BadZipFile, EOFError, OSError) as e:
        raise ValueError(f"{where}: not a readable npz file ({e})") from None
    if x.ndim != 2 or y.ndim != 1 or len(x) != len(y) or x.dtype.kind not in "iuf" or \
            y.dtype.kind not in "iuf":
        raise ValueError(f"{where}: expected numeric x (n, features) and y (n,)")
    indices = np.arange(len(x))
    np.random.RandomState(seed).shuffle(indices)
    x, y = x[indices], y[indices]
    idx = int(len(x) * (1 - test_split))
    return (np.array(x[:idx]), np.array(y[:idx])), (np.array(x[idx:]), np.array(y[idx:]))
