"""Rich output that stays whole in a log file.

In a terminal rich fits tables and trees to the window. Written to a file or a pipe (a batch
job's log) it would assume 80 columns and cut longer lines short (``model.o…``); there the
console is made as wide as the output needs, so nothing is lost and a pager or web viewer wraps.
"""

import sys
from typing import Any

# Wide enough for any config line; only a measuring console ever has this width.
_MEASURING_WIDTH = 100_000


def console_for(*renderables: Any):
    """A console on stdout that prints ``renderables`` without cutting them."""
    from rich.console import Console
    from rich.measure import Measurement

    console = Console(file=sys.stdout)
    if console.is_terminal:
        return console
    measuring = Console(file=sys.stdout, width=_MEASURING_WIDTH)
    needed = max((Measurement.get(measuring, measuring.options, r).maximum for r in renderables), default=0)
    return Console(file=sys.stdout, width=max(needed, console.width))
