"""Teachers from anywhere: ONNX, TorchScript, a folder of enhanced files, another family."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import soundfile as sf
import torch
from torch import nn

from dfkd import models
from dfkd.checkpoint import model_payload, read_checkpoint, save_checkpoint
from dfkd.data.datasets import training_dataset
from dfkd.distill.teacher_cache import CachedTeacherDataset
from dfkd.distill.teachers import load_teacher_source, teacher_kind
from dfkd.errors import DfkdError

from cli_runs import fast_flags, run_cli
from tiny_corpus import SR, make_tiny_corpus

FAST = [*fast_flags(), "--steps", "2", "--valid-every", "2"]

pytestmark = pytest.mark.usefixtures("one_thread")


class Smoother(nn.Module):
    """A waveform-in, waveform-out 'enhancer' that is none of our architectures."""

    def __init__(self, halve: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv1d(1, 1, 9, padding=4)
        self.halve = halve

    def forward(self, noisy: torch.Tensor) -> torch.Tensor:
        out = self.conv(noisy[:, None])[:, 0]
        return out[:, ::2] if self.halve else out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return make_tiny_corpus(tmp_path_factory.mktemp("corpus"))


def _onnx(path: Path, model: nn.Module) -> Path:
    torch.onnx.export(model, (torch.zeros(1, 4000),), path, dynamo=False, input_names=["x"],
                      output_names=["y"], dynamic_axes={"x": {0: "b", 1: "t"}, "y": {0: "b", 1: "t"}})
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("teachers")
    model = Smoother().eval()
    scripted = root / "teacher.ts"
    torch.jit.script(model).save(str(scripted))
    return {"onnx": _onnx(root / "teacher.onnx", model), "torchscript": scripted,
            "bad_onnx": _onnx(root / "halves.onnx", Smoother(halve=True).eval())}


def _enhanced_folder(corpus: Path, out: Path, drop: tuple[str, ...] = (), short: str = "") -> Path:
    """The 'teacher outputs' of an offline system: 0.8 x the clean files, named as the noisy."""
    out.mkdir(parents=True, exist_ok=True)
    for clean in sorted((corpus / "train" / "clean").glob("*.wav")):
        if clean.stem in drop:
            continue
        audio, rate = sf.read(clean, dtype="float32")
        if clean.stem == short:
            audio = audio[:-10]
        sf.write(out / f"{clean.stem}.wav", 0.8 * audio, rate, subtype="FLOAT")
    return out


def _history(run: Path) -> dict:
    return json.loads((run / "history.json").read_text())


@pytest.mark.parametrize("kind", ["onnx", "torchscript"])
def test_a_model_file_teacher_distils_a_student(kind, files, corpus, tmp_path):
    assert teacher_kind(files[kind]) == kind
    out = tmp_path / kind
    assert run_cli("distill", "--teacher", files[kind], "--arch", "convtasnet", "--method", "output",
                 "--data", corpus, "--out", out, *FAST) == 0
    run = _history(out)["run"]
    assert run["teacher_kind"] == kind and run["teacher_fingerprint"].startswith(f"{kind}-")
    assert run["arch"] == "convtasnet" and read_checkpoint(out / "last.pt")["step"] == 2
    assert "kd" in _history(out)["train"][0] and "kd" in _history(out)["valid"][0]


def test_the_foreign_teacher_runs_the_model_and_its_fingerprint_keys_the_cache(files, corpus, tmp_path):
    noisy = torch.randn(3, 5000) * 0.1
    reference = Smoother().eval()(noisy).detach()
    for kind in ("onnx", "torchscript"):
        teacher = load_teacher_source(files[kind], SR).model
        torch.testing.assert_close(teacher(noisy), reference, rtol=1e-4, atol=1e-6)
    out = tmp_path / "cached"
    assert run_cli("distill", "--teacher", files["onnx"], "--arch", "convtasnet", "--method", "spectral",
                 "--data", corpus, "--out", out, "--cache-teacher", "--cache-dir", tmp_path / "c",
                 *FAST) == 0
    fingerprint = _history(out)["run"]["teacher_fingerprint"]
    assert len(list((tmp_path / "c" / fingerprint / str(SR)).glob("*.npy"))) == 8


def test_a_folder_of_enhanced_files_teaches_with_the_same_crop_span(corpus, tmp_path):
    folder = _enhanced_folder(corpus, tmp_path / "enhanced")
    assert teacher_kind(folder) == "folder"
    source = load_teacher_source(folder, SR)
    train = training_dataset(corpus, "train", 0.5, seed=3)
    source.outputs.check(train.pairs)
    dataset = CachedTeacherDataset(train, source.outputs)
    dataset.set_epoch(1)
    for i in (0, 5):
        _, clean, teacher = dataset[i]
        torch.testing.assert_close(teacher, 0.8 * clean)  # the crop's span of the output
        assert train.crop_offset(i) > 0 or train.lengths[i] <= train.segment_samples
    out = tmp_path / "run"
    assert run_cli("distill", "--teacher", folder, "--arch", "dptnet", "--method", "sisnr",
                 "--data", corpus, "--out", out, *FAST) == 0
    history = _history(out)
    assert history["run"]["teacher_kind"] == "folder" and history["run"]["arch"] == "dptnet"
    assert "kd" in history["train"][0]
    assert "kd" not in history["valid"][0]  # the folder covers the training split only


def test_a_teacher_of_another_family_teaches(corpus, tmp_path):
    torch.manual_seed(3)
    teacher = tmp_path / "dccrn.pt"
    save_checkpoint(teacher, model_payload(models.build("dccrn", "mini"), train_seed=3))
    out = tmp_path / "run"
    assert run_cli("distill", "--teacher", teacher, "--arch", "convtasnet", "--method", "dfkd",
                 "--data", corpus, "--out", out, *FAST) == 0
    run = _history(out)["run"]
    assert (run["teacher_arch"], run["arch"], run["seed"]) == ("dccrn", "convtasnet", 4)


@pytest.mark.parametrize("case,match", [
    ("missing", r"enhanced: no teacher output for 2 of 8 training utterances: train01, train05 "),
    ("short", r"train03.wav: 19990 samples at 16000 Hz, but its input train03.wav has 20000"),
    ("contract", r"halves.onnx: the ONNX teacher must map a waveform \(batch, samples\) to a "
                 r"waveform of the same shape; for \(2, 8000\) it returned \(2, 4000\)"),
    ("no_arch", r"teacher.onnx: this teacher is not one of our models.*pass --arch"),
    ("garbage", r"junk.onnx: not a readable ONNX model"),
])
def test_bad_teachers_fail_in_one_line_before_anything_is_written(case, match, files, corpus,
                                                                   tmp_path, capsys):
    arch = ["--arch", "convtasnet"]
    if case == "missing":
        teacher = _enhanced_folder(corpus, tmp_path / "enhanced", drop=("train01", "train05"))
    elif case == "short":
        teacher = _enhanced_folder(corpus, tmp_path / "enhanced", short="train03")
    elif case == "contract":
        teacher = files["bad_onnx"]
    elif case == "garbage":
        teacher = tmp_path / "junk.onnx"
        teacher.write_bytes(b"not a model")
    else:
        teacher, arch = files["onnx"], []
    out = tmp_path / "run"
    assert run_cli("distill", "--teacher", teacher, *arch, "--method", "output", "--data", corpus,
                 "--out", out, *FAST) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re_search(match, err), err
    assert not out.exists()


def re_search(pattern: str, text: str) -> bool:
    import re

    return re.search(pattern, text) is not None


def test_the_python_api_takes_a_foreign_teacher_and_arch(files, corpus, tmp_path):
    import dfkd

    run = dfkd.distill_student(teacher=files["torchscript"], data=corpus, out=tmp_path / "api",
                               preset="mini", method="spectral", steps=1, arch="dccrn",
                               settings={"batch_size": 4, "data.segment_seconds": 1.0,
                                         "valid_every": 1, "data.valid_segment_seconds": 1.25,
                                         "data.pesq_clips": 0, "threads": 1})
    history = _history(run)["run"]
    assert (history["arch"], history["teacher_kind"]) == ("dccrn", "torchscript")
    with pytest.raises(DfkdError, match="pass --arch"):
        dfkd.distill_student(teacher=files["torchscript"], data=corpus, out=tmp_path / "api2")
    assert not (tmp_path / "api2").exists()


def test_a_run_folder_without_weights_is_no_teacher_folder(tmp_path, capsys):
    run = tmp_path / "unfinished"
    run.mkdir()
    (run / "config.yaml").write_text("steps: 1\n")
    assert teacher_kind(run) == "checkpoint"
    with pytest.raises(DfkdError, match="run folder holds neither best.pt nor last.pt"):
        load_teacher_source(run, SR)
