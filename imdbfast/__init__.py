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


def _installed_elsewhere():
    """The installed imdbfast's folder, when this one is the source checkout without compiled
    modules (Python started in the repository root puts it first on sys.path)."""
    import importlib.machinery
    import os
    import sys

    here = os.path.realpath(os.path.dirname(__file__))
    root = os.path.dirname(here)
    others = [p for p in sys.path if os.path.realpath(p or os.getcwd()) != root]
    spec = importlib.machinery.PathFinder.find_spec(__name__, others)
    for folder in (spec.submodule_search_locations or []) if spec else []:
        if os.path.realpath(folder) != here and \
                importlib.machinery.PathFinder.find_spec("_core", [folder]) is not None:
            return folder
    return None


try:
    from . import _core  # noqa: E402
except ImportError as e:  # the source checkout, imported from the repository root
    _installed = _installed_elsewhere()
    if _installed is None:
        raise ImportError(
            "imdbfast's compiled core (imdbfast._core) is missing: install the package with "
            "`pip install .` (this folder is the source checkout, and no installed imdbfast was "
            "found on sys.path)") from e
    # Every submodule, compiled or Python, then comes from the installed package (one build).
    __path__[:] = [_installed]  # noqa: F821
    __file__ = _installed + "/__init__.py"
    del _installed

from ._core import CSR, get_num_threads, set_num_threads  # noqa: E402
from . import (callbacks, datasets, experiments, layers, losses, metrics,  # noqa: E402
               optimizers, regularizers, utils)
from .layers import Input  # noqa: E402
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
    "Input",
    "Sequences",
    "Sequential",
    "__version__",
    "build_info",
    "callbacks",
    "cuda_available",
    "datasets",
    "experiments",
    "fit",
    "get_num_threads",
    "layers",
    "load_model",
    "losses",
    "metrics",
    "multi_hot",
    "multi_hot_dense",
    "optimizers",
    "plot_history",
    "regularizers",
    "set_num_threads",
    "to_csr",
    "utils",
]
