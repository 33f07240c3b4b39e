"""`dfkd enhance` and dfkd.deploy.enhance: files, folders, chunked overlap-add, ONNX backend."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from dfkd.cli import main
from dfkd.deploy.backends import TorchBackend, load_backend
from dfkd.deploy.enhance import enhance_file
from dfkd.deploy.streaming import Chunking, crossfade_ramp, enhance_array, enhance_chunked
from dfkd.errors import DfkdError


@pytest.fixture(scope="module")
def backend(checkpoint) -> TorchBackend:
    return load_backend(checkpoint)


def _noise(rng, channels: int, frames: int) -> np.ndarray:
    return (rng.standard_normal((frames, channels)) * 0.1).astype(np.float32)


class _Gain:
    """A perfectly local "model": chunking must reproduce whole-file processing exactly."""

    sample_rate = 16000

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return batch * 0.5


class _Framed:
    """Local but position-dependent, like a framed model: exact only if chunks start on its grid."""

    sample_rate = 16000
    grid = 400

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        gains = 1.0 + (np.arange(batch.shape[-1]) % self.grid) / self.grid
        return batch * gains.astype(np.float32)


def test_ramps_sum_to_one():
    ramp = crossfade_ramp(800)
    # The falling ramp (1 - rise) is the rise played backwards: fade-out mirrors fade-in.
    np.testing.assert_allclose(1 - ramp, ramp[::-1], atol=1e-6)
    assert ramp[0] < 1e-5 and ramp[-1] > 1 - 1e-5 and np.all(np.diff(ramp) > 0)


@pytest.mark.parametrize("rate", [8000, 16000, 44100])
def test_overlap_add_is_exact_for_a_local_model(rate):
    audio = _noise(np.random.default_rng(rate), 2, int(rate * 9.7)).T
    whole = enhance_array(_Gain(), audio, rate)
    chunked = enhance_chunked(_Gain(), audio, rate, Chunking(2.0, 0.25))
    assert chunked.shape == audio.shape
    # Resampling each chunk adds edge effects, but the ramps weight chunk edges by ~0.
    assert np.max(np.abs(chunked - whole)) < 1e-6


@pytest.mark.parametrize("rate", [16000, 44100])
def test_chunks_start_on_the_model_frame_grid(rate):
    audio = _noise(np.random.default_rng(rate), 1, int(rate * 7.3)).T
    chunking = Chunking(1.003, 0.2)  # a hop that is not a multiple of the grid
    chunk, overlap, step = chunking.frames(rate, 16000, _Framed.grid)
    assert (chunk - overlap) % step == 0 and ((chunk - overlap) * 16000 / rate) % _Framed.grid == 0
    whole = enhance_array(_Framed(), audio, rate)
    chunked = enhance_chunked(_Framed(), audio, rate, chunking)
    assert np.max(np.abs(chunked - whole)) < 1e-5


def test_chunked_matches_whole_file_processing(backend, tmp_path):
    """Seam error of the real (non-local: gLN over the whole input) model over 8 chunks."""
    rate = 16000
    audio = _noise(np.random.default_rng(1), 1, rate * 6).T
    chunking = Chunking(1.0, 0.25)
    assert chunking.count(audio.shape[1], rate, 16000, backend.grid) == 8
    whole = enhance_array(backend, audio, rate)
    chunked = enhance_chunked(backend, audio, rate, chunking)
    error_db = 10 * np.log10(np.sum(whole**2) / np.sum((chunked - whole) ** 2))
    assert error_db > 40, f"seam error only {error_db:.1f} dB below the signal"
    # The streaming file path computes exactly what the in-memory twin does.
    src, dst = tmp_path / "long.wav", tmp_path / "out.wav"
    sf.write(src, audio.T, rate, subtype="FLOAT")
    info = enhance_file(backend, src, dst, chunking, progress=False, raw_level=True)
    assert info["chunks"] == 8
    streamed, _ = sf.read(dst, dtype="float32", always_2d=True)
    np.testing.assert_allclose(streamed.T, chunked, atol=1e-7)


def test_folder_tree_keeps_length_rate_channels_and_format(checkpoint, tmp_path):
    rng = np.random.default_rng(2)
    src = tmp_path / "in"
    (src / "sub" / "deeper").mkdir(parents=True)
    files = {  # name: (rate, channels, frames, format subtype)
        "a.wav": (8000, 1, 8000 * 2 + 17, "PCM_16"),
        "sub/b.flac": (16000, 2, 16000 + 5, "PCM_24"),
        "sub/deeper/c.wav": (44100, 2, 44100 + 3, "FLOAT"),
        "sub/d.ogg": (16000, 1, 16000, "VORBIS"),
    }
    for name, (rate, channels, frames, subtype) in files.items():
        sf.write(src / name, _noise(rng, channels, frames), rate, subtype=subtype)
    (src / "notes.txt").write_text("not audio")
    out = tmp_path / "out"
    assert main(["enhance", str(checkpoint), str(src), "--out", str(out), "--quiet",
                 "--chunk-seconds", "0.8", "--overlap-seconds", "0.2"]) == 0
    for name, (rate, channels, frames, subtype) in files.items():
        info = sf.info(out / name)
        assert (info.samplerate, info.channels, info.subtype) == (rate, channels, subtype), name
        if subtype != "VORBIS":  # Vorbis pads/trims at the codec level
            assert info.frames == frames, name
        enhanced, _ = sf.read(out / name, always_2d=True)
        noisy, _ = sf.read(src / name, always_2d=True)
        assert not np.allclose(enhanced[: len(noisy)], noisy[: len(enhanced)], atol=1e-3)
    assert not (out / "notes.txt").exists()
    assert sorted(p.name for p in out.rglob("*")) == sorted(["a.wav", "sub", "b.flac", "deeper",
                                                             "c.wav", "d.ogg"])


def test_single_file_and_mono(checkpoint, tmp_path):
    rng = np.random.default_rng(3)
    src = tmp_path / "stereo.flac"
    sf.write(src, _noise(rng, 2, 22050), 22050)
    assert main(["enhance", str(checkpoint), str(src), "--out", str(tmp_path / "x.flac"),
                 "--quiet"]) == 0
    assert sf.info(tmp_path / "x.flac").channels == 2
    (tmp_path / "folder").mkdir()
    assert main(["enhance", str(checkpoint), str(src), "--out", str(tmp_path / "folder"),
                 "--mono", "--quiet"]) == 0
    info = sf.info(tmp_path / "folder" / "stereo.flac")
    assert (info.channels, info.frames, info.samplerate) == (1, 22050, 22050)


def test_unreadable_file_is_reported_and_others_written(checkpoint, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    sf.write(src / "good.wav", _noise(np.random.default_rng(4), 1, 16000), 16000)
    (src / "broken.wav").write_bytes(b"RIFF\x00\x00garbage")
    out = tmp_path / "out"
    assert main(["enhance", str(checkpoint), str(src), "--out", str(out), "--quiet"]) == 1
    assert (out / "good.wav").is_file()
    assert not (out / "broken.wav").exists()
    assert list(out.glob(".*")) == []  # no temporary file left behind
    err = capsys.readouterr().err
    assert "broken.wav" in err and "1 failed" in err


def test_existing_outputs_kept_unless_overwrite(checkpoint, tmp_path):
    src = tmp_path / "clip.wav"
    sf.write(src, _noise(np.random.default_rng(5), 1, 16000), 16000)
    dst = tmp_path / "out.wav"
    dst.write_bytes(b"keep me")
    args = ["enhance", str(checkpoint), str(src), "--out", str(dst), "--quiet"]
    assert main(args) == 1  # an existing output is refused (issue 14), not silently kept
    assert dst.read_bytes() == b"keep me"
    assert main(args + ["--overwrite"]) == 0
    assert sf.info(dst).frames == 16000


def test_onnx_backend_matches_torch(checkpoint, backend, tmp_path):
    from dfkd.deploy.export import export_onnx, model_metadata

    onnx_path = tmp_path / "mini.onnx"
    export_onnx(backend.model, onnx_path, metadata=model_metadata(backend.model))
    onnx_backend = load_backend(onnx_path)
    assert onnx_backend.sample_rate == 16000
    audio = _noise(np.random.default_rng(6), 2, 44100 * 2).T
    chunking = Chunking(0.8, 0.2)
    via_torch = enhance_chunked(backend, audio, 44100, chunking)
    via_onnx = enhance_chunked(onnx_backend, audio, 44100, chunking)
    assert np.max(np.abs(via_onnx - via_torch)) < 1e-4


def test_bad_options_and_paths(checkpoint, tmp_path):
    with pytest.raises(DfkdError, match="overlap"):
        Chunking(1.0, 0.6)
    with pytest.raises(DfkdError, match="no such file"):
        from dfkd.deploy.enhance import plan_outputs

        plan_outputs(tmp_path / "missing", tmp_path / "out")
    with pytest.raises(DfkdError, match="not found"):
        load_backend(tmp_path / "missing.onnx")
    assert main(["enhance", str(checkpoint), str(tmp_path / "missing.wav"), "--out",
                 str(tmp_path / "o.wav")]) == 1
