"""The comparison report of scripts/evaluate.py: a CSV row per sentence, a Markdown summary, a plot.

    OUT/sentences.csv   export, speaker, sentence, transcript, CER, WER, speaker sim, RTF, wav
    OUT/summary.md      one row per export (corpus CER/WER, mean speaker sim, RTF), its hardest sentences
    OUT/metrics.png     the four numbers side by side, one bar per export
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from amh.eval.score import SentenceScore, SpeechScores

METRICS = (("eval/cer", "CER", "lower is better"), ("eval/wer", "WER", "lower is better"),
           ("eval/speaker_sim", "speaker similarity", "higher is better"), ("eval/rtf", "real-time factor", "lower is faster"))
HARDEST = 3


@dataclass
class ExportResult:
    label: str
    scores: SpeechScores
    wavs: list[str]  # per sentence row, relative to the report folder


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def write_csv(path: Path, results: list[ExportResult]) -> None:
    fields = ["export", "index", *SentenceScore.__dataclass_fields__, "wav"]
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        for result in results:
            for i, (row, wav) in enumerate(zip(result.scores.sentences, result.wavs)):
                writer.writerow({"export": result.label, "index": i, **row.as_row(), "wav": wav})


def summary_markdown(results: list[ExportResult], context: dict[str, str]) -> str:
    lines = ["# Speech evaluation", ""]
    lines += [f"- {key}: {value}" for key, value in context.items()]
    lines += ["", "How to read these numbers: docs/evaluation.md.", "",
              "| export | takes | CER | WER | speaker sim | RTF |", "|---|---|---|---|---|---|"]
    for r in results:
        s = r.scores.scalars
        lines.append(f"| {_md(r.label)} | {len(r.scores.sentences)} | {s['eval/cer']:.3f} | {s['eval/wer']:.3f} | "
                     f"{s['eval/speaker_sim']:.3f} | {s['eval/rtf']:.2f} |")
    for r in results:
        worst = sorted(r.scores.sentences, key=lambda row: row.cer, reverse=True)[:HARDEST]
        lines += ["", f"## Hardest sentences: {_md(r.label)}", "", "| CER | said | heard |", "|---|---|---|"]
        lines += [f"| {row.cer:.3f} | {_md(row.text)} | {_md(row.transcript) or '(nothing)'} |" for row in worst]
    return "\n".join(lines) + "\n"


def plot(path: Path, results: list[ExportResult]) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only; no display on a training node
    import matplotlib.pyplot as plt

    labels = [r.label for r in results]
    fig, axes = plt.subplots(1, len(METRICS), figsize=(3.2 * len(METRICS), 3.4), constrained_layout=True)
    for ax, (key, title, better) in zip(axes, METRICS):
        values = [r.scores.scalars[key] for r in results]
        ax.bar(range(len(values)), values, color=[f"C{i}" for i in range(len(values))])
        ax.set_title(f"{title}\n({better})", fontsize=10)
        if key == "eval/speaker_sim":  # a cosine: on its own scale, not zoomed into noise
            ax.set_ylim(min(0.0, *values), 1.0)
        ax.set_xticks(range(len(values)), [f"{i + 1}" for i in range(len(values))])
        for i, v in enumerate(values):
            ax.annotate(f"{v:.2f}", (i, v), ha="center", va="bottom", fontsize=8)
    fig.legend([plt.Rectangle((0, 0), 1, 1, color=f"C{i}") for i in range(len(labels))],
               [f"{i + 1}: {label}" for i, label in enumerate(labels)], loc="outside lower center", fontsize=8)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(out_dir: Path, results: list[ExportResult], context: dict[str, str]) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out_dir / "sentences.csv", "summary": out_dir / "summary.md", "plot": out_dir / "metrics.png"}
    write_csv(paths["csv"], results)
    paths["summary"].write_text(summary_markdown(results, context), encoding="utf-8")
    plot(paths["plot"], results)
    return paths
