"""The launch mode of a run: how train.py's Accelerator is made for one process, DDP or DeepSpeed ZeRO-1/2.

The launcher chooses the mode and tells the processes through the environment (`accelerate launch`
with --multi_gpu, --use_deepspeed --deepspeed_config_file, --config_file; torchrun's WORLD_SIZE);
train.py hands `os.environ` to `launch_mode`, which returns the arguments for `Accelerator(...)`:

- precision is `train.precision`, never the launcher's `mixed_precision`: without DeepSpeed the
  trainer does autocast and loss scaling itself (amh.train.precision), so Accelerate gets "no" and cannot
  autocast a second time; with DeepSpeed, Accelerate gets it so that DeepSpeed's bf16/fp16 blocks
  are switched on from it.
- on CPU (no GPU, as in CI) several processes need two fixes Accelerate 1.15 lacks: without `cpu=True`
  a `--multi_gpu` launch on a machine without CUDA runs every process as a separate 1-process job
  (same data, no all-reduce), and with DeepSpeed (which Accelerate turns off under `cpu=True`) it
  must be told the gloo backend, or every process believes it is rank 0 of 1.
- every collective has a deadline, `AMH_COLLECTIVE_TIMEOUT` seconds (default 900; torch's own are
  10 min for NCCL and 30 min for gloo): a rank whose peer on another node hangs or is cut off (a
  hung host, a network partition) raises instead of waiting, so that its launcher exits and Slurm
  ends the job (docs/cluster.md). It must exceed the longest gap between two collectives (a
  checkpoint write, the export, the first DeepSpeed launch's op build).
- more processes on a machine than it has visible GPUs are refused (`accelerate launch --config_file
  accelerate_config.yaml` starts 8 whatever the machine has); without any GPU, several CPU
  processes run with a warning in `LaunchMode.warnings` that names the resulting global batch.
- DeepSpeed: the config file (ds_config.json) is read, checked and completed here. Its "auto"
  values are filled from the training config (micro-batch, accumulation, the fp16 scaler's initial
  scale and growth window), `gradient_clipping` becomes 0 because clipping is per group (see
  amh.train.deepspeed_step), and combinations the trainer cannot honour are refused with the reason.
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch

from amh.config import Config, ConfigError
from amh.train.optim import check_deepspeed_master_weights

# train.precision -> Accelerate's mixed_precision, which fills DeepSpeed's "bf16"/"fp16" "enabled": "auto".
DEEPSPEED_PRECISION = {"bf16": "bf16", "fp16": "fp16", "fp32": "no"}
# Not 600: Accelerate's InitProcessGroupKwargs drops a timeout equal to its own default (600 s), and
# gloo would then wait torch's 30 min.
DEFAULT_COLLECTIVE_TIMEOUT_S = 900
# Launcher flags that Accelerate silently ignores once a DeepSpeed config file is given.
IGNORED_FLAGS = {
    "ACCELERATE_DEEPSPEED_ZERO_STAGE": ("--zero_stage", "zero_optimization.stage"),
    "ACCELERATE_GRADIENT_ACCUMULATION_STEPS": ("--gradient_accumulation_steps", "train.grad_accum"),
    "ACCELERATE_GRADIENT_CLIPPING": ("--gradient_clipping", "train.clip_groups"),
    "ACCELERATE_DEEPSPEED_OFFLOAD_OPTIMIZER_DEVICE": ("--offload_optimizer_device", "zero_optimization.offload_optimizer"),
    "ACCELERATE_DEEPSPEED_OFFLOAD_PARAM_DEVICE": ("--offload_param_device", "zero_optimization.offload_param"),
}


@dataclass
class LaunchMode:
    """Keyword arguments for `Accelerator(...)`, and a line for the log."""

    mixed_precision: str
    cpu: bool = False
    deepspeed_plugin: Any = None  # accelerate.utils.DeepSpeedPlugin
    kwargs_handlers: list = field(default_factory=list)
    description: str = ""
    warnings: list[str] = field(default_factory=list)  # for the main process to log (see process_count_check)

    @property
    def deepspeed(self) -> bool:
        return self.deepspeed_plugin is not None


def _flag(environ: Mapping[str, str], name: str) -> bool:
    return environ.get(name, "false").lower() in ("1", "true", "yes")


def launch_mode(cfg: Config, environ: Mapping[str, str]) -> LaunchMode:
    """The Accelerator arguments for the mode the launcher chose; raises ConfigError on what cannot work."""
    from accelerate import InitProcessGroupKwargs

    world_size = int(environ.get("WORLD_SIZE", "1"))
    on_cpu = not torch.accelerator.is_available()
    launcher_precision = environ.get("ACCELERATE_MIXED_PRECISION", "no")
    precision_note = f"precision train.precision={cfg.train.precision}"
    if launcher_precision not in ("no", DEEPSPEED_PRECISION[cfg.train.precision]):
        precision_note += f" (the launcher's mixed_precision={launcher_precision} is not used)"
    where = f"{world_size} process(es) on {'CPU' if on_cpu else 'GPU'}"
    notes = process_count_check(cfg, environ, torch.cuda.device_count() if not on_cpu else 0)
    timeout = collective_timeout(environ)

    if not _flag(environ, "ACCELERATE_USE_DEEPSPEED"):
        return LaunchMode(mixed_precision="no", cpu=on_cpu and world_size > 1,
                          kwargs_handlers=[InitProcessGroupKwargs(timeout=timeout)] if world_size > 1 else [],
                          description=f"{'DDP' if world_size > 1 else 'single process'}, {where}; {precision_note}",
                          warnings=notes)

    config_file = environ.get("ACCELERATE_DEEPSPEED_CONFIG_FILE")
    if not config_file or config_file == "none":
        raise ConfigError("--use_deepspeed: the trainer takes DeepSpeed's settings from a config file; add "
                          "--deepspeed_config_file ds_config.json (the repository's, ZeRO-2) or your copy of it")
    for name, (flag, instead) in IGNORED_FLAGS.items():
        if environ.get(name):
            raise ConfigError(f"accelerate launch {flag}: ignored when a DeepSpeed config file is given; "
                              f"set {instead} instead and drop the flag")
    ds_config = deepspeed_config(cfg, Path(config_file), world_size)

    from accelerate.utils import DeepSpeedPlugin

    plugin = DeepSpeedPlugin(hf_ds_config=ds_config, gradient_accumulation_steps=cfg.train.grad_accum,
                             gradient_clipping=0.0)
    stage = ds_config["zero_optimization"]["stage"]
    return LaunchMode(
        mixed_precision=DEEPSPEED_PRECISION[cfg.train.precision],
        deepspeed_plugin=plugin,
        kwargs_handlers=[InitProcessGroupKwargs(backend="gloo", timeout=timeout) if on_cpu
                         else InitProcessGroupKwargs(timeout=timeout)],
        description=f"DeepSpeed ZeRO-{stage} ({config_file}), {where}; {precision_note}, loss scaling by DeepSpeed",
        warnings=notes,
    )


def process_count_check(cfg: Config, environ: Mapping[str, str], gpus: int) -> list[str]:
    """Refuse more processes on this machine than it has visible GPUs; on a machine without any, warn.

    `accelerate launch --config_file accelerate_config.yaml` starts the config's num_processes (8)
    whatever the machine has: on one GPU they would share it, on none they train as 8 CPU processes
    with 8x the global batch. The per-machine count is LOCAL_WORLD_SIZE (torchrun sets it).
    """
    world_size = int(environ.get("WORLD_SIZE", "1"))
    local = int(environ.get("LOCAL_WORLD_SIZE", str(world_size)))
    if local <= 1:
        return []
    t = cfg.train
    batch = f"global batch {t.batch_size} x {t.grad_accum} x {world_size} = {t.batch_size * t.grad_accum * world_size}"
    fix = ("launch with `--num_processes N` (N = GPUs to use, e.g. `accelerate launch --num_processes 1 train.py ...` "
           "on one GPU), or set num_processes in your accelerate config")
    if gpus == 0:
        return [f"{local} processes on this machine and no GPU visible: training runs as {local} CPU processes "
                f"({batch}, per-process batch x grad_accum x processes). Intended on a CPU test machine; on a GPU "
                f"node check CUDA_VISIBLE_DEVICES and the driver, else {fix}"]
    if local > gpus:
        visible = environ.get("CUDA_VISIBLE_DEVICES")
        raise ConfigError(f"{local} processes on this machine but {gpus} GPU(s) visible"
                          f"{f' (CUDA_VISIBLE_DEVICES={visible})' if visible is not None else ''}: processes would "
                          f"share a GPU and the {batch} would not be what you planned; {fix}")
    return []


def collective_timeout(environ: Mapping[str, str]) -> timedelta:
    """The deadline of every torch.distributed collective, from AMH_COLLECTIVE_TIMEOUT (seconds)."""
    value = environ.get("AMH_COLLECTIVE_TIMEOUT", str(DEFAULT_COLLECTIVE_TIMEOUT_S))
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if not seconds > 0:
        raise ConfigError(f"AMH_COLLECTIVE_TIMEOUT={value!r}: not a number of seconds above 0; unset it for the "
                          f"default ({DEFAULT_COLLECTIVE_TIMEOUT_S} s)")
    return timedelta(seconds=seconds)


def deepspeed_config(cfg: Config, path: Path, world_size: int) -> dict:
    """`path` read, checked against the training config, and its "auto" values filled (except
    train_batch_size and bf16/fp16 "enabled", which Accelerate fills from the same numbers)."""
    try:
        ds = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"--deepspeed_config_file {path}: no such file") from None
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}: not valid JSON ({err})") from None
    t = cfg.train
    check_deepspeed_master_weights(ds, str(path))  # fp32 master weights and Adam state, always

    def refuse(key: str, why: str) -> None:
        raise ConfigError(f"{path}: {key}: {why}")

    for section in ("optimizer", "scheduler"):
        if section in ds:
            refuse(section, "the trainer builds AdamW from optim.* and sets the learning rate every step "
                            "(optim.schedule); remove this section")
    zero = ds.get("zero_optimization")
    if not isinstance(zero, dict) or zero.get("stage") not in (1, 2):
        stage = zero.get("stage") if isinstance(zero, dict) else None
        refuse("zero_optimization.stage", f"{stage!r} is not supported; use 1 or 2. The per-group clipping runs on "
                                          "ZeRO-1/2's gradient partitions (amh/train/deepspeed_step.py); ZeRO-3 partitions "
                                          "differently, and stage 0 is plain DDP (accelerate launch --multi_gpu)")
    for offload in ("offload_optimizer", "offload_param"):
        device = (zero.get(offload) or {}).get("device", "none")
        if device not in (None, "none"):
            refuse(f"zero_optimization.{offload}.device", f"{device!r}: offloading is not supported (the per-group "
                                                          "clip reads the gradient partitions on the accelerator)")

    def fill(tree: dict, key: str, value: Any, where: str, hint: str) -> None:
        if tree.get(key, "auto") == "auto":
            tree[key] = value
        elif tree[key] != value:
            refuse(where, f"{tree[key]!r} disagrees with {hint}={value!r}; set it to \"auto\"")

    fill(ds, "train_micro_batch_size_per_gpu", t.batch_size, "train_micro_batch_size_per_gpu", "train.batch_size")
    fill(ds, "gradient_accumulation_steps", t.grad_accum, "gradient_accumulation_steps", "train.grad_accum")
    global_batch = t.batch_size * t.grad_accum * world_size
    if ds.get("train_batch_size", "auto") not in ("auto", global_batch):
        refuse("train_batch_size", f"{ds['train_batch_size']!r} is not train.batch_size x train.grad_accum x "
                                   f"processes = {global_batch}; set it to \"auto\"")
    if ds.get("gradient_clipping", "auto") not in ("auto", 0, 0.0):
        refuse("gradient_clipping", f"{ds['gradient_clipping']!r} would clip globally on top of the per-group "
                                    "clipping; set it to \"auto\" (filled with 0) and put limits in train.clip_groups")
    ds["gradient_clipping"] = 0.0
    if cfg.optim.optimizer == "adamw8bit":  # bitsandbytes' AdamW8bit is not on DeepSpeed's list of ZeRO optimizers
        ds["zero_allow_untested_optimizer"] = True
    if t.precision != "fp32":
        # Summing 8 micro-batches' gradients (and reducing them over ranks) in bf16 loses the low bits
        # the per-group norms and a 2e-6 update need; the DDP path keeps fp32 .grad, so must ZeRO.
        if zero["stage"] == 1 and t.precision == "bf16":
            refuse("zero_optimization.stage", "1 with bf16 accumulates gradients in bf16 (fp32 accumulation selects "
                                              "DeepSpeed's BF16_Optimizer, which has no per-group clipping hook); "
                                              "use stage 2, or DDP (accelerate launch --multi_gpu)")
        accum = (ds.get("data_types") or {}).get("grad_accum_dtype")
        if zero["stage"] == 2 and accum != "fp32":
            refuse("data_types.grad_accum_dtype", f"{accum!r}: with train.precision={t.precision} gradients must "
                                                  "accumulate in fp32; add \"data_types\": {\"grad_accum_dtype\": "
                                                  "\"fp32\"} (the repository's ds_config.json has it)")
        comm = ds.get("communication_data_type")
        if comm not in (None, "fp32"):
            refuse("communication_data_type", f"{comm!r}: gradients must be reduced in fp32; remove it or set \"fp32\"")
        ds["communication_data_type"] = "fp32"

    for dtype in ("bf16", "fp16"):
        enabled = (ds.get(dtype) or {}).get("enabled", "auto")
        if enabled != "auto" and bool(enabled) != (t.precision == dtype):
            refuse(f"{dtype}.enabled", f"{enabled!r} disagrees with train.precision={t.precision!r}; set it to \"auto\"")
    fp16 = ds.setdefault("fp16", {"enabled": "auto"})
    power = math.log2(t.init_loss_scale)
    if power != int(power):
        raise ConfigError(f"train.init_loss_scale: {t.init_loss_scale} is not a power of two, which DeepSpeed's "
                          "fp16 scaler needs (initial_scale_power)")
    fill(fp16, "initial_scale_power", int(power), "fp16.initial_scale_power", "log2(train.init_loss_scale)")
    fill(fp16, "loss_scale_window", t.loss_scale_growth_interval, "fp16.loss_scale_window",
         "train.loss_scale_growth_interval")
    return ds
