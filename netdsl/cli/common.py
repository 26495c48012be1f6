"""What the commands share: the usage error, the spec argument and the flags that
go with it (defined once, here), and turning those flags into a checked network.

A command module (``netdsl/cli/NAME.py``) has ``register(sub)``, which adds its
subparser, calls :func:`spec_arguments` (and :func:`table_arguments` where it
prints the layer table) and sets its handler with ``sp.set_defaults(run=run)``.
Modules import torch only inside ``run``: every command line parses all of them.
"""

from __future__ import annotations

import contextlib
import os


class UsageError(Exception):
    """A command line netdsl cannot act on: printed as ``netdsl: error: ...``, exit 2."""


def positive_int(text: str) -> int:
    import argparse

    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expects a positive integer, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expects a positive integer (1 = top level only), got {n}")
    return n


def spec_argument(text: str):
    """The spec argument of a command: a path, always, whatever characters its name
    holds, or ``-`` for the text on standard input (:class:`netdsl.api.Stdin`).

    >>> spec_argument("network n() { input [3, 8, 8] } #.net")
    PosixPath('network n() { input [3, 8, 8] } #.net')
    """
    from pathlib import Path

    if text == "-":
        from ..api import Stdin

        return Stdin()
    return Path(text)


def parse_overrides(items: list[str]) -> dict[str, str]:
    """NAME -> expression text of each ``--set NAME=VALUE``; the API parses them."""
    out = {}
    for item in items:
        name, eq, value = item.partition("=")
        name = name.strip()
        if not eq or not name.isidentifier():
            raise UsageError(f"--set expects NAME=VALUE, got {item!r}")
        if name in out:
            raise UsageError(f"--set {name} is given twice")
        out[name] = value.strip()
    return out


def parse_input(text):
    """One --input (``C,H,W``), or several: shapes in order, or by name (``rgb=3,224,224``)."""
    if text is None:
        return None
    if isinstance(text, list):
        named = [t.partition("=") for t in text]
        if all(sep for _, sep, _ in named):
            out = {}
            for name, _, dims in named:
                if name.strip() in out:
                    raise UsageError(f"--input {name.strip()} is given twice")
                out[name.strip()] = parse_input(dims)
            return out
        if any(sep for _, sep, _ in named):
            raise UsageError("--input: give every shape by name (NAME=C,H,W) or none")
        return parse_input(text[0]) if len(text) == 1 else tuple(parse_input(t) for t in text)
    try:
        dims = tuple(int(x) for x in text.replace("x", ",").split(","))
    except ValueError:
        raise UsageError(f"--input expects C,H,W (integers), got {text!r}") from None
    if len(dims) not in (1, 3) or any(d < 1 for d in dims):
        raise UsageError(f"--input expects three positive integers C,H,W, got {text!r}")
    return dims


def parse_limits(items: list[str]):
    from ..limits import Limits

    changes = {}
    for item in items:
        name, eq, value = item.partition("=")
        if not eq or name not in Limits.names():
            raise UsageError(f"--limit expects NAME=VALUE with NAME one of {', '.join(Limits.names())}")
        changes[name] = _limit_value(name, value)
    try:
        return Limits().replace(**changes)
    except ValueError as e:  # over a cap: the message says the range and why
        raise UsageError(f"--limit {e}".replace("Limits.", "", 1)) from None


def _limit_value(name: str, text: str) -> int:
    """``1e9`` and ``1.5e3`` are integers; ``1e-5`` and ``2.5`` are not, and are refused
    rather than rounded (to 0, which would refuse every spec)."""
    from decimal import Decimal, InvalidOperation

    try:
        d = Decimal(text.strip())
    except InvalidOperation:
        d = None
    if d is None or not d.is_finite() or d != d.to_integral_value() or d < 0:
        raise UsageError(f"--limit {name} needs a non-negative integer (such as 1000 or 1e9), "
                          f"got {text!r}")
    if d.adjusted() > 19:  # over 2^63 whatever the cap: do not build a huge int
        raise UsageError(f"--limit {name} must be at most {2**63 - 1:,}, got {text!r}")
    return int(d)


def check_import_dirs(args) -> list[str]:
    """``--import-path`` directories, each checked to be one (a usage error if not)."""
    for d in args.import_path:
        if not os.path.isdir(d):
            raise UsageError(f"--import-path {d!r} is not a directory")
    return args.import_path


def grant_of(args):
    """The grant of ``--allow-module PREFIX`` (each a dotted module name, or a usage error)."""
    from ..grant import Grant

    try:
        return Grant.of(args.grant)
    except ValueError as e:
        raise UsageError(f"--allow-module: {str(e).removeprefix('grant: ')}") from None


def compile_args(args):
    from ..api import compile_spec

    limits = parse_limits(args.limit)
    check_import_dirs(args)
    return compile_spec(args.spec, parse_overrides(args.overrides), network=args.network,
                        input=parse_input(args.input), limits=limits, import_path=args.import_path,
                        origin="cli", grant=grant_of(args))


def parse_device(name: str):
    from ..backend.lower import DeviceError, target_device

    try:
        return target_device(name)
    except DeviceError as e:
        raise UsageError(str(e)) from None


@contextlib.contextmanager
def memory_guard(device, what: str):
    """Running out of memory is the machine's limit, not a bug: say so, as a usage error."""
    import torch

    oom = (MemoryError, getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError))
    try:
        yield
    except oom:
        raise UsageError(f"not enough memory on {device} {what}; try --device meta") from None
    except RuntimeError as e:
        if "can't allocate memory" not in str(e):  # torch's CPU allocator says it this way
            raise
        raise UsageError(f"not enough memory on {device} {what}; try --device meta") from None


def spec_arguments(sp, spec_help: str = "path to a .net spec file, or - to read the spec from stdin",
                   set_help: str = "set a network hyperparameter (a netdsl expression: 10, 1.1, "
                                   "[3, 4], basic); repeatable") -> None:
    """The spec argument and the flags every command that compiles a spec takes."""
    sp.add_argument("spec", type=spec_argument, help=spec_help)
    sp.add_argument("--set", dest="overrides", action="append", default=[], metavar="NAME=VALUE",
                    help=set_help)
    sp.add_argument("--input", metavar="C,H,W", action="append",
                    help="override the network's input shape; for a network of several inputs, "
                         "once per input, in order or as NAME=C,H,W")
    sp.add_argument("--network", metavar="NAME", help="which network, when the spec has several")
    sp.add_argument("--limit", action="append", default=[], metavar="NAME=VALUE",
                    help="change a safety limit, e.g. max_params=1e11 (see docs/cli.md)")
    sp.add_argument("--import-path", action="append", default=[], metavar="DIR",
                    help="a directory where imports are also looked for; repeatable")
    sp.add_argument("--allow-module", dest="grant", action="append", default=[], metavar="PREFIX",
                    help="let the spec's `extern` classes under this Python module prefix be "
                         "imported (which runs their code); repeatable")


def table_arguments(sp, depth_help: str = "default 2 for the table, all for json") -> None:
    """``--format table|json`` and ``--depth``, for the commands that print the layer table."""
    sp.add_argument("--format", choices=("table", "json"), default="table", help="output format")
    sp.add_argument("--depth", type=positive_int, metavar="N",
                    help=f"show modules down to depth N ({depth_help})")


WEIGHTS_HELP = ("load this state_dict into the model, strictly (a bare state_dict, or one under "
                "\"state_dict\" or \"model\"); a key mismatch is reported as `verify` does, exit 1")


def read_weights(path: str | None, device=None):
    """The state_dict of ``--weights PATH`` (None without one), read before anything is
    built; what cannot be read is a usage error."""
    from ..backend.checkpoint import ReadError, read

    if path is None:
        return None
    if device is not None and device.type == "meta":
        raise UsageError("--weights: a model built on the meta device holds no values; "
                         "build on cpu or cuda")
    try:
        return read(path)
    except ReadError as e:
        raise UsageError(str(e)) from None


def load_weights(model, net, weights, path: str, load: bool = True) -> bool:
    """Load ``weights`` into ``model`` strictly (with ``load`` False, only check that
    they would load: ``model`` may be on the meta device); on a key or shape mismatch
    print the report that `verify` gives (each key beside its nearest match, with its
    spec line) and return False."""
    import sys

    from ..analysis.compare import check_keys, module_spans

    check = check_keys(model.state_dict(), weights, module_spans(net), theirs_name="file")
    if not check.ok:
        print(f"error: --weights {path} does not fit `{net.name}`: {check.summary}", file=sys.stderr)
        for line in check.details:
            print(f"  {line}", file=sys.stderr)
        return False
    if load:
        model.load_state_dict(weights, strict=True)
    return True
