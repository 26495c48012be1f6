"""``netdsl build SPEC``: check a spec, build the PyTorch model, print its layer table
(with fvcore's cross-check of the MACs), and optionally load or save weights."""

from __future__ import annotations

import sys

from .common import (
    WEIGHTS_HELP,
    UsageError,
    compile_args,
    grant_of,
    load_weights,
    memory_guard,
    parse_device,
    read_weights,
    spec_arguments,
    table_arguments,
)
from .files import files_read

# fvcore traces the model with torch.jit and keeps every op's inputs: past a few thousand
# modules that costs minutes and gigabytes (10,000 one-channel convolutions in a concat:
# 22 s of CPU and 1.5 GB for 20,000 parameters), far more than the build itself.
FVCORE_MAX_MODULES = 5_000


def register(sub) -> None:
    b = sub.add_parser("build", help="check a spec, build the PyTorch model, print its layer table")
    spec_arguments(b)
    table_arguments(b)
    b.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or meta (default cpu)")
    b.add_argument("--save", metavar="PATH", help="write the model's state_dict to PATH")
    b.add_argument("--weights", metavar="FILE", help=WEIGHTS_HELP)
    b.add_argument("--force", action="store_true",
                   help="let --save replace an existing file that is not a PyTorch checkpoint")
    b.add_argument("--no-fvcore", action="store_true",
                   help="skip the fvcore cross-check of the static MAC count")
    b.add_argument("--fuse", action="store_true",
                   help="fold each batch norm into the convolution before it, for inference "
                        "(the model is then eval-only)")
    b.set_defaults(run=run)


def run(args) -> int:
    from .status import StatusLine

    # Seconds pass before the table (VGG-16: 5 to 13 s): on a terminal, say what is happening.
    with StatusLine(sys.stderr) as status:
        status.show("loading torch...")
        from ..analysis.counts import analyse
        from ..backend.lower import lower

        device = parse_device(args.device)
        if getattr(args, "fuse", False) and args.save:
            raise UsageError("--fuse with --save: a fused state_dict loads only into a fused "
                              "model; save without --fuse, and fuse after loading")
        target = _save_target(args, device)
        status.show(f"checking {args.spec}...")
        net, read = files_read(lambda: compile_args(args))
        if target is not None:
            target = _save_target(args, device, read)  # nor over a file the spec imports
        a = analyse(net)
        weights = read_weights(args.weights, device)
        status.show(f"building `{net.name}`: {a.params:,} parameters on {device}...")
        with memory_guard(device, f"to build `{net.name}` ({a.params:,} parameters)"):
            model = lower(net, device=device, grant=grant_of(args))
        if weights is not None and not load_weights(model, net, weights, args.weights):
            return 1
        built = sum(p.numel() for p in model.parameters())
        if built != a.params:
            raise AssertionError(f"netdsl bug: built model has {built} parameters, analysis says {a.params}")
        total, note, mismatch, folded = None, None, False, None
        if device.type == "meta":
            note = "fvcore cross-check: skipped on the meta device (nothing to run)"
        elif args.no_fvcore:
            note = "fvcore cross-check: skipped (--no-fvcore)"
        elif len(a.rows) > FVCORE_MAX_MODULES:
            note = (f"fvcore cross-check: skipped: {len(a.rows):,} modules, over the "
                    f"{FVCORE_MAX_MODULES:,} that fvcore's trace counts in reasonable time and memory")
        else:
            status.show("counting MACs with fvcore to cross-check them (--no-fvcore skips this)...")
            with memory_guard(device, "for the fvcore cross-check (--no-fvcore skips it)"):
                total = fvcore_total(model, [i.shape for i in net.inputs] or [net.input_shape], device)
            mismatch = total != a.macs
            note = (f"fvcore cross-check: MISMATCH — static analysis says {a.macs:,} MACs, fvcore "
                    f"counts {total:,}; please report this as a netdsl bug" if mismatch else
                    "fvcore cross-check: static MACs equal fvcore's total")
        if getattr(args, "fuse", False) and device.type != "meta":
            from ..backend.fuse import fuse

            status.show("folding batch norms into convolutions (--fuse)...")
            folded = _count_bn(model)
            fuse(model)
            folded -= _count_bn(model)
            note = f"{note}\nfused: {folded} batch norms folded into the convolutions before them (eval only)"
        if target is not None:
            from ..backend.checkpoint import SaveError, save

            status.show(f"saving the state_dict to {args.save}...")
            try:
                save(model.state_dict(), args.save, target)
            except SaveError as e:
                raise UsageError(str(e)) from None
    from ..analysis.table import render_table, to_json

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
        inputs = tuple(torch.zeros((1, *s), device=device) for s in shapes)
        x = inputs[0] if len(inputs) == 1 else inputs
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # fvcore's tracer warns about deprecated torch.jit APIs
            fca = FlopCountAnalysis(model, x)
            fca.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            total = fca.total()
    finally:
        model.train(was_training)
    return int(total)


def _save_target(args, device, imports=()):
    """Where --save will write, checked before anything is built (and again, once the
    spec is read, against the files it imports)."""
    from ..backend.checkpoint import SaveError, check_target

    if args.save is None:
        if args.force:
            raise UsageError("--force only applies to --save")
        return None
    if device.type == "meta":
        raise UsageError("--save: a model built on the meta device has no values to save; "
                          "build on cpu or cuda")
    try:
        return check_target(args.save, force=args.force, keep=(args.spec, *imports))
    except SaveError as e:
        raise UsageError(str(e)) from None


def _count_bn(model) -> int:
    from torch import nn

    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
