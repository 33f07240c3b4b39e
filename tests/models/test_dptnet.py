"""DPTNet: asteroid 0.7.0 parity, paper-size parameter counts, chunking, presets, ONNX export."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dfkd.deploy import export
from dfkd.errors import DfkdError
from dfkd.models import build, count_params, dptnet, from_asteroid
from dfkd.models.complexity import count_macs


def _load_fixture(asteroid_dir):
    return torch.load(asteroid_dir / "dptnet_small.pt", map_location="cpu", weights_only=True)


def test_reproduces_asteroid_outputs(asteroid_dir):
    fixture = _load_fixture(asteroid_dir)
    model = from_asteroid(fixture)
    assert isinstance(model, dptnet.DPTNet)
    assert count_params(model) == fixture["n_params"]
    with torch.no_grad():
        for inputs, outputs in (("input", "output"), ("input_odd", "output_odd")):
            y, y_ref = model(fixture[inputs]), fixture[outputs].squeeze(1)
            assert y.shape == y_ref.shape
            torch.testing.assert_close(
                y, y_ref, rtol=1e-5, atol=1e-5 * y_ref.abs().max().item()
            )
    # 12345 samples with L=16, S=8: the last sample is after the last full frame, exactly zero.
    assert y[:, -1:].abs().max().item() == 0.0 and y[:, -2].abs().max().item() > 0.0


@pytest.mark.parametrize(
    "config, overrides", [("ffhid128", {}), ("default", {"ff_hid": 256})]
)
def test_paper_preset_matches_asteroid_shapes(asteroid_dir, config, overrides):
    info = json.loads((asteroid_dir / f"dptnet_{config}_shapes.json").read_text())
    model = build("dptnet", "paper", **overrides)
    assert count_params(model) == info["n_params"]
    # asteroid's model_args rebuild exactly our preset
    ours = dptnet.DPTNet(**dptnet.config_from_asteroid(info["model_args"]))
    assert ours.config == model.config
    # every asteroid key maps to one of ours with the same shape, and nothing is left over
    fake = {key: torch.zeros(shape) for key, shape in info["state_dict_shapes"]}
    converted = dptnet.state_dict_from_asteroid(fake)
    assert len(converted) == len(fake)
    model.load_state_dict(converted, strict=True)
    assert all(p.abs().sum().item() == 0 for p in model.parameters())


@pytest.mark.parametrize("chunk_size, hop_size", [(20, 10), (6, 2), (4, 4), (9, 3)])
@pytest.mark.parametrize("n_frames", [1, 5, 37, 100])
def test_reshape_chunking_equals_unfold_and_fold(chunk_size, hop_size, n_frames):
    # asteroid chunks with unfold (padding K, stride H) and goes back with fold / (K/H); our
    # reshape-based version must give the same chunks and the same overlap-add, for any K/H ratio.
    model = dptnet.DPTNet(
        n_filters=4, n_heads=1, ff_hid=2, chunk_size=chunk_size, hop_size=hop_size, n_repeats=1
    )
    x = torch.randn(3, n_frames, 4)  # (batch, frames, channels)
    chunks = model._chunk(x)
    ref = F.unfold(
        x.transpose(1, 2).unsqueeze(-1),
        kernel_size=(chunk_size, 1),
        padding=(chunk_size, 0),
        stride=(hop_size, 1),
    ).reshape(3, 4, chunk_size, -1)  # (batch, channels, K, n_chunks)
    assert chunks.shape[1] == (n_frames + chunk_size) // hop_size + 1
    torch.testing.assert_close(chunks, ref.permute(0, 3, 2, 1), rtol=0, atol=0)

    values = torch.randn_like(chunks)
    folded = F.fold(
        values.permute(0, 3, 2, 1).reshape(3, 4 * chunk_size, -1),
        output_size=(n_frames, 1),
        kernel_size=(chunk_size, 1),
        padding=(chunk_size, 0),
        stride=(hop_size, 1),
    ).squeeze(-1)  # (batch, channels, frames)
    ours = model._overlap_add(values, n_frames)
    torch.testing.assert_close(ours, folded.transpose(1, 2), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("preset", ["mini", "tiny"])
def test_forward_keeps_length(preset):
    torch.manual_seed(0)
    model = build("dptnet", preset).eval()
    kernel, stride = model.config["kernel_size"], model.config["stride"]
    with torch.no_grad():
        for samples in (kernel, kernel + 1, 1001, 12345, 16000):
            noisy = 0.1 * torch.randn(2, samples)
            y = model(noisy)
            assert y.shape == noisy.shape and torch.isfinite(y).all()
            tail = (samples - kernel) % stride  # samples after the last full frame
            if tail:
                assert y[:, -tail:].abs().max().item() == 0.0
            # each row is enhanced on its own (gLN statistics are per utterance)
            torch.testing.assert_close(model(noisy[1:]), y[1:], rtol=1e-4, atol=1e-6)


def test_config_rebuilds_model_and_all_weights_train():
    torch.manual_seed(0)
    model = build("dptnet", "mini", bidirectional=False, dropout=0.1)
    clone = dptnet.DPTNet(**model.config)
    assert clone.config == model.config
    assert {k: v.shape for k, v in clone.state_dict().items()} == {
        k: v.shape for k, v in model.state_dict().items()
    }
    model.train()
    model(0.1 * torch.randn(2, 4000)).pow(2).mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_preset_size_ratios():
    models = {name: build("dptnet", name) for name in dptnet.PRESETS}
    params = {name: count_params(m) for name, m in models.items()}
    assert params["paper"] == 2_798_657
    assert params["paper"] / params["student"] >= 8
    assert count_macs(models["paper"], seconds=1.0) / count_macs(models["student"], 1.0) >= 8
    assert params["small"] / params["tiny"] >= 4
    assert params["mini"] < params["tiny"]


def test_user_errors_are_clear():
    with pytest.raises(DfkdError, match="n_heads"):
        dptnet.DPTNet(n_filters=30, n_heads=4)
    with pytest.raises(DfkdError, match="hop_size"):
        dptnet.DPTNet(chunk_size=100, hop_size=30)
    model = build("dptnet", "mini")
    with pytest.raises(DfkdError, match="samples >= 16"):
        model(torch.zeros(1, 15))
    with pytest.raises(DfkdError, match="batch, samples"):
        model(torch.zeros(16000))
    base = {"n_filters": 64, "n_src": 1, "fb_name": "free"}
    for bad, match in (
        ({"n_src": 2}, "n_src"),
        ({"fb_name": "stft"}, "filterbank"),
        ({"mask_act": "sigmoid"}, "mask_act"),
        ({"in_chan": 32}, "in_chan"),
        ({"causal": True}, "causal"),
    ):
        with pytest.raises(DfkdError, match=match):
            dptnet.config_from_asteroid({**base, **bad})
    with pytest.raises(DfkdError, match="unexpected key"):
        dptnet.state_dict_from_asteroid({"masker.layers.0.2.mha.in_proj_bias": torch.zeros(3)})


def _check_onnx(model, tmp_path, shapes=((1, 16000), (1, 23457))):
    path = export.export_onnx(model, tmp_path / "dptnet.onnx")
    session = export.onnx_session(path, threads=2)
    generator = torch.Generator().manual_seed(0)
    for shape in shapes:  # the traced length and others: the length axis must stay dynamic
        noisy = 0.1 * torch.randn(*shape, generator=generator)
        with torch.no_grad():
            expected = model(noisy).numpy()
        got = export.onnx_forward(session, noisy.numpy())
        assert got.shape == expected.shape
        assert np.abs(got - expected).max() < 1e-4


def test_onnx_export_mini(tmp_path):
    torch.manual_seed(0)
    _check_onnx(build("dptnet", "mini").eval(), tmp_path, ((1, 16000), (1, 23457), (3, 65)))


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["paper", "student"])
def test_onnx_export_full_size(tmp_path, preset):
    torch.manual_seed(0)
    _check_onnx(build("dptnet", preset).eval(), tmp_path)
