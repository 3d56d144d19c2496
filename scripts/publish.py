#!/usr/bin/env python3
"""Push an export to the Hugging Face Hub with a model card (base model, language, data, steps, eval losses, licence).

    python scripts/publish.py --export runs/amharic_110h/export --repo-id USER/xtts-v2-amharic [--private]
    python scripts/publish.py --export runs/demo/export --repo-id USER/NAME --card-only   # write README.md, no upload

The token is --token, else the one `hf auth login` stored (or HF_TOKEN).
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from amh.errors import UserError  # noqa: E402
from amh.xtts.publish import model_card, publish  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--export", required=True, type=Path, help="an export folder (train.py's OUTPUT/export or scripts/export.py's)")
    parser.add_argument("--repo-id", required=True, help="USER/NAME or ORG/NAME on the Hub")
    parser.add_argument("--private", action="store_true", help="create the repository as private")
    parser.add_argument("--token", help="a Hub write token (default: the stored login)")
    parser.add_argument("--card-only", action="store_true", help="write EXPORT/README.md and stop")
    args = parser.parse_args(argv)
    try:
        if args.card_only:
            card = args.export / "README.md"
            card.write_text(model_card(args.export, args.repo_id), encoding="utf-8")
            print(f"model card written to {card}")
            return 0
        url = publish(args.export, args.repo_id, private=args.private, token=args.token)
    except (UserError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"published {args.export} to https://huggingface.co/{args.repo_id} ({url})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
