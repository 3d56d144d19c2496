"""What per-group clipping does under AdamW: shadow AdamW copies of each clip group fed one run's
true gradients, clipped or not, steadily scaled, and with one injected spike."""
from __future__ import annotations

import math
import statistics

import torch

# The steady factor compared with the clip.
STEADY_FACTOR = 0.1


class ClipUnderAdam:
    """AdamW updates of one clip group with and without its clip, on the same gradients.

    Shadow copies of the group's parameters, each with its own `torch.optim.AdamW` (the run's betas,
    eps, per-parameter weight decay, and each step's lr), are fed one run's true gradients,
    transformed per shadow: "raw" as they are; "clip" scaled by min(1, max_norm / ||g||) as
    `amh.train.clipping` does; "scaled" times a steady STEADY_FACTOR; "raw+spike" and "clip+spike" the
    same as "raw" and "clip" except that step `spike_step`'s gradient is multiplied by
    `spike_factor` first. Only the optimizer sees the transformed gradients (the model trains on
    the raw ones), so the differences are Adam's alone, not a different trajectory's.
    """

    SHADOWS = ("raw", "clip", "scaled", "raw+spike", "clip+spike")

    def __init__(self, name: str, params: list, weight_decays: list[float], max_norm: float, *, betas, eps: float,
                 spike_step: int, spike_factor: float):
        self.name, self.params, self.max_norm = name, list(params), max_norm
        self.spike_step, self.spike_factor = spike_step, spike_factor
        self.steps = 0
        self.shadows = {}
        for shadow in self.SHADOWS:
            copies = [p.detach().float().clone() for p in self.params]
            groups = [{"params": [c], "weight_decay": wd} for c, wd in zip(copies, weight_decays)]
            self.shadows[shadow] = (copies, torch.optim.AdamW(groups, lr=1.0, betas=tuple(betas), eps=eps))
        self.records: list[dict] = []

    def _coef(self, norm: float) -> float:
        return min(1.0, self.max_norm / (norm + 1e-6))

    @torch.no_grad()
    def step(self, grads: list[torch.Tensor], lr: float) -> None:
        """One optimizer step of every shadow on `grads` (the true gradients of this step)."""
        self.steps += 1
        norm = math.sqrt(sum(float(g.double().square().sum()) for g in grads))
        updates, second = {}, {}
        for shadow, (copies, opt) in self.shadows.items():
            spike = self.spike_factor if shadow.endswith("+spike") and self.steps == self.spike_step else 1.0
            factor = spike * {"clip": self._coef(norm * spike), "scaled": STEADY_FACTOR}.get(shadow.split("+")[0], 1.0)
            for copy, g in zip(copies, grads):
                copy.grad = g.float() * factor
            before = [c.clone() for c in copies]
            for group in opt.param_groups:
                group["lr"] = lr
            opt.step()
            updates[shadow] = torch.cat([(c - b).flatten() for c, b in zip(copies, before)]).double()
            second[shadow] = sum(float(opt.state[c]["exp_avg_sq"].double().sum()) for c in copies)
        raw, clip = updates["raw"], updates["clip"]

        def rel(a, b):
            return float((a - b).norm() / b.norm())

        self.records.append({
            "step": self.steps, "lr": lr, "norm": norm, "coef": self._coef(norm),
            "rel_clip": rel(clip, raw), "rel_scaled": rel(updates["scaled"], raw),
            "max_abs_diff_clip_over_lr": float((clip - raw).abs().max()) / lr,
            "max_abs_raw_over_lr": float(raw.abs().max()) / lr,
            "size_raw_spike": float(updates["raw+spike"].norm() / raw.norm()),
            "size_clip_spike": float(updates["clip+spike"].norm() / clip.norm()),
            "v_raw_spike": second["raw+spike"] / second["raw"], "v_clip_spike": second["clip+spike"] / second["clip"],
        })

    def summary(self) -> dict:
        r = self.records
        if not r:
            return {}
        active = [x for x in r if x["coef"] < 1]
        after = [x for x in r if x["step"] >= self.spike_step]

        def recovery(key: str) -> int | None:
            """Steps after the spike until the update's size stays within 10% of the no-spike one."""
            tail = [x for x in after if x["step"] > self.spike_step]
            for i in range(len(tail)):
                if all(0.9 <= y[key] <= 1.1 for y in tail[i:]):
                    return tail[i]["step"] - self.spike_step
            return None

        at = {x["step"]: x for x in r}
        out = {
            "group": self.name, "max_norm": self.max_norm, "steps": len(r), "clipped_steps": len(active),
            "first_coef": r[0]["coef"], "first_max_abs_raw_over_lr": r[0]["max_abs_raw_over_lr"],
            "first_rel_clip": r[0]["rel_clip"],
            "first_max_abs_diff_clip_over_lr": r[0]["max_abs_diff_clip_over_lr"],
            "max_rel_scaled": max(x["rel_scaled"] for x in r),
            "mean_rel_clip": statistics.fmean(x["rel_clip"] for x in r),
            "max_rel_clip": max(x["rel_clip"] for x in r),
            "mean_rel_clip_when_clipped": statistics.fmean(x["rel_clip"] for x in active) if active else math.nan,
            "mean_sgd_rel_when_clipped": statistics.fmean(1 - x["coef"] for x in active) if active else math.nan,
            "spike_step": self.spike_step, "spike_factor": self.spike_factor,
        }
        if after:
            s = at.get(self.spike_step)
            out.update({
                "spike_coef": self._coef(s["norm"] * self.spike_factor) if s else math.nan,
                "spike_size_raw": s["size_raw_spike"] if s else math.nan,
                "spike_size_clip": s["size_clip_spike"] if s else math.nan,
                "min_size_raw_after": min((x["size_raw_spike"] for x in after if x["step"] > self.spike_step),
                                          default=math.nan),
                "min_size_clip_after": min((x["size_clip_spike"] for x in after if x["step"] > self.spike_step),
                                           default=math.nan),
                "recovery_raw": recovery("size_raw_spike"), "recovery_clip": recovery("size_clip_spike"),
                **{f"v_raw_spike_{k}": at[self.spike_step + k]["v_raw_spike"] if self.spike_step + k in at else math.nan
                   for k in (0, 10, 50)},
                **{f"v_clip_spike_{k}": at[self.spike_step + k]["v_clip_spike"]
                   if self.spike_step + k in at else math.nan for k in (0, 10, 50)},
            })
        return out


def attach_clip_probes(optimizer, clipper, max_norms: dict[str, float], spike_step: int,
                       spike_factor: float) -> list[ClipUnderAdam]:
    """One ClipUnderAdam per clip group (at the configured `max_norms`), stepped by a pre-hook of the
    real optimizer's `step`, where the gradients are unscaled. The fused step is called on skipped
    steps too (the guard's decision reaches the kernel as `found_inf`), so the hook skips a step
    whose gradients are not all finite, as the guard does."""
    inner = getattr(optimizer, "optimizer", optimizer)  # Accelerate's wrapper
    decay = {id(p): g["weight_decay"] for g in inner.param_groups for p in g["params"]}
    betas, eps = inner.param_groups[0]["betas"], inner.param_groups[0]["eps"]
    probes = [ClipUnderAdam(g.name, g.params, [decay[id(p)] for p in g.params], max_norms[g.name], betas=betas, eps=eps,
                            spike_step=spike_step, spike_factor=spike_factor) for g in clipper.groups]

    def hook(opt, args, kwargs):
        lr = opt.param_groups[0]["lr"]
        grads = [[p.grad if p.grad is not None else torch.zeros_like(p) for p in probe.params] for probe in probes]
        if not all(bool(torch.isfinite(g).all()) for gs in grads for g in gs):
            return
        for probe, gs in zip(probes, grads):
            probe.step(gs, lr)

    inner.register_step_pre_hook(hook)
    return probes
