"""train.py's optimizer step on a toy model, launched by tests/test_distributed.py in every launch mode.

    accelerate launch [--multi_gpu | --use_deepspeed --deepspeed_config_file F] --num_processes N \
        tests/launching/zero_step_probe.py --out DIR [--global-batch 4] [--steps 4] [--accum 1] [--split 3,1] ...

The Accelerator comes from amh.train.distributed.launch_mode, the optimizer from amh.train.optim, the step from
GroupClipper + NanGuard (DDP / one process) or amh.train.deepspeed_step.ZeroStep (DeepSpeed), exactly as in
train.py. Every step's samples (global batch x accumulation) are fixed by the step number and cut
into chunks, one per (rank, micro-batch): equal chunks, or the sizes given by --split; weighted as
train.py weighs them (amh.train.step.window_scale), every split of the same samples is the same update. Rank 0 writes DIR/result.json: per step the loss, the per-group pre-clip
norms and whether the step was taken, and the final weights (DeepSpeed's fp32 master copy).
"""
from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path

import torch
from accelerate import Accelerator, DistributedDataParallelKwargs
from torch import nn

from amh.train.clipping import GroupClipper
from amh.config import load_config
from amh.train.distributed import launch_mode
from amh.train.nan_guard import NanGuard
from amh.train.optim import build_optimizer
from amh.train.precision import Precision
from amh.train.step import optimizer_step, window_scale

VOCAB, WIDTH, LENGTH = 50, 16, 8


class Toy(nn.Module):
    """The GPT's clip-group names: text_embedding/text_head ("embedding") and a body ("rest")."""

    def __init__(self):
        super().__init__()
        self.text_embedding = nn.Embedding(VOCAB, WIDTH)
        self.body = nn.Sequential(nn.Linear(WIDTH, WIDTH), nn.LayerNorm(WIDTH), nn.GELU())
        self.text_head = nn.Linear(WIDTH, VOCAB)

    def forward(self, ids):
        logits = self.text_head(self.body(self.text_embedding(ids[:, :-1]))).float()
        per_sample = nn.functional.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none").mean(1)
        return 10.0 * per_sample  # x10: gradients large enough that both groups clip


def global_batch(step: int, micro: int, size: int) -> torch.Tensor:
    return torch.randint(0, VOCAB, (size, LENGTH), generator=torch.Generator().manual_seed(1000 * step + micro))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--global-batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--accum", type=int, default=1)
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--poison-step", type=int, default=-1, help="make the last rank's loss NaN at this step")
    parser.add_argument("--split", default=None,
                        help="comma-separated sizes of the global batch's chunks, chunk i to rank i // accum, "
                             "micro-batch i % accum (default: equal chunks)")
    args = parser.parse_args()

    world = int(os.environ.get("WORLD_SIZE", "1"))
    cfg = load_config(None, ["data.source=ready", "data.path=unused", f"train.batch_size={args.global_batch // world}",
                             f"train.grad_accum={args.accum}", f"train.precision={args.precision}", "optim.lr=0.01"])
    launch = launch_mode(cfg, os.environ)
    accelerator = Accelerator(gradient_accumulation_steps=args.accum, mixed_precision=launch.mixed_precision,
                              cpu=launch.cpu, deepspeed_plugin=launch.deepspeed_plugin,
                              kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=False),
                                               *launch.kwargs_handlers])
    torch.manual_seed(0)
    model = Toy()
    optimizer = build_optimizer(model, cfg.optim, cfg.train.clip_groups)
    clipper = GroupClipper(model.named_parameters(), cfg.train.clip_groups)
    precision = Precision(cfg.train.precision, accelerator.device)
    guard = NanGuard(cfg.train.max_consecutive_skips)
    model, optimizer = accelerator.prepare(model, optimizer)
    zero = None
    if launch.deepspeed:
        from amh.train.deepspeed_step import ZeroStep

        zero = ZeroStep(model, cfg.train.clip_groups, guard, precision)
        precision = zero

    rank, world = accelerator.process_index, accelerator.num_processes
    total = args.global_batch * args.accum  # samples per optimizer step, over all ranks
    sizes = [int(x) for x in args.split.split(",")] if args.split else [args.global_batch // world] * (world * args.accum)
    assert len(sizes) == world * args.accum and sum(sizes) == total, sizes
    offsets = [sum(sizes[:i]) for i in range(len(sizes))]
    mine = [(offsets[i], sizes[i]) for i in range(rank * args.accum, (rank + 1) * args.accum)]
    steps = []
    for step in range(args.steps):
        losses = []
        # The whole global batch is drawn once per step and cut into this rank's chunks; the window's
        # weight is train.py's: every sample of the window, on every rank, weighs the same.
        everything = global_batch(step, 0, total)
        scale = window_scale([n for _, n in mine], accelerator)
        for start, n in mine:
            with accelerator.accumulate(model):
                ids = everything[start:start + n].to(accelerator.device)
                with precision.autocast():
                    per_sample = model(ids)
                if step == args.poison_step and rank == accelerator.num_processes - 1:
                    per_sample = per_sample * float("nan")
                accelerator.backward(precision.scale(per_sample.sum() * scale))
                loss = per_sample.mean()
            losses.append(accelerator.reduce(torch.stack([per_sample.detach().float().sum(),
                                                          torch.tensor(float(n), device=accelerator.device)]),
                                             reduction="sum"))
        if zero is not None:
            stepped, norms = zero.stepped, zero.norms
        else:
            stepped, norms = optimizer_step(optimizer, clipper, guard, precision, loss)  # train.py's own step
        window = torch.stack(losses).sum(0)  # the window's mean per-sample loss, as train.py logs it
        steps.append({"loss": (window[0] / window[1]).item(), "stepped": bool(stepped),  # a device tensor
                      "norms": {k: v.item() for k, v in norms.items()}})

    if zero is not None:
        from amh.train.deepspeed_step import fp32_state_dict

        state = fp32_state_dict(model)
    else:
        state = accelerator.get_state_dict(model)
    if accelerator.is_main_process:
        result = {"mode": launch.description, "world_size": accelerator.num_processes, "steps": steps,
                  "skipped_total": guard.skipped_total, "loss_scale": precision.loss_scale,
                  "weights": {k: v.float().flatten().tolist() for k, v in state.items()}}
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "result.json").write_text(json.dumps(result, allow_nan=True))
    accelerator.end_training()
    assert all(math.isfinite(x) for x in state["text_head.bias"].float().tolist())


if __name__ == "__main__":
    main()
