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
    assert isinstance(info["cuda"], bool) and isinstance(info["cuda_devices"], list)
    assert info["threads"] >= 1


def test_cuda_module_imports_softly_and_reports_devices():
    import re

    from imdbfast import _backend

    info = imdbfast.build_info()
    devices = []
    if not info["cuda"]:
        assert _backend._cuda is None and "without the CUDA module" in info["cuda_reason"]
    else:  # built with nvcc: importing and asking works with or without a GPU or driver
        devices, reason = _backend._cuda.devices()
        assert isinstance(devices, list) and (devices or reason)
        assert re.fullmatch(r"\d+(-real|-virtual)?( \d+(-real|-virtual)?)*",
                            info["cuda_architectures"]), info["cuda_architectures"]
        assert info["cuda_runtime"] > 0
        if info["cuda_driver"] == 0:  # no driver at all: said plainly
            assert reason == "no NVIDIA driver found"
        for d in devices:
            assert d["memory_bytes"] > 0 and len(d["compute_capability"]) == 2
    assert imdbfast.cuda_available() is bool(devices)
    if not devices:
        with pytest.raises(RuntimeError, match="device='cuda'.*use device='cpu'"):
            imdbfast.Sequential(device="cuda")
    with pytest.raises(RuntimeError, match="cuda:99"):
        imdbfast.Sequential(device="cuda:99")


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


@pytest.mark.parametrize("command", [
    ["-c", "import imdbfast, sys; imdbfast.Sequential; print(imdbfast._core.__file__)"],
    ["-m", "pytest", "-q", "--collect-only", "-p", "no:cacheprovider", "tests/test_build.py"],
])
def test_python_started_in_the_repository_root_uses_the_installed_package(command):
    # `python -c` and `python -m` put the current folder first on sys.path: from the root that
    # is the source checkout, which has no compiled modules and hands over to the installed one
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    if not (root / "imdbfast" / "__init__.py").is_file():
        pytest.skip("not run from a source checkout")
    r = subprocess.run([sys.executable] + command, cwd=root, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
