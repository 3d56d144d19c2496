"""A training run's life around the step: its checkpoints (complete, healthy, resumable, rotated),
the lock on its folder, the launcher it lives under, and what it tells the user.

`checkpoint` (write, verify, mark damaged, resume, keep the best), `run_lock` (one run per output
folder), `launcher_watch` (stop when `accelerate launch` or srun is gone), `report` (start-up
summary, progress lines with ETA, eval history, the closing summary), `logs` (console and file
logging, one line per user error).
"""
