"""`dfkd bench` and dfkd.deploy.bench: timing table, ratios and JSON fields."""

from __future__ import annotations

import json
import os

import pytest
import torch

from dfkd.deploy.bench import ENGINES, thread_counts
from dfkd.checkpoint import model_payload, save_checkpoint
from dfkd.cli import main
from dfkd.errors import DfkdError
from dfkd.models import build


def test_bench_json_fields(tmp_path, capsys):
    torch.manual_seed(0)
    teacher, student = tmp_path / "teacher.pt", tmp_path / "student.pt"
    save_checkpoint(teacher, model_payload(build("convtasnet", "mini", hid_chan=64)))
    save_checkpoint(student, model_payload(build("convtasnet", "mini")))
    out = tmp_path / "bench.json"
    assert main(["bench", str(teacher), str(student), "--seconds", "0.5", "--rounds", "1",
                 "--threads", "1", "--json", str(out), "--quiet"]) == 0
    data = json.loads(out.read_text())
    assert data["seconds"] == 0.5 and data["machine"]["cores"] == os.cpu_count()
    rows = data["rows"]
    assert len(rows) == 2 * len(ENGINES)
    for row in rows:
        assert {"model", "arch", "preset", "params", "macs_per_second", "engine", "threads", "rtf",
                "latency_ms", "rounds"} <= set(row)
        assert row["rtf"] > 0 and row["latency_ms"] > 0 and row["threads"] == 1
    assert {r["arch"] for r in rows} == {"convtasnet"}
    params = {r["model"]: r["params"] for r in rows}
    assert params["teacher.pt"] > params["student.pt"]
    kinds = {q["kind"] for q in data["ratios"]}
    assert kinds == {"student_vs_teacher", "onnx_vs_pytorch", "int8_vs_fp32"}
    assert all(q["speedup"] > 0 for q in data["ratios"])
    table = capsys.readouterr().out
    assert "onnx-int8" in table and "ONNX Runtime fp32 over PyTorch eager" in table


def test_bench_fresh_presets_one_engine(capsys):
    assert main(["bench", "--arch", "convtasnet", "--presets", "mini", "--engines", "pytorch",
                 "--seconds", "0.5", "--rounds", "1", "--threads", "1", "--quiet"]) == 0
    assert "convtasnet/mini" in capsys.readouterr().out


def test_thread_counts_and_errors():
    assert thread_counts("1,all") == ([1] if os.cpu_count() == 1 else [1, os.cpu_count()])
    with pytest.raises(DfkdError):
        thread_counts("two")
    assert main(["bench"]) == 1
    assert main(["bench", "--arch", "convtasnet", "--engines", "tensorrt"]) == 1
