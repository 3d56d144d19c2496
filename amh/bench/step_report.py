"""The step benchmark's numbers from timed stretches: per-second rates, model FLOPs utilisation
against the device's bf16 peak, our loop's variants as given on the command line, and the table."""
from __future__ import annotations

from amh.bench.step_loops import Chunk

# Dense bf16 tensor-core peaks (TFLOP/s) by device-name fragment, most specific first.
PEAK_BF16_TFLOPS = (("H100 PCIe", 756.0), ("H100", 989.4), ("H200", 989.4), ("GH200", 989.4), ("B200", 2250.0),
                    ("A100", 312.0), ("L40S", 362.0), ("L4", 121.0), ("A10G", 70.0))
ROWS = ("steps/s", "samples/s", "audio s/s", "GPT tokens/s", "padding eff.", "prompt frames/sample", "peak memory MB",
        "MFU")


def rates(chunk: Chunk, sample_rate: int, flops_per: tuple[float, float] | None, peak_flops: float | None) -> dict:
    w, s = chunk.work, chunk.seconds
    out = {"steps/s": w.steps / s, "samples/s": w.samples / s, "audio s/s": w.audio_samples / sample_rate / s,
           "GPT tokens/s": w.tokens / s, "padding eff.": w.audio_samples / max(1, w.padded_audio_samples),
           "prompt frames/sample": w.prompt_frames / max(1, w.steps),
           "peak memory MB": chunk.peak_mb, "MFU": float("nan")}
    if flops_per and peak_flops:
        per_token, per_seq_sq = flops_per
        out["MFU"] = (per_token * w.tokens + per_seq_sq * w.seq_sq) / s / peak_flops
    return out


def peak_tflops(args, device) -> float | None:
    import torch

    if args.peak_tflops:
        return args.peak_tflops
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16_TFLOPS if k in name), None)


def parse_variants(text: str) -> list[tuple[str, bool, bool, bool]]:
    out = []
    for name in (v.strip() for v in text.split(",") if v.strip()):
        codes, *opts = name.split("+")
        if codes not in ("cached", "online") or set(opts) - {"ckpt", "compile"}:
            raise SystemExit(f"--variants: {name!r} is not cached|online[+ckpt][+compile]")
        out.append((name, codes == "cached", "ckpt" in opts, "compile" in opts))
    return out


def format_table(names: list[str], medians: dict[str, dict], baseline: str | None, device_type: str) -> str:
    def fmt(row: str, v: float) -> str:
        if v != v:  # NaN
            return "n/a"
        if row == "padding eff.":
            return f"{v:.1%}"
        if row == "MFU":
            return f"{v:.1%}"
        return f"{v:,.2f}" if v < 100 else f"{v:,.0f}"

    cols = list(names) + ([baseline] if baseline else [])
    ratio_cols = [f"{n}/{baseline}" for n in names] if baseline else []
    header = ["metric (median)"] + cols + ratio_cols
    lines = []
    for row in ROWS:
        if row == "MFU" and device_type != "cuda":
            continue
        cells = [row] + [fmt(row, medians[c][row]) for c in cols]
        for n in names if baseline else []:
            mine, theirs = medians[n][row], medians[baseline][row]
            shared_rss = row == "peak memory MB" and device_type != "cuda"
            cells.append("n/a" if shared_rss or not theirs or theirs != theirs else f"{mine / theirs:.2f}x")
        lines.append(cells)
    widths = [max(len(r[i]) for r in [header] + lines) for i in range(len(header))]
    render = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
    return "\n".join([render(header), render(["-" * w for w in widths])] + [render(r) for r in lines])
