"""The harness: everything between ``train.py`` and your model and data. You need not open it.

Your rooms are ``models/`` (LightningModules and the networks they build) and ``data/``
(LightningDataModules), with their configs in ``configs/model`` and ``configs/data``. What the
harness asks of them is written in ``contract.py``; the rest is small modules, one job each:
run folders and ``summary.json`` (``runs``), where a run came from (``provenance``), a log per
process (``rank_logs``), checks of the config before a run (``checks``), loggers and callbacks
from their config groups (``components``, ``callbacks/``), checkpoints that survive kills
(``checkpointing``), which checkpoint a run resumes from (``resume``), SLURM requeue
(``requeue``), sweeps (``sweeps``), secrets (``secret_env``), ranks and launchers
(``distributed``), exact evaluation (``evaluation``), finished runs read back and their
predictions written for ``evaluate.py`` (``finished_runs``, ``predictions``).
"""
