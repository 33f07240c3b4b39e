"""Audio I/O, resampling and level helpers.

Everything the rest of dfkd reads or writes goes through here, so that a bad file always gives the
same kind of error: a :class:`dfkd.errors.DfkdError` whose message starts with the file's path.

Conventions
-----------
* Samples are ``float32`` in [-1, 1]. Multi-channel arrays are ``(channels, samples)``.
* **Channel conversion** (documented, not an error): :func:`load_mono` averages all channels. For a
  stereo recording of one talker this keeps the level of a centred source; it is what VoiceBank-
  and DNS-style pipelines do with the odd stereo file.
* **Resampling** uses :func:`scipy.signal.resample_poly` (polyphase FIR, Kaiser window), which keeps
  an in-band sine's frequency and amplitude. Files whose rate differs from the requested one are
  resampled once and cached on disk as ``.npy`` (see :func:`cached_resample_path`), because
  VoiceBank ships at 48 kHz and every epoch would otherwise resample 11 572 files again.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from .files import atomic_write
from .errors import DfkdError

#: File extensions that dfkd treats as audio, for every command (soundfile reads and writes them).
AUDIO_EXTENSIONS: tuple[str, ...] = (".wav", ".flac", ".ogg")

#: soundfile format of each extension in :data:`AUDIO_EXTENSIONS`.
AUDIO_FORMATS: dict[str, str] = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG"}

#: Largest value representable in 16-bit PCM; PCM writes clip to [-1, PCM16_MAX].
PCM16_MAX = 1.0 - 2.0**-15


def _check_samples(path: Path, audio: np.ndarray) -> np.ndarray:
    if audio.size == 0:
        raise DfkdError(f"{path}: audio file is empty (0 samples)")
    if not np.all(np.isfinite(audio)):
        bad = int(np.size(audio) - np.count_nonzero(np.isfinite(audio)))
        raise DfkdError(f"{path}: audio contains {bad} NaN or Inf sample(s)")
    return audio


def declared_frames(path: str | os.PathLike) -> int | None:
    """Frames the header of a WAV (``data`` chunk) or FLAC (STREAMINFO) file declares, or None.

    libsndfile silently reports only the frames a truncated file holds; comparing with this finds
    the file that was cut short (an interrupted copy or download).
    """
    try:
        with open(path, "rb") as handle:
            head = handle.read(8192)
    except OSError:
        return None
    if head[:4] == b"fLaC" and len(head) >= 26 and head[4] & 0x7F == 0:  # STREAMINFO comes first
        total = int.from_bytes(head[21:26], "big") & ((1 << 36) - 1)
        return total or None  # 0: unknown
    if head[:4] not in (b"RIFF", b"RF64") or head[8:12] != b"WAVE" or head[:4] == b"RF64":
        return None
    block, pos = None, 12
    while pos + 8 <= len(head):
        name, size = head[pos:pos + 4], int.from_bytes(head[pos + 4:pos + 8], "little")
        if name == b"fmt " and pos + 20 <= len(head):
            block = int.from_bytes(head[pos + 20:pos + 22], "little")
        if name == b"data":
            if not block or size in (0, 0xFFFFFFFF):  # streaming writers leave the size open
                return None
            return size // block
        pos += 8 + size + (size & 1)
    return None


def check_complete(path: str | os.PathLike, frames: int) -> None:
    """Raise :class:`DfkdError` when ``path`` holds no frames, or fewer than its header declares."""
    if frames == 0:
        raise DfkdError(f"{path}: audio file is empty (0 samples)")
    declared = declared_frames(path)
    if declared is not None and frames < declared:
        raise DfkdError(f"{path}: truncated audio file (the header declares {declared} frames, "
                        f"the file holds {frames})")


def audio_info(path: str | os.PathLike) -> tuple[int, int, int]:
    """``(frames, sample_rate, channels)`` from the file header, without reading the samples.

    Raises :class:`DfkdError` for a missing, unreadable, empty or truncated file.
    """
    path = Path(path)
    if not path.is_file():
        raise DfkdError(f"{path}: audio file not found")
    try:
        info = sf.info(str(path))
    except Exception as err:  # soundfile raises RuntimeError/LibsndfileError/TypeError
        raise DfkdError(f"{path}: not a readable audio file ({err})") from err
    check_complete(path, int(info.frames))
    return int(info.frames), int(info.samplerate), int(info.channels)


def read_audio(
    path: str | os.PathLike, start: int = 0, stop: int | None = None
) -> tuple[np.ndarray, int]:
    """Read ``path`` as ``(channels, samples)`` float32 at its native rate.

    ``start``/``stop`` select a range of frames (native rate) so that training crops of long files
    do not read the whole file. Raises :class:`DfkdError` naming the file when it is missing,
    unreadable, empty, or holds NaN/Inf samples.
    """
    path = Path(path)
    frames = audio_info(path)[0]  # missing, unreadable, empty, truncated
    try:
        data, rate = sf.read(str(path), start=start, stop=stop, dtype="float32", always_2d=True)
    except Exception as err:
        raise DfkdError(f"{path}: not a readable audio file ({err})") from err
    wanted = min(frames, frames if stop is None else stop) - start
    if data.shape[0] < wanted:  # a compressed file whose stream ends early
        raise DfkdError(f"{path}: truncated audio file (the header declares {frames} frames, "
                        f"only {start + data.shape[0]} could be read)")
    return _check_samples(path, np.ascontiguousarray(data.T)), int(rate)


def to_mono(audio: np.ndarray) -> np.ndarray:
    """Average the channels of ``(channels, samples)`` audio; 1-D input is returned unchanged."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 1:
        return audio
    if audio.shape[0] == 1:
        return audio[0]
    return audio.mean(axis=0, dtype=np.float32)


def resampled_length(frames: int, orig_rate: int, target_rate: int) -> int:
    """Number of samples :func:`resample` returns for ``frames`` input samples."""
    g = math.gcd(int(orig_rate), int(target_rate))
    up, down = target_rate // g, orig_rate // g
    return int(math.ceil(frames * up / down))


def resample(audio: np.ndarray, orig_rate: int, target_rate: int) -> np.ndarray:
    """Resample along the last axis with a polyphase filter (:func:`scipy.signal.resample_poly`)."""
    audio = np.asarray(audio, dtype=np.float32)
    if orig_rate <= 0 or target_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_rate} -> {target_rate}")
    if orig_rate == target_rate:
        return audio
    g = math.gcd(int(orig_rate), int(target_rate))
    out = resample_poly(audio, target_rate // g, orig_rate // g, axis=-1)
    return np.ascontiguousarray(out, dtype=np.float32)


def _rate_tag(sample_rate: int) -> str:
    return f"{sample_rate // 1000}k" if sample_rate % 1000 == 0 else f"{sample_rate}hz"


def default_cache_dir(path: str | os.PathLike, sample_rate: int) -> Path:
    """Where resampled copies of ``path`` go: ``<corpus root>/.dfkd_cache_16k`` when writable.

    The corpus root is taken to be the folder above the file's folder (VoiceBank:
    ``<root>/clean_trainset_28spk_wav/p226_001.wav`` -> ``<root>/.dfkd_cache_16k``). Read-only corpora
    fall back to ``$XDG_CACHE_HOME/dfkd`` (default ``~/.cache/dfkd``).
    """
    root = Path(path).resolve().parent.parent
    local = root / f".dfkd_cache_{_rate_tag(sample_rate)}"
    if os.access(local if local.is_dir() else root, os.W_OK):
        return local
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "dfkd" / f"resample_{_rate_tag(sample_rate)}"


def cached_resample_path(path: str | os.PathLike, sample_rate: int, cache_dir: Path) -> Path:
    """Cache file of ``path`` resampled to ``sample_rate``, keyed by absolute path, mtime and size.

    A changed or replaced source file gets a new key, so a stale cache entry is never read.
    """
    path = Path(path).resolve()
    stat = path.stat()
    key = f"{path}|{stat.st_mtime_ns}|{stat.st_size}|{sample_rate}"
    digest = hashlib.sha1(key.encode()).hexdigest()[:16]
    return Path(cache_dir) / path.parent.name / f"{path.stem}-{digest}.npy"


def load_mono(
    path: str | os.PathLike,
    sample_rate: int = 16000,
    *,
    cache: bool = True,
    cache_dir: str | os.PathLike | None = None,
) -> np.ndarray:
    """Read ``path`` as mono float32 ``(samples,)`` at ``sample_rate``.

    Channels are averaged (:func:`to_mono`). Files at another rate are resampled; with ``cache``
    the result is kept on disk (``cache_dir``, default :func:`default_cache_dir`) and reused while
    the source file is unchanged.
    """
    path = Path(path)
    frames, rate, _ = audio_info(path)
    if rate == sample_rate:
        return to_mono(read_audio(path)[0])
    if cache:
        directory = Path(cache_dir) if cache_dir is not None else default_cache_dir(path, sample_rate)
        target = cached_resample_path(path, sample_rate, directory)
        if target.is_file():
            try:
                cached = np.load(target, mmap_mode=None, allow_pickle=False)
                if cached.ndim == 1 and cached.shape[0] == resampled_length(frames, rate, sample_rate):
                    return cached.astype(np.float32, copy=False)
            except (OSError, ValueError):
                pass  # a corrupt cache entry is rebuilt below
        audio = resample(to_mono(read_audio(path)[0]), rate, sample_rate)
        try:
            _remove_stale(target)
            atomic_write(target, lambda tmp: _save_npy(tmp, audio))
        except OSError:
            pass  # an unwritable cache only costs speed
        return audio
    return resample(to_mono(read_audio(path)[0]), rate, sample_rate)


def _remove_stale(target: Path) -> None:
    """Delete cache entries of older versions of the same source file (same stem, other key)."""
    stem = target.name[: -len("-0123456789abcdef.npy")]
    pattern = re.compile(re.escape(stem) + r"-[0-9a-f]{16}\.npy")
    if target.parent.is_dir():
        for other in target.parent.iterdir():
            if other != target and pattern.fullmatch(other.name):
                other.unlink(missing_ok=True)


def _save_npy(tmp: str, audio: np.ndarray) -> None:
    with open(tmp, "wb") as handle:
        np.save(handle, audio, allow_pickle=False)


def load_mono_segment(
    path: str | os.PathLike,
    start: int,
    stop: int,
    sample_rate: int = 16000,
    *,
    cache: bool = True,
    cache_dir: str | os.PathLike | None = None,
) -> np.ndarray:
    """Samples ``[start, stop)`` (at ``sample_rate``) of :func:`load_mono`'s output.

    At the native rate only that range is read from disk, which keeps training crops of long DNS
    files cheap; other rates go through the resampling cache.
    """
    path = Path(path)
    _, rate, _ = audio_info(path)
    if rate == sample_rate:
        return to_mono(read_audio(path, start=start, stop=stop)[0])
    return load_mono(path, sample_rate, cache=cache, cache_dir=cache_dir)[start:stop]


def write_audio(
    path: str | os.PathLike,
    audio: np.ndarray,
    sample_rate: int,
    subtype: str = "PCM_16",
) -> None:
    """Write ``(samples,)`` or ``(channels, samples)`` audio atomically (temp file + rename).

    ``subtype`` is a soundfile subtype: ``"PCM_16"`` (values are clipped to the 16-bit range, as any
    wav writer must) or ``"FLOAT"`` (written as is). The format follows the extension (:data:`AUDIO_FORMATS`; .ogg is Vorbis).
    """
    path = Path(path)
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim not in (1, 2):
        raise ValueError(f"{path}: audio must be (samples,) or (channels, samples), got {audio.shape}")
    if not np.all(np.isfinite(audio)):
        raise DfkdError(f"{path}: refusing to write audio that contains NaN or Inf")
    data = audio.T if audio.ndim == 2 else audio
    if subtype.startswith("PCM"):
        data = np.clip(data, -1.0, PCM16_MAX)
    fmt = AUDIO_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DfkdError(f"{path}: unsupported audio extension (use {', '.join(AUDIO_EXTENSIONS)})")
    if fmt == "OGG":
        subtype = "VORBIS"  # the only ogg subtype that takes any rate; already lossy
    atomic_write(path, lambda tmp: sf.write(tmp, data, int(sample_rate), subtype=subtype, format=fmt))


def rms(audio: np.ndarray) -> float:
    """Root-mean-square level of an array (0 for silence)."""
    audio = np.asarray(audio, dtype=np.float64)
    return float(np.sqrt(np.mean(audio**2))) if audio.size else 0.0


def snr_db(clean: np.ndarray, noisy: np.ndarray) -> float:
    """Global SNR of ``noisy`` against its ``clean`` component: 10 log10(|s|^2 / |x - s|^2)."""
    clean = np.asarray(clean, dtype=np.float64)
    noise = np.asarray(noisy, dtype=np.float64) - clean
    return float(10 * np.log10(np.sum(clean**2) / max(np.sum(noise**2), 1e-20)))


def scale_to_snr(clean: np.ndarray, noise: np.ndarray, snr: float) -> np.ndarray:
    """Return ``noise`` scaled so that ``clean + result`` has a global SNR of ``snr`` dB."""
    clean_power = float(np.mean(np.asarray(clean, dtype=np.float64) ** 2))
    noise_power = float(np.mean(np.asarray(noise, dtype=np.float64) ** 2))
    if noise_power <= 0.0:
        return np.zeros_like(noise, dtype=np.float32)
    gain = math.sqrt(clean_power / (noise_power * 10.0 ** (snr / 10.0)))
    return (np.asarray(noise, dtype=np.float32) * np.float32(gain)).astype(np.float32)
