"""A Sequential's config in Keras 3's shape (what ``keras.Sequential.from_config`` and a
``.keras`` file's config.json hold), and the layers such a config describes. imdbfast's own
settings (seed, threads, device) ride along as extra keys, which Keras ignores."""

from __future__ import annotations

from typing import Any

from .layers import Dense, Dropout, Input, TextVectorization


def _wrap(class_name: str, config: dict, **extra: Any) -> dict:
    return {"module": "keras.layers", "class_name": class_name, "config": config,
            "registered_name": None, **extra}


def model_config(model: Any) -> dict:
    dims = model._dims() if model._input_dim is not None else None
    layers = []
    if model._text is not None:  # Keras's input of strings, one per row
        layers.append(_wrap("InputLayer", {"batch_shape": [None, 1], "dtype": "string",
                                           "sparse": False, "ragged": False,
                                           "name": "input_layer", "optional": False}))
    elif dims is not None:
        layers.append(_wrap("InputLayer", {**model._input.get_config(),
                                           "batch_shape": [None, dims[0]]}))
    for layer in model.layers:
        extra = {}
        if dims is not None and isinstance(layer, Dense):  # (Keras: none for a Dropout)
            extra = {"build_config": {"input_shape": [None, dims[layer._index]]}}
        elif layer is model._text:
            extra = {"build_config": {"input_shape": [None, 1]}}
        layers.append(_wrap(type(layer).__name__, layer.get_config(), **extra))
    config = {"name": model.name, "trainable": True, "dtype": "float32", "layers": layers}
    if dims is not None and model._text is None:
        config["build_input_shape"] = [None, dims[0]]
    config.update(seed=model.seed, threads=model.threads, device=model.device)
    if any(isinstance(l, Dropout) for l in model.layers):
        config["dropout_seed"] = model._dropout_seed  # (imdbfast's masks: seed of the stream)
    return config


def layers_from_config(config: dict) -> list:
    """The Input and Dense layers of a Sequential config: Keras 3's (layers as
    {"class_name", "config"}) or imdbfast's before format 4 ("input_dim" and plain Dense
    arguments). Other layer classes are refused by name."""
    if not isinstance(config, dict) or not isinstance(config.get("layers"), list):
        raise ValueError("from_config: expected a Sequential config, a dict with a 'layers' list")
    out: list = []
    if "input_dim" in config:  # imdbfast's own layout, formats 1 to 3
        if config["input_dim"] is not None:
            out.append(Input((config["input_dim"],)))
        return out + [Dense(**layer) for layer in config["layers"]]
    for i, entry in enumerate(config["layers"]):
        if not isinstance(entry, dict) or not isinstance(entry.get("config"), dict):
            raise ValueError(f"from_config: layer {i} is not a Keras layer config")
        cls, cfg = entry.get("class_name"), dict(entry["config"])
        if cls == "InputLayer" and cfg.get("dtype") == "string":
            continue  # (strings: the TextVectorization after it takes them)
        if cls == "InputLayer":
            shape = cfg.get("batch_shape") or [None] + list(cfg.get("shape") or [])
            out.append(Input(batch_shape=shape, name=cfg.get("name")))
        elif cls == "Dense":
            out.append(Dense.from_config(cfg))
        elif cls == "Dropout":
            out.append(Dropout.from_config(cfg))
        elif cls == "TextVectorization":
            out.append(TextVectorization.from_config(cfg))
        else:
            raise ValueError(f"from_config: layer {i} ({cfg.get('name', '?')!r}) is a Keras "
                             f"{cls}; imdbfast models hold Input, TextVectorization, Dense and Dropout layers only")
    if not any(isinstance(l, (Input, TextVectorization)) for l in out) and \
            config.get("build_input_shape"):
        out.insert(0, Input(batch_shape=config["build_input_shape"]))
    return out
