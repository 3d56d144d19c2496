"""Skip optimizer steps whose loss or gradients are not finite; stop after too many in a row.

A skipped step changes no weight and no optimizer state. The decision stays on the device: `check`
returns a 0-dim bool tensor and updates device-side counters, and `amh.train.step.optimizer_step` hands
the skip to the fused AdamW kernel as its `found_inf` (how GradScaler skips without a host sync).
The host learns what happened only when it asks: `read()` (one sync, at log time), or the
properties and `should_stop()`, each of which syncs.

Stop after N in a row, read late: the loop asks `should_stop()` only when it reads the guard (at
log steps and before a checkpoint), so it notices a run of N skips up to `log_every - 1` steps
late. Those late steps change nothing either: once N skips in a row have happened the guard is
*tripped* and refuses every later step, finite or not (they are counted in `steps_after_trip`,
not as skips), so the weights, optimizer state and counters at the stop are those of an
immediate stop.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class GuardReading:
    """The guard's counters, read off the device in one sync."""

    skipped_total: int
    consecutive: int
    new_skips: int  # skips since the previous `read()`
    last_bad_groups: list[str]  # what was non-finite at the last skip ("loss" or clip-group names)
    tripped: bool  # `max_consecutive` skips in a row happened: stop
    steps_after_trip: int  # steps refused after the trip, before the loop noticed


class NanGuard:
    def __init__(self, max_consecutive: int):
        self.max_consecutive = max_consecutive
        # Device counters, created on the first check's device: skipped_total, consecutive,
        # steps_after_trip (int64) and tripped (bool).
        self._counts = torch.zeros(3, dtype=torch.int64)
        self._tripped = torch.zeros((), dtype=torch.bool)
        # Per set of names checked together: the non-finite flags of its last skip and that skip's
        # serial number (skipped_total after it), so `read` finds the latest across sets.
        self._last: dict[tuple[str, ...], tuple[torch.Tensor, torch.Tensor]] = {}
        self._reported = 0

    def check(self, loss: torch.Tensor, norms: dict[str, torch.Tensor]) -> torch.Tensor:
        """A 0-dim bool tensor on the device: may this step be taken? Records the skip otherwise. No host sync."""
        values = torch.stack([loss.detach().float().reshape(())] + [n.detach().float().reshape(()) for n in norms.values()])
        device = values.device
        if self._counts.device != device:
            self._counts, self._tripped = self._counts.to(device), self._tripped.to(device)
            self._last = {k: (f.to(device), s.to(device)) for k, (f, s) in self._last.items()}
        finite = torch.isfinite(values)
        frozen = self._tripped.clone()
        bad = ~finite.all()
        counts = self._counts
        skip = bad & ~frozen  # a counted skip; after the trip steps are refused, not counted
        skipped = counts[0] + skip.long()
        consecutive = torch.where(frozen, counts[1], torch.where(bad, counts[1] + 1, torch.zeros_like(counts[1])))
        self._counts = torch.stack([skipped, consecutive, counts[2] + frozen.long()])
        self._tripped = frozen | (consecutive >= self.max_consecutive)
        names = ("loss", *norms)
        flags, serial = self._last.get(names, (torch.zeros_like(finite), torch.zeros_like(counts[0])))
        self._last[names] = (torch.where(skip, ~finite, flags), torch.where(skip, skipped, serial))
        return ~bad & ~frozen

    def read(self) -> GuardReading:
        """Every counter in one host sync (call at log time); `new_skips` counts from the previous read."""
        keys = list(self._last)
        values = torch.cat([self._counts, self._tripped.long().reshape(1)]
                           + [self._last[k][1].reshape(1) for k in keys]).tolist()
        skipped, consecutive, after, tripped = values[:4]
        bad: list[str] = []
        if keys and skipped:
            latest = max(range(len(keys)), key=lambda i: values[4 + i])
            flags = self._last[keys[latest]][0].tolist()
            bad = [name for name, b in zip(keys[latest], flags) if b]
        new, self._reported = skipped - self._reported, skipped
        return GuardReading(skipped, consecutive, max(0, new), bad, bool(tripped), after)

    # Each of these syncs with the device; use `read()` for several at once.
    @property
    def skipped_total(self) -> int:
        return int(self._counts[0])

    @property
    def consecutive(self) -> int:
        return int(self._counts[1])

    @property
    def last_bad_groups(self) -> list[str]:
        reported = self._reported
        try:
            return self.read().last_bad_groups
        finally:
            self._reported = reported

    def should_stop(self) -> bool:
        return bool(self._tripped)

    def diagnosis(self, step: int, precision: str) -> str:
        hint = ("fp16 overflowed: try train.precision=bf16 (or fp32, the 'nuclear option'), a lower optim.lr, "
                "or a smaller model.init_std_factor") if precision == "fp16" else (
                "try a lower optim.lr, a smaller model.init_std_factor, stricter train.clip_groups, or check the data "
                "(scripts/prepare_dataset.py reports bad rows)")
        reported = self._reported
        r = self.read()
        self._reported = reported
        late = (f" (noticed {r.steps_after_trip} step(s) later; the guard refused those steps, so nothing changed "
                "after the trip)") if r.steps_after_trip else ""
        return (f"{r.consecutive} optimizer steps in a row had non-finite values (last: {', '.join(r.last_bad_groups)})"
                f"{late} at step {step}; stopping (no weight changed after the last good step). {hint}.")

    def state_dict(self) -> dict:
        r = self._counts.tolist()
        return {"skipped_total": r[0], "consecutive": r[1]}

    def load_state_dict(self, state: dict) -> None:
        device = self._counts.device
        self._counts = torch.tensor([int(state["skipped_total"]), int(state["consecutive"]), 0], device=device)
        self._tripped = torch.tensor(int(state["consecutive"]) >= self.max_consecutive, device=device)
        self._reported = int(state["skipped_total"])
