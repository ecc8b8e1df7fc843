"""Check the command line before anything runs: a bad override fails in a fraction of a second.

Hydra composes the config inside ``hydra.main`` only after it has created the run folder, and
reports a typo'd key as "not in struct" without saying which key was meant. ``preflight``
composes the same config first (without torch or Lightning), and exits with one message
that says what to type instead: the close match of a key, the options of a group, the
expected type of a value, or what to use where a GPU or ``sbatch`` is missing.
"""

import difflib
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra._internal.utils import get_args_parser
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import HydraException, MissingConfigException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

# Keys whose default is a number or a bool but that Lightning also takes in another form.
FLEXIBLE_KEYS = {"trainer.devices", "trainer.num_nodes", "trainer.deterministic", "trainer.fast_dev_run"}
POSITIVE_INTEGERS = {"data.batch_size", "trainer.num_nodes", "trainer.accumulate_grad_batches"}
_ABSENT = object()


class BadOverride(ValueError):
    """An override that cannot run; the message says what to write instead."""


def preflight(config_dir: Path, config_name: str, argv: list[str] | None = None) -> None:
    """Exit with a clear message (status 2) if the command line cannot give a working run."""
    args, _ = get_args_parser().parse_known_args(sys.argv[1:] if argv is None else argv)
    if args.help or args.hydra_help or args.info or args.shell_completion or args.experimental_rerun:
        return
    if args.config_path or args.config_dir:
        return  # configs from elsewhere: Hydra alone knows them
    try:
        check_overrides(config_dir, args.config_name or config_name, args.overrides, multirun=args.multirun)
    except BadOverride as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


def check_overrides(config_dir: Path, config_name: str, overrides: list[str], *, multirun: bool = False) -> None:
    parser = OverridesParser.create()
    parsed = []
    for line in overrides:
        try:
            parsed += parser.parse_overrides([line])
        except HydraException as error:
            raise BadOverride(f"{line}: not a valid override. {error}") from None
    groups = [o for o in parsed if _is_group(config_dir, o)]
    values = [o for o in parsed if o not in groups]

    defaults = _compose(config_dir, config_name, groups)
    tree = OmegaConf.to_container(defaults, resolve=False)
    # With several group options swept, a key may exist in only some of them: Hydra checks each job.
    swept_groups = any(o.is_sweep_override() for o in groups)
    for override in values:
        if override.is_add() or override.is_force_add() or override.is_delete() or swept_groups:
            continue
        for value in _values(override):
            _check_value(tree, override.key_or_group, value, override.input_line)

    cfg = _compose(config_dir, config_name, parsed) if values else defaults
    check_resources(cfg, multirun=multirun)


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
            raise BadOverride(
                f"trainer={choice} asks for a GPU (trainer.accelerator={trainer.accelerator}), but this machine "
                "has no NVIDIA GPU (no driver under /proc/driver/nvidia, no nvidia-smi). Train on the CPU with "
                "trainer=cpu, or run this on a machine with a GPU."
            )
        devices = trainer.get("devices")
        if isinstance(devices, int) and gpus is not None and devices > gpus:
            raise BadOverride(
                f"trainer.devices={devices}, but this machine has {gpus} GPU(s). Use trainer.devices={gpus} "
                "(or trainer.devices=-1 for all of them), or add nodes with trainer.num_nodes."
            )
    devices = trainer.get("devices")
    if submits_to_slurm and (not isinstance(devices, int) or isinstance(devices, bool) or devices < 1):
        raise BadOverride(
            f"trainer.devices={devices}: SLURM starts one task per device, so jobs submitted to SLURM need the "
            "number of GPUs (or CPU processes) per node, e.g. trainer.devices=4."
        )
    if submits_to_slurm and shutil.which("sbatch") is None:
        choice = OmegaConf.select(cfg, "hydra.runtime.choices.cluster", default=None)
        named = f"cluster={choice}" if choice else "hydra/launcher=submitit_slurm"
        raise BadOverride(
            f"{named} submits jobs with sbatch, which is not on PATH here. Run the command on the cluster's "
            "login node, or run the sweep on this machine with cluster=local."
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


def _is_group(config_dir: Path, override: Override) -> bool:
    group = override.key_or_group
    return group.startswith("hydra/") or (config_dir / group).is_dir()


def _compose(config_dir: Path, config_name: str, overrides: list[Override]):
    lines = [line for o in overrides if (line := _single(o)) is not None]
    try:
        with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
            return compose(config_name, overrides=lines, return_hydra_config=True)
    except MissingConfigException as error:
        raise BadOverride(_missing_option(error, overrides)) from None
    except (HydraException, OmegaConfBaseException) as error:
        cause = f"\n{error.__cause__}" if isinstance(error.__cause__, OmegaConfBaseException) else ""
        raise BadOverride(f"{error}{cause}") from None


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
    if not override.is_sweep_override():
        yield override.value()
    elif override.is_discrete_sweep():
        parser = OverridesParser.create()
        for text in override.sweep_string_iterator():
            yield parser.parse_override(f"{override.key_or_group}={text}").value()


def _missing_option(error: MissingConfigException, overrides: list[Override]) -> str:
    missing = error.missing_cfg_file or ""
    group, _, option = missing.rpartition("/")
    if not group or error.options is None:
        return str(error)
    written = next((o.input_line for o in overrides if o.key_or_group == group), f"{group}={option}")
    message = f"{written}: the config group '{group}' has no option '{option}'. Available: {', '.join(error.options)}."
    if close := difflib.get_close_matches(option, error.options, n=1):
        message += f" Did you mean {group}={close[0]}?"
    return message


def _check_value(tree: dict, key: str, value: Any, written: str) -> None:
    """``value`` must go to an existing key and have the type of its default."""
    default = _lookup(tree, key)
    if default is _ABSENT:
        parent, _, name = key.rpartition(".")
        siblings = _lookup(tree, parent) if parent else tree
        if isinstance(siblings, dict):
            candidates = [f"{parent}.{k}" if parent else str(k) for k in siblings]
        else:
            candidates = list(_dotted_keys(tree))
        message = f"{written}: there is no key '{key}' in the config."
        if close := difflib.get_close_matches(key, candidates, n=1):
            message += f" Did you mean {close[0]}?"
        raise BadOverride(f"{message} To add a new key on purpose, write +{written}.")
    if value is None or (isinstance(value, str) and value.startswith("${")) or isinstance(default, str):
        return
    expected = _expected_type(default)
    if key in FLEXIBLE_KEYS or expected is None:
        pass
    elif not _is_instance(value, expected):
        raise BadOverride(f"{written}: {key} takes {expected} (its default is {default!r}), not {value!r}.")
    if key in POSITIVE_INTEGERS and isinstance(value, int) and not isinstance(value, bool) and value < 1:
        raise BadOverride(f"{written}: {key} must be at least 1.")


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


def _dotted_keys(tree: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(tree, dict):
        for name, child in tree.items():
            yield f"{prefix}{name}"
            yield from _dotted_keys(child, f"{prefix}{name}.")
