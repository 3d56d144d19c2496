"""scripts/gpu_check.sh --dry-run: the one-call GPU check's code paths on CPU (tiny release, a few steps)."""
from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path

import pytest

from conftest import FIXTURES

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_dry_run_writes_the_table_with_every_part(tmp_path, tiny_release, demo_corpus):
    from amh.fixtures.bench_release import make_bench_release

    make_bench_release(FIXTURES / "bench_tiny", "tiny")  # built once, as the check's fixture step would
    env = {**os.environ, "AMH_FIXTURES_DIR": str(FIXTURES), "PYTHON": str(REPO / ".venv" / "bin" / "python")}
    proc = subprocess.run(["bash", str(REPO / "scripts" / "gpu_check.sh"), "--dry-run", "--out", str(tmp_path)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    result = json.loads((tmp_path / "gpu_check.json").read_text())
    assert result["failures"] == []
    rows = result["rows"]
    ok = [r for r in rows if r["status"] == "ok"]
    # the batch sweep (2, 4), then cached / second precision / checkpointing at 2 and 4, then ckpt at 8
    assert [(r["batch"], r["codes"], r["ckpt"]) for r in rows] == [
        (2, "online", False), (4, "online", False),
        (2, "cached", False), (2, "online", False), (2, "online", True),
        (4, "cached", False), (4, "online", False), (4, "online", True), (8, "online", True)]
    assert len(ok) == len(rows) and all(r["finite"] and r["steps_s"] > 0 and r["tokens_s"] > 0 for r in ok)
    assert all(math.isclose(r["tokens_s"] / r["steps_s"], r["batch"] * (22 + 24), rel_tol=1e-9) for r in ok)
    assert result["info"]["largest_batch"] == 4
    assert result["ratio"]["status"] == "ok" and set(result["ratio"]["ratio"]) == {"cached", "online"}
    assert all(v > 0 for v in result["ratio"]["ratio"].values())
    assert [s["status"] for s in result["stability"].values()] == ["ok", "ok"]
    assert all(s["steps"] == 3 for s in result["stability"].values())
    table = (tmp_path / "gpu_check.md").read_text()
    assert "DRY RUN" in table and "| B | precision |" in table and "| matched |" in table and "| old 1e-4 |" in table
