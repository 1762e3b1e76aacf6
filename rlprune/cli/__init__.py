"""The ``rlprune`` command line. Only this package reads argv and YAML for the user.

One module per command (``info`` and ``pretrain``, ``train``, ``apply``, ``benchmark``), each
adding its parser and running it; :mod:`.common` holds what they share.
"""

from __future__ import annotations

import argparse
import errno
import sys
import warnings
from collections.abc import Callable, Sequence

from ..errors import RLPruneError, one_line, sigterm_stops_like_ctrl_c, stop_status
from ..version import __version__
from . import apply, benchmark, info, train
from .common import (
    LatencyReporter,
    Parser,
    add_trust_argument,
    err_console,
    fraction_list,
    print_error,
)

__all__ = ["add_trust_argument", "build_parser", "fraction_list", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``rlprune`` command."""
    parser = Parser(
        prog="rlprune", description="Learn channel-pruning policies with reinforcement learning."
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("--version", action="version", version=f"rlprune {__version__}")
    # --debug is accepted after the command too (SUPPRESS: absent there leaves the top-level value)
    debug = Parser(add_help=False)
    debug.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks on errors"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for command in (info, train, apply, benchmark):
        command.add_parser(sub, debug)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rlprune`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    if not args.debug:
        warnings.formatwarning = lambda message, *_args, **_kw: f"warning: {message}\n"
    from ..evaluation.latency import reporting

    threads = _torch_threads()
    try:
        # SIGTERM cleans up as Ctrl-C does; latency models show their progress
        with sigterm_stops_like_ctrl_c(), reporting(LatencyReporter()):
            return func(args)
    except RLPruneError as error:
        if args.debug:
            raise
        print_error(str(error))
        return 2
    except KeyboardInterrupt as interrupt:
        err_console.print("interrupted")
        return stop_status(interrupt)
    except OSError as error:
        if args.debug:
            raise
        where = f" ({error.filename})" if error.filename else ""
        # only a full disk is the output folder's fault for sure; otherwise name the path
        fix = (
            "check free space of the output folder"
            if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
            else "check that path and its permissions"
        )
        print_error(f"{error.strerror or one_line(error)}{where}; {fix} (nothing was published)")
        return 1
    except Exception as error:  # noqa: BLE001 - the last line of defence: no traceback
        if args.debug:
            raise
        print_error(
            f"unexpected {one_line(error)}; rerun with --debug for the traceback and "
            "report it if the input was valid"
        )
        return 1
    finally:
        tasks = sys.modules.get("rlprune.presets.tasks")
        if tasks is not None:
            tasks.forget_presets()  # hints name presets as this command was given them
        service = sys.modules.get("rlprune.evaluation.backends")
        if service is not None:
            service.close_all()  # worker processes and Ray actors end with the command
        if threads is not None:  # --threads and --workers set them for this command only
            sys.modules["torch"].set_num_threads(threads)


def _torch_threads() -> int | None:
    """Torch's intra-op threads now (``None`` while torch is not imported)."""
    torch = sys.modules.get("torch")
    return None if torch is None else int(torch.get_num_threads())
