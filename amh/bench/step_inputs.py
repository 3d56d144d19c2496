"""What both loops of the step benchmark share, so that they do identical work: the release, the
demo corpus's ready/ folder, its extended vocab and the Amharic front-end, our loop's data settings,
and the corpus's DVAE codes precomputed once for the `cached` variants."""
from __future__ import annotations

import csv
import time
from dataclasses import dataclass, replace
from pathlib import Path


@dataclass
class Inputs:
    release: Path
    ready: Path
    vocab: Path
    settings: object  # FrontendSettings
    sample_rate: int = 22050


def prepare_inputs(args, work_dir: Path) -> Inputs:
    from amh.fixtures.bench_release import make_bench_release
    from amh.fixtures.demo_corpus import make_demo_corpus
    from amh.text.frontend import FrontendSettings
    from amh.xtts.vocab import extend_vocab
    from amh.xtts.language import register

    release = make_bench_release(args.fixtures / f"bench_{args.size}", args.size)  # one size per run_size
    ready = make_demo_corpus(args.fixtures / "demo_corpus") / "ready"
    settings = FrontendSettings()
    register(settings)  # both loops tokenize "am" through the same front-end
    texts = []
    for name in ("metadata_train.csv", "metadata_eval.csv"):
        with open(ready / name, encoding="utf-8", newline="") as f:
            texts += [row["text"] for row in csv.DictReader(f, delimiter="|")]
    vocab = work_dir / "vocab_extended.json"
    extend_vocab(release / "vocab.json", texts, vocab, mode="chars", frontend=settings)
    return Inputs(release, ready, vocab, settings)


def data_config(cfg, inputs: Inputs, workers: int):
    """Our loop's data settings: the config's bucketing, the recipe's limits (upstream's max clip)."""
    return replace(cfg.data, source="ready", path=str(inputs.ready), num_workers=workers, max_audio_seconds=11.6)


def precompute_codes(inputs: Inputs, data_cfg, device, out: Path) -> tuple[object, float]:
    """The corpus as the data pipeline's prepared parquet (scripts/prepare_dataset.py --codes-from):
    DVAE codes and a fixed prompt's mel per utterance, computed once. Returns our loop's data config
    for it and the seconds it took, so the one-off cost is reported next to the per-step gain."""
    from amh.data.prepare import PrepareOptions, prepare
    from amh.text.frontend import TextFrontend
    from amh.xtts.codes import AudioCodec
    from amh.xtts.text_encoder import TextEncoder

    start = time.perf_counter()
    codec = AudioCodec.from_release(inputs.release, device)
    prepare(data_cfg, PrepareOptions(out=str(out), workers=1), normalize=TextFrontend(inputs.settings).normalize,
            text_encoder=TextEncoder(inputs.vocab, inputs.settings), codec=codec, progress_bar=False)
    return replace(data_cfg, source="parquet", path=str(out)), time.perf_counter() - start
