"""DCCRN-CL (Hu et al., Interspeech 2020, arXiv 2008.00264): asteroid parity, presets, export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dfkd import models
from dfkd.checkpoint import model_from_checkpoint_dict, model_payload
from dfkd.errors import DfkdError
from dfkd.deploy.export import export_onnx, onnx_forward, onnx_session
from dfkd.models import dccrn
from dfkd.models.complexity import count_macs
from dfkd.models.conv_stft import ConvSTFT, sqrt_hann, stft_basis
from dfkd.models.dccrn import DCCRN, bound_mask

pytestmark = pytest.mark.usefixtures("one_thread")


def _fixture(asteroid_dir: Path) -> dict:
    return torch.load(asteroid_dir / "dccrnet_small.pt", map_location="cpu", weights_only=True)


def _shapes(asteroid_dir: Path) -> dict:
    return json.loads((asteroid_dir / "dccrnet_dccrn-cl_shapes.json").read_text())


def _randomise_norms(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Non-trivial BatchNorm statistics / affines and PReLU slopes, so that checks can fail."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                n = module.num_features
                module.weight.copy_(1 + 0.1 * torch.randn(n, generator=generator))
                module.bias.copy_(0.05 * torch.randn(n, generator=generator))
                module.running_mean.copy_(0.05 * torch.randn(n, generator=generator))
                module.running_var.copy_(0.5 + torch.rand(n, generator=generator))
            elif isinstance(module, torch.nn.PReLU):
                module.weight.uniform_(0.15, 0.35, generator=generator)
    return model.eval()


def _signal(batch: int, samples: int, seed: int = 0) -> torch.Tensor:
    return 0.1 * torch.randn(batch, samples, generator=torch.Generator().manual_seed(seed))


# --- asteroid parity ----------------------------------------------------------------------------


def test_matches_asteroid_fixture_outputs(asteroid_dir):
    fixture = _fixture(asteroid_dir)
    model = models.from_asteroid(fixture)
    assert models.count_params(model) == fixture["n_params"] == 1_055_928
    with torch.no_grad():
        for name_in, name_out in (("input", "output"), ("input_odd", "output_odd")):
            reference = fixture[name_out].squeeze(1)
            enhanced = model(fixture[name_in])
            assert enhanced.shape == reference.shape
            torch.testing.assert_close(
                enhanced, reference, rtol=1e-5, atol=1e-5 * reference.abs().max().item()
            )
    # 12345 samples: 120 frames of 400 / hop 100 cover 12300; the last 45 are never seen.
    assert torch.equal(enhanced[:, 12300:], torch.zeros(1, 45))
    assert enhanced[:, 12299].abs().item() > 0


def test_stft_basis_equals_asteroid_buffers(asteroid_dir):
    state = _fixture(asteroid_dir)["state_dict"]
    basis = stft_basis(512, 400, 100)
    assert torch.equal(basis, state["encoder.filterbank._filters"])
    assert torch.equal(basis, state["decoder.filterbank._filters"])
    window = torch.from_numpy(sqrt_hann(400)).float()
    torch.testing.assert_close(window, state["encoder.filterbank.torch_window"], rtol=0, atol=1e-7)
    # The model keeps every row except the two Nyquist ones (256: Re, 513: Im).
    stft = ConvSTFT(512, 400, 100)
    keep = [i for i in range(514) if i not in (256, 513)]
    assert torch.equal(stft.basis, basis[keep])
    assert "stft.basis" not in DCCRN().state_dict()  # recomputed, not stored in checkpoints


def test_stft_matches_torch_stft_and_reconstructs():
    wav = _signal(1, 8000, seed=3)
    stft = ConvSTFT(512, 400, 100)
    spec = stft(wav)  # (1, 2, 256, frames)
    # README: torch.stft on a 56-sample-padded signal, times asteroid's scaling.
    reference = torch.stft(
        torch.nn.functional.pad(wav, (56, 56)),
        n_fft=512,
        hop_length=100,
        win_length=400,
        window=torch.hann_window(400, periodic=True).sqrt(),
        center=False,
        return_complex=True,
    )[:, :256] / (0.5 * (400 * 512 / 100) ** 0.5)
    reference[:, 0] /= 2**0.5
    torch.testing.assert_close(spec[:, 0], reference.real, rtol=0, atol=2e-6)
    torch.testing.assert_close(spec[:, 1], reference.imag, rtol=0, atol=2e-6)
    # Identity mask: the interior comes back (minus the dropped Nyquist bin, ~white-noise level).
    lowpass = torch.nn.functional.avg_pool1d(wav[None], 4, 1, padding=2)[0, :, :8000]
    out = stft.inverse(stft(lowpass), like=lowpass)
    interior = slice(400, 7600)
    torch.testing.assert_close(out[:, interior], lowpass[:, interior], rtol=0, atol=1e-3)


def test_paper_preset_matches_asteroid_dccrn_cl_shapes(asteroid_dir):
    info = _shapes(asteroid_dir)
    model = models.build("dccrn", "paper")
    assert models.count_params(model) == info["n_params"] == 3_669_336
    assert dccrn.config_from_asteroid(info["model_args"]) == {
        **DCCRN().config,
        **models.preset_config("dccrn", "paper"),
    }
    # A fake asteroid state dict (zeros, but real STFT buffers: the converter checks them) loads
    # strictly.
    fake = {}
    for key, shape in info["state_dict_shapes"]:
        if key.endswith("_filters"):
            fake[key] = stft_basis(512, 400, 100)
        elif key.endswith("torch_window"):
            fake[key] = torch.from_numpy(sqrt_hann(400)).float()
        else:
            fake[key] = torch.zeros(shape, dtype=torch.long if not shape else torch.float32)
    converted = dccrn.state_dict_from_asteroid(fake)
    ours = model.state_dict()
    assert set(converted) == set(ours)
    assert len(converted) == len(fake) - 4  # only the 4 STFT buffers are dropped
    for key, value in converted.items():
        assert value.shape == ours[key].shape, key
    model.load_state_dict(converted, strict=True)


def test_asteroid_converters_reject_what_they_cannot_represent(asteroid_dir):
    fixture = _fixture(asteroid_dir)
    args = fixture["model_args"]
    assert dccrn.config_from_asteroid(args)["channels"] == [4, 8]
    for bad in (
        {**args, "n_src": 2},
        {**args, "architecture": "DCCRN-E"},
        {**args, "sample_rate": 8000},
        {**args, "n_freqs": 128},
        {**args, "masknet_kwargs": {"norm_type": "gLN"}},
    ):
        with pytest.raises(DfkdError):
            dccrn.config_from_asteroid(bad)
    assert (
        dccrn.config_from_asteroid({**args, "masknet_kwargs": {"mask_bound": None}})["mask_bound"]
        == "none"
    )
    state = dict(fixture["state_dict"])
    state["encoder.filterbank._filters"] = state["encoder.filterbank._filters"] * 1.01
    with pytest.raises(DfkdError, match="STFT"):
        dccrn.state_dict_from_asteroid(state)
    with pytest.raises(DfkdError, match="unexpected keys"):
        dccrn.state_dict_from_asteroid(
            {**fixture["state_dict"], "masker.extra.weight": torch.ones(1)}
        )


# --- behaviour ----------------------------------------------------------------------------------


@pytest.mark.parametrize("preset", ["mini", "tiny"])
def test_forward_keeps_shape_for_any_length(preset):
    model = _randomise_norms(models.build("dccrn", preset))
    hop, win = model.config["hop_length"], model.config["win_length"]
    lengths = [1, win - 1, model.min_length - 1, model.min_length, 4321, 16000]
    with torch.no_grad():
        for length in lengths:
            wav = _signal(2, length, seed=length)
            out = model(wav)
            assert out.shape == wav.shape and torch.isfinite(out).all(), length
            if length >= model.min_length:
                covered = (length - win) // hop * hop + win  # samples after it are never seen
                assert torch.equal(out[:, covered:], torch.zeros_like(out[:, covered:]))
        # Short inputs are the zero-padded input's output, trimmed back.
        short = _signal(1, win + 7, seed=1)
        padded = torch.nn.functional.pad(short, (0, model.min_length - short.shape[-1]))
        torch.testing.assert_close(model(short), model(padded)[:, : short.shape[-1]])
        # Rows are independent in eval mode.
        pair = _signal(2, 4321, seed=2)
        torch.testing.assert_close(model(pair)[1:], model(pair[1:]), rtol=1e-5, atol=1e-7)
    with pytest.raises(DfkdError, match="batch, samples"):
        model(torch.zeros(3000))


def test_mask_at_frame_t_looks_ahead_one_frame_per_level():
    """Like asteroid (not the paper's causal variant): no time padding, so look-ahead = levels."""
    model = _randomise_norms(models.build("dccrn", "mini"))  # 2 levels, hop 100, window 400
    wav = _signal(1, 8000, seed=4)
    changed = wav.clone()
    changed[:, 5000:] += 0.05  # frame k covers samples 100k .. 100k + 399: frames 47.. see it
    with torch.no_grad():
        diff = (model(changed) - model(wav)).abs()[0]
    # Mask frames 45 and 46 look 2 frames ahead and change, so output from sample 4500 on moves
    # (frame 47's own samples start at 4700); everything before stays bit-identical.
    assert torch.equal(diff[:4500], torch.zeros(4500))
    assert diff[4500:4700].max() > 1e-6


def test_bound_mask_forms():
    mask = torch.randn(2, 2, 5, 7) * 3
    bounded = bound_mask(mask, "tanh")
    magnitude = mask.pow(2).sum(1).sqrt()
    torch.testing.assert_close(
        bounded.pow(2).sum(1).sqrt(), torch.tanh(magnitude), atol=1e-6, rtol=0
    )
    torch.testing.assert_close(  # same phase
        torch.atan2(bounded[:, 1], bounded[:, 0]), torch.atan2(mask[:, 1], mask[:, 0])
    )
    zero = bound_mask(torch.zeros(1, 2, 1, 1, requires_grad=True), "tanh")
    zero.sum().backward()  # finite gradient at |M| = 0 (no atan2)
    torch.testing.assert_close(bound_mask(mask, "sigmoid"), torch.sigmoid(mask))
    assert bound_mask(mask, "none") is mask


def test_config_round_trip_and_checkpoint():
    model = _randomise_norms(models.build("dccrn", "mini", mask_bound="sigmoid"))
    rebuilt = DCCRN(**model.config)
    assert rebuilt.config == model.config
    assert json.loads(json.dumps(model.config)) == model.config  # plain lists / ints / strings
    restored = model_from_checkpoint_dict(model_payload(model))
    wav = _signal(1, 4000)
    with torch.no_grad():
        torch.testing.assert_close(restored(wav), model(wav), rtol=0, atol=0)
    per_level = DCCRN(channels=[2, 4], kernel_size=[[5, 2], [3, 3]], freq_stride=[2, 4])
    assert per_level.min_length == 400 + 100 * (1 + 2)
    for bad in (
        dict(channels=[2] * 9),  # 256 bins not divisible by 2 ** 9
        dict(channels=[2, 4], kernel_size=[4, 2], freq_stride=1),  # even kernel, stride 1
        dict(mask_bound="relu"),
        dict(n_fft=511),
        dict(channels=[2, 4], freq_stride=[2]),
    ):
        with pytest.raises(DfkdError):
            DCCRN(**bad)
    with pytest.raises(DfkdError, match="unknown option"):
        models.build("dccrn", "mini", hidden=3)


def test_mini_learns_and_updates_both_batchnorms():
    torch.manual_seed(0)
    model = models.build("dccrn", "mini").train()
    clean = _signal(2, 2000, seed=5)
    noisy = clean + _signal(2, 2000, seed=6)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        loss = (model(noisy) - clean).pow(2).mean()
        optimiser.zero_grad()
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]  # measured: 0.41
    norm = model.encoders[0].norm
    assert norm.re.num_batches_tracked.item() == norm.im.num_batches_tracked.item() == 15
    assert not torch.equal(norm.re.running_mean, norm.im.running_mean)


def test_preset_size_ratios():
    paper, student = models.build("dccrn", "paper"), models.build("dccrn", "student")
    small, tiny = models.build("dccrn", "small"), models.build("dccrn", "tiny")
    params = {
        name: models.count_params(m)
        for name, m in (("paper", paper), ("student", student), ("small", small), ("tiny", tiny))
    }
    assert params["paper"] / params["student"] >= 8
    assert params["small"] / params["tiny"] >= 4
    assert count_macs(paper) / count_macs(student) >= 8
    assert models.count_params(models.build("dccrn", "mini")) < 30_000


# --- ONNX ---------------------------------------------------------------------------------------


def _check_onnx(model: torch.nn.Module, path: Path) -> None:
    export_onnx(model, path)
    session = onnx_session(path, threads=1)
    for batch, length in ((1, 16000), (2, 23457)):
        wav = _signal(batch, length, seed=length)
        with torch.no_grad():
            expected = model(wav).numpy()
        got = onnx_forward(session, wav.numpy())
        assert got.shape == expected.shape
        assert np.abs(got - expected).max() <= 1e-4


def test_onnx_mini_matches_pytorch(tmp_path):
    _check_onnx(_randomise_norms(models.build("dccrn", "mini")), tmp_path / "mini.onnx")


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["paper", "student"])
def test_onnx_full_size_matches_pytorch(tmp_path, preset):
    torch.manual_seed(0)
    _check_onnx(_randomise_norms(models.build("dccrn", preset)), tmp_path / f"{preset}.onnx")
