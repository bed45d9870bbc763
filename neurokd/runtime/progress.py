"""Progress for long loops: a rich bar on a terminal, plain lines otherwise, nothing when quiet."""

from __future__ import annotations

import sys
from typing import Any


class Reporter:
    """Silent reporter; the base of the others and the library default."""

    def __enter__(self) -> Reporter:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def start(self, description: str, total: int) -> Any:
        return None

    def advance(self, task: Any, steps: int = 1, status: str | None = None) -> None:
        """``steps`` more done; ``status`` (e.g. the running loss) is shown beside the bar."""
        return None

    def finish(self, task: Any, summary: str = "") -> None:
        return None

    def note(self, message: str) -> None:
        return None

    def epoch(self, phase: str, record: dict) -> None:
        """One finished training epoch of ``phase`` ("teacher", "student") and its record."""
        return None


class PlainReporter(Reporter):
    """One line per finished task on stderr (CI logs, pipes)."""

    def start(self, description: str, total: int) -> Any:
        return description

    def finish(self, task: Any, summary: str = "") -> None:
        print(f"{task}{': ' + summary if summary else ''}", file=sys.stderr, flush=True)

    def note(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)


class RichReporter(Reporter):
    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.console = Console(stderr=True)
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
                                 TextColumn("{task.fields[status]}"), console=self.console,
                                 transient=False)
        self.descriptions: dict[Any, str] = {}

    def __enter__(self) -> RichReporter:
        self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()

    def start(self, description: str, total: int) -> Any:
        task = self.progress.add_task(description, total=total, status="")
        self.descriptions[task] = description
        return task

    def advance(self, task: Any, steps: int = 1, status: str | None = None) -> None:
        if status is None:
            self.progress.advance(task, steps)
        else:
            self.progress.update(task, advance=steps, status=status)

    def finish(self, task: Any, summary: str = "") -> None:
        # The finished bar gives way to one summary line, so long runs keep one live bar.
        description = self.descriptions.pop(task)
        self.progress.remove_task(task)
        self.progress.console.print(f"{description}{': ' + summary if summary else ''}")

    def note(self, message: str) -> None:
        self.progress.console.print(message)


def make_reporter(quiet: bool = False) -> Reporter:
    if quiet:
        return Reporter()
    return RichReporter() if sys.stderr.isatty() else PlainReporter()


class EpochCallback(Reporter):
    """Another reporter's output, plus ``callback(phase, record)`` after every epoch: how
    ``neurokd.distill(..., on_epoch=...)`` and the ``--log-dir`` writers see the training."""

    def __init__(self, inner: Reporter, callback) -> None:
        self.inner, self.callback = inner, callback

    def __enter__(self) -> EpochCallback:
        self.inner.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.inner.__exit__(*exc)

    def start(self, description: str, total: int) -> Any:
        return self.inner.start(description, total)

    def advance(self, task: Any, steps: int = 1, status: str | None = None) -> None:
        self.inner.advance(task, steps, status)

    def finish(self, task: Any, summary: str = "") -> None:
        self.inner.finish(task, summary)

    def note(self, message: str) -> None:
        self.inner.note(message)

    def epoch(self, phase: str, record: dict) -> None:
        self.inner.epoch(phase, record)
        self.callback(phase, record)
