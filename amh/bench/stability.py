"""The stability study's runs: one variant of the seed's recipe (new-row init, clipping, batch size,
loss, precision, guard) trained on the real data pipeline, and its per-step history."""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field, replace

import torch

from amh.bench.clip_probe import attach_clip_probes


@dataclass(frozen=True)
class Variant:
    name: str
    init: str  # "old" (std 1e-4, the seed's original code), "randn" (std 1, GPTTrainer), "matched"
    clip: bool  # per-group clipping (embedding 0.1, rest 1.0) or none (the recipe: grad_clip=0)
    batch_size: int | None = None  # None: the config's
    loss: str = "ours"  # "ours" (amh.xtts.loss) or "upstream" (GPT.forward's loss)
    precision: str = "fp16"
    guard: bool = True  # False: step whatever the loss (Coqui's fp32 recipe has no guard)


INIT_STD = {"old": 1e-4, "randn": 1.0}  # matched: the pretrained rows' std (amh.xtts.release)


# ---------------------------------------------------------------------------------------------
# Model variants


def reinit_new_rows(gpt, old_rows: int, init: str, seed: int) -> None:
    """Replace the matched-std new rows of the text embedding and head by another scheme.

    "old": N(0, 1e-4^2), the seed's original code (its report shows the embedding line; the head is
    treated alike here). "randn": GPTTrainer's resize (gpt_trainer.py:116-143) exactly: `torch.randn`
    rows, then the new last row := the old last row; the bias stays 0.
    """
    if init == "matched":
        return
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for weight in (gpt.text_embedding.weight, gpt.text_head.weight):
            new = weight.shape[0] - old_rows
            weight[old_rows:] = torch.randn(new, weight.shape[1], generator=generator) * INIT_STD[init]
            if init == "randn":
                weight[-1] = weight[old_rows - 1]


class UpstreamLoss(torch.nn.Module):
    """XttsGptForTraining whose forward returns upstream GPT.forward's loss (gpt.py:290-475):
    token-mean CE, prompt mask in the wrong units and only on the last sample (0/0 at batch size 1
    when the prompt starts before sample 256)."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, text, text_lengths, codes, wav_lengths, cond_mels, cond_idxs):
        from amh.xtts.loss import LossOutput

        text_ce, mel_ce, _ = self.inner.gpt(text, text_lengths, codes, wav_lengths, cond_mels=cond_mels[:, None],
                                            cond_idxs=cond_idxs.clone(), cond_lens=None)
        total = self.inner.text_weight * text_ce + self.inner.mel_weight * mel_ce
        return LossOutput(total, text_ce, mel_ce, text_ce[None], mel_ce[None], total[None])


# The variant whose true (unclipped) gradients feed the clip probe (amh.bench.clip_probe).
CLIP_PROBE_VARIANT = "matched/none"


# ---------------------------------------------------------------------------------------------
# One run


@dataclass
class History:
    loss: list[float] = field(default_factory=list)
    loss_text: list[float] = field(default_factory=list)
    loss_mel: list[float] = field(default_factory=list)
    norms: dict[str, list[float]] = field(default_factory=dict)
    scale: list[float] = field(default_factory=list)
    skipped: list[bool] = field(default_factory=list)
    max_norms: dict[str, float] = field(default_factory=dict)  # the clip thresholds (inf: no clipping)
    stopped_at: int | None = None
    seconds: float = 0.0
    # ClipUnderAdam per clip group (CLIP_PROBE_VARIANT only): summary and per-step records
    clip_probe: dict[str, dict] = field(default_factory=dict)
    clip_records: dict[str, list[dict]] = field(default_factory=dict)
    new_row_std: tuple[float, float] = (math.nan, math.nan)  # embedding new rows: start, end

    def first(self, values: list[float]) -> int | None:
        return next((i + 1 for i, v in enumerate(values) if not math.isfinite(v)), None)

    def summary(self) -> dict:
        finite = [v for v in self.loss if math.isfinite(v)]
        tail = finite[-20:]
        text_tail = [v for v in self.loss_text if math.isfinite(v)][-20:]
        mel_tail = [v for v in self.loss_mel if math.isfinite(v)][-20:]
        first_grad = min((s for s in (self.first(v) for v in self.norms.values()) if s is not None), default=None)
        return {
            "steps": len(self.loss), "final_loss": statistics.fmean(tail) if tail else math.nan,
            "final_text_ce": statistics.fmean(text_tail) if text_tail else math.nan,
            "final_mel_ce": statistics.fmean(mel_tail) if mel_tail else math.nan,
            "min_loss": min(finite) if finite else math.nan, "nonfinite_losses": len(self.loss) - len(finite),
            "first_nonfinite_loss": self.first(self.loss), "first_nonfinite_grad": first_grad,
            "skipped": sum(self.skipped), "stopped_at": self.stopped_at,
            "max_norm": {k: max((x for x in v if math.isfinite(x)), default=math.nan) for k, v in self.norms.items()},
            "clipped": {k: sum(x > self.max_norms[k] for x in v if math.isfinite(x)) for k, v in self.norms.items()},
            "final_scale": self.scale[-1] if self.scale else math.nan, "seconds": self.seconds,
            "new_row_std": self.new_row_std,
        }


def run_variant(variant: Variant, cfg, inputs: dict, accelerator, steps: int, seed: int,
                spike: tuple[int, float] = (30, 100.0)) -> History:
    from accelerate.utils import set_seed

    from amh.train.clipping import GroupClipper
    from amh.data import build_loader
    from amh.train.nan_guard import NanGuard
    from amh.train.optim import build_optimizer, lr_at, set_lr
    from amh.train.precision import Precision
    from amh.train.step import forward_backward, optimizer_step, to_device
    from amh.xtts.codes import AudioCodec
    from amh.xtts.forward import XttsGptForTraining
    from amh.xtts.release import build_xtts
    from amh.xtts.text_encoder import TextEncoder

    set_seed(seed)
    xtts, resize = build_xtts(inputs["release"], inputs["vocab"], seed=seed)
    reinit_new_rows(xtts.gpt, resize.checkpoint_rows, variant.init, seed)
    model = XttsGptForTraining(xtts.gpt, text_weight=cfg.train.text_ce_weight, mel_weight=cfg.train.mel_ce_weight)
    del xtts
    codec = AudioCodec.from_release(inputs["release"], accelerator.device)
    groups = cfg.train.clip_groups if variant.clip else [replace(g, max_norm=math.inf) for g in cfg.train.clip_groups]
    clipper = GroupClipper(model.named_parameters(), groups)
    optimizer = build_optimizer(model, cfg.optim, groups)
    precision = Precision(variant.precision, accelerator.device, init_scale=cfg.train.init_loss_scale,
                          growth_interval=cfg.train.loss_scale_growth_interval)
    guard = NanGuard(cfg.train.max_consecutive_skips)
    trained = model if variant.loss == "ours" else UpstreamLoss(model)
    trained, optimizer = accelerator.prepare(trained, optimizer)
    probes = attach_clip_probes(optimizer, clipper, {g.name: g.max_norm for g in cfg.train.clip_groups}, *spike) \
        if variant.name == CLIP_PROBE_VARIANT else []
    trained.train()
    batch_size = variant.batch_size or cfg.train.batch_size
    loader = build_loader(cfg.data, split="train", training=True, batch_size=batch_size,
                          text_encoder=TextEncoder(inputs["vocab"], inputs["settings"]), rank=0, world_size=1, seed=seed)
    old = resize.checkpoint_rows
    embedding = model.gpt.text_embedding.weight
    history = History(norms={g.name: [] for g in clipper.groups}, max_norms={g.name: g.max_norm for g in clipper.groups})
    start_std = embedding[old:].detach().float().std().item()

    start = time.perf_counter()
    step = 0
    while step < steps:
        for batch in loader:
            batch = to_device(batch, accelerator.device)
            set_lr(optimizer, lr_at(step, cfg.optim, steps))
            with accelerator.accumulate(trained):
                loss = forward_backward(trained, batch, codec, precision, accelerator)
            if variant.guard:
                stepped, norms = optimizer_step(optimizer, clipper, guard, precision, loss.total)
            else:  # the recipe in fp32: no scaler, no guard, step whatever the loss
                norms = clipper.norms()
                if variant.clip:
                    clipper.clip_(norms)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                stepped = True
            history.loss.append(loss.total.item())
            history.loss_text.append(loss.text.item())
            history.loss_mel.append(loss.mel.item())
            for name, value in norms.items():
                history.norms[name].append(value.item())
            history.scale.append(precision.loss_scale)
            history.skipped.append(not stepped)
            step += 1
            if variant.guard and guard.should_stop():
                history.stopped_at = step
                step = steps
            if step >= steps:
                break
    history.seconds = time.perf_counter() - start
    history.clip_probe = {p.name: p.summary() for p in probes}
    history.clip_records = {p.name: p.records for p in probes}
    history.new_row_std = (start_std, embedding[old:].detach().float().std().item())
    return history
