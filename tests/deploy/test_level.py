"""Output level matching (dfkd.deploy.level): `dfkd enhance` returns speech at the input's level."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from dfkd.cli import main
from dfkd.deploy.enhance import enhance_file
from dfkd.deploy.level import least_squares_gain, level_db, match_level
from dfkd.deploy.streaming import Chunking, enhance_chunked
from tiny_corpus import speech_in_noise

REPO = Path(__file__).resolve().parents[2]
ARCHS = ("convtasnet", "dptnet", "dccrn")


class _Quiet:
    """A "model" that answers 20 dB low and inverted, as SI-SNR-trained models may."""

    sample_rate = 16000

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return -0.1 * batch


def test_least_squares_gain_per_channel_and_sign():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 1000)).astype(np.float32)
    y = x * np.array([[0.1], [-3.0]], dtype=np.float32)
    np.testing.assert_allclose(least_squares_gain(x, y), [10.0, -1 / 3], rtol=1e-5)
    np.testing.assert_allclose(match_level(y, x), x, atol=1e-5)
    assert least_squares_gain(x, np.zeros_like(x)).tolist() == [1.0, 1.0]  # silence stays silence


def test_streamed_file_equals_in_memory_gain(tmp_path):
    """The two-pass file path applies the whole-file gain, the same as on the in-memory output."""
    rng = np.random.default_rng(1)
    audio = (rng.standard_normal((2, 16000 * 3)) * 0.1).astype(np.float32)
    chunking = Chunking(1.0, 0.25)
    src, dst = tmp_path / "in.wav", tmp_path / "out.wav"
    sf.write(src, audio.T, 16000, subtype="FLOAT")
    enhance_file(_Quiet(), src, dst, chunking, progress=False)
    out, _ = sf.read(dst, dtype="float32", always_2d=True)
    np.testing.assert_allclose(out.T, audio, atol=1e-5)  # -0.1 gain undone, sign restored
    expected = match_level(enhance_chunked(_Quiet(), audio, 16000, chunking), audio)
    np.testing.assert_allclose(out.T, expected, atol=1e-6)
    enhance_file(_Quiet(), src, dst, chunking, progress=False, mono=True)
    mono, _ = sf.read(dst, dtype="float32", always_2d=True)
    np.testing.assert_allclose(mono[:, 0], audio.mean(axis=0), atol=1e-5)
    enhance_file(_Quiet(), src, dst, chunking, progress=False, raw_level=True)
    raw, _ = sf.read(dst, dtype="float32", always_2d=True)
    np.testing.assert_allclose(raw.T, -0.1 * audio, atol=1e-6)


@pytest.mark.parametrize("arch", ARCHS)
def test_enhance_keeps_the_input_level_on_every_architecture(arch, tmp_path):
    """The issue's done-criterion, with the committed trained teachers of all three architectures.

    Raw outputs of SI-SNR-trained models lie 0-20 dB below the input; by default ``dfkd enhance``
    puts the speech at its level in the input: within 1 dB of the clean speech's level at 5 dB SNR
    (the noisy input itself is 1.2 dB louder there), within 1 dB of the input's level at 10 dB.
    """
    checkpoint = REPO / "pretrained" / f"{arch}_small.pt"
    for snr_db in (5.0, 10.0):
        clean, noisy = speech_in_noise(snr_db)
        src = tmp_path / f"in{snr_db:g}.wav"
        sf.write(src, noisy, 16000, subtype="FLOAT")
        out, raw = tmp_path / f"out{snr_db:g}.wav", tmp_path / f"raw{snr_db:g}.wav"
        assert main(["enhance", str(checkpoint), str(src), "--out", str(out), "--quiet"]) == 0
        assert main(["enhance", str(checkpoint), str(src), "--out", str(raw), "--quiet",
                     "--raw-level"]) == 0
        matched = level_db(sf.read(out, dtype="float32")[0])
        assert abs(matched - level_db(clean)) < 1.0, f"{arch} {snr_db} dB SNR: {matched:.2f} dBFS"
        if snr_db >= 10:
            assert abs(matched - level_db(noisy)) < 1.0
        if arch != "dccrn":  # DCCRN happens to keep its level; the others do not (the issue)
            assert level_db(sf.read(raw, dtype="float32")[0]) < level_db(noisy) - 6
