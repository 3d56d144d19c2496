"""Does the model speak? Score synthesised speech: ASR character/word error rate against the text,
speaker similarity to the reference voice, and the real-time factor of synthesis.

`score.SpeechScorer` (built from `amh.config.EvalConfig`) turns `score.Take`s into `eval/cer`,
`eval/wer`, `eval/speaker_sim`, `eval/rtf` and per-sentence rows; `tensorboard.log_takes` logs the
clips with what was said and heard; `report` writes scripts/evaluate.py's comparison. How to read the
numbers, and which ASR model is the default and why: docs/evaluation.md.
"""
