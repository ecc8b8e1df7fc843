"""Time limits and pre-emption: every rank stops at the same step boundary, after one checkpoint.

SLURM sends SIGUSR1 ``signal_delay_s`` before a job's time limit (``--signal=USR1@<s>``) and
SIGTERM when it pre-empts or cancels a job, to every rank, each at its own moment of training.
A rank that saved or synchronised inside its signal handler would wait in a collective for ranks
still busy in another one (a gradient all-reduce): the job hangs and burns its allocation. So
the handler only notes the signal; at the next step boundary (after a training batch, at the
end of a validation) the ranks agree by a max all-reduce of what each noted, then all save one
checkpoint together and stop:

- SIGUSR1 under SLURM: ``hpc_ckpt_<n>.ckpt`` in the run folder, rank 0 runs
  ``scontrol requeue``; status ``requeued``, exit status 0. The job starts again with the same
  id, so in the same run folder, and continues from that checkpoint (requeue.py).
- SIGTERM, SIGHUP (a closed terminal, some schedulers), a first Ctrl-C (SIGINT), or SIGUSR1
  outside SLURM: the same checkpoint, no requeue (``scancel`` means stop; a site that pre-empts
  with ``PreemptMode=REQUEUE`` requeues the job itself, which then also continues from it);
  status ``interrupted``, exit status 128 + the signal's number. A second Ctrl-C, or one
  before or after training, stops at once (KeyboardInterrupt, no checkpoint).

A signal that lands during validation or during a checkpoint save is handled at the next
boundary; one that lands after training (during the test, or later) is ignored: the results
are saved, the job ends normally. Lightning's own SLURM handlers (save and requeue
inside the handler, SIGTERM as an exception at whatever point each rank is) are kept out.
"""

import logging
import os
import signal
import subprocess

import torch
from pytorch_lightning.callbacks import Checkpoint
from pytorch_lightning.trainer.states import TrainerFn

from .requeue import next_hpc_checkpoint

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGUSR1, signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
# Agreed by a max over the ranks: a stop outranks a requeue.
_ACTIONS = {0: None, 1: signal.SIGUSR1, 2: signal.SIGHUP, 3: signal.SIGINT, 4: signal.SIGTERM}
_CODES = {signum: code for code, signum in _ACTIONS.items()}

_received: list[int] = []
# Set by Preemption while batches are trained: only then does a step boundary come to act on a Ctrl-C.
_training = False


def _note(signum: int, _frame) -> None:
    # Only a note: anything collective here would run at a different moment on each rank.
    if signum == signal.SIGINT:
        if not _training or signum in _received:
            raise KeyboardInterrupt
        log.warning("Ctrl-C: stopping at the next step; press again to stop now")
    _received.append(signum)


def install() -> None:
    """Note SIGUSR1, SIGTERM, SIGHUP and SIGINT from now until the process ends, so that none kills it.

    Kept after training: a time-limit signal that arrives during the test, or after the results
    are written, must not turn a finished job into a failed one.
    """
    for signum in SIGNALS:
        signal.signal(signum, _note)


def stand_down() -> None:
    """After the run: SIGUSR1 (a time limit near) finds nothing left to save, and is ignored.

    Ignored rather than noted, because Python puts back the default action, ending the process,
    for every signal that has a Python handler as it shuts down: a time limit signalled then
    would fail a finished job.
    """
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)


def received() -> int | None:
    """The signal this process should act on: a stop (SIGTERM before SIGINT before SIGHUP) if one came,
    else SIGUSR1, else None."""
    return max(_received, key=lambda signum: _CODES[signum], default=None)


def under_slurm() -> bool:
    return "SLURM_JOB_ID" in os.environ


def slurm_job_id() -> str:
    if array_job := os.environ.get("SLURM_ARRAY_JOB_ID"):
        return f"{array_job}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    return os.environ["SLURM_JOB_ID"]


class Preempted(BaseException):
    """Training stopped on a signal after a checkpoint; a BaseException so that a sweep does not
    take it for a failed job and go on in this process."""

    def __init__(self, signum: int, requeued: bool, checkpoint: str):
        self.signum = signum
        self.requeued = requeued
        self.checkpoint = checkpoint
        action = "requeued" if requeued else "stopped"
        super().__init__(f"{signal.Signals(signum).name}: {action} after saving {checkpoint}")

    @property
    def exit_code(self) -> int:
        # 0 lets SLURM requeue cleanly; 128 + N is what a shell reports for a process ended by signal N.
        return 0 if self.requeued else 128 + self.signum


class Preemption(Checkpoint):
    """Acts on the signals noted by ``install`` at step boundaries, on every rank at once.

    A ``Checkpoint`` so that Lightning runs it after ModelCheckpoint: a validation's checkpoints
    are written, and in the requeue checkpoint's callback states, before the run stops.
    """

    def setup(self, trainer, pl_module, stage: str) -> None:
        # Lightning registers its SLURM SIGUSR1 handler only where none is set: install() has set one.
        environment = getattr(trainer.strategy, "cluster_environment", None)
        if hasattr(environment, "auto_requeue"):
            environment.auto_requeue = False
        install()

    # Lightning sets its SIGTERM handler at the start of every fit, validate and test (and puts
    # back ours at their end); these hooks take SIGTERM back before the first batch.
    def on_sanity_check_start(self, trainer, pl_module) -> None:
        install()

    def on_train_start(self, trainer, pl_module) -> None:
        global _training
        install()
        _training = True

    def on_train_end(self, trainer, pl_module) -> None:
        global _training
        _training = False

    def on_exception(self, trainer, pl_module, exception) -> None:
        global _training
        _training = False

    def on_validation_start(self, trainer, pl_module) -> None:
        install()

    def on_test_start(self, trainer, pl_module) -> None:
        install()

    # The boundaries. After an epoch's last batch come its validation and its checkpoints: a checkpoint
    # taken there would resume without them, so that signal waits for the end of the epoch.
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not _last_batch(trainer):
            self._act(trainer)

    def on_validation_end(self, trainer, pl_module) -> None:
        # A validation within the epoch (val_check_interval < 1); the one at its end waits as well.
        if trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking and not _last_batch(trainer):
            self._act(trainer)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._act(trainer)

    def _act(self, trainer) -> None:
        # In a single process: a look at a list, no tensor, no device sync (about 1 us a step).
        code = _CODES[received()]
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            # One all-reduce of one number per step: every rank reaches each boundary, so none waits there
            # alone. On GPUs reading it back is a host sync per step; checking only every N steps would
            # delay the stop by up to N steps for little gain beside the step's gradient all-reduce.
            noted = torch.tensor(code, device=trainer.strategy.root_device)
            torch.distributed.all_reduce(noted, op=torch.distributed.ReduceOp.MAX)
            code = int(noted)
        signum = _ACTIONS[code]
        if signum is None:
            return
        requeue = signum == signal.SIGUSR1 and under_slurm()
        checkpoint = str(next_hpc_checkpoint(trainer.default_root_dir))
        log.warning(
            "%s at step %d: saving %s, then %s.",
            signal.Signals(signum).name,
            trainer.global_step,
            checkpoint,
            "requeueing the job" if requeue else "stopping",
        )
        trainer.save_checkpoint(checkpoint)
        if requeue and trainer.is_global_zero:
            requeue = requeue_job()
        raise Preempted(signum, requeue, checkpoint)


def _last_batch(trainer) -> bool:
    return trainer.fit_loop.epoch_loop.batch_progress.is_last_batch


def requeue_job() -> bool:
    job_id = slurm_job_id()
    result = subprocess.run(["scontrol", "requeue", job_id], capture_output=True, text=True)
    if result.returncode != 0:
        # The checkpoint is saved: the job resubmitted with the same RUN_ID continues from it.
        log.error("scontrol requeue %s failed: %s", job_id, (result.stderr or result.stdout).strip())
        return False
    log.info("Requeued SLURM job %s.", job_id)
    return True
