"""The workloads each worker process measures: one Dense layer's GEMMs, forward, backward and training
step, and an MLP's training step, on an fcgpu backend (``FcgpuWorker``) or in PyTorch (``TorchWorker``).

Each ``case`` returns its operations as ``Op`` pairs for a timer of :mod:`fcgpu.bench.timers`.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

from .config import MODEL_ACTIVATION, layer_activations
from .timers import DeviceTimer, HostTimer, Op, Timer, TorchCudaTimer

__all__ = ["FcgpuWorker", "GRAPH_BATCHES", "GRAPH_EPOCHS", "TorchWorker", "blas_info", "host_data", "make_worker"]

# Learning rate of the benchmark's SGD: small, so repeated steps on one batch stay finite.
_LR = 1e-3

# The graphs comparison (``--graphs``): fit over GRAPH_BATCHES batches for GRAPH_EPOCHS[0] and for
# GRAPH_EPOCHS[1] epochs; the difference of the two over the extra steps is the time of a step in fit,
# without fit's one-off costs (data upload, the warm-up step and the capture).
GRAPH_BATCHES = 8
GRAPH_EPOCHS = (1, 4)

# PyTorch's function and module class for the fcgpu activations it has ('linear' is the identity);
# a name of fcgpu.activations.ACTIVATIONS missing here is a case the torch workers report as failed.
_TORCH_ACTIVATIONS: dict[str, tuple[str, str]] = {
    "relu": ("relu", "ReLU"),
    "sigmoid": ("sigmoid", "Sigmoid"),
    "tanh": ("tanh", "Tanh"),
}


def host_data(batch: int, m: int, n: int, seed: int = 0) -> dict[str, Any]:
    """The same inputs for every library: x (batch, m), an upstream gradient dy (batch, n) and class labels."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return {
        "x": rng.standard_normal((batch, m), dtype=np.float64),
        "dy": rng.standard_normal((batch, n), dtype=np.float64) / batch,
        "labels": rng.integers(0, n, size=batch).astype(np.int64),
    }


class FcgpuWorker:
    """Cases on an fcgpu backend ('numpy' or 'cupy')."""

    def __init__(self, kind: str) -> None:
        import numpy as np

        import fcgpu as fc

        self.fc, self.np, self.kind = fc, np, kind
        self.backend = fc.set_backend(kind)
        time_calls = self.backend.device_timer()
        self.timer: Timer = DeviceTimer(time_calls) if time_calls is not None else HostTimer()

    def info(self) -> dict[str, Any]:
        fc, np = self.fc, self.np
        info: dict[str, Any] = {"fcgpu": fc.__version__, "numpy": np.__version__, "timer": self.timer.name}
        info.update({k: v for k, v in self.backend.info().items() if k != "backend"})
        info["blas"] = blas_info()
        return info

    def _model(self, widths: Sequence[int], activation: str, dtype: str) -> Any:
        fc = self.fc
        acts = layer_activations(widths, activation)
        layers = [fc.Dense(w, activation=act, dtype=dtype) for w, act in zip(widths[1:], acts)]
        model = fc.Sequential(layers)
        model.compile(loss=fc.losses.SoftmaxCrossEntropy(), optimizer=fc.optimizers.SGD(lr=_LR))
        model.build((None, widths[0]))
        return model

    @staticmethod
    def _step(model: Any, x_host: Any, labels_host: Any) -> Callable[[], float]:
        """The per-batch step of fit(): data checked and copied to the device once, no per-call host
        checks; the loss is read as a Python float, as PyTorch's step reads loss.item()."""
        x_dev, y_dev = model.prepare_data(x_host, labels_host)
        return lambda: float(model.train_batch(x_dev, y_dev)[0])

    def case(self, batch: int, m: int, n: int, activation: str, dtype: str, ops: Sequence[str]) -> dict[str, Op]:
        fc, backend = self.fc, self.backend
        xp = backend.xp
        data = host_data(batch, m, n)
        x = backend.from_numpy(data["x"].astype(dtype))
        dy = backend.from_numpy(data["dy"].astype(dtype))
        layer = fc.Dense(n, activation=activation, dtype=dtype)
        layer.build(m)
        w = layer.kernel
        y, dw, dx = backend.empty((batch, n), dtype), backend.empty((m, n), dtype), backend.empty((batch, m), dtype)

        def gemm() -> None:
            xp.matmul(x, w, out=y)
            xp.matmul(x.T, dy, out=dw)
            xp.matmul(dy, w.T, out=dx)

        def fwd_bwd() -> None:
            layer.forward(x)
            layer.backward(dy)

        layer.forward(x)  # backward alone needs a forward's cache
        table: dict[str, Op] = {
            "gemm": (None, gemm),
            "forward": (None, lambda: layer.forward(x)),
            "backward": (None, lambda: layer.backward(dy)),
            "fwd_bwd": (None, fwd_bwd),
        }
        if "step" in ops:
            model = self._model([m, n], activation, dtype)
            table["step"] = (None, self._step(model, data["x"].astype(dtype), data["labels"]))
        return {k: v for k, v in table.items() if k in ops}

    def model_case(self, widths: Sequence[int], batch: int, dtype: str) -> dict[str, Op]:
        data = host_data(batch, widths[0], widths[-1])
        model = self._model(widths, MODEL_ACTIVATION, dtype)
        return {"step": (None, self._step(model, data["x"].astype(dtype), data["labels"]))}

    def graphs_case(self, widths: Sequence[int], batch: int, dtype: str) -> dict[str, Op]:
        """fit of the MLP ``widths`` with CUDA graphs off and on (``fcgpu.config.set_graphs``), over
        GRAPH_BATCHES batches for each of GRAPH_EPOCHS: ops 'off_E' and 'on_E'. CuPy only."""
        if self.kind != "cupy":
            raise RuntimeError(f"the graphs comparison is for the cupy backend, not {self.kind}")
        fc = self.fc
        rows = batch * GRAPH_BATCHES
        data = host_data(rows, widths[0], widths[-1])
        x, labels = data["x"].astype(dtype), data["labels"]
        table: dict[str, Op] = {}
        for flag, name in ((False, "off"), (True, "on")):
            model = self._model(widths, MODEL_ACTIVATION, dtype)
            for epochs in GRAPH_EPOCHS:
                def run(model: Any = model, flag: bool = flag, epochs: int = epochs) -> None:
                    previous = fc.config.graphs_enabled()
                    fc.config.set_graphs(flag)
                    try:
                        model.fit(x, labels, batch_size=batch, epochs=epochs, verbose=0, shuffle=True)
                    finally:
                        fc.config.set_graphs(previous)

                table[f"{name}_{epochs}"] = (None, run)
        return table


class TorchWorker:
    """The same cases in PyTorch (an outside reference; never a dependency of fcgpu)."""

    def __init__(self, kind: str) -> None:
        import torch

        self.torch, self.kind = torch, kind
        self.device = torch.device("cuda" if kind == "torch-cuda" else "cpu")
        if kind == "torch-cuda" and not torch.cuda.is_available():
            raise RuntimeError("torch has no usable CUDA device here")
        self.timer: Timer = TorchCudaTimer(torch) if kind == "torch-cuda" else HostTimer()

    def info(self) -> dict[str, Any]:
        torch = self.torch
        config = torch.__config__.show()
        blas = next((part.split("=", 1)[1] for part in config.replace(",", " ").split() if part.startswith("BLAS_INFO=")),
                    None)
        info: dict[str, Any] = {
            "torch": torch.__version__,
            "timer": self.timer.name,
            "threads": torch.get_num_threads(),
            "torch_blas": blas,  # linked into torch, so threadpoolctl may not list it
            "blas": blas_info(),
        }
        if self.kind == "torch-cuda":
            info["device"] = torch.cuda.get_device_name(0)
            info["cuda"] = torch.version.cuda
            try:  # the roofline peaks, where fcgpu's CuPy backend can read them
                from .. import backends

                info.update({k: v for k, v in backends.resolve_backend("cupy")[0].info().items() if k.startswith("peak")})
            except Exception:
                pass
        return info

    def _tensor(self, a: Any, dtype: str, grad: bool = False) -> Any:
        t = self.torch.from_numpy(a.astype(dtype)).to(self.device)
        return t.requires_grad_(grad)

    @staticmethod
    def _counterpart(activation: str) -> tuple[str, str]:
        if activation not in _TORCH_ACTIVATIONS:
            raise ValueError(f"activation {activation!r}: no PyTorch counterpart known to the benchmark "
                             f"(it has linear, {', '.join(_TORCH_ACTIVATIONS)})")
        return _TORCH_ACTIVATIONS[activation]

    def _act(self, activation: str) -> Callable[[Any], Any]:
        if activation == "linear":
            return lambda z: z
        return getattr(self.torch, self._counterpart(activation)[0])

    def _net(self, widths: Sequence[int], activation: str, dtype: str) -> Any:
        nn = self.torch.nn
        mods: list[Any] = []
        for a, b, act in zip(widths[:-1], widths[1:], layer_activations(widths, activation)):
            mods.append(nn.Linear(a, b))
            if act != "linear":
                mods.append(getattr(nn, self._counterpart(act)[1])())
        return nn.Sequential(*mods).to(device=self.device, dtype=getattr(self.torch, dtype))

    def _step(self, net: Any, x: Any, labels: Any) -> Callable[[], Any]:
        torch = self.torch
        opt = torch.optim.SGD(net.parameters(), lr=_LR)
        loss_fn = torch.nn.CrossEntropyLoss()

        def step() -> float:
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(net(x), labels)
            loss.backward()
            opt.step()
            return loss.item()  # fcgpu's step returns the loss as a Python float too

        return step

    def graphs_case(self, widths: Sequence[int], batch: int, dtype: str) -> dict[str, Op]:
        """The MLP's step in eager mode and as ``torch.compile(mode="reduce-overhead")`` of the same
        step function (CUDA graphs): ops 'eager' and 'reduce_overhead'. torch-cuda only."""
        torch = self.torch
        if self.kind != "torch-cuda":
            raise RuntimeError(f"the graphs comparison is for torch-cuda, not {self.kind}")
        data = host_data(batch, widths[0], widths[-1])
        x = self._tensor(data["x"], dtype)
        labels = torch.from_numpy(data["labels"]).to(self.device)
        eager = self._step(self._net(widths, MODEL_ACTIVATION, dtype), x, labels)
        compiled = torch.compile(self._step(self._net(widths, MODEL_ACTIVATION, dtype), x, labels),
                                 mode="reduce-overhead")
        return {"eager": (None, eager), "reduce_overhead": (None, compiled)}

    def case(self, batch: int, m: int, n: int, activation: str, dtype: str, ops: Sequence[str]) -> dict[str, Op]:
        torch = self.torch
        data = host_data(batch, m, n)
        x = self._tensor(data["x"], dtype, grad=True)
        x_plain = x.detach()
        dy = self._tensor(data["dy"], dtype)
        labels = torch.from_numpy(data["labels"]).to(self.device)
        lin = torch.nn.Linear(m, n).to(device=self.device, dtype=getattr(torch, dtype))
        act = self._act(activation)
        w = lin.weight.detach().t().contiguous()  # (M, N) as fcgpu stores it
        y = torch.empty((batch, n), device=self.device, dtype=w.dtype)
        dw = torch.empty((m, n), device=self.device, dtype=w.dtype)
        dx = torch.empty((batch, m), device=self.device, dtype=w.dtype)

        def gemm() -> None:
            torch.mm(x_plain, w, out=y)
            torch.mm(x_plain.t(), dy, out=dw)
            torch.mm(dy, w.t(), out=dx)

        def clear_grads() -> None:
            x.grad = lin.weight.grad = lin.bias.grad = None

        graph: dict[str, Any] = {}

        def new_graph() -> None:
            clear_grads()
            graph["y"] = act(lin(x))

        def fwd_bwd() -> None:
            act(lin(x)).backward(dy)

        table: dict[str, Op] = {
            "gemm": (None, gemm),
            "forward": (None, lambda: act(lin(x))),
            # The graph is rebuilt outside the timed call, so this is the backward pass alone.
            "backward": (new_graph, lambda: graph["y"].backward(dy)),
            "fwd_bwd": (clear_grads, fwd_bwd),
        }
        if "step" in ops:
            net = self._net([m, n], activation, dtype)
            table["step"] = (None, self._step(net, x_plain, labels))
        return {k: v for k, v in table.items() if k in ops}

    def model_case(self, widths: Sequence[int], batch: int, dtype: str) -> dict[str, Op]:
        torch = self.torch
        data = host_data(batch, widths[0], widths[-1])
        x = self._tensor(data["x"], dtype)
        labels = torch.from_numpy(data["labels"]).to(self.device)
        return {"step": (None, self._step(self._net(widths, MODEL_ACTIVATION, dtype), x, labels))}


def blas_info() -> list[dict[str, Any]]:
    """BLAS and OpenMP libraries loaded in this process, from threadpoolctl (empty if it is missing)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    keep = ("user_api", "internal_api", "version", "architecture", "num_threads", "threading_layer", "prefix")
    return [{k: lib.get(k) for k in keep if lib.get(k) is not None} for lib in threadpool_info()]


def make_worker(kind: str) -> Any:
    if kind in ("numpy", "cupy"):
        return FcgpuWorker(kind)
    if kind in ("torch-cpu", "torch-cuda"):
        return TorchWorker(kind)
    raise ValueError(f"unknown worker kind {kind!r}")
