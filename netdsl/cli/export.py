"""``netdsl export``: the network as a standalone file, PyTorch source or ONNX."""

from __future__ import annotations

import contextlib
import os
import re
import sys
from pathlib import Path

from .common import (
    WEIGHTS_HELP,
    UsageError,
    check_import_dirs,
    grant_of,
    load_weights,
    parse_input,
    parse_limits,
    parse_overrides,
    positive_int,
    read_weights,
    spec_arguments,
)
from .files import Refused, check_target, files_read, stamp, write_atomic


def register(sub) -> None:
    sp = sub.add_parser("export", help="write the network as PyTorch source (--format python) "
                                       "or ONNX (--format onnx)")
    spec_arguments(sp)
    sp.add_argument("--format", choices=("python", "onnx"), default="python",
                    help="python: one .py file defining the network, without netdsl (default); "
                         "onnx: an ONNX model (needs the [onnx] extra)")
    sp.add_argument("-o", "--output", metavar="PATH",
                    help="write to PATH (atomically) instead of stdout; required for onnx")
    sp.add_argument("--force", action="store_true",
                    help="let -o replace an existing file that netdsl did not write, or that was "
                         "changed since (never the spec or a file it imports)")
    sp.add_argument("--opset", type=positive_int, metavar="N",
                    help="ONNX opset version (default: torch's exporter's)")
    sp.add_argument("--weights", metavar="FILE",
                    help="onnx: " + WEIGHTS_HELP + "; python: check that the file loads into the "
                         "exported class (the .py holds no weights). Without it, an ONNX file holds "
                         "freshly initialised weights")
    sp.set_defaults(run=run)


def run(args) -> int:
    if args.format == "onnx" and not args.output:
        raise UsageError("--format onnx needs -o FILE (it writes a binary file), e.g. -o model.onnx")
    if args.opset is not None and args.format != "onnx":
        raise UsageError("--opset only applies to --format onnx")
    if args.format == "onnx":
        from ..backend.onnx import MissingExtra, require

        try:  # before anything is built: a missing extra is the user's setup, said at once
            require()
        except MissingExtra as e:
            raise UsageError(str(e)) from None
    limits = parse_limits(args.limit)
    check_import_dirs(args)
    overrides = parse_overrides(args.overrides)
    grant = grant_of(args)
    weights = read_weights(args.weights)  # before anything is built: a bad file is said at once

    from ..api import compile_spec
    from ..backend.lower import lower

    if args.format == "python":
        from ..backend.codegen import generate

        source, read = files_read(lambda: generate(
            args.spec, overrides, network=args.network, input=parse_input(args.input), limits=limits,
            import_path=args.import_path, origin="cli", grant=grant))
        if weights is not None:
            net = compile_spec(args.spec, overrides, network=args.network, input=parse_input(args.input),
                               limits=limits, import_path=args.import_path, origin="cli", grant=grant)
            if not load_weights(lower(net, device="meta", grant=grant), net, weights, args.weights, load=False):
                return 1
        if args.output is None:
            sys.stdout.write(source)
        else:
            t = _target(args, read)
            _write(t, stamp(source, "python").encode("utf-8"), args.output)
            print(f"wrote {args.output}", file=sys.stderr)
        if weights is not None:
            # The header names the network's class (blocks' classes come before it).
            found = re.search(r"^# model = (\w+)\(\)", source, re.M)
            cls = found.group(1) if found else "the network's class"
            print(f"{args.weights} fits: load it with model.load_state_dict(torch.load("
                  f"{args.weights!r}, weights_only=True)) after model = {cls}()", file=sys.stderr)
        return 0
    import torch

    from ..backend.onnx import OpsetError, export, io_names, problems, verify
    from ..diagnostics import NetdslError

    net, read = files_read(lambda: compile_spec(
        args.spec, overrides, network=args.network, input=parse_input(args.input), limits=limits,
        import_path=args.import_path, origin="cli", grant=grant))
    refused = problems(net)
    if refused:  # what the file could not do as the model does, said where it is in the spec
        raise NetdslError(refused, _texts(read))
    t = _target(args, read)
    model = lower(net, device="cpu", grant=grant).eval()
    if weights is None:
        print(f"note: no --weights: {args.output} holds freshly initialised weights, not trained ones",
              file=sys.stderr)
    elif not load_weights(model, net, weights, args.weights):
        return 1
    # Batch 2: the exporter would specialise a batch of 1 and fix the batch size.
    inputs = tuple(torch.zeros(2, *i.shape) for i in net.inputs) or (torch.zeros(2, *net.input_shape),)
    # Written beside the target under another name, checked, then moved over it: an
    # export that fails leaves the target as it was.
    tmp = t.with_name(f".{t.name}.{os.getpid()}.tmp.onnx")
    try:
        names_in, names_out = io_names(net)
        try:
            export(model, inputs, str(tmp), opset=args.opset, input_names=names_in, output_names=names_out)
        except OpsetError as e:
            raise UsageError(f"{e}; nothing was written to {args.output}") from None
        wrong = verify(tmp, model, inputs)
        if wrong is not None:
            raise UsageError(f"the ONNX file of `{net.name}` does not do what the model does ({wrong}); "
                             f"nothing was written to {args.output}. This is netdsl's to fix: please report it")
        os.replace(tmp, t)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    shapes = "; ".join(f"[N, {', '.join(map(str, s))}]" for s in
                       ([tuple(i.shape) for i in net.inputs] or [tuple(net.input_shape)]))
    print(f"{args.output}: ONNX model of `{net.name}`, input {shapes}, checked by onnx.checker")
    return 0


def _texts(paths) -> dict[str | None, str]:
    """The text of each file the spec read, for diagnostics to quote (best effort)."""
    out: dict[str | None, str] = {}
    for p in paths:
        with contextlib.suppress(OSError, UnicodeDecodeError):
            out[str(p)] = Path(p).read_text(encoding="utf-8")
    return out


def _target(args, read) -> Path:
    try:
        return check_target(args.output, force=args.force, spec=args.spec, imports=read)
    except Refused as e:
        raise UsageError(str(e)) from None


def _write(t: Path, data: bytes, shown: str) -> None:
    try:
        write_atomic(t, data, shown)
    except Refused as e:
        raise UsageError(str(e)) from None
