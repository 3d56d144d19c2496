"""Skip optimizer steps whose loss or gradients are not finite; stop after too many in a row.

A skipped step changes no weight and no optimizer state (the trainer does not call `step`).
Deciding needs one host sync per optimizer step, the same one GradScaler makes.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class NanGuard:
    max_consecutive: int
    skipped_total: int = 0
    consecutive: int = 0
    last_bad_groups: list[str] = field(default_factory=list)

    def check(self, loss: torch.Tensor, norms: dict[str, torch.Tensor]) -> bool:
        """True when the step may be taken. Records the skip otherwise."""
        values = torch.stack([loss.detach().float().reshape(())] + [n.float().reshape(()) for n in norms.values()])
        finite = torch.isfinite(values)
        if bool(finite.all()):
            self.consecutive = 0
            return True
        flags = finite.tolist()
        self.last_bad_groups = (["loss"] if not flags[0] else []) + [
            name for name, ok in zip(norms, flags[1:]) if not ok]
        self.skipped_total += 1
        self.consecutive += 1
        return False

    def should_stop(self) -> bool:
        return self.consecutive >= self.max_consecutive

    def diagnosis(self, step: int, precision: str) -> str:
        hint = ("fp16 overflowed: try train.precision=bf16 (or fp32, the 'nuclear option'), a lower optim.lr, "
                "or a smaller model.init_std_factor") if precision == "fp16" else (
                "try a lower optim.lr, a smaller model.init_std_factor, stricter train.clip_groups, or check the data "
                "(scripts/prepare_dataset.py reports bad rows)")
        return (f"{self.consecutive} optimizer steps in a row had non-finite values (last: {', '.join(self.last_bad_groups)}) "
                f"at step {step}; stopping. The last good checkpoint is intact. {hint}")

    def state_dict(self) -> dict:
        return {"skipped_total": self.skipped_total, "consecutive": self.consecutive}

    def load_state_dict(self, state: dict) -> None:
        self.skipped_total = int(state["skipped_total"])
        self.consecutive = int(state["consecutive"])
