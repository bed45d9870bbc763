"""The ``neurokd`` command: parse, call the library, print. Errors become one stderr line.

One module per command (``distill``, ``export``, ``simulate``, ``energy``, ``plot``); shared
option groups in ``options``; what the commands show: ``console`` (tables), ``energy_render``
(the energy report's table, JSON and plot), ``history_plot`` (a run's training plot) and
``figure`` (what every plot shares). This module assembles the group and turns errors into exit
codes.
"""

from __future__ import annotations

import signal
import sys

import click

from ..errors import Interrupted, NeuroKDError
from ..runtime.signals import Stopped, received, stoppable
from ..runtime.signals import check as check_stopped
from .lazy import CommandEntry, LazyGroup

# command name -> where it lives and its one line: imported only when that command runs, so
# `neurokd --help` imports none and `neurokd distill` never needs the exporters or energy.
COMMANDS = {
    "distill": CommandEntry("distill", "distill", "Distil a spiking student from an ANN teacher."),
    "export": CommandEntry("export", "export", "Write the student for another tool, checked first."),
    "simulate": CommandEntry("simulate", "simulate",
                             "Run an export on a test split in a simulator."),
    "energy": CommandEntry("energy", "energy", "Energy per inference of a student vs its ANN."),
    "plot": CommandEntry("plot", "plot", "Draw a run's training history."),
    "sweep": CommandEntry("sweep", "sweep",
                          "Search distill options for accuracy vs energy (Optuna)."),
}


@click.group(cls=LazyGroup, lazy=COMMANDS,
             context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="show Python tracebacks on errors")
@click.option("--max-memory", metavar="SIZE",
              help="most memory sizes read from files may claim, e.g. 8G [default: 75% of "
              "the memory available; env NEUROKD_MAX_MEMORY]")
@click.version_option(package_name="neurokd")
def cli(debug: bool, max_memory: str | None) -> None:
    """Distil ANN teachers into spiking students (TSER), export them, estimate their energy."""
    from ..files.budget import set_budget

    set_budget(max_memory)


def _one_line(message: str) -> str:
    return " ".join(part.strip() for part in str(message).splitlines() if part.strip())


def main(argv: list[str] | None = None) -> None:
    try:
        _main(argv)
    except SystemExit as exc:
        _end_worker(exc.code if isinstance(exc.code, int) else 1 if exc.code else 0)
        raise
    _end_worker(0)


def _end_worker(code: int) -> None:
    """Under torchrun, exit without interpreter finalisation (see distributed.end_worker)."""
    distributed = sys.modules.get("neurokd.train.distributed")  # only imported under torchrun
    if distributed is not None:
        distributed.end_worker(code)


def _stopped(signum: int) -> None:
    """Ctrl-C or SIGTERM: not an error, and nothing half-written stays behind."""
    what = "terminated" if signum == signal.SIGTERM else "interrupted"
    print(f"neurokd: {what}; nothing half-written was left behind", file=sys.stderr)
    sys.exit(128 + int(signum))


def _signal_behind(exc: BaseException) -> int | None:
    """The signal whose :class:`Stopped` caused ``exc`` (its cause or context chain), if any."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, Stopped):
            return exc.signum
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def _main(argv: list[str] | None) -> None:
    args = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in args
    try:
        with stoppable():
            cli.main(args=args, prog_name="neurokd", standalone_mode=False)
            check_stopped()  # a signal some library swallowed still ends the command as one
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:  # click's form of a KeyboardInterrupt (ours: Stopped)
        _stopped(received() or signal.SIGINT)
    except click.ClickException as exc:
        if debug:
            raise
        print(f"neurokd: error: {_one_line(exc.format_message())}", file=sys.stderr)
        sys.exit(2 if isinstance(exc, click.UsageError) else exc.exit_code)
    except NeuroKDError as exc:
        if debug:
            raise
        # a training stopped on purpose (state saved) is news, not an error
        kind = "" if isinstance(exc, Interrupted) else "error: "
        print(f"neurokd: {kind}{_one_line(str(exc))}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt as exc:
        _stopped(exc.signum if isinstance(exc, Stopped) else signal.SIGINT)
    except Exception as exc:  # noqa: BLE001 - the last line of defence against tracebacks
        if debug:
            raise
        # A signal that lands inside C or Cython code (h5py's FastRLock.__exit__) comes back
        # wrapped: "SystemError: ... returned a result with an exception set", our Stopped as
        # its context. It is the stop, not an internal error.
        signum = _signal_behind(exc)
        if signum is not None:
            _stopped(signum)
        print(f"neurokd: internal error: {type(exc).__name__}: {_one_line(str(exc))} "
              "(run with --debug for the traceback)", file=sys.stderr)
        sys.exit(1)
