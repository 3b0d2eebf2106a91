"""Progress display shared by the stages: a rich bar on a terminal, plain lines otherwise."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator

#: Without a terminal (a log file, a cluster job), a line at every this fraction done...
LOG_STEP = 0.1
#: ...once this many seconds have passed (short stages stay silent).
LOG_AFTER = 10.0


@contextlib.contextmanager
def progress_bar(total: int, description: str, enabled: bool = True, unit: str = "scans"
                 ) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(n)``: counts ``total`` items (scans, subjects) with an ETA.

    On a terminal a rich bar; elsewhere, once :data:`LOG_AFTER` seconds have passed,
    one line on stderr per tenth done, so logs show that a long stage is moving.
    Nothing when ``enabled`` is false.
    """
    if not enabled or total <= 0:
        yield lambda n=1: None
        return
    if not sys.stderr.isatty():
        with _log_lines(total, description, unit) as advance:
            yield advance
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
                  TextColumn(unit), TimeElapsedColumn(), TimeRemainingColumn(),
                  transient=False) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n=1: bar.advance(task, n)


@contextlib.contextmanager
def _log_lines(total: int, description: str, unit: str) -> Iterator[Callable[[int], None]]:
    start = time.perf_counter()
    state = {"done": 0, "next": LOG_STEP}

    def advance(n: int = 1) -> None:
        state["done"] += n
        done = state["done"]
        if done / total + 1e-9 < state["next"] and done < total:
            return
        while state["next"] <= done / total + 1e-9:
            state["next"] += LOG_STEP
        elapsed = time.perf_counter() - start
        if elapsed < LOG_AFTER:
            return
        eta = elapsed / done * (total - done) if done else float("nan")
        print(f"{description}: {done}/{total} {unit}, {elapsed:.0f} s"
              + (f", about {eta:.0f} s left" if done < total else ""),
              file=sys.stderr, flush=True)

    yield advance
