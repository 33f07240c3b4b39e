"""Package-level checks: the CLI dispatches, torchaudio stays out, errors are clean."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from dfkd import cli


def test_torchaudio_is_not_importable():
    # torchaudio has no build for torch 2.13 and breaks at import; nothing may pull it in.
    assert importlib.util.find_spec("torchaudio") is None, "torchaudio is installed: remove it"


def test_torch_is_pinned_version():
    import torch

    assert torch.__version__.split("+")[0] == "2.13.0"


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for name in cli.COMMANDS:
        assert name in out


def test_console_script_runs():
    result = subprocess.run(
        [sys.executable, "-m", "dfkd", "--version"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0
    assert result.stdout.startswith("dfkd ")


def test_unknown_architecture_is_a_clear_error():
    from dfkd import models
    from dfkd.errors import DfkdError

    with pytest.raises(DfkdError, match="unknown architecture 'unet'"):
        models.build("unet", "mini")


@pytest.mark.parametrize("name", list(cli.COMMANDS))
def test_every_command_module_imports_and_has_its_interface(name):
    import importlib

    module = importlib.import_module(f"dfkd.commands.{name}")
    assert callable(module.add_arguments) and callable(module.run)
