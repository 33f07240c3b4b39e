"""Bad input to `dfkd experiment` (issue 14): the dry run checks what the real run checks, and
neither leaves a file behind."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from dfkd import cli, models
from dfkd.checkpoint import model_payload, save_checkpoint

from tiny_corpus import make_tiny_grid_corpus


def _config(tmp_path: Path, pretrained: str) -> Path:
    raw = {
        "name": "bad", "architectures": ["convtasnet"], "seeds": [1], "methods": ["none"],
        "teacher": {"preset": "mini", "pretrained": pretrained, "steps": 2, "batch_size": 2,
                    "seed": 0},
        "student": {"preset": "mini", "steps": 2, "batch_size": 2},
        "sweep": {"factors": [1], "steps": 2, "seeds": [1]},
        "evaluation": {"metrics": ["si_snr", "si_snri"], "workers": 0, "complexity": False},
        "report": {"clips": 0},
    }
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return make_tiny_grid_corpus(tmp_path_factory.mktemp("corpus"))


def _teachers(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    torch.manual_seed(0)
    good = model_payload(models.build("convtasnet", "mini"))
    other = model_payload(models.build("dccrn", "mini"))
    cases = {
        "mislabelled": (dict(good, state_dict=other["state_dict"]), "the weights do not fit"),
        "bare": (good["state_dict"], "neither a dfkd checkpoint nor an asteroid checkpoint"),
        "other_arch": (dict(other, train_seed=7), "the teacher for convtasnet is a dccrn"),
    }
    out = {}
    for name, (payload, message) in cases.items():
        path = tmp_path / "teachers" / f"{name}.pt"
        save_checkpoint(path, payload)
        out[name] = (path, message)
    (tmp_path / "teachers" / "empty_run").mkdir()
    out["empty_run"] = (tmp_path / "teachers" / "empty_run", "holds neither best.pt nor last.pt")
    return out


@pytest.mark.parametrize("dry", [True, False])
def test_bad_teachers_are_refused_by_the_dry_run_as_by_the_real_run(tmp_path, corpus, capsys, dry):
    for name, (path, message) in _teachers(tmp_path).items():
        out = tmp_path / f"exp_{name}"
        argv = ["experiment", "--config", str(_config(tmp_path, str(path))), "--data", str(corpus),
                "--out", str(out), "--quiet"] + (["--dry-run"] if dry else [])
        assert cli.main(argv) == 1, name
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and str(path) in err[0] and message in err[0], (name, err)
        assert not out.exists(), name  # no experiment.json, no run folders


@pytest.mark.parametrize("dry", [True, False])
def test_corpus_without_pairs_is_refused_before_any_file(tmp_path, capsys, dry):
    empty = tmp_path / "empty"
    (empty / "noisy").mkdir(parents=True)
    (empty / "clean").mkdir()
    out = tmp_path / "exp"
    argv = ["experiment", "--config", str(_config(tmp_path, "none")), "--data", str(empty),
            "--out", str(out), "--quiet"] + (["--dry-run"] if dry else [])
    assert cli.main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(empty) in err[0] and "no files" in err[0]
    assert not out.exists()
