"""``Sequential``: Keras's model API over the compiled core. This module only orchestrates —
it checks arguments, converts inputs, keeps History and callbacks, and calls the core, which
trains whole chunks of batches with the GIL released.
"""

from __future__ import annotations

import io
import os
import threading
import time
from typing import Any, Sequence

import numpy.typing as npt

import numpy as np

from . import _backend, _core, _device
from . import optimizers as _optimizers
from ._backend import resolve_device
from . import _checks, _config, _inputs, _loop, _persist, _summary
from . import layers as _layers
from . import losses as _losses
from . import metrics as _metrics
from ._files import write_atomically
from ._persist import load_model  # noqa: F401 (imdbfast.models.load_model, as before)
from .callbacks import Callback, CallbackList, History, ProgbarLogger
from .layers import Dense, Dropout, Input, TextVectorization



class Sequential:
    """A stack of Dense layers, used exactly as ``keras.Sequential`` in the book::

        model = imdbfast.Sequential([layers.Dense(16, activation="relu"),
                                     layers.Dense(16, activation="relu"),
                                     layers.Dense(1, activation="sigmoid")])
        model.compile(optimizer="rmsprop", loss="binary_crossentropy", metrics=["accuracy"])
        history = model.fit(x_train, y_train, epochs=20, batch_size=512,
                            validation_data=(x_val, y_val))

    ``x`` may be token sequences (multi-hot encoded with the input dimension), the book's dense
    0/1 matrix, a scipy.sparse matrix or an ``imdbfast.CSR``. ``seed`` fixes the initial weights
    (and, unless fit is given its own, the shuffles); ``threads`` the thread count.
    ``device``: 'cpu' (default), 'cuda' / 'cuda:N' (a GPU; an error if none is usable) or 'auto'
    (the GPU when one is usable). On a GPU, x and y may also be GPU arrays (cupy, torch, ...),
    used in place; predict on a cupy array returns a cupy array.
    """

    def __init__(self, layers: Sequence[Dense | Dropout | Input] | None = None,
                 trainable: bool = True, name: str | None = None, *, seed: int | None = None,
                 threads: int | None = None, device: str = "cpu",
                 _dropout_seed: int | None = None):
        if trainable is not True:
            raise ValueError("trainable: freeze layers one by one (layer.trainable = False)")
        self.name = name or "sequential"
        self.layers: list[Any] = []  # Dense and Dropout, after an optional TextVectorization
        self._text: TextVectorization | None = None  # the first layer, when it takes strings
        self.seed = _checks.check_seed(seed)
        # The Dropout layers' masks derive from it (saved with the model): from the seed, else
        # drawn once.
        if _dropout_seed is None:
            _dropout_seed = int(np.random.SeedSequence(
                None if self.seed is None else [self.seed, 2]).generate_state(1, np.uint64)[0])
        self._dropout_seed = int(_dropout_seed) & (2**63 - 1)
        self.threads = _checks.check_threads(threads)
        self.device = resolve_device(device)
        self._input_dim: int | None = None
        self._input = Input((1,))  # the InputLayer's name and config once declared
        self._rng: np.random.Generator | None = None  # draws each layer's initial weights
        self._net = None
        self._compile_config: dict | None = None
        self._optimizer_built = False  # Keras builds it at the first step (summary counts it)
        self.optimizer = None
        self.loss = None
        self.metrics_names: list[str] = []
        self._metrics: list = []  # [(name, imdbfast.metrics.Metric)], compile's
        self._loss: Any = None  # compile's imdbfast.losses.Loss
        self.stop_training = False
        self.history: History | None = None
        self.text_encoding: dict | None = None  # how words became ids (see predict_texts)
        self._word_index = None
        self._fit_lock = threading.Lock()  # one fit at a time per model
        self._device_cache: list = []  # [(weakref to a host CSR, its device copy)], newest first
        for layer in layers or []:
            self.add(layer, rebuild=False)
        self._maybe_build()

    @property
    def word_index(self) -> dict[str, int] | None:
        """The word -> rank dictionary ``predict_texts`` encodes with (saved with the model), or
        None for the IMDB word index. Kept as a read-only copy (a dict; ``dict(...)`` edits)."""
        return self._word_index

    @word_index.setter
    def word_index(self, value: dict[str, int] | None) -> None:
        from .datasets.imdb import WordIndex

        if value is not None and not isinstance(value, dict):
            raise TypeError(f"word_index: expected a dict of word -> rank, got {type(value).__name__}")
        self._word_index = None if value is None else WordIndex(value)

    # ---- structure -------------------------------------------------------------------------
    def add(self, layer: Any, rebuild: bool = True) -> None:
        """Append a layer (as Keras): a model whose input dimension is known is built (or
        rebuilt: the other layers keep their weights; a compiled model's optimizer restarts)."""
        if isinstance(layer, Input):
            if self.layers or self._input_dim is not None:
                raise ValueError(f"add: Sequential model '{self.name}' already has its input; "
                                 "an Input must come first, once")
            self._input_dim, self._input = layer.shape[0], layer
            return
        if isinstance(layer, TextVectorization):
            if self.layers or self._input_dim is not None:
                raise ValueError("add: a TextVectorization takes the model's strings: it must be "
                                 "the first layer (without an Input)")
            if layer.output_mode == "int":
                raise ValueError("add: a TextVectorization with output_mode='int' gives token "
                                 "ids, which need an Embedding layer (not in imdbfast); use "
                                 "'multi_hot', 'count' or 'tf_idf' before Dense layers")
            _layers.attach(layer, self, 0, set())
            self.layers.append(layer)
            self._text = layer
            return
        if isinstance(layer, Dropout):
            if not self.layers or not isinstance(self.layers[-1], Dense):
                raise ValueError("add: a Dropout must follow a Dense layer (imdbfast drops a "
                                 "Dense layer's outputs, not the inputs, and one Dropout each)")
            _layers.attach(layer, self, len(self._dense_layers()) - 1,
                           {l.name for l in self.layers})
            self.layers.append(layer)
            if rebuild and self.built:  # the same weights, a network with the Dropout
                self._make_net(self.get_weights())
            return
        if not isinstance(layer, Dense):
            raise TypeError(f"add: expected an imdbfast.layers.Dense, Dropout, Input or "
                            f"TextVectorization, got "
                            f"{layer!r}")
        if layer.input_dim is not None:
            if self.layers:
                raise ValueError("add: only the first layer may set input_dim / input_shape")
            if self._input_dim is not None and self._input_dim != layer.input_dim:
                raise ValueError(f"add: input_dim={layer.input_dim} differs from the Input's "
                                 f"{self._input_dim}")
            self._input_dim = layer.input_dim
        _layers.attach(layer, self, len(self._dense_layers()), {l.name for l in self.layers})
        self.layers.append(layer)
        if rebuild:
            self._maybe_build()

    def _dense_layers(self) -> list[Dense]:
        """The layers with weights, in order (a Dropout belongs to the one before it)."""
        return [l for l in self.layers if isinstance(l, Dense)]

    def pop(self, rebuild: bool = True) -> Dense | Dropout:
        """Remove and return the last layer (the others keep their weights)."""
        if not self.layers:
            raise TypeError("pop: there are no layers in the model")
        if self.built:
            kept = self.get_weights()
            kept = kept if isinstance(self.layers[-1], Dropout) else kept[:-2]
        else:
            kept = None
        layer = self.layers.pop()
        layer._model_ref = None
        self._net = None
        if layer is self._text:
            self._text, self._input_dim = None, None
        if kept is not None and self._dense_layers() and rebuild:
            self._make_net(kept)
        return layer

    def _maybe_build(self) -> None:
        """Build (or rebuild after add) when the input dimension is known, as Keras does."""
        dense = self._dense_layers()
        if self._input_dim is None or not dense:
            return
        if self._net is None:
            self.build()
            return
        have = self._net.get_weights()
        if len(have) == 2 * len(dense):
            return
        self._make_net(have + self._draw(dense[len(have) // 2:], self._dims()[len(have) // 2]))

    def _draw(self, layers: list, fan_in: int) -> list:
        if self._rng is None:
            self._rng = np.random.default_rng(self.seed)
        weights = []
        for layer in layers:
            weights += layer.initial_weights(fan_in, self._rng)
            fan_in = layer.units
        return weights

    def get_layer(self, name: str | None = None, index: int | None = None) -> Dense:
        """A layer by name or by index (as Keras; the Input is not a layer)."""
        if index is not None and name is not None:
            raise ValueError("Provide only a layer name or a layer index. Received: "
                             f"index={index}, name={name}.")
        if index is not None:
            if len(self.layers) <= index:
                raise ValueError(f"Was asked to retrieve layer at index {index} but model only "
                                 f"has {len(self.layers)} layers.")
            return self.layers[index]
        if name is not None:
            for layer in self.layers:
                if layer.name == name:
                    return layer
            raise ValueError(f"No such layer: {name}. Existing layers are: "
                             f"{[l.name for l in self.layers]}.")
        raise ValueError("Provide either a layer name or layer index at `get_layer`.")

    @property
    def input_shape(self) -> tuple:
        if self._input_dim is None:
            raise AttributeError(f"Sequential model '{self.name}' has no defined input shape yet.")
        return (None, 1) if self._text is not None else (None, self._input_dim)  # (strings)

    @property
    def output_shape(self) -> tuple:
        if self._input_dim is None or not self._dense_layers():
            raise AttributeError(f"Sequential model '{self.name}' has no defined output shape yet.")
        return (None, self._dense_layers()[-1].units)

    @property
    def weights(self) -> list:
        """Every variable (kernel, bias per layer) as named copies (``layers.Weight``)."""
        return [w for layer in self.layers for w in layer.weights]

    @property
    def trainable_weights(self) -> list:
        return [w for layer in self.layers for w in layer.trainable_weights]

    @property
    def non_trainable_weights(self) -> list:
        return [w for layer in self.layers for w in layer.non_trainable_weights]

    @property
    def losses(self) -> list[float]:
        """The weight penalties (Keras's ``model.losses``): one per regularized trainable
        weight; fit and evaluate add their sum to the loss."""
        return [v for layer in self.layers for v in layer.losses]

    def get_config(self) -> dict:
        """Keras 3's Sequential config (JSON-ready; ``keras.Sequential.from_config`` reads it),
        with imdbfast's seed, threads and device: what ``from_config`` takes."""
        return _config.model_config(self)

    @classmethod
    def from_config(cls, config: dict, device: str | None = None) -> "Sequential":
        """A new model from ``get_config()`` or a Keras Sequential config of Input and Dense
        layers (``device`` overrides the recorded one); built when the input is known."""
        return cls(_config.layers_from_config(config), name=config.get("name"),
                   seed=config.get("seed"), threads=config.get("threads"),
                   _dropout_seed=_checks.check_int(config.get("dropout_seed"), "dropout_seed",
                                                   0, 2**63 - 1, none_ok=True),
                   device=device if device is not None else config.get("device") or "cpu")

    def get_compile_config(self) -> dict | None:
        """compile's settings (None before compile): what ``compile_from_config`` takes."""
        if self._compile_config is None:
            return None  # (the optimizer as it is now: its learning rate may have changed)
        return dict(self._compile_config, optimizer=_optimizers.serialize(self.optimizer))

    def compile_from_config(self, config: dict) -> None:
        self.compile(_optimizers.get(config["optimizer"]), config["loss_name"], config["metrics"],
                     bce=config["bce"])

    @property
    def built(self) -> bool:
        return self._net is not None

    def build(self, input_shape: Any = None) -> None:
        """Create the weights (glorot-uniform kernels, zero biases): ``input_shape`` is Keras's
        (None, features), or the features alone; by default the declared input."""
        if self.built:
            if input_shape is not None and _input_dim_arg(input_shape) != self._input_dim:
                raise ValueError(f"build: Sequential model '{self.name}' is built for input "
                                 f"shape {self.input_shape}; cannot build it with {input_shape!r}")
            return
        if not self._dense_layers():
            raise ValueError(f"Sequential model {self.name} cannot be built because it has no "
                             "layers. Call `model.add(layer)`.")
        if self._text is not None:
            # Its vocabulary sets the width; the input itself is strings: (None,) or (None, 1).
            if input_shape is not None and tuple(input_shape) not in ((None,), (None, 1)):
                raise ValueError(f"build: this model takes strings (its first layer is "
                                 f"TextVectorization): input_shape (None,) or none, got "
                                 f"{input_shape!r}")
            if not self._text._vocabulary_set:
                raise ValueError("build: adapt the TextVectorization layer first (or give it "
                                 "vocabulary=): its vocabulary sets the Dense layers' input width")
            input_shape, self._input_dim = None, self._text.output_width
        dim = _input_dim_arg(input_shape) if input_shape is not None else self._input_dim
        if dim is None:
            raise ValueError("build: the input dimension is unknown; give the first layer "
                             "input_dim=, start with imdbfast.Input(shape=(d,)), or fit on "
                             "a matrix")
        if self._input_dim is not None and dim != self._input_dim:
            raise ValueError(f"build: input dimension {dim} differs from the declared {self._input_dim}")
        self._input_dim = int(dim)
        self._rng = None  # (a fresh draw from the seed)
        self._make_net(self._draw(self._dense_layers(), self._input_dim))

    def _dims(self) -> list[int]:
        return [self._input_dim] + [l.units for l in self._dense_layers()]

    def _core_loss(self) -> str:
        if self._compile_config is None:
            return "mse"  # inference only until compiled
        if self._loss.kind == "mse":
            return "mse"
        if self._loss.kind in ("cce", "sparse_cce"):  # (compile checked the output layer)
            return "cce_from_logits" if self._loss.from_logits else "cce_logits"
        if self._loss.from_logits:
            return "bce_from_logits"
        last_sigmoid = self._dense_layers()[-1].activation == "sigmoid"
        return "bce_logits" if last_sigmoid and self._compile_config["bce"] == "logits" else "bce_probs"

    def _spec(self) -> dict:
        """The network's one description for the compiled core (cpp/spec.h)."""
        opt = self.optimizer or _optimizers.SGD()
        layers = []
        for i, layer in enumerate(self.layers):
            if isinstance(layer, Dense):
                layers.append(layer._spec())
            elif isinstance(layer, Dropout) and i + 1 < len(self.layers):
                # (a last Dropout: the identity for inference; fit refuses it)
                layers[-1].update(layer._spec(self._dropout_seed))
        return {"input_dim": self._input_dim, "layers": layers,
                "loss": self._core_loss(), "optimizer": opt._spec()}

    def _make_net(self, weights: list) -> None:
        if self.device == "cpu":
            net = _core.Net(self._spec())
        else:
            net = _backend.cuda_module().Net(self._spec(),
                                             device=_backend.device_index(self.device))
        net.set_weights(weights)
        self._net = net
        # the parameters the optimizer updates, as the Net was made (compile fixes them)
        self._trained_params = [q for i, l in enumerate(self._dense_layers()) if l.trainable
                                for q in (2 * i, 2 * i + 1)]
        self._device_cache = []

    def count_params(self) -> int:
        self._require_built("count_params")
        return int(sum(w.size for w in self._net.get_weights()))

    def summary(self, line_length: int | None = None, positions: list[float] | None = None,
                print_fn: Any = None, expand_nested: bool = False, show_trainable: bool = False,
                layer_range: Any = None) -> None:
        """Keras 3's summary table, the same text (print_fn receives it in one call)."""
        if layer_range is not None:
            raise ValueError("summary: layer_range is not supported (the table lists every layer)")
        _summary.print_summary(self, line_length, positions, print_fn, show_trainable)

    def _optimizer_param_count(self) -> int | None:
        """The optimizer's variables, as Keras counts them once built: the slots of the
        trainable weights, the iteration counter and the learning rate."""
        if not (self.built and self._compile_config is not None and self._optimizer_built):
            return None
        shapes = [w.shape for w in self._net.get_weights()]
        trained = sum(int(np.prod(shapes[p])) for p in self._trained_params)
        return self._net.n_slots * trained + 2

    # ---- weights -----------------------------------------------------------------------------
    def get_weights(self) -> list[npt.NDArray[np.float32]]:
        """[kernel (in, units), bias (units,), ...] as float32 copies, Keras's order."""
        self._require_built("get_weights")
        return self._net.get_weights()

    def set_weights(self, weights: Sequence[np.ndarray]) -> None:
        self._require_built("set_weights")
        weights = list(weights)
        expected = [w.shape for w in self._net.get_weights()]
        if len(weights) != len(expected):
            raise ValueError(f"set_weights: expected {len(expected)} arrays, got {len(weights)}")
        arrays = []
        for i, (w, shape) in enumerate(zip(weights, expected)):
            a = np.asarray(w)
            if a.dtype.kind not in "biuf":  # complex would lose its imaginary part, silently
                raise TypeError(f"set_weights: array {i} must hold real numbers, got dtype "
                                f"{a.dtype}")
            if a.shape != shape:
                raise ValueError(f"set_weights: array {i} has shape {a.shape}, expected {shape}")
            arrays.append(np.ascontiguousarray(a, dtype=np.float32))
        self._net.set_weights(arrays)

    # ---- compile / fit / evaluate / predict --------------------------------------------------
    def compile(self, optimizer: Any = "rmsprop", loss: Any = "binary_crossentropy",
                metrics: Sequence[str] | None = None, *, bce: str = "logits",
                loss_weights: Any = None, weighted_metrics: Any = None, run_eagerly: bool = False,
                steps_per_execution: int = 1, jit_compile: Any = "auto",
                auto_scale_loss: bool = True) -> None:
        """Keras's compile. ``bce='logits'`` (default) computes binary cross-entropy from the
        sigmoid's logit as TF-Keras does; ``bce='clip'`` uses clipped probabilities as the
        JAX/torch backends do (they differ only at saturation). Keras's execution hints
        (run_eagerly, jit_compile, auto_scale_loss) are accepted and change nothing: the
        training loop is compiled C++ in float32 either way."""
        for name, v in (("loss_weights", loss_weights), ("weighted_metrics", weighted_metrics)):
            if v is not None:
                raise ValueError(f"compile: {name}={v!r} is not supported by imdbfast; leave it "
                                 "at None")
        if _checks.check_int(steps_per_execution, "steps_per_execution", 1) != 1:
            raise ValueError(f"compile: steps_per_execution={steps_per_execution!r} is not "
                             "supported by imdbfast; leave it at 1")
        for name, v in (("run_eagerly", run_eagerly), ("auto_scale_loss", auto_scale_loss)):
            if v not in (True, False):
                raise ValueError(f"compile: {name}: expected True or False, got {v!r}")
        if jit_compile not in ("auto", True, False):
            raise ValueError(f"compile: jit_compile: expected 'auto', True or False, got "
                             f"{jit_compile!r}")
        opt = _optimizers.get(optimizer)
        loss_obj = _losses.get(loss)
        if bce not in ("logits", "clip"):
            raise ValueError(f"bce: expected 'logits' or 'clip', got {bce!r}")
        if not self._dense_layers():
            raise ValueError("compile: the model has no layers")
        last = self._dense_layers()[-1]
        if loss_obj.kind in ("cce", "sparse_cce") and not loss_obj.from_logits and \
                last.activation != "softmax":
            raise ValueError(f"loss: {loss_obj.name} needs a softmax output layer (or "
                             f"from_logits=True on a linear one); the last layer "
                             f"{last.name!r} has activation {last.activation!r}")
        named = _metrics.compile_metrics(metrics, last.units)
        self.optimizer = opt
        self.loss = loss_obj if isinstance(loss, dict) else loss  # a config record: the object
        self._loss = loss_obj
        self._metrics = named
        # Keras 3: the loss tracker's name, then the compile metrics' (Keras 3 groups those as
        # "compile_metrics"; their own names, as Keras 2 gave, zip with evaluate's list)
        self.metrics_names = ["loss"] + [name for name, _ in named]
        self._compile_config = {"optimizer": _optimizers.serialize(opt),
                                "loss": loss_obj.kind,
                                "loss_name": _losses.serialize(loss_obj, loss),
                                "metrics": [_metrics.serialize(m, given)
                                            for (_, m), given in zip(named, metrics or [])],
                                "bce": bce}
        self._optimizer_built = False
        if self.built:  # recompiling keeps the weights and resets the optimizer, as Keras
            self._make_net(self._net.get_weights())

    @_loop.one_fit_at_a_time
    def fit(self, x: Any = None, y: Any = None, batch_size: int | None = None, epochs: int = 1,
            verbose: Any = "auto", callbacks: Sequence[Callback] | None = None,
            validation_split: float = 0.0, validation_data: Any = None, shuffle: bool = True,
            class_weight: dict | None = None, sample_weight: Any = None, initial_epoch: int = 0,
            validation_batch_size: int | None = None, validation_freq: int | list[int] = 1, *,
            seed: int | None = None, threads: int | None = None) -> History:
        """Train as Keras does; returns the History (also kept as ``model.history``).

        Everything is checked before the first step, so a bad argument leaves the model as it
        was. ``seed`` fixes the epoch shuffles (default: derived from the model's seed, else
        random). Epoch ``e`` (0-based, counting from ``initial_epoch``) visits the rows in the
        order ``imdbfast._core.shuffle_order(n, seed, e)``.
        """
        self._check_trainable_stack("fit")
        batch_size = _checks.check_batch_size(
            32 if batch_size is None else batch_size, "batch_size")
        epochs = _checks.check_nonneg_int(epochs, "epochs")
        # As Keras: epochs is the index of the last epoch; initial_epoch >= epochs runs none.
        initial_epoch = _checks.check_nonneg_int(initial_epoch, "initial_epoch")
        if isinstance(validation_freq, (list, tuple)):  # Keras: the (1-based) epochs to validate
            validation_freq = frozenset(_checks.check_positive_int(e, "validation_freq")
                                        for e in validation_freq)
        else:
            validation_freq = _checks.check_positive_int(validation_freq, "validation_freq")
        # (evaluation is chunked by work unless callbacks ask for each batch: the size changes
        # the batches test hooks see, never the numbers)
        val_batch_size = _checks.check_batch_size(validation_batch_size or batch_size,
                                                  "validation_batch_size")
        if shuffle not in (True, False):
            raise ValueError(f"shuffle: expected True or False, got {shuffle!r}")
        verbose = _checks.check_verbose(verbose)
        nthreads = self._threads(threads)
        xs = _inputs.inputs(self, x, "x")
        n = xs.n_rows
        ys = _inputs.labels(self, y, n, "y")
        sw = _checks.sample_weights(sample_weight, class_weight, ys, n)
        encoding = getattr(x, "encoding", None)  # from load_data / texts_to_sequences
        if validation_data is not None:
            val = _inputs.validation(self, validation_data)
        elif validation_split:
            (xs, ys, sw), val = _inputs.split_validation(xs, ys, sw, validation_split, nthreads)
            n = xs.n_rows
        else:
            val = None
        if n == 0:
            raise ValueError("x: no training rows")
        if callbacks is not None and not isinstance(callbacks, (list, tuple)):
            raise TypeError("callbacks: expected a list of Callback objects")
        shuffle_seed = self._shuffle_seed(seed)
        # On a GPU: the training set, labels and weights go up once, for the whole fit.
        y_host = self._metric_labels(ys)
        xs, ys = _inputs.placed(self, xs), self._loss_labels(ys, "y")
        sw = _inputs.placed_array(self, sw, "sample_weight")
        if val is not None:
            val = (_inputs.placed(self, val[0]),
                   self._loss_labels(val[1], "validation_data[1]"),
                   _inputs.placed_array(self, val[2], "validation_data[2]"),
                   self._metric_labels(val[1]))

        steps = -(-n // batch_size)
        # As Keras: a History or progress bar among the callbacks is the one used; the default
        # ones come last, so they see what callbacks add to the logs (ReduceLROnPlateau's
        # learning_rate).
        cbs = list(callbacks or [])
        history = next((c for c in cbs if isinstance(c, History)), None)
        if history is None:
            history = History()
            cbs.append(history)
        if verbose and not any(isinstance(c, ProgbarLogger) for c in cbs):
            cbs.append(ProgbarLogger(verbose))
        params = {"verbose": verbose, "epochs": epochs, "steps": steps}
        cb = CallbackList(cbs, self, params)
        history.params = params
        self.history = history
        self.stop_training = False
        if encoding is not None:
            self.text_encoding = dict(encoding, num_words=self._input_dim)
        self._optimizer_built = True
        _loop.train(self, cb, xs, ys, sw, val, batch_size, range(initial_epoch, epochs), shuffle,
                    shuffle_seed, validation_freq, nthreads, val_batch_size, y_host)
        return history

    def evaluate(self, x: Any = None, y: Any = None, batch_size: int | None = None,
                 verbose: Any = "auto", sample_weight: Any = None, steps: None = None,
                 callbacks: Sequence[Callback] | None = None, return_dict: bool = False, *,
                 threads: int | None = None) -> float | list[float] | dict[str, float]:
        """[loss, accuracy] (or the loss alone without metrics, or a dict), over all rows."""
        self._require_compiled("evaluate")
        batch_size = _checks.check_batch_size(
            32 if batch_size is None else batch_size, "batch_size")
        verbose = _checks.check_verbose(verbose)
        xs = _inputs.inputs(self, x, "x")
        ys = _inputs.labels(self, y, xs.n_rows, "y")
        sw = _checks.sample_weights(sample_weight, None, ys, xs.n_rows)
        if xs.n_rows == 0:
            raise ValueError("x: no rows to evaluate")
        _no_steps(steps)
        cb = _callback_list(self, callbacks, verbose, -(-xs.n_rows // batch_size))
        start = time.perf_counter()
        logs = _loop.evaluate_logs(
            self, _inputs.placed(self, xs), self._loss_labels(ys, "y"),
            _inputs.placed_array(self, sw, "sample_weight"), self._threads(threads),
            self._metric_labels(ys), cb, batch_size)
        n = xs.n_rows
        if verbose:
            _loop.print_done(-(-n // batch_size), start, logs)
        return self._results(logs, return_dict)

    def predict(self, x: Any, batch_size: int | None = None, verbose: Any = "auto",
                steps: None = None, callbacks: Sequence[Callback] | None = None, *,
                threads: int | None = None) -> npt.NDArray[np.float32]:
        """The last layer's outputs as a float32 array (N, units): probabilities for the book."""
        batch_size = _checks.check_batch_size(
            32 if batch_size is None else batch_size, "batch_size")
        verbose = _checks.check_verbose(verbose)
        _no_steps(steps)
        xs = _inputs.placed(self, _inputs.inputs(self, x, "x"))
        cb = _callback_list(self, callbacks, verbose, -(-xs.n_rows // batch_size))
        start = time.perf_counter()
        nthreads = self._threads(threads)
        out = _loop.predict(self, xs, _device.is_cupy(x), nthreads, cb, batch_size)
        if verbose:
            _loop.print_done(-(-xs.n_rows // batch_size), start, {})
        return out

    def __call__(self, x: Any, training: bool | None = None) -> Any:
        """The outputs for x (as ``predict``, without progress): Keras's ``model(x)``."""
        if training is not None and training not in (True, False):
            raise ValueError(f"training: expected True, False or None, got {training!r}")
        if training and any(isinstance(layer, Dropout) for layer in self.layers):
            # Keras would drop units at random here; only fit's steps do in imdbfast
            raise ValueError("training=True: this model has Dropout, which imdbfast applies "
                             "only inside fit's steps; model(x) is inference (training=False)")
        return self.predict(x, verbose=0)

    def predict_on_batch(self, x: Any) -> Any:
        return self.predict(x, verbose=0)

    @_loop.one_fit_at_a_time
    def train_on_batch(self, x: Any, y: Any = None, sample_weight: Any = None,
                       class_weight: dict | None = None, return_dict: bool = False, *,
                       threads: int | None = None) -> float | list[float] | dict[str, float]:
        """One optimizer step on all of x's rows, in order; returns that batch's loss and
        metrics as ``evaluate`` does (Keras 3 resets the metrics at each call)."""
        self._check_trainable_stack("train_on_batch")
        xs = _inputs.inputs(self, x, "x")
        n = xs.n_rows
        ys = _inputs.labels(self, y, n, "y")
        sw = _checks.sample_weights(sample_weight, class_weight, ys, n)
        if n == 0:
            raise ValueError("x: no rows to train on")
        y_host = self._metric_labels(ys)
        xs, ys = _inputs.placed(self, xs), self._loss_labels(ys, "y")
        sw = _inputs.placed_array(self, sw, "sample_weight")
        self._optimizer_built = True
        self._push_learning_rate()
        tracker = _loop.Tracker(self)
        out = tracker.buffer(n)
        loss_sum, correct, rows, _, _ = self._net.train_batches(
            xs, ys, sw, np.arange(n, dtype=np.int64), n, 0, 1, self._threads(threads),
            outputs=out)
        tracker.add(loss_sum, correct, rows, out, y_host)
        return self._results(tracker.logs(), return_dict)

    def test_on_batch(self, x: Any, y: Any = None, sample_weight: Any = None,
                      return_dict: bool = False) -> float | list[float] | dict[str, float]:
        """The loss and metrics of x as one batch (the same numbers as ``evaluate``)."""
        return self.evaluate(x, y, sample_weight=sample_weight, verbose=0,
                             return_dict=return_dict)

    def reset_metrics(self) -> None:
        """Keras's reset_metrics: imdbfast's metrics hold no state between calls (each fit
        epoch, evaluate and train_on_batch computes its own), so there is nothing to reset."""

    def predict_texts(self, texts: Sequence[str], word_index: dict[str, int] | None = None, *,
                      threads: int | None = None) -> npt.NDArray[np.float32]:
        """Probabilities for raw review strings: each is encoded as the training data was
        (``self.text_encoding``, recorded by fit from load_data's output, else load_data's
        defaults with the model's input dimension as num_words) with ``word_index`` (else the
        model's own, else Keras's word index found as load_data finds its file). A model that
        starts with TextVectorization reads the strings itself (no word index)."""
        from .datasets import imdb

        if self._text is not None:
            if word_index is not None:
                raise ValueError("predict_texts: this model's TextVectorization has its own "
                                 "vocabulary; word_index does not apply")
            return self.predict(texts, verbose=0, threads=threads)
        self._require_built("predict_texts")
        enc = dict(self.text_encoding or {}, num_words=self._input_dim)  # (else its defaults)
        x = imdb.texts_to_sequences(texts, word_index or self.word_index, **enc)
        return self.predict(x, verbose=0, threads=threads)

    # ---- saving and pickling ----------------------------------------------------------------
    def save(self, path: str | os.PathLike, overwrite: bool = True) -> None:
        """Write the model atomically (a temporary file renamed into place). ``.keras``: Keras
        3's format (``keras.models.load_model`` reads it; needs h5py). Any other name:
        imdbfast's ``.npz`` (no pickles; docs/FORMAT.md) with the history and text encoding
        too. Legacy ``.h5`` files are refused."""
        kind = _persist.file_kind(path, "save", overwrite)
        if kind == "keras":
            from . import _keras_files

            _keras_files.save_keras(self, path)
            return
        arrays = _persist.archive(self)
        write_atomically(path, lambda f: np.savez(f, **arrays), "save")

    def save_weights(self, filepath: str | os.PathLike, overwrite: bool = True) -> None:
        """The weights (and a compiled model's optimizer state) as Keras 3's ``.weights.h5``."""
        if not os.fspath(filepath).endswith(".weights.h5"):
            raise ValueError("save_weights: the filename must end in `.weights.h5`. Received: "
                             f"filepath={os.fspath(filepath)}")
        _persist.file_kind(filepath, "save_weights", overwrite, weights=True)
        from . import _keras_files

        _keras_files.save_weights(self, filepath)

    def load_weights(self, filepath: str | os.PathLike, skip_mismatch: bool = False) -> None:
        """Weights from a ``.weights.h5`` or ``.keras`` file (Keras's or imdbfast's), with the
        optimizer state when the file has it and the model is compiled; all or nothing."""
        if skip_mismatch:
            raise ValueError("load_weights: skip_mismatch=True is not supported")
        p = os.fspath(filepath)
        if not (p.endswith(".weights.h5") or p.endswith(".keras")):
            raise ValueError("load_weights: expected a `.weights.h5` or `.keras` file, got "
                             f"{p!r}")
        from . import _keras_files

        _keras_files.load_weights(self, filepath)

    def __reduce__(self):
        # A pickle (and copy.deepcopy) holds the bytes of the saved file: one format, exact.
        buf = io.BytesIO()
        np.savez(buf, **_persist.archive(self))
        return (_persist.unpickle_model, (buf.getvalue(),))

    # ---- helpers -----------------------------------------------------------------------------
    def _require_built(self, what: str) -> None:
        if not self.built:
            raise RuntimeError(f"{what}: the model is not built yet (call build(input_dim), "
                               "fit it, or declare the input dimension)")

    def _check_trainable_stack(self, what: str) -> None:
        if self.layers and isinstance(self.layers[-1], Dropout):
            raise ValueError(f"{what}: the model ends with Dropout layer "
                             f"{self.layers[-1].name!r}; imdbfast drops hidden layers' outputs "
                             "only (the loss reads the last Dense layer's)")

    def _require_compiled(self, what: str) -> None:
        if self._compile_config is None:
            raise RuntimeError(f"{what}: call compile(optimizer, loss, metrics) first")

    def _threads(self, threads: int | None) -> int:
        t = _checks.check_threads(threads)
        return t if t is not None else (self.threads or 0)

    def _shuffle_seed(self, seed: int | None) -> int:
        seed = _checks.check_seed(seed)
        if seed is not None:
            return seed
        if self.seed is not None:
            return int(np.random.SeedSequence([self.seed, 1]).generate_state(1, np.uint64)[0])
        return int(np.random.SeedSequence().generate_state(1, np.uint64)[0])

    def _push_learning_rate(self) -> None:
        """The optimizer's learning rate, as callbacks may have set it, into the Net."""
        lr = self.optimizer.learning_rate
        if lr != self._net.learning_rate:
            self._net.learning_rate = lr

    def _results(self, logs: dict, return_dict: bool) -> Any:
        """evaluate's return value: the dict, else loss and metrics in compile's order (the
        loss alone without metrics), as Keras."""
        if return_dict:  # (Keras 3's keys are sorted)
            return {k: logs[k] for k in sorted(logs)}
        values = [logs["loss"]] + [logs[name] for name, _ in self._metrics]
        return values[0] if len(values) == 1 else values

    def _metrics_from_outputs(self) -> bool:
        """Whether the compile metrics need the rows' outputs: some metric is not the loss
        kernel's accuracy, or the loss sees smoothed labels (the metrics the given ones)."""
        return bool(self._metrics) and (self._loss.label_smoothing > 0 or any(
            not m._from_loss_kernel() for _, m in self._metrics))

    def _loss_labels(self, y: Any, name: str) -> Any:
        """The labels as the loss sees them (smoothed), placed."""
        if self._loss.label_smoothing:
            y = self._loss.smoothed(_device.to_host(y) if _device.is_device_array(y) else y)
        return _inputs.placed_array(self, y, name)

    def _metric_labels(self, y: Any) -> np.ndarray | None:
        """The labels on the host, when a compile metric needs the outputs (else None)."""
        if not self._metrics_from_outputs():
            return None
        return np.ascontiguousarray(_device.to_host(y) if _device.is_device_array(y) else y,
                                    dtype=np.float32)

    def __repr__(self) -> str:
        return f"Sequential({self.layers!r})"


def _no_steps(steps: Any) -> None:
    if steps is not None:
        raise ValueError("steps: imdbfast takes arrays, not generators: every row is used "
                         "(slice x to use fewer)")


def _callback_list(model: Sequential, callbacks: Any, verbose: int, steps: int) -> Any:
    """evaluate's and predict's callbacks (None without any)."""
    if callbacks is None:
        return None
    if not isinstance(callbacks, (list, tuple)):
        raise TypeError("callbacks: expected a list of Callback objects")
    return CallbackList(callbacks, model, {"verbose": verbose, "epochs": 1, "steps": steps})


def _input_dim_arg(shape: Any) -> int:
    """build's input_shape: (None, features), [None, features], (features,) or features."""
    if isinstance(shape, (tuple, list)):
        dims = list(shape)
        if len(dims) == 2 and (dims[0] is None or isinstance(dims[0], int)):
            dims = dims[1:]
        if len(dims) != 1:
            raise ValueError(f"input_shape: expected (None, features), got {shape!r}")
        shape = dims[0]
    return _checks.check_int(shape, "input_shape", 1, 2**31 - 1)


def book_model(input_dim: int, *, layers: Sequence[int] = (16, 16), activation: str = "relu",
               optimizer: Any = "rmsprop", loss: str = "binary_crossentropy",
               metrics: Sequence[str] = ("accuracy",), seed: int | None = None,
               threads: int | None = None, device: str = "cpu") -> Sequential:
    """fit's model, built and compiled, untrained: Dense(u, activation) for u in ``layers``,
    then Dense(1, sigmoid)."""
    model = Sequential([Input((input_dim,))] + [Dense(u, activation) for u in layers] +
                       [Dense(1, "sigmoid")], seed=seed, threads=threads, device=device)
    model.compile(optimizer, loss, list(metrics))
    return model


def fit(x: Any, y: Any, *, layers: Sequence[int] = (16, 16), activation: str = "relu",
        optimizer: Any = "rmsprop", loss: str = "binary_crossentropy",
        metrics: Sequence[str] = ("accuracy",), epochs: int = 4, batch_size: int = 512,
        validation_data: Any = None, validation_split: float = 0.0, seed: int | None = None,
        verbose: Any = "auto", device: str = "cpu", threads: int | None = None,
        input_dim: int | None = None, callbacks: Sequence[Callback] | None = None,
        shuffle: bool = True, sample_weight: Any = None, class_weight: dict | None = None
        ) -> Sequential:
    """The book's model in one call: Dense(u, activation) for u in ``layers``, then
    Dense(1, sigmoid); compiled and trained. Returns the model (its ``history`` attached).

    ``input_dim`` defaults to the matrix's width, or to 10,000 (the book's num_words) for token
    sequences.
    """
    if input_dim is None:
        input_dim = _inputs.input_dim_of(x)
    model = book_model(input_dim, layers=layers, activation=activation, optimizer=optimizer,
                       loss=loss, metrics=metrics, seed=seed, threads=threads, device=device)
    model.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=verbose, callbacks=callbacks,
              validation_split=validation_split, validation_data=validation_data,
              shuffle=shuffle, sample_weight=sample_weight, class_weight=class_weight)
    return model
