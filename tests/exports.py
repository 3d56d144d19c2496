"""Helper for tests that need an export without training: the tiny release's own GPT, exported."""
from __future__ import annotations

from pathlib import Path


def make_export(tiny_release: Path, vocab: Path, out: Path, training: dict | None = None) -> Path:
    """`export_model` on the tiny release's GPT sized for `vocab` (what train.py exports after 0 steps)."""
    from amh.text.frontend import FrontendSettings
    from amh.xtts.export import export_model
    from amh.xtts.release import build_xtts

    xtts, _ = build_xtts(tiny_release, vocab, seed=0)
    gpt_state = {f"gpt.{k}": v for k, v in xtts.gpt.state_dict().items()}
    return export_model(release_dir=tiny_release, vocab=vocab, gpt_state=gpt_state, frontend_settings=FrontendSettings(),
                        language="am", out_dir=out, training=training)
