"""The one audio reader and the atomic writer on bad input (issue 14)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile as sf

from dfkd.audio import AUDIO_EXTENSIONS, audio_info, load_mono, read_audio, write_audio
from dfkd.errors import DfkdError
from dfkd.files import atomic_write, remove_stale_temps, write_text


def _tone(frames: int = 16000) -> np.ndarray:
    return (0.1 * np.sin(np.arange(frames) * 0.05)).astype(np.float32)


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "FLOAT"])
def test_truncated_wav_is_an_error_naming_the_file(tmp_path, subtype):
    whole = tmp_path / "whole.wav"
    sf.write(whole, _tone(), 16000, subtype=subtype)
    cut = tmp_path / "cut.wav"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    for reader in (audio_info, read_audio, lambda p: load_mono(p, cache=False)):
        with pytest.raises(DfkdError, match=r"cut\.wav: truncated audio file \(the header "
                                            r"declares 16000 frames"):
            reader(cut)
    assert read_audio(whole)[0].shape == (1, 16000)  # a whole file is read as before


def test_truncated_flac_empty_and_non_finite_files(tmp_path):
    whole = tmp_path / "whole.flac"
    sf.write(whole, _tone(48000), 16000)
    cut = tmp_path / "cut.flac"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(DfkdError, match=r"cut\.flac: (truncated|not a readable)"):
        read_audio(cut)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, np.float32), 16000)
    with pytest.raises(DfkdError, match=r"empty\.wav: audio file is empty"):
        audio_info(empty)
    bad = _tone()
    bad[[3, 4, 5]] = [np.nan, np.inf, -np.inf]
    sf.write(tmp_path / "nan.wav", bad, 16000, subtype="FLOAT")
    with pytest.raises(DfkdError, match=r"nan\.wav: audio contains 3 NaN or Inf"):
        read_audio(tmp_path / "nan.wav")
    with pytest.raises(DfkdError, match="refusing to write"):
        write_audio(tmp_path / "out.wav", bad, 16000)
    assert not (tmp_path / "out.wav").exists()


def test_one_format_list_includes_ogg(tmp_path):
    from dfkd.deploy import enhance

    assert AUDIO_EXTENSIONS == enhance.AUDIO_EXTENSIONS and ".ogg" in AUDIO_EXTENSIONS
    write_audio(tmp_path / "x.ogg", _tone(), 16000)
    assert sf.info(tmp_path / "x.ogg").format == "OGG"
    assert read_audio(tmp_path / "x.ogg")[0].shape == (1, 16000)


def test_atomic_writes_get_umask_permissions_and_stale_temps_are_removed(tmp_path):
    old = os.umask(0o027)
    try:
        write_text(tmp_path / "a.txt", "x")
        atomic_write(tmp_path / "b.bin", lambda tmp: open(tmp, "wb").write(b"y"))
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "b.bin").stat().st_mode & 0o777 == 0o640
    (tmp_path / ".best.pt.k3j2.tmp").write_bytes(b"half")
    (tmp_path / ".hidden_folder.tmp").mkdir()
    assert remove_stale_temps(tmp_path) == [tmp_path / ".best.pt.k3j2.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hidden_folder.tmp", "a.txt", "b.bin"]
