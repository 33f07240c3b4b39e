"""MAC counting (FlopCounterMode + analytic recurrent term), parameter counts, real-time factor."""

from __future__ import annotations

import time

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from dfkd.models.complexity import (
    count_macs,
    count_params,
    format_count,
    real_time_factor,
    recurrent_macs,
)


class Framed(nn.Module):
    """Waveform ``(1, T)`` -> frames ``(1, T', features)`` -> ``inner`` -> its first output."""

    def __init__(self, inner: nn.Module, features: int) -> None:
        super().__init__()
        self.inner = inner
        self.features = features

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        frames = wav[:, : wav.shape[1] // self.features * self.features]
        out = self.inner(frames.reshape(1, -1, self.features))
        return out[0] if isinstance(out, tuple) else out


def test_conv1d_macs_equal_hand_count():
    # 1 s at 16 kHz, 64 filters of 16 taps, hop 8: (16000 - 16) // 8 + 1 = 1999 frames
    class Wrap(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv1d(1, 64, 16, stride=8)
            self.depthwise = nn.Conv1d(64, 64, 3, padding=2, dilation=2, groups=64)
            self.decoder = nn.ConvTranspose1d(64, 1, 16, stride=8)

        def forward(self, wav: torch.Tensor) -> torch.Tensor:
            return self.decoder(self.depthwise(self.conv(wav.unsqueeze(1))))

    frames = 1999
    hand = 64 * 16 * frames + 64 * 3 * frames + 64 * 16 * frames  # conv + depthwise + transposed
    assert count_macs(Wrap(), seconds=1.0) == hand


def test_single_layer_lstm_macs_equal_hand_count():
    # 4 gates x hidden 32 x (input 40 + hidden 32) per step, 400 steps (16000 samples / 40)
    model = Framed(nn.LSTM(40, 32, batch_first=True), features=40)
    assert count_macs(model) == 400 * 4 * 32 * (40 + 32)


def test_stacked_bidirectional_lstm_with_projection_hand_count():
    lstm = nn.LSTM(40, 32, num_layers=2, bidirectional=True, proj_size=8, batch_first=True)
    per_step = 2 * (4 * 32 * (40 + 8) + 32 * 8)  # layer 0, two directions, projection 32 -> 8
    per_step += 2 * (4 * 32 * (2 * 8 + 8) + 32 * 8)  # layer 1 reads both directions' 8 outputs
    with pytest.warns(UserWarning, match="projections"):  # oneDNN fallback note from torch
        assert count_macs(Framed(lstm, features=40)) == 400 * per_step


def test_gru_is_counted_once():
    # The counter sees a GRU's matmuls on CPU; the analytic term must replace, not add to, them.
    model = Framed(nn.GRU(40, 32, batch_first=True), features=40)
    assert count_macs(model) == 400 * 3 * 32 * (40 + 32)


def test_recurrent_macs_of_packed_sequence_counts_real_steps():
    lstm = nn.LSTM(8, 4)
    packed = pack_padded_sequence(torch.randn(5, 2, 8), lengths=[5, 3])
    counted = {}
    lstm.register_forward_hook(lambda m, inputs, out: counted.update(steps=inputs[0].data.shape[0]))
    lstm(packed)
    assert counted["steps"] == 8
    assert recurrent_macs(lstm, 8) == 8 * 4 * 4 * (8 + 4)


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("need_weights", [False, True])
def test_multihead_attention_is_counted_on_every_path(batch_first, need_weights):
    # no-grad + batch_first takes torch's fused fast path, need_weights=False the SDPA kernel:
    # both are invisible to FlopCounterMode without dfkd's extra formulas.
    embed, heads, length = 32, 4, 50

    class Attention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.mha = nn.MultiheadAttention(embed, heads, batch_first=batch_first)

        def forward(self, wav: torch.Tensor) -> torch.Tensor:
            x = wav[:, : length * embed].reshape(1, length, embed)
            if not batch_first:
                x = x.transpose(0, 1)
            return self.mha(x, x, x, need_weights=need_weights)[0]

    hand = length * embed * 3 * embed + length * embed * embed + 2 * length * length * embed
    assert count_macs(Attention()) == hand


def test_count_macs_restores_training_mode_and_scales_with_length():
    model = nn.Sequential(nn.Unflatten(1, (1, -1)), nn.Conv1d(1, 8, 4, stride=4))
    model.train()
    one = count_macs(model, seconds=1.0)
    assert model.training
    assert count_macs(model, seconds=2.0) == 2 * one == 2 * 8 * 4 * 4000


def test_count_params_counts_all_or_trainable():
    model = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 1))
    model[1].requires_grad_(False)
    assert count_params(model) == 8 + 3
    assert count_params(model, trainable_only=True) == 8


class Sleeper(nn.Module):
    """Takes 50 ms per forward pass, whatever the input."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        time.sleep(0.05)
        return wav * self.scale


def test_real_time_factor_is_wall_time_over_duration():
    model = Sleeper().train()
    threads = torch.get_num_threads()
    rtf = real_time_factor(model, seconds=0.5, threads=1, repeats=3)
    assert 0.1 <= rtf < 0.2  # 50 ms for 0.5 s of audio, plus a little overhead
    assert model.training
    assert torch.get_num_threads() == threads


@pytest.mark.parametrize(
    "value, text",
    [(4_984_497, "4.98 M"), (9.67e9, "9.67 G"), (823_000_000, "823 M"), (47_085, "47.1 k"),
     (999, "999")],
)
def test_format_count(value, text):
    assert format_count(value) == text
