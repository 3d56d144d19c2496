"""One optimizer step, done right: precision, forward/backward, per-group clipping on true gradients,
the NaN guard, the optimizer and its schedule, and the same step under DDP or DeepSpeed ZeRO.

In the order a step runs: `step` (inputs to the device, forward/backward, the window's weighting,
`optimizer_step`), `precision` (bf16/fp16 autocast, the dynamic loss scaler), `clipping` (the clip
groups' norms and factors), `nan_guard` (skip a non-finite step on the device, stop after a run of
them), `optim` (AdamW or 8-bit AdamW, parameter groups, warmup and decay), `distributed` and
`deepspeed_step` (the launch mode and the ZeRO step), `metrics` (throughput counts), `memory` (the
plan of what a step holds on the device, checked at start-up).
"""
