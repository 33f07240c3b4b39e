"""Model complexity: parameters, multiply-accumulates (MACs) and CPU real-time factor.

MACs are what the field reports beside parameters (the DFKD paper, arXiv 2502.04711, compares
students by both). We count them for one forward pass of a batch of one on ``seconds`` of audio:

* ``torch.utils.flop_counter.FlopCounterMode`` counts matrix products and convolutions (plain,
  grouped/depthwise and transposed) as FLOPs = 2 x MACs, so its total is halved. Two attention
  kernels that it does not know on CPU are added to it with the same rule as its own SDPA formula:
  ``_scaled_dot_product_flash_attention_for_cpu`` (``nn.MultiheadAttention`` with
  ``need_weights=False``) and ``_native_multi_head_attention`` (the batch-first inference fast
  path).
* Recurrent layers (``nn.LSTM``, ``nn.GRU``, ``nn.RNN``) are counted analytically from the shapes
  they actually receive (forward hooks), because the counter sees nothing of a fused LSTM kernel
  (and the whole GRU only on some back ends). Whatever the counter did see inside a recurrent
  layer is replaced by the analytic count, so nothing is counted twice. See
  :func:`recurrent_macs` for exactly what is counted.

Element-wise work (activations, gates, norms, biases, mask products) is not counted, as is usual
for MAC figures; it is a few percent of the total for these models.
"""

from __future__ import annotations

import math
import statistics
import time
from typing import Any, Callable

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence
from torch.utils.flop_counter import FlopCounterMode

from . import count_params  # noqa: F401  re-exported: every size measure of a model is here

_GATES = {nn.LSTM: 4, nn.GRU: 3, nn.RNN: 1}

aten = torch.ops.aten


def recurrent_macs(module: nn.RNNBase, steps: int) -> int:
    """MACs of a recurrent layer over ``steps`` (batch x time) input vectors.

    Per input vector, per layer and per direction we count the input product ``G*H x I`` and the
    hidden product ``G*H x H_r``, with G gates (LSTM 4, GRU 3, RNN 1), H = ``hidden_size``,
    H_r = ``proj_size`` or H, and I = ``input_size`` for the first layer and
    ``num_directions * H_r`` above it; an LSTM with ``proj_size`` adds its ``H_r x H`` projection.
    Gate non-linearities, element-wise products and biases are not counted.

    Args:
        module: an ``nn.LSTM``, ``nn.GRU`` or ``nn.RNN``.
        steps: number of input vectors it processed (batch size x sequence length, or the row
            count of a ``PackedSequence``).
    """
    gates = next(g for cls, g in _GATES.items() if isinstance(module, cls))
    hidden = module.hidden_size
    proj = getattr(module, "proj_size", 0) or 0
    recurrent = proj or hidden
    directions = 2 if module.bidirectional else 1
    per_step = 0
    for layer in range(module.num_layers):
        inputs = module.input_size if layer == 0 else directions * recurrent
        layer_macs = gates * hidden * (inputs + recurrent) + (hidden * proj if proj else 0)
        per_step += directions * layer_macs
    return steps * per_step


def _steps(module: nn.RNNBase, inputs: tuple[Any, ...]) -> int:
    x = inputs[0]
    if isinstance(x, PackedSequence):
        return int(x.data.shape[0])
    if x.dim() == 2:  # unbatched (time, features)
        return int(x.shape[0])
    return int(x.shape[0] * x.shape[1])


def _sdpa_cpu_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    # q (b, h, Lq, d) @ k^T -> (b, h, Lq, Lk); @ v (b, h, Lk, dv): 2 FLOPs per MAC
    b, h, lq, d = query_shape
    lk, dv = key_shape[2], value_shape[3]
    return 2 * b * h * lq * lk * (d + dv)


def _native_mha_flops(
    query_shape, key_shape, value_shape, embed_dim, num_heads, *args, out_shape=None, **kwargs
) -> int:
    # batch-first (b, L, E): packed q/k/v projections, QK^T and AV over all heads, out projection
    b, lq, e = query_shape
    lk = key_shape[1]
    projections = b * lq * e * e + 2 * b * lk * e * e + b * lq * e * e
    attention = 2 * b * lq * lk * e
    return 2 * (projections + attention)


def _custom_formulas() -> dict[Any, Callable[..., int]]:
    formulas: dict[Any, Callable[..., int]] = {}
    for name, formula in (
        ("_scaled_dot_product_flash_attention_for_cpu", _sdpa_cpu_flops),
        ("_native_multi_head_attention", _native_mha_flops),
    ):
        if hasattr(aten, name):
            formulas[getattr(aten, name)] = formula
    return formulas


def _example_input(model: nn.Module, seconds: float, sample_rate: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    samples = max(1, int(round(seconds * sample_rate)))
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    return (0.1 * torch.randn(1, samples, generator=generator)).to(device)


def count_macs(model: nn.Module, seconds: float = 1.0, sample_rate: int = 16000) -> int:
    """MACs of one forward pass of ``model`` on one ``seconds``-long waveform.

    ``model`` maps ``(batch, samples) -> (batch, samples)``; it is run once in eval mode under
    ``torch.no_grad()`` on a ``(1, seconds * sample_rate)`` input (training mode is restored).

    Args:
        model: the model to count.
        seconds: length of the input audio.
        sample_rate: its sample rate (every dfkd model runs at 16 kHz).

    Returns:
        FlopCounterMode's FLOPs / 2 plus the analytic count of recurrent layers (module doc).
    """
    noisy = _example_input(model, seconds, sample_rate)
    counter = FlopCounterMode(display=False, custom_mapping=_custom_formulas())
    recurrent = {"analytic": 0, "seen_by_counter": 0}
    started: dict[int, list[int]] = {}

    def before(module: nn.Module, inputs: tuple[Any, ...]) -> None:
        started.setdefault(id(module), []).append(counter.get_total_flops())

    def after(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        recurrent["seen_by_counter"] += counter.get_total_flops() - started[id(module)].pop()
        recurrent["analytic"] += recurrent_macs(module, _steps(module, inputs))

    handles = []
    for module in model.modules():
        if isinstance(module, tuple(_GATES)):
            handles.append(module.register_forward_pre_hook(before))
            handles.append(module.register_forward_hook(after))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), counter:
            model(noisy)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    counted_flops = counter.get_total_flops() - recurrent["seen_by_counter"]
    return counted_flops // 2 + recurrent["analytic"]


def real_time_factor(
    model: nn.Module,
    seconds: float = 1.0,
    threads: int | None = None,
    repeats: int = 5,
    warmup: int = 1,
    sample_rate: int = 16000,
) -> float:
    """CPU real-time factor: wall time of one forward pass / duration of the audio.

    The median over ``repeats`` timed runs after ``warmup`` untimed ones, batch of one, eval mode,
    ``torch.no_grad()``. Below 1 the model runs faster than real time. The thread count is
    restored afterwards.

    Args:
        model: the model to time.
        seconds: length of the input audio.
        threads: ``torch.set_num_threads`` for the measurement (``None``: leave as is).
        repeats: timed runs (the median is returned).
        warmup: untimed runs first (allocator and kernel selection).
        sample_rate: sample rate of the input.
    """
    noisy = _example_input(model, seconds, sample_rate)
    previous_threads = torch.get_num_threads()
    was_training = model.training
    model.eval()
    times = []
    try:
        if threads:
            torch.set_num_threads(threads)
        with torch.no_grad():
            for run in range(warmup + max(1, repeats)):
                start = time.perf_counter()
                model(noisy)
                if run >= warmup:
                    times.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(previous_threads)
        model.train(was_training)
    return statistics.median(times) / (noisy.shape[-1] / sample_rate)


def format_count(value: float, digits: int = 3) -> str:
    """``4984497 -> '4.98 M'``, ``9.7e9 -> '9.70 G'``: a count with a metric prefix, 3 digits."""
    if value == 0 or not math.isfinite(value):
        return str(value)
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            scaled = value / factor
            decimals = max(0, digits - 1 - int(math.floor(math.log10(abs(scaled)))))
            return f"{scaled:.{decimals}f} {prefix}"
    return f"{value:.0f}"
