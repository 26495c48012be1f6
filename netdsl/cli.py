"""The ``netdsl`` command: ``build``, ``check``, ``explain`` and ``lsp``.

Exit status: 0 on success, 1 when the spec has errors (diagnostics on stderr),
2 for a usage error (bad flags, an unavailable device, a file --save refuses),
3 for a bug in netdsl (the fvcore cross-check disagrees, or an internal error),
130 when interrupted, 141 when stdout was closed early.
"""

from __future__ import annotations

# Only small standard modules and the check cache: a `check` answered from the
# cache imports nothing else. Each command imports what it uses.
import contextlib
import os
import sys

from . import checkcache


class UsageError(Exception):
    """A command line netdsl cannot act on: printed as ``netdsl: error: ...``, exit 2."""


_UsageError = UsageError  # the name this module's own commands use

# Commands that live in their own module, ``netdsl/commands/NAME.py``. Each module has
# ``register(sub, common)``, which adds its subparser (``common(sp, ...)`` adds the spec
# argument and the flags every spec command shares) and sets ``run`` as its handler
# with ``sp.set_defaults(run=run)``. Modules import torch only inside ``run``: every
# command line parses all of them.
COMMANDS: tuple[str, ...] = ("graph", "diff", "verify", "export", "sweep", "fmt")


# Where the internal-error message asks users to report a bug.
ISSUE_TRACKER = "netdsl's issue tracker"


def _positive_int(text: str) -> int:
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
        from .api import Stdin

        return Stdin()
    return Path(text)


def _parser():
    import argparse
    import importlib

    from . import __version__

    p = argparse.ArgumentParser(prog="netdsl", description="Check, build and measure CNN specs.")
    p.add_argument("--version", action="version", version=f"netdsl {__version__}")
    # Not required=True: argparse would then say "the following arguments are required:
    # COMMAND", which reads as if a flag given before it (`netdsl --verbose`) were fine.
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def common(sp, depth_default_help: str):
        sp.add_argument("spec", type=spec_argument,
                        help="path to a .net spec file, or - to read the spec from stdin")
        sp.add_argument("--set", dest="overrides", action="append", default=[], metavar="NAME=VALUE",
                        help="set a network hyperparameter (a netdsl expression: 10, 1.1, [3, 4], basic)")
        sp.add_argument("--input", metavar="C,H,W", action="append",
                        help="override the network's input shape; for a network of several inputs, "
                             "once per input, in order or as NAME=C,H,W")
        sp.add_argument("--network", metavar="NAME", help="which network, when the spec has several")
        sp.add_argument("--format", choices=("table", "json"), default="table", help="output format")
        sp.add_argument("--depth", type=_positive_int, metavar="N",
                        help=f"show modules down to depth N ({depth_default_help})")
        sp.add_argument("--limit", action="append", default=[], metavar="NAME=VALUE",
                        help="change a safety limit, e.g. max_params=1e11 (see docs/cli.md)")
        sp.add_argument("--import-path", action="append", default=[], metavar="DIR",
                        help="a directory where imports are also looked for; repeatable")

    b = sub.add_parser("build", help="check a spec, build the PyTorch model, print its layer table")
    common(b, "default 2 for the table, all for json")
    b.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or meta (default cpu)")
    b.add_argument("--save", metavar="PATH", help="write the model's state_dict to PATH")
    b.add_argument("--weights", metavar="FILE",
                   help="load this state_dict into the model, strictly (a bare state_dict, or one "
                        "under \"state_dict\" or \"model\"); a key mismatch is reported as "
                        "`verify` does, exit 1")
    b.add_argument("--force", action="store_true",
                   help="let --save replace an existing file that is not a PyTorch checkpoint")
    b.add_argument("--no-fvcore", action="store_true",
                   help="skip the fvcore cross-check of the static MAC count")
    b.add_argument("--fuse", action="store_true",
                   help="fold each batch norm into the convolution before it, for inference "
                        "(the model is then eval-only)")

    c = sub.add_parser("check", help="check a spec and print its layer table, without building it")
    common(c, "default 2 for the table, all for json")
    c.add_argument("--emit-ir", action="store_true", help="print the checked IR as JSON")
    c.add_argument("--no-cache", action="store_true",
                   help="check in full, neither using nor updating the result cache")

    e = sub.add_parser("explain", help="explain an error code, e.g. netdsl explain E0301; "
                                       "without a code, list them all")
    e.add_argument("code", nargs="?")

    ls = sub.add_parser("lsp", help="run the language server on stdin/stdout, for editors")
    ls.add_argument("--stdio", action="store_true",
                    help="accepted for clients that pass it; stdio is the only transport")

    for name in COMMANDS:
        importlib.import_module(f"netdsl.commands.{name}").register(sub, common)
    return p


def _overrides(items: list[str]) -> dict[str, str]:
    """NAME -> expression text of each ``--set NAME=VALUE``; the API parses them."""
    out = {}
    for item in items:
        name, eq, value = item.partition("=")
        name = name.strip()
        if not eq or not name.isidentifier():
            raise _UsageError(f"--set expects NAME=VALUE, got {item!r}")
        if name in out:
            raise _UsageError(f"--set {name} is given twice")
        out[name] = value.strip()
    return out


def _shape(text):
    """One --input (``C,H,W``), or several: shapes in order, or by name (``rgb=3,224,224``)."""
    if text is None:
        return None
    if isinstance(text, list):
        named = [t.partition("=") for t in text]
        if all(sep for _, sep, _ in named):
            out = {}
            for name, _, dims in named:
                if name.strip() in out:
                    raise _UsageError(f"--input {name.strip()} is given twice")
                out[name.strip()] = _shape(dims)
            return out
        if any(sep for _, sep, _ in named):
            raise _UsageError("--input: give every shape by name (NAME=C,H,W) or none")
        return _shape(text[0]) if len(text) == 1 else tuple(_shape(t) for t in text)
    try:
        dims = tuple(int(x) for x in text.replace("x", ",").split(","))
    except ValueError:
        raise _UsageError(f"--input expects C,H,W (integers), got {text!r}") from None
    if len(dims) not in (1, 3) or any(d < 1 for d in dims):
        raise _UsageError(f"--input expects three positive integers C,H,W, got {text!r}")
    return dims


def _limits(items: list[str]):
    from .limits import Limits

    changes = {}
    for item in items:
        name, eq, value = item.partition("=")
        if not eq or name not in Limits.names():
            raise _UsageError(f"--limit expects NAME=VALUE with NAME one of {', '.join(Limits.names())}")
        changes[name] = _limit_value(name, value)
    try:
        return Limits().replace(**changes)
    except ValueError as e:  # over a cap: the message says the range and why
        raise _UsageError(f"--limit {e}".replace("Limits.", "", 1)) from None


def _limit_value(name: str, text: str) -> int:
    """``1e9`` and ``1.5e3`` are integers; ``1e-5`` and ``2.5`` are not, and are refused
    rather than rounded (to 0, which would refuse every spec)."""
    from decimal import Decimal, InvalidOperation

    try:
        d = Decimal(text.strip())
    except InvalidOperation:
        d = None
    if d is None or not d.is_finite() or d != d.to_integral_value() or d < 0:
        raise _UsageError(f"--limit {name} needs a non-negative integer (such as 1000 or 1e9), "
                          f"got {text!r}")
    if d.adjusted() > 19:  # over 2^63 whatever the cap: do not build a huge int
        raise _UsageError(f"--limit {name} must be at most {2**63 - 1:,}, got {text!r}")
    return int(d)


def _import_dirs(args) -> list[str]:
    """``--import-path`` directories, each checked to be one (a usage error if not)."""
    for d in args.import_path:
        if not os.path.isdir(d):
            raise _UsageError(f"--import-path {d!r} is not a directory")
    return args.import_path


def _compile(args):
    from .api import compile_spec

    limits = _limits(args.limit)
    _import_dirs(args)
    return compile_spec(args.spec, _overrides(args.overrides), network=args.network,
                        input=_shape(args.input), limits=limits, import_path=args.import_path,
                        origin="cli")


def _device(name: str):
    from .lower import DeviceError, target_device

    try:
        return target_device(name)
    except DeviceError as e:
        raise _UsageError(str(e)) from None


def cmd_check(args) -> int:
    import json

    from .analysis import analyse
    from .table import render_table, to_json

    net = _compile(args)
    if args.emit_ir:
        print(net.model_dump_json(indent=2))
        return 0
    a = analyse(net)
    if args.format == "json":
        # The same keys as `build`, so one reader serves both: nothing was built or traced.
        print(json.dumps(to_json(a, args.depth, fvcore=None, device=None)))
    else:
        print(render_table(a, args.depth or 2))
    return 0


def fvcore_total(model, input_shape, device) -> int:
    """``FlopCountAnalysis(model, x).total()`` for a batch of one, in eval mode, quietly;
    ``input_shape`` is one shape, or a list of them for a network of several inputs.

    Batch 1 always runs: `check` refuses what cannot (a batch norm that uses batch
    statistics on one value per channel, E0306).
    """
    import logging
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # importing fvcore trips torch.jit deprecation warnings
        from fvcore.nn import FlopCountAnalysis

    logging.getLogger("fvcore").setLevel(logging.ERROR)
    was_training = model.training
    model.eval()
    try:
        shapes = input_shape if isinstance(input_shape, list) else [input_shape]
        x = tuple(torch.zeros((1, *s), device=device) for s in shapes)
        x = x[0] if len(x) == 1 else x
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # fvcore's tracer warns about deprecated torch.jit APIs
            fca = FlopCountAnalysis(model, x)
            fca.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            total = fca.total()
    finally:
        model.train(was_training)
    return int(total)


def _save_target(args, device):
    """Where --save will write, checked before anything is built."""
    from .checkpoint import SaveError, check_target

    if args.save is None:
        if args.force:
            raise _UsageError("--force only applies to --save")
        return None
    if device.type == "meta":
        raise _UsageError("--save: a model built on the meta device has no values to save; "
                          "build on cpu or cuda")
    try:
        return check_target(args.save, force=args.force, keep=(args.spec,))
    except SaveError as e:
        raise _UsageError(str(e)) from None


@contextlib.contextmanager
def _memory(device, what: str):
    """Running out of memory is the machine's limit, not a bug: say so, as a usage error."""
    import torch

    oom = (MemoryError, getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError))
    try:
        yield
    except oom:
        raise _UsageError(f"not enough memory on {device} {what}; try --device meta") from None
    except RuntimeError as e:
        if "can't allocate memory" not in str(e):  # torch's CPU allocator says it this way
            raise
        raise _UsageError(f"not enough memory on {device} {what}; try --device meta") from None


def cmd_build(args) -> int:
    from .status import StatusLine

    # Seconds pass before the table (VGG-16: 5 to 13 s): on a terminal, say what is happening.
    with StatusLine(sys.stderr) as status:
        status.show("loading torch...")
        from .analysis import analyse
        from .lower import lower

        device = _device(args.device)
        if getattr(args, "fuse", False) and args.save:
            raise _UsageError("--fuse with --save: a fused state_dict loads only into a fused "
                              "model; save without --fuse, and fuse after loading")
        target = _save_target(args, device)
        status.show(f"checking {args.spec}...")
        net = _compile(args)
        a = analyse(net)
        weights = _read_weights(args, device)
        status.show(f"building `{net.name}`: {a.params:,} parameters on {device}...")
        with _memory(device, f"to build `{net.name}` ({a.params:,} parameters)"):
            model = lower(net, device=device)
        if weights is not None and not _load_weights(model, net, weights, args.weights):
            return 1
        built = sum(p.numel() for p in model.parameters())
        if built != a.params:
            raise AssertionError(f"netdsl bug: built model has {built} parameters, analysis says {a.params}")
        total, note, mismatch, folded = None, None, False, None
        if device.type == "meta":
            note = "fvcore cross-check: skipped on the meta device (nothing to run)"
        elif args.no_fvcore:
            note = "fvcore cross-check: skipped (--no-fvcore)"
        else:
            status.show("counting MACs with fvcore to cross-check them (--no-fvcore skips this)...")
            with _memory(device, "for the fvcore cross-check (--no-fvcore skips it)"):
                total = fvcore_total(model, [i.shape for i in net.inputs] or [net.input_shape], device)
            mismatch = total != a.macs
            note = (f"fvcore cross-check: MISMATCH — static analysis says {a.macs:,} MACs, fvcore "
                    f"counts {total:,}; please report this as a netdsl bug" if mismatch else
                    "fvcore cross-check: static MACs equal fvcore's total")
        if getattr(args, "fuse", False) and device.type != "meta":
            from .fuse import fuse

            status.show("folding batch norms into convolutions (--fuse)...")
            folded = _count_bn(model)
            fuse(model)
            folded -= _count_bn(model)
            note = f"{note}\nfused: {folded} batch norms folded into the convolutions before them (eval only)"
        if target is not None:
            from .checkpoint import SaveError, save

            status.show(f"saving the state_dict to {args.save}...")
            try:
                save(model.state_dict(), args.save, target)
            except SaveError as e:
                raise _UsageError(str(e)) from None
    from .table import render_table, to_json

    if args.format == "json":
        import json

        extra = {"fvcore": total, "device": str(device)}
        if args.save:
            extra["saved"] = args.save
        if args.weights:
            extra["weights"] = args.weights
        if folded is not None:
            extra["fused"] = folded
        print(json.dumps(to_json(a, args.depth, **extra)))
    else:
        print(render_table(a, args.depth or 2, total, note))
        if args.weights:
            print(f"weights loaded from {args.weights} ({len(weights):,} tensors, strict)")
        if args.save:
            print(f"state_dict saved to {args.save}")
    if mismatch:
        print(f"error: {note}", file=sys.stderr)
        return 3
    return 0


def _read_weights(args, device):
    """The state_dict of ``--weights``, read before anything is built."""
    from .checkpoint import ReadError, read

    if args.weights is None:
        return None
    if device.type == "meta":
        raise _UsageError("--weights: a model built on the meta device holds no values; "
                          "build on cpu or cuda")
    try:
        return read(args.weights)
    except ReadError as e:
        raise _UsageError(str(e)) from None


def _load_weights(model, net, weights, path: str) -> bool:
    """Load ``weights`` strictly; on a key or shape mismatch print the report that
    `verify` gives (each key beside its nearest match, with its spec line) and
    return False."""
    from .compare import check_keys, module_spans

    check = check_keys(model.state_dict(), weights, module_spans(net), theirs_name="file")
    if not check.ok:
        print(f"error: --weights {path} does not fit `{net.name}`: {check.summary}", file=sys.stderr)
        for line in check.details:
            print(f"  {line}", file=sys.stderr)
        return False
    model.load_state_dict(weights, strict=True)
    return True


def _count_bn(model) -> int:
    from torch import nn

    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def cmd_explain(args) -> int:
    import shutil

    from .catalogue import explain, render, titles

    if args.code is None:
        for code, title in titles().items():
            print(f"{code}  {title}")
        print("\nnetdsl explain CODE says what one means, with an example and the fix.")
        return 0
    text = explain(args.code)
    if text is None:
        raise _UsageError(f"unknown error code {args.code!r}; codes look like E0301 "
                          "(netdsl explain lists them)")
    # Wide enough for the examples' diagnostics, narrow enough to read as prose.
    print(render(text, width=min(shutil.get_terminal_size().columns, 100) - 1), end="")
    return 0


def cmd_lsp(args) -> int:
    try:
        from .lsp import serve
    except ModuleNotFoundError as e:
        if (e.name or "").partition(".")[0] not in ("pygls", "lsprotocol"):
            raise
        raise _UsageError("`netdsl lsp` needs pygls: pip install 'netdsl[lsp]' "
                          "(or pip install 'pygls>=2')") from None
    return serve()


def main(argv: list[str] | None = None, *, cache: bool | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``) and return its exit status.

    ``cache``: whether ``check`` may answer from, and record into, its result cache
    (netdsl/checkcache.py). By default only the command line itself does (``argv``
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
            raise _UsageError(f"give a command: {', '.join(names[:-1])} or {names[-1]}"
                              " (netdsl --help says more, netdsl --version prints the version)")
        run = getattr(args, "run", None)
        if run is not None:
            status = run(args)
            return status
        status = {"build": cmd_build, "check": cmd_check, "explain": cmd_explain,
                  "lsp": cmd_lsp}[args.command](args)
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
    from .diagnostics import NetdslError

    if isinstance(e, NetdslError):
        print(e.render(), file=sys.stderr)
        return 1
    if isinstance(e, _UsageError):
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

    from . import __version__

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


if __name__ == "__main__":
    sys.exit(main())
