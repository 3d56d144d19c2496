"""Measuring our loop: the step benchmark against the Coqui recipe on identical work, and the
stability study of the new vocabulary rows' init, per-group clipping and upstream's loss.

The command lines are scripts/bench_step.py and scripts/stability_study.py; the parts live here.
The step benchmark: `step_inputs` (the release, corpus, extended vocab and front-end both loops
share, and the precomputed DVAE codes), `step_loops` (our loop and the recipe's, the work a stretch
of steps did, and timing it), `step_report` (rates, MFU and the table). The stability study:
`stability` (a variant of the seed's recipe trained and its per-step history), `clip_probe` (what
per-group clipping changes in AdamW's updates, on one run's true gradients), `stability_report`
(the study's table, findings, plots and clip-under-AdamW section).
"""
