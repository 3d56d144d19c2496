#!/usr/bin/env python3
"""Export any complete checkpoint of a run as a model upstream XTTS loads (as train.py's export/).

    python scripts/export.py --checkpoint runs/x/checkpoints/step_00004000 [--out DIR]

For a run that was preempted, stopped by the NaN guard, or is still going: the release, vocab and
text front-end come from the run's config.yaml (beside checkpoints/), the GPT weights from the
checkpoint (Accelerate's model.safetensors; under DeepSpeed the ZeRO shards in pytorch_model/,
merged to fp32 with DeepSpeed's zero_to_fp32). The default --out is RUN/exports/step_N.
"""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from amh.run.checkpoint import DAMAGED, HEALTH, IDENTITY, MARKER  # noqa: E402
from amh.config import ConfigError, load_config  # noqa: E402
from amh.errors import UserError  # noqa: E402


def checkpoint_gpt_state(checkpoint: Path) -> dict:
    """The trained module's state dict (keys gpt.*) from an Accelerate checkpoint folder."""
    if (checkpoint / "pytorch_model").is_dir():  # DeepSpeed: Accelerate saves the engine under this tag
        from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

        return get_fp32_state_dict_from_zero_checkpoint(str(checkpoint), tag="pytorch_model")
    if (checkpoint / "model.safetensors").is_file():
        from safetensors.torch import load_file

        return load_file(str(checkpoint / "model.safetensors"))
    if (checkpoint / "pytorch_model.bin").is_file():
        import torch

        return torch.load(checkpoint / "pytorch_model.bin", map_location="cpu", weights_only=True)
    raise UserError(f"{checkpoint}: no model weights (model.safetensors, pytorch_model.bin or a DeepSpeed "
                    "pytorch_model/ folder); is it a checkpoint folder of train.py?")


def export_checkpoint(checkpoint: Path, out: Path | None = None, *, config: Path | None = None,
                      vocab: Path | None = None) -> Path:
    from amh.xtts.export import export_model
    from amh.xtts.identity import _sha256
    from amh.xtts.publish import training_summary
    from amh.xtts.release import number_of_tokens, resolve_release
    from amh.xtts.vocab_choice import choose_vocab
    from train import frontend_settings

    checkpoint = Path(checkpoint)
    if not checkpoint.is_dir():
        raise UserError(f"--checkpoint {checkpoint}: no such folder (checkpoints are OUTPUT_DIR/checkpoints/step_N)")
    if not (checkpoint / MARKER).is_file():
        raise UserError(f"--checkpoint {checkpoint}: not complete (no {MARKER} file: the write was interrupted); "
                        "export an earlier step")
    if (checkpoint / DAMAGED).exists():
        raise UserError(f"--checkpoint {checkpoint}: marked {DAMAGED} "
                        f"({(checkpoint / DAMAGED).read_text().strip()}); export an earlier step")
    run_dir = checkpoint.resolve().parent.parent
    config = Path(config) if config else run_dir / "config.yaml"
    if not config.is_file():
        raise UserError(f"{config}: no run config (train.py writes OUTPUT_DIR/config.yaml); pass --config")
    cfg = load_config(config)
    if vocab is not None:
        cfg.model.vocab = str(vocab)
    release = resolve_release(cfg.model.release, revision=cfg.model.revision, cache_dir=cfg.model.cache_dir)
    vocab = choose_vocab(cfg, release)

    state = checkpoint_gpt_state(checkpoint)
    rows = state["gpt.text_embedding.weight"].shape[0] if "gpt.text_embedding.weight" in state else None
    if rows is not None and rows != number_of_tokens(vocab):
        raise UserError(f"{checkpoint}: the GPT has {rows} text rows but {vocab} has {number_of_tokens(vocab)} "
                        "tokens; pass the run's vocab with --vocab")
    identity = _read_json(checkpoint / IDENTITY)
    if identity.get("vocab_sha256") and identity["vocab_sha256"] != _sha256(vocab):
        raise UserError(f"{checkpoint} was trained with another vocab than {vocab} (identity.json's vocab_sha256 "
                        "differs); pass the run's vocab with --vocab")
    health = _read_json(checkpoint / HEALTH)
    step = int(_read_json(checkpoint / MARKER).get("step", health.get("step", 0)) or 0) or _step_of(checkpoint)
    last_eval = {"eval/loss": health["eval_loss"]} if isinstance(health.get("eval_loss"), (int, float)) else None
    settings = frontend_settings(cfg)
    out = Path(out) if out else run_dir / "exports" / checkpoint.name
    summary = training_summary(cfg, step=step, last_eval=last_eval, checkpoint=str(checkpoint))
    if "train_loss_smoothed" in health:
        summary["train_loss_smoothed"] = health["train_loss_smoothed"]
    return export_model(release_dir=release, vocab=vocab, gpt_state=state, frontend_settings=settings,
                        language=settings.language, out_dir=out, training=summary)


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _step_of(checkpoint: Path) -> int:
    digits = "".join(c for c in checkpoint.name if c.isdigit())
    return int(digits) if digits else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, type=Path, help="a complete checkpoint folder (step_N)")
    parser.add_argument("--out", type=Path, help="export folder to write (default: RUN/exports/step_N)")
    parser.add_argument("--config", type=Path, help="the run's config.yaml (default: beside checkpoints/)")
    parser.add_argument("--vocab", type=Path, help="the vocab.json the run trained with (default: as the run chose it)")
    args = parser.parse_args(argv)
    try:
        out = export_checkpoint(args.checkpoint, args.out, config=args.config, vocab=args.vocab)
    except (UserError, ConfigError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"export written to {out}")
    print(f"speak: {sys.executable} scripts/synthesize.py --export {out} --speaker-wav REFERENCE.wav "
          "--text 'ሰላም፣ እንዴት ነህ?' --out hello.wav")
    return 0


if __name__ == "__main__":
    sys.exit(main())
