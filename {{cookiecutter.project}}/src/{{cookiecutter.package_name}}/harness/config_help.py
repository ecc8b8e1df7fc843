"""``python train.py --help``: every config group, each option with the first sentence of its file's comment.

Hydra's own help lists the options of a group by name only. The descriptions are the comments
that open each config file, so a new config file documents itself by starting with a comment.
"""

import re
from pathlib import Path

# A sentence ends at ". " before a capital letter, so "e.g. `x`" and "1.5" stay inside it.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


def describe(path: Path) -> str:
    """The first sentence of the comment at the top of a config file ('' if it has none).

    The comment ends at its first line that is not prose: code, an indented example, a blank line.
    """
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        text = line[1:].strip() if line.startswith("#") else ""
        if text.startswith("@package") and not lines:
            continue
        if not text or line.startswith("#  "):
            break
        lines.append(text)
    return _SENTENCE_END.split(" ".join(lines), maxsplit=1)[0]


def config_options(config_dir: Path, choices: dict[str, str]) -> str:
    """One block per group (Hydra's own groups left out); ``*`` marks the option this command line chose."""
    blocks = []
    groups = sorted({path.parent for path in config_dir.rglob("*.yaml")} - {config_dir})
    for group_dir in groups:
        group = group_dir.relative_to(config_dir).as_posix()
        if group == "hydra" or group.startswith("hydra/"):
            continue
        options = sorted(group_dir.glob("*.yaml"))
        width = max(len(option.stem) for option in options)
        lines = [f"{group}:"]
        for option in options:
            mark = "*" if choices.get(group) == option.stem else " "
            lines.append(f" {mark}{option.stem:<{width}}  {describe(option)}".rstrip())
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def help_options() -> str:
    """The resolver behind ``${config_options:}`` in configs/hydra/help/options.yaml."""
    from hydra.core.hydra_config import HydraConfig

    runtime = HydraConfig.get().runtime
    (main,) = [source.path for source in runtime.config_sources if source.provider == "main"]
    # Hydra fills the help template with string.Template after this resolves: "$" must stay literal.
    return config_options(Path(main), dict(runtime.choices)).replace("$", "$$")
