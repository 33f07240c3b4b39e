"""One training loop for teachers and students: ``L = L_task(ŝ_S, y) + λ · L_KD(ŝ_S, ŝ_T)``.

(DFKD, Yuan et al., arXiv 2502.04711, "Total objective" of ``docs/method.md``; with the ``none``
method it is plain task-loss training, which is how teachers are trained.)

Adam(W) with a linear warm-up and a cosine (or constant) schedule, global-norm gradient clipping,
validation on a fixed in-memory set with SI-SNR and, on a few clips, PESQ; ``best.pt`` keeps the
best validation score and ``last.pt`` the full training state (model, optimiser, scheduler, RNG
states, step), both written atomically. Because the data order is a function of the step
(:mod:`dfkd.training.batches`) and every RNG is restored, a run killed at any time and resumed from
``last.pt`` ends with the same weights, bit for bit on CPU, as one that was never interrupted.

With the two-step schedule (:mod:`dfkd.training.schedule`, Kegler et al., ICASSP 2024) the first
``switch_step`` steps minimise ``λ · L_KD`` alone and the rest ``L_task`` (+ ``λ · L_KD``); every
history record then carries ``phase`` (1 or 2), and no logging interval straddles the switch.

Under ``torchrun`` the model is wrapped in DistributedDataParallel; each process takes an equal share
of the global batch, so the averaged gradient is the one-process gradient of that batch. Only rank 0
validates and writes.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from ..evaluation import metrics
from ..checkpoint import model_payload, save_checkpoint
from ..distill.methods import KDLoss
from ..errors import DfkdError, TrainingStopped
from ..losses import si_snr
from .config import OptimConfig, TrainConfig, to_dict
from .batches import ValidationSet, step_batches
from .log import N_BINS, Averager, RunLog
from .schedule import TwoStep


@dataclass(frozen=True)
class DistContext:
    """This process in a (possibly one-process) DDP job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def make_optimizer(config: OptimConfig, params) -> torch.optim.Optimizer:
    cls = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    return cls(params, lr=config.lr, betas=tuple(config.betas), weight_decay=config.weight_decay)


def lr_factor(config: OptimConfig, total_steps: int) -> Callable[[int], float]:
    """Learning-rate multiplier per step: linear warm-up, then cosine decay or constant."""

    def factor(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        if config.schedule == "constant":
            return 1.0
        progress = min((step - config.warmup_steps) / max(total_steps - config.warmup_steps, 1), 1.0)
        cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
        return config.min_lr_ratio + (1.0 - config.min_lr_ratio) * cosine

    return factor


def rng_state() -> dict[str, Any]:
    """Every RNG a step may draw from, in a form ``torch.load(weights_only=True)`` accepts."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
        "python": random.getstate(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))


def _grad_norm(grads) -> torch.Tensor:
    return torch.sqrt(sum(g.pow(2).sum() for g in grads if g is not None))


class Trainer:
    """Trains ``model`` (already built and seeded) on ``train_set``; see the module docstring.

    Args:
        config: the resolved run configuration.
        model: the model to train.
        kd: the KD loss (``make_kd_loss``); ``none`` for teachers.
        task_loss: ``loss(estimate, clean) -> scalar``.
        teacher: the frozen teacher (None when ``kd`` needs none, or when every training item
            carries its output: a folder of teacher outputs).
        train_set: items ``(noisy, clean)`` or ``(noisy, clean, cached_teacher_output)``.
        valid_set: the fixed validation clips.
        out_dir: the run folder.
        device: where to train.
        dist: this process in the DDP job.
        run_info: what is trained, for ``history.json`` and the checkpoints.
        two_step: the two-step schedule (None: the joint objective at every step).
    """

    def __init__(
        self,
        config: TrainConfig,
        model: nn.Module,
        kd: KDLoss,
        task_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        teacher: nn.Module | None,
        train_set,
        valid_set: ValidationSet,
        out_dir: Path,
        device: torch.device,
        dist: DistContext = DistContext(),
        run_info: dict[str, Any] | None = None,
        two_step: TwoStep | None = None,
    ) -> None:
        self.config, self.kd, self.task_loss = config, kd, task_loss
        self.device, self.dist, self.out_dir = device, dist, Path(out_dir)
        self.model = model.to(device)
        self.net: nn.Module = self.model
        if dist.world_size > 1:
            ids = [device.index] if device.type == "cuda" else None
            self.net = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        self.teacher = teacher.to(device).eval() if teacher is not None else None
        if self.teacher is not None:
            self.teacher.requires_grad_(False)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = make_optimizer(config.optim, self.params)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_factor(config.optim, config.steps)
        )
        self.train_set, self.valid_set = train_set, valid_set
        self.run_info = dict(run_info or {})
        self.two_step = two_step
        self.step = 0
        self.best: float | None = None
        self._valid_teacher: torch.Tensor | None = None

    # ------------------------------------------------------------------ one step
    def train_step(
        self,
        noisy: torch.Tensor,
        clean: torch.Tensor,
        teacher_output: torch.Tensor | None = None,
        measure_ratio: bool = False,
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
        """Forward, backward, clip, optimiser and scheduler step. Returns (logged values, bins)."""
        noisy, clean = noisy.to(self.device), clean.to(self.device)
        self.net.train()
        estimate = self.net(noisy)
        use_task = self.two_step is None or self.two_step.uses_task(self.step)
        use_kd = self.kd.needs_teacher and (self.two_step is None or self.two_step.uses_kd(self.step))
        task = self.task_loss(estimate, clean)
        logged: dict[str, torch.Tensor] = {"task": task.detach()}  # logged in step one too
        total, crossover = (task if use_task else None), None
        if use_kd:
            if teacher_output is None:
                with torch.no_grad():
                    teacher_output = self.teacher(noisy)
            kd_out = self.kd(estimate, teacher_output.to(self.device), clean)
            weighted = self.kd.weight * kd_out.loss
            total = weighted if total is None else total + weighted
            crossover = kd_out.crossover_bins
            logged["kd"] = kd_out.loss.detach()
            logged.update({f"kd_{k}": v for k, v in kd_out.parts.items()})
            if measure_ratio and use_task and kd_out.loss.requires_grad:
                # Separate gradients of each term (method.md: log the KD/task gradient-norm ratio).
                # autograd.grad leaves .grad and DDP's reducer untouched, so the update below is
                # the same whether or not this step was measured.
                task_grads = torch.autograd.grad(task, self.params, retain_graph=True, allow_unused=True)
                kd_grads = torch.autograd.grad(
                    kd_out.loss, self.params, retain_graph=True, allow_unused=True
                )
                per_lambda = _grad_norm(kd_grads) / (_grad_norm(task_grads) + 1e-12)
                logged["grad_ratio_per_lambda"] = per_lambda
                logged["grad_ratio"] = self.kd.weight * per_lambda
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        max_norm = self.config.optim.grad_clip if self.config.optim.grad_clip > 0 else math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, max_norm)
        if not math.isfinite(float(grad_norm)):
            raise DfkdError(
                f"step {self.step + 1}: the gradient is not finite (loss {float(total):.4g}); "
                "lower optim.lr or the KD weight, or resume from last.pt"
            )
        self.optimizer.step()
        self.scheduler.step()
        logged["loss"] = total.detach()
        logged["grad_norm"] = grad_norm.detach()
        return logged, crossover

    # ------------------------------------------------------------------ validation
    @torch.no_grad()
    def validate(self) -> tuple[dict[str, Any], torch.Tensor | None]:
        """Scores of the model on the fixed validation set (rank 0 only)."""
        batch_size = self.config.data.valid_batch_size
        # A folder of teacher outputs covers the training split only: no KD term in validation.
        with_kd = self.kd.needs_teacher and self.teacher is not None
        if with_kd and self._valid_teacher is None:
            outputs = [self.teacher(n.to(self.device)).cpu() for n, _ in self.valid_set.batches(batch_size)]
            self._valid_teacher = torch.cat(outputs)
        self.model.eval()
        estimates, losses, kd_values = [], [], []
        crossover = torch.zeros(N_BINS, dtype=torch.long) if self.kd.name == "dfkd" else None
        for k, (noisy, clean) in enumerate(self.valid_set.batches(batch_size)):
            estimate = self.model(noisy.to(self.device))
            clean = clean.to(self.device)
            losses.append(float(self.task_loss(estimate, clean)) * len(noisy))
            if with_kd:
                teacher = self._valid_teacher[k * batch_size : k * batch_size + len(noisy)]
                kd_out = self.kd(estimate, teacher.to(self.device), clean)
                kd_values.append(float(kd_out.loss) * len(noisy))
                if crossover is not None and kd_out.crossover_bins is not None:
                    crossover += torch.bincount(kd_out.crossover_bins.cpu(), minlength=N_BINS)[:N_BINS]
            estimates.append(estimate.cpu())
        self.model.train()
        estimate = torch.cat(estimates)
        clips = len(estimate)
        scores = si_snr(estimate, self.valid_set.clean)
        noisy_scores = si_snr(self.valid_set.noisy, self.valid_set.clean)
        record: dict[str, Any] = {
            "si_snr": float(scores.mean()),
            "si_snri": float((scores - noisy_scores).mean()),
            "loss": sum(losses) / clips,
        }
        if kd_values:
            record["kd"] = sum(kd_values) / clips
        pesq_scores = []
        for k in range(min(self.config.data.pesq_clips, clips)):
            try:
                pesq_scores.append(
                    metrics.pesq_wb(estimate[k].numpy(), self.valid_set.clean[k].numpy(),
                                    self.config.data.sample_rate)
                )
            except DfkdError:
                pass  # PESQ cannot score this clip (e.g. too quiet); the mean uses the others
        if pesq_scores:
            record["pesq_wb"] = float(np.mean(pesq_scores))
        return record, crossover

    def _score(self, record: dict[str, Any]) -> float | None:
        metric = self.config.best_metric
        if metric not in record:
            return None
        return -record[metric] if metric == "loss" else record[metric]

    # ------------------------------------------------------------------ checkpoints
    def state_payload(self) -> dict[str, Any]:
        return model_payload(
            self.model,
            step=self.step,
            optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(),
            rng=rng_state(),
            best=self.best,
            run_config=to_dict(self.config),
            train_seed=self.config.seed,
            run_info=self.run_info,
        )

    def restore(self, payload: dict[str, Any]) -> None:
        """Continue from a ``last.pt`` payload (weights, optimiser, schedule, RNG, step)."""
        try:
            self.model.load_state_dict(payload["state_dict"], strict=True)
            self.optimizer.load_state_dict(payload["optimizer"])
            self.scheduler.load_state_dict(payload["scheduler"])
            set_rng_state(payload["rng"])
        except (KeyError, RuntimeError, ValueError) as err:
            raise DfkdError(f"last.pt does not match this run ({type(err).__name__}: {err})") from err
        self.step, self.best = int(payload["step"]), payload.get("best")

    def save_last(self, log: RunLog) -> None:
        if self.dist.is_main:
            # history first: a kill between the two leaves extra records, which resume drops
            log.save()
            save_checkpoint(self.out_dir / "last.pt", self.state_payload())

    def save_best(self) -> None:
        payload = model_payload(
            self.model, step=self.step, metric=self.config.best_metric, best=self.best,
            run_config=to_dict(self.config), train_seed=self.config.seed, run_info=self.run_info,
        )
        save_checkpoint(self.out_dir / "best.pt", payload)

    # ------------------------------------------------------------------ the loop
    def run(self) -> dict[str, Any]:
        """Train to ``config.steps`` (or ``stop_after``); returns the last validation record."""
        config = self.config
        # stop_after cuts a run short without changing its schedule: a long cosine run can be
        # trained in parts (resume with a later stop_after) and stays the same run.
        end = min(config.steps, config.stop_after or config.steps)
        log = RunLog(self.out_dir, self.dist.is_main, self.step, end, self.run_info,
                     progress=config.progress, sample_rate=config.data.sample_rate)
        averager, last_valid = Averager(), {}
        try:
            if self.step >= end:
                return last_valid
            batches = step_batches(self.train_set, config, self.step, self.dist.rank,
                                   self.dist.world_size)
            switch = self.two_step.switch_step if self.two_step is not None else None
            for _, batch in batches:
                phase = self.two_step.phase(self.step) if self.two_step is not None else None
                measure = bool(config.grad_ratio_every) and self.step % config.grad_ratio_every == 0
                logged, crossover = self.train_step(*batch[:3], measure_ratio=measure)
                self.step += 1
                averager.add(logged)
                averager.add_crossover(crossover)
                log.step_done()
                done = self.step >= end
                # a record per interval, and one at the switch: no record mixes the two steps
                if self.step % config.log_every == 0 or done or self.step == switch:
                    log.log_train(self.step, averager, self.scheduler.get_last_lr()[0],
                                  {} if phase is None else {"phase": phase})
                    averager = Averager()
                if (self.step % config.valid_every == 0 or done) and self.dist.is_main:
                    last_valid, crossover_counts = self.validate()
                    score = self._score(last_valid)
                    improved = score is not None and (self.best is None or score > self.best)
                    if improved:
                        self.best = score
                        self.save_best()
                    extra = {} if phase is None else {"phase": phase}
                    log.log_valid(self.step, {**last_valid, **extra, "best": improved},
                                  crossover_counts)
                # a wall-clock deadline (a time-limited machine): save where we are and stop, so
                # that the next call resumes here instead of from the last periodic checkpoint
                stopped = (not done and config.deadline is not None
                           and time.time() >= config.deadline)
                if self.step % config.checkpoint_every == 0 or done or stopped:
                    self.save_last(log)
                if stopped:
                    raise TrainingStopped(f"{self.out_dir}: stopped at the deadline, step {self.step}")
                if done:
                    break
        finally:
            log.close()
        return last_valid
