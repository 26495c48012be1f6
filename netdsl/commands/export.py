"""``netdsl export SPEC --format onnx -o model.onnx``: the built model in another format.

``onnx`` writes an ONNX model (netdsl/onnx_export.py; needs ``pip install
'netdsl[onnx]'``). ``python`` is the spec as plain PyTorch source.
"""

from __future__ import annotations

import os

FORMATS = ("onnx", "python")


def register(sub, common) -> None:
    from ..cli import _positive_int

    sp = sub.add_parser("export", help="write the built model as an ONNX file (--format onnx) "
                                       "or as PyTorch source (--format python)")
    sp.add_argument("spec", help="path to a .net spec file")
    sp.add_argument("--format", required=True, choices=FORMATS,
                    help="onnx: an ONNX model (needs pip install 'netdsl[onnx]'); "
                         "python: PyTorch source with no netdsl import")
    sp.add_argument("-o", "--output", metavar="PATH", help="the file to write")
    sp.add_argument("--opset", type=_positive_int, metavar="N",
                    help="ONNX opset version (default: torch's exporter's)")
    sp.add_argument("--set", dest="overrides", action="append", default=[], metavar="NAME=VALUE",
                    help="set a network hyperparameter (a netdsl expression: 10, 1.1, [3, 4], basic)")
    sp.add_argument("--input", metavar="C,H,W", help="override the network's input shape")
    sp.add_argument("--network", metavar="NAME", help="which network, when the spec has several")
    sp.add_argument("--limit", action="append", default=[], metavar="NAME=VALUE",
                    help="change a safety limit, e.g. max_params=1e11 (see docs/cli.md)")
    sp.add_argument("--import-path", action="append", default=[], metavar="DIR",
                    help="a directory where imports are also looked for; repeatable")
    sp.set_defaults(run=run)


def _target(path: str | None, spec: str) -> str:
    from ..cli import UsageError

    if not path:
        raise UsageError("export --format onnx needs -o FILE, e.g. -o model.onnx")
    if os.path.isdir(path):
        raise UsageError(f"-o {path}: is a directory; give a file name inside it")
    parent = os.path.dirname(path) or "."
    if not os.path.isdir(parent):
        raise UsageError(f"-o {path}: the directory {parent} does not exist")
    if os.path.exists(path) and os.path.samefile(path, spec):
        raise UsageError(f"-o {path}: is the spec being exported; give another file name")
    return path


def run(args) -> int:
    from ..cli import UsageError, _compile

    if args.opset is not None and args.format != "onnx":
        raise UsageError("--opset only applies to --format onnx")
    if args.format == "python":
        raise UsageError("--format python is not available in this version of netdsl")
    from ..onnx_export import MissingExtra, require

    try:  # before anything is built: a missing extra is the user's setup, said at once
        require()
    except MissingExtra as e:
        raise UsageError(str(e)) from None
    path = _target(args.output, args.spec)
    net = _compile(args)

    import torch

    from ..lower import lower
    from ..onnx_export import export

    model = lower(net, device="cpu").eval()
    # Batch 2: the exporter would specialise a batch of 1 and fix the batch size.
    x = torch.zeros(2, *net.input_shape)
    export(model, x, path, opset=args.opset)
    print(f"{path}: ONNX model of `{net.name}`, input [N, {', '.join(map(str, net.input_shape))}], "
          f"checked by onnx.checker")
    return 0
