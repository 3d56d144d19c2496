"""Log scored takes to TensorBoard: each clip with what it was asked to say and what the ASR heard.

torch's `SummaryWriter.add_audio` has no text argument, so the audio summary is built with torch's
own `summary.audio` and given a Markdown description, which TensorBoard's audio dashboard shows
under the clip. A table of every sentence goes to the Text dashboard as well.
"""
from __future__ import annotations

import numpy as np
from torch.utils.tensorboard import summary

from amh.eval.score import SpeechScores, Take


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def describe(row) -> str:
    """The Markdown shown under a clip."""
    return (f"**said:** {row.text}  \n**heard:** {row.transcript or '(nothing)'}  \n"
            f"CER {row.cer:.3f} · WER {row.wer:.3f} · speaker sim {row.speaker_sim:.3f} · RTF {row.rtf:.2f}")


def log_takes(writer, takes: list[Take], scores: SpeechScores, step: int, prefix: str = "eval_speech") -> None:
    """Audio `PREFIX/<speaker>/<i>` (i-th sentence of that speaker) with its description, and the text
    table `PREFIX/transcripts`."""
    file_writer = writer._get_file_writer()  # the public add_audio cannot attach a description
    counts: dict[str, int] = {}
    for take, row in zip(takes, scores.sentences):
        speaker = take.speaker or "speaker"
        i = counts[speaker] = counts.get(speaker, -1) + 1  # the sentence's place in its speaker's list: a stable tag
        tag = f"{prefix}/{speaker}/{i}"
        audio = summary.audio(tag, np.clip(take.wav, -1.0, 1.0), sample_rate=take.sample_rate)
        audio.value[0].metadata.summary_description = describe(row)
        file_writer.add_summary(audio, step)
    lines = ["| speaker | said | heard | CER | WER | speaker sim | RTF |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {_cell(r.speaker)} | {_cell(r.text)} | {_cell(r.transcript)} | {r.cer:.3f} | {r.wer:.3f} | "
              f"{r.speaker_sim:.3f} | {r.rtf:.2f} |" for r in scores.sentences]
    writer.add_text(f"{prefix}/transcripts", "\n".join(lines), step)
