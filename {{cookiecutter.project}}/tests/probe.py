"""A digits data module that reports what each rank of a distributed run sees.

Used as ``data._target_=probe.ProbedDigits`` (with ``tests/`` on PYTHONPATH) by the tests that
start real processes: every ``prepare_data`` call leaves a file in ``$PROBE_DIR``, and every
rank writes its view of the run (rank, run folder, overrides, hyperparameters, validation
examples, and at the end the indices of every training batch it drew) to
``$PROBE_DIR/rank<global rank>.json``.
"""

import json
import os
import uuid
from pathlib import Path

from {{ cookiecutter.package_name }}.data import DigitsDataModule


class ProbedDigits(DigitsDataModule):
    def prepare_data(self) -> None:
        (Path(os.environ["PROBE_DIR"]) / f"prepare_data-{uuid.uuid4().hex}").touch()

    def setup(self, stage: str | None = None) -> None:
        from hydra.core.hydra_config import HydraConfig

        if self.datasets:
            return
        super().setup(stage)
        self.train_batches = []
        train = self.datasets["train"]
        draw = train.__getitems__

        def drawn(indices):
            self.train_batches.append([int(index) for index in indices])
            return draw(indices)

        train.__getitems__ = drawn
        trainer = self.trainer
        hydra = HydraConfig.get()
        self.view = {
            "global_rank": trainer.global_rank,
            "node_rank": trainer.node_rank,
            "world_size": trainer.world_size,
            "run_dir": hydra.runtime.output_dir,
            "overrides": list(hydra.overrides.task),
            "data": dict(self.hparams),
            "model": trainer.lightning_module.hparams,
            "val_indices": list(self.val_dataloader().sampler),
        }
        self._write()

    def teardown(self, stage: str) -> None:
        self.view["train_batches"] = self.train_batches
        self._write()

    def _write(self) -> None:
        path = Path(os.environ["PROBE_DIR"]) / f"rank{self.view['global_rank']}.json"
        path.write_text(json.dumps(self.view, default=str), encoding="utf-8")
