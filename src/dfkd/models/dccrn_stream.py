"""Causal DCCRN-CL one STFT frame at a time: the U-Net's and the LSTM's state made explicit.

Hu et al., "DCCRN: Deep Complex Convolution Recurrent Network for Phase-Aware Speech
Enhancement", Interspeech 2020 (arXiv 2008.00264), Sec. 2.2 and 3.3: in the causal setting the
time kernels are padded on the past side only and the LSTM is unidirectional, so the network can
run frame by frame, as facebookresearch/denoiser's ``DemucsStreamer`` runs causal DEMUCS.
:class:`DCCRNStep` computes one STFT frame per call from the newest hop of samples and the state
the previous calls left:

- ``window``: the last ``win - hop`` input samples (the STFT frame is those plus the new hop);
- ``encoder<i>`` / ``decoder<i>`` / ``output_layer``: the last ``kt - 1`` input frames of every
  time kernel (encoders: the past-side zero padding; decoders: the transposed conv's output
  frame t is a sum over input frames ``t - kt + 1 .. t``, the future frames the offline model
  trims never being formed);
- ``lstm<i>.h`` / ``lstm<i>.c``: the hidden and cell state of the real LSTM pair (``re``, ``im``)
  of every complex LSTM layer, ``(2, 2 * batch, hidden)``;
- ``istft_tail``: the inverse STFT's overlap-add tail, the ``win - hop`` samples after the hop
  this frame completes (the offline synthesis divides by no window sum, so neither does this).

BatchNorm runs with its fixed eval-mode statistics (the step puts the model in eval mode).
Its forward is a plain function of tensors, ``(hop, *state) -> (enhanced hop, *next state)``, so
the same module runs in PyTorch and exports to ONNX with the state as graph inputs and outputs
(:mod:`dfkd.deploy.stream`).

Output alignment, as :class:`~.conv_tasnet_stream.ConvTasNetStep`'s: the frame computed when
samples up to ``t hop + win`` have arrived completes output samples ``[t hop, t hop + hop)``, so
the enhanced stream lags the input by ``win - hop`` samples (``win`` of algorithmic latency with
the hop being collected, :func:`dccrn.latency_samples`); the first ``win / hop - 1`` hops only fill
the window (``warmup_hops``). The offline STFT has no centring or edge padding and zero-fills the
samples after the last whole frame, which is what ``Streamer.flush`` returns.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import DfkdError
from .complex_layers import (
    ComplexConvTranspose2d,
    bound_mask,
    complex_block_bias,
    complex_block_weight,
    complex_multiply,
)


def _newest_transposed_frame(layer: ComplexConvTranspose2d, history: torch.Tensor) -> torch.Tensor:
    """Output frame t of a causal complex transposed conv from its input frames ``t - kt + 1 .. t``.

    On ``kt`` input frames the full transposed conv gives ``2 kt - 1`` frames; a time padding of
    ``kt - 1`` (removed from both ends) leaves the middle one, the only one all ``kt`` inputs
    reach, which is the frame the offline causal decoder keeps at t. Bias added once, as offline.
    """
    kt = layer.re.weight.shape[-1]
    weight = complex_block_weight(layer.re.weight, layer.im.weight, transposed=True)
    y = F.conv_transpose2d(history.flatten(1, 2), weight, complex_block_bias(layer.re, layer.im),
                           layer.stride, (layer.padding[0], kt - 1), layer.output_padding)
    return y.unflatten(1, (2, -1))


def _push(buffer: torch.Tensor, frame: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(history of kt frames, the next buffer of kt - 1)`` from a frame buffer and a new frame."""
    history = torch.cat([buffer, frame], dim=-1)
    return history, history[..., 1:]


class DCCRNStep(nn.Module):
    """One streaming step of a causal :class:`~.dccrn.DCCRN` (shares its modules and weights).

    Args:
        model: a DCCRN built with ``causal=True`` (presets ``tiny-causal``, ``micro-causal``)
            whose STFT window is a multiple of its hop (both presets: 256 / 128).

    Attributes:
        hop: samples per call (the STFT hop).
        delay: samples by which the output stream lags the input (``win - hop``).
        warmup_hops: the first calls that only fill the window buffer (``win / hop - 1``).
        state_names: names of the state tensors, in the order ``forward`` takes and returns them.
    """

    def __init__(self, model: nn.Module) -> None:  # a dccrn.DCCRN (no import: cycle)
        super().__init__()
        if not getattr(model, "causal", False):
            raise DfkdError("dccrn: only a causal model (preset tiny-causal or micro-causal, "
                            "causal=True) can stream; this one looks one frame ahead per level")
        stft = model.stft
        window, hop = stft.win_length, stft.hop_length
        if window % hop:
            raise DfkdError(f"dccrn: streaming needs the STFT window ({window}) to be a multiple "
                            f"of the hop ({hop})")
        self.model = model.eval()  # BatchNorm with its running statistics
        self.hop, self.window = hop, window
        self.delay = window - hop
        self.warmup_hops = window // hop - 1
        # (name, complex channels, bins, kt - 1) of every frame buffer, in forward's order
        bins = [stft.n_freqs]
        for encoder in model.encoders:
            bins.append(bins[-1] // encoder.conv.stride[0])
        self._encoder_buffers = [
            (f"encoder{i}", encoder.conv.re.weight.shape[1], bins[i], encoder.causal_pad)
            for i, encoder in enumerate(model.encoders) if encoder.causal_pad]
        layers = [(f"decoder{i}", d.conv, d.causal_trim) for i, d in enumerate(model.decoders)]
        layers.append(("output_layer", model.output_layer, model.output_trim))
        n_levels = len(model.encoders)
        self._decoder_buffers = [  # decoder i mirrors level L-1-i; weights (in, out, kf, kt)
            (name, conv.re.weight.shape[0], bins[n_levels - i], frames)
            for i, (name, conv, frames) in enumerate(layers) if frames]
        self._lstm_sizes = [layer.re.hidden_size for layer in model.bottleneck.rnn.layers]
        self.state_names: list[str] = [
            "window", *(b[0] for b in self._encoder_buffers),
            *(f"lstm{i}.{part}" for i in range(len(self._lstm_sizes)) for part in ("h", "c")),
            *(b[0] for b in self._decoder_buffers), "istft_tail"]
        self.eval()

    def train(self, mode: bool = True) -> DCCRNStep:
        """Always eval mode: one frame has no batch statistics, BatchNorm must use its running
        ones. (``torch.onnx.export`` restores the module's mode after tracing; a step left in
        training mode would switch the shared model to training mode.)"""
        return super().train(False)

    def initial_state(self, batch: int = 1) -> list[torch.Tensor]:
        """The state before the first sample: zeros (the causal padding, empty LSTM, no tail)."""
        weight = self.model.stft.basis
        zeros = lambda *shape: torch.zeros(*shape, dtype=weight.dtype, device=weight.device)
        buffers = lambda table: [zeros(batch, 2, channels, n_bins, frames)  # noqa: E731
                                 for _, channels, n_bins, frames in table]
        lstm = [zeros(2, 2 * batch, hidden) for hidden in self._lstm_sizes for _ in ("h", "c")]
        return [zeros(batch, self.delay), *buffers(self._encoder_buffers), *lstm,
                *buffers(self._decoder_buffers), zeros(batch, self.delay)]

    def forward(self, hop: torch.Tensor, *state: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``hop`` ``(batch, hop)`` and the state -> the enhanced hop ``(batch, hop)`` and the new
        state: output samples ``[t hop, t hop + hop)`` of the offline forward, where ``t`` is the
        STFT frame that ends with ``hop``."""
        model = self.model
        old = iter(state)  # the state tensors, taken in state_names order
        window = torch.cat([next(old), hop], dim=1)
        new_state: list[torch.Tensor] = [window[:, self.hop:]]
        spec = F.conv1d(window.unsqueeze(1), model.stft.basis)  # (B, 2 F, 1): the newest frame
        spec = spec.unflatten(1, (2, model.stft.n_freqs))  # (B, 2, F, 1)
        x = spec.unsqueeze(2)
        skips = []
        for encoder in model.encoders:
            if encoder.causal_pad:
                x, buffer = _push(next(old), x)
                new_state.append(buffer)
            x = encoder.act(encoder.norm(encoder.conv(x)))
            skips.append(x)
        x = torch.cat([self._bottleneck(x, old, new_state), x], dim=2)
        for decoder, skip in zip(model.decoders, reversed(skips[:-1]), strict=True):
            if decoder.causal_trim:
                x, buffer = _push(next(old), x)
                new_state.append(buffer)
            x = torch.cat([decoder.act(decoder.norm(_newest_transposed_frame(decoder.conv, x))),
                           skip], dim=2)
        if model.output_trim:
            x, buffer = _push(next(old), x)
            new_state.append(buffer)
        raw = _newest_transposed_frame(model.output_layer, x)
        enhanced = complex_multiply(bound_mask(raw[:, :, 0], model.mask_bound), spec)
        basis = model.stft.basis  # (2 F, 1, win): synthesis of one frame is one matrix product
        segment = torch.matmul(enhanced.flatten(1), basis.reshape(basis.shape[0], -1))
        summed = segment + F.pad(next(old), (0, self.hop))
        new_state.append(summed[:, self.hop:])
        return (summed[:, : self.hop], *new_state)

    def _bottleneck(self, x: torch.Tensor, old: Iterator[torch.Tensor],
                    new_state: list[torch.Tensor]) -> torch.Tensor:
        """The complex LSTM + Linear on one frame ``(B, 2, C, F, 1)``, taking (h, c) per layer
        from ``old`` and appending the next ones to ``new_state`` (the rule of
        :class:`~.complex_layers.ComplexMultiply`: ``re(a) - im(b)``, ``re(b) + im(a)``)."""
        bottleneck = self.model.bottleneck
        sequence = x.permute(0, 1, 4, 2, 3).flatten(3)  # (B, 2, 1, C * F), channel-major
        for layer in bottleneck.rnn.layers:
            h, c = next(old), next(old)
            both = sequence.flatten(0, 1)  # (2 B, 1, D): real and imaginary part as a batch
            out_re, (h_re, c_re) = layer.re(both, (h[0:1], c[0:1]))
            out_im, (h_im, c_im) = layer.im(both, (h[1:2], c[1:2]))
            out_re, out_im = out_re.unflatten(0, (-1, 2)), out_im.unflatten(0, (-1, 2))
            sequence = torch.stack([out_re[:, 0] - out_im[:, 1], out_re[:, 1] + out_im[:, 0]], 1)
            new_state += [torch.cat([h_re, h_im]), torch.cat([c_re, c_im])]
        out = bottleneck.linear(sequence)
        return out.unflatten(3, (bottleneck.channels, bottleneck.n_freqs)).permute(0, 1, 3, 4, 2)
