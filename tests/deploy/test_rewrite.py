"""dfkd.deploy.rewrite: the export-time layer swaps compute what the models compute.

Each rewrite is checked three ways: the polyphase transposed convolution against
``F.conv_transpose2d``; the rewritten model against the original in PyTorch; the exported graph
(rewritten) against the original model through onnxruntime, within the export tolerance (1e-4),
on two lengths. Norm statistics, affine parameters and PReLU slopes are randomised first, so that
a folding mistake cannot hide behind identity defaults.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dfkd.deploy.export import PARITY_TOLERANCE, export_onnx, onnx_forward, onnx_session, op_counts
from dfkd.deploy.rewrite import for_export, transposed_conv_as_conv, uses_contrib_ops
from dfkd.models import ARCHITECTURES, build

LENGTHS = (16000, 23457)


def _randomised(arch: str, preset: str = "mini", seed: int = 0) -> torch.nn.Module:
    """A model whose BatchNorm statistics, affines, biases and PReLU slopes are not defaults."""
    torch.manual_seed(seed)
    model = build(arch, preset)
    generator = torch.Generator().manual_seed(seed + 1)

    def uniform(tensor: torch.Tensor, low: float, high: float) -> None:
        tensor.copy_(torch.rand(tensor.shape, generator=generator) * (high - low) + low)

    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                uniform(module.running_mean, -0.5, 0.5)
                uniform(module.running_var, 0.5, 2.0)
            if isinstance(module, torch.nn.PReLU):
                uniform(module.weight, -0.5, 1.5)  # slopes above 1 and below 0 included
        for param in model.parameters():
            if param.dim() == 1:
                param.add_(torch.randn(param.shape, generator=generator) * 0.1)
    return model.eval()


def _signal(batch: int, length: int, seed: int) -> torch.Tensor:
    return torch.randn(batch, length, generator=torch.Generator().manual_seed(seed)) * 0.1


@pytest.mark.parametrize(
    "kernel, stride, padding, output_padding",
    [(5, 2, 2, 1), (3, 2, 1, 1), (4, 2, 1, 0), (7, 3, 3, 2), (5, 1, 2, 0)],
)
def test_polyphase_conv_equals_transposed_conv(kernel, stride, padding, output_padding):
    generator = torch.Generator().manual_seed(kernel * 10 + stride)
    weight = torch.randn(3, 4, kernel, 2, generator=generator, dtype=torch.float64)
    x = torch.randn(2, 3, 9, 6, generator=generator, dtype=torch.float64)
    expected = F.conv_transpose2d(x, weight, stride=(stride, 1), padding=(padding, 0),
                                  output_padding=(output_padding, 0))
    conv, left, right = transposed_conv_as_conv(weight, stride, padding, output_padding)
    phases = F.conv2d(F.pad(x, (1, 1, left, right)), conv)  # time: kernel 2 -> pad 1 each side
    batch, _, rows, frames = phases.shape
    got = phases.reshape(batch, stride, 4, rows, frames).permute(0, 2, 3, 1, 4)
    got = got.reshape(batch, 4, rows * stride, frames)
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, atol=1e-12)


def test_polyphase_declines_unequal_phases():
    # output length 2 F_in + 1 is not a multiple of the stride: phases would differ in length
    assert transposed_conv_as_conv(torch.zeros(1, 1, 5, 2), 2, 2, 0) is None


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_rewritten_model_matches_original_in_pytorch(arch):
    model = _randomised(arch)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    rng_before = torch.get_rng_state()
    rewritten = for_export(model)
    assert torch.equal(torch.get_rng_state(), rng_before)  # exporting leaves seeded runs alone
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())  # original intact
    assert type(rewritten) is type(model)
    names = lambda net: {type(m).__name__ for m in net.modules()}  # noqa: E731
    changed = names(rewritten) - names(model)
    assert changed, f"{arch}: nothing was rewritten"
    for length in LENGTHS:
        noisy = _signal(2, length, seed=length)
        with torch.no_grad():
            expected, got = model(noisy), rewritten(noisy)
        scale = expected.abs().max()
        assert torch.allclose(got, expected, atol=1e-5 * float(scale), rtol=0), arch


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_rewritten_export_matches_original_in_onnxruntime(arch, tmp_path):
    model = _randomised(arch, seed=3)
    path = export_onnx(model, tmp_path / f"{arch}.onnx")
    session = onnx_session(path, threads=1)
    for batch, length in ((1, LENGTHS[0]), (2, LENGTHS[1])):
        noisy = _signal(batch, length, seed=length + 7)
        with torch.no_grad():
            expected = model(noisy).numpy()
        got = onnx_forward(session, noisy.numpy())
        assert got.shape == expected.shape
        assert np.abs(got - expected).max() <= PARITY_TOLERANCE


def test_exported_graphs_use_the_fast_operators(tmp_path):
    ops = {arch: op_counts(export_onnx(_randomised(arch), tmp_path / f"{arch}.onnx"))
           for arch in ARCHITECTURES}
    for arch, counts in ops.items():
        assert "PRelu" not in counts, arch  # every PReLU became LeakyRelu (fused by onnxruntime)
    assert ops["dptnet"]["MultiHeadAttention"] == 2 * build("dptnet", "mini").config["n_repeats"]
    assert "Softmax" not in ops["dptnet"]
    assert "BatchNormalization" not in ops["dccrn"]
    assert ops["dccrn"]["ConvTranspose"] == 1  # only the inverse STFT; decoders are polyphase Convs
    plain = op_counts(export_onnx(_randomised("dccrn"), tmp_path / "plain.onnx", rewrite=False))
    assert plain["ConvTranspose"] > 1 and plain["PRelu"] > 0


def test_unidirectional_inter_lstm(tmp_path):
    torch.manual_seed(0)
    model = build("dptnet", "mini", bidirectional=False).eval()
    path = export_onnx(model, tmp_path / "uni.onnx")
    noisy = _signal(2, LENGTHS[1], seed=11)
    with torch.no_grad():
        expected = model(noisy)
        assert torch.allclose(for_export(model)(noisy), expected, atol=1e-6)
    got = onnx_forward(onnx_session(path, threads=1), noisy.numpy())
    assert np.abs(got - expected.numpy()).max() <= PARITY_TOLERANCE


def test_standard_onnx_without_contrib_ops(tmp_path):
    model = _randomised("dptnet")
    rewritten = for_export(model, contrib_ops=False)
    assert uses_contrib_ops(for_export(model)) and not uses_contrib_ops(rewritten)
    noisy = _signal(1, LENGTHS[0], seed=5)
    with torch.no_grad():
        assert torch.allclose(rewritten(noisy), model(noisy), atol=1e-6)


def test_dccrn_block_with_batch_statistics_is_left_unfolded_and_still_runs():
    """A BatchNorm without running statistics cannot be folded: the block stays as it is."""
    model = _randomised("dccrn")
    norm = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    norm.running_mean = norm.running_var = None  # uses batch statistics even in eval mode
    norm.track_running_stats = False
    rewritten = for_export(model)
    noisy = _signal(2, LENGTHS[0], seed=1)
    with torch.no_grad():
        expected, got = model(noisy), rewritten(noisy)
    assert torch.allclose(got, expected, atol=1e-5 * float(expected.abs().max()), rtol=0)
