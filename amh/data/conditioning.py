"""Which stretch of audio conditions the GPT for a sample (the speaker prompt).

Upstream v2 trains with "masking": the prompt is a random 3-6 s slice of the target utterance
itself, and the loss must ignore the codes under that slice, so the span is returned
(research notes §2, `get_prompt_slice`). The alternative is a slice of another utterance of the
same speaker, which needs no loss mask (span -1, -1).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

NO_SPAN = (-1, -1)


def prompt_span(n_samples: int, min_len: int, max_len: int, rng: np.random.Generator | None) -> tuple[int, int]:
    """[start, end) of the prompt inside a clip of `n_samples`, as upstream's `get_prompt_slice`:
    length uniform in [min_len, max_len] (eval, rng=None: the midpoint); a clip shorter than that
    gives half its length; the start is uniform (eval: 0)."""
    length = (min_len + max_len) // 2 if rng is None else int(rng.integers(min_len, max_len + 1))
    if n_samples < length:
        length = n_samples // 2
    start = 0 if rng is None else int(rng.integers(0, n_samples - length + 1))
    return start, start + length


def pick_reference(candidates: Sequence, rng: np.random.Generator | None):
    """One of the other utterances of the speaker (eval: the first), or None when there is none."""
    if not len(candidates):
        return None
    return candidates[0 if rng is None else int(rng.integers(0, len(candidates)))]
