"""Write an export that upstream XTTS inference loads unchanged.

`OUT/model.pth` = {"config": dict, "model": gpt.* (fine-tuned) + hifigan_decoder.* and mel_stats
(from the base release)}, `config.json` (architecture unchanged, `languages` gains the new code),
the extended `vocab.json`, `frontend.json` (the text front-end settings used in training, so
inference applies the same text processing) and, when given, `training_summary.json` (base model,
data, steps, eval losses: what scripts/publish.py puts on the model card). Written to a temp folder
and renamed, like checkpoints.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch

from amh.xtts.release import load_checkpoint_state

TRAINING_SUMMARY = "training_summary.json"


def export_model(*, release_dir: Path, vocab: Path, gpt_state: dict[str, torch.Tensor], frontend_settings,
                 language: str, out_dir: Path, training: dict | None = None) -> Path:
    from amh.xtts.language import save_frontend_settings

    out_dir = Path(out_dir)
    tmp = out_dir.parent / f".tmp-{out_dir.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)

    base = load_checkpoint_state(release_dir / "model.pth")
    state = {k: v for k, v in base.items() if not k.startswith("gpt.")}
    for key, value in gpt_state.items():
        if not key.startswith("gpt."):
            raise ValueError(f"export: GPT state key {key!r} lacks the 'gpt.' prefix")
        state[key] = value.detach().to("cpu", torch.float32)
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()}
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise ValueError(f"export: non-finite weights in {bad[:5]}; refusing to write a broken model")

    config = json.loads((release_dir / "config.json").read_text(encoding="utf-8"))
    config["model_args"]["gpt_number_text_tokens"] = int(gpt_state["gpt.text_embedding.weight"].shape[0])
    config["model_args"]["tokenizer_file"] = ""
    if language not in config.get("languages", []):
        config["languages"] = list(config.get("languages", [])) + [language]

    torch.save({"config": config, "model": state}, tmp / "model.pth")
    (tmp / "config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False), encoding="utf-8")
    shutil.copyfile(vocab, tmp / "vocab.json")
    save_frontend_settings(frontend_settings, tmp / "frontend.json")
    if training is not None:
        (tmp / TRAINING_SUMMARY).write_text(json.dumps(training, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)
    return out_dir
