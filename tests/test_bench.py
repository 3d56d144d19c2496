"""The bench release, the step benchmark's accounting and table (amh.bench.step_loops, step_report), the
stability study's runs (amh.bench.stability), and the two command lines (scripts/bench_step.py,
scripts/stability_study.py)."""
from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import FIXTURES

REPO = Path(__file__).resolve().parent.parent
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"{name}_under_test", REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def _run(script: str, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    # A subprocess: the scripts register the Amharic front-end on upstream's tokenizer class and the
    # Coqui Trainer configures logging, neither of which should leak into other tests.
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / f"{script}.py"), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{script} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return proc


@pytest.fixture(scope="module")
def bench_release(tiny_release):
    from amh.fixtures.bench_release import make_bench_release

    return make_bench_release(FIXTURES / "bench_tiny", "tiny")


def test_bench_release_dvae_has_gpt_trainers_hard_coded_shape(bench_release, tiny_release):
    from TTS.tts.layers.xtts.dvae import DiscreteVAE

    from amh.fixtures.bench_release import gpt_trainer_dvae_args
    from amh.xtts.codes import dvae_hparams
    from amh.xtts.release import load_checkpoint_state

    state = torch.load(bench_release / "dvae.pth", weights_only=True)
    # GPTTrainer builds exactly this module and loads the file with strict=False; here strictly,
    # minus the running buffers the released dvae.pth lacks too.
    missing, unexpected = DiscreteVAE(**gpt_trainer_dvae_args(64)).load_state_dict(state, strict=False)
    assert not unexpected and all(k.startswith("discrete_loss.") for k in missing)
    assert dvae_hparams(state) | {"normalization": None} == gpt_trainer_dvae_args(64)
    ours, tiny = load_checkpoint_state(bench_release / "model.pth"), load_checkpoint_state(tiny_release / "model.pth")
    assert ours.keys() == tiny.keys() and all(torch.equal(ours[k], tiny[k]) for k in ours)
    for name in ("vocab.json", "config.json", "mel_stats.pth"):
        assert (bench_release / name).read_bytes() == (tiny_release / name).read_bytes(), name


def test_bench_release_is_cached_by_its_stamp(bench_release):
    from amh.fixtures.bench_release import make_bench_release

    before = (bench_release / "dvae.pth").stat().st_mtime_ns
    assert make_bench_release(bench_release, "tiny") == bench_release
    assert (bench_release / "dvae.pth").stat().st_mtime_ns == before
    with pytest.raises(ValueError, match="choose one of tiny, mid, full"):
        make_bench_release(bench_release, "huge")


def test_full_vocab_has_the_released_row_count_and_keeps_the_tiny_ids():
    from amh.fixtures.bench_release import FULL_TEXT_TOKENS, full_vocab
    from amh.fixtures.tiny_xtts import tiny_vocab

    full, tiny = full_vocab()["model"]["vocab"], tiny_vocab()["model"]["vocab"]
    assert sorted(full.values()) == list(range(FULL_TEXT_TOKENS)) == list(range(6681))
    assert all(full[token] == i for token, i in tiny.items())


def test_work_counts_real_tokens_padding_and_attention():
    from amh.bench.step_loops import Chunk, Work
    from amh.bench.step_report import rates

    work = Work()
    text_lengths, wav_lengths = torch.tensor([10, 3]), torch.tensor([2048, 1025])
    work.add(text_lengths, wav_lengths, padded_len=2048, prompt_frames=300)
    # Per sample: text + [START]/[STOP] + ceil(wav / 1024) codes + start/stop codes.
    tokens = [10 + 2 + 2 + 2, 3 + 2 + 2 + 2]
    assert (work.steps, work.samples, work.audio_samples, work.padded_audio_samples) == (1, 2, 3073, 4096)
    assert work.tokens == sum(tokens) == 25
    assert work.seq_sq == sum((n + 32) ** 2 for n in tokens)
    r = rates(Chunk(2.0, work, 100.0, threads=1), 1024, (6.0, 12.0), 1000.0)
    assert r["steps/s"] == 0.5 and r["samples/s"] == 1.0 and r["GPT tokens/s"] == 12.5
    assert r["audio s/s"] == pytest.approx(3073 / 1024 / 2) and r["padding eff."] == pytest.approx(3073 / 4096)
    assert r["prompt frames/sample"] == 300
    assert r["MFU"] == pytest.approx((6.0 * 25 + 12.0 * work.seq_sq) / 2.0 / 1000.0)


def test_table_gives_our_over_their_ratio_per_row():
    from amh.bench.step_report import ROWS, format_table, parse_variants

    row = {name: 1.0 for name in ROWS}
    medians = {"cached": {**row, "steps/s": 3.0, "peak memory MB": 50.0}, "coqui": {**row, "steps/s": 2.0}}
    table = format_table(["cached"], medians, "coqui", "cpu")
    lines = {line.split("  ")[0].strip(): line.split() for line in table.splitlines()[2:]}
    assert lines["steps/s"][-1] == "1.50x"
    assert lines["peak memory MB"][-1] == "n/a"  # on CPU both loops share one process's peak RSS
    assert "MFU" not in lines
    alone = format_table(["cached"], medians, None, "cuda").splitlines()
    assert alone[0].split() == ["metric", "(median)", "cached"] and any(line.startswith("MFU") for line in alone)
    with pytest.raises(SystemExit, match="cached|online"):
        parse_variants("cached,precomputed")
    assert parse_variants("online+ckpt+compile") == [("online+ckpt+compile", False, True, True)]


@pytest.mark.slow
def test_bench_step_prints_the_table_and_the_coqui_ratio(bench_release, demo_corpus, tmp_path):
    out = tmp_path / "bench.json"
    proc = _run("bench_step", "--steps", "2", "--repeats", "1", "--warmup", "1", "--batch-size", "2",
                "--variants", "cached,online", "--baseline", "coqui", "--threads", "1",
                "--fixtures", str(FIXTURES), "--json", str(out))
    for label in ("steps/s", "samples/s", "audio s/s", "GPT tokens/s", "padding eff.", "prompt frames/sample",
                  "peak memory MB",
                  "cached/coqui", "online/coqui", "cached/coqui steps/s ratio: median"):
        assert label in proc.stdout, label
    result = json.loads(out.read_text())
    assert set(result["medians"]) == {"cached", "online", "coqui"}
    for loop, rows in result["medians"].items():
        for row in ("steps/s", "samples/s", "audio s/s", "GPT tokens/s", "prompt frames/sample", "peak memory MB"):
            assert math.isfinite(rows[row]) and rows[row] > 0, (loop, row, rows[row])
        assert 0 < rows["padding eff."] <= 1
        assert all(r["steps/s"] > 0 for r in result["per_repeat"][loop])
    assert result["threads"] == 1 and result["batch_size"] == 2
    # Identical work: the recipe stepped on our online loop's batches, so every count that depends only
    # on the samples is equal (samples, audio, tokens, padding, prompt frames per step).
    online, coqui = result["per_repeat"]["online"][0], result["per_repeat"]["coqui"][0]
    for row in ("padding eff.", "prompt frames/sample"):
        assert coqui[row] == online[row], row
    for row in ("samples/s", "audio s/s", "GPT tokens/s"):
        assert coqui[row] / coqui["steps/s"] == pytest.approx(online[row] / online["steps/s"]), row
    assert "coqui: steps on the batches our online loop steps on" in proc.stdout


def test_reinit_new_rows_follows_each_scheme():
    from amh.bench.stability import reinit_new_rows

    torch.manual_seed(0)
    for init in ("old", "randn", "matched"):
        gpt = torch.nn.Module()
        gpt.text_embedding, gpt.text_head = torch.nn.Embedding(40, 64), torch.nn.Linear(64, 40)
        before = {k: v.clone() for k, v in gpt.state_dict().items()}
        reinit_new_rows(gpt, 30, init, seed=1)
        for key in ("text_embedding.weight", "text_head.weight"):
            new = gpt.state_dict()[key]
            assert torch.equal(new[:30], before[key][:30]), (init, key)  # old rows untouched
            if init == "old":
                assert 0 < new[30:].std() < 2e-4
            elif init == "randn":  # GPTTrainer: randn rows, then the last row := the old last row
                assert 0.8 < new[30:-1].std() < 1.2 and torch.equal(new[-1], before[key][29])
            else:
                assert torch.equal(new, before[key])
        assert torch.equal(gpt.text_head.bias, before["text_head.bias"])


def test_upstream_loss_wrapper_is_nan_where_ours_is_finite(tiny_release):
    from amh.bench.stability import UpstreamLoss
    from amh.xtts.forward import XttsGptForTraining
    from amh.xtts.release import build_xtts

    xtts, _ = build_xtts(tiny_release, tiny_release / "vocab.json")
    ours = XttsGptForTraining(xtts.gpt).eval()
    theirs = UpstreamLoss(ours)
    g = torch.Generator().manual_seed(0)
    text, text_lengths = torch.randint(3, 40, (1, 7), generator=g), torch.tensor([7])
    codes, wav_lengths = torch.randint(0, 64, (1, 30), generator=g), torch.tensor([30_000])
    cond_mels = torch.randn(1, 80, 100, generator=g)
    late, early = torch.tensor([[5000, 20000]]), torch.tensor([[100, 20000]])
    assert math.isfinite(theirs(text, text_lengths, codes, wav_lengths, cond_mels, late).total.item())
    # The prompt starts before sample 256: upstream's mask leaves no mel target (0/0), ours does.
    nan = theirs(text, text_lengths, codes, wav_lengths, cond_mels, early)
    assert math.isnan(nan.mel.item()) and math.isnan(nan.total.item())
    assert math.isfinite(ours(text, text_lengths, codes, wav_lengths, cond_mels, early).total.item())
    # ...yet its gradients are finite: the empty mel CE contributes none (docs/stability.md, fp32-no-guard).
    nan.total.backward()
    grads = [p.grad for p in ours.parameters() if p.grad is not None]
    assert grads and all(bool(torch.isfinite(g).all()) for g in grads)
    assert ours.gpt.mel_head.weight.grad.abs().sum() == 0 and ours.gpt.text_head.weight.grad.abs().sum() > 0


@pytest.mark.slow
def test_stability_study_writes_the_report_and_plots(tiny_release, demo_corpus, tmp_path):
    doc = tmp_path / "docs" / "stability.md"
    proc = _run("stability_study", "--variants", "matched/group,bs1/upstream-loss", "--steps", "2",
                "--steps-bs1", "2", "--threads", "1", "--fixtures", str(FIXTURES), "--out", str(doc))
    assert f"wrote {doc}" in proc.stdout
    text = doc.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| variant |") and len(rows) == 3
    assert rows[1].startswith("| matched/group | matched | per-group | 2 | ours | fp16 | 2 |")
    assert rows[2].startswith("| bs1/upstream-loss | matched | per-group | 1 | upstream | fp16 | 2 |")
    for png in ("stability_init_clip.png", "stability_batch1_loss.png"):
        assert (doc.parent / png).read_bytes()[:8] == PNG_MAGIC
        assert f"](./{png})" in text


def test_activation_checkpointing_gives_the_same_gradients(tiny_release):
    """`model.gradient_checkpointing` (amh.train.step.apply_model_options) changes memory, not the result."""
    from amh.train.step import apply_model_options
    from amh.xtts.forward import XttsGptForTraining
    from amh.xtts.release import build_xtts

    def model(checkpointing: bool):
        xtts, _ = build_xtts(tiny_release, tiny_release / "vocab.json")
        module = apply_model_options(XttsGptForTraining(xtts.gpt), gradient_checkpointing=checkpointing).train()
        for m in module.modules():  # train mode (HF checkpoints only then), but deterministic
            if isinstance(m, torch.nn.Dropout):
                m.p = 0.0
        return module

    g = torch.Generator().manual_seed(0)
    batch = (torch.randint(3, 40, (2, 9), generator=g), torch.tensor([9, 5]), torch.randint(0, 64, (2, 20), generator=g),
             torch.tensor([20_000, 15_000]), torch.randn(2, 80, 120, generator=g), torch.tensor([[2000, 9000], [-1, -1]]))
    grads = []
    for checkpointing in (False, True):
        m = model(checkpointing)
        assert m.gpt.gpt.gradient_checkpointing is checkpointing
        m(*batch).total.backward()
        grads.append({n: p.grad for n, p in m.named_parameters()})
    assert grads[0].keys() == grads[1].keys()
    assert all(torch.equal(grads[0][n], grads[1][n]) for n in grads[0])


def test_several_sizes_forward_every_option_but_size_and_json():
    bench = _script("bench_step")
    argv = ["--size", "tiny,mid", "--baseline", "coqui", "--json", "out.json", "--steps=2", "--json=x", "--threads", "1"]
    assert bench._without(argv, "--size", "--json") == ["--baseline", "coqui", "--steps=2", "--threads", "1"]
    from amh.fixtures import bench_release

    assert bench_release.SIZES == ("tiny", "mid", "full") and bench_release.MID_LAYERS == 4
    with pytest.raises(SystemExit, match="--size 'huge'"):
        bench.main(["--size", "huge"])
