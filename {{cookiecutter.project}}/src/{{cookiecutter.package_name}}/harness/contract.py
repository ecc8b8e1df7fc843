"""What the harness needs from your LightningModule and LightningDataModule, and how it builds them.

The README's "Your own model and data" says the same, as steps. Required, and nothing more:

1. ``model._target_`` names a ``pytorch_lightning.LightningModule`` and ``data._target_`` a
   ``pytorch_lightning.LightningDataModule``. They need no base class, mixin or method of ours.
2. Their ``__init__`` arguments come from the config, as plain Python: Hydra's lists and dicts
   arrive as ``list`` and ``dict`` (``_convert_="all"``), so ``self.save_hyperparameters()``
   stores values that load under ``torch.load(weights_only=True)``. An argument that still
   cannot be stored that way (an object, a function) stops the run before the first step,
   with its name and the fix.
3. The module logs the metric named by ``monitor.metric`` (``val/loss`` by default) during
   validation; checkpoints, early stopping and sweeps rank runs by it. Validation and test
   loaders do not shuffle.

Optional:

- What the data tells the model (image shape, number of classes, vocabulary size, number of
  features): the DataModule lists it in a ``model_kwargs`` mapping (an attribute or property,
  read after ``__init__``), and each entry is passed to the model's ``__init__`` when the model
  has a parameter of that name that the config leaves unset. Both sides declare it, or nothing
  is passed; a config value wins.
- Exact evaluation is done here, for every DataModule: with several processes, validation and
  test loaders get a sampler that gives each example to exactly one process (Lightning's own
  pads shards by repeating examples). Log torchmetrics ``Metric`` objects (or sums and counts)
  and the logged values equal those of a single-process evaluation.
- Preprocessing belongs to the DataModule. A ``predict_path`` argument and a
  ``predict_dataloader`` that reads it (batches without targets) let ``evaluate.py`` predict on
  new inputs with the same preprocessing as training; ``predict_step`` returns one value (or
  vector) per example, and a predict dataset's ``names`` label the rows of the predictions file.
- Tokens: a ``count_tokens(batch)`` method, on the LightningModule or else on the DataModule,
  returns how many tokens a training batch holds (e.g. ``batch["attention_mask"].sum()``, padding
  left out). Then ``throughput/tokens_per_s`` is logged and its median goes into summary.json.
  It is called on every training batch after the batch reached the device: a tensor on the
  GPU is fine and is read only when throughput is logged.
- FLOPs: the throughput callback counts those of one training batch itself, on the first one
  (``torch.utils.flop_counter``, which sees matrix products, convolutions and attention). A
  module that knows its FLOPs better sets a ``flops_per_batch`` attribute instead (Lightning's
  ThroughputMonitor convention), and MFU is computed from that.
"""

import inspect
import io
import logging
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig

log = logging.getLogger(__name__)


class ContractError(TypeError):
    """A model or data module the harness cannot run; the message says what to change."""


def build(cfg: DictConfig):
    """The DataModule, then the LightningModule with what the data tells it: ``(datamodule, model)``."""
    import pytorch_lightning as pl
    from hydra.utils import get_class, instantiate

    from .evaluation import evaluate_exactly

    datamodule = instantiate(cfg.data, _convert_="all")
    _require(datamodule, pl.LightningDataModule, "data", cfg.data)
    offered = getattr(datamodule, "model_kwargs", None) or {}
    if not isinstance(offered, Mapping):
        raise ContractError(
            f"{type(datamodule).__name__}.model_kwargs is a {type(offered).__name__}; it must be a mapping of "
            "model __init__ argument names to values, e.g. {'num_classes': 10}."
        )
    passed = model_arguments(get_class(cfg.model._target_), offered, set(cfg.model))
    model = instantiate(cfg.model, **passed, _convert_="all")
    _require(model, pl.LightningModule, "model", cfg.model)
    for name, obj in (("model", model), ("data", datamodule)):
        check_storable(getattr(obj, "hparams", {}), name)
    evaluate_exactly(datamodule)
    return datamodule, model


def model_arguments(model_class: type, offered: Mapping[str, Any], configured: set[str]) -> dict[str, Any]:
    """The entries of the data's ``model_kwargs`` that the model's ``__init__`` takes and the config leaves unset."""
    parameters = inspect.signature(model_class.__init__).parameters
    passed = {}
    for name, value in offered.items():
        if name in configured:
            log.info("model.%s is set in the config; the data's value %r is not used.", name, value)
        elif name in parameters and parameters[name].kind is not inspect.Parameter.POSITIONAL_ONLY:
            passed[name] = plain(value)
    return passed


def plain(value: Any) -> Any:
    """Tuples as lists and mappings as dicts, all the way down: what a config would have held."""
    if isinstance(value, Mapping):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    return value


def check_storable(hparams: Mapping[str, Any], owner: str) -> None:
    """Fail now, naming the argument, if ``hparams`` would make a checkpoint that ``weights_only`` refuses."""
    import torch

    for name, value in hparams.items():
        buffer = io.BytesIO()
        try:
            torch.save(value, buffer)
            buffer.seek(0)
            torch.load(buffer, weights_only=True)
        except Exception as error:
            raise ContractError(
                f"{owner} argument {name!r} ({type(value).__module__}.{type(value).__qualname__}) is saved with the "
                "hyperparameters, and checkpoints holding it would not load with torch.load(weights_only=True) "
                f"({type(error).__name__}). Pass plain values from the config (numbers, strings, lists, dicts), or "
                f"leave it out of the checkpoint with self.save_hyperparameters(ignore=[{name!r}])."
            ) from None


def _require(obj: Any, kind: type, group: str, conf: DictConfig) -> None:
    if not isinstance(obj, kind):
        raise ContractError(
            f"{group}._target_={conf.get('_target_')} made a {type(obj).__module__}.{type(obj).__qualname__}; "
            f"the harness trains a pytorch_lightning.{kind.__name__} there. Subclass it (import pytorch_lightning "
            "as pl, not lightning.pytorch, so that Lightning's checks recognise the class)."
        )
