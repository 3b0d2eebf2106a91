"""Progress display shared by the stages (rich; quiet when output is not a terminal)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def progress_bar(total: int, description: str, enabled: bool = True
                 ) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(n)``; shows a bar on a terminal, nothing otherwise."""
    if not enabled or not sys.stderr.isatty() or total <= 0:
        yield lambda n=1: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TimeRemainingColumn(), transient=False) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n=1: bar.advance(task, n)
