"""ONNX export of a built model, with the optional ``onnx`` extra.

``torch.onnx.export`` with torch's own exporter (``dynamo=True``, through
``torch.export``), the batch dimension left free, the weights inside the one
file while they fit ONNX's 2 GB protobuf limit, and the result checked by
``onnx.checker`` before it is called written. Needs ``onnx`` and ``onnxscript``
(``pip install 'netdsl[onnx]'``, which also brings ``onnxruntime`` to run it).
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from pathlib import Path

# The extra's packages; torch.onnx's exporter imports the first two.
NEEDS = ("onnx", "onnxscript")
INSTALL = "pip install 'netdsl[onnx]'"

# Weights over this many bytes go to a `.data` file beside the model: one protobuf
# message may not exceed 2 GiB, and the graph needs some room too.
_INLINE_LIMIT = 1_800_000_000


class MissingExtra(ImportError):
    """A package of the ``onnx`` extra is not installed; the message says how to install it."""


def require() -> None:
    """Raise MissingExtra unless the packages ONNX export needs can be imported.

    >>> require()  # the test environment installs the extra
    """
    import importlib.util

    missing = [name for name in NEEDS if importlib.util.find_spec(name) is None]
    if missing:
        raise MissingExtra(f"ONNX export needs {' and '.join(missing)}: {INSTALL}")


def export(model, example_inputs, path, opset: int | None = None, *, dynamic_batch: bool = True,
           input_names: list[str] | None = None, output_names: list[str] | None = None) -> Path:
    """Write ``model`` (eval mode) to the ONNX file ``path`` and check it; returns the path.

    ``example_inputs`` is a tensor or a tuple of the arguments of one forward call.
    The batch dimension stays free (``dynamic_batch``): the file runs on any batch
    size. The file's inputs and outputs are named ``input_names`` and
    ``output_names`` (:func:`io_names` gives a network's own); by default one input
    ``input`` and one output ``logits``.
    ``opset`` is the ONNX opset version, default torch's. A network with
    side outputs is exported as it runs in eval mode, main output only. The
    temporary switch to eval mode is undone afterwards.

    >>> import tempfile, netdsl, onnx, torch
    >>> model = netdsl.build("network n() { input [3, 8, 8]\\n conv: conv2d(4, 3)\\n relu }")
    >>> p = export(model, torch.randn(2, 3, 8, 8), Path(tempfile.mkdtemp()) / "n.onnx", opset=18)
    >>> m = onnx.load(p)
    >>> [n.op_type for n in m.graph.node], m.opset_import[0].version
    (['Conv', 'Relu'], 18)
    >>> m.graph.input[0].name, m.graph.output[0].name
    ('input', 'logits')
    """
    require()
    import onnx
    import torch

    args = example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)
    path = Path(path)
    dynamic = None
    if dynamic_batch:
        batch = torch.export.Dim("batch")
        dynamic = tuple({0: batch} if isinstance(a, torch.Tensor) else None for a in args)
    if input_names is None:
        input_names = ["input"] if len(args) == 1 else [f"input{i}" for i in range(len(args))]
    if output_names is None:
        output_names = ["logits"]
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    was_training = model.training
    model.eval()
    try:
        # The exporter reports its progress on stdout, warns about its own internals, and
        # logs (with a traceback) an opset it could not convert to: that one is said below.
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings(), _quiet(_LOGGERS):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(model, args, dynamo=True, opset_version=opset,
                                        dynamic_shapes=dynamic, input_names=input_names,
                                        output_names=output_names)
            assert program is not None  # dynamo=True gives a program (or raises)
            program.save(str(path), external_data=weights > _INLINE_LIMIT)
    finally:
        model.train(was_training)
    if opset is not None:
        got = next((o.version for o in onnx.load(os.fspath(path), load_external_data=False).opset_import
                    if o.domain in ("", "ai.onnx")), None)
        if got != opset:
            raise OpsetError(f"torch's exporter could not write this model at opset {opset} (it wrote "
                             f"opset {got}: an operator here has no form at {opset}); use --opset {got}, "
                             "or leave --opset out")
    # By path: the checker reads weights kept in a `.data` file beside the model too.
    onnx.checker.check_model(os.fspath(path), full_check=True)
    return path


class OpsetError(ValueError):
    """The opset asked for is one the exporter could not write the model at."""


# Where torch's exporter and onnxscript's version converter log.
_LOGGERS = ("torch.onnx", "onnxscript", "onnx_ir")


@contextlib.contextmanager
def _quiet(names):
    """The loggers ``names`` silent below errors, for the length of the block."""
    import logging

    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def problems(net) -> list:
    """A located diagnostic (E0601) for each layer of ``net`` whose ONNX form onnxruntime
    would refuse, or would compute differently: what the catalogue's ``onnx_problem``
    says of each kind. Empty where the network exports as it runs.

    >>> import netdsl
    >>> net = netdsl.compile("network n() { input [3, 7, 7]\\n maxpool2d(2, padding = 1, ceil_mode = true) }")
    >>> [(d.code, d.span.line, d.span.column) for d in problems(net)]
    [('E0601', 2, 2)]
    """
    from ..diagnostics import Diagnostic
    from ..ir import walk
    from ..layers import KINDS
    from ..layers.base import Layer

    out = []
    for node in walk(net.body):
        if isinstance(node, Layer):
            found = KINDS[node.kind].onnx_problem(node)
            if found is not None:
                message, label, help_, _ = found
                out.append(Diagnostic("E0601", message, node.span, label, help_))
    return out


def verify(path, model, example_inputs, *, atol: float = 1e-4, rtol: float = 1e-4) -> str | None:
    """Run the ONNX file ``path`` in onnxruntime on ``example_inputs`` and compare each
    output with ``model``'s; None where all agree, else what went wrong. Without
    onnxruntime (not part of ``onnx``'s own needs), None."""
    import importlib.util

    if importlib.util.find_spec("onnxruntime") is None:
        return None
    import numpy as np
    import onnxruntime as ort
    import torch

    args = example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got = session.run(None, {i.name: a.numpy() for i, a in zip(session.get_inputs(), args, strict=True)})
    except Exception as e:  # onnxruntime's own error types
        return f"onnxruntime cannot run it: {str(e).strip().splitlines()[-1][:300]}"
    with torch.no_grad():
        want = model.eval()(*args)
    wanted = list(want.values()) if isinstance(want, dict) else list(want) if isinstance(want, tuple) else [want]
    if len(got) != len(wanted):
        return f"it gives {len(got)} outputs where the model gives {len(wanted)}"
    for i, (g, w) in enumerate(zip(got, wanted, strict=True)):
        w = w.numpy()
        if g.shape != w.shape:
            return f"output {i} has the shape {list(g.shape)} where the model gives {list(w.shape)}"
        if not np.allclose(g, w, atol=atol, rtol=rtol):
            return f"output {i} differs from the model's by up to {float(np.abs(g - w).max()):.3g}"
    return None


def io_names(net) -> tuple[list[str], list[str]]:
    """The names a network's ONNX file gives its inputs and outputs: the spec's named
    inputs (else ``input``), and the names its ``output`` gives (else ``logits``).

    >>> import netdsl
    >>> io_names(netdsl.compile("network n() { input rgb: [3, 4, 4]\\n input d: [1, 4, 4]\\n"
    ...                         " concat(rgb, d) -> both\\n output dict(seg: both, raw: rgb) }"))
    (['rgb', 'd'], ['seg', 'raw'])
    >>> io_names(netdsl.compile("network n() { input rgb: [3, 4, 4]\\n from rgb\\n relu -> r\\n"
    ...                         " output tuple(rgb, r) }"))
    (['rgb'], ['rgb_output', 'r'])
    """
    inputs = [i.name for i in net.inputs] or ["input"]
    outputs = list(net.result.keys) if net.result is not None and net.result.form != "tuple" else \
        list(net.result.sources) if net.result is not None else ["logits"]
    # ONNX names each value once: an output named as an input (an input returned as it
    # is, `output tuple(rgb, seg)`) is `rgb_output`.
    taken = set(inputs) | set(outputs)
    for i, name in enumerate(outputs):
        if name in inputs:
            new = f"{name}_output"
            while new in taken:
                new += "_"
            outputs[i] = new
            taken.add(new)
    return inputs, outputs


__all__ = ["export", "io_names", "problems", "verify", "require", "MissingExtra", "INSTALL"]
