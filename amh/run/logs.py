"""The log a run prints: our lines with a timestamp, third-party lines once (not once per rank), and
the known harmless warnings of a normal run silenced with the reason written here.

`setup_logging(is_main_process)` replaces train.py's `logging.basicConfig`; call it right after the
`Accelerator` is made (DeepSpeed, when used, is imported by then; otherwise it is imported later).

What a normal run printed before, and what happens to it now:

- transformers: "Model config: bos_token_id must be `None` or an integer within the vocabulary
  (between 0 and N), got 50256" (and eos_token_id), twice per model built. Upstream XTTS builds its
  inference `GPT2Config` with the audio-code vocabulary but GPT-2's default bos/eos id 50256; XTTS
  never reads those ids (generation is called with its own start/stop audio tokens). Dropped by a
  filter that matches exactly this message with 50256, so any other token-id warning still shows.
- DeepSpeed: "Setting accelerator to CPU. If you have GPU or other accelerator, we were unable to
  detect it." Accelerate imports DeepSpeed whenever it is installed (`unwrap_model` checks for a
  DeepSpeed engine), and DeepSpeed guesses the accelerator at import. On a machine without CUDA
  `DS_ACCELERATOR=cpu` (unless already set) gives it the answer, so it has nothing to warn about.
- Accelerate: "[RANK 0] Model weights / Optimizer state / Random states saved in
  .../.tmp-step_N/..." per checkpoint (the temporary folder `amh.run.checkpoint` renames afterwards):
  the `accelerate.checkpointing` and `accelerate.accelerator` loggers go to WARNING; train.py logs
  the final checkpoint path itself.
- `accelerate launch`'s "--num_cpu_threads_per_process was set to N" notice is printed by the
  launcher before train.py starts; the Makefile's demo line passes the flag (see Makefile).
- Every rank: third-party loggers (and Python warnings) only on the main process, at WARNING; the
  other ranks keep errors. Our own `amh.*` loggers keep WARNING on every rank, since a rank's data
  warnings are about its own shard.
"""
from __future__ import annotations

import logging
import os
import re
import warnings

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Libraries whose loggers carry their own handler or level (set here explicitly) or propagate to root.
THIRD_PARTY = ("accelerate", "transformers", "datasets", "huggingface_hub", "DeepSpeed", "deepspeed", "TTS",
               "torch", "urllib3", "fsspec", "filelock", "numba", "matplotlib")
QUIET = {"accelerate.checkpointing": logging.WARNING, "accelerate.accelerator": logging.WARNING}

# transformers' validate_token_ids for XTTS's inference GPT2Config (see the module docstring).
_GPT2_DEFAULT_SPECIAL_ID = re.compile(r"^Model config: (bos|eos)_token_id must be `None` or an integer within the "
                                      r"vocabulary \(between 0 and \d+\), got 50256\.")


class DropMessages(logging.Filter):
    """Drops records whose message matches `pattern`; everything else passes."""

    def __init__(self, pattern: re.Pattern):
        super().__init__()
        self.pattern = pattern

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.pattern.search(record.getMessage())


def setup_logging(is_main_process: bool, *, cuda_available: bool | None = None, level: int = logging.INFO) -> None:
    """Configure the process's logging (idempotent)."""
    import torch

    if cuda_available is None:
        cuda_available = torch.cuda.is_available()
    if not cuda_available:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    logging.basicConfig(level=level if is_main_process else logging.WARNING, format=FORMAT, force=True)
    logging.getLogger("amh").setLevel(level if is_main_process else logging.WARNING)
    third_party = logging.WARNING if is_main_process else logging.ERROR
    for name in THIRD_PARTY:
        logging.getLogger(name).setLevel(third_party)
    if is_main_process:
        for name, quiet in QUIET.items():
            logging.getLogger(name).setLevel(quiet)
    _quiet_transformers(is_main_process)
    if not is_main_process:
        # The main process shows each library warning; N copies of it add nothing.
        warnings.simplefilter("ignore")
    gpt2_filter = logging.getLogger("transformers.configuration_utils")
    if not any(isinstance(f, DropMessages) for f in gpt2_filter.filters):
        gpt2_filter.addFilter(DropMessages(_GPT2_DEFAULT_SPECIAL_ID))


def _quiet_transformers(is_main_process: bool) -> None:
    """transformers and datasets keep their own handler and level; set them through their APIs."""
    try:
        import datasets
        import transformers
    except ImportError:  # both are dependencies; a partial install should still log
        return
    verbosity = logging.WARNING if is_main_process else logging.ERROR
    transformers.logging.set_verbosity(verbosity)
    datasets.logging.set_verbosity(verbosity)
    if not is_main_process:
        datasets.disable_progress_bars()
