"""bf16 / fp16 / fp32 for the GPT forward: an autocast context and, for fp16, a dynamic loss scaler.

Why not Accelerate's `mixed_precision`: it refuses fp16 on CPU (our tests run fp16 there with
torch's CPU autocast + CPU GradScaler), and the NaN guard must see the unscaled gradients and
decide the step itself. The scaler is torch's own `GradScaler`; its state is checkpointed.
"""
from __future__ import annotations

import contextlib

import torch

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}


class Precision:
    def __init__(self, mode: str, device: torch.device, *, init_scale: float = 2.0**16, growth_interval: int = 2000):
        if mode not in DTYPES:
            raise ValueError(f"train.precision: {mode!r}; choose one of {', '.join(DTYPES)}")
        self.mode = mode
        self.device_type = device.type
        self.dtype = DTYPES[mode]
        self.scaler = torch.amp.GradScaler(self.device_type, init_scale=init_scale, growth_interval=growth_interval,
                                           enabled=mode == "fp16")

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def scale(self, loss: torch.Tensor) -> torch.Tensor:
        return self.scaler.scale(loss)

    def unscale_(self, optimizer) -> None:
        if self.scaler.is_enabled():
            self.scaler.unscale_(optimizer)

    def update(self) -> None:
        """After each optimizer step or skip: grow the scale, or shrink it after an overflow."""
        if self.scaler.is_enabled():
            self.scaler.update()

    @property
    def loss_scale(self) -> float:
        return float(self.scaler.get_scale()) if self.scaler.is_enabled() else 1.0

    def state_dict(self) -> dict:
        return self.scaler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        if state:
            self.scaler.load_state_dict(state)
