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
