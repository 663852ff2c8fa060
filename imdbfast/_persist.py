"""A model's saved form (docs/FORMAT.md): the archive's members of one moment of the model, and
the model they describe. Sequential.save, load_model and pickling all go through here, so there
is one format."""

from __future__ import annotations

import hashlib
import io
import json
import os
from typing import TYPE_CHECKING, Any

import numpy as np

from ._backend import resolve_device
from ._files import NpzReader
from .callbacks import History

if TYPE_CHECKING:
    from .models import Sequential

FORMAT = "imdbfast-model"
# 2: slot_synced (the lazy rows' steps); 3: unbuilt models, history, threads, device; 4: the
# architecture as Keras 3's Sequential config. Versions 1 to 3 are read too.
FORMAT_VERSION = 4


def archive(model: Any) -> dict:
    """The members of the saved file (docs/FORMAT.md), of one moment of the model."""
    from . import __version__

    history = None
    if model.history is not None:
        history = {"history": model.history.history, "epoch": list(model.history.epoch),
                   "params": getattr(model.history, "params", None) or {}}
    config = {"format": FORMAT, "version": FORMAT_VERSION, "imdbfast_version": __version__,
              **model.get_config(), "built": model.built,
              "compile": model.get_compile_config(),
              "text_encoding": model.text_encoding, "history": history}
    arrays = {"config": np.array(json.dumps(config, default=_json_value))}
    word_index = model.word_index
    if word_index is None and model.text_encoding is not None:
        from .datasets import imdb

        try:  # the word index travels with a model trained on words
            word_index = imdb.get_word_index()
        except (OSError, ValueError):
            word_index = None
    if word_index is not None:
        arrays["word_index"] = np.frombuffer(json.dumps(word_index).encode("utf-8"), dtype=np.uint8)
    text = model._text
    if text is not None and text._vocabulary_set:  # the vocabulary (UTF-8 JSON), IDF weights
        arrays["text_vocabulary"] = np.frombuffer(json.dumps(text._terms).encode("utf-8"),
                                                  dtype=np.uint8)
        if text._idf is not None:
            arrays["text_idf"] = text._idf
    if model.built:
        # One moment of the model, exactly (even while another thread trains it).
        weights, slots_list, synced, iterations = model._net.state()
        for i, w in enumerate(weights):
            arrays[f"weight_{i}"] = w
        if model._compile_config is not None:
            arrays["iterations"] = np.array(iterations, dtype=np.int64)
            for p, slots in enumerate(slots_list):
                for s, a in enumerate(slots):
                    arrays[f"slot_{p}_{s}"] = a
            if synced is not None:
                arrays["slot_synced"] = synced
    arrays["checksum"] = np.array(checksum(arrays))  # over everything above
    return arrays


def file_kind(path: Any, what: str, overwrite: bool = True, *, weights: bool = False) -> str:
    """'keras' for a .keras name, else 'npz'; legacy Keras H5 names are refused, and so are
    .weights.h5 names for a whole model (``weights``: the name is save_weights')."""
    p = os.fspath(path)
    if not isinstance(p, str):
        raise TypeError(f"{what}: expected a path, got {path!r}")
    if p.endswith(".weights.h5") and not weights:  # Keras refuses it too
        raise ValueError(f"{what}: {p!r}: a .weights.h5 file holds weights only (save_weights, "
                         "load_weights); a model file is `.keras` or imdbfast's `.npz`")
    if (p.endswith(".h5") or p.endswith(".hdf5")) and not p.endswith(".weights.h5"):
        raise ValueError(f"{what}: {p!r}: legacy Keras H5 model files are not supported; use a "
                         "`.keras` file (Keras 3's format) or imdbfast's own `.npz`")
    if not overwrite and os.path.exists(p):
        raise FileExistsError(f"{what}: {p!r} exists (overwrite=False)")
    return "keras" if p.endswith(".keras") else "npz"


def load_model(path: str | os.PathLike, custom_objects: None = None, compile: bool = True,
               safe_mode: bool = True, *, device: str = "cpu") -> "Sequential":
    """A saved model on ``device``. A ``.keras`` file (Keras 3's, for Sequential stacks of
    Dense layers; needs h5py): its config, weights and, with ``compile``, compile settings and
    optimizer state. Any other file: imdbfast's format (``Sequential.save``), exactly: same
    weights, optimizer state and settings. Files of another format or version, damaged or
    altered files are refused (ValueError naming the file and the member)."""
    if custom_objects:
        raise ValueError("load_model: custom_objects are not supported (imdbfast models hold "
                         "Input and Dense layers)")
    if file_kind(path, "load_model") == "keras":
        from . import _keras_files

        return _keras_files.load_keras(path, resolve_device(device), compile=bool(compile))
    return _from_archive(path, repr(os.fspath(path)), resolve_device(device))


def unpickle_model(data: bytes) -> "Sequential":
    """A pickled model: the bytes of its saved file, restored on the device it was on."""
    return _from_archive(io.BytesIO(data), "a pickled model", None)


def _from_archive(source: Any, where: str, device: str | None) -> "Sequential":
    import zipfile
    import zlib

    try:
        f = NpzReader(source, "load_model")
    except FileNotFoundError:  # a ValueError, as Keras's load_model
        raise ValueError(f"load_model: file not found: {where}") from None
    except (zipfile.BadZipFile, EOFError) as e:
        raise ValueError(f"load_model: {where} is not an imdbfast model file ({e})") from None
    try:
        with f:
            return _load_model(f, where, device)
    except (zipfile.BadZipFile, zlib.error, EOFError) as e:
        raise ValueError(f"load_model: {where} is corrupt ({e})") from None


def _load_model(f: NpzReader, where: str, device: str | None) -> "Sequential":
    if "config" not in f:
        raise ValueError(f"load_model: {where} has no imdbfast config")
    try:
        config = json.loads(str(f.read("config")))
        if not isinstance(config, dict):
            raise ValueError("not a JSON object")
    except ValueError as e:
        raise ValueError(f"load_model: {where}: member 'config' is damaged ({e})") from None
    if config.get("format") != FORMAT or config.get("version") not in (1, 2, 3, FORMAT_VERSION):
        raise ValueError(f"load_model: unsupported format {config.get('format')!r} "
                         f"version {config.get('version')!r} (this imdbfast reads "
                         f"{FORMAT!r} version {FORMAT_VERSION})")
    if device is None:  # (a pickle) where the model was
        device = resolve_device(config.get("device") or "cpu")
    arrays = {k: f.read(k) for k in f.files if k != "checksum"}
    if "checksum" not in f or str(f.read("checksum")) != checksum(arrays):
        raise ValueError(f"load_model: {where} is corrupt (checksum mismatch)")
    try:  # a config that passes the checksum can still be nonsense (written by hand)
        model = _sequential().from_config(config, device)
        if model._text is not None and "text_vocabulary" in arrays:
            terms = json.loads(arrays["text_vocabulary"].tobytes().decode("utf-8"))
            if not isinstance(terms, list) or not all(isinstance(t, str) for t in terms):
                raise ValueError("member 'text_vocabulary' is not a list of str")
            model._text._restore(terms, arrays.get("text_idf"))
        comp = config.get("compile")
        built = config.get("built", True)  # (versions 1 and 2: always built)
        if built:
            model.build()
        if comp is not None:
            model.compile_from_config(comp)
        if config.get("history") is not None:
            h = config["history"]
            model.history = History()
            model.history.history = {k: [float(v) for v in vs] for k, vs in h["history"].items()}
            model.history.epoch = [int(e) for e in h["epoch"]]
            model.history.params = dict(h["params"])
            model.history.set_model(model)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ValueError(f"load_model: {where}: member 'config' does not describe a model "
                         f"({type(e).__name__}: {e})") from None
    model.text_encoding = config.get("text_encoding")
    if "word_index" in arrays:
        try:
            model.word_index = _word_index_from_json(arrays["word_index"].tobytes().decode("utf-8"))
        except ValueError as e:
            raise ValueError(f"load_model: {where}: member 'word_index' is damaged ({e})") from None

    if not model.built:
        return model
    shapes = [w.shape for w in model.get_weights()]

    def member(name, shape=None):
        if name not in arrays:
            raise ValueError(f"load_model: {where}: member {name!r} is missing")
        a = arrays[name]
        if shape is not None and (a.shape != shape or a.dtype != np.float32):
            raise ValueError(f"load_model: {where}: member {name!r} is {a.dtype} of shape "
                             f"{a.shape}, expected float32 of shape {shape}")
        return a

    n_weights = len(shapes)  # (the built model's parameters, in Keras's order)
    weights = [member(f"weight_{i}", shapes[i]) for i in range(n_weights)]
    model.set_weights(weights)
    if comp is not None:
        net = model._net
        # slots are stored flat, one per parameter and slot
        slots = [[member(f"slot_{p}_{s}", (int(np.prod(shapes[p])),)) for s in range(net.n_slots)]
                 for p in range(n_weights)]
        iterations = member("iterations")
        if iterations.shape != () or iterations.dtype.kind not in "iu":
            raise ValueError(f"load_model: {where}: member 'iterations' is not an integer")
        try:
            net.set_state(weights, slots, arrays.get("slot_synced"), int(iterations))
            model._optimizer_built = True
        except (TypeError, ValueError) as e:
            raise ValueError(f"load_model: {where}: member 'slot_synced' or 'iterations': {e}") from None
    return model


def _word_index_from_json(text: str) -> dict:
    index = json.loads(text)
    if not isinstance(index, dict) or not all(isinstance(k, str) and type(v) is int and v >= 0
                                              for k, v in index.items()):
        raise ValueError("not a JSON object of word -> non-negative int")
    return index


def _json_value(v: Any) -> Any:
    """NumPy scalars in history or settings as Python numbers; anything else as its text."""
    return v.item() if isinstance(v, np.generic) else str(v)


def checksum(arrays: dict) -> str:
    """SHA-256 over every member's name, dtype, shape and bytes, in name order."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _sequential() -> Any:
    from .models import Sequential  # (models imports this module)

    return Sequential
