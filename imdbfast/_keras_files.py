"""Keras 3's files: ``.keras`` models (a zip of metadata.json, config.json and model.weights.h5)
and ``.weights.h5`` weights, read and written as keras/src/saving/saving_lib.py does, for
Sequential stacks of Dense layers. Needs h5py (the ``keras-io`` extra), imported only here.

In the weights file each Dense layer's variables are ``layers/<key>/vars/0`` (kernel) and
``/1`` (bias), where the keys are Keras's per-class counters (dense, dense_1, ...) in layer
order, whatever the layers' names; the optimizer's are ``optimizer/vars/<i>``: the iteration
count, the learning rate, then its slots in Keras's order (below).
"""

from __future__ import annotations

import datetime
import io
import json
import os
import re
import zipfile
from typing import Any

import numpy as np

from ._files import open_regular, write_atomically
from ._optional import require
from .layers import Dropout

KERAS_VERSION = "3.15.1"  # the Keras whose layout this writes (metadata.json)

# The order in which Keras 3 creates each optimizer's slot variables: groups of slots, each
# group for every trainable variable in turn (Adam makes momentum and velocity together).
_SLOT_GROUPS = {"adam": [["momentum", "velocity"], ["velocity_hat"]],
                "rmsprop": [["velocity"], ["momentum"], ["average_gradient"]],
                "sgd": [["momentum"]]}
_KERAS_OPTIMIZER_NAME = {"adam": "adam", "rmsprop": "rm_sprop", "sgd": "sgd"}


def h5py_module(what: str) -> Any:
    return require("h5py", f"{what} (Keras's .keras and .weights.h5 files)", "keras-io")


def layer_keys(layers: list) -> list[str]:
    """The layers' groups in Keras's files: the class's snake-case name, counted per class
    (dense, dense_1, ..., dropout, text_vectorization, ...), whatever the layers are called."""
    seen: dict[str, int] = {}
    keys = []
    for layer in layers:
        base = re.sub(r"(?<!^)(?=[A-Z])", "_", type(layer).__name__).lower()
        k = seen.get(base, 0)
        seen[base] = k + 1
        keys.append(base if k == 0 else f"{base}_{k}")
    return keys


# ---- writing ---------------------------------------------------------------------------------
def _keras_slots(model: Any) -> list[np.ndarray]:
    """The optimizer's slot arrays in Keras's variable order, shaped as their weights."""
    kind = model.optimizer.kind
    names = model._net.slot_names
    slots = model._net.get_slots()  # brought up to date (the lazy rows caught up)
    shapes = [w.shape for w in model.get_weights()]
    out = []
    for group in _SLOT_GROUPS[kind]:  # (Keras has slots for the trainable weights only)
        present = [names.index(s) for s in group if s in names]
        for p in model._trained_params:
            out += [slots[p][s].reshape(shapes[p]) for s in present]
    return out


def _write_weights(model: Any, f: Any) -> None:
    h5py = h5py_module("save")
    with h5py.File(f, "w") as h5:
        weights = model.get_weights() if model.built else None  # (unbuilt: no variables yet)
        layers = h5.create_group("layers")
        for layer, key in zip(model.layers, layer_keys(model.layers)):
            group = layers.create_group(key)
            g = group.create_group("vars")
            g.attrs["name"] = layer.name
            if layer is model._text:  # Keras: the IDF weights, in the layer and its lookup
                lookup = group.create_group("_lookup_layer").create_group("vars")
                lookup.attrs["name"] = "string_lookup"
                if layer._idf is not None:
                    g.create_dataset("idf_weights", data=layer._idf)
                    lookup.create_dataset("idf_weights", data=layer._idf)
                continue
            if weights is not None and not isinstance(layer, Dropout):
                g.create_dataset("0", data=weights[2 * layer._index])
                g.create_dataset("1", data=weights[2 * layer._index + 1])
        if model._compile_config is not None:  # (Keras: the slots once it has stepped)
            stepped = model.built and model._optimizer_built
            g = h5.create_group("optimizer").create_group("vars")
            g.attrs["name"] = _KERAS_OPTIMIZER_NAME[model.optimizer.kind]
            g.create_dataset("0", data=np.array(model._net.iterations if stepped else 0,
                                                dtype=np.int64))
            g.create_dataset("1", data=np.array(model.optimizer.learning_rate, dtype=np.float32))
            for j, a in enumerate(_keras_slots(model) if stepped else [], start=2):
                g.create_dataset(str(j), data=a)
        h5.create_group("vars").attrs["name"] = model.name


def compile_config(model: Any) -> dict | None:
    c = model.get_compile_config()
    if c is None:
        return None
    opt = c["optimizer"]
    return {"optimizer": {"module": "keras.optimizers", "class_name": opt["class_name"],
                          "config": dict(opt["config"], name=_KERAS_OPTIMIZER_NAME[
                              model.optimizer.kind]), "registered_name": None},
            "loss": c["loss_name"], "loss_weights": None, "metrics": list(c["metrics"]),
            "weighted_metrics": None, "run_eagerly": False, "steps_per_execution": 1,
            "jit_compile": False}


# Where Keras 3 keeps a TextVectorization's vocabulary in a .keras file (also under its inner
# StringLookup, "_lookup_layer"), one term per line, the special tokens first.
_TEXT_ASSETS = ("assets/layers/{key}/vocabulary.txt", "assets/layers/{key}/_lookup_layer/vocabulary.txt")


def _text_assets(model: Any) -> dict[str, bytes]:
    text = model._text
    if text is None or text._input_vocabulary is not None or not text._vocabulary_set:
        return {}  # (Keras: a constructor vocabulary travels in the config)
    key = layer_keys(model.layers)[0]
    bad = next((t for t in text._terms if "\n" in t), None)
    if bad is not None:
        raise ValueError(f"save: the TextVectorization's term {bad!r} holds a newline, which "
                         "Keras's vocabulary.txt (one term per line) cannot hold; save to "
                         "imdbfast's format (model.save('model.npz')) instead")
    data = "\n".join(text.get_vocabulary()).encode("utf-8")
    return {a.format(key=key): data for a in _TEXT_ASSETS}


def save_keras(model: Any, path: str | os.PathLike) -> None:
    h5py_module("save")
    weights = io.BytesIO()
    _write_weights(model, weights)
    config = {"module": "keras", "class_name": "Sequential", "config": model.get_config(),
              "registered_name": None}
    if model.built:
        config["build_config"] = {"input_shape": list(model.input_shape)}
    cc = compile_config(model)
    if cc is not None:
        config["compile_config"] = cc
    metadata = {"keras_version": KERAS_VERSION,
                "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S")}

    def write(f: Any) -> None:
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as z:
            z.writestr("metadata.json", json.dumps(metadata))
            z.writestr("config.json", json.dumps(config))
            z.writestr("model.weights.h5", weights.getvalue())
            for name, data in _text_assets(model).items():
                z.writestr(name, data)

    write_atomically(path, write, "save")


def save_weights(model: Any, path: str | os.PathLike) -> None:
    model._require_built("save_weights")
    h5py_module("save_weights")
    write_atomically(path, lambda f: _write_weights(model, f), "save_weights")


# ---- reading ---------------------------------------------------------------------------------
def _read_zip(path: Any, what: str) -> tuple[dict, bytes, dict]:
    """(config, weights file, {asset name: bytes} of the text vocabularies)."""
    try:
        with open_regular(path, what) as f, zipfile.ZipFile(f) as z:
            names = set(z.namelist())
            if "config.json" not in names or "model.weights.h5" not in names:
                raise ValueError(f"{what}: {os.fspath(path)!r} is not a Keras 3 .keras file "
                                 "(config.json or model.weights.h5 is missing)")
            assets = {n: z.read(n) for n in names
                      if n.startswith("assets/") and n.endswith("/vocabulary.txt")}
            return json.loads(z.read("config.json")), z.read("model.weights.h5"), assets
    except FileNotFoundError:
        raise ValueError(f"{what}: file not found: {os.fspath(path)!r}") from None
    except (zipfile.BadZipFile, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{what}: {os.fspath(path)!r} is not a readable .keras file ({e})") from None


def _optimizer_from_keras(cfg: Any) -> Any:
    from . import optimizers

    if isinstance(cfg, str):
        return optimizers.get(cfg)
    if not isinstance(cfg, dict) or not isinstance(cfg.get("config"), dict):
        raise ValueError(f"optimizer: unreadable config {cfg!r}")
    args = dict(cfg["config"])  # Keras's other arguments: the constructors refuse them by name
    if isinstance(args.get("learning_rate"), dict):
        raise ValueError("optimizer: learning-rate schedules are not supported by imdbfast")
    return optimizers.get({"class_name": cfg.get("class_name", ""), "config": args})


def _loss_from_keras(loss: Any) -> Any:
    """compile's loss of a Keras config: a string, or a serialized loss that
    imdbfast.losses.get reads (refusing, by name, what imdbfast does not compute)."""
    from . import losses

    losses.get(loss)
    return loss


def _metric_from_keras(m: Any) -> Any:
    """A compile metric of a Keras config: a string, or a serialized metric that
    imdbfast.metrics.get reads (refusing, by name, what imdbfast does not compute)."""
    from . import metrics

    metrics.get(m)  # (checked here, so that the message names the file)
    return m


def _read_weights(model: Any, h5: Any, where: str, with_optimizer: bool) -> None:
    if "layers" not in h5:
        raise ValueError(f"{where}: no 'layers' group: not a Keras weights file")
    shapes = [w.shape for w in model.get_weights()]
    weights = []
    for layer, key in zip(model.layers, layer_keys(model.layers)):
        path = f"layers/{key}/vars"
        if layer is model._text:  # (its IDF weights come with its vocabulary: load_keras)
            continue
        if isinstance(layer, Dropout):  # (no variables: Keras writes an empty group)
            if path in h5 and len(h5[path]):
                raise ValueError(f"{where}: {path!r} holds variables; a Dropout has none")
            continue
        if path not in h5:
            raise ValueError(f"{where}: {path!r} is missing (the file holds fewer layers)")
        g = h5[path]
        i = layer._index
        for j in range(2):
            if str(j) not in g:
                raise ValueError(f"{where}: {path}/{j} is missing")
            a = np.asarray(g[str(j)])
            if a.shape != shapes[2 * i + j]:
                raise ValueError(f"{where}: {path}/{j} has shape {a.shape}, the model's layer "
                                 f"{layer.name!r} expects {shapes[2 * i + j]}")
            weights.append(a.astype(np.float32))
    if len(h5["layers"]) > len(model.layers):
        raise ValueError(f"{where}: the file holds {len(h5['layers'])} layers, the model "
                         f"{len(model.layers)}")
    state = _read_optimizer(model, h5, where, shapes) if with_optimizer else None
    # Everything read and checked: now the model changes, all at once.
    if state is None:
        model.set_weights(weights)
    else:
        model._net.set_state(weights, state[0], None, state[1])  # every row current
        model._optimizer_built = True


def _read_optimizer(model: Any, h5: Any, where: str, shapes: list) -> tuple | None:
    """(slots per parameter, iterations) from optimizer/vars, or None when there is nothing
    to restore (not compiled, or Keras's optimizer was not built yet)."""
    if model._compile_config is None or "optimizer/vars" not in h5:
        return None
    g = h5["optimizer/vars"]
    if len(g) == 2:  # only the iteration count and the learning rate: never stepped
        return None
    names, trained = model._net.slot_names, model._trained_params
    expected = 2 + len(names) * len(trained)
    if len(g) != expected:
        raise ValueError(f"{where}: optimizer/vars holds {len(g)} variables; "
                         f"{type(model.optimizer).__name__} with these settings and trainable "
                         f"layers has {expected}")
    order = [(p, names.index(s)) for group in _SLOT_GROUPS[model.optimizer.kind]
             for p in trained for s in group if s in names]
    # (a frozen weight's slots: zeros, never used while it is frozen)
    slots: list[list[Any]] = [[np.zeros(int(np.prod(shape)), np.float32)] * len(names)
                              for shape in shapes]
    for j, (p, s) in enumerate(order, start=2):
        a = np.asarray(g[str(j)])
        if a.shape != shapes[p]:
            raise ValueError(f"{where}: optimizer/vars/{j} has shape {a.shape}, expected {shapes[p]}")
        slots[p][s] = np.ascontiguousarray(a, dtype=np.float32).reshape(-1)
    it = np.asarray(g["0"])
    if it.shape != () or it.dtype.kind not in "iu" or int(it) < 0:
        raise ValueError(f"{where}: optimizer/vars/0 (the iteration count) is not an integer >= 0")
    return slots, int(it)


def load_keras(path: str | os.PathLike, device: str, compile: bool = True) -> Any:
    from .models import Sequential

    where = f"load_model: {os.fspath(path)!r}"
    config, weights, assets = _read_zip(path, "load_model")
    if config.get("class_name") != "Sequential":
        raise ValueError(f"{where}: a Keras {config.get('class_name')!r} model; imdbfast reads "
                         "Sequential models of Dense layers")
    model = Sequential.from_config(config.get("config") or {}, device=device)
    if model._text is not None:
        _restore_text(model, weights, assets, where)
    shape = (config.get("build_config") or {}).get("input_shape")
    if not model.built and shape is not None and (model._text is None or model._text._vocabulary_set):
        model.build(shape)
    cc = config.get("compile_config")
    if compile and cc:
        model.compile(_optimizer_from_keras(cc.get("optimizer")), _loss_from_keras(cc.get("loss")),
                      [_metric_from_keras(m) for m in cc.get("metrics") or []])
    h5py = h5py_module("load_model")
    if model.built:  # (a model saved unbuilt has no variables to read)
        with h5py.File(io.BytesIO(weights), "r") as h5:
            _read_weights(model, h5, where, with_optimizer=compile)
    return model


def _restore_text(model: Any, weights: bytes, assets: dict, where: str) -> None:
    """A TextVectorization's vocabulary (assets) and IDF weights (its variables), as Keras
    saved them; nothing when its config carried the vocabulary."""
    text = model._text
    key = layer_keys(model.layers)[0]
    data = next((assets[a.format(key=key)] for a in _TEXT_ASSETS if a.format(key=key) in assets), None)
    if data is None:
        return
    try:
        vocab = data.decode("utf-8").split("\n")
    except UnicodeDecodeError as e:
        raise ValueError(f"{where}: the TextVectorization vocabulary is not UTF-8 ({e})") from None
    special = text.get_vocabulary()[:text._reserved]  # (what the file's first lines must be)
    if vocab[:len(special)] != special:
        raise ValueError(f"{where}: the TextVectorization vocabulary does not start with {special}")
    idf = None
    if text.output_mode == "tf_idf":
        h5py = h5py_module("load_model")
        with h5py.File(io.BytesIO(weights), "r") as h5:
            path = f"layers/{key}/vars/idf_weights"
            if path not in h5:
                path = f"layers/{key}/_lookup_layer/vars/idf_weights"
            if path not in h5:
                raise ValueError(f"{where}: the TextVectorization's idf_weights are missing")
            idf = np.asarray(h5[path], dtype=np.float32)
    try:
        text._restore(vocab[len(special):], idf)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None


def load_weights(model: Any, path: str | os.PathLike) -> None:
    """Weights (and, when compiled, optimizer state) from a .weights.h5 or .keras file."""
    model._require_built("load_weights")
    where = f"load_weights: {os.fspath(path)!r}"
    p = os.fspath(path)
    h5py = h5py_module("load_weights")
    if p.endswith(".keras"):
        _, data, _ = _read_zip(path, "load_weights")
        source: Any = io.BytesIO(data)
    else:
        with open_regular(path, "load_weights") as f:
            source = io.BytesIO(f.read())
    try:
        h5 = h5py.File(source, "r")
    except OSError as e:
        raise ValueError(f"{where}: not an HDF5 file ({e})") from None
    with h5:
        _read_weights(model, h5, where, with_optimizer=True)
