"""The two-step KD schedule: first the KD term alone, then the task loss (with or without KD).

After Kegler, Stamenovic & Nathoo, "Two-Step Knowledge Distillation for Tiny Speech Enhancement",
ICASSP 2024 (arXiv 2309.08144): the student first learns to imitate the teacher, with no clean
target in its objective, and only then trains on the supervised task loss. Here the first step
uses whichever output-level KD method the run has (their paper uses a feature-level similarity
loss; the schedule itself does not depend on the loss), and the second step either keeps the KD
term (``task+kd``: ``L_task + λ L_KD``) or drops it (``task``).

Decisions where the paper leaves the toolkit free:

* Step one minimises ``λ · L_KD``, the very term of the joint objective, so gradient clipping
  and the Adam steps see the scale that λ was tuned for (method.md, "KD/task gradient ratio").
* One learning-rate schedule spans both steps, and the optimiser state carries over: the run is
  one run, which keeps ``--resume`` bit-exact across the switch.
* The switch step is ``round(fraction × steps)``, fixed when the run starts and stored in the run
  info: raising ``steps`` on ``--resume`` lengthens step two and never sends a run back to step one.
* The clean target is no term of step one. A teacher alignment that reads it (the polarity or
  scale fix of :mod:`dfkd.distill.methods`) still applies, so both steps compare with the same
  teacher reference; with both fixes off, step one reads no clean audio at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from ..errors import DfkdError

THEN_CHOICES = ("task", "task+kd")


@dataclass(frozen=True)
class TwoStep:
    """Where a run switches from step one (KD alone) to step two, and what step two keeps.

    Attributes:
        switch_step: the number of optimiser steps of step one (steps ``0 .. switch_step - 1``).
        then: ``task`` (the task loss alone) or ``task+kd`` (the joint objective).
    """

    switch_step: int
    then: str

    def phase(self, step: int) -> int:
        """1 or 2: the step of the schedule that (0-based) optimiser step ``step`` belongs to."""
        return 1 if step < self.switch_step else 2

    def uses_task(self, step: int) -> bool:
        return self.phase(step) == 2

    def uses_kd(self, step: int) -> bool:
        return self.phase(step) == 1 or self.then == "task+kd"

    def info(self) -> dict[str, Any]:
        return {"switch_step": self.switch_step, "then": self.then}


def check_two_step(fraction: float, then: str, method: str) -> None:
    """The config checks of the two options (DfkdError with the key's name)."""
    if not 0.0 <= fraction < 1.0:
        raise DfkdError(f"kd.two_step must be in [0, 1) (the fraction of steps on KD alone), "
                        f"not {fraction}")
    if then not in THEN_CHOICES:
        raise DfkdError(f"kd.two_step_then must be task or task+kd, not {then!r}")
    if fraction > 0 and method == "none":
        raise DfkdError("kd.two_step needs a KD method: with `none` the first step would have "
                        "no objective at all")


def two_step_schedule(fraction: float, then: str, steps: int,
                      saved: Mapping[str, Any] | None = None) -> TwoStep | None:
    """The run's two-step schedule, or ``None`` when ``fraction`` is 0 (the joint objective
    throughout). ``saved`` is the ``two_step`` entry of a resumed run's info: its switch step
    stands, whatever ``steps`` is now."""
    if fraction <= 0:
        return None
    if saved:
        return TwoStep(int(saved["switch_step"]), str(saved["then"]))
    switch = int(round(fraction * steps))
    if switch < 1:
        raise DfkdError(f"kd.two_step {fraction} of {steps} steps leaves step one empty; "
                        "raise the fraction or the steps")
    return TwoStep(switch, then)


# Options a grid's method entry may give beside its KD options (every KD method takes them) ->
# the config keys they set. An entry without them keeps the run identity it had before.
SCHEDULE_OPTION_KEYS: dict[str, str] = {"two_step": "kd.two_step", "two_step_then": "kd.two_step_then"}


def split_schedule_options(options: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(KD method options, schedule options)`` of a grid method entry's options."""
    kd = {k: v for k, v in options.items() if k not in SCHEDULE_OPTION_KEYS}
    schedule = {k: v for k, v in options.items() if k in SCHEDULE_OPTION_KEYS}
    return kd, schedule
