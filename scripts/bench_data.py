#!/usr/bin/env python3
"""Benchmark the data pipeline: throughput per worker, peak memory, padding efficiency.

    python scripts/bench_data.py                      # demo corpus as 44.1 kHz FLAC, 1x and 10x
    python scripts/bench_data.py --scales 1 10 30 --workers 2 --batch-size 8

The demo corpus (22.05 kHz WAV) is re-encoded as 44.1 kHz FLAC, the common Hub format, so every
clip is decoded, resampled and tokenised; the 10x copy repeats its rows under new ids. Each
configuration runs in a fresh process (clean peak RSS) through one epoch of `build_loader` with
the trainer's text encoder (Amharic front-end + XTTS tokenizer). Printed per run: samples/s and
audio-seconds/s (per worker: divided by --workers), peak RSS of the main process and of the
largest worker, and padding efficiency with bucketing (data.bucket_buffer) and without
(bucket_buffer=0). RSS must not grow with the size of the source.
"""
import argparse
import io
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def make_corpus(demo: Path, out: Path, scale: int, rate: int) -> Path:
    """demo train rows, re-encoded as `rate` Hz FLAC, `scale` times (cached)."""
    import datasets
    import soundfile as sf
    import soxr

    stamp = out / "done.json"
    if stamp.exists():
        return out
    base = datasets.load_dataset("parquet", data_files=str(demo / "parquet" / "train" / "*.parquet"), split="train",
                                 cache_dir=str(out / "hf_cache"))
    base = base.cast_column("audio", datasets.Audio(decode=False))

    def flac(data: bytes) -> bytes:
        wav, sr = sf.read(io.BytesIO(data), dtype="float32")
        buf = io.BytesIO()
        sf.write(buf, soxr.resample(wav, sr, rate), rate, format="FLAC")
        return buf.getvalue()

    encoded = [flac(a["bytes"]) for a in base["audio"]]
    (out / "train").mkdir(parents=True, exist_ok=True)
    rows_per_shard = len(base)
    for copy in range(scale):
        part = datasets.Dataset.from_dict({
            "audio": [{"bytes": b, "path": f"c{copy}_{i}.flac"} for i, b in enumerate(encoded)],
            "text": base["text"], "speaker": base["speaker"], "id": [f"c{copy}_{i}" for i in base["id"]],
        }, features=datasets.Features({"audio": datasets.Audio(sampling_rate=rate), "text": datasets.Value("string"),
                                       "speaker": datasets.Value("string"), "id": datasets.Value("string")}))
        part.to_parquet(str(out / "train" / f"train-{copy:05d}.parquet"), batch_size=100)
    stamp.write_text(json.dumps({"rows": rows_per_shard * scale, "rate": rate}))
    return out


def encoder(fixtures: Path):
    from amh.fixtures.demo_corpus import load_sentences
    from amh.fixtures.tiny_xtts import make_tiny_release
    from amh.text.frontend import FrontendSettings
    from amh.xtts.vocab import extend_vocab
    from amh.xtts.text_encoder import TextEncoder

    vocab = fixtures / "bench_data_vocab_am.json"
    if not vocab.exists():
        extend_vocab(make_tiny_release(fixtures / "tiny_xtts") / "vocab.json", load_sentences(), vocab, mode="chars")
    return TextEncoder(vocab, FrontendSettings())


class MemorySampler:
    """Samples this process's RSS and its workers' USS (memory only they hold: a forked worker's RSS
    also counts the pages it shares with the main process) every `period` seconds."""

    def __init__(self, period: float = 0.1):
        import threading

        import psutil

        self.me, self.period, self.samples = psutil.Process(), period, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            workers = 0
            for child in self.me.children(recursive=True):
                try:
                    workers += child.memory_full_info().uss
                except psutil.Error:  # a worker that just exited
                    pass
            self.samples.append((time.perf_counter(), self.me.memory_info().rss, workers))
            self._stop.wait(self.period)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def summary(self, start: float, end: float) -> dict:
        """Peaks, and the peak over the first and the last quarter of the run (growth shows as last > first)."""
        mb = 1 / 2**20
        span = [(t, r, w) for t, r, w in self.samples if start <= t <= end] or self.samples
        q = (end - start) / 4
        first = [s for s in span if s[0] <= start + q] or span[:1]
        last = [s for s in span if s[0] >= end - q] or span[-1:]
        return {"rss_main_mb": max(r for _, r, _ in span) * mb, "uss_workers_mb": max(w for _, _, w in span) * mb,
                "rss_main_first_quarter_mb": max(r for _, r, _ in first) * mb,
                "rss_main_last_quarter_mb": max(r for _, r, _ in last) * mb,
                "uss_workers_first_quarter_mb": max(w for _, _, w in first) * mb,
                "uss_workers_last_quarter_mb": max(w for _, _, w in last) * mb}


def run_one(args) -> dict:
    """One epoch in this process; prints one JSON line."""
    from amh.config import DataConfig
    from amh.data import build_loader

    cfg = DataConfig(source="parquet", path=args.path, num_workers=args.workers, shuffle_buffer=args.shuffle_buffer,
                     bucket_buffer=args.bucket_buffer)
    enc = encoder(Path(args.fixtures))
    enc("ሰላም")  # build the tokenizer before the clock starts (the workers inherit it)
    loader = build_loader(cfg, split="train", batch_size=args.batch_size, text_encoder=enc, rank=0, world_size=1,
                          seed=0)
    first = None
    samples = audio = 0
    with MemorySampler() as memory:
        start = time.perf_counter()
        for batch in loader:
            if first is None:
                first = time.perf_counter()
            samples += len(batch["ids"])
            audio += batch["n_audio_samples"]
        end = time.perf_counter()
    seconds = audio / cfg.sample_rate
    return {
        "rows": samples, "audio_h": seconds / 3600, "wall_s": end - start, "first_batch_s": first - start,
        "samples_per_s": samples / (end - start), "audio_s_per_s": seconds / (end - start),
        "padding_efficiency": loader.padding_efficiency,
        "rss_main_peak_mb_since_start": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        **memory.summary(start, end),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 10], help="corpus sizes, in demo corpora")
    parser.add_argument("--workers", type=int, default=1, help="DataLoader workers (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--bucket-buffer", type=int, default=256, help="data.bucket_buffer when bucketing")
    parser.add_argument("--shuffle-buffer", type=int, default=1000)
    parser.add_argument("--rate", type=int, default=44100, help="sample rate of the benchmark FLAC corpus")
    parser.add_argument("--fixtures", default=str(REPO / "build" / "fixtures"))
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--path", help=argparse.SUPPRESS)  # internal: one run, in a child process
    args = parser.parse_args(argv)
    if args.path:
        print(json.dumps(run_one(args)))
        return 0

    from amh.fixtures.demo_corpus import make_demo_corpus

    fixtures = Path(args.fixtures)
    demo = make_demo_corpus(fixtures / "demo_corpus")
    results = []
    for scale in args.scales:
        corpus = make_corpus(demo, fixtures / f"bench_data_{args.rate}_{scale}x", scale, args.rate)
        for bucket in (args.bucket_buffer, 0):
            cmd = [sys.executable, __file__, "--path", str(corpus), "--workers", str(args.workers),
                   "--batch-size", str(args.batch_size), "--bucket-buffer", str(bucket),
                   "--shuffle-buffer", str(args.shuffle_buffer), "--fixtures", str(fixtures)]
            done = subprocess.run(cmd, capture_output=True, text=True, check=True)
            r = json.loads(done.stdout.strip().splitlines()[-1]) | {"scale": scale, "bucket_buffer": bucket}
            results.append(r)
    w = max(1, args.workers)
    print(f"data pipeline: {args.rate} Hz FLAC -> 22.05 kHz, front-end + XTTS tokenizer, batch {args.batch_size}, "
          f"{args.workers} worker(s), shuffle_buffer {args.shuffle_buffer}")
    print("memory: peak RSS of the main process, peak USS of the workers (what they hold beyond what they share "
          "with it); first/last quarter of the epoch in brackets")
    print(f"{'corpus':>6} {'bucket':>6} {'rows':>6} {'audio h':>7} {'samples/s/wkr':>13} {'audio-s/s/wkr':>13} "
          f"{'pad eff':>7} {'RSS main MB':>18} {'USS workers MB':>18}")
    for r in results:
        print(f"{str(r['scale']) + 'x':>6} {r['bucket_buffer']:>6} {r['rows']:>6} {r['audio_h']:>7.3f} "
              f"{r['samples_per_s'] / w:>13.1f} {r['audio_s_per_s'] / w:>12.0f}x {r['padding_efficiency']:>7.1%} "
              f"{r['rss_main_mb']:>5.0f} [{r['rss_main_first_quarter_mb']:>4.0f}/{r['rss_main_last_quarter_mb']:>4.0f}] "
              f"{r['uss_workers_mb']:>7.0f} [{r['uss_workers_first_quarter_mb']:>4.0f}/{r['uss_workers_last_quarter_mb']:>4.0f}]")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
