"""summary.json brought up to date after every validation of the fit: a run in progress, or one killed
before its end, shows how far it got and the best value of the monitored metric so far.

The first validation (the sanity check, unless ``trainer.num_sanity_val_steps=0``) also checks that the
model logs the monitored metric: checkpoints, early stopping and sweeps rank by it, and Lightning would
find it missing only at the end of the first epoch.
"""

import pytorch_lightning as pl


class MonitoredMetricMissing(KeyError):
    """The model does not log ``monitor.metric`` in validation; the message lists what it logs."""

    def __str__(self) -> str:
        return str(self.args[0])


class RunProgress(pl.Callback):
    def __init__(self, record):
        self.record = record  # runs.RunRecord
        self.metric = record.monitor["metric"]
        self._metric_seen = False

    def on_validation_end(self, trainer, pl_module) -> None:
        if not self._metric_seen and sum(trainer.num_val_batches):
            logged = sorted(trainer.callback_metrics)
            if self.metric not in logged:
                raise MonitoredMetricMissing(
                    f"monitor.metric={self.metric}, but the model logs {', '.join(logged) or 'nothing'} in "
                    "validation. Set monitor.metric to one of them (and monitor.mode to min or max to match), or "
                    f"log {self.metric} in validation_step."
                )
            self._metric_seen = True
        if not trainer.sanity_checking:
            self.record.record_validation(trainer)
