"""amh.run.logs.setup_logging: the warnings of a normal run are gone (each for its stated reason), the
rest still shows, and third-party lines come from the main process only. Each case runs in a fresh
interpreter, as a run does (libraries log some things once per process)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def run(body: str, *, setup: str | None, tmp_path: Path) -> str:
    prelude = ("import logging\nlogging.basicConfig(level=logging.INFO)\n" if setup is None else
               f"from amh.run.logs import setup_logging\nsetup_logging({setup})\n")
    code = prelude + textwrap.dedent(body)
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(REPO)}
    env.pop("DS_ACCELERATOR", None)
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env=env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout + proc.stderr


GPT2 = """
from transformers import GPT2Config
GPT2Config(vocab_size=256)                   # as XTTS's inference GPT: bos/eos 50256 outside the vocab
GPT2Config(vocab_size=256, pad_token_id=999)  # any other bad token id must still be reported
"""


def test_gpt2_default_bos_eos_warning_is_dropped_and_others_kept(tmp_path):
    before = run(GPT2, setup=None, tmp_path=tmp_path)
    assert "bos_token_id must be `None`" in before and "got 50256" in before
    after = run(GPT2, setup="True", tmp_path=tmp_path)
    assert "got 50256" not in after
    assert "pad_token_id must be `None` or an integer within the vocabulary (between 0 and 255), got 999" in after


DEEPSPEED = """
import torch
from accelerate import Accelerator
acc = Accelerator(cpu=True)
model, opt = acc.prepare(torch.nn.Linear(2, 2), torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=0.1))
acc.unwrap_model(model)   # imports DeepSpeed when it is installed (the engine check)
acc.save_state("ckpt")
"""


@pytest.mark.slow
def test_deepspeed_accelerator_line_and_checkpoint_info_lines_are_gone(tmp_path):
    pytest.importorskip("deepspeed")
    before = run(DEEPSPEED, setup=None, tmp_path=tmp_path)
    assert "Setting accelerator to CPU" in before
    assert "Model weights saved in" in before and "Random states saved in" in before
    after = run(DEEPSPEED, setup="True", tmp_path=tmp_path)
    assert "Setting accelerator to CPU" not in after
    assert "saved in" not in after
    assert (tmp_path / "ckpt" / "model.safetensors").is_file()  # the checkpoint itself is written


RANKS = """
import logging, warnings
logging.getLogger("accelerate.utils").warning("third-party warning")
logging.getLogger("datasets.builder").warning("datasets warning")
logging.getLogger("amh.data.pipeline").warning("our own warning")
logging.getLogger("amh.train").info("our own info")
warnings.warn("a library UserWarning")
"""


def test_other_ranks_keep_only_our_warnings(tmp_path):
    main = run(RANKS, setup="True", tmp_path=tmp_path)
    for line in ("third-party warning", "datasets warning", "our own warning", "our own info", "a library UserWarning"):
        assert line in main, line
    other = run(RANKS, setup="False", tmp_path=tmp_path)
    assert "our own warning" in other
    for line in ("third-party warning", "datasets warning", "our own info", "a library UserWarning"):
        assert line not in other, line
