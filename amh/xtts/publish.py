"""Put an export on the Hugging Face Hub with a model card: what it is, what it was trained on, how to use it.

`training_summary(...)` is what train.py (and scripts/export.py) store in the export as
training_summary.json; `model_card(export_dir, repo_id)` renders README.md from it (front matter
through huggingface_hub's `ModelCardData`, so the Hub reads base model, language and licence);
`publish(...)` writes the card into the export and uploads the folder (`create_repo` + `upload_folder`).
"""
from __future__ import annotations

import json
from pathlib import Path

from amh.errors import UserError
from amh.xtts.export import TRAINING_SUMMARY
from amh.xtts.load import check_export

BASE_MODEL = "coqui/XTTS-v2"
# The licence of coqui/XTTS-v2's weights, which every fine-tune inherits (non-commercial use).
BASE_LICENSE = {"license": "other", "license_name": "coqui-public-model-license", "license_link": "https://coqui.ai/cpml"}
LANGUAGE_NAMES = {"am": "Amharic"}


def training_summary(cfg, *, step: int, epoch: int | None = None, best_eval: tuple[float, int] | None = None,
                     last_eval: dict[str, float] | None = None, data=None, checkpoint: str | None = None) -> dict:
    """The facts of a training run a model card needs, as plain JSON data.

    `best_eval`: (eval loss, step), as amh.run.report.EvalHistory.best; `last_eval`: the last eval's
    metrics {"eval/loss": ..., ...}; `data`: the training split's amh.data.filters.FilterStats.
    """
    from amh.config import to_dict

    release = cfg.model.release
    summary = {
        # A local release folder is named as given; the Hub id is the base model of the card.
        "base_model": release if not Path(release).expanduser().is_dir() else BASE_MODEL,
        "base_model_source": release,
        "language": cfg.text.language if cfg.text.language != "amh" else "am",
        "step": int(step),
        "epoch": epoch,
        "checkpoint": checkpoint,
        "data": {"source": cfg.data.source, "path": cfg.data.path, "name": cfg.data.name,
                 "train_split": cfg.data.train_split, "eval_split": cfg.data.eval_split},
        "best_eval": {"loss": best_eval[0], "step": best_eval[1]} if best_eval else None,
        "last_eval": dict(last_eval) if last_eval else None,
        "config": to_dict(cfg),
    }
    if data is not None:
        summary["data"].update({"rows_seen": data.seen, "rows_kept": data.kept,
                                "hours_kept": round(data.kept_seconds / 3600, 3),
                                "dropped": {k: v for k, v in data.counts.items() if v}})
    return summary


def read_summary(export_dir: Path) -> dict:
    path = Path(export_dir) / TRAINING_SUMMARY
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise UserError(f"{path}: not valid JSON ({err}); re-export the checkpoint with scripts/export.py") from None


def model_card(export_dir: str | Path, repo_id: str) -> str:
    """README.md for the Hub: front matter (base model, language, licence, tags) and the training facts."""
    from huggingface_hub import ModelCardData

    export_dir = check_export(export_dir)
    s = read_summary(export_dir)
    frontend = json.loads((export_dir / "frontend.json").read_text(encoding="utf-8"))
    language = s.get("language") or frontend.get("language", "am")
    base = s.get("base_model", BASE_MODEL)
    name = LANGUAGE_NAMES.get(language, language)
    card_data = ModelCardData(language=[language], base_model=base, library_name="coqui", pipeline_tag="text-to-speech",
                              tags=["xtts", "xtts-v2", "text-to-speech", "voice-cloning", "amh-xtts", name.lower()],
                              **BASE_LICENSE)

    lines = ["---", card_data.to_yaml(), "---", "",
             f"# {repo_id.split('/')[-1]}: XTTS v2 fine-tuned on {name}", "",
             f"[{base}](https://huggingface.co/{base})'s GPT fine-tuned on {name} (`{language}`) with "
             "amh-xtts — new text-embedding rows at the pretrained rows' scale, "
             "per-group gradient clipping, a NaN guard. The HiFi-GAN decoder is the base model's, unchanged.", ""]
    lines += ["## Training", ""]
    facts = [("base model", f"`{base}`" + (f" (from `{s['base_model_source']}`)"
                                           if s.get("base_model_source") not in (None, base) else "")),
             ("language", f"{name} (`{language}`)")]
    data = s.get("data") or {}
    if data:
        where = f"{data.get('source')} `{data.get('path')}`" + (f" ({data['name']})" if data.get("name") else "")
        kept = (f", {data['rows_kept']} utterances kept ({data['hours_kept']} h) of {data['rows_seen']} seen"
                if "rows_kept" in data else "")
        facts.append(("data", where + kept))
        if data.get("dropped"):
            facts.append(("dropped", ", ".join(f"{k} {v}" for k, v in data["dropped"].items())))
    if "step" in s:
        facts.append(("optimizer steps", str(s["step"]) + (f" (epoch {s['epoch'] + 1})" if s.get("epoch") is not None else "")))
    cfg = s.get("config") or {}
    if cfg:
        t, o = cfg.get("train", {}), cfg.get("optim", {})
        facts.append(("recipe", f"lr {o.get('lr')} ({o.get('schedule')}), batch {t.get('batch_size')} x grad-accum "
                                f"{t.get('grad_accum')} per process, precision {t.get('precision')}"))
    facts.append(("text front-end", "`" + json.dumps(frontend, ensure_ascii=False, sort_keys=True) + "`"))
    lines += [f"- **{k}**: {v}" for k, v in facts] + [""]

    evals = s.get("last_eval") or {}
    best = s.get("best_eval")
    if evals or best:
        lines += ["### Eval losses", "", "| metric | value |", "|---|---:|"]
        lines += [f"| {k} (step {s.get('step')}) | {v:.4f} |" for k, v in evals.items()]
        if best:
            lines.append(f"| best eval/loss (step {best['step']}) | {best['loss']:.4f} |")
        lines.append("")
    else:
        lines += ["No eval losses were recorded for this export.", ""]

    lines += ["## Use", "", "```python",
              "from huggingface_hub import snapshot_download",
              "import amh  # amh-xtts (`pip install -e .` in its repository): teaches upstream XTTS the language", "",
              f'tts = amh.load_tts(snapshot_download("{repo_id}"))',
              f'tts.tts_to_file(text="ሰላም፣ እንዴት ነህ?", language="{language}", speaker_wav="reference.wav", '
              'file_path="hello.wav")', "```", "",
              "Plain upstream code (`TTS(model_path=...)`) needs the language registered first: "
              f"`amh.xtts.language.register(amh.xtts.language.load_frontend_settings(\"frontend.json\"))`.", "",
              "## Licence", "",
              f"The weights derive from [{BASE_MODEL}](https://huggingface.co/{BASE_MODEL}) and are released under "
              "the same [Coqui Public Model License](https://coqui.ai/cpml) (CPML): non-commercial use only.", ""]
    return "\n".join(lines)


def publish(export_dir: str | Path, repo_id: str, *, private: bool = False, token: str | None = None,
            commit_message: str | None = None) -> str:
    """Write README.md (the model card) into the export and upload the folder to `repo_id`; returns the commit URL."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    export_dir = check_export(export_dir)
    if repo_id.count("/") != 1:
        raise UserError(f"--repo-id {repo_id!r}: expected USER/NAME (or ORG/NAME)")
    (export_dir / "README.md").write_text(model_card(export_dir, repo_id), encoding="utf-8")
    api = HfApi(token=token)
    step = read_summary(export_dir).get("step")
    try:
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        commit = api.upload_folder(repo_id=repo_id, repo_type="model", folder_path=str(export_dir),
                                   commit_message=commit_message or f"amh-xtts export{f' (step {step})' if step else ''}")
    except HfHubHTTPError as err:
        status = err.response.status_code if err.response is not None else None
        if status in (401, 403):
            raise UserError(f"the Hub refused {repo_id} ({status}): log in with `hf auth login` or pass --token "
                            "with a write token for that user or organisation") from None
        raise
    return str(commit.commit_url) if hasattr(commit, "commit_url") else str(commit)
