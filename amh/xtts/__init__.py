"""The bridge to upstream XTTS v2: everything that touches Coqui's model code lives here.

`release` (find/load a release, resize the text embeddings with matched-std init), `vocab` and
`vocab_choice` (extend and pick vocab.json), `language` and `text_encoder` (teach upstream's
tokenizer the language `am` through amh.text's front-end), `codes` (the frozen DVAE and conditioning
mels), `forward` and `loss` (the GPT's teacher-forced forward and our per-sample loss), `attention`
(the conditioning encoder on PyTorch's fused kernel), `identity`, `export`, `load`, `synthesis`,
`publish` (from a trained GPT to an export that upstream's inference loads, and back to speech).
"""
from amh.xtts.language import register

__all__ = ["register"]
