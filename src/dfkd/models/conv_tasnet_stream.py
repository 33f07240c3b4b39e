"""Causal Conv-TasNet one hop at a time: the TCN's state made explicit.

Luo & Mesgarani 2019 (arXiv 1809.07454, Sec. III-C) make Conv-TasNet causal with cumulative
layer norm and past-only padding; such a model can run frame by frame. :class:`ConvTasNetStep`
computes one encoder frame per call from the newest hop of samples and the state the previous
calls left: the last ``L - S`` input samples, the three running sums of every cLN (kept as
``(sum, sum of squares)`` plus one shared frame counter), the last ``(P - 1) d`` frames seen by
every dilated depthwise conv, and the decoder's overlap-add tail. Its forward is a plain function
of tensors, ``(hop, *state) -> (enhanced hop, *next state)``, so the same module runs in PyTorch
and exports to ONNX with the state as graph inputs and outputs (:mod:`dfkd.deploy.stream`).

Output alignment: the frame computed when samples up to ``t S + L`` have arrived completes output
samples ``[t S, t S + S)``, so the enhanced stream lags the input by ``L - S`` samples (plus the
hop being collected: ``L`` samples of algorithmic latency, :func:`conv_tasnet.latency_samples`).
The first ``L / S - 1`` hops only fill the input buffer (``warmup_hops``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import DfkdError


class ConvTasNetStep(nn.Module):
    """One streaming step of a causal :class:`ConvTasNet` (shares its modules and weights).

    Args:
        model: a :class:`~dfkd.models.conv_tasnet.ConvTasNet` built with ``causal=True`` whose window ``L`` is a multiple of its
            hop ``S`` (every preset: ``S = L / 2``).

    Attributes:
        hop: samples per call (``S``).
        delay: samples by which the output stream lags the input (``L - S``).
        warmup_hops: the first calls that only fill the window buffer (``L / S - 1``).
        state_names: names of the state tensors, in the order ``forward`` takes and returns them.
    """

    def __init__(self, model: nn.Module) -> None:  # a conv_tasnet.ConvTasNet (no import: cycle)
        super().__init__()
        if not getattr(model, "causal", False):
            raise DfkdError("convtasnet: only a causal model (preset *-causal, causal=True) "
                            "can stream; this one normalises over the whole input (gLN)")
        window = model.encoder.conv.kernel_size[0]
        hop = model.encoder.conv.stride[0]
        if window % hop:
            raise DfkdError(f"convtasnet: streaming needs the window ({window}) to be a multiple "
                            f"of the hop ({hop})")
        self.model = model.eval()
        self.hop, self.window = hop, window
        self.delay = window - hop
        self.warmup_hops = window // hop - 1
        masker = model.masker
        self.state_names: list[str] = ["frames", "window", "in_norm"]
        for index, block in enumerate(masker.blocks):
            self.state_names += [f"block{index}.in_norm", f"block{index}.dw_buffer",
                                 f"block{index}.dw_norm"]
        self.state_names.append("decoder_tail")

    def initial_state(self, batch: int = 1) -> list[torch.Tensor]:
        """The state before the first sample: zero sums and buffers."""
        weight = self.model.encoder.conv.weight
        zeros = lambda *shape: torch.zeros(*shape, dtype=weight.dtype, device=weight.device)
        state = [zeros(1), zeros(batch, self.delay), zeros(batch, 2)]
        for block in self.model.masker.blocks:
            hidden = block.dw_conv.in_channels
            state += [zeros(batch, 2), zeros(batch, hidden, block.causal_pad), zeros(batch, 2)]
        state.append(zeros(batch, self.delay))
        return state

    def forward(self, hop: torch.Tensor, *state: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``hop`` ``(batch, S)`` and the state -> the enhanced hop ``(batch, S)`` and the new state.

        The enhanced hop is output samples ``[t S, t S + S)`` of the offline forward, where
        ``t`` is the encoder frame that ends with ``hop``.
        """
        model, masker = self.model, self.model.masker
        frames, window_tail, in_norm_sums = state[0], state[1], state[2]
        frames = frames + 1
        window = torch.cat([window_tail, hop], dim=1)
        encoded = model.encoder_act(F.conv1d(window.unsqueeze(1), model.encoder.conv.weight))
        normed, in_norm_sums = masker.in_norm.step(encoded, in_norm_sums, frames)
        stream = masker.bottleneck(normed)
        new_state: list[torch.Tensor] = [frames, window[:, self.hop:], in_norm_sums]
        skip_sum = torch.zeros((), dtype=stream.dtype, device=stream.device)
        last = len(masker.blocks) - 1
        for index, block in enumerate(masker.blocks):
            sums_in, buffer, sums_dw = state[3 + 3 * index: 6 + 3 * index]
            hidden, sums_in = block.in_norm.step(block.in_act(block.in_conv(stream)), sums_in, frames)
            if block.causal_pad:
                history = torch.cat([buffer, hidden], dim=2)
                buffer = history[:, :, 1:]
            else:
                history = hidden
            hidden, sums_dw = block.dw_norm.step(block.dw_act(block.dw_conv(history)), sums_dw,
                                                 frames)
            new_state += [sums_in, buffer, sums_dw]
            if masker.use_skip:
                skip_sum = skip_sum + block.skip_conv(hidden)
                if index == last:
                    continue  # the last residual conv feeds nothing (see conv_tasnet's doc)
            stream = stream + block.res_conv(hidden)
        head = skip_sum if masker.use_skip else stream
        mask = masker.mask_act(masker.mask_conv(masker.out_act(head)))
        weight = model.decoder.conv.weight  # (N, 1, L)
        segment = torch.matmul((encoded * mask)[:, :, 0], weight.reshape(weight.shape[0], -1))
        summed = segment + F.pad(state[-1], (0, self.hop))
        new_state.append(summed[:, self.hop:])
        return (summed[:, : self.hop], *new_state)
