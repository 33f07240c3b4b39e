"""Teachers from anywhere: our checkpoints, an ONNX or TorchScript file, or a folder of outputs.

Output-level KD (DFKD, Yuan et al., arXiv 2502.04711, and every baseline of
:mod:`dfkd.distill.methods`) only needs the teacher's enhanced *waveform* for the student's
input, so the teacher need not be one of our architectures:

* ``dfkd``/``asteroid``: a run folder or checkpoint of ours (:mod:`dfkd.checkpoint`);
* ``onnx``: any ``.onnx`` model mapping a waveform ``(batch, samples)`` (or ``(batch, 1,
  samples)``) to a waveform of the same length, run by onnxruntime;
* ``torchscript``: any ``torch.jit.save`` file with the same contract;
* ``folder``: a folder of the teacher's enhanced files for the corpus (a system one can only run
  offline), paired with the training utterances by name as ``dfkd evaluate --enhanced`` pairs
  them; a training crop reads the same span of them as of the input
  (:class:`~dfkd.distill.teacher_cache.CachedTeacherDataset`).

The shape contract of the two model files is checked on a probe input when they are loaded. A
foreign teacher is assumed to run at the corpus's rate. Its fingerprint (the teacher cache's key)
is a digest of the file, so a renamed copy hits the same cache entries.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import soundfile as sf
import torch
from torch import nn

from ..audio import load_mono
from ..checkpoint import model_from_checkpoint_dict, read_checkpoint, resolve_checkpoint
from ..data.layouts import Pair, _listing, audio_by_stem
from ..errors import DfkdError
from ..files import file_digest
from .teacher_cache import crop_region, model_fingerprint

KINDS = ("checkpoint", "onnx", "torchscript", "folder")
PROBE_SAMPLES = 8000  # half a second at 16 kHz: long enough for any STFT front end


def teacher_kind(spec: str | os.PathLike) -> str:
    """Which kind of teacher ``spec`` is (one of :data:`KINDS`); a missing path is an error."""
    path = Path(spec)
    if path.is_dir():
        if (path / "best.pt").is_file() or (path / "last.pt").is_file():
            return "checkpoint"  # a run folder
        if (path / "config.yaml").is_file() or (path / "history.json").is_file():
            return "checkpoint"  # a run folder without weights yet: resolve_checkpoint says so
        return "folder"
    if not path.exists():
        raise DfkdError(f"{path}: teacher not found (a run folder, checkpoint, .onnx, TorchScript "
                        "file or folder of enhanced files)")
    if path.suffix.lower() == ".onnx":
        return "onnx"
    if _is_torchscript(path):
        return "torchscript"
    return "checkpoint"


def _is_torchscript(path: Path) -> bool:
    # torch.jit.save archives hold code/ and constants.pkl; torch.save archives hold neither.
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("/constants.pkl") for name in archive.namelist())



class WaveformTeacher(nn.Module):
    """A foreign model behind the teacher interface: ``(batch, samples)`` in and out.

    Args:
        run: the model on a float32 CPU array or tensor of the model's input rank.
        rank: 2 for ``(batch, samples)`` inputs, 3 for ``(batch, 1, samples)``.
        per_item: the model takes batches of one only (a fixed batch axis): run item by item.
        sample_rate: the rate the teacher is taken to run at (the corpus's).
    """

    ARCH = "foreign"

    def __init__(self, run: Callable[[Any], Any], rank: int, per_item: bool, sample_rate: int) -> None:
        super().__init__()
        self._run, self.rank, self.per_item = run, rank, per_item
        self.sample_rate = int(sample_rate)

    def raw(self, batch: torch.Tensor) -> torch.Tensor:
        """The model's output on ``(batch, samples)``, in its own shape (for the contract check)."""
        items = [batch[i : i + 1] for i in range(len(batch))] if self.per_item else [batch]
        outputs = []
        for item in items:
            item = item.detach().float().cpu()
            if self.rank == 3:
                item = item[:, None]
            outputs.append(torch.as_tensor(np.asarray(self._run(item))))
        return torch.cat(outputs)

    @torch.no_grad()
    def forward(self, noisy: torch.Tensor) -> torch.Tensor:
        output = self.raw(noisy)
        if output.dim() == 3 and output.shape[1] == 1:
            output = output[:, 0]
        return output.to(device=noisy.device, dtype=torch.float32)


def _check_contract(teacher: WaveformTeacher, path: Path, kind: str) -> None:
    """Run a probe and check waveform in -> waveform of the same shape out (one-line error)."""
    probe = torch.from_numpy(
        (0.05 * np.random.default_rng(0).standard_normal((2, PROBE_SAMPLES))).astype(np.float32)
    )
    want = (2, PROBE_SAMPLES) if teacher.rank == 2 else (2, 1, PROBE_SAMPLES)
    try:
        shape = tuple(teacher.raw(probe).shape)
    except Exception as err:  # onnxruntime and TorchScript raise their own kinds
        raise DfkdError(f"{path}: the {kind} teacher fails on a waveform {want} "
                        f"({type(err).__name__}: {str(err).strip().splitlines()[0][:200]})") from err
    if shape not in (want, (2, PROBE_SAMPLES), (2, 1, PROBE_SAMPLES)):
        raise DfkdError(f"{path}: the {kind} teacher must map a waveform (batch, samples) to a "
                        f"waveform of the same shape; for {want} it returned {shape}")


def load_onnx_teacher(path: Path, sample_rate: int) -> WaveformTeacher:
    """An ONNX waveform-to-waveform model as a teacher (one input; the first output is used)."""
    import onnxruntime as ort

    try:
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(torch.get_num_threads(), 1)
        options.log_severity_level = 3
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as err:
        raise DfkdError(f"{path}: not a readable ONNX model ({type(err).__name__}: "
                        f"{str(err).strip().splitlines()[0][:200]})") from err
    inputs = session.get_inputs()
    if len(inputs) != 1 or len(inputs[0].shape) not in (2, 3):
        shapes = ", ".join(str(i.shape) for i in inputs)
        raise DfkdError(f"{path}: the ONNX teacher must take one waveform input (batch, samples) "
                        f"or (batch, 1, samples); it takes {shapes or 'no input'}")
    name, shape = inputs[0].name, inputs[0].shape
    per_item = shape[0] == 1

    def run(batch: torch.Tensor) -> np.ndarray:
        return session.run(None, {name: batch.numpy()})[0]

    teacher = WaveformTeacher(run, len(shape), per_item, sample_rate)
    _check_contract(teacher, path, "ONNX")
    return teacher


def load_torchscript_teacher(path: Path, sample_rate: int) -> WaveformTeacher:
    """A TorchScript waveform-to-waveform model as a teacher (``(batch, samples)`` input)."""
    try:
        module = torch.jit.load(str(path), map_location="cpu").eval()
    except Exception as err:
        raise DfkdError(f"{path}: not a loadable TorchScript file ({type(err).__name__}: "
                        f"{str(err).strip().splitlines()[0][:200]})") from err

    def run(batch: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return module(batch)

    # The scripted module stays on the CPU (not a registered submodule): the wrapper hands it CPU
    # tensors and moves its output to the student's device, as for ONNX.
    teacher = WaveformTeacher(run, 2, False, sample_rate)
    _check_contract(teacher, path, "TorchScript")
    return teacher


@dataclass
class EnhancedFolder:
    """A folder of the teacher's enhanced files, one per training utterance (paired by name).

    ``crop`` has :meth:`~dfkd.distill.teacher_cache.TeacherCache.crop`'s signature, so a
    :class:`~dfkd.distill.teacher_cache.CachedTeacherDataset` serves crops of these files exactly
    as it serves cached teacher outputs: the same span as of the input.
    """

    folder: Path
    files: dict[str, Path]
    sample_rate: int
    cache_dir: str | os.PathLike | None = None

    def check(self, pairs: Sequence[Pair]) -> None:
        """Every pair has an output of its noisy file's length and rate (else one DfkdError)."""
        missing = [pair.name for pair in pairs if pair.name not in self.files]
        if missing:
            raise DfkdError(f"{self.folder}: no teacher output for {len(missing)} of {len(pairs)} "
                            f"training utterances: {_listing(missing)} (expected <name>.wav/.flac/"
                            ".ogg, named as the noisy files)")
        for pair in pairs:
            out, noisy = sf.info(str(self.files[pair.name])), sf.info(str(pair.noisy))
            if out.samplerate != noisy.samplerate or out.frames != noisy.frames:
                raise DfkdError(
                    f"{self.files[pair.name]}: {out.frames} samples at {out.samplerate} Hz, but its "
                    f"input {Path(pair.noisy).name} has {noisy.frames} at {noisy.samplerate} Hz "
                    "(a teacher output must be as long as its input)")

    def crop(self, pair: Pair, start: int, stop: int, length: int) -> np.ndarray:
        """Samples ``start:stop`` of the teacher's output for ``pair``, zero-padded to ``length``."""
        whole = load_mono(self.files[pair.name], self.sample_rate, cache_dir=self.cache_dir)
        return crop_region(whole, start, stop, length)


@dataclass
class TeacherSource:
    """A loaded teacher: a model to run (``model``) or stored outputs (``outputs``), and its info."""

    kind: str
    model: nn.Module | None
    outputs: EnhancedFolder | None
    info: dict[str, Any]


def load_teacher_source(spec: str | os.PathLike, sample_rate: int) -> TeacherSource:
    """Any teacher ``--teacher`` accepts (see the module docstring), frozen, with its info."""
    kind = teacher_kind(spec)
    if kind == "folder":
        folder = Path(spec)
        files = audio_by_stem(folder, "teacher output")
        if not files:
            raise DfkdError(f"{folder}: no audio files; a teacher folder holds the teacher's "
                            "enhanced files, named as the noisy ones")
        info = {"teacher": str(folder), "teacher_kind": kind, "teacher_arch": None,
                "teacher_seed": None, "teacher_fingerprint": None, "teacher_params": None}
        return TeacherSource(kind, None, EnhancedFolder(folder, files, sample_rate), info)
    if kind == "checkpoint":
        path = resolve_checkpoint(spec)
        data = read_checkpoint(path)
        model = model_from_checkpoint_dict(data, source=str(path))
        seed = data.get("train_seed")
        fingerprint, arch = model_fingerprint(model), model.ARCH
        params = sum(p.numel() for p in model.parameters())
        kind = "dfkd" if data.get("format") == "dfkd" else "asteroid"
    else:
        path = Path(spec)
        load = load_onnx_teacher if kind == "onnx" else load_torchscript_teacher
        model, seed, arch, params = load(path, sample_rate), None, None, None
        fingerprint = f"{kind}-{file_digest(path)}"
    model = model.eval().requires_grad_(False)
    info = {"teacher": str(path), "teacher_kind": kind, "teacher_arch": arch,
            "teacher_seed": None if seed is None else int(seed),
            "teacher_fingerprint": fingerprint, "teacher_params": params}
    return TeacherSource(kind, model, None, info)
