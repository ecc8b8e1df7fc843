"""Bookkeeping (loggers, learning-rate monitors, plots) that fails is reported; training goes on.

A logger whose folder vanished or a plotting callback with a bug would otherwise end a run of
days at its next log call. The methods of such objects are wrapped in place, so ``isinstance``
checks (Lightning's and ours) still see the original classes. Callbacks that change training
(checkpointing, early stopping, the loss check) are never wrapped: their failures must stop it.
"""

import functools
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

LOGGER_METHODS = ("log_metrics", "log_hyperparams", "log_graph", "save", "finalize", "after_save_checkpoint")


def is_bookkeeping(callback: Any) -> bool:
    """Lightning's monitors, and any callback class that declares ``bookkeeping = True``."""
    from pytorch_lightning.callbacks import DeviceStatsMonitor, LearningRateMonitor

    return isinstance(callback, LearningRateMonitor | DeviceStatsMonitor) or getattr(callback, "bookkeeping", False)


def callback_hooks(callback: Any) -> list[str]:
    """The hooks that ``callback``'s class implements itself."""
    from pytorch_lightning import Callback

    names = [name for name in vars(Callback) if name.startswith("on_") or name in ("setup", "teardown")]
    return [name for name in names if getattr(type(callback), name) is not getattr(Callback, name)]


class Bookkeeping:
    """Guards objects' methods; ``errors`` tallies the failures per ``<name>.<method>``.

    ``on_error`` is called with the tally after each new kind of failure (e.g. to put it in
    summary.json); each kind is logged once, with its traceback.
    """

    def __init__(self, on_error: Callable[[dict], None] | None = None):
        self.errors: dict[str, dict[str, Any]] = {}
        self.on_error = on_error

    def guard(self, obj: Any, name: str, methods: tuple[str, ...] | list[str]) -> Any:
        for method in methods:
            original = getattr(obj, method, None)
            if callable(original):
                setattr(obj, method, self._guarded(original, f"{name}.{method}"))
        return obj

    def guard_logger(self, logger: Any, name: str) -> Any:
        return self.guard(logger, name, LOGGER_METHODS)

    def guard_callback(self, callback: Any, name: str) -> Any:
        return self.guard(callback, name, callback_hooks(callback))

    def _guarded(self, function: Callable, where: str) -> Callable:
        @functools.wraps(function)
        def guarded(*args, **kwargs):
            try:
                return function(*args, **kwargs)
            except Exception as error:
                self._report(where, error)
                return None

        return guarded

    def _report(self, where: str, error: Exception) -> None:
        entry = self.errors.setdefault(where, {"count": 0, "error": f"{type(error).__name__}: {error}"})
        entry["count"] += 1
        if entry["count"] == 1:
            log.error("%s failed; training goes on (further failures are only counted).", where, exc_info=error)
            if self.on_error is not None:
                self.on_error(self.errors)
