"""imdbfast: the Deep Learning with Python IMDB model with Keras's API, on a compiled core."""

__version__ = "0.1.0"

from ._core import CSR, get_num_threads, set_num_threads  # noqa: E402
from ._encoding import multi_hot, multi_hot_dense, to_csr  # noqa: E402


def build_info() -> dict:
    """What this build of imdbfast can do: version, OpenMP, CUDA, default threads, SIMD level."""
    from . import _core

    return dict(_core.build_info())


__all__ = [
    "CSR",
    "__version__",
    "build_info",
    "get_num_threads",
    "multi_hot",
    "multi_hot_dense",
    "set_num_threads",
    "to_csr",
]
