"""build_loader end to end: the demo corpus, the broken copy, ranks, resume, bucketing."""
from __future__ import annotations

import logging
import pickle
import socket
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from amh.config import ConfigError, DataConfig
from amh.data import DataError, build_loader
from amh.data.batching import padding_efficiency
from test_data_corpus import (  # noqa: F401 - fixtures
    UNKNOWN_TEXT, broken_parquet, broken_ready, char_encoder, demo_train_rows, expected_counts, real_encoder,
)

SR = 22050


def cfg_for(demo: Path, source: str, **kw) -> DataConfig:
    path = demo / ("ready" if source == "ready" else "parquet")
    base = dict(source=source, path=str(path), num_workers=2, shuffle_buffer=64, bucket_buffer=32)
    return DataConfig(**{**base, **kw})


def stem(row_id: str) -> str:
    return Path(row_id).stem


def epoch_ids(loader) -> list[str]:
    return [i for b in loader for i in b["ids"]]


def key(batch) -> tuple:
    """What must be equal for two batches to be 'the same batch'."""
    return (tuple(batch["ids"]), tuple(map(tuple, batch["cond_idxs"].tolist())),
            round(float(batch["wav"].double().sum()), 4), tuple(batch["text"].shape))


def loader(cfg, enc, **kw):
    args = dict(split="train", batch_size=4, text_encoder=enc, rank=0, world_size=1, seed=7)
    return build_loader(cfg, **{**args, **kw})


# ---------------------------------------------------------------------------------------------
# The demo corpus


@pytest.mark.parametrize("source", ["parquet", "ready"])
def test_epoch_yields_every_train_row_once(demo_corpus, demo_train_rows, real_encoder, source):
    lo = loader(cfg_for(demo_corpus, source), real_encoder)
    batches = list(lo)
    ids = [stem(i) for b in batches for i in b["ids"]]
    assert sorted(ids) == sorted(stem(r["audio_file"]) for r in demo_train_rows)
    assert lo.epoch == 1 and lo.filter_stats().dropped == 0 and lo.filter_stats().kept == len(ids)
    texts = {stem(r["audio_file"]): r["text"] for r in demo_train_rows}
    for b in batches:
        n = len(b["ids"])
        assert b["text"].dtype == b["text_lengths"].dtype == b["wav_lengths"].dtype == torch.long
        assert b["wav"].dtype == b["cond"].dtype == torch.float32
        assert b["wav"].shape[:2] == (n, 1) and b["cond"].shape[:2] == (n, 1) and b["cond_idxs"].shape == (n, 2)
        assert b["wav"].shape[-1] == int(b["wav_lengths"].max()) and b["n_audio_samples"] == int(b["wav_lengths"].sum())
        assert b["n_text_tokens"] == int(b["text_lengths"].sum())
        assert float(b["wav"].abs().max()) <= 1.0
        for i in range(n):
            length, tl = int(b["wav_lengths"][i]), int(b["text_lengths"][i])
            assert (b["text"][i, :tl] > 0).all() and (b["text"][i, tl:] == 0).all()  # no [STOP]=0 inside
            assert b["text"][i, :tl].tolist() == real_encoder(texts[stem(b["ids"][i])])
            assert (b["wav"][i, 0, length:] == 0).all()
            start, end = b["cond_idxs"][i].tolist()
            assert 0 <= start < end <= length and int(b["cond_lengths"][i]) == end - start
            assert torch.equal(b["cond"][i, 0, : end - start], b["wav"][i, 0, start:end])
        assert "codes" not in b and "cond_mels" not in b


def test_same_source_same_samples_in_both_layouts(demo_corpus, char_encoder):
    """The ready folder and the parquet shards hold the same clips: same ids, lengths, texts."""
    out = {}
    for source in ("parquet", "ready"):
        lo = loader(cfg_for(demo_corpus, source, num_workers=0), char_encoder, training=False)
        out[source] = {stem(i): (int(n), tuple(t[:tl].tolist())) for b in lo
                       for i, n, t, tl in zip(b["ids"], b["wav_lengths"], b["text"], b["text_lengths"])}
    assert out["parquet"] == out["ready"]


def test_epochs_reshuffle_and_seeds_repeat(demo_corpus, char_encoder):
    cfg = cfg_for(demo_corpus, "parquet")
    a = loader(cfg, char_encoder)
    e0, e1 = epoch_ids(a), epoch_ids(a)
    assert sorted(e0) == sorted(e1) and e0 != e1
    assert epoch_ids(loader(cfg, char_encoder)) == e0  # same seed, same order
    assert epoch_ids(loader(cfg, char_encoder, seed=8)) != e0


def test_eval_loader_is_deterministic_and_restarts(demo_corpus, char_encoder):
    lo = loader(cfg_for(demo_corpus, "parquet"), char_encoder, split="eval", training=False)
    first = [key(b) for b in lo]
    for _, _ in zip(range(2), lo):  # a partial pass, as the trainer's eval_batches does
        pass
    assert [key(b) for b in lo] == first
    assert all(b["cond_idxs"][:, 0].eq(0).all() for b in lo)  # eval prompts start at 0, as upstream


# ---------------------------------------------------------------------------------------------
# The broken copy


@pytest.mark.parametrize("layout", ["ready", "parquet"])
def test_broken_copy_exact_counts_and_no_good_row_lost(request, demo_train_rows, real_encoder, layout, caplog):
    root, rows = request.getfixturevalue(f"broken_{layout}")
    cfg = DataConfig(source=layout, path=str(root), num_workers=2, shuffle_buffer=50, bucket_buffer=16)
    lo = loader(cfg, real_encoder)
    with caplog.at_level(logging.WARNING, logger="amh.data.pipeline"):
        ids = epoch_ids(lo)  # runs through: nothing raised
    assert sorted(stem(i) for i in ids) == sorted(stem(r["audio_file"]) for r in demo_train_rows)
    stats = lo.filter_stats()
    want = expected_counts(rows)
    assert {k: v for k, v in stats.counts.items() if v} == want
    assert stats.seen == len(demo_train_rows) + len(rows) and stats.kept == len(demo_train_rows)
    for r in rows:
        assert r["id"] in stats.examples[r["reason"]]
        assert any(r["id"] in m for m in caplog.messages)  # logged with its row id
    # a second epoch counts again; the summary names every reason
    epoch_ids(lo)
    assert {k: v for k, v in lo.filter_stats().counts.items() if v} == {k: 2 * v for k, v in want.items()}
    summary = lo.filter_stats().summary()
    assert all(reason in summary for reason in want)


def test_everything_filtered_is_a_clear_error(tmp_path, broken_ready, char_encoder):
    root, rows = broken_ready
    lines = [line for line in (root / "metadata_train.csv").read_text(encoding="utf-8").splitlines()
             if line.startswith(("audio_file", "broken/"))]
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "broken").symlink_to(root / "broken")
    (bad / "metadata_train.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    lo = loader(DataConfig(source="ready", path=str(bad), num_workers=1), char_encoder)
    with pytest.raises(DataError) as err:
        list(lo)
    message = str(err.value)
    assert f"all {len(rows)} rows were filtered out" in message
    assert "decode_error x3" in message and "broken/" in message and "data.path=" not in message


def test_text_encoder_errors_are_rows_not_crashes(demo_corpus):
    def fragile(text: str) -> list[int]:
        if "ቡና" in text:
            raise RuntimeError("boom")
        return [3] * len(text)

    lo = loader(cfg_for(demo_corpus, "parquet", num_workers=0), fragile)
    n = len(epoch_ids(lo))
    stats = lo.filter_stats()
    assert stats.counts["text_error"] > 0 and n + stats.counts["text_error"] == stats.seen


# ---------------------------------------------------------------------------------------------
# Bucketing


def test_bucketing_lifts_padding_efficiency_above_90_percent(demo_corpus, char_encoder):
    effs = {}
    for bucket in (0, 128):
        lo = loader(cfg_for(demo_corpus, "parquet", bucket_buffer=bucket, shuffle_buffer=200), char_encoder, batch_size=8)
        batches = list(lo)
        real = sum(b["n_audio_samples"] for b in batches)
        padded = sum(b["wav"].shape[0] * b["wav"].shape[-1] for b in batches)
        assert lo.padding_efficiency == pytest.approx(real / padded)
        effs[bucket] = lo.padding_efficiency
    assert effs[128] > 0.9 > effs[0]


def test_batches_capped_by_audio_seconds(demo_corpus, char_encoder):
    lo = loader(cfg_for(demo_corpus, "parquet", max_batch_seconds=20.0), char_encoder, batch_size=1)
    batches = list(lo)
    assert max(len(b["ids"]) for b in batches) > 1
    for b in batches:
        assert len(b["ids"]) == 1 or b["wav"].shape[0] * b["wav"].shape[-1] <= 20 * SR
        assert padding_efficiency(b) > 0
    # data.max_batch_size caps the clips of a budgeted batch; every row is still read once.
    capped = list(loader(cfg_for(demo_corpus, "parquet", max_batch_seconds=20.0, max_batch_size=2), char_encoder,
                         batch_size=1))
    assert max(len(b["ids"]) for b in capped) == 2
    assert sorted(i for b in capped for i in b["ids"]) == sorted(i for b in batches for i in b["ids"])


# ---------------------------------------------------------------------------------------------
# Exact resume


def run_from(lo, epochs: int, stop_after: int | None = None):
    """Trainer-style loop; returns (batch keys, state after `stop_after` batches or None)."""
    out = []
    for epoch in range(lo.epoch, epochs):
        lo.set_epoch(epoch)
        for batch in lo:
            out.append(key(batch))
            if stop_after is not None and len(out) == stop_after:
                return out, pickle.loads(pickle.dumps(lo.state_dict()))
    return out, None


@pytest.mark.parametrize("workers,conditioning", [(0, "same_utterance"), (2, "same_utterance"), (0, "same_speaker")])
def test_resume_mid_epoch_yields_exactly_the_uninterrupted_batches(demo_corpus, char_encoder, workers, conditioning):
    # small blocks and windows, so that stops fall inside blocks, windows and carried batches
    cfg = cfg_for(demo_corpus, "parquet", num_workers=workers, shuffle_buffer=30, bucket_buffer=8,
                  conditioning=conditioning)
    reference, _ = run_from(loader(cfg, char_encoder), epochs=2)
    per_epoch = len(reference) // 2
    stops = (1, 5, per_epoch - 1, per_epoch, per_epoch + 3) if conditioning == "same_utterance" and not workers \
        else (3, per_epoch, per_epoch + 3)
    for stop in stops:
        head, state = run_from(loader(cfg, char_encoder), epochs=2, stop_after=stop)
        resumed = loader(cfg, char_encoder)
        resumed.load_state_dict(state)
        tail, _ = run_from(resumed, epochs=2)
        assert head + tail == reference, f"stop after {stop}"
    if conditioning == "same_speaker":
        spans = [span for k in reference for span in k[1]]
        assert sum(span == (-1, -1) for span in spans) > 0.8 * len(spans)  # the rest: alone in their block


def test_resume_restores_epoch_stats_and_padding(demo_corpus, broken_parquet, char_encoder):
    root, rows = broken_parquet
    cfg = DataConfig(source="parquet", path=str(root), num_workers=2, shuffle_buffer=40, bucket_buffer=8)
    full = loader(cfg, char_encoder)
    list(full)
    head, state = run_from(loader(cfg, char_encoder), epochs=1, stop_after=10)
    resumed = loader(cfg, char_encoder)
    resumed.load_state_dict(state)
    assert resumed.epoch == 0
    list(resumed)
    assert resumed.epoch == 1
    assert resumed.filter_stats().counts == full.filter_stats().counts
    assert resumed.padding_efficiency == pytest.approx(full.padding_efficiency)


@pytest.mark.parametrize("change", [dict(num_workers=1), dict(shuffle_buffer=20), dict(batch_size=3), dict(seed=1)])
def test_a_position_from_other_settings_restarts_the_epoch(demo_corpus, char_encoder, caplog, change):
    cfg = cfg_for(demo_corpus, "parquet")
    _, state = run_from(loader(cfg, char_encoder), epochs=1, stop_after=3)
    kw = {k: v for k, v in change.items() if k in ("batch_size", "seed")}
    other = loader(replace(cfg, **{k: v for k, v in change.items() if k not in kw}), char_encoder, **kw)
    with caplog.at_level(logging.WARNING):
        other.load_state_dict(state)
    assert "restarts from its beginning" in caplog.text and next(iter(change)) in caplog.text
    assert other.epoch == 0 and len(epoch_ids(other)) == 185


def test_set_epoch_drops_a_position_in_another_epoch(demo_corpus, char_encoder):
    cfg = cfg_for(demo_corpus, "parquet")
    lo = loader(cfg, char_encoder)
    run_from(lo, epochs=1, stop_after=3)
    lo.set_epoch(1)
    assert epoch_ids(lo) == epoch_ids(loader(cfg, char_encoder, epoch=1))


# ---------------------------------------------------------------------------------------------
# Ranks (in one process: rank=0/1 with world_size=2 and no process group)


@pytest.mark.parametrize("source,split", [("parquet", "train"), ("ready", "train"), ("parquet", "eval")])
def test_two_ranks_see_disjoint_rows_covering_the_split(demo_corpus, char_encoder, source, split):
    cfg = cfg_for(demo_corpus, source)
    whole = epoch_ids(loader(cfg, char_encoder, split=split))
    ranks = [epoch_ids(loader(cfg, char_encoder, split=split, rank=r, world_size=2)) for r in (0, 1)]
    assert not set(ranks[0]) & set(ranks[1])
    assert sorted(ranks[0] + ranks[1]) == sorted(whole)
    assert all(len(r) >= len(whole) // 2 - 12 for r in ranks)  # roughly balanced


def test_held_out_eval_split_is_disjoint_and_stratified(demo_corpus, char_encoder):
    cfg = cfg_for(demo_corpus, "ready", eval_split=None, eval_fraction=0.2)
    train = epoch_ids(loader(cfg, char_encoder))
    evals = [b for b in loader(cfg, char_encoder, split="eval", training=False)]
    held = [i for b in evals for i in b["ids"]]
    everything = epoch_ids(loader(replace(cfg, eval_fraction=0.0), char_encoder))
    assert not set(train) & set(held) and sorted(train + held) == sorted(everything)
    assert 0.1 < len(held) / len(everything) < 0.3
    assert {s for b in evals for s in b["speakers"]} == {"am", "am_f3", "am_m3", "am_klatt"}


def test_too_many_workers_for_the_shards(demo_corpus, char_encoder, caplog):
    with caplog.at_level(logging.INFO, logger="amh.data.pipeline"):
        lo = loader(cfg_for(demo_corpus, "parquet", num_workers=2), char_encoder, split="eval", training=False)
    assert lo.num_workers == 1 and "1 shard(s)" in caplog.text
    assert len(epoch_ids(lo)) == 20


def test_bad_buffer_settings_are_config_errors(demo_corpus, char_encoder):
    with pytest.raises(ConfigError, match="data.shuffle_buffer"):
        loader(cfg_for(demo_corpus, "parquet", shuffle_buffer=0), char_encoder)


# ---------------------------------------------------------------------------------------------
# Ranks for real: two processes, gloo on 127.0.0.1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _gloo_rank(rank: int, world: int, port: int, cfg: DataConfig, enc, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        lo = loader(cfg, enc, rank=rank, world_size=world)
        full, state = run_from(lo, epochs=1, stop_after=None), None
        keys = full[0]
        lo2 = loader(cfg, enc, rank=rank, world_size=world)
        head, state = run_from(lo2, epochs=1, stop_after=5)  # state_dict() is a collective here
        resumed = loader(cfg, enc, rank=rank, world_size=world)
        resumed.load_state_dict(state)
        tail, _ = run_from(resumed, epochs=1)
        stats = lo.filter_stats()
        merged = stats.all_reduce()
        torch.save({"keys": keys, "head": head, "tail": tail, "stats": stats.to_dict(), "merged": merged.to_dict(),
                    "ranks_in_state": len(state["ranks"])}, Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_ranks_disjoint_equal_length_and_resumable(tmp_path, demo_corpus, char_encoder):
    cfg = cfg_for(demo_corpus, "parquet", num_workers=1, shuffle_buffer=40)
    torch.multiprocessing.spawn(_gloo_rank, args=(2, _free_port(), cfg, char_encoder, str(tmp_path)), nprocs=2)
    res = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1)]
    # the same streams as the ranks computed without a process group, cut to a common length
    alone = [[key(b) for b in loader(cfg, char_encoder, rank=r, world_size=2)] for r in (0, 1)]
    n = min(map(len, alone))
    assert len(alone[0]) != len(alone[1])  # so the ranks must agree to stop together
    for r in (0, 1):
        assert res[r]["keys"] == alone[r][:n]
        assert res[r]["head"] + res[r]["tail"] == res[r]["keys"]
        assert res[r]["ranks_in_state"] == 2
    ids = [{i for k in res[r]["keys"] for i in k[0]} for r in (0, 1)]
    assert not ids[0] & ids[1]
    assert {i for r in (0, 1) for k in alone[r] for i in k[0]} == {i for k in run_from(loader(cfg, char_encoder), 1)[0]
                                                                   for i in k[0]}
    merged = res[0]["merged"]
    assert merged == res[1]["merged"]
    assert merged["seen"] == res[0]["stats"]["seen"] + res[1]["stats"]["seen"]
    assert merged["kept"] == res[0]["stats"]["kept"] + res[1]["stats"]["kept"]


def test_unknown_text_constant_is_latin_only():
    assert all(c.isalpha() and ord(c) < 0x250 or c == " " for c in UNKNOWN_TEXT)


@pytest.mark.slow
def test_training_runs_through_the_broken_copy(tmp_path, tiny_release, broken_ready, real_encoder):
    """train.py (tiny model, CPU) on the broken ready folder: no crash, the bad rows are counted."""
    import subprocess
    import sys

    root, _ = broken_ready
    repo = Path(__file__).resolve().parent.parent
    cmd = [sys.executable, str(repo / "train.py"), "--config", str(repo / "configs" / "demo.yaml"),
           f"output_dir={tmp_path / 'run'}", f"model.release={tiny_release}", f"model.vocab={real_encoder.vocab}",
           f"data.path={root}", "data.shuffle_buffer=400", "train.max_steps=4", "train.eval_every=2",
           "train.eval_batches=1", "train.save_every=4", "train.log_every=2", "eval.enabled=false"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=repo, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "skipped row 'broken/" in done.stderr and "decode_error" in done.stderr
    assert (tmp_path / "run" / "export").is_dir()


def test_workers_persist_across_passes_and_epochs_stay_exact(demo_corpus, char_encoder):
    cfg = cfg_for(demo_corpus, "parquet", num_workers=2)
    lo = loader(cfg, char_encoder)
    first = [key(b) for b in lo]
    pids = [w.pid for w in lo._data_loader()._iterator._workers]
    second = [key(b) for b in lo]
    assert [w.pid for w in lo._data_loader()._iterator._workers] == pids  # the same processes served epoch 1
    fresh = loader(cfg, char_encoder)
    fresh.set_epoch(1)
    assert second == [key(b) for b in fresh] and second != first
    lo.close()
    evaluation = loader(cfg, char_encoder, split="eval", training=False)
    assert [key(b) for b in evaluation] == [key(b) for b in evaluation]  # every eval pass from its start


def test_each_loader_holds_its_own_cpu_group_on_a_gpu_backend(demo_corpus, char_encoder, monkeypatch):
    """Under NCCL the ranks' CPU agreements need a gloo group: each Loader makes and keeps its own
    (new_group is a collective every rank calls in the same order); nothing is cached in the module."""
    import torch.distributed as dist

    made = []
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda group=None: 2)
    monkeypatch.setattr(dist, "get_backend", lambda group=None: "nccl")
    monkeypatch.setattr(dist, "new_group", lambda backend=None: made.append(backend) or object())
    cfg = DataConfig(source="ready", path=str(demo_corpus / "ready"))
    loaders = [build_loader(cfg, split=split, training=split == "train", batch_size=2, text_encoder=char_encoder,
                            rank=0, world_size=2, seed=0) for split in ("train", "eval", "train")]
    assert made == ["gloo"] * 3
    groups = [loader._group for loader in loaders]
    assert len({id(g) for g in groups}) == 3
