"""Conv-TasNet: parity with asteroid 0.7.0, full-size shapes, lengths, ONNX export.

Preset size ratios (student vs paper, tiny vs small) are checked for every architecture in
test_presets.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dfkd import models
from dfkd.errors import DfkdError
from dfkd.deploy.export import export_onnx, onnx_forward, onnx_session
from dfkd.models import conv_tasnet
from dfkd.models.complexity import count_macs


@pytest.fixture(scope="module")
def fixture(asteroid_dir):
    return torch.load(asteroid_dir / "convtasnet_small.pt", map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def paper_shapes(asteroid_dir):
    return json.loads((asteroid_dir / "convtasnet_default_shapes.json").read_text())


def _assert_matches(y: torch.Tensor, y_ref: torch.Tensor) -> None:
    # tolerance relative to the reference's peak, as the fixtures' README recommends
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5 * y_ref.abs().max().item())


@pytest.mark.parametrize("inputs, outputs", [("input", "output"), ("input_odd", "output_odd")])
def test_reproduces_asteroid_outputs(fixture, inputs, outputs):
    model = models.from_asteroid(fixture)
    with torch.no_grad():
        enhanced = model(fixture[inputs])
    reference = fixture[outputs].squeeze(1)
    assert enhanced.shape == reference.shape
    _assert_matches(enhanced, reference)


def test_unframed_tail_is_exactly_zero(fixture):
    model = models.from_asteroid(fixture)
    with torch.no_grad():
        enhanced = model(fixture["input_odd"])
    # 12345 samples, L=16, S=8: (12345 - 16) % 8 = 1 sample after the last frame
    assert torch.all(enhanced[:, -1:] == 0)
    assert torch.all(fixture["output_odd"][..., -1:] == 0)
    assert enhanced[:, -2].abs().item() > 0


def test_config_from_asteroid_reads_every_setting(fixture):
    config = conv_tasnet.config_from_asteroid(fixture["model_args"])
    assert config == dict(
        n_filters=64, kernel_size=16, stride=8, bn_chan=32, hid_chan=64, skip_chan=32,
        conv_kernel_size=3, n_blocks=3, n_repeats=2, mask_act="sigmoid", encoder_activation=None,
    )


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("n_src", 2, "n_src=2"),
        ("causal", True, "causal=True"),
        ("norm_type", "cLN", "norm_type='cLN'"),
        ("fb_name", "stft", "fb_name='stft'"),
        ("sample_rate", 8000, "sample_rate=8000"),
    ],
)
def test_unsupported_asteroid_settings_are_clear_errors(fixture, key, value, message):
    args = dict(fixture["model_args"], **{key: value})
    with pytest.raises(DfkdError, match=message):
        conv_tasnet.config_from_asteroid(args)


def test_unknown_asteroid_key_is_a_clear_error(fixture):
    state = dict(fixture["state_dict"], **{"masker.extra.weight": torch.zeros(1)})
    with pytest.raises(DfkdError, match="masker.extra.weight"):
        conv_tasnet.state_dict_from_asteroid(state)


def test_paper_preset_has_asteroid_parameter_count_and_shapes(paper_shapes):
    model = models.build("convtasnet", "paper")
    assert models.count_params(model) == paper_shapes["n_params"] == 4_984_497
    assert conv_tasnet.config_from_asteroid(paper_shapes["model_args"]) == model.config
    fake = {key: torch.zeros(shape) for key, shape in paper_shapes["state_dict_shapes"]}
    converted = conv_tasnet.state_dict_from_asteroid(fake)
    assert len(converted) == len(fake)
    model.load_state_dict(converted, strict=True)  # raises on any missing key or shape mismatch


def test_paper_macs_equal_hand_count():
    # per frame: encoder + decoder (N*L each), bottleneck N*B, 24 blocks of in/depthwise/skip
    # convs, 23 residual convs (the last one is never computed), mask conv Sc*N; 1999 frames in 1 s
    n, length, b, h, sc, blocks = 512, 16, 128, 512, 128, 24
    per_frame = 2 * n * length + n * b + blocks * (b * h + 3 * h + h * sc) + (blocks - 1) * h * b
    per_frame += sc * n
    assert count_macs(models.build("convtasnet", "paper"), seconds=1.0) == 1999 * per_frame


def test_unused_last_residual_is_frozen_and_every_other_weight_learns():
    model = models.build("convtasnet", "mini")
    noisy = torch.randn(2, 4000) * 0.1
    model(noisy).pow(2).sum().backward()
    no_grad = sorted(name for name, p in model.named_parameters() if p.grad is None)
    last = len(model.masker.blocks) - 1
    unused = f"masker.blocks.{last}.res_conv"
    assert no_grad == [f"{unused}.bias", f"{unused}.weight"]
    assert not model.masker.blocks[last].res_conv.weight.requires_grad


@pytest.mark.parametrize("length", [16, 17, 4000, 12345, 16001])
def test_output_has_input_length(length):
    model = models.build("convtasnet", "mini").eval()
    with torch.no_grad():
        enhanced = model(torch.randn(3, length) * 0.1)
    assert enhanced.shape == (3, length)
    assert torch.isfinite(enhanced).all()


def test_rebuilds_from_its_config():
    model = models.build("convtasnet", "mini", skip_chan=0, mask_act="relu")
    clone = models.build_from_config("convtasnet", model.config)
    clone.load_state_dict(model.state_dict(), strict=True)
    noisy = torch.randn(1, 3000) * 0.1
    with torch.no_grad():
        assert torch.equal(model.eval()(noisy), clone.eval()(noisy))


def test_bad_options_are_clear_errors():
    with pytest.raises(DfkdError, match="mask_act 'tanh'"):
        models.build("convtasnet", "mini", mask_act="tanh")
    with pytest.raises(DfkdError, match="conv_kernel_size must be odd"):
        models.build("convtasnet", "mini", conv_kernel_size=4)


def _onnx_parity(model, tmp_path, lengths=(16000, 23457)) -> None:
    path = export_onnx(model.eval(), tmp_path / "model.onnx")
    session = onnx_session(path, threads=2)
    generator = torch.Generator().manual_seed(0)
    for length in lengths:
        noisy = torch.randn(2, length, generator=generator) * 0.1
        with torch.no_grad():
            expected = model(noisy).numpy()
        got = onnx_forward(session, noisy.numpy())
        assert got.shape == expected.shape
        assert np.max(np.abs(got - expected)) < 1e-4


def test_onnx_export_matches_pytorch_mini(tmp_path):
    _onnx_parity(models.build("convtasnet", "mini"), tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["paper", "student"])
def test_onnx_export_matches_pytorch_full_size(tmp_path, preset):
    _onnx_parity(models.build("convtasnet", preset), tmp_path)
