"""imdbfast: the Deep Learning with Python IMDB model with Keras's API, on a compiled core."""

__version__ = "0.1.0"

try:
    from ._core import CSR, get_num_threads, set_num_threads  # noqa: E402
except ImportError as e:  # pragma: no cover - depends on how Python was started
    raise ImportError(
        "imdbfast's compiled core (imdbfast._core) is missing. Install the package with "
        "`pip install .`; if you are in the source checkout, `python -m ...` puts the source "
        "folder first on sys.path and hides the installed package: run `pytest` instead."
    ) from e
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
