"""dfkd.audio: reading with clear errors, mono conversion, resampling (+ its cache), atomic writes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from dfkd import audio
from dfkd.errors import DfkdError


def _sine(freq: float, rate: int, seconds: float, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_read_audio_shape_rate_and_range(tmp_path: Path) -> None:
    path = tmp_path / "stereo.wav"
    left, right = _sine(440, 16000, 0.5), _sine(880, 16000, 0.5, 0.25)
    sf.write(path, np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    data, rate = audio.read_audio(path)
    assert rate == 16000 and data.dtype == np.float32 and data.shape == (2, 8000)
    np.testing.assert_array_equal(data[1], right)
    part, _ = audio.read_audio(path, start=100, stop=200)
    np.testing.assert_array_equal(part, data[:, 100:200])


def test_load_mono_averages_channels(tmp_path: Path) -> None:
    path = tmp_path / "stereo.wav"
    left, right = _sine(440, 16000, 0.25), _sine(300, 16000, 0.25, 0.1)
    sf.write(path, np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    mono = audio.load_mono(path)
    assert mono.shape == (4000,) and mono.dtype == np.float32
    np.testing.assert_allclose(mono, (left + right) / 2, atol=1e-7)


def test_resample_keeps_frequency_and_amplitude() -> None:
    x = _sine(1000.0, 48000, 1.0, amplitude=0.5)
    y = audio.resample(x, 48000, 16000)
    assert y.dtype == np.float32 and len(y) == audio.resampled_length(len(x), 48000, 16000) == 16000
    middle = y[2000:-2000]  # away from the filter's edge effects
    spectrum = np.abs(np.fft.rfft(middle * np.hanning(len(middle))))
    peak_hz = np.argmax(spectrum) * 16000 / len(middle)
    assert abs(peak_hz - 1000.0) < 2.0
    assert abs(np.sqrt(2) * np.std(middle) - 0.5) < 0.005
    # 44.1 kHz -> 16 kHz has no small integer ratio; length must still follow resampled_length.
    z = audio.resample(_sine(440, 44100, 0.3), 44100, 16000)
    assert len(z) == audio.resampled_length(int(44100 * 0.3), 44100, 16000)


def test_resampling_cache_is_written_and_reused(tmp_path: Path, monkeypatch) -> None:
    corpus = tmp_path / "corpus"
    path = corpus / "clean_testset_wav" / "p232_001.wav"
    path.parent.mkdir(parents=True)
    sf.write(path, _sine(500, 48000, 0.5), 48000)
    first = audio.load_mono(path, 16000)
    cache_dir = corpus / ".dfkd_cache_16k"
    assert audio.default_cache_dir(path, 16000) == cache_dir
    cached = list(cache_dir.rglob("*.npy"))
    assert len(cached) == 1 and cached[0].parent.name == "clean_testset_wav"

    def no_resampling(*args, **kwargs):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(audio, "resample", no_resampling)
    np.testing.assert_array_equal(audio.load_mono(path, 16000), first)
    monkeypatch.undo()

    # A changed source file gets a new key; the stale entry is replaced, not read.
    sf.write(path, _sine(700, 48000, 0.4), 48000)
    os.utime(path, ns=(1, 1))
    second = audio.load_mono(path, 16000)
    assert len(second) == 6400 and not np.array_equal(second[:6400], first[:6400])
    assert len(list(cache_dir.rglob("*.npy"))) == 1


def test_cache_stale_cleanup_spares_similar_names(tmp_path: Path) -> None:
    folder = tmp_path / "c" / "noisy"
    folder.mkdir(parents=True)
    for name in ("a.wav", "a-b.wav"):
        sf.write(folder / name, _sine(500, 48000, 0.1), 48000)
    cache = tmp_path / "cache"
    audio.load_mono(folder / "a-b.wav", 16000, cache_dir=cache)
    audio.load_mono(folder / "a.wav", 16000, cache_dir=cache)
    assert len(list(cache.rglob("*.npy"))) == 2


@pytest.mark.parametrize("case", ["missing", "not_audio", "empty", "nan", "inf"])
def test_bad_files_raise_naming_the_file(tmp_path: Path, case: str) -> None:
    path = tmp_path / f"{case}.wav"
    if case == "not_audio":
        path.write_text("this is not a wav file")
    elif case == "empty":
        sf.write(path, np.zeros(0, dtype=np.float32), 16000)
    elif case in ("nan", "inf"):
        x = _sine(440, 16000, 0.1)
        x[10] = np.nan if case == "nan" else np.inf
        sf.write(path, x, 16000, subtype="FLOAT")
    expected = {"missing": "not found", "not_audio": "not a readable audio file",
                "empty": "empty", "nan": "NaN or Inf", "inf": "NaN or Inf"}[case]
    for call in (lambda: audio.read_audio(path), lambda: audio.load_mono(path)):
        with pytest.raises(DfkdError, match=expected) as info:
            call()
        assert str(path) in str(info.value)


def test_write_audio_roundtrip_and_atomicity(tmp_path: Path) -> None:
    x = _sine(440, 16000, 0.2)
    audio.write_audio(tmp_path / "f.wav", x, 16000, subtype="FLOAT")
    np.testing.assert_array_equal(sf.read(tmp_path / "f.wav", dtype="float32")[0], x)

    stereo = np.stack([x, -x])
    audio.write_audio(tmp_path / "s.flac", stereo, 16000)
    back, rate = audio.read_audio(tmp_path / "s.flac")
    assert rate == 16000 and back.shape == (2, len(x))
    np.testing.assert_allclose(back, stereo, atol=1 / 32768)

    loud = np.array([2.0, -2.0, 0.5], dtype=np.float32)  # PCM clips instead of wrapping around
    audio.write_audio(tmp_path / "loud.wav", loud, 16000)
    np.testing.assert_allclose(sf.read(tmp_path / "loud.wav")[0], [audio.PCM16_MAX, -1.0, 0.5],
                               atol=1e-4)

    with pytest.raises(DfkdError, match="NaN"):
        audio.write_audio(tmp_path / "bad.wav", np.array([np.nan], dtype=np.float32), 16000)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.wav", "loud.wav", "s.flac"]


def test_segment_reads_match_full_reads(tmp_path: Path) -> None:
    native, other = tmp_path / "n" / "a.wav", tmp_path / "o" / "a.wav"
    for path, rate in ((native, 16000), (other, 48000)):
        path.parent.mkdir()
        sf.write(path, _sine(300, rate, 1.0), rate, subtype="FLOAT")
    for path in (native, other):
        full = audio.load_mono(path, 16000)
        np.testing.assert_array_equal(audio.load_mono_segment(path, 1000, 3000, 16000), full[1000:3000])


def test_snr_helpers() -> None:
    rng = np.random.default_rng(0)
    clean, noise = rng.standard_normal(16000).astype(np.float32), rng.standard_normal(16000)
    for snr in (-5.0, 0.0, 12.5):
        scaled = audio.scale_to_snr(clean, noise, snr)
        assert abs(audio.snr_db(clean, clean + scaled) - snr) < 1e-3
