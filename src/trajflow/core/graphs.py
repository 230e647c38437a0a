"""A training step captured once as a CUDA graph and replayed.

A default fit's step is ~100 small kernels (drawing pairs, the network forward and backward,
AdamW); on a GPU each costs a launch of a few microseconds while its arithmetic takes less, so
the step is bound by launches (2.8 ms per step on an H100 against 0.99 ms on two CPU cores,
benchmarks/README.md). Replaying the captured step costs one launch. Everything a step draws
is already on the device (:mod:`trajflow.core.couplings`, :mod:`trajflow.core.bank`), the
optimiser is ``capturable`` and reads its learning rate from a device tensor, and the
generator's state is registered with the graph so every replay draws afresh.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from torch import Tensor

#: Eager steps on a side stream before a training step is captured as a CUDA graph (what the
#: torch docs ask: the optimiser's state and the libraries' workspaces exist before capture).
GRAPH_WARMUP = 3


def make_capturable(optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    """A resumed optimiser (perhaps saved by an eager CPU fit, or loaded to the CPU) made fit
    for graph capture: its learning rate a tensor on ``device`` (a graph reads it there; a
    host value would be frozen at capture) and its step counts on ``device``."""
    for group in optimizer.param_groups:
        group["capturable"] = True
        group["lr"] = torch.tensor(float(group["lr"]), device=device)
    for state in optimizer.state.values():
        if "step" in state:
            state["step"] = state["step"].to(device=device, dtype=torch.float32)


def on_side_stream(fn: Callable[[], Tensor]) -> Tensor:
    """``fn()`` on a fresh CUDA stream that waits for, and is waited for by, the current one."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        out = fn()
    torch.cuda.current_stream().wait_stream(side)
    return out


class GraphedStep:
    """One training step captured as a CUDA graph: :meth:`replay` runs it again on the same
    tensors (the gradients, the optimiser state and the loss live in the graph's memory), and
    the generator's draws advance on every replay."""

    def __init__(self, graph: torch.cuda.CUDAGraph, loss: Tensor):
        self._graph, self.loss = graph, loss

    @classmethod
    def capture(
        cls,
        step: Callable[[], Tensor],
        optimizer: torch.optim.Optimizer,
        generator: torch.Generator,
    ) -> GraphedStep | None:
        """Capture ``step`` (not run: call :meth:`replay`); ``None``, with a warning, if
        capture fails (training then goes on eagerly)."""
        graph = torch.cuda.CUDAGraph()
        rng_state = generator.get_state()
        try:
            graph.register_generator_state(generator)
            # gradients allocated inside the graph, so every replay writes them afresh
            optimizer.zero_grad(set_to_none=True)
            with torch.cuda.graph(graph):
                loss = step()
        except Exception as err:  # an op that cannot be captured; torch reports which
            warnings.warn(
                f"Capturing the training step as a CUDA graph failed ({err}); training goes "
                "on without it (same numbers, more kernel launches).",
                stacklevel=3,
            )
            optimizer.zero_grad(set_to_none=True)
            generator.set_state(rng_state)  # a half-registered generator draws as before
            return None
        return cls(graph, loss)

    def replay(self) -> None:
        self._graph.replay()
