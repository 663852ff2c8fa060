"""Files from outside: only regular files are read or replaced, an archive's claims are checked
before memory is allocated, damaged members are named, and killed writers leave nothing behind."""

import io
import json
import os
import socket
import subprocess
import sys
import threading
import zipfile

import numpy as np
import pytest

import imdbfast
from imdbfast import layers
from imdbfast._files import NpzReader
from imdbfast.datasets import imdb

needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs os.mkfifo")


def finishes(fn, seconds=20):
    """fn's exception (or None), or a failure if it blocks: a FIFO opened for reading waits
    forever for a writer."""
    out = {}

    def run():
        try:
            fn()
        except BaseException as e:  # noqa: BLE001 - handed to the test
            out["error"] = e
        out["done"] = True

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    assert out.get("done"), f"{fn} still blocked after {seconds} s"
    return out.get("error")


def small_model(seed=0):
    m = imdbfast.Sequential([layers.Input((20,)), layers.Dense(4, activation="relu"),
                             layers.Dense(1, activation="sigmoid")], seed=seed)
    m.compile("rmsprop", "binary_crossentropy", ["accuracy"])
    m.build()
    return m


# ---- only regular files -------------------------------------------------------------------------

@needs_fifo
@pytest.mark.parametrize("reader", [
    lambda p: imdbfast.load_model(p),
    lambda p: imdb.load_data(path=str(p)),
    lambda p: imdb.get_word_index(str(p)),
    lambda p: imdb.load_aclimdb(p),
])
def test_a_fifo_is_refused_not_waited_on(tmp_path, reader):
    fifo = tmp_path / "model.npz"
    os.mkfifo(fifo)
    e = finishes(lambda: reader(fifo))
    assert isinstance(e, ValueError) and "FIFO" in str(e), e


@needs_fifo
def test_a_fifo_named_like_a_review_is_refused(tmp_path):
    for sub in ("pos", "neg"):
        (tmp_path / "train" / sub).mkdir(parents=True)
    (tmp_path / "train" / "neg" / "0_1.txt").write_text("bad")
    os.mkfifo(tmp_path / "train" / "pos" / "0_9.txt")
    e = finishes(lambda: imdb.load_aclimdb(tmp_path, word_index={"bad": 1}))
    assert isinstance(e, ValueError) and "0_9.txt" in str(e) and "FIFO" in str(e), e


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_a_device_is_refused():
    # /dev/zero never ends: reading it as a model would fill memory
    e = finishes(lambda: imdbfast.load_model("/dev/zero"))
    assert isinstance(e, ValueError) and "character device" in str(e), e


@needs_fifo
def test_save_does_not_replace_a_fifo_or_a_folder(tmp_path):
    m = small_model()
    fifo = tmp_path / "m.npz"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="FIFO, not a regular file: refusing to replace it"):
        m.save(fifo)
    assert fifo.is_fifo()
    (tmp_path / "d.npz").mkdir()
    with pytest.raises(ValueError, match="folder"):
        m.save(tmp_path / "d.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.npz", "m.npz"]  # no leftovers


# ---- claims checked before allocating ---------------------------------------------------------

def npy_claiming(shape, dtype="<f4", payload=b"\0" * 64):
    """An .npy member whose header claims `shape` but holds only `payload`."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False,
                                               "shape": shape})
    return buf.getvalue() + payload


def write_npz(path, members, compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression) as z:
        for name, data in members.items():
            z.writestr(name + ".npy", data)


@pytest.mark.parametrize("shape", [(2**40,), (2**20, 2**20), (2**62, 4)])
def test_a_member_claiming_a_huge_shape_is_refused_from_its_header(tmp_path, shape):
    path = tmp_path / "m.npz"
    small_model().save(path)
    with zipfile.ZipFile(path) as z:
        members = {n[:-4]: z.read(n) for n in z.namelist()}
    members["weight_0"] = npy_claiming(shape)
    write_npz(path, members)
    with pytest.raises(ValueError, match=r"member 'weight_0' claims shape"):
        imdbfast.load_model(path)


def test_an_archive_whose_sizes_cannot_be_true_is_refused(tmp_path):
    # the zip directory says 1 GB uncompressed from a few compressed bytes: more than deflate
    # can expand
    path = tmp_path / "x.npz"
    write_npz(path, {"a": npy_claiming((4,), payload=b"\0" * 16)}, zipfile.ZIP_DEFLATED)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("a.npy")
    # patch the uncompressed size in the central directory entry (offset 24 from its signature)
    cd = data.rfind(b"PK\x01\x02")
    data[cd + 24:cd + 28] = (1 << 30).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    assert info.compress_size < 1000
    with NpzReader(path, "test") as f, pytest.raises(ValueError, match="the archive is damaged"):
        f.read("a")


def test_the_reader_returns_what_numpy_wrote(tmp_path):
    arrays = {"f": np.arange(12, dtype=np.float32).reshape(3, 4), "i": np.arange(5),
              "s": np.array("text"), "e": np.zeros((0, 3)), "fortran": np.asfortranarray(
                  np.arange(6.0).reshape(2, 3))}
    for compress in (np.savez, np.savez_compressed):
        compress(tmp_path / "a.npz", **arrays)
        with NpzReader(tmp_path / "a.npz", "test") as f:
            assert sorted(f.files) == sorted(arrays)
            for k, a in arrays.items():
                got = f.read(k)
                assert got.dtype == a.dtype and got.shape == a.shape and np.array_equal(got, a)
                assert got.flags.writeable
            with pytest.raises(ValueError, match="member 'nope' is missing"):
                f.read("nope")


def test_a_truncated_member_is_refused(tmp_path):
    write_npz(tmp_path / "t.npz", {"a": npy_claiming((100,), payload=b"\0" * 40)})
    with NpzReader(tmp_path / "t.npz", "test") as f, pytest.raises(ValueError, match="claims"):
        f.read("a")  # 400 bytes claimed, the member holds fewer


def test_the_imdb_loader_checks_claims_too(tmp_path):
    members = {k: npy_claiming((2**40,), "<i8") for k in ("x_train", "y_train", "x_test", "y_test")}
    write_npz(tmp_path / "imdb.npz", members)
    with pytest.raises(ValueError, match="claims shape"):
        imdb.load_data(path=str(tmp_path / "imdb.npz"))


# ---- damaged members are named ------------------------------------------------------------------

def rewrite(path, edit):
    """Load a saved model's members, edit them, write them back with a valid checksum."""
    from imdbfast._persist import checksum as _checksum

    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files if k != "checksum"}
    edit(arrays)
    arrays["checksum"] = np.array(_checksum(arrays))
    np.savez(path, **arrays)


@pytest.mark.parametrize("edit, member", [
    (lambda a: a.update(config=np.array("{not json")), "config"),
    (lambda a: a.update(config=np.array("[1, 2]")), "config"),
    (lambda a: a.update(config=np.array(json.dumps(
        {**json.loads(str(a["config"])), "layers": [{"units": "many"}]}))), "config"),
    (lambda a: a.update(config=np.array(json.dumps(  # built, but no input dimension
        {**{k: v for k, v in json.loads(str(a["config"])).items() if k != "build_input_shape"},
         "layers": [l for l in json.loads(str(a["config"]))["layers"]
                    if l["class_name"] != "InputLayer"]}))),
     "config"),
    (lambda a: a.update(word_index=np.frombuffer(b"\xff{", np.uint8)), "word_index"),
    (lambda a: a.update(word_index=np.frombuffer(b'{"a": "x"}', np.uint8)), "word_index"),
    (lambda a: a.pop("slot_1_0"), "slot_1_0"),
    (lambda a: a.update(weight_0=np.zeros((3, 3), np.float32)), "weight_0"),
])
def test_a_damaged_model_file_names_the_file_and_member(tmp_path, edit, member):
    path = tmp_path / "m.npz"
    m = small_model()
    m.word_index = {"good": 1}
    m.save(path)
    rewrite(path, edit)
    with pytest.raises(ValueError) as e:
        imdbfast.load_model(path)
    assert str(path) in str(e.value) and member in str(e.value), e.value


def test_a_damaged_word_index_names_the_file(tmp_path):
    for text in ("{broken", '["a"]', '{"a": -1}', '{"a": 1.5}'):
        (tmp_path / "wi.json").write_text(text)
        with pytest.raises(ValueError, match="wi.json"):
            imdb.get_word_index(str(tmp_path / "wi.json"))


# ---- killed writers -------------------------------------------------------------------------------

KILLED_SAVE = r"""
import os, signal, sys
import numpy as np
import imdbfast
from imdbfast import layers

m = imdbfast.Sequential([layers.Input((20,)), layers.Dense(4), layers.Dense(1, "sigmoid")])
m.build()
real = np.savez
def savez_then_die(f, **arrays):
    f.write(b"PK partial")
    f.flush()
    os.kill(os.getpid(), signal.SIGKILL)
np.savez = savez_then_die
m.save(sys.argv[1])
"""


def test_a_killed_save_leaves_a_temporary_file_the_next_save_removes(tmp_path):
    path = tmp_path / "m.npz"
    m = small_model()
    m.save(path)
    r = subprocess.run([sys.executable, "-c", KILLED_SAVE, str(path)], capture_output=True,
                       cwd=tmp_path, timeout=120)
    assert r.returncode == -9, r.stderr
    left = [p for p in tmp_path.iterdir() if p != path]
    assert len(left) == 1 and left[0].name.startswith(".m.npz.")  # the killed writer's
    imdbfast.load_model(path)  # the old file is intact
    # a temporary file of a live writer (this test's parent process) is not touched
    live = tmp_path / f".m.npz.{socket.gethostname().replace('.', '_')}.{os.getppid()}.x.imdbfast-tmp"
    live.write_bytes(b"in progress")
    m.save(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["m.npz", live.name])


def test_save_into_a_missing_folder_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="the folder .* does not exist"):
        small_model().save(tmp_path / "no" / "m.npz")
