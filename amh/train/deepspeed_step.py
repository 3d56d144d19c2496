"""The optimizer step under DeepSpeed ZeRO-1/2, with the trainer's per-group clipping and NaN guard in it.

Under DeepSpeed, `accelerator.backward(loss)` runs `engine.backward` and, at the end of an
accumulation window, `engine.step()`: DeepSpeed reduces the gradients, owns the fp16 loss scale and
steps the optimizer. Under ZeRO-2 each rank then holds only its partition of every gradient, so
`GroupClipper` (which reads `p.grad`) has nothing to read. `ZeroStep` puts the same step into
DeepSpeed's, in two hooks on the ZeRO optimizer (deepspeed 0.19, runtime/zero/stage_1_and_2.py):

1. Before `DeepSpeedZeroOptimizer.step`: each rank sums the squares of its partition of each clip
   group's gradient (`averaged_gradients`, the partitions DeepSpeed's own global norm reads), one
   all-reduce over the data-parallel group adds the ranks' sums, and the root divided by the loss
   scale is each group's true norm: the number `GroupClipper.norms()` gives after DDP's all-reduce.
   The NaN guard decides on these norms and the loss, as in the DDP path.
2. The base optimizer's `step`, which DeepSpeed calls once per optimizer group on that group's fp32
   partition after unscaling it: each group's partition is multiplied by its clip group's
   min(1, max_norm / (norm + 1e-6)), as `GroupClipper.clip_` does, then AdamW steps; when the guard
   skipped the step, AdamW is not called, so neither weights nor Adam state change.

The optimizer groups are clip group x decay (amh.train.optim), so no flat partition mixes clip groups.
DeepSpeed's `gradient_clipping` is 0 (amh.train.distributed makes it so), or it would clip again, globally.
fp16: DeepSpeed skips an overflowing step itself and lowers its scale; such a step has non-finite
norms here, so the guard counts it like any skipped step (same counters, same log line).

`ZeroStep` also stands in for `amh.train.precision.Precision` in train.py: the same autocast, but
`scale(loss)` hands the loss on unchanged (engine.backward scales it) after noting it for the guard,
the loss scale is DeepSpeed's, and the scaler's state travels in DeepSpeed's checkpoint.
"""
from __future__ import annotations

import functools
import time

import torch

from amh.config import ClipGroup
from amh.train.nan_guard import NanGuard
from amh.train.precision import Precision


class ZeroStep:
    """Hooks the trainer's step into a DeepSpeed engine's ZeRO-1/2 optimizer; after each optimizer step
    `norms` (pre-clip, per clip group) and `stepped` say what happened, as `amh.train.step.optimizer_step` does."""

    def __init__(self, engine, clip_groups: list[ClipGroup], guard: NanGuard, precision: Precision):
        from deepspeed.runtime.zero.stage_1_and_2 import DeepSpeedZeroOptimizer

        half = [m for m in engine.module.modules()
                if isinstance(m, torch.nn.GroupNorm) and m.weight is not None and m.weight.dtype != torch.float32]
        if half and engine.device.type == "cpu":
            raise ValueError(
                f"DeepSpeed cast the model to {half[0].weight.dtype}, {type(half[0]).__name__} layers included "
                "(XTTS's conditioning encoder); these upcast their input but not their weights, which CUDA "
                "autocast handles and the CPU does not. On CPU use train.precision=fp32 with DeepSpeed, or DDP "
                "(accelerate launch --multi_gpu) for bf16")
        zero = engine.optimizer
        if type(zero) is not DeepSpeedZeroOptimizer or zero.cpu_offload:
            offload = " with CPU offload" if getattr(zero, "cpu_offload", False) else ""
            raise ValueError(
                f"DeepSpeed chose {type(zero).__name__}{offload}; per-group clipping is implemented for "
                "DeepSpeedZeroOptimizer (ZeRO-1/2 without offload). With bf16 and ZeRO-1, remove "
                "data_types.grad_accum_dtype=fp32 (it selects BF16_Optimizer), or use ZeRO-2")
        names = [g.name for g in clip_groups]
        groups = zero.optimizer.param_groups
        missing = [i for i, g in enumerate(groups) if g.get("clip_group") not in names]
        if missing:
            raise ValueError(f"optimizer group {missing[0]} has no known clip_group; build the optimizer with "
                             "amh.train.optim.build_optimizer(model, cfg.optim, cfg.train.clip_groups)")
        self.zero, self.guard, self.precision = zero, guard, precision
        self.names = names
        self.index = {name: k for k, name in enumerate(names)}
        self.group_clip = [self.index[g["clip_group"]] for g in groups]  # ZeRO group i -> clip group
        self.max_norms = torch.tensor([g.max_norm for g in clip_groups], dtype=torch.float32)
        self.loss: torch.Tensor | None = None
        self.norms: dict[str, torch.Tensor] = {}
        self.stepped = False
        self._coef: torch.Tensor | None = None  # per clip group during a step; None when skipping
        self._in_step = False
        zero.step = self._wrap_zero_step(zero.step)
        zero.optimizer.step = self._wrap_base_step(zero.optimizer.step)

    # ---- Precision's interface (train.py calls these on either path) ------------------------------
    def autocast(self):
        return self.precision.autocast()

    def scale(self, loss: torch.Tensor) -> torch.Tensor:
        self.loss = loss.detach()
        return loss

    @property
    def loss_scale(self) -> float:
        return float(self.zero.loss_scale)

    def state_dict(self) -> dict:
        return {}  # DeepSpeed's loss scaler is in its checkpoint (accelerator.save_state)

    def load_state_dict(self, state: dict) -> None:
        pass

    # ---- the step ---------------------------------------------------------------------------------
    def group_norms(self) -> torch.Tensor:
        """True (unscaled) L2 norm per clip group of the reduced gradients, the same on every rank."""
        from deepspeed import comm as dist

        zero = self.zero
        squares = torch.zeros(len(self.names), dtype=torch.float32, device=zero.device)
        for i, grads in zero.averaged_gradients.items():
            grads = [g for g in grads or () if not getattr(g, "_zero_padding", False)]
            if grads:
                norms = torch._foreach_norm(grads, 2, dtype=torch.float32)
                squares[self.group_clip[i]] += torch.stack(norms).square().sum()
        dist.all_reduce(squares, group=zero.dp_process_group)
        return squares.sqrt() / zero.loss_scale

    def _wrap_zero_step(self, step):
        @functools.wraps(step)
        def zero_step(*args, **kwargs):
            norms = self.group_norms()
            self.norms = dict(zip(self.names, norms))
            loss = self.loss if self.loss is not None else torch.zeros((), device=norms.device)
            # Read on the host: DeepSpeed's own step syncs anyway (its overflow flag is a Python bool),
            # and the base step below must know whether to call AdamW at all.
            take = bool(self.guard.check(loss, self.norms))
            self._coef = torch.clamp(self.max_norms.to(norms.device) / (norms + 1e-6), max=1.0) if take else None
            self._in_step = True
            try:
                result = step(*args, **kwargs)
            finally:
                self._in_step, self._coef = False, None
            if take and self.zero.overflow:  # DeepSpeed found an overflow the norms did not show
                self.guard.check(loss, {"deepspeed_overflow": torch.full((), float("inf"), device=loss.device)})
                take = False
            self.stepped = take
            return result

        return zero_step

    def _wrap_base_step(self, step):
        @functools.wraps(step)
        def clipped_step(*args, **kwargs):
            if not self._in_step:
                return step(*args, **kwargs)
            if self._coef is None:  # the guard skipped this step: no weight, no Adam state changes
                return None
            for group in self.zero.optimizer.param_groups:  # DeepSpeed passes one group at a time
                grads = [p.grad for p in group["params"] if p.grad is not None]
                if grads:
                    coef = self._coef[self.index[group["clip_group"]]]
                    torch._foreach_mul_(grads, coef.to(grads[0].dtype))
            return step(*args, **kwargs)

        return clipped_step


def fp32_state_dict(engine) -> dict[str, torch.Tensor]:
    """The module's state dict with every trained parameter taken from DeepSpeed's fp32 master copy.

    Under bf16/fp16 the module holds 16-bit copies; a fine-tune's small updates live in the fp32
    master weights (lr 2e-6 moves a weight by far less than one bf16 step). A collective: call on
    every rank.
    """
    from deepspeed import comm as dist
    from deepspeed.utils import safe_get_full_fp32_param

    state = {k: v.detach().clone() for k, v in engine.module.state_dict().items()}
    for name, param in engine.module.named_parameters():
        if param.requires_grad:
            state[name] = safe_get_full_fp32_param(param).detach().to("cpu")
    # gloo (CPU) drops a finished all-reduce's tensors on its worker thread, which must take the GIL
    # to do so; a rank that exits right after these all-reduces aborts in interpreter shutdown
    # ("terminate called without an active exception", pytorch/pytorch#190489). The barrier lets every
    # rank finish, and the sleep hands the GIL to the worker threads while Python is still alive.
    dist.barrier()
    time.sleep(0.1)
    return state
