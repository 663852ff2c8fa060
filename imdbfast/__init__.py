"""imdbfast: the Deep Learning with Python IMDB model with Keras's API, on a compiled core.

    import imdbfast
    from imdbfast import layers
    model = imdbfast.Sequential([layers.Dense(16, activation="relu"),
                                 layers.Dense(16, activation="relu"),
                                 layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="rmsprop", loss="binary_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=4, batch_size=512)

or, in one call, ``model = imdbfast.fit(x_train, y_train)``.
"""

__version__ = "0.1.0"

try:
    from ._core import CSR, get_num_threads, set_num_threads  # noqa: E402
except ImportError as e:  # pragma: no cover - depends on how Python was started
    raise ImportError(
        "imdbfast's compiled core (imdbfast._core) is missing. Install the package with "
        "`pip install .`; if you are in the source checkout, `python -m ...` puts the source "
        "folder first on sys.path and hides the installed package: run `pytest` instead."
    ) from e

from . import callbacks, datasets, layers, optimizers  # noqa: E402
from ._backend import cuda_available  # noqa: E402
from ._encoding import multi_hot, multi_hot_dense, to_csr  # noqa: E402
from .models import Sequential, fit, load_model  # noqa: E402
from .plots import plot_history  # noqa: E402
from .sequences import Sequences  # noqa: E402


def build_info() -> dict:
    """What this build of imdbfast can do: version, OpenMP, default threads, SIMD level, and the
    CUDA module (built or not, its architectures, the devices it sees)."""
    from . import _core
    from ._backend import cuda_info

    info = dict(_core.build_info())
    info.update(cuda_info())
    return info


__all__ = [
    "CSR",
    "Sequences",
    "Sequential",
    "__version__",
    "build_info",
    "callbacks",
    "cuda_available",
    "datasets",
    "fit",
    "get_num_threads",
    "layers",
    "load_model",
    "multi_hot",
    "multi_hot_dense",
    "optimizers",
    "plot_history",
    "set_num_threads",
    "to_csr",
]
