"""The Python API (dfkd.api, as dfkd.<name>): load by name/path, enhance arrays and files, KD registry."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import dfkd
import dfkd.pretrained as pretrained
from dfkd.cli import main
from dfkd.deploy.level import level_db
from dfkd.distill.methods import DEFAULT_WEIGHTS, KD_METHODS, make_kd_loss
from dfkd.errors import DfkdError
from tiny_corpus import speech_in_noise

REPO = Path(__file__).resolve().parents[1]
NAMES = ("convtasnet-small", "dccrn-small", "dptnet-small")


@pytest.fixture(scope="module")
def enhancer():
    return dfkd.load("convtasnet-small")


def test_import_dfkd_stays_light():
    code = "import sys, dfkd; assert 'torch' not in sys.modules; dfkd.load; assert 'torch' in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, env={"PYTHONPATH": str(REPO / "src")})


@pytest.mark.parametrize("name", NAMES)
def test_committed_teachers_load_by_name_and_keep_the_level(name):
    assert name in [m.name for m in dfkd.pretrained_models()]
    enhancer = dfkd.load(name)
    assert enhancer.model.ARCH == name.split("-")[0] and enhancer.sample_rate == 16000
    clean, noisy = speech_in_noise(10.0, 2.0)
    out = enhancer.enhance(noisy, 16000)
    assert out.shape == noisy.shape and out.dtype == np.float32
    assert abs(level_db(out) - level_db(noisy)) < 1.0


def test_shapes_types_and_rates(enhancer):
    _, noisy = speech_in_noise(10.0, 1.0)
    at_8k = noisy[::2].copy()
    assert enhancer.enhance(at_8k, 8000).shape == at_8k.shape
    stereo = np.stack([noisy, 0.5 * noisy]).astype(np.float64)
    out = enhancer.enhance(stereo, 44100)
    assert out.shape == stereo.shape and out.dtype == np.float64
    tensor = torch.from_numpy(stereo[:, :20000]).float()
    out_t = enhancer(tensor, 22050)
    assert isinstance(out_t, torch.Tensor) and out_t.shape == tensor.shape and out_t.dtype == torch.float32
    # per channel: the quieter channel stays 6 dB quieter
    assert level_db(out[0]) - level_db(out[1]) == pytest.approx(6.02, abs=0.3)
    raw = enhancer.enhance(noisy, 16000, raw_level=True)
    assert level_db(raw) < level_db(noisy) - 6  # the model's own level (the issue)


@pytest.mark.parametrize("bad, says", [
    (np.zeros((16000, 2), np.float32), "looks like (samples, channels)"),
    (np.zeros(100, np.int16), "float array"),
    (np.zeros((1, 1, 100), np.float32), "(channels, samples)"),
    (np.full(100, np.nan, np.float32), "NaN"),
    (torch.zeros(100, dtype=torch.int32), "float tensor"),
])
def test_bad_audio_is_a_one_line_error(enhancer, bad, says):
    with pytest.raises(DfkdError) as err:
        enhancer.enhance(bad, 16000)
    assert says in str(err.value) and "\n" not in str(err.value)


def test_enhance_file_is_dfkd_enhance(enhancer, tmp_path):
    _, noisy = speech_in_noise(10.0, 1.5)
    src = tmp_path / "in.wav"
    sf.write(src, noisy, 16000, subtype="FLOAT")
    written = enhancer.enhance_file(src, tmp_path / "outdir/")
    assert written == tmp_path / "outdir" / "in.wav"
    checkpoint = REPO / "pretrained" / "convtasnet_small.pt"
    assert main(["enhance", str(checkpoint), str(src), "--out", str(tmp_path / "cli.wav"),
                 "--quiet"]) == 0
    api, cli = sf.read(written, dtype="float32")[0], sf.read(tmp_path / "cli.wav", dtype="float32")[0]
    np.testing.assert_allclose(api, cli, atol=1e-6)
    np.testing.assert_allclose(api, enhancer.enhance(noisy, 16000), atol=1e-5)
    summary = enhancer.enhance_folder(tmp_path / "outdir", tmp_path / "tree")
    assert [p.name for p in summary.written] == ["in.wav"]
    with pytest.raises(DfkdError, match="no such audio file"):
        enhancer.enhance_file(tmp_path / "missing.wav", tmp_path / "x.wav")


def test_load_a_module_a_run_path_and_onnx(tmp_path):
    from dfkd.deploy.export import export_onnx, model_metadata
    from dfkd.models import build

    torch.manual_seed(0)
    model = build("convtasnet", "mini").eval()
    onnx_path = export_onnx(model, tmp_path / "mini.onnx", metadata=model_metadata(model))
    _, noisy = speech_in_noise(10.0, 1.0)
    via_torch = dfkd.load(model).enhance(noisy, 16000)
    via_onnx = dfkd.load(onnx_path).enhance(noisy, 16000)
    assert dfkd.load(onnx_path).model is None
    np.testing.assert_allclose(via_onnx, via_torch, atol=1e-4)
    with pytest.raises(DfkdError, match="not found"):
        dfkd.load(tmp_path / "nothing.pt")
    with pytest.raises(DfkdError, match=r"pretrained model \(available: convtasnet-small"):
        dfkd.load("wavenet-huge")


def test_pretrained_folder_from_env_and_the_installed_package_message(tmp_path, monkeypatch):
    shutil.copy(REPO / "pretrained" / "dccrn_small.pt", tmp_path / "dccrn_small.pt")
    monkeypatch.setenv(pretrained.ENV_VAR, str(tmp_path))
    assert pretrained.pretrained_path("dccrn-small") == tmp_path / "dccrn_small.pt"
    # An installed wheel: no checkout above the package, nothing in the working directory.
    monkeypatch.delenv(pretrained.ENV_VAR)
    monkeypatch.setattr(pretrained, "__file__", str(tmp_path / "site-packages" / "dfkd" / "pretrained.py"))
    monkeypatch.chdir(tmp_path)
    assert pretrained.pretrained_models() == []
    with pytest.raises(DfkdError, match=f"not in the installed package.*{pretrained.ENV_VAR}"):
        dfkd.load("convtasnet-small")


def test_dfkd_models_pretrained_lists_them(capsys):
    assert main(["models", "--pretrained"]) == 0
    out = capsys.readouterr().out
    for name in NAMES:
        assert f"| {name} |" in out
    # Conv-TasNet's recorded test SI-SNRi, as its committed records give it
    recorded = json.loads((REPO / "pretrained/convtasnet_small/test/summary.json").read_text())
    si_snri = recorded["metrics"]["si_snri"]["mean"]
    assert 7.0 < si_snri < 12.0
    assert f"| {si_snri:.2f} |" in out


def test_register_kd_loss():
    class HalfL1(dfkd.KDLoss):
        """Half the L1 distance."""

        name = "half-l1"

        def compute(self, student, teacher, clean):
            loss = 0.5 * (student - teacher).abs().mean()
            return dfkd.KDOutput(loss, {})

    try:
        assert dfkd.register_kd_loss(HalfL1, default_weight=3.0) is HalfL1
        assert "half-l1" in dfkd.kd_methods()
        kd = make_kd_loss("half-l1")
        assert kd.weight == 3.0
        value = kd(torch.ones(1, 10), torch.zeros(1, 10)).loss
        assert value.item() == pytest.approx(0.5)
        with pytest.raises(DfkdError, match="exists already"):
            dfkd.register_kd_loss(type("Other", (HalfL1,), {}))
        with pytest.raises(DfkdError, match="subclass"):
            dfkd.register_kd_loss(object)
        with pytest.raises(DfkdError, match="name ="):
            dfkd.register_kd_loss(type("Nameless", (dfkd.KDLoss,), {}))
    finally:
        KD_METHODS.pop("half-l1", None)
        DEFAULT_WEIGHTS.pop("half-l1", None)
