"""The ``neurokd`` command: parse, call the library, print. Errors become one stderr line.

One module per command (``distill``, ``export``, ``simulate``, ``energy``); shared option groups in
``options``. This module assembles the group and turns errors into exit codes.
"""

from __future__ import annotations

import sys

import click

from ..errors import NeuroKDError
from . import distill, energy, export, simulate


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="show Python tracebacks on errors")
@click.version_option(package_name="neurokd")
def cli(debug: bool) -> None:
    """Distil ANN teachers into spiking students (TSER), export them, estimate their energy."""


for _command in (distill.distill, export.export, simulate.simulate, energy.energy):
    cli.add_command(_command)


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
    distributed = sys.modules.get("neurokd.distributed")  # never imported: not under torchrun
    if distributed is not None:
        distributed.end_worker(code)


def _main(argv: list[str] | None) -> None:
    args = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in args
    try:
        cli.main(args=args, prog_name="neurokd", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        print("neurokd: aborted", file=sys.stderr)
        sys.exit(130)
    except click.ClickException as exc:
        if debug:
            raise
        print(f"neurokd: error: {_one_line(exc.format_message())}", file=sys.stderr)
        sys.exit(2 if isinstance(exc, click.UsageError) else exc.exit_code)
    except NeuroKDError as exc:
        if debug:
            raise
        print(f"neurokd: error: {_one_line(str(exc))}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("neurokd: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - the last line of defence against tracebacks
        if debug:
            raise
        print(f"neurokd: internal error: {type(exc).__name__}: {_one_line(str(exc))} "
              "(run with --debug for the traceback)", file=sys.stderr)
        sys.exit(1)
