"""The stability study's report parts: the results table, the findings that follow from the numbers
alone, the plots, and the section on what per-group clipping does under AdamW."""
from __future__ import annotations

import math
from pathlib import Path

from amh.bench.clip_probe import STEADY_FACTOR
from amh.bench.stability import CLIP_PROBE_VARIANT, History, Variant


def plot(variants: list[Variant], histories: dict[str, History], out_dir: Path, stem: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    main = [v for v in variants if v.batch_size is None]
    bs1 = [v for v in variants if v.batch_size == 1]
    if main:
        fig, axes = plt.subplots(2, 2, figsize=(13, 8))
        groups = list(histories[main[0].name].norms)
        panels = [("training loss (fp16)", lambda h: h.loss, "linear"),
                  ("text CE (new rows feed it)", lambda h: h.loss_text, "linear")] + [
                  (f"grad norm, group '{g}' (pre-clip, unscaled)", lambda h, g=g: h.norms[g], "log") for g in groups]
        for ax, (title, values, scale) in zip(axes.flat, panels):
            for v in main:
                y = values(histories[v.name])
                ax.plot(range(1, len(y) + 1), y, "-" if v.clip else "--", label=v.name, lw=1)
            ax.set_title(title)
            ax.set_yscale(scale)
            ax.set_xlabel("optimizer step")
        axes.flat[0].legend(fontsize=8)
        fig.tight_layout()
        path = out_dir / f"{stem}_init_clip.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    if bs1:
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
        for k, v in enumerate(bs1):
            h = histories[v.name]
            steps = range(1, len(h.loss) + 1)
            axes[0].plot(steps, h.loss_mel, label=v.name, lw=1)
            bad = [i + 1 for i, x in enumerate(h.loss_mel) if not math.isfinite(x)]
            if bad:  # one row of marks per run, below the curves
                axes[0].plot(bad, [-0.15 * (k + 1)] * len(bad), "x", ms=8, label=f"{v.name}: non-finite loss")
            axes[1].plot(steps, [sum(h.skipped[:i]) for i in steps], label=v.name, lw=1)
        axes[0].set_title("mel CE at batch size 1 (x = non-finite)")
        axes[1].set_title("skipped optimizer steps (cumulative)")
        for ax in axes:
            ax.set_xlabel("optimizer step")
            ax.legend(fontsize=8)
        fig.tight_layout()
        path = out_dir / f"{stem}_batch1_loss.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def _fmt(x, spec: str = ".3f") -> str:
    if x is None:
        return "—"
    if isinstance(x, float) and not math.isfinite(x):
        return "nan"
    return format(x, spec) if isinstance(x, float) else str(x)


def table(variants: list[Variant], summaries: dict[str, dict], batch_size: int) -> str:
    groups = list(next(iter(summaries.values()))["max_norm"])
    head = ["variant", "new-row init (std)", "clipping", "batch", "loss", "precision", "steps", "final loss (last 20)",
            "text CE (last 20)", "mel CE (last 20)", "min loss", "non-finite losses", "first non-finite loss",
            "first non-finite grad", "skipped steps", *[f"max grad norm '{g}'" for g in groups],
            *[f"steps clipped '{g}'" for g in groups], "final loss scale", "new-row std start -> end", "s"]
    rows = []
    for v in variants:
        s = summaries[v.name]
        init = {"old": "1e-4 (seed's old code)", "randn": "1.0 (GPTTrainer randn)", "matched": "matched"}[v.init]
        start, end = s["new_row_std"]
        rows.append([v.name, init, "per-group" if v.clip else "none", str(v.batch_size or batch_size), v.loss,
                     v.precision + ("" if v.guard else ", no guard"),
                     str(s["steps"]) + (f" (stopped at {s['stopped_at']})" if s["stopped_at"] else ""),
                     _fmt(s["final_loss"]), _fmt(s["final_text_ce"]), _fmt(s["final_mel_ce"]), _fmt(s["min_loss"]),
                     str(s["nonfinite_losses"]),
                     _fmt(s["first_nonfinite_loss"]), _fmt(s["first_nonfinite_grad"]), str(s["skipped"]),
                     *[_fmt(s["max_norm"][g], ".3g") for g in groups], *[str(s["clipped"][g]) for g in groups],
                     _fmt(s["final_scale"], ".0f"),
                     f"{start:.3g} -> {end:.3g}", f"{s['seconds']:.0f}"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def findings(variants: list[Variant], summaries: dict[str, dict], steps: int) -> list[str]:
    """Statements that follow from the numbers alone (the doc's prose around them is fixed)."""
    out = []
    main = [v for v in variants if v.batch_size is None]
    diverged = [v.name for v in main if summaries[v.name]["nonfinite_losses"] or summaries[v.name]["stopped_at"]]
    if main:
        if diverged:
            out.append(f"Non-finite losses or a stopped run among the init/clipping variants: {', '.join(diverged)}.")
        else:
            out.append(f"**No init/clipping variant diverged**: none of the {len(main)} runs produced a non-finite "
                       f"loss in {steps} fp16 steps, so at this scale the seed's claim (1e-4 rows -> NaN near step 50) "
                       "is not reproduced, and neither fix is needed to avoid a NaN here.")
        skipped = {v.name: summaries[v.name]["skipped"] for v in main if summaries[v.name]["skipped"]}
        if skipped:
            out.append("Skipped steps (fp16 overflow in the gradients, handled by the scaler + guard): "
                       + ", ".join(f"{k} {n}" for k, n in skipped.items()) + ".")
        ranked = sorted(main, key=lambda v: summaries[v.name]["final_loss"])
        out.append("Final loss (mean of the last 20 steps), best first: "
                   + ", ".join(f"{v.name} {summaries[v.name]['final_loss']:.3f}" for v in ranked) + ".")
        out.append("Final text CE (the part of the loss the new rows feed; weighted 0.01 in the total): "
                   + ", ".join(f"{v.name} {summaries[v.name]['final_text_ce']:.3f}" for v in main) + ".")
        by_init = {}
        for v in main:
            by_init.setdefault(v.init, {})[v.clip] = summaries[v.name]
        pairs = [(init, runs) for init, runs in by_init.items() if True in runs and False in runs]
        if pairs:
            out.append("Per-group clipping (same init, with vs without): " + "; ".join(
                f"{init}: final loss {runs[True]['final_loss']:.3f} vs {runs[False]['final_loss']:.3f}, clipped on "
                + ", ".join(f"{runs[True]['clipped'][g]} steps ('{g}')" for g in runs[True]["clipped"])
                for init, runs in pairs) + f" of {steps}.")
        emb = next(iter(summaries[main[0].name]["max_norm"]))
        out.append(f"Largest pre-clip gradient norm of group '{emb}': "
                   + ", ".join(f"{v.name} {summaries[v.name]['max_norm'][emb]:.3g}" for v in main) + ".")
    for v in variants:
        if v.batch_size == 1:
            s = summaries[v.name]
            if s["nonfinite_losses"]:
                after = s["steps"] - s["first_nonfinite_loss"] + 1
                poisoned = "" if v.guard else (
                    f"; with nothing to skip them, {s['nonfinite_losses']} of the {after} losses from then on were "
                    "non-finite" + ("" if s["first_nonfinite_grad"] is not None else
                                    " and every gradient stayed finite: a mel CE with no target is 0/0 in the loss "
                                    "but contributes zero gradient, so those steps trained on the text CE alone and "
                                    "the weights were not poisoned"))
                out.append(f"{v.name}: {s['nonfinite_losses']} of {s['steps']} steps had a non-finite loss, "
                           f"the first at step {s['first_nonfinite_loss']}; {s['skipped']} steps skipped"
                           + (f"; the run stopped at step {s['stopped_at']}" if s["stopped_at"] else "")
                           + poisoned + ".")
            else:
                out.append(f"{v.name}: every one of {s['steps']} losses was finite.")
    return out


def plot_clip_adam(history: History, out_dir: Path, stem: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, records in history.clip_records.items():
        steps = [r["step"] for r in records]
        axes[0].plot(steps, [r["rel_clip"] for r in records], label=f"'{name}': clipped vs not")
        axes[0].plot(steps, [1 - r["coef"] for r in records], ":", label=f"'{name}': 1 - clip factor (SGD)")
        axes[1].plot(steps, [r["size_raw_spike"] for r in records], label=f"'{name}': spike, unclipped")
        axes[1].plot(steps, [r["size_clip_spike"] for r in records], "--", label=f"'{name}': spike, clipped")
    axes[0].set_title("AdamW update: relative difference, clipped vs unclipped")
    axes[1].set_title("update size after a gradient spike / without the spike")
    axes[1].set_yscale("log")
    for ax in axes:
        ax.set_xlabel("optimizer step (probe)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    path = out_dir / f"{stem}_clip_adam.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def clip_adam_section(history: History | None, lr: float, plot_name: str | None) -> str:
    """The measured answer to: what does clipping a group by max_norm change in AdamW's updates?"""
    head = "## What per-group clipping does under AdamW\n\n"
    if history is None or not history.clip_probe:
        return head + f"Not measured in this run (it rides on the {CLIP_PROBE_VARIANT} variant)."
    probe = history.clip_probe
    first = next(iter(probe.values()))
    beta2 = 0.96

    def f(x, spec=".3g"):
        if x is None:
            return "never"
        return str(int(x)) if spec == "d" else _fmt(float(x), spec)

    rows = ["| group | max_norm | steps clipped | first update: max abs(update)/lr | first update: clip factor, rel. "
            "diff, max abs(clipped - unclipped)/lr | steady x0.1 scaling: max rel. diff | clip: mean / max rel. diff per step | clipped steps: "
            "rel. diff (SGD would give 1 - c) | spike step: update size, unclipped / clipped | smallest later update, "
            "unclipped / clipped | steps until within 10%, unclipped / clipped | v after the spike (+0 / +10 / +50 steps), "
            "unclipped | same, clipped |", "|" + "---|" * 13]
    for name, p in probe.items():
        rows.append(" | ".join([
            f"| {name}", f"{p['max_norm']:g}", f"{p['clipped_steps']} of {p['steps']}", f(p["first_max_abs_raw_over_lr"], ".4f"),
            f"{f(p['first_coef'])}, {f(p['first_rel_clip'], '.1e')}, {f(p['first_max_abs_diff_clip_over_lr'], '.2f')}",
            f(p["max_rel_scaled"], ".1e"),
            f"{f(p['mean_rel_clip'])} / {f(p['max_rel_clip'])}",
            f"{f(p['mean_rel_clip_when_clipped'])} ({f(p['mean_sgd_rel_when_clipped'])})",
            f"{f(p['spike_size_raw'])} / {f(p['spike_size_clip'])}",
            f"{f(p['min_size_raw_after'])} / {f(p['min_size_clip_after'])}",
            f"{f(p['recovery_raw'], 'd')} / {f(p['recovery_clip'], 'd')}",
            " / ".join(f"x{f(p[f'v_raw_spike_{k}'])}" for k in (0, 10, 50)),
            " / ".join(f"x{f(p[f'v_clip_spike_{k}'])}" for k in (0, 10, 50)) + " |"]))
    emb = probe.get("embedding", first)
    left = emb["steps"] - emb["spike_step"]

    def back(key: str) -> str:
        n = emb[key]
        return f"came back within 10% after {n} steps" if n is not None else \
            f"had not come back within 10% {left} steps later, at the end of the run"

    rest_name = list(probe)[-1]
    rest, rest_norms = probe[rest_name], [r["norm"] for r in history.clip_records.get(rest_name, [])]
    steady_clip = "" if rest is emb or not rest_norms else (
        f"\n- **A clip active on almost every step is another matter.** Group '{rest_name}' (max_norm "
        f"{rest['max_norm']:g}) was clipped on {rest['clipped_steps']} of {rest['steps']} steps while its gradient norm "
        f"drifted between {min(rest_norms):.3g} and {max(rest_norms):.3g}: on those steps every gradient Adam sees has norm "
        f"max_norm, so its moments no longer carry the gradient's changing scale, and the updates differed by "
        f"{f(rest['mean_rel_clip_when_clipped'])} on the clipped steps, as much as SGD's {f(rest['mean_sgd_rel_when_clipped'])}. "
        "Clipping changes Adam's step where the clip factor changes within v's memory (~1/(1 - beta2) = 25 steps), "
        "not where it is steady.")
    varied = (f"on the {emb['clipped_steps']} steps where group '{emb['group']}' was clipped the update moved by "
              f"{f(emb['mean_rel_clip_when_clipped'])} on average where plain SGD's would have moved by "
              f"{f(emb['mean_sgd_rel_when_clipped'])} (1 - clip factor); over the run, {f(emb['mean_rel_clip'])} on average") \
        if emb["clipped_steps"] else f"group '{emb['group']}' was never clipped in this run"
    text = f"""Measured on the {CLIP_PROBE_VARIANT} run's true gradients ({first['steps']} optimizer steps, lr {lr:g}
with the run's warmup and schedule) by shadow AdamW copies of each clip group (`ClipUnderAdam` in
`amh.bench.clip_probe`): the same gradient stream fed as it is, clipped at the group's max_norm, scaled by a
steady {STEADY_FACTOR:g}, and with step {first['spike_step']}'s gradient multiplied by {first['spike_factor']:g} (clipped or
not). The model trains on the raw gradients; only the shadows see the transformed ones, so every
difference below is the optimizer's. "rel. diff" is ||update_a - update_b|| / ||update_b||.

{chr(10).join(rows)}

- **A steady clip factor barely changes the step.** AdamW's step is lr * m_hat / (sqrt(v_hat) + eps)
  per coordinate, m and v running means of g and g^2. Scaling every gradient by c scales m by c and
  sqrt(v) by c, so only eps notices: scaling group '{emb['group']}' by {STEADY_FACTOR:g} on every step moved its
  updates by at most {f(emb['max_rel_scaled'], '.1e')} (relative), on the coordinates whose gradients are within a few
  eps of 0. The first update is m_hat / sqrt(v_hat) = g / abs(g) = sign(g): every coordinate moved
  by lr (max abs(update) / lr = {f(emb['first_max_abs_raw_over_lr'], '.4f')}) whether the gradient was clipped (factor
  {f(emb['first_coef'])} on that step) or not: relative difference {f(emb['first_rel_clip'], '.1e')}, at most
  {f(emb['first_max_abs_diff_clip_over_lr'], '.2f')} lr on a single coordinate (again where abs(g) is near eps).
- **A clip that varies changes the update through the moments' history**, far less than it
  changes the gradient: {varied}.{steady_clip}
- **What clipping does do is keep a spike out of v.** Unclipped, a gradient x{first['spike_factor']:g} enters v as
  x{first['spike_factor'] ** 2:g} its usual square: v of group '{emb['group']}' jumped x{f(emb['v_raw_spike_0'])}, was still x{f(emb['v_raw_spike_10'])} ten steps later and
  x{f(emb['v_raw_spike_50'])} after fifty (v forgets at beta2 = {beta2:g} per step), so the updates after the spike
  shrank to {f(emb['min_size_raw_after'])}x the spike-free ones and {back('recovery_raw')}.
  Clipped, the spike entered as at most max_norm: v x{f(emb['v_clip_spike_0'])}, later updates down to
  {f(emb['min_size_clip_after'])}x at worst, and {back('recovery_clip')}.
- So the seed's per-group clip is not a step-size limit on the embedding (Adam's per-coordinate
  step is ~lr regardless); it is insurance against outlier batches: one bad gradient does not
  inflate the second moment and silence that group's learning for the next tens of steps, nor
  (through m, beta1 = 0.9) push it ~10 steps in the outlier's direction."""
    return head + text + (f"\n\n![clipping under AdamW](./{plot_name})" if plot_name else "")
