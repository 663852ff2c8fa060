"""Packaging: version single-sourced, build report, thread control."""

import re
from pathlib import Path

import pytest

import imdbfast
from imdbfast import _core


def test_version_single_sourced():
    text = (Path(imdbfast.__file__).parent / "__init__.py").read_text()
    assert re.search(r'^__version__ = "([^"]+)"', text, re.M).group(1) == imdbfast.__version__
    assert _core.__version__ == imdbfast.__version__  # compiled from the same source by CMake


def test_build_info():
    info = imdbfast.build_info()
    assert info["version"] == imdbfast.__version__
    assert isinstance(info["openmp"], bool)
    assert info["cuda"] is False  # the CUDA backend is a separate issue
    assert info["threads"] >= 1


def test_thread_count_is_settable_and_restorable():
    default = imdbfast.get_num_threads()
    try:
        imdbfast.set_num_threads(1)
        assert imdbfast.get_num_threads() == 1
        assert imdbfast.build_info()["threads"] == 1
    finally:
        imdbfast.set_num_threads(0)
    assert imdbfast.get_num_threads() == default
    with pytest.raises(ValueError, match="n"):
        imdbfast.set_num_threads(-1)
