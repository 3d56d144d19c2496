"""Launch modes on CPU: one process, DDP x 2 (gloo) and DeepSpeed ZeRO-1/2 x 2 train the same thing.

Fast: amh.train.distributed reads the launcher's environment, completes ds_config.json from the training
config and refuses what the trainer cannot honour; amh.train.optim lays out the groups ZeRO needs.
Slow (real `accelerate launch`es, tests/launching/): the per-group clip + NaN guard inside DeepSpeed's
step (amh.train.deepspeed_step) gives DDP's numbers on a toy model; train.py on the demo config follows
the same loss and per-group norm trajectory in all three modes; only rank 0 writes logs and the
export; a 2-process DeepSpeed checkpoint resumes exactly; a 2-process DDP run killed with SIGKILL
after a checkpoint continues from it, each rank on its own data.
"""
from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest
import torch
from torch import nn

from amh.train.clipping import GroupClipper
from amh.config import ConfigError, load_config
from amh.train.distributed import launch_mode
from amh.train.optim import build_optimizer
from launching.launch_runs import (REPO, accelerate_command, deepspeed_config, demo_overrides, extended_vocab,
                                   launch_env, run, scalars, step_log)

PROBE = REPO / "tests" / "launching" / "zero_step_probe.py"
ENTRY = REPO / "tests" / "launching" / "train_entry.py"
DS = {"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_CONFIG_FILE": str(REPO / "ds_config.json"),
      "WORLD_SIZE": "2"}


def config(*overrides: str):
    return load_config(None, ["data.source=ready", "data.path=unused", "train.batch_size=2", "train.grad_accum=3",
                              *overrides])


# ---- fast: the optimizer layout and the launch mode ---------------------------------------------

class Gpt(nn.Module):
    def __init__(self):
        super().__init__()
        self.text_embedding = nn.Embedding(10, 4)
        self.norm = nn.LayerNorm(4)
        self.body = nn.Linear(4, 4)
        self.text_head = nn.Linear(4, 10)


def test_optimizer_groups_are_clip_group_by_decay():
    model = Gpt()
    cfg = config()
    optimizer = build_optimizer(model, cfg.optim, cfg.train.clip_groups)
    names = {id(p): n for n, p in model.named_parameters()}
    layout = [(g["clip_group"], g["weight_decay"], sorted(names[id(p)] for p in g["params"]))
              for g in optimizer.param_groups]
    assert layout == [
        ("embedding", cfg.optim.weight_decay, ["text_head.weight"]),
        ("embedding", 0.0, ["text_embedding.weight", "text_head.bias"]),
        ("rest", cfg.optim.weight_decay, ["body.weight"]),
        ("rest", 0.0, ["body.bias", "norm.bias", "norm.weight"]),
    ]
    clipper = GroupClipper(model.named_parameters(), cfg.train.clip_groups)
    for group in clipper.groups:  # the clipper and the optimizer agree on every parameter
        in_optimizer = [p for g in optimizer.param_groups if g["clip_group"] == group.name for p in g["params"]]
        assert {id(p) for p in in_optimizer} == {id(p) for p in group.params}


def test_launch_mode_without_deepspeed_never_autocasts():
    single = launch_mode(config("train.precision=bf16"), {"ACCELERATE_MIXED_PRECISION": "bf16"})
    assert (single.mixed_precision, single.deepspeed, single.cpu) == ("no", False, False)
    assert "mixed_precision" not in single.description  # launcher and trainer agree
    noted = launch_mode(config("train.precision=fp32"), {"ACCELERATE_MIXED_PRECISION": "bf16"})
    assert "the launcher's mixed_precision=bf16 is not used" in noted.description
    ddp = launch_mode(config(), {"WORLD_SIZE": "2"})
    # Without CUDA, Accelerate needs cpu=True or each of the processes trains alone.
    assert ddp.cpu == (not torch.accelerator.is_available())


@pytest.mark.parametrize("precision, dtype", [("bf16", "bf16"), ("fp16", "fp16"), ("fp32", "no")])
def test_deepspeed_config_is_filled_from_the_training_config(precision, dtype):
    cfg = config(f"train.precision={precision}", "train.init_loss_scale=1024", "train.loss_scale_growth_interval=500")
    mode = launch_mode(cfg, DS)
    assert mode.deepspeed and mode.mixed_precision == dtype
    ds = mode.deepspeed_plugin.deepspeed_config
    assert ds["train_micro_batch_size_per_gpu"] == 2 and ds["gradient_accumulation_steps"] == 3
    assert ds["gradient_clipping"] == 0.0  # per-group clipping happens inside the step instead
    assert ds["zero_optimization"]["stage"] == 2
    assert ds["fp16"]["initial_scale_power"] == 10 and ds["fp16"]["loss_scale_window"] == 500
    assert ds["fp16"]["loss_scale"] == 0  # dynamic
    if not torch.accelerator.is_available():
        assert [h.backend for h in mode.kwargs_handlers] == ["gloo"]


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_deepspeed_16_bit_accumulates_and_reduces_gradients_in_fp32(tmp_path, precision):
    """ds_config.json says fp32 accumulation; a config without it (or with bf16 reduction) is refused."""
    ds = launch_mode(config(f"train.precision={precision}"), DS).deepspeed_plugin.deepspeed_config
    assert ds["data_types"]["grad_accum_dtype"] == "fp32" and ds["communication_data_type"] == "fp32"
    base = json.loads((REPO / "ds_config.json").read_text())
    cases = [({k: v for k, v in base.items() if k != "data_types"}, "data_types.grad_accum_dtype: None"),
             ({**base, "data_types": {"grad_accum_dtype": "bf16"}}, "data_types.grad_accum_dtype: 'bf16'"),
             ({**base, "communication_data_type": "bf16"}, "communication_data_type: 'bf16'")]
    if precision == "bf16":
        cases.append(({**base, "zero_optimization": {"stage": 1}}, "zero_optimization.stage: 1 with bf16"))
    for i, (changed, message) in enumerate(cases):
        path = tmp_path / f"ds{i}.json"
        path.write_text(json.dumps(changed))
        with pytest.raises(ConfigError, match=re.escape(message)):
            launch_mode(config(f"train.precision={precision}"), {**DS, "ACCELERATE_DEEPSPEED_CONFIG_FILE": str(path)})


@pytest.mark.parametrize("change, message", [
    ({"zero_optimization": {"stage": 3}}, "zero_optimization.stage: 3 is not supported"),
    ({"zero_optimization": {"stage": 0}}, "zero_optimization.stage: 0 is not supported"),
    ({"zero_optimization": {"stage": 2, "offload_optimizer": {"device": "cpu"}}}, "offload_optimizer.device"),
    ({"gradient_clipping": 1.0}, "gradient_clipping: 1.0 would clip globally"),
    ({"train_micro_batch_size_per_gpu": 8}, "train_micro_batch_size_per_gpu: 8 disagrees with train.batch_size=2"),
    ({"gradient_accumulation_steps": 1}, "gradient_accumulation_steps: 1 disagrees with train.grad_accum=3"),
    ({"train_batch_size": 6}, "train_batch_size: 6 is not train.batch_size x train.grad_accum x processes = 12"),
    ({"optimizer": {"type": "AdamW"}}, "optimizer: the trainer builds AdamW"),
    ({"bf16": {"enabled": True}}, "bf16.enabled: True disagrees with train.precision='fp32'"),
    ({"fp16": {"enabled": "auto", "initial_scale_power": 12}}, "fp16.initial_scale_power: 12 disagrees"),
])
def test_deepspeed_config_refuses_what_the_trainer_cannot_honour(tmp_path, change, message):
    ds = {**json.loads((REPO / "ds_config.json").read_text()), **change}
    path = tmp_path / "ds.json"
    path.write_text(json.dumps(ds))
    with pytest.raises(ConfigError, match=re.escape(message)):
        launch_mode(config("train.precision=fp32"), {**DS, "ACCELERATE_DEEPSPEED_CONFIG_FILE": str(path)})


@pytest.mark.parametrize("environ, message", [
    ({"ACCELERATE_USE_DEEPSPEED": "true"}, "add --deepspeed_config_file ds_config.json"),
    ({**DS, "ACCELERATE_DEEPSPEED_ZERO_STAGE": "3"}, "--zero_stage: ignored when a DeepSpeed config file is given"),
    ({**DS, "ACCELERATE_GRADIENT_CLIPPING": "1.0"}, "--gradient_clipping: ignored"),
    ({**DS, "ACCELERATE_DEEPSPEED_CONFIG_FILE": "missing.json"}, "missing.json: no such file"),
])
def test_deepspeed_launch_flags_that_would_be_ignored_are_refused(environ, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        launch_mode(config(), environ)


def test_zero_step_refuses_16_bit_group_norm_on_cpu():
    pytest.importorskip("deepspeed")
    from types import SimpleNamespace

    from amh.train.deepspeed_step import ZeroStep
    from amh.train.nan_guard import NanGuard

    engine = SimpleNamespace(module=nn.Sequential(nn.Conv1d(4, 4, 1), nn.GroupNorm(2, 4)).bfloat16(),
                             device=torch.device("cpu"), optimizer=None)
    with pytest.raises(ValueError, match="On CPU use train.precision=fp32 with DeepSpeed"):
        ZeroStep(engine, config().train.clip_groups, NanGuard(3), None)


def test_checkpoint_from_another_launch_mode_or_size_is_refused(tmp_path):
    from types import SimpleNamespace

    from accelerate.utils import DistributedType

    from amh.run.checkpoint import Checkpointer

    def accelerator(kind, n):
        return SimpleNamespace(distributed_type=kind, num_processes=n, process_index=0)

    deepspeed_ckpt, ddp_ckpt = tmp_path / "ds" / "step_00000002", tmp_path / "ddp" / "step_00000002"
    (deepspeed_ckpt / "pytorch_model").mkdir(parents=True)
    ddp_ckpt.mkdir(parents=True)
    for ckpt in (deepspeed_ckpt, ddp_ckpt):
        for rank in (0, 1):
            torch.save({}, ckpt / f"trainer_state_rank{rank}.pt")
    cases = [(accelerator(DistributedType.MULTI_CPU, 2), deepspeed_ckpt, "written by a DeepSpeed run; resume it with --use"),
             (accelerator(DistributedType.DEEPSPEED, 2), ddp_ckpt, "non-DeepSpeed run; resume it without --use_deepspeed"),
             (accelerator(DistributedType.DEEPSPEED, 1), deepspeed_ckpt, "resume with --num_processes 2")]
    from amh.errors import UserError

    for acc, ckpt, message in cases:
        with pytest.raises(UserError, match=re.escape(message)):
            Checkpointer(ckpt.parent, acc, keep_last=3).load(ckpt)


# ---- slow: the step under DeepSpeed on a toy model ----------------------------------------------

def probe(mode: str, nproc: int, out: Path, *args: str, ds_config: Path | None = None) -> dict:
    run(accelerate_command(mode, nproc, PROBE, ["--out", str(out), *args], out.parent, ds_config),
        out.parent / f"{out.name}.log")
    return json.loads((out / "result.json").read_text())


@pytest.mark.slow
def test_zero_step_clips_per_group_and_skips_like_ddp(tmp_path):
    """4 steps, 2 micro-batches each, NaN loss on the last rank at step 2: every mode skips step 2, and
    the other steps have the same per-group norms (ZeRO: from gradient partitions) and weights."""
    args = ["--steps", "4", "--accum", "2", "--poison-step", "2"]
    results = {mode: probe(mode, 1 if mode == "one" else 2, tmp_path / mode, *args)
               for mode in ("one", "ddp", "zero2", "zero1")}
    reference = results["one"]
    assert [s["stepped"] for s in reference["steps"]] == [True, True, False, True]
    assert reference["skipped_total"] == 1
    assert all(min(s["norms"].values()) > 1.0 for i, s in enumerate(reference["steps"]) if i != 2)  # clipping bites
    for mode, result in results.items():
        assert result["world_size"] == (1 if mode == "one" else 2), result["mode"]
        assert [s["stepped"] for s in result["steps"]] == [True, True, False, True], mode
        assert result["skipped_total"] == 1, mode
        for got, want in zip(result["steps"], reference["steps"]):
            if got["stepped"]:
                assert got["loss"] == pytest.approx(want["loss"], rel=1e-5), mode
                for group, norm in want["norms"].items():
                    assert got["norms"][group] == pytest.approx(norm, rel=1e-5), (mode, group)
        for name, values in reference["weights"].items():
            torch.testing.assert_close(torch.tensor(result["weights"][name]), torch.tensor(values),
                                       rtol=1e-5, atol=1e-6, msg=f"{mode}: {name}")


@pytest.mark.slow
def test_zero_step_bf16_skips_what_deepspeed_would_step(tmp_path):
    """bf16 ZeRO-2 with DeepSpeed's own NaN check off (bf16.check_grad_overflow=false): DeepSpeed
    would step the NaN gradients, so the guard's skip inside the base optimizer must hold."""
    fp32 = probe("zero2", 2, tmp_path / "fp32", "--steps", "3", "--poison-step", "1")
    unchecked = deepspeed_config(tmp_path, "bf16_unchecked", bf16={"check_grad_overflow": False})
    bf16 = probe("zero2", 2, tmp_path / "bf16", "--steps", "3", "--poison-step", "1", "--precision", "bf16",
                 ds_config=unchecked)
    assert [s["stepped"] for s in bf16["steps"]] == [True, False, True]
    assert bf16["skipped_total"] == 1 and bf16["loss_scale"] == 1.0
    for got, want in zip(bf16["steps"], fp32["steps"]):
        if got["stepped"]:
            for group, norm in want["norms"].items():
                assert got["norms"][group] == pytest.approx(norm, rel=0.05), group
    for name, values in fp32["weights"].items():
        torch.testing.assert_close(torch.tensor(bf16["weights"][name]), torch.tensor(values), rtol=0.05, atol=0.02)


# ---- slow: train.py on the demo config in the three launch modes -------------------------------

@pytest.fixture(scope="module")
def demo(tiny_release, demo_corpus, tmp_path_factory):
    work = tmp_path_factory.mktemp("launch_modes")
    vocab = extended_vocab(tiny_release, demo_corpus, work / "vocab.json")

    def train(mode: str, name: str, *entry_args: str, timeout: float = 300, **train_values) -> Path:
        nproc = 1 if mode == "one" else 2
        out = work / name
        args = [*entry_args, "--", *demo_overrides(tiny_release, demo_corpus, vocab, out,
                                                   batch_size=4 // nproc, **train_values)]
        run(accelerate_command(mode, nproc, ENTRY, args, work), work / f"{name}.log", timeout)
        return out

    same = ("--same-global-batches", "--no-dropout")
    runs = {mode: train(mode, mode, *same) for mode in ("one", "ddp", "zero2")}
    return {"work": work, "vocab": vocab, "train": train, "runs": runs, "same": same}


@pytest.mark.slow
def test_launch_modes_follow_the_same_trajectory(demo):
    """1 x 4 (one process), 2 x 2 (DDP) and 2 x 2 (ZeRO-2) on the same global batches: same losses and
    per-group gradient norms at every step."""
    runs = demo["runs"]
    for tag in ("train/loss", "train/loss_mel_ce", "grad_norm/embedding", "grad_norm/rest", "train/lr"):
        want = scalars(runs["one"], tag)
        assert sorted(want) == list(range(1, 7)), tag
        for mode in ("ddp", "zero2"):
            got = scalars(runs[mode], tag)
            assert sorted(got) == sorted(want), (mode, tag)
            for step in want:
                assert got[step] == pytest.approx(want[step], rel=1e-4), (mode, tag, step)


@pytest.mark.slow
def test_only_rank_zero_writes_logs_and_the_export(demo):
    for mode in ("ddp", "zero2"):
        out = demo["runs"][mode]
        writers = {re.search(r"tfevents\.\d+\.[^.]+\.(\d+)\.", Path(f).name).group(1) for f in step_log(out)}
        assert len(writers) == 1, f"{mode}: TensorBoard files from processes {writers}"
        log = (demo["work"] / f"{mode}.log").read_text()
        for line in ("INFO amh.train: run directory", "INFO amh.train: export written to"):
            assert log.count(line) == 1, f"{mode}: {line!r} printed {log.count(line)} times"
        assert (out / "export" / "model.pth").is_file() and not list(out.glob(".tmp-*"))
        assert (out / "exit_code").read_text() == "0\n"
        assert sorted(p.name for p in (out / "checkpoints" / "step_00000006").glob("trainer_state_rank*.pt")) == \
            ["trainer_state_rank0.pt", "trainer_state_rank1.pt"]


@pytest.mark.slow
def test_deepspeed_checkpoint_resumes_exactly_in_two_processes(demo):
    src = demo["runs"]["zero2"]
    out = demo["work"] / "zero2_resumed"
    shutil.copytree(src / "checkpoints" / "step_00000004", out / "checkpoints" / "step_00000004")
    demo["train"]("zero2", out.name, *demo["same"])
    assert "resumed from" in (demo["work"] / f"{out.name}.log").read_text()
    for tag in ("train/loss", "grad_norm/embedding", "grad_norm/rest"):
        got, want = scalars(out, tag), scalars(src, tag)
        assert sorted(got) == [5, 6], tag
        for step in got:
            assert got[step] == pytest.approx(want[step], rel=1e-6), (tag, step)


def kill_tree(pid: int) -> None:
    """SIGKILL a launcher and every process under it at once (torchrun gives each worker its own
    session, so killing the launcher's process group would leave the workers training)."""
    root = psutil.Process(pid)
    processes = [root, *root.children(recursive=True)]
    for process in processes:
        process.send_signal(signal.SIGKILL)
    psutil.wait_procs(processes, timeout=30)


@pytest.mark.slow
def test_ddp_run_killed_after_a_checkpoint_continues_from_it(demo, tiny_release, demo_corpus):
    """kill -9 of a 2-process run (launcher and workers) once step 2 is checkpointed; a restart with
    resume=auto continues from the newest complete checkpoint; each rank trains on its own samples."""
    work, max_steps = demo["work"], 10
    out, ids = work / "killed", work / "killed_ids"
    args = ["--ids-dir", str(ids), "--", *demo_overrides(tiny_release, demo_corpus, demo["vocab"], out,
                                                         batch_size=2, max_steps=max_steps)]
    cmd = accelerate_command("ddp", 2, ENTRY, args, work)
    with open(work / "killed_1.log", "w") as log:
        first = subprocess.Popen(cmd, cwd=REPO, env=launch_env(), stdout=log, stderr=subprocess.STDOUT,
                                 start_new_session=True)
        deadline = time.monotonic() + 240
        while not (out / "checkpoints" / "step_00000002" / "COMPLETE").exists():
            assert first.poll() is None, (work / "killed_1.log").read_text()[-4000:]
            assert time.monotonic() < deadline, "no checkpoint at step 2 within 240 s"
            time.sleep(0.05)
        kill_tree(first.pid)
        first.wait()
    k = max(int(p.name.split("_")[1]) for p in (out / "checkpoints").glob("step_*") if (p / "COMPLETE").exists())
    assert k < max_steps, "the run finished before it was killed; the test needs more steps"
    first_ids = {rank: (ids / f"rank{rank}.txt").read_text().split() for rank in (0, 1)}
    for f in ids.iterdir():
        f.unlink()

    demo["train"]("ddp", out.name, "--ids-dir", str(ids), max_steps=max_steps)  # train.resume=auto
    log = (work / f"{out.name}.log").read_text()
    assert re.search(rf"resumed from \S+/step_{k:08d} at step {k} ", log), log[-3000:]
    second = [sorted(step for step, _ in tags["train/loss"]) for tags in step_log(out).values() if "train/loss" in tags]
    assert list(range(k + 1, max_steps + 1)) in second, second
    assert (out / "exit_code").read_text() == "0\n"
    second_ids = {rank: (ids / f"rank{rank}.txt").read_text().split() for rank in (0, 1)}
    for run_ids in (first_ids, second_ids):  # within an epoch no sample goes to both ranks
        assert run_ids[0] and run_ids[1] and not set(run_ids[0]) & set(run_ids[1])
