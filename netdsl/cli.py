"""The ``netdsl`` command: ``build``, ``check``, ``explain`` and ``lsp``.

Exit status: 0 on success, 1 when the spec has errors (diagnostics on stderr),
2 for a usage error (bad flags, an unavailable device).
"""

from __future__ import annotations

import argparse
import json
import sys

from .diagnostics import NetdslError
from .limits import Limits


class _UsageError(Exception):
    pass


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="netdsl", description="Check, build and measure CNN specs.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(sp, depth_default_help: str):
        sp.add_argument("spec", help="path to a .net spec file")
        sp.add_argument("--set", dest="overrides", action="append", default=[], metavar="NAME=VALUE",
                        help="set a network hyperparameter (a netdsl expression: 10, 1.1, [3, 4], basic)")
        sp.add_argument("--input", metavar="C,H,W", help="override the network's input shape")
        sp.add_argument("--network", metavar="NAME", help="which network, when the spec has several")
        sp.add_argument("--format", choices=("table", "json"), default="table", help="output format")
        sp.add_argument("--depth", type=int, metavar="N",
                        help=f"show modules down to depth N ({depth_default_help})")
        sp.add_argument("--limit", action="append", default=[], metavar="NAME=VALUE",
                        help="change a safety limit, e.g. max_params=1e11 (see docs/cli.md)")

    b = sub.add_parser("build", help="check a spec, build the PyTorch model, print its layer table")
    common(b, "default 2 for the table, all for json")
    b.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or meta (default cpu)")
    b.add_argument("--save", metavar="PATH", help="write the model's state_dict to PATH")
    b.add_argument("--no-fvcore", action="store_true",
                   help="skip the fvcore cross-check of the static MAC count")

    c = sub.add_parser("check", help="check a spec and print its layer table, without building it")
    common(c, "default 2 for the table, all for json")
    c.add_argument("--emit-ir", action="store_true", help="print the checked IR as JSON")

    e = sub.add_parser("explain", help="explain an error code, e.g. netdsl explain E0301")
    e.add_argument("code")

    ls = sub.add_parser("lsp", help="run the language server on stdin/stdout, for editors")
    ls.add_argument("--stdio", action="store_true",
                    help="accepted for clients that pass it; stdio is the only transport")
    return p


def _overrides(items: list[str], limits: Limits) -> dict:
    from .parser import parse_expr

    out = {}
    for item in items:
        name, eq, value = item.partition("=")
        name = name.strip()
        if not eq or not name.isidentifier():
            raise _UsageError(f"--set expects NAME=VALUE, got {item!r}")
        if name in out:
            raise _UsageError(f"--set {name} is given twice")
        try:
            out[name] = parse_expr(value.strip(), limits)
        except NetdslError as e:
            # The value alone is parsed, so its position says nothing of which --set it was.
            raise NetdslError([d.with_notes(f"in --set {name}={value.strip()}") for d in e.diagnostics],
                              e.sources) from None
    return out


def _shape(text: str | None):
    if text is None:
        return None
    try:
        dims = tuple(int(x) for x in text.replace("x", ",").split(","))
    except ValueError:
        raise _UsageError(f"--input expects C,H,W (integers), got {text!r}") from None
    if len(dims) not in (1, 3) or any(d < 1 for d in dims):
        raise _UsageError(f"--input expects three positive integers C,H,W, got {text!r}")
    return dims


def _limits(items: list[str]) -> Limits:
    changes = {}
    for item in items:
        name, eq, value = item.partition("=")
        if not eq or name not in Limits.names():
            raise _UsageError(f"--limit expects NAME=VALUE with NAME one of {', '.join(Limits.names())}")
        try:
            changes[name] = int(float(value)) if "e" in value.lower() else int(value)
        except (ValueError, OverflowError):  # OverflowError: int(float("1e400"))
            raise _UsageError(f"--limit {name} needs an integer, got {value!r}") from None
        if changes[name] < 0:
            raise _UsageError(f"--limit {name} cannot be negative, got {value!r}")
    return Limits().replace(**changes)


def _compile(args):
    from .api import compile

    limits = _limits(args.limit)
    overrides = _overrides(args.overrides, limits)
    return compile(args.spec, network=args.network, input=_shape(args.input), limits=limits,
                   **overrides)


def _device(name: str):
    import torch

    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise _UsageError(f"unknown device {name!r}; use cpu, cuda, cuda:N or meta") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise _UsageError("--device cuda: CUDA is not available on this machine")
    if dev.type not in ("cpu", "cuda", "meta"):
        raise _UsageError(f"unsupported device {name!r}; use cpu, cuda or meta")
    return dev


def cmd_check(args) -> int:
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
    """``FlopCountAnalysis(model, x).total()`` for a batch of one, in eval mode, quietly."""
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
        x = torch.zeros((1, *input_shape), device=device)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # fvcore's tracer warns about deprecated torch.jit APIs
            fca = FlopCountAnalysis(model, x)
            fca.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            return int(fca.total())
    finally:
        model.train(was_training)


def cmd_build(args) -> int:
    import torch

    from .analysis import analyse
    from .lower import lower
    from .table import render_table, to_json

    device = _device(args.device)
    net = _compile(args)
    a = analyse(net)
    model = lower(net, device=device)
    built = sum(p.numel() for p in model.parameters())
    if built != a.params:
        raise AssertionError(f"netdsl bug: built model has {built} parameters, analysis says {a.params}")
    total, note, mismatch = None, None, False
    if device.type == "meta":
        note = "fvcore cross-check: skipped on the meta device (nothing to run)"
    elif args.no_fvcore:
        note = "fvcore cross-check: skipped (--no-fvcore)"
    else:
        total = fvcore_total(model, net.input_shape, device)
        mismatch = total != a.macs
        note = (f"fvcore cross-check: MISMATCH — static analysis says {a.macs:,} MACs, fvcore "
                f"counts {total:,}; please report this as a netdsl bug" if mismatch else
                "fvcore cross-check: static MACs equal fvcore's total")
    if args.save:
        try:
            torch.save(model.state_dict(), args.save)
        except OSError as e:
            raise _UsageError(f"--save {args.save}: {e.strerror or e}") from None
    if args.format == "json":
        extra = {"fvcore": total, "device": str(device)}
        if args.save:
            extra["saved"] = args.save
        print(json.dumps(to_json(a, args.depth, **extra)))
    else:
        print(render_table(a, args.depth or 2, total, note))
        if args.save:
            print(f"state_dict saved to {args.save}")
    if mismatch:
        print(f"error: {note}", file=sys.stderr)
        return 3
    return 0


def cmd_explain(args) -> int:
    from .catalogue import explain

    text = explain(args.code)
    if text is None:
        raise _UsageError(f"unknown error code {args.code!r}; codes look like E0301")
    print(text)
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


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return {"build": cmd_build, "check": cmd_check, "explain": cmd_explain,
                "lsp": cmd_lsp}[args.command](args)
    except NetdslError as e:
        print(e.render(), file=sys.stderr)
        return 1
    except _UsageError as e:
        print(f"netdsl: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
