"""Every architecture x preset: builds, runs, has the sizes the presets promise; `dfkd models`.

The ``paper`` presets must have exactly asteroid 0.7.0's parameter counts (the fixtures' shapes
files); ``student`` is the compressed student of ``paper`` (>= 8x fewer parameters and MACs);
``tiny`` the demo student of ``small`` (>= 4x fewer parameters).
"""

from __future__ import annotations

import functools
import json

import pytest
import torch

from dfkd import cli, models
from dfkd.models.complexity import count_macs, count_params

PAPER_SHAPES = {
    "dccrn": "dccrnet_dccrn-cl_shapes.json",
    "convtasnet": "convtasnet_default_shapes.json",
    "dptnet": "dptnet_ffhid128_shapes.json",
}


@functools.lru_cache(maxsize=None)
def _model(arch: str, preset: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return models.build(arch, preset).eval()


@functools.lru_cache(maxsize=None)
def _macs(arch: str, preset: str) -> int:
    return count_macs(_model(arch, preset), seconds=1.0)


@pytest.mark.parametrize("preset", models.PRESETS)
@pytest.mark.parametrize("arch", models.ARCHITECTURES)
def test_preset_builds_and_enhances_half_a_second(arch, preset):
    model = _model(arch, preset)
    assert model.ARCH == arch
    noisy = torch.randn(2, 8000, generator=torch.Generator().manual_seed(1)) * 0.1
    with torch.no_grad():
        enhanced = model(noisy)
    assert enhanced.shape == noisy.shape
    assert torch.isfinite(enhanced).all()
    assert enhanced.abs().max() > 0


@pytest.mark.parametrize("arch", models.ARCHITECTURES)
def test_student_is_eight_times_smaller_and_cheaper_than_paper(arch):
    paper, student = _model(arch, "paper"), _model(arch, "student")
    assert count_params(paper) >= 8 * count_params(student)
    assert _macs(arch, "paper") >= 8 * _macs(arch, "student")


@pytest.mark.parametrize("arch", models.ARCHITECTURES)
def test_tiny_has_four_times_fewer_params_than_small(arch):
    assert count_params(_model(arch, "small")) >= 4 * count_params(_model(arch, "tiny"))


@pytest.mark.parametrize("arch", models.ARCHITECTURES)
def test_micro_is_20_to_60_times_smaller_than_small(arch):
    # the range where tiny-SE KD found its largest gains (arXiv 2309.08144); the study's student
    ratio = count_params(_model(arch, "small")) / count_params(_model(arch, "micro"))
    assert 20 <= ratio <= 60


@pytest.mark.parametrize("arch", models.ARCHITECTURES)
def test_nano_is_40_to_60_times_smaller_than_small_and_smaller_than_micro(arch):
    # for teachers that a converged micro student comes within 2 dB of (README, "The converged study")
    nano = count_params(_model(arch, "nano"))
    assert 40 <= count_params(_model(arch, "small")) / nano <= 60
    assert nano < count_params(_model(arch, "micro")) / 1.5


@pytest.mark.parametrize("arch", models.ARCHITECTURES)
def test_paper_preset_has_asteroid_parameter_count(arch, asteroid_dir):
    shapes = json.loads((asteroid_dir / PAPER_SHAPES[arch]).read_text())
    assert count_params(_model(arch, "paper")) == shapes["n_params"]


def test_dptnet_paper_with_asteroid_default_ff_hid_has_asteroid_count(asteroid_dir):
    shapes = json.loads((asteroid_dir / "dptnet_default_shapes.json").read_text())
    assert shapes["model_args"]["ff_hid"] == 256
    assert count_params(models.build("dptnet", "paper", ff_hid=256)) == shapes["n_params"]


def test_models_command_prints_convtasnet_table(capsys, tmp_path):
    out_json = tmp_path / "models.json"
    code = cli.main(["models", "--no-rtf", "--arch", "convtasnet", "--json", str(out_json)])
    out = capsys.readouterr().out
    assert code == 0
    lines = [line for line in out.splitlines() if line.startswith("|")]
    assert lines[0].split("|")[1:-1] == [
        " architecture ", " preset         ", "    params ", "   MACs/s ", "  latency ",
        "    RTF "
    ]
    rows = {cells[1].strip(): [c.strip() for c in cells[2:6]]
            for cells in (line.split("|")[1:-1] for line in lines[2:])}
    assert list(rows) == list(models.PRESETS) + list(models.CAUSAL_PRESETS)
    assert rows["paper"] == ["4,984,497", "9.67 G", "-", "-"]
    # causal twins: the same sizes; latency = the encoder window L (16 or 32 samples at 16 kHz)
    assert rows["student-causal"] == ["434,657", "823 M", "1 ms", "-"]
    assert rows["tiny-causal"] == ["55,919", "50.4 M", "2 ms", "-"]
    assert rows["micro-causal"][2] == "2 ms" and rows["mini-causal"][2] == "1 ms"
    assert {line.split("|")[1].strip() for line in lines[2:]} == {"convtasnet"}
    assert len({len(line) for line in lines}) == 1  # aligned columns
    written = json.loads(out_json.read_text())
    assert written["threads"] is None
    paper = next(row for row in written["rows"] if row["preset"] == "paper")
    assert paper["params"] == 4_984_497 and paper["rtf"] is None
    assert paper["macs_per_second"] == _macs("convtasnet", "paper")


def test_models_command_times_and_filters(capsys):
    code = cli.main(["models", "--arch", "convtasnet", "--preset", "mini", "--threads", "1",
                     "--seconds", "0.5", "--repeats", "2"])
    out = capsys.readouterr().out
    assert code == 0
    rows = [line for line in out.splitlines() if line.startswith("| convtasnet")]
    assert len(rows) == 1
    rtf = float(rows[0].split("|")[6])
    assert 0 < rtf < 1  # 7.7 k parameters run far faster than real time
    assert "1 thread" in out


def test_models_command_marks_missing_architecture(capsys, monkeypatch):
    # an architecture whose module is not written yet gets a row, not a crash
    monkeypatch.setattr(models, "ARCHITECTURES", models.ARCHITECTURES + ("futurenet",))
    monkeypatch.setitem(models._MODULES, "futurenet", "future_net")
    code = cli.main(["models", "--no-rtf", "--arch", "futurenet", "--preset", "mini"])
    out = capsys.readouterr().out
    assert code == 0
    assert "| futurenet" in out and "not available yet" in out


def test_models_command_rejects_bad_threads(capsys):
    assert cli.main(["models", "--threads", "0", "--arch", "convtasnet"]) == 1
    assert "--threads must be at least 1" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["small", "tiny"])
@pytest.mark.parametrize("arch", models.ARCHITECTURES)
def test_demo_presets_export_to_onnx_with_parity_on_two_lengths(arch, preset, tmp_path):
    # mini, paper and student are checked in each architecture's own test file; this covers the
    # demo teacher and student, so that every preset is known to export.
    import numpy as np

    from dfkd.deploy.export import export_onnx, onnx_forward, onnx_session

    model = _model(arch, preset)
    session = onnx_session(export_onnx(model, tmp_path / f"{arch}_{preset}.onnx"))
    generator = torch.Generator().manual_seed(7)
    for length in (16000, 23457):
        noisy = torch.randn(2, length, generator=generator) * 0.1
        with torch.no_grad():
            expected = model(noisy).numpy()
        got = onnx_forward(session, noisy.numpy())
        assert got.shape == expected.shape
        assert float(np.abs(got - expected).max()) <= 1e-4
