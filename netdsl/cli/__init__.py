"""The ``netdsl`` command: one module per command in this package
(``netdsl/cli/NAME.py``, each with ``register(sub)``), the flags they share in
``common``, and ``main``, which runs a command line.

Exit status: 0 on success, 1 when the spec has errors (diagnostics on stderr),
2 for a usage error (bad flags, an unavailable device, a file --save refuses),
3 for a bug in netdsl (the fvcore cross-check disagrees, or an internal error),
130 when interrupted, 141 when stdout was closed early.
"""

from __future__ import annotations

# Only small standard modules and the check cache: a `check` answered from the
# cache imports nothing else. Each command imports what it uses.
import os
import sys

from . import checkcache
from .common import UsageError, spec_argument

# The commands, in the order `netdsl --help` lists them.
COMMANDS: tuple[str, ...] = ("build", "check", "graph", "diff", "verify", "sweep", "export", "explain",
                             "fmt", "lsp")

# Where the internal-error message asks users to report a bug.
ISSUE_TRACKER = "netdsl's issue tracker"


def _parser():
    import argparse
    import importlib

    from .. import __version__

    p = argparse.ArgumentParser(prog="netdsl", description="Check, build and measure CNN specs.")
    p.add_argument("--version", action="version", version=f"netdsl {__version__}")
    # Not required=True: argparse would then say "the following arguments are required:
    # COMMAND", which reads as if a flag given before it (`netdsl --verbose`) were fine.
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return p


def main(argv: list[str] | None = None, *, cache: bool | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``) and return its exit status.

    ``cache``: whether ``check`` may answer from, and record into, its result cache
    (netdsl/cli/checkcache.py). By default only the command line itself does (``argv``
    None): a program or test calling ``main([...])`` gets a full run, which it may
    have changed by patching netdsl.

    >>> main(["explain", "E9999"])  # says on stderr: netdsl: error: unknown error code 'E9999'; ...
    2
    """
    cache = argv is None if cache is None else cache
    argv = sys.argv[1:] if argv is None else list(argv)
    recorder, status = None, None
    try:
        status = checkcache.replay(argv) if cache else None
        if status is not None:
            return status
        if cache and argv[:1] == ["check"]:
            # From here, so that whatever is printed on the way (a warning) is replayed too.
            recorder = checkcache.record(argv)
        parser = _parser()
        args = parser.parse_args(argv)
        if recorder is not None and args.no_cache:  # also when abbreviated (--no-c)
            recorder.finish(None)
            recorder = None
        if args.command is None:
            parser.print_usage(sys.stderr)
            names = sorted(sub_names(parser))
            raise UsageError(f"give a command: {', '.join(names[:-1])} or {names[-1]}"
                              " (netdsl --help says more, netdsl --version prints the version)")
        status = args.run(args)
        return status
    except KeyboardInterrupt:
        status = 130
    except BrokenPipeError:
        # The reader went away (`netdsl check x.net | head`): nothing left to say to it.
        _silence_stdout()
        status = 141
    except Exception as e:
        status = _failed(e, argv)
    finally:
        if recorder is not None:
            # Kept only when complete: exit 0, or 1 with diagnostics (_failed).
            recorder.finish(status)
    return status


def _failed(e: Exception, argv: list[str]) -> int:
    """The exit status of an exception out of a command, after saying what it was."""
    from ..diagnostics import NetdslError

    if isinstance(e, NetdslError):
        print(e.render(), file=sys.stderr)
        return 1
    if isinstance(e, UsageError):
        print(f"netdsl: error: {e}", file=sys.stderr)
        return 2
    # Whatever it is, a bug of netdsl's: one message, not a traceback.
    _internal_error(e, argv)
    return 3


def sub_names(parser) -> list[str]:
    """The names of the parser's subcommands."""
    for action in parser._subparsers._group_actions:
        return list(action.choices)
    return []


def _internal_error(e: Exception, argv: list[str]) -> None:
    import shlex

    from .. import __version__

    if os.environ.get("NETDSL_TRACEBACK") == "1":
        import traceback

        traceback.print_exception(e, file=sys.stderr)
    lines = str(e).strip().splitlines()
    what = f"{type(e).__name__}: {lines[0]}" if lines else type(e).__name__
    print(f"error: internal error in netdsl {__version__}: {what}", file=sys.stderr)
    print(f"  please report it at {ISSUE_TRACKER} with the command line: "
          f"netdsl {shlex.join(argv)}"
          + ("" if os.environ.get("NETDSL_TRACEBACK") == "1" else
             " (NETDSL_TRACEBACK=1 shows the traceback)"), file=sys.stderr)


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that flushing it at exit does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


__all__ = ["COMMANDS", "UsageError", "main", "spec_argument"]
