"""amh.run.report: steps per epoch from the source's metadata, the progress bar, the log lines, the summary, TensorBoard."""
from __future__ import annotations

import io
import json
import math
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from amh.run import report
from amh.config import load_config
from amh.data.filters import FilterStats, Reason, Rejected

REPO = Path(__file__).resolve().parent.parent


def cfg_for(source: str, path: Path, *overrides: str):
    return load_config(None, [f"data.source={source}", f"data.path={path}", *overrides])


def ready_rows(demo_corpus: Path) -> int:
    lines = (demo_corpus / "ready" / "metadata_train.csv").read_text(encoding="utf-8").splitlines()
    return len([line for line in lines[1:] if line.strip()])  # minus the header


# --- steps per epoch ------------------------------------------------------------------------


def test_ready_folder_rows_give_steps_per_epoch(demo_corpus):
    rows = ready_rows(demo_corpus)
    cfg = cfg_for("ready", demo_corpus / "ready", "train.batch_size=4", "train.grad_accum=2")
    one = report.estimate_epoch(cfg, world_size=1)
    assert one.steps == pytest.approx(rows / 4 / 2)
    assert f"{rows} rows" in one.basis
    two = report.estimate_epoch(cfg, world_size=2)  # each rank reads half the rows
    assert two.steps == pytest.approx(rows / 2 / 4 / 2)


def test_held_out_eval_takes_its_fraction_off(demo_corpus):
    rows = ready_rows(demo_corpus)
    cfg = cfg_for("ready", demo_corpus / "ready", "train.batch_size=1", "train.grad_accum=1",
                  "data.eval_split=null", "data.eval_fraction=0.1")
    assert report.source_size(cfg.data).rows == round(rows * 0.9)


def _write_shards(root: Path, durations: list[list[float]]) -> None:
    (root / "train").mkdir(parents=True)
    for i, shard in enumerate(durations):
        table = pa.table({"text": ["x"] * len(shard), "duration": pa.array(shard, pa.float32())})
        pq.write_table(table, root / "train" / f"part-{i}.parquet")


def test_parquet_rows_and_durations_from_shard_metadata(tmp_path):
    _write_shards(tmp_path, [[2.0] * 30, [4.0] * 10])  # 40 rows, 100 s
    cfg = cfg_for("parquet", tmp_path, "train.batch_size=5", "train.grad_accum=2")
    size = report.source_size(cfg.data)
    assert (size.rows, size.seconds) == (40, pytest.approx(100.0))
    assert report.estimate_epoch(cfg, 1).steps == pytest.approx(40 / 5 / 2)
    # With a seconds cap per batch, the audio seconds decide: 100 s / 10 s per batch / 2.
    capped = cfg_for("parquet", tmp_path, "data.max_batch_seconds=10", "train.grad_accum=2")
    assert report.estimate_epoch(capped, 1).steps == pytest.approx(5.0)
    # ... unless a clip cap makes more batches: 40 rows / at most 4 clips / 2.
    few = cfg_for("parquet", tmp_path, "data.max_batch_seconds=10", "data.max_batch_size=4", "train.grad_accum=2")
    assert report.estimate_epoch(few, 1).steps == pytest.approx(5.0)
    fewer = cfg_for("parquet", tmp_path, "data.max_batch_seconds=10", "data.max_batch_size=2", "train.grad_accum=2")
    assert report.estimate_epoch(fewer, 1).steps == pytest.approx(10.0)
    assert "at most 2 clips per batch" in report.estimate_epoch(fewer, 1).basis


def test_prepared_folder_report_wins(tmp_path):
    _write_shards(tmp_path, [[1.0] * 3])
    (tmp_path / "prepare_report.json").write_text(json.dumps(
        {"splits": {"train": {"rows_kept": 1200, "hours_kept": 2.0}}}))
    size = report.source_size(cfg_for("parquet", tmp_path).data)
    assert (size.rows, size.seconds) == (1200, pytest.approx(7200.0))


def test_real_demo_parquet_counts_every_row(demo_corpus):
    cfg = cfg_for("parquet", demo_corpus / "parquet")
    size = report.source_size(cfg.data)
    assert size.rows == ready_rows(demo_corpus)  # the same 185 clips as the ready folder
    assert size.seconds > 60


def test_hub_split_sizes_from_dataset_info(monkeypatch):
    import datasets

    class Builder:
        info = datasets.DatasetInfo(splits=datasets.SplitDict({"train": datasets.SplitInfo("train", num_examples=5000)}))

    asked = []
    monkeypatch.setattr(datasets, "load_dataset_builder", lambda path, name=None: asked.append((path, name)) or Builder())
    cfg = load_config(None, ["data.path=user/amharic", "train.batch_size=2", "train.grad_accum=8"])
    est = report.estimate_epoch(cfg, world_size=4)
    assert asked == [("user/amharic", None)]
    assert est.steps == pytest.approx(5000 / 4 / 2 / 8)

    def offline(*_, **__):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset_builder", offline)
    assert report.estimate_epoch(cfg, world_size=1) is None  # no total on the bar, not a failed run


# --- the progress bar -----------------------------------------------------------------------


def test_planned_steps_is_the_earlier_end():
    assert report.planned_steps(None, 10, 12.5) == 125
    assert report.planned_steps(100, 10, 12.5) == 100
    assert report.planned_steps(None, 10, None) is None
    assert report.planned_steps(40, 10, None) == 40


def test_progress_total_is_refined_after_the_first_epoch():
    out = io.StringIO()
    bar = report.RunProgress(max_steps=None, epochs=3, estimate=report.EpochEstimate(10.0, "x"), file=out)
    assert bar.total == 30 and bar.bar.total == 30
    for step in range(1, 8):
        bar.step(step, epoch=0)
    bar.epoch_done(7)  # filtering dropped rows: the epoch had 7 steps, not 10
    assert bar.total == 21 and bar.bar.total == 21 and bar.measured
    bar.step(8, epoch=1)
    bar.close()
    text = out.getvalue()
    assert "epoch 1/3" in text and "epoch 2/3" in text and "/21" in text


def test_a_resumed_partial_epoch_does_not_measure():
    bar = report.RunProgress(max_steps=None, epochs=4, estimate=report.EpochEstimate(10.0, "x"), step=25, epoch=2,
                             file=io.StringIO())
    bar.step(30, epoch=2)
    bar.epoch_done(30)  # only 5 steps of epoch 3 were seen
    assert bar.total == 40 and not bar.measured
    bar.step(38, epoch=3)
    bar.epoch_done(38)  # a whole epoch: 8 steps
    assert bar.total == 32 and bar.measured
    bar.close()


# --- log lines ------------------------------------------------------------------------------


VALUES = {"train/loss": 3.21, "train/loss_text_ce": 4.5, "train/loss_mel_ce": 3.17, "train/lr": 2e-6,
          "train/loss_scale": 65536.0, "train/skipped_steps": 2, "grad_norm/embedding": 0.0812, "grad_norm/rest": 0.93,
          "perf/samples_per_s": 12.34, "perf/audio_seconds_per_s": 81.2, "train/memory_mb": 5000.0}


def test_step_line_has_every_number():
    line = report.format_step_line(120, VALUES, total=5400, epoch=0, epochs=12)
    assert line.startswith("step 120/5400 (2.2%) | epoch 1/12 | ")
    for needle in ("loss 3.2100 (text 4.5000, mel 3.1700)", "lr 2.00e-06", "grad norm embedding 0.0812 rest 0.93",
                   "loss scale 65536", "skipped 2", "12.3 samples/s", "81.2 audio-h/h"):
        assert needle in line, needle
    assert report.format_step_line(7, VALUES, total=None, epoch=2, epochs=3).startswith("step 7 | epoch 3/3")


def test_eval_line_shows_change_and_best():
    history = report.EvalHistory()
    first = history.line(1000, {"eval/loss": 3.0, "eval/loss_text_ce": 4.0, "eval/loss_mel_ce": 2.9})
    assert first == "EVAL step 1000 | loss 3.0000 | text 4.0000 | mel 2.9000 | new best"
    second = history.line(2000, {"eval/loss": 3.25, "eval/loss_text_ce": 3.5, "eval/loss_mel_ce": 3.2})
    assert "loss 3.2500 (+0.2500)" in second and "text 3.5000 (-0.5000)" in second
    assert second.endswith("best 3.0000 at step 1000")
    assert history.best == (3.0, 1000)
    restored = report.EvalHistory()
    restored.load_state_dict(json.loads(json.dumps(history.state_dict())))  # survives a checkpoint
    assert restored.best == (3.0, 1000)
    assert "(-0.5000)" in restored.line(3000, {"eval/loss": 2.75, "eval/loss_text_ce": 3.0, "eval/loss_mel_ce": 2.7})


def _stats() -> FilterStats:
    stats = FilterStats()
    for _ in range(97):
        stats.add_kept(3.6)
    stats.add_rejected("long.wav", Rejected(Reason.TOO_LONG, "12.1 s"))
    stats.add_rejected("a.wav", Rejected(Reason.UNKNOWN_TOKEN, "1 [UNK]"))
    stats.add_rejected("b.wav", Rejected(Reason.UNKNOWN_TOKEN, "1 [UNK]"))
    return stats


def test_summary_names_the_real_paths_and_a_command_that_parses(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "runs" / "my run"
    text = report.format_summary(report.RunSummary(
        run_dir=run, first_step=0, last_step=150, seconds=125.0, best_eval=(2.345, 100), data=_stats(),
        export_dir=run / "export", speaker_wav=run / "eval_reference.wav", sentence="ሰላም፣ እንዴት ነህ?"))
    assert "run finished: step 150, 150 steps this run in 2m05s, 1.20 steps/s" in text
    assert "best eval loss 2.3450 at step 100" in text
    assert "data: 97 of 100 rows kept (0.10 h), 3 dropped (unknown_token 2, too_long 1)" in text
    assert "run dir      'runs/my run'" in text  # relative to the working directory, quoted
    assert "--logdir 'runs/my run/tensorboard'" in text
    speak = next(line for line in text.splitlines() if line.startswith("speak"))
    argv = shlex.split(speak.removeprefix("speak"))
    assert argv[1] == "scripts/synthesize.py"
    args = dict(zip(argv[2::2], argv[3::2]))
    assert args == {"--export": "runs/my run/export", "--speaker-wav": "runs/my run/eval_reference.wav",
                    "--text": "ሰላም፣ እንዴት ነህ?", "--out": "hello.wav"}


def test_summary_of_a_stopped_run_offers_the_checkpoint_export(tmp_path):
    text = report.format_summary(report.RunSummary(run_dir=tmp_path, first_step=40, last_step=57, seconds=3.0,
                                                   exit_code=1, checkpoint=tmp_path / "checkpoints" / "step_00000050"))
    assert "run stopped with exit code 1: step 57, 17 steps this run (from step 40)" in text
    assert "no eval ran" in text
    assert "scripts/export.py --checkpoint" in text and "step_00000050" in text and "speak" not in text


def test_synthesize_accepts_the_flags_the_summary_uses():
    help_text = subprocess.run([sys.executable, str(REPO / "scripts" / "synthesize.py"), "--help"], capture_output=True,
                               text=True, check=True).stdout
    for flag in ("--export", "--speaker-wav", "--text", "--out"):
        assert flag in help_text


# --- TensorBoard ----------------------------------------------------------------------------


def write_demo_events(logdir: Path, steps: int = 30) -> None:
    """A small event file made the way train.py logs (used here and by the browser check)."""
    from torch.utils.tensorboard import SummaryWriter

    cfg = load_config(REPO / "configs" / "demo.yaml")
    writer = SummaryWriter(str(logdir))
    report.log_run_start(writer, cfg, epoch_basis="metadata_train.csv: 185 rows; ~46 steps per epoch")
    stats = _stats()
    for step in range(1, steps + 1):
        values = {**VALUES, "train/loss": 5 * math.exp(-step / 15), "train/loss_mel_ce": 4.6 * math.exp(-step / 15),
                  "perf/padding_efficiency": 0.9, "embedding/pretrained_std": 0.02, "embedding/new_std": 0.021,
                  **report.data_scalars(stats)}
        for tag, value in values.items():
            writer.add_scalar(tag, value, step)
        if step % 15 == 0:
            for tag, value in {"eval/loss": 5 * math.exp(-step / 20), "eval/loss_mel_ce": 4.7 * math.exp(-step / 20),
                               "eval/loss_text_ce": 4.4}.items():
                writer.add_scalar(tag, value, step)
            t = np.linspace(0, 1, 24000, dtype=np.float32)
            report.log_test_audio(writer, [0.3 * np.sin(2 * np.pi * 220 * t), 0.3 * np.sin(2 * np.pi * 330 * t)],
                                  ["ሰላም፣ እንዴት ነህ?", "ዛሬ 25 ብር ከፈልኩ።"], step, 24000)
            report.log_data_summary(writer, stats, step)
    report.log_final_hparams(writer, cfg, {"best_eval_loss": 1.1, "final_train_loss": 0.7})
    writer.close()


def _accumulator(logdir: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0, "tensors": 0, "audio": 0})
    acc.Reload()
    return acc


def test_tensorboard_layout_text_audio_and_hparams_in_one_run(tmp_path):
    from tensorboard.plugins.custom_scalar import layout_pb2

    logdir = tmp_path / "tensorboard"
    write_demo_events(logdir)
    assert [p.name for p in logdir.iterdir() if p.is_dir()] == []  # no hparams sub-run
    acc = _accumulator(logdir)
    scalars = set(acc.Tags()["scalars"])
    assert {"data/rows_dropped", "hparams/best_eval_loss"} <= scalars
    assert not any(t.startswith("data/dropped/") for t in scalars)
    assert acc.Scalars("data/rows_dropped")[-1].value == 3

    (tag,) = acc.PluginTagToContent("custom_scalars")  # the layout is one string tensor
    layout = layout_pb2.Layout.FromString(acc.Tensors(tag)[0].tensor_proto.string_val[0])
    titles = [c.title for c in layout.category]
    assert titles[0] == "1. losses" and titles[1] == "2. optimisation"
    first_charts = {chart.title: list(chart.multiline.tag) for chart in layout.category[0].chart}
    assert first_charts["loss (train, eval)"] == ["^train/loss$", "^eval/loss$"]
    grad = next(ch for ch in layout.category[1].chart if ch.title.startswith("grad norm"))
    assert list(grad.multiline.tag) == ["^grad_norm/embedding$", "^grad_norm/rest$"]

    assert {"test_sentences/0", "test_sentences/1"} <= set(acc.Tags()["audio"])
    meta = acc.SummaryMetadata("test_sentences/1")
    assert meta.display_name == "1: ዛሬ 25 ብር ከፈልኩ።" and meta.summary_description == "ዛሬ 25 ብር ከፈልኩ።"

    texts = {t: acc.Tensors(t) for t in acc.Tags()["tensors"] if t.startswith("run/")}
    config_text = texts["run/config/text_summary"][0].tensor_proto.string_val[0].decode()
    assert config_text.startswith("```yaml\noutput_dir: runs/demo")
    table = texts["run/data_dropped/text_summary"][-1].tensor_proto.string_val[0].decode()
    assert "| unknown_token | 2 | `a.wav`, `b.wav` |" in table and "| too_long | 1 |" in table
    assert {"_hparams_/experiment", "_hparams_/session_start_info"} <= set(acc.PluginTagToContent("hparams"))


def test_drop_table_without_drops_is_one_line():
    stats = FilterStats()
    stats.add_kept(2.0)
    assert report.drop_table(stats) == "**1** rows seen, **1** kept (0.00 h), **0** dropped"


@pytest.mark.slow
def test_headless_browser_check_of_the_dashboards(tmp_path):
    if not any(shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome")):
        pytest.skip("no chromium (apt-get install chromium) for the browser check")
    logdir = tmp_path / "tensorboard"
    write_demo_events(logdir)
    out = tmp_path / "check"
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "check_tensorboard.py"), "--logdir", str(logdir),
                           "--out", str(out), "--dashboards", "custom_scalars", "audio"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert all(c["ok"] for c in result["checks"].values()), result["checks"]
    for name in ("custom_scalars", "audio"):
        png = out / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


@pytest.mark.slow
def test_browser_check_fails_on_the_old_layout(tmp_path):
    """The HTTP checks catch what the issue describes: per-reason drop plots, unlabelled audio, a sub-run."""
    from torch.utils.tensorboard import SummaryWriter

    logdir = tmp_path / "tensorboard"
    writer = SummaryWriter(str(logdir))
    for step in (1, 2):
        writer.add_scalar("train/loss", 1.0 / step, step)
        writer.add_scalar("data/dropped/too_long", 0.0, step)
    writer.add_audio("test_sentences/0", np.zeros((1, 2400), np.float32), 1, sample_rate=24000)
    writer.add_hparams({"lr": 1e-3}, {})  # what Accelerate's init_trackers(config=...) does: an empty sub-run
    writer.close()
    out = tmp_path / "check"
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "check_tensorboard.py"), "--logdir", str(logdir),
                           "--out", str(out), "--no-screenshots"], capture_output=True, text=True, timeout=90)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    checks = json.loads((out / "report.json").read_text(encoding="utf-8"))["checks"]
    failed = {name for name, c in checks.items() if not c["ok"]}
    assert failed == {"custom_scalars_first_losses", "layout_tags_exist", "no_per_reason_drop_plots",
                      "audio_labelled", "config_text", "one_run"}


def test_log_lines_do_not_break_the_bar(capsys):
    import logging

    handler = logging.StreamHandler(sys.stderr)  # a console handler, as logging.basicConfig makes
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        bar = report.RunProgress(max_steps=10, epochs=1, estimate=None, file=sys.stderr)
        bar.step(1, 0)
        logging.getLogger("amh.train").warning("a log line")
        bar.close()
        assert root.handlers[-1] is handler  # put back after the bar
    finally:
        root.removeHandler(handler)
    err = capsys.readouterr().err
    lines = err.replace("\r", "\n").splitlines()
    assert "a log line" in lines, err  # on a line of its own, not glued to the bar
