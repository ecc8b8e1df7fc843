"""A finished run read back from its folder: its resolved config (with overrides) and its checkpoints."""

import difflib
import json
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

CONFIG = "config_resolved.yaml"
_ABSENT = object()


class RunFolderError(ValueError):
    """A run folder, checkpoint or override that cannot be used; the message says what to give instead."""


def load_config(run_dir: Path, overrides: list[str]) -> DictConfig:
    """The config the run trained with, every interpolation resolved, with ``key=value`` overrides applied."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    path = run_dir / CONFIG
    if not path.is_file():
        raise RunFolderError(
            f"{run_dir}: no {CONFIG} there. Give the folder of a training run, e.g. logs/train/runs/<date>_<time>_<id>."
        )
    cfg = OmegaConf.load(path)
    keys = list(dotted_keys(cfg))
    for line in overrides:
        try:
            (override,) = OverridesParser.create().parse_overrides([line])
        except HydraException as error:
            raise RunFolderError(f"{line}: not a key=value override. {error}") from None
        key = override.key_or_group
        if override.is_sweep_override() or override.is_delete():
            raise RunFolderError(f"{line}: give one value per key (no sweeps or deletions here).")
        if not override.is_add() and OmegaConf.select(cfg, key, default=_ABSENT) is _ABSENT:
            close = difflib.get_close_matches(key, keys, n=1)
            hint = f" Did you mean {close[0]}?" if close else ""
            raise RunFolderError(f"{line}: there is no key '{key}' in {path}.{hint} To add one, write +{line}.")
        with open_dict(cfg):
            OmegaConf.update(cfg, key, override.value(), merge=False, force_add=True)
    return cfg


def dotted_keys(cfg, prefix: str = ""):
    for name, value in cfg.items():
        yield f"{prefix}{name}"
        if isinstance(value, DictConfig):
            yield from dotted_keys(value, f"{prefix}{name}.")


def checkpoint(run_dir: Path, choice: str) -> Path:
    """``best`` or ``last`` as the run recorded them in summary.json (found also where the folder moved), or a file."""
    if choice not in ("best", "last"):
        if not Path(choice).is_file():
            raise RunFolderError(f"ckpt={choice}: no such file. Use ckpt=best, ckpt=last or the path of a .ckpt file.")
        return Path(choice)
    summary = run_dir / "summary.json"
    recorded = json.loads(summary.read_text()).get(f"{choice}_checkpoint") if summary.is_file() else None
    # This folder's own file first: the recorded path may be the folder's old place, or another copy.
    candidates = [run_dir / "checkpoints" / Path(recorded).name, Path(recorded)] if recorded else []
    if choice == "last":
        candidates.append(run_dir / "checkpoints" / "last.ckpt")
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    found = sorted(path.name for path in (run_dir / "checkpoints").glob("*.ckpt"))
    raise RunFolderError(
        f"ckpt={choice}: {run_dir} has no {choice} checkpoint (summary.json records {recorded}; checkpoints/ holds "
        f"{', '.join(found) or 'nothing'}). Give one with ckpt=<path>."
    )
