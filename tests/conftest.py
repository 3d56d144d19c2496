"""Session fixtures: the offline tiny XTTS v2 release and the Amharic demo corpus.

Both are cached under build/fixtures/ (override with AMH_FIXTURES_DIR) so that repeated test runs
and `make demo` share them; each maker is idempotent through a stamp file.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(os.environ.get("AMH_FIXTURES_DIR", REPO / "build" / "fixtures"))


@pytest.fixture(scope="session")
def tiny_release() -> Path:
    from amh.fixtures.tiny_xtts import make_tiny_release

    return make_tiny_release(FIXTURES / "tiny_xtts")


@pytest.fixture(scope="session")
def demo_corpus() -> Path:
    from amh.fixtures.demo_corpus import make_demo_corpus

    return make_demo_corpus(FIXTURES / "demo_corpus")


@pytest.fixture(scope="session")
def demo_vocab(tiny_release, demo_corpus) -> Path:
    """The tiny release's vocab extended (chars mode) with every text of the demo corpus."""
    import csv

    from amh.text.frontend import FrontendSettings
    from amh.xtts.vocab import extend_vocab

    out = FIXTURES / "demo_vocab_chars.json"
    texts = []
    for name in ("metadata_train.csv", "metadata_eval.csv"):
        with open(demo_corpus / "ready" / name, encoding="utf-8", newline="") as fh:
            texts += [row["text"] for row in csv.DictReader(fh, delimiter="|")]
    extend_vocab(tiny_release / "vocab.json", texts, out, mode="chars", frontend=FrontendSettings())
    return out


@pytest.fixture(scope="session")
def tiny_mms() -> Path:
    """A tiny random recogniser in facebook/mms-1b-all's layout (the demo config's eval.asr_model)."""
    from amh.fixtures.tiny_mms import make_tiny_mms

    return make_tiny_mms(FIXTURES / "tiny_mms")
