"""Lowering: checked IR → ``torch.nn.Module``.

Module names come from the IR, so ``state_dict`` keys are predictable. One
module class per ``block`` definition, named after it. Lowering never sees an
invalid IR: an exception here is a bug in netdsl, not in the spec.
"""

from __future__ import annotations

import torch
from torch import nn

from .. import ir
from ..layers import LAYERS, OUTPUT_NOT_SAVED, PASS_THROUGH
from .runtime import Block, Chain, ConcatOp, Container, DenseOp, FunctionOp, GateOp, GraphOp, Group, Network, OutputMaker, ResidualOp, ScaleOp, SequentialBlock, SideOp, SplitOp, _identity, add_op, cat_op, named_outputs, network_class, outputs_type, spec_class



def _leaf(node, device):
    """The module (or, for a bare-parameter kind, the parameter) of one layer."""
    return LAYERS[node.kind].build(node, device)


def init_parameter(tensor: torch.Tensor, scheme: ir.InitScheme) -> None:
    """Apply one declared initialisation scheme in place (``torch.nn.init``)."""
    a = scheme.args
    with torch.no_grad():
        fn = scheme.fn
        if fn == "kaiming_normal":
            nn.init.kaiming_normal_(tensor, a=a["a"], mode=a["mode"], nonlinearity=a["nonlinearity"])
        elif fn == "kaiming_uniform":
            nn.init.kaiming_uniform_(tensor, a=a["a"], mode=a["mode"], nonlinearity=a["nonlinearity"])
        elif fn == "xavier_normal":
            nn.init.xavier_normal_(tensor, gain=a["gain"])
        elif fn == "xavier_uniform":
            nn.init.xavier_uniform_(tensor, gain=a["gain"])
        elif fn == "normal":
            nn.init.normal_(tensor, a["mean"], a["std"])
        elif fn == "uniform":
            nn.init.uniform_(tensor, a["a"], a["b"])
        elif fn == "trunc_normal":
            nn.init.trunc_normal_(tensor, a["mean"], a["std"], a["a"], a["b"])
        elif fn == "constant":
            nn.init.constant_(tensor, a["val"])
        elif fn == "zeros":
            nn.init.zeros_(tensor)
        elif fn == "ones":
            nn.init.ones_(tensor)
        else:
            raise AssertionError(fn)


def _default_init(m: nn.Module, kind: str, pname: str, tensor: torch.Tensor) -> bool:
    """The module's own initialisation of one parameter, as its ``reset_parameters``
    does it; False for a module kind whose defaults are not known per parameter."""
    return LAYERS[kind].default_init(m, pname, tensor)


def initialise(m: nn.Module, declared: dict[str, ir.InitScheme], kind: str | None = None) -> None:
    """Initialise the parameters and buffers of one freshly allocated leaf module,
    each exactly once: a declared scheme where the spec gives one, else the
    module's own default (``reset_parameters``); batch-norm running statistics
    are reset.

    >>> lin = torch.nn.Linear(4, 2, device="meta").to_empty(device="cpu")
    >>> initialise(lin, {"bias": ir.InitScheme(fn="zeros")}, "linear")
    >>> lin.bias.tolist()
    [0.0, 0.0]
    """
    own = {k: p for k, p in m._parameters.items() if p is not None}  # named_parameters(recurse=False)
    with torch.no_grad():
        if not any(p in declared for p in own):
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()  # batch norm: running statistics included
            return
        undeclared = [p for p in own if p not in declared]
        if any(kind is None or not _default_init(m, kind, p, own[p]) for p in undeclared):
            m.reset_parameters()  # unknown kind: its defaults first, declared schemes on top
        for pname, scheme in declared.items():
            if pname in own:
                init_parameter(own[pname], scheme)
        if isinstance(m, nn.modules.batchnorm._NormBase):
            m.reset_running_stats()


def _has_state(m: nn.Module) -> bool:
    """Whether ``m`` owns a parameter or buffer, itself or below: ``next(m.parameters())``
    without its generators, which were a tenth of building a light network's modules.

    >>> _has_state(nn.ReLU()), _has_state(nn.BatchNorm2d(2, affine=False))
    (False, True)
    """
    return (any(p is not None for p in m._parameters.values())
            or any(b is not None for b in m._buffers.values())
            or any(_has_state(c) for c in m._modules.values() if c is not None))


def _output_free(nodes) -> bool | None:
    """Whether a sequence's output is a new tensor no backward needs (True), may be
    needed or is unknown (False), or is its input passed through (None)."""
    for node in reversed(nodes):
        if isinstance(node, ir.Side):
            continue  # runs beside the sequence; its output is not the sequence's
        if isinstance(node, ir.Scope):
            inner = _output_free(node.body)
            if inner is None:
                continue
            return inner
        if isinstance(node, ir.Layer):
            if node.kind in PASS_THROUGH:
                continue  # its input or, in training, a product nothing keeps
            return node.kind in OUTPUT_NOT_SAVED
        # cat (concat, dense), x * body(x) (gate) and a residual's add keep only their
        # inputs; a nested residual adds in place only into an output nothing keeps.
        return isinstance(node, (ir.Residual, ir.Concat, ir.Dense, ir.Gate))
    return None


def _add_in_place(body) -> bool:
    """Whether a residual may add the shortcut into its body's output in place, as
    torchvision's blocks do (``out += identity``): only when that output is a tensor
    the body made and autograd did not save, else backward would see it changed.

    >>> import netdsl
    >>> net = netdsl.compile("network n() { input [3, 8, 8]\\n residual { conv2d(3, 1)\\n relu } }")
    >>> _add_in_place(net.body[0].body), _add_in_place(net.body[0].body[:1])
    (False, True)
    """
    return _output_free(body) is True


class DeviceError(ValueError):
    """A device a model cannot be built on here; the message names the accepted ones."""


_DEVICES = "cpu, cuda, cuda:N or meta"


def target_device(device=None) -> torch.device:
    """The device to build on, checked: ``None`` is torch's default device; ``cpu``,
    ``cuda``, ``cuda:N`` and ``meta`` (a str, an int N or a ``torch.device``) are
    accepted, anything else, or CUDA where there is none, is a DeviceError. The CLI's
    ``--device`` and the API's ``device=`` both go through here.

    >>> target_device("cpu")
    device(type='cpu')
    >>> target_device("tpu")
    Traceback (most recent call last):
      ...
    netdsl.backend.lower.DeviceError: unknown device 'tpu'; use cpu, cuda, cuda:N or meta
    """
    if device is None:
        return torch.get_default_device()
    if isinstance(device, bool) or not isinstance(device, (str, int, torch.device)):
        raise TypeError(f'device must be a str such as "cpu" or "cuda:0", a torch.device or None, '
                        f"not {type(device).__name__}")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise DeviceError(f"unknown device {device!r}; use {_DEVICES}") from None
    if dev.type not in ("cpu", "cuda", "meta"):
        raise DeviceError(f"unsupported device {str(dev)!r}; use {_DEVICES}")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {str(dev)!r}: CUDA is not available on this machine; "
                              "use cpu or meta")
        n = torch.cuda.device_count()
        if dev.index is not None and dev.index >= n:
            raise DeviceError(f"device {str(dev)!r}: this machine has {n} CUDA device"
                              f"{'s' if n != 1 else ''}, cuda:0 to cuda:{n - 1}")
    return dev


def _pure(nodes) -> bool:
    """Whether a body is a plain sequence of modules, each called once: an nn.Sequential."""
    return all(isinstance(n, ir.Scope) or (isinstance(n, ir.Layer) and not n.reuse and not n.functional
                                           and not LAYERS[n.kind].bare_parameter)
               for n in nodes) and not _has_flow(nodes)


_has_flow = ir.has_flow


def _fuse(steps: list, out) -> list:
    """Join a one-input step into the one before it when nothing else reads what that one
    made, so a plain run of layers between names is one Chain; then say after which step
    each slot is read for the last time."""
    reads: dict[int, int] = {}
    for _, src, _ in steps:
        for i in src:
            reads[i] = reads.get(i, 0) + 1
    outs = out if isinstance(out, tuple) else (out,)
    for i in outs:
        reads[i] = reads.get(i, 0) + 1
    fused: list = []
    for fn, src, dst in steps:
        if (fused and len(src) == 1 and src[0] == fused[-1][2] and reads[src[0]] == 1
                and len(fused[-1][1]) == 1):
            prev = fused[-1][0]
            chain = list(prev.steps) if isinstance(prev, Chain) else [prev]
            fused[-1] = [Chain(chain + [fn]), fused[-1][1], dst]
        else:
            fused.append([fn, src, dst])
    last: dict[int, int] = {}
    for k, (_, src, _) in enumerate(fused):
        for i in src:
            last[i] = k
    keep = set(outs)
    return [(fn, tuple(src), dst, tuple(sorted(i for i in set(src) if last[i] == k and i not in keep)))
            for k, (fn, src, dst) in enumerate(fused)]


class _Lowering:
    def __init__(self, device):
        self.device = target_device(device)
        self.init = self.device.type != "meta"
        # Leaves that own parameters or buffers, with their IR node, in module order:
        # lower() materialises them on the target device and initialises each once.
        self.stateful: list[tuple[nn.Module, ir.Layer]] = []
        # Bare parameters (`scale`), with their owner module and IR node.
        self.bare: list[tuple[nn.Module, ir.Layer]] = []

    def module(self, node) -> nn.Module:
        if isinstance(node, ir.Scope):
            return self.scope(node)
        # Made on meta: a constructor on a real device would run the module's own
        # initialisation, which a declared `init` then overwrites (twice the work).
        m = _leaf(node, "meta")
        if _has_state(m):
            self.stateful.append((m, node))
        return m

    def block_class(self, node: ir.Scope, pure: bool) -> type:
        if node.cls is None:
            return nn.Sequential if pure else Group
        return spec_class(SequentialBlock if pure else Block, node.cls, "netdsl.blocks",
                          f"Block `{node.block}` of a netdsl spec.")

    def scope(self, node: ir.Scope) -> nn.Module:
        pure = _pure(node.body)
        m = self.block_class(node, pure)()
        if pure:
            for child in node.body:
                m.add_module(child.name, self.module(child))
        else:
            _set_plan(m, self.plan(node.body, m))
        return m

    def graph(self, nodes, owner: nn.Module, inputs: tuple[str, ...] = (), result=None) -> GraphOp:
        """The plan of a body wired by name: slots for the inputs and each step's result."""
        names = {name: i for i, name in enumerate(inputs)}
        size = max(1, len(inputs))
        cur = 0
        steps: list = []

        def emit(nodes, owner):
            nonlocal cur, size
            for n in nodes:
                if isinstance(n, ir.Bind):
                    names[n.name] = cur
                    continue
                if isinstance(n, ir.From):
                    cur = names[n.name]
                    continue
                if isinstance(n, ir.Scope) and n.cls is None and _has_flow(n.body):
                    m = Container()
                    owner.add_module(n.name, m)
                    emit(n.body, m)
                    continue
                if isinstance(n, ir.Merge):
                    fn, src = (add_op if n.op == "add" else cat_op), tuple(names[s] for s in n.sources)
                else:
                    fn, src = self.step(n, owner), (cur,)
                steps.append([fn, src, size])
                cur, size = size, size + 1

        emit(nodes, owner)
        out = cur if result is None else tuple(names[s] for s in result.sources)
        return GraphOp(_fuse(steps, out), size, out)

    def plan(self, nodes, owner: nn.Module):
        if _has_flow(nodes):
            return self.graph(nodes, owner)
        steps = [self.step(n, owner) for n in nodes]
        if not steps:
            return _identity
        return steps[0] if len(steps) == 1 else Chain(steps)

    def step(self, node, owner: nn.Module):
        if isinstance(node, ir.Layer) and node.reuse:
            return owner._modules[node.name]  # the module its label made, called again
        if isinstance(node, ir.Layer) and node.functional:
            return FunctionOp.of(node)
        if isinstance(node, ir.Layer) and LAYERS[node.kind].bare_parameter:
            owner.register_parameter(node.name, _leaf(node, "meta"))
            self.bare.append((owner, node))
            return ScaleOp(owner, node.name)
        if isinstance(node, (ir.Layer, ir.Scope)):
            m = self.module(node)
            owner.add_module(node.name, m)
            return m
        if isinstance(node, ir.Residual):
            body = self.plan(node.body, owner)
            shortcut = None if node.shortcut is None else self.plan(node.shortcut, owner)
            return ResidualOp(body, shortcut, inplace=_add_in_place(node.body))
        if isinstance(node, ir.Concat):
            return ConcatOp(self.plan(b, owner) for b in node.branches)
        if isinstance(node, ir.Dense):
            return DenseOp(self.plan(layer, owner) for layer in node.layers)
        if isinstance(node, ir.Gate):
            return GateOp(self.plan(node.body, owner))
        if isinstance(node, ir.Side):
            return SideOp(node.name, self.plan(node.body, owner))
        if isinstance(node, ir.Split):
            return SplitOp(node.sizes, (self.plan(p, owner) for p in node.parts))
        raise AssertionError(type(node))


def _set_plan(module: nn.Module, plan) -> None:
    # A plan may itself be a child module (a one-step body); plain attribute
    # assignment would register it a second time, under the name `_plan`.
    object.__setattr__(module, "_plan", plan)


def _allocate(root: nn.Module, device) -> None:
    """``root.to_empty(device=device)`` for a tree just made on the meta device.

    ``to_empty`` goes through ``Module._apply`` and ``torch.empty_like`` of each meta
    tensor, whose Python reference implementation was a quarter of lowering
    EfficientNet-B0; a fresh tree has no hooks or views to preserve, so each
    tensor is replaced by ``torch.empty`` of its shape.

    >>> m = torch.nn.BatchNorm2d(3, device="meta"); _allocate(m, torch.device("cpu"))
    >>> m.weight.device.type, m.running_mean.shape, isinstance(m.weight, torch.nn.Parameter)
    ('cpu', torch.Size([3]), True)
    """
    for m in root.modules():
        for name, p in m._parameters.items():
            if p is not None:
                m._parameters[name] = nn.Parameter(torch.empty(p.shape, dtype=p.dtype, device=device),
                                                   requires_grad=p.requires_grad)
        for name, b in m._buffers.items():
            if b is not None:
                m._buffers[name] = torch.empty(b.shape, dtype=b.dtype, device=device)


def lower(net: ir.Network, device=None) -> nn.Module:
    """Build the module of a checked network, its parameters made on ``device``.

    Modules are made on the meta device, then their storage is allocated once on
    ``device`` (default: torch's default device) and each parameter initialised
    once there, by its declared ``init`` scheme or the module's own default.
    ``device="meta"`` allocates no memory and skips initialisation.

    >>> import netdsl
    >>> m = lower(netdsl.compile("network n() { input [3, 8, 8]\\n c: conv2d(4, 3) }"), "meta")
    >>> m.c.weight.shape, m.c.weight.device.type
    (torch.Size([4, 3, 3, 3]), 'meta')
    """
    low = _Lowering(device)
    inputs = tuple(i.name for i in net.inputs)
    root = network_class(net.cls, f"Network `{net.name}` of a netdsl spec.", inputs)()
    root.spec_name = net.name
    root.input_shape = tuple(net.input_shape)
    root._ndim = len(net.input_shape) + 1
    if net.inputs or net.result is not None or _has_flow(net.body):
        root._input_shapes = tuple(tuple(i.shape) for i in net.inputs)
        _set_plan(root, low.graph(net.body, root, inputs, net.result))
        if net.result is not None:
            root._result = OutputMaker(net.cls, net.result.form, net.result.keys)
        steps = []
    else:
        steps = [low.step(n, root) for n in net.body]
        _set_plan(root, steps[0] if len(steps) == 1 else (Chain(steps) if steps else _identity))
    root._steps = tuple(steps)
    if net.outputs:
        root._sides = True
        fields = net.sides_order or ("logits",) + tuple(net.outputs)
        root._outputs = named_outputs(net.sides_type or f"{net.cls}Outputs", fields)
        made = ("logits",) + tuple(net.outputs)  # the order the forward computes them in
        root._sides_order = tuple(made.index(f) for f in fields)
    if low.init:
        # Storage is allocated once, on the target device; nothing is made on the CPU first.
        _allocate(root, low.device)
        for m, node in low.stateful:
            initialise(m, node.init, node.kind)
        with torch.no_grad():
            for owner, node in low.bare:
                LAYERS[node.kind].initialise(node, getattr(owner, node.name))
    return root


__all__ = ["lower", "init_parameter", "initialise", "target_device", "DeviceError"]
