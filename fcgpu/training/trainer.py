"""Trainer: compile, fit, evaluate, predict, train_step and the *_on_batch methods; the step itself
(``accumulate_batch``) is ``fcgpu.training.step``'s, which ``Trainer`` inherits.

The model class (``model.Sequential``) inherits this, as Keras 3's Model inherits its trainer.
Inputs are checked once per call on the host before anything changes; a data set is then copied
to the model's backend once, and batches are slices of it. What the trainer needs of the model:
``compute_layers``, ``output_layer``, ``host_inputs``, ``forward``, ``backward``, ``build``,
``built``, ``backend``, ``input_features``, ``output_features``, ``name`` and ``_require_layers``."""
from __future__ import annotations

import time
import warnings
from typing import Any, Sequence

import numpy as np

from .. import callbacks as callbacks_module
from .. import distributed
from .. import losses as losses_module
from .. import metrics as metrics_module
from .. import optimizers as optimizers_module
from ..backends import Backend
from ..backends.base import Array
from ..backends.buffers import Buffers
from ..callbacks import History
from ..distributed.data_parallel import quiet_callbacks, start_from_rank0, train_global_batch
from ..initializers import get_rng
from ..losses import Loss
from ..mixed_precision import check_policies, with_loss_scaling
from ..optimizers import Optimizer
from ..backends.params import FlatParameters
from ..backends.validation import positive_int
from . import metric_state
from .data_adapter import host_data, is_stream
from . import graph_step
from .graph_calls import GraphCache, train_step_graph
from .epoch import evaluate_arrays, finish_epoch, keras_values, progress_bar, run_epoch, verbosity
from .inference import evaluate_host, predict_host, validation_on_device, validation_rows
from .step import TrainingStep
from .streaming import evaluate_from, fit_stream, predict_from
from .weights import sample_weights, weight_dtype

__all__ = ["NotCompiledError", "Trainer", "History"]


class NotCompiledError(RuntimeError, ValueError):
    """fit, evaluate or a step before compile (Keras raises a ValueError; fcgpu 0.2 a RuntimeError)."""


class Trainer(TrainingStep):
    """compile / fit / evaluate / predict / train_step for a model that subclasses it; the step
    itself is ``TrainingStep``'s (``fcgpu.training.step``); after ``fcgpu.distributed.init`` on N
    ranks, data parallel: each call starts from rank 0 (``fcgpu.distributed.start_from_rank0``) and
    the step updates through the all-reduce optimizer (``fcgpu.distributed.AllReduceOptimizer``)."""

    def __init__(self) -> None:
        self.loss: Loss | None = None
        self.optimizer: Optimizer | None = None
        self.metrics: list[str] = []  # the metrics' names, as in the logs
        self.metric_objects: list[metrics_module.Metric] = []
        self.weighted_metric_ids: set[int] = set()  # the weighted_metrics among them (they take sample weights)
        self.stop_training = False  # set by a callback to end fit after the current batch
        self.history: History | None = None  # the last fit's, as Keras's model.history
        self._flat: FlatParameters | None = None
        self._step_binding = None  # what the step is bound to (training.step.StepBinding)
        self._metric_buffers = Buffers()  # the outputs metrics read when the loss took logits
        self.graph_cache = GraphCache()  # train_step's, evaluate's and predict's captured graphs (graph_calls)

    # -- compile -----------------------------------------------------------------
    def compile(
        self,
        optimizer: str | Optimizer = "adam",
        loss: str | Loss | None = None,
        metrics: Any = None,
        weighted_metrics: Any = None,
        **keras_options: Any,
    ) -> None:
        """Keras's ``compile(optimizer, loss, metrics, weighted_metrics)`` (positional in Keras's order):
        the optimizer ('sgd', 'adam', 'adamw' or an instance), the loss ('categorical_crossentropy',
        'binary_crossentropy', 'mse', ... or an instance) and metrics: a list of Keras names ('accuracy',
        'auc', 'precision', 'mse', ...), ``fcgpu.metrics`` instances or classes, and functions
        ``fn(y_true, y_pred)``, or a dict {output name: such a list}. As in Keras, ``metrics`` ignore
        sample weights and ``weighted_metrics`` take them. Keras's run_eagerly, jit_compile,
        steps_per_execution (1) and auto_scale_loss are accepted and change nothing here."""
        for key, value in keras_options.items():
            if key not in ("run_eagerly", "jit_compile", "steps_per_execution", "auto_scale_loss"):
                raise TypeError(f"compile: unexpected argument {key!r}")
            if key == "steps_per_execution" and value not in (1, None):
                raise ValueError(f"steps_per_execution: fcgpu runs one step per call, got {value!r}")
        if loss is None:
            raise ValueError("loss: compile needs a loss, e.g. loss='softmax_cross_entropy'")
        layers = self.compute_layers
        check_policies("compile", self.name, layers)
        loss_obj = losses_module.get(loss)
        opt = with_loss_scaling(optimizers_module.get(optimizer), layers)
        opt.check_owner(layers)
        objects = metric_state.resolve(metrics, self.name)
        weighted = metric_state.resolve(weighted_metrics, self.name)
        for metric in weighted:
            if any(metric.name == o.name for o in objects):
                metric.name = f"weighted_{metric.name}"  # as Keras names a weighted twin
        self.loss, self.optimizer = loss_obj, opt
        self.weighted_metric_ids = {id(m) for m in weighted}
        objects = objects + weighted
        self.metric_objects = objects
        self.metrics = [m.name for m in objects]
        self.compiled_metrics_spec = metrics  # as given: a dict keeps its output names

    def _start_training(self, what: str) -> None:
        """Decided when training starts, whatever the order of compile and add, before anything changes:
        one mixed policy per model, and loss scaling under 'mixed_float16' (as Keras wraps it)."""
        self._require_compiled(what)
        check_policies(what, self.name, self.compute_layers)
        self.optimizer = with_loss_scaling(self.optimizer, self.compute_layers)

    @property
    def compiled(self) -> bool:
        return self.loss is not None and self.optimizer is not None

    def get_compile_config(self) -> dict[str, Any] | None:
        """The compile settings as JSON-ready values (Keras 3's name), or None before compile."""
        if not self.compiled:
            return None
        metrics = [metrics_module.plain_name(m) or m.get_config() for m in self.metric_objects]
        return {"loss": self.loss.get_config(), "optimizer": self.optimizer.get_config(), "metrics": metrics}

    def compile_from_config(self, config: dict[str, Any]) -> None:
        """``compile`` with what ``get_compile_config`` returned. A metric whose code is not stored (a
        function, a ``Metric`` subclass) is left out with a warning naming it: compile again to use it."""
        self.compile(
            loss=losses_module.get(config["loss"]),
            optimizer=optimizers_module.get(config["optimizer"]),
            metrics=metric_state.restorable(config["metrics"]),
        )

    def flat_parameters(self) -> FlatParameters | None:
        """The flat buffers holding every parameter and gradient (None before the model is built),
        laid out again when a layer was rebuilt, moved or renamed since."""
        if not self.built:
            return None
        layers = self.compute_layers
        if self._flat is None or not self._flat.current(layers):
            previous = self._flat
            self._flat = FlatParameters.of(layers)
            if previous is not None and self.optimizer is not None:
                # A layer frozen since: its parameters leave the optimizer with their state, as Keras
                # keeps no optimizer state for variables that do not train.
                gone = set(previous.slices) - set(self._flat.slices)
                if gone:
                    self.optimizer.forget(sorted(gone))
        return self._flat

    def move_training_state(self, target: Backend) -> None:
        """Move the optimizer state to ``target`` (part of ``to``)."""
        if self.optimizer is not None:
            self.optimizer.to(target)
        if self.loss is not None:
            self.loss.clear_buffers()

    def _parameters_finite(self) -> bool:
        """Whether every parameter is finite (one reduction per flat buffer and one read)."""
        flat = self.flat_parameters()
        return all(bool(self.backend.to_numpy(self.backend.all_finite(p))) for p in flat.params.values())

    def _require_compiled(self, what: str) -> None:
        if not self.compiled:
            raise NotCompiledError(
                f"{what}: the model must be compiled first: model.compile(optimizer=..., loss=..., metrics=['accuracy'])"
            )

    # -- host-side checks ----------------------------------------------------------
    def _check_x(self, x: Any, argument: str = "x", width: int | None = None) -> np.ndarray:
        self._require_layers()
        return self.host_inputs(host_data(x), argument, width)

    def _prepare(
        self, x: Any, y: Any, names: tuple[str, str] = ("x", "y"), width: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Host-checked x (in the first layer's dtype) and labels prepared by the loss."""
        if y is None:
            raise ValueError(f"{names[1]}: expected targets, got None (x as arrays needs y; a generator or PyDataset yields (x, y))")
        xh = self._check_x(x, names[0], width)
        y_len = len(y) if hasattr(y, "__len__") and not self.loss.structured_labels else None
        if y_len is not None and y_len != xh.shape[0] and np.ndim(y) > 0:
            raise ValueError(
                f"{names[0]} and {names[1]}: expected the same number of samples, got {xh.shape[0]} and {y_len}"
            )
        # Inputs meet the first layer, labels meet the last layer's predictions: in their dtype, but
        # float32 under a mixed policy (the loss is computed in float32, as Keras; 1000.3 stays 1000.3).
        last = self.output_layer
        dtype = np.dtype(np.float32) if any(layer.mixed for layer in self.compute_layers) else last.compute_dtype
        yh = self.loss.prepare_labels(y, (xh.shape[0], self.output_features), dtype, names[1])
        for metric in self.metric_objects:  # a metric that cannot compare these labels fails here
            metric.check((xh.shape[0], self.output_features), yh.shape)
        return xh, yh

    def _weights(self, sample_weight: Any, class_weight: Any, y: Any, rows: int, argument: str = "sample_weight") -> Any:
        """The rows' weights (``fcgpu.training.weights``) as a host array, or None; refused where the
        loss cannot weigh its rows in its fused step."""
        if sample_weight is None and class_weight is None:
            return None
        loss, _ = self.output_loss()
        if class_weight is not None and loss.structured_labels:
            raise ValueError("class_weight: Keras takes it for models of one output only; give sample_weight instead")
        if not loss.weighs_rows:
            raise ValueError(f"{argument}: {loss!r} does not take sample weights here (the fused losses do: "
                             f"cross-entropies from logits or after their softmax/sigmoid, MSE, MAE, Huber)")
        last = self.output_layer
        dtype = np.float32 if any(layer.mixed for layer in self.compute_layers) else last.compute_dtype
        return sample_weights(sample_weight, class_weight, y, rows, self.output_features, weight_dtype(dtype), argument)

    def _ensure_built(self, features: int) -> None:
        if not self.built:
            self.build(features)

    def output_loss(self) -> tuple[Loss, bool]:
        """(the loss to compute, whether it takes the last layer's logits), decided when the loss
        meets the model's output, whatever the order of compile and add: a probability
        cross-entropy after its matching activation runs on the logits (``Loss.fused_with``).
        A probability loss after a layer whose outputs can leave [0, 1] is refused."""
        last = self.output_layer
        activation = last.activation
        name = activation.name if activation is not None else "linear"
        fused = self.loss.fused_with(name)
        if fused is not None:
            return fused, True
        if self.loss.takes_probabilities:
            low, high = activation.outputs if activation is not None else (-np.inf, np.inf)
            if low < 0 or high > 1:
                raise ValueError(
                    f"loss: {self.loss!r} takes probabilities in [0, 1], but the last layer '{last.name}' has "
                    f"activation '{name}', whose outputs can leave [0, 1]; end the model with the activation the loss "
                    f"takes probabilities from (softmax, or sigmoid for a binary loss), or use from_logits=True"
                )
        return self.loss, False

    # -- one step ----------------------------------------------------------------
    def prepare_data(self, x: Any, y: Any) -> tuple[Array, Array]:
        """(x, y) checked on the host as ``fit`` checks them and copied to the model's backend:
        x (B, M) in the first layer's dtype, y as the loss takes it. Builds the model if needed."""
        self._start_training("prepare_data")
        xh, yh = self._prepare(x, y)
        self._ensure_built(xh.shape[1])
        backend = self.backend
        return backend.from_numpy(xh), backend.from_numpy(yh)

    def metric_columns(self) -> int:
        """Accumulator entries of one step: loss x rows, the loss's fused correct count, then every
        other metric's state (``Metric.state_size``), in the order of ``metric_objects``."""
        if all(m.fused_with_loss for m in self.metric_objects):
            return 2
        return 2 + metric_state.state_size(self.metric_objects, self.output_features if self.built else 1)

    def bind_metrics(self, state: Array) -> None:
        """The metrics' states as views of ``state`` (zeroed, ``metric_columns() - 2`` entries, on the
        model's backend): Keras's reset of the metrics at the start of an epoch or an evaluation."""
        metric_state.bind(self.metric_objects, state, self.backend, self.output_features if self.built else 1)

    def update_metrics(self, out: Array, y: Array, on_logits: bool, sample_weight: Array | None = None) -> None:
        """The metrics not fused with the loss, on the model's outputs (the activation applied to
        logits the loss took), each adding into its bound state (``bind_metrics``) on the device.
        ``sample_weight``: None or a per-row weight vector (B,) of the model's backend."""
        if on_logits:
            activation = self.output_layer.activation.name
            probs = self._metric_buffers.get(self.backend, "probabilities", out.shape, out.dtype)  # reused
            out = self.backend.bias_act_forward(out, None, activation, probs)
        weighted = self.weighted_metric_ids
        for metric in self.metric_objects:
            if not metric.fused_with_loss:
                metric.update(self.backend, out, y, sample_weight if id(metric) in weighted else None)

    def add_regularization(self, acc: Array, rows: int) -> None:
        """Add the layers' weight penalties (``regularization_loss``) x ``rows`` into the loss column
        of ``acc``, as Keras adds them to the loss; no device work where no layer has a regularizer."""
        total = None
        for layer in self.compute_layers:
            value = layer.regularization_loss(rows)
            if value is not None:
                total = value if total is None else total + value
        if total is not None:
            column = acc[0:1]  # a view: no copy back as acc[0:1] += ... would make
            column += total

    def train_step(self, x: Any, y: Any, sample_weight: Any = None) -> float:
        """One forward, backward and optimizer step on a batch; returns the mean loss."""
        return self._step_logs(x, y, "train_step", sample_weight)["loss"]

    def train_on_batch(
        self, x: Any, y: Any, sample_weight: Any = None, class_weight: Any = None, return_dict: bool = False
    ) -> Any:
        """Keras's ``train_on_batch``: one step; the batch's loss and metrics (before the update), as evaluate's."""
        return keras_values(self._step_logs(x, y, "train_on_batch", sample_weight, class_weight), return_dict)

    def test_on_batch(self, x: Any, y: Any, sample_weight: Any = None, return_dict: bool = False) -> Any:
        """Keras's ``test_on_batch``: ``evaluate`` on one batch."""
        return self.evaluate(x, y, batch_size=max(len(x), 1), return_dict=return_dict, sample_weight=sample_weight)

    def predict_on_batch(self, x: Any) -> np.ndarray:
        """Keras's ``predict_on_batch``: ``predict`` on one batch."""
        return self.predict(x, batch_size=max(len(x), 1))

    def _step_logs(self, x: Any, y: Any, what: str, sample_weight: Any = None, class_weight: Any = None) -> dict[str, float]:
        self._start_training(what)
        xh, yh = self._prepare(x, y)
        wh = self._weights(sample_weight, class_weight, y, xh.shape[0])
        self._ensure_built(xh.shape[1])
        if wh is None and distributed.world().size == 1:  # the captured step, where it can run
            totals = train_step_graph(self, xh, yh)
            if totals is not None:
                return self.logs_from(totals, xh.shape[0])
        backend = self.backend
        x_dev, y_dev = backend.from_numpy(xh), backend.from_numpy(yh)
        w_dev = None if wh is None else backend.from_numpy(wh)
        acc = backend.zeros((self.metric_columns(),), np.float64)
        self.bind_metrics(acc[2:])
        totals = train_global_batch(self, x_dev, y_dev, acc, w_dev, what, {"x": xh, "y": yh, "w": wh})
        return self.logs_from(totals, xh.shape[0])

    # -- loops -------------------------------------------------------------------
    def fit(
        self,
        x: Any,
        y: Any = None,
        batch_size: int | None = 32,
        epochs: int = 1,
        verbose: int | str = 1,
        callbacks: Sequence[callbacks_module.Callback] | None = None,
        validation_split: float = 0.0,
        validation_data: tuple[Any, Any] | None = None,
        shuffle: bool = True,
        initial_epoch: int = 0,
        sample_weight: Any = None,
        class_weight: dict[int, float] | None = None,
        steps_per_epoch: int | None = None,
        validation_steps: int | None = None,
    ) -> History:
        """Train from epoch ``initial_epoch`` up to ``epochs`` over (x (N, M), y), as Keras's fit.

        ``validation_split`` holds out the last fraction of the samples (before shuffling) as
        validation data; ``validation_data=(x_val, y_val)`` or ``(x_val, y_val, val_sample_weight)``
        gives them instead. ``sample_weight`` (one weight a sample) or ``class_weight`` ({class:
        weight}) weigh each row's loss as Keras does (``fcgpu.training.weights``). Shuffling draws
        from ``fcgpu.set_seed``'s generator. verbose: 0 silent, 1 (or 'auto') a progress bar per
        epoch, 2 one line per epoch. ``callbacks``: ``fcgpu.callbacks`` objects, called with Keras's
        hooks and logs; one setting ``model.stop_training`` ends training after its batch. A
        non-finite loss stops training with a warning naming the epoch and batch.
        Returns a History whose ``history`` has 'loss', the metrics, and 'val_'-prefixed ones.
        Data parallel (``fcgpu.distributed``): batch_size is the global batch, every rank passes the
        same data and gets the same, global, figures; only rank 0 prints. x may also be a generator
        or PyDataset of (x, y) batches, and validation_data too (``streaming``, ``data_adapter``).
        """
        if is_stream(x) or is_stream(validation_data) or steps_per_epoch is not None or validation_steps is not None:
            if sample_weight is not None or class_weight is not None:
                raise ValueError("sample_weight and class_weight: with a generator or PyDataset, weights are not supported "
                                 "in this release; give arrays to weigh the samples")
            return fit_stream(self, x, y, batch_size, epochs, verbose, callbacks, validation_split, validation_data,
                              shuffle, initial_epoch, steps_per_epoch, validation_steps)
        self._start_training("fit")
        comm = distributed.world()
        epochs = positive_int(epochs, "epochs", allow_zero=True)
        initial_epoch = positive_int(initial_epoch, "initial_epoch", allow_zero=True)
        batch_size = 32 if batch_size is None else positive_int(batch_size, "batch_size")
        verbose = verbosity(verbose, default=1) if comm.rank == 0 else 0
        if not isinstance(shuffle, (bool, np.bool_)):
            raise TypeError(f"shuffle: expected True or False, got {shuffle!r}")
        if isinstance(validation_split, bool) or not isinstance(validation_split, (int, float)) or not 0 <= validation_split < 1:
            raise ValueError(f"validation_split: expected a fraction in [0, 1), got {validation_split!r}")
        xh, yh = self._prepare(x, y)
        self.output_loss()  # a loss that cannot meet this output fails before anything changes
        wh = self._weights(sample_weight, class_weight, y, xh.shape[0])
        val, xh, yh, wh = validation_rows(self, validation_data, validation_split, xh, yh, wh, y)
        n = xh.shape[0]
        given = [cb for cb in callbacks if isinstance(cb, History)] if isinstance(callbacks, (list, tuple)) else []
        history = given[0] if given else History()  # Keras: fit returns the History among the callbacks
        history.epoch, history.epoch_times, history.stopped = [], [], None
        self.history = history
        history.params = {"epochs": epochs, "batch_size": batch_size, "samples": n, "steps": -(-n // batch_size),
                          "verbose": verbose}
        callback_list = quiet_callbacks(callbacks_module.CallbackList(callbacks, self, history.params), comm)
        verbose = 0 if callback_list.draws_progress else verbose  # a given ProgbarLogger draws it
        self._ensure_built(xh.shape[1])
        backend = self.backend
        settings = (batch_size, epochs, initial_epoch, bool(shuffle), float(validation_split))
        weighed = {} if wh is None else {"sample_weight": wh}
        start_from_rank0(self, "fit", {"x": xh, "y": yh, "validation": val[:2] if val else val, **weighed},
                         settings, training=True)
        x_dev, y_dev = backend.from_numpy(xh), backend.from_numpy(yh)
        w_dev = None if wh is None else backend.from_numpy(wh)
        val_dev = validation_on_device(self, val)  # each rank evaluates its share of the validation rows
        rng = get_rng()
        stepper = graph_step.stepper_for(self, x_dev, y_dev, w_dev, batch_size, epochs - initial_epoch)
        self.stop_training = False
        callback_list.call("on_train_begin", {})
        initial_epoch = self.__dict__.pop("_initial_epoch", None) or initial_epoch  # set by BackupAndRestore
        logs: dict[str, float] = {}
        for epoch in range(initial_epoch, epochs):
            start = time.perf_counter()
            callback_list.call("on_epoch_begin", epoch, {})
            # This rank's rows of each global batch: gathered (shuffled) or sliced in place.
            gathered = bool(shuffle) or stepper is not None
            batches, mine = distributed.epoch_batches(n, batch_size, comm.rank, comm.size, gathered=gathered)
            if stepper is not None:  # the captured step gathers each batch's rows itself
                xe, ye, we = stepper.epoch(rng.permutation(n) if shuffle else None, mine)
            elif shuffle:
                order = rng.permutation(n)
                perm = backend.from_numpy(order if mine is None else order[mine])
                xe, ye = x_dev[perm], y_dev[perm]
                we = None if w_dev is None else w_dev[perm]  # the weights shuffled with their rows
                del perm
            else:
                xe, ye, we = x_dev, y_dev, w_dev
            bar = progress_bar(epoch, epochs, history.params["steps"], verbose)
            logs, stopped_at = run_epoch(self, xe, ye, batches, (x_dev[0:1], y_dev[0:1]), bar, callback_list, we, stepper)
            if stopped_at is not None:
                history.record(epoch, logs, time.perf_counter() - start)
                if bar is not None:
                    bar.close()
                if self._parameters_finite():
                    why = ("the parameters are still finite: the forward pass overflowed (inputs, activations or "
                           "outputs beyond the layers' dtype range); scale the inputs or check the data")
                else:
                    why = "the parameters are no longer finite; lower the learning rate or check the data"
                if comm.rank == 0:
                    warnings.warn(f"fit: the loss was not finite at epoch {epoch + 1}, batch {stopped_at}: training "
                                  f"stopped there ({why})", RuntimeWarning, stacklevel=2)
                history.stopped = {"epoch": epoch, "batch": stopped_at}
                break
            if val_dev is not None:
                val_logs = evaluate_arrays(self, val_dev[0], val_dev[1], 256, val_dev[2], callback_list, val_dev[3])
                logs.update({f"val_{key}": value for key, value in val_logs.items()})
            finish_epoch(self, callback_list, history, epoch, epochs, logs, start, bar, verbose)
            del xe, ye, we
            if self.stop_training:
                break
        if epochs > 0:  # Keras's: the weights become their moving averages (use_ema)
            self.optimizer.finalize_variable_values(self)
        callback_list.call("on_train_end", logs)
        return history

    def logs_from(self, totals: np.ndarray, rows: int) -> dict[str, Any]:
        """{'loss': ..., metric name: ...} from a host copy of the accumulator (``metric_columns``
        entries: the sums over ``rows`` rows, then the metrics' states), without device work."""
        return metric_state.logs(self.metric_objects, totals, rows, self.output_features if self.built else 1)

    def evaluate(
        self,
        x: Any,
        y: Any = None,
        batch_size: int | None = 256,
        verbose: int | str = 0,
        callbacks: Sequence[callbacks_module.Callback] | None = None,
        return_dict: bool = False,
        sample_weight: Any = None,
        steps: int | None = None,
    ) -> dict[str, float] | list[float] | float:
        """Loss and metrics over (x, y), as Keras returns them: the loss (a float) without metrics,
        else [loss, *metrics]; ``return_dict=True`` gives {'loss': ..., 'accuracy': ...}.
        ``sample_weight`` weighs each row's loss as ``fit``'s does. x may be a generator or
        PyDataset (``steps`` batches of it, else all)."""
        if is_stream(x):
            if sample_weight is not None:
                raise ValueError("sample_weight: with a generator or PyDataset, give the weights in its batches")
            return evaluate_from(self, x, y, steps, verbose, callbacks, return_dict)
        self._require_compiled("evaluate")
        batch_size = 256 if batch_size is None else positive_int(batch_size, "batch_size")
        verbose = verbosity(verbose, default=0)
        if not isinstance(return_dict, (bool, np.bool_)):
            raise TypeError(f"return_dict: expected True or False, got {return_dict!r}")
        xh, yh = self._prepare(x, y)
        self.output_loss()
        wh = self._weights(sample_weight, None, y, xh.shape[0])
        if steps is not None:  # Keras: only the first ``steps`` batches
            rows = positive_int(steps, "steps") * batch_size
            xh, yh, wh = xh[:rows], yh[:rows], None if wh is None else wh[:rows]
        self._ensure_built(xh.shape[1])
        return keras_values(evaluate_host(self, xh, yh, wh, batch_size, verbose, callbacks), return_dict)

    def predict(
        self,
        x: Any,
        batch_size: int | None = 256,
        verbose: int | str = 0,
        callbacks: Sequence[callbacks_module.Callback] | None = None,
        steps: int | None = None,
    ) -> np.ndarray:
        """The model's outputs (N, N_last) for x (N, M), computed in batches, as a NumPy array.
        ``callbacks`` get Keras's predict hooks (a batch's logs hold its outputs, as Keras's).
        x may be a generator or PyDataset (``steps`` batches of it, else all)."""
        if is_stream(x):
            return predict_from(self, x, steps, verbose, callbacks)
        batch_size = 256 if batch_size is None else positive_int(batch_size, "batch_size")
        verbose = verbosity(verbose, default=0)
        xh = self._check_x(x)
        if steps is not None:  # Keras: only the first ``steps`` batches
            xh = xh[: positive_int(steps, "steps") * batch_size]
        self._ensure_built(xh.shape[1])
        return predict_host(self, xh, batch_size, verbose, callbacks)
