"""Check the composed config before anything runs: a bad value fails in a fraction of a second.

Hydra itself refuses a malformed override, an unknown key and a missing group option before a run
starts. What it cannot know is checked here, by a Hydra callback (``hydra.callbacks`` in
configs/hydra/default.yaml) that Hydra calls once it has composed the config, before it makes a run
folder, a sweep folder or an Optuna study, and before train.py imports torch:

- values: each overridden value has the type of its default, and the values a run will use are in
  range (``RANGES``: batch sizes, epochs, fractions, learning rates, ...);
- paths: ``task_name`` is a folder name; ``ckpt_path`` is a checkpoint file, or ``last`` finds a run
  of this experiment (resume.py);
- resources: a GPU where the trainer asks for one, ``sbatch`` where jobs go to SLURM, no Trainer that
  starts its own processes under ``-m``, in multirun mode whether it comes from ``-m`` or from a config
  (``hparams_search=optuna``);
- the run folder: torchrun ranks need a shared id, and a new run never writes into an earlier run's folder.

A failure prints one line, ``error: ...``, that says what to write instead, and exits with status 2.
"""

import itertools
import os
import shutil
import sys
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from hydra import compose
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from .distributed import is_global_zero, launched_externally, multirun_launch_refusal

# Keys whose default is a number or a bool but that Lightning also takes in another form.
FLEXIBLE_KEYS = {"trainer.devices", "trainer.num_nodes", "trainer.deterministic", "trainer.fast_dev_run"}
# Lightning strategies that start the other ranks by running the script again (its subprocess launcher).
SCRIPT_LAUNCHED_STRATEGIES = ("ddp", "ddp_find_unused_parameters_true", "fsdp", "deepspeed")
_ABSENT = object()


class BadValue(ValueError):
    """A config that cannot give a working run; the message says what to write instead."""


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def at_least(minimum: int, *also: Any) -> tuple[Callable[[Any], bool], str]:
    allowed = " or ".join(["null" if a is None else str(a) for a in also])
    return (lambda v: v in also or (_whole(v) and v >= minimum)), f"an integer of at least {minimum}" + (
        f" (or {allowed})" if also else ""
    )


def fraction_or_count(*, zero: bool) -> tuple[Callable[[Any], bool], str]:
    """Lightning's limit_*_batches: a fraction of the batches, or a number of them."""
    low = 0 if zero else 1

    def check(v: Any) -> bool:
        if v is None:
            return True
        if _whole(v):
            return v >= low
        return _number(v) and (0 <= v <= 1 if zero else 0 < v <= 1)

    return check, f"a fraction in {'[0' if zero else '(0'}, 1] of the batches or a number of batches (null: all)"


def open_interval(low: float, high: float) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: _number(v) and low < v < high), f"a number between {low} and {high}, both excluded"


def one_of(*choices: str) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: v in choices), "one of " + ", ".join(choices)


# The values a run uses, where a wrong one would fail only after torch is imported and the data loaded,
# or run without error and give nonsense (an untrained model tested, a run folder outside log_dir).
RANGES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "task_name": (
        lambda v: isinstance(v, str) and v not in ("", ".", "..") and not {"/", "\\"} & set(v),
        "a folder name (no '/', not '..'): runs go to <log_dir>/<task_name>/",
    ),
    "seed": ((lambda v: _whole(v) and 0 <= v < 2**32), "an integer from 0 to 2**32 - 1"),
    "matmul_precision": one_of("highest", "high", "medium"),
    "monitor.mode": one_of("min", "max"),
    "monitor.metric": ((lambda v: isinstance(v, str) and bool(v)), "the name of a logged metric, e.g. val/loss"),
    "trainer.max_epochs": at_least(1, -1, None),
    "trainer.min_epochs": at_least(0, None),
    "trainer.max_steps": at_least(1, -1),
    "trainer.limit_train_batches": fraction_or_count(zero=False),
    "trainer.limit_val_batches": fraction_or_count(zero=True),
    "trainer.limit_test_batches": fraction_or_count(zero=True),
    "trainer.log_every_n_steps": at_least(1),
    "trainer.accumulate_grad_batches": at_least(1),
    "trainer.num_nodes": at_least(1),
    "trainer.check_val_every_n_epoch": at_least(1, None),
    "trainer.val_check_interval": fraction_or_count(zero=False),
    "trainer.num_sanity_val_steps": at_least(-1),
    "trainer.gradient_clip_val": ((lambda v: v is None or (_number(v) and v >= 0)), "a number >= 0 (null: none)"),
    "trainer.devices": (
        lambda v: not _whole(v) or v >= 1 or v == -1,
        "a number of devices >= 1, -1 or auto for all, or a list of device indices",
    ),
    "data.batch_size": at_least(1),
    "data.eval_batch_size": at_least(1, None),
    "data.num_workers": at_least(0),
    # Both parts of the split need examples: validation picks checkpoints and stops early.
    "data.val_fraction": open_interval(0, 1),
    "data.test_fraction": open_interval(0, 1),
    "model.optimizer.lr": ((lambda v: _number(v) and v > 0), "a learning rate > 0"),
    "model.optimizer.weight_decay": ((lambda v: _number(v) and v >= 0), "a number >= 0"),
    "model.net.dropout": ((lambda v: _number(v) and 0 <= v < 1), "a probability from 0 up to 1 (excluded)"),
}


def _researchers(key: str) -> bool:
    """Keys of models and data: other modules may give them other kinds of values, which the ranges leave alone."""
    return key.startswith(("model.", "data."))


class PreRunChecks(Callback):
    """Hydra callback: the checks of this module, once the config is composed and before anything runs."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        _refuse_bad(check_run, config, kwargs.get("config_name"))

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        _refuse_bad(check_multirun, config, kwargs.get("config_name"))


def _refuse_bad(check: Callable, config: DictConfig, config_name: str | None) -> None:
    try:
        check(config, config_name)
    except BadValue as error:
        print(f"error: {error}", file=sys.stderr)
        # Not an ordinary exception: Hydra turns those into warnings when a callback raises them.
        raise SystemExit(2) from None


def check_run(cfg: DictConfig, config_name: str | None = "train") -> None:
    check_launcher_id()
    overrides = _parse(cfg.hydra.overrides.task)
    check_types(cfg, config_name, overrides)
    check_ranges(cfg)
    check_ckpt_path(cfg)
    check_resources(cfg, multirun=False)
    check_new_run_folder(cfg)


def check_multirun(cfg: DictConfig, config_name: str | None = "train") -> None:
    """The sweep's config holds no swept value: each is checked on its own, and each swept group option composed."""
    check_launcher_id()
    overrides = _parse(cfg.hydra.overrides.task)
    # What a search samples (hparams_search=optuna) is in the sweeper's params (the config's search_space, a
    # list of sweep overrides), not on the command line.
    searched = _parse(list(OmegaConf.select(cfg, "hydra.sweeper.params") or []))
    check_types(cfg, config_name, [*overrides, *searched])
    for override in [*overrides, *searched]:
        if override.key_or_group in RANGES and not _is_group(cfg, override):
            for value in _values(override):
                _check_range(override.key_or_group, value, override.input_line)
    swept_groups = [o for o in overrides if _is_group(cfg, o) and o.is_sweep_override()]
    for job in _group_combinations(overrides, swept_groups):
        job_cfg = _compose(config_name, job, hydra=True) if swept_groups else cfg
        check_ranges(job_cfg)
        check_resources(job_cfg, multirun=True)
    # ckpt_path=last takes a run of this model and data: for each job its own, where the sweep varies them.
    varied = {o.key_or_group.split(".")[0].split("/")[0] for o in overrides if o.is_sweep_override()}
    if not varied & {"model", "data", "ckpt_path"}:
        check_ckpt_path(cfg)


def check_launcher_id() -> None:
    """torchrun's ranks name their run folder after its --rdzv-id; without one they would share every run's folder."""
    if os.environ.get("TORCHELASTIC_RUN_ID") == "none" and not os.environ.get("RUN_ID"):
        raise BadValue(
            "torchrun was started without --rdzv-id, so its ranks cannot agree on a run folder. Pass "
            "--rdzv-id=<an id that is the same on every node and new for each run> to torchrun, "
            "or set RUN_ID=<that id> in the environment of every node."
        )


def check_types(cfg: DictConfig, config_name: str | None, overrides: list[Override]) -> None:
    """Every value set on the command line has the type of its default."""
    values = [o for o in overrides if not _is_group(cfg, o) and not o.key_or_group.startswith("hydra.")]
    values = [o for o in values if not (o.is_add() or o.is_force_add() or o.is_delete())]
    if not values or any(o.is_sweep_override() for o in overrides if _is_group(cfg, o)):
        return  # with swept options a key may exist in only some of them: Hydra checks each job
    groups = [o.input_line for o in overrides if _is_group(cfg, o)]
    defaults = OmegaConf.to_container(_compose(config_name, groups, hydra=False), resolve=False)
    for override in values:
        for value in _values(override):
            _check_type(defaults, override.key_or_group, value, override.input_line)


def check_ranges(cfg: DictConfig) -> None:
    for key in RANGES:
        try:
            value = OmegaConf.select(cfg, key, default=_ABSENT)
        except Exception:  # an interpolation that cannot be resolved yet, e.g. from Hydra's runtime values
            continue
        if value is not _ABSENT:
            _check_range(key, value, f"{key}={'null' if value is None else value}")


def check_ckpt_path(cfg: DictConfig) -> None:
    from .resume import ResumeError, find_last

    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path is None:
        return
    if ckpt_path == "last":
        try:
            find_last(cfg)
        except ResumeError as error:
            raise BadValue(str(error)) from None
        return
    path = Path(str(ckpt_path))
    if not path.is_file():
        what = "a folder" if path.is_dir() else "no such file"
        raise BadValue(f"ckpt_path={ckpt_path}: {what}. Use ckpt_path=last or the path of a .ckpt file.")
    with path.open("rb") as file:
        start = file.read(4)
    # torch.save writes a zip archive (older versions a pickle, which starts with the PROTO opcode).
    if not (zipfile.is_zipfile(path) or start[:1] == b"\x80"):
        what = "an empty file" if not start else "not a checkpoint (torch.save writes a zip archive)"
        raise BadValue(
            f"ckpt_path={ckpt_path}: {what}. Give a .ckpt file that a run saved, e.g. <run dir>/checkpoints/last.ckpt."
        )


def check_resources(cfg: Any, *, multirun: bool) -> None:
    """Combinations this machine cannot run, found without importing torch."""
    trainer = cfg.trainer
    launcher = str(OmegaConf.select(cfg, "hydra.launcher._target_", default="") or "")
    submits_to_slurm = multirun and "Slurm" in launcher
    # Jobs submitted to SLURM run on the cluster's GPU nodes, not on this login node.
    if str(trainer.get("accelerator")) in ("gpu", "cuda") and sys.platform != "darwin" and not submits_to_slurm:
        gpus = count_nvidia_gpus()
        if gpus == 0:
            choice = OmegaConf.select(cfg, "hydra.runtime.choices.trainer", default="?")
            raise BadValue(
                f"trainer={choice} asks for a GPU (trainer.accelerator={trainer.accelerator}), but this machine "
                "has no NVIDIA GPU (no driver under /proc/driver/nvidia, no nvidia-smi). Train on the CPU with "
                "trainer=cpu, or run this on a machine with a GPU."
            )
        devices = trainer.get("devices")
        if _whole(devices) and gpus is not None and devices > gpus:
            raise BadValue(
                f"trainer.devices={devices}, but this machine has {gpus} GPU(s). Use trainer.devices={gpus} "
                "(or trainer.devices=-1 for all of them), or add nodes with trainer.num_nodes."
            )
    devices = trainer.get("devices")
    if submits_to_slurm and (not _whole(devices) or devices < 1):
        raise BadValue(
            f"trainer.devices={devices}: SLURM starts one task per device, so jobs submitted to SLURM need the "
            "number of GPUs (or CPU processes) per node, e.g. trainer.devices=4."
        )
    if submits_to_slurm and shutil.which("sbatch") is None:
        choice = OmegaConf.select(cfg, "hydra.runtime.choices.cluster", default=None)
        named = f"cluster={choice}" if choice else "hydra/launcher=submitit_slurm"
        raise BadValue(
            f"{named} submits jobs with sbatch, which is not on PATH here. Run the command on the cluster's "
            "login node, or run the sweep on this machine with cluster=local."
        )
    if multirun and not submits_to_slurm and not launched_externally():
        processes = _processes_per_node(trainer)
        strategy = str(trainer.get("strategy"))
        nodes = trainer.get("num_nodes") or 1
        if strategy in SCRIPT_LAUNCHED_STRATEGIES and processes * nodes > 1:
            raise BadValue(multirun_launch_refusal(processes, nodes))


def check_new_run_folder(cfg: DictConfig) -> None:
    """A run never writes into an earlier run's folder (a reused RUN_ID or torchrun id); a requeued SLURM job does."""
    if not is_global_zero() or int(os.environ.get("SLURM_RESTART_COUNT", 0)) > 0:
        return
    run_dir = Path(str(cfg.hydra.run.dir))
    if (run_dir / "summary.json").is_file():
        named = f"RUN_ID={os.environ['RUN_ID']}" if os.environ.get("RUN_ID") else f"the run id {run_dir.name}"
        raise BadValue(
            f"{named} names an earlier run, in {run_dir}; a new run there would overwrite its record, config and "
            "metrics. Use a new id (or none). To continue that run, start a new one with ckpt_path=last."
        )


def count_nvidia_gpus() -> int | None:
    """GPUs the NVIDIA driver reports, 0 for none, None when the driver is there but cannot be read."""
    gpus = Path("/proc/driver/nvidia/gpus")
    if gpus.is_dir():
        found = len(list(gpus.iterdir()))
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        if visible is not None:
            found = min(found, len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"]))
        return found
    return None if shutil.which("nvidia-smi") else 0


def _processes_per_node(trainer: Any) -> int:
    """How many processes Lightning would start per node for ``trainer.devices`` (as its accelerators count)."""
    devices = trainer.get("devices")
    if _whole(devices) and devices >= 1:
        return devices
    if isinstance(devices, str) and devices.replace(",", "").strip().isdigit():
        return len([d for d in devices.split(",") if d.strip()])
    if OmegaConf.is_list(devices) or isinstance(devices, list):
        return len(devices)
    # auto or -1: every GPU of the machine, or a single process on the CPU.
    accelerator = str(trainer.get("accelerator"))
    return 1 if accelerator == "cpu" else max(count_nvidia_gpus() or 0, 1)


def _parse(lines: Any) -> list[Override]:
    return OverridesParser.create().parse_overrides([str(line) for line in lines])


def _is_group(cfg: DictConfig, override: Override) -> bool:
    choices = OmegaConf.select(cfg, "hydra.runtime.choices", default=None) or {}
    return override.key_or_group in choices or override.key_or_group.startswith("hydra/")


def _compose(config_name: str | None, overrides: list[str], *, hydra: bool) -> DictConfig:
    return compose(config_name, overrides=overrides, return_hydra_config=hydra)


def _group_combinations(overrides: list[Override], swept_groups: list[Override]) -> Iterator[list[str]]:
    """The command line of each combination of swept group options, other sweeps at their first value."""
    fixed = [line for o in overrides if o not in swept_groups and (line := _single(o)) is not None]
    options = [[f"{o.key_or_group}={text}" for text in o.sweep_string_iterator()] for o in swept_groups]
    for chosen in itertools.product(*options):
        yield [*fixed, *chosen]


def _single(override: Override) -> str | None:
    """The override with one value of a sweep, so that it composes like one job of the sweep."""
    if not override.is_sweep_override():
        return override.input_line
    if not override.is_discrete_sweep():
        return None  # a search interval: the sweeper picks the values
    prefix = {"ADD": "+", "FORCE_ADD": "++", "DEL": "~"}.get(override.type.name, "")
    package = f"@{override.package}" if override.package else ""
    return f"{prefix}{override.key_or_group}{package}={next(iter(override.sweep_string_iterator()))}"


def _values(override: Override) -> Iterator[Any]:
    """The values an override gives: one, each of a list of choices, or both ends of an interval."""
    if not override.is_sweep_override():
        yield override.value()
    elif override.is_discrete_sweep():
        parser = OverridesParser.create()
        for text in override.sweep_string_iterator():
            yield parser.parse_override(f"{override.key_or_group}={text}").value()
    elif override.is_interval_sweep():
        interval = override.value()
        yield from (interval.start, interval.end)


def _check_type(tree: dict, key: str, value: Any, written: str) -> None:
    """``value`` must have the type of the key's default (unknown keys are Hydra's to refuse)."""
    default = _lookup(tree, key)
    if default is _ABSENT or default is None or isinstance(default, str) or key in FLEXIBLE_KEYS:
        return
    if value is None or (isinstance(value, str) and value.startswith("${")):
        return
    expected = _expected_type(default)
    if expected is not None and not _is_instance(value, expected):
        raise BadValue(f"{written}: {key} takes {expected} (its default is {default!r}), not {value!r}.")


def _check_range(key: str, value: Any, written: str) -> None:
    if isinstance(value, str) and value.startswith("${"):
        return
    valid, expected = RANGES[key]
    if _researchers(key) and not _number(value):
        return  # e.g. a dropout per layer; a value of the wrong type on the command line is refused by its type
    if not valid(value):
        # A swept override lists several values: name the one that is wrong.
        which = "" if written == f"{key}={'null' if value is None else value}" else f", not {value!r}"
        raise BadValue(f"{written}: {key} must be {expected}{which}.")


def _expected_type(default: Any) -> str | None:
    if isinstance(default, bool):
        return "true or false"
    if isinstance(default, int):
        return "an integer"
    if isinstance(default, float):
        return "a number"
    return None


def _is_instance(value: Any, expected: str) -> bool:
    if expected == "true or false":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if expected == "an integer":
        return isinstance(value, int)
    return isinstance(value, int | float)


def _lookup(tree: Any, key: str) -> Any:
    node = tree
    for part in key.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return _ABSENT
    return node
