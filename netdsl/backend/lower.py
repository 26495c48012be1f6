"""Lowering: checked IR → ``torch.nn.Module``.

Module names come from the IR, so ``state_dict`` keys are predictable. Module
classes are named after their ``block`` definition; which instances share one is
:mod:`netdsl.backend.forms`'s decision, the export's: forms of a block that differ
only in optional modules share a class whose forward calls each where it is not
None, and an instance without one holds None under its name (torchvision's
``downsample = None``). Lowering never sees an invalid IR: an exception here is
a bug in netdsl, not in the spec.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from torch import nn
from torch.nn.modules import module as _torch_module

from .. import ir
from ..ir.walk import Visitor
from ..layers import KINDS
from . import forward
from .forms import Form, Forms
from .runtime import Block, Container, Group, LayerNorm2d, Network, SequentialBlock, outputs_variable, spec_class


def _leaf(node, device):
    """The module (or, for a bare-parameter kind, the parameter) of one layer."""
    return KINDS[node.kind].build(node, device)


def init_parameter(tensor: torch.Tensor, scheme: ir.InitScheme) -> None:
    """Apply one declared initialisation scheme in place: ``torch.nn.init.<fn>_`` with the
    scheme's arguments, which the checker named as torch does (``mode``, ``gain``, ...).

    >>> t = torch.empty(3)
    >>> init_parameter(t, ir.InitScheme(fn="constant", args={"val": 0.5})); t.tolist()
    [0.5, 0.5, 0.5]
    """
    with torch.no_grad():
        getattr(nn.init, f"{scheme.fn}_")(tensor, **scheme.args)


def _default_init(m: nn.Module, kind: str, pname: str, tensor: torch.Tensor) -> bool:
    """The module's own initialisation of one parameter, as its ``reset_parameters``
    does it; False for a module kind whose defaults are not known per parameter."""
    return KINDS[kind].default_init(m, pname, tensor)


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
        reset = getattr(m, "reset_parameters", None)
        if not any(p in declared for p in own):
            if callable(reset):
                reset()  # batch norm: running statistics included
            return
        undeclared = [p for p in own if p not in declared]
        if callable(reset) and any(kind is None or not _default_init(m, kind, p, own[p]) for p in undeclared):
            reset()  # unknown kind: its defaults first, declared schemes on top
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


# Leaf classes whose ``reset_parameters`` writes every parameter and buffer their
# constructor makes, with the draws the constructor makes: given fresh storage and
# reset, a copy of one is the module its constructor gives. (Not ScaledStdConv2d,
# whose gain its constructor fills; not PReLU, nor anything this list does not name.)
_RESET_COVERS = frozenset({nn.Conv1d, nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.BatchNorm1d,
                           nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm, LayerNorm2d})
_IMMUTABLE = (bool, int, float, str, type(None), torch.dtype)
_HOOKS = ("_global_parameter_registration_hooks", "_global_buffer_registration_hooks",
          "_global_module_registration_hooks")


def _immutable(v) -> bool:
    return type(v) in _IMMUTABLE or (type(v) is tuple and all(_immutable(x) for x in v))


def _copyable(m: nn.Module, state: bool) -> bool:
    """Whether :func:`_copy` of ``m``, a leaf module just made, gives what its constructor
    gives: a leaf of plain values (numbers, strings, tuples, lists of them), no hooks,
    tensors of the plain types, and, where it has any, a class in ``_RESET_COVERS``.

    >>> _copyable(nn.Conv2d(2, 2, 1), True), _copyable(nn.PReLU(), True), _copyable(nn.ReLU(), False)
    (True, False, True)
    """
    if state and type(m) not in _RESET_COVERS:
        return False
    for k, v in m.__dict__.items():
        if k == "_parameters" or k == "_buffers":
            want = nn.Parameter if k == "_parameters" else torch.Tensor
            if any(t is not None and type(t) is not want for t in v.values()):
                return False
        elif type(v) in (dict, OrderedDict, set):
            if v and k != "_non_persistent_buffers_set":
                return False  # a hook or a submodule
        elif not (_immutable(v) or (type(v) is list and all(_immutable(x) for x in v))):
            return False
    return True


def _copy(proto: nn.Module, reset: bool) -> nn.Module:
    """A module of ``proto``'s class and configuration, without running its constructor,
    whose per-argument work and ``__setattr__`` calls were a fifth of building a light
    network's leaves: its attributes copied, its tensors new storage of the same shape,
    dtype and device, and ``reset_parameters()`` where ``reset``, which makes their
    values and draws as the constructor does. Only for a ``_copyable`` ``proto``.

    >>> _ = torch.manual_seed(0); a = nn.Conv2d(3, 4, 3); b = nn.Conv2d(3, 4, 3)
    >>> _ = torch.manual_seed(0); c = _copy(nn.Conv2d(3, 4, 3), True)
    >>> torch.equal(b.weight, c.weight), torch.equal(b.bias, c.bias), c.padding
    (True, True, (0, 0))
    >>> mine, its = c._reversed_padding_repeated_twice, a._reversed_padding_repeated_twice
    >>> mine == its, mine is its
    (True, False)
    """
    cls = type(proto)
    m: Any = cls.__new__(cls)
    d = m.__dict__
    for k, v in proto.__dict__.items():
        t = type(v)
        d[k] = t(v) if t is dict or t is OrderedDict or t is set or t is list else v
    params, buffers = d["_parameters"], d["_buffers"]
    for name, p in params.items():
        if p is not None:
            params[name] = nn.Parameter(torch.empty(p.shape, dtype=p.dtype, device=p.device),
                                        requires_grad=p.requires_grad)
    for name, b in buffers.items():
        if b is not None:
            buffers[name] = torch.empty(b.shape, dtype=b.dtype, device=b.device)
    if reset and (params or buffers):
        m.reset_parameters()
    return m


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


class _Lowering(Visitor):
    """Makes the module tree of a checked network: each layer's module (on the meta
    device), each block's and group's class with the forward the writer gives, and
    each module registered under its name in the order of its statements. A
    combinator owns no module: its bodies' modules belong to the enclosing block."""

    through = frozenset({"residual", "concat", "dense", "gate", "side", "split"})

    def __init__(self, device):
        self.device = target_device(device)
        self.init = self.device.type != "meta"
        # Leaves that own parameters or buffers, with their IR node, in module order:
        # lower() materialises them on the target device and initialises each once.
        self.stateful: list[tuple[nn.Module, ir.Layer]] = []
        # Bare parameters (`scale`), with their owner module and IR node.
        self.bare: list[tuple[nn.Module, ir.Layer]] = []
        # The first leaf of each configuration (device, class, arguments), and whether it
        # has state: the next ones are copies of it. Not while a global registration hook
        # is set, which a constructor calls and a copy would not.
        self.made: dict[tuple, tuple[nn.Module, bool]] = {}
        self.copies = not any(getattr(_torch_module, h, True) for h in _HOOKS)
        # Which block instances share a class, decided as the export decides it; each
        # block's and group's module with its form, for the classes given at the end.
        self.forms = Forms()
        self.scoped: list[tuple[nn.Module, Form]] = []

    def leaf(self, node: ir.Layer) -> nn.Module:
        kind = KINDS[node.kind]
        if self.init and (kind.own_init or not node.init and kind.factory):
            # Its own initialisation is what the spec asks for: made where it lives, as
            # its constructor makes it (storage allocated and drawn once).
            return self.make(kind, node, self.device)[0]
        # Made on meta: a constructor on a real device would run the module's own
        # initialisation, which a declared `init` then overwrites (twice the work).
        m, state = self.make(kind, node, "meta")
        if state:
            self.stateful.append((m, node))
        return m

    def make(self, kind, node: ir.Layer, device) -> tuple[nn.Module, bool]:
        """``kind.build(node, device)`` and whether the module has state; a module made
        as one before it in this lowering is a :func:`_copy` of that one, reset where
        it is made on a real device (as its constructor would). Never for an ``extern``
        class (``own_init``), whose constructor may do more than its attributes show."""
        if kind.own_init:
            m = _leaf(node, device)
            return m, _has_state(m)
        desc = kind.torch(node)
        key = (device, desc.cls, repr(desc.kwargs))  # repr: 0.0 and -0.0, 1 and True differ
        made = self.made.get(key)
        if made is not None:
            return _copy(made[0], device != "meta"), made[1]
        m = _leaf(node, device)
        state = _has_state(m)
        if self.copies and _copyable(m, state):
            self.made[key] = (m, state)
        return m, state

    def visit_layer(self, node: ir.Layer, owner: nn.Module) -> None:
        if node.reuse or node.functional:
            return  # the module its label made, or a torch function: nothing to register
        if KINDS[node.kind].bare_parameter:
            owner.register_parameter(node.name, _leaf(node, "meta"))
            self.bare.append((owner, node))
            return
        register(owner, node.name, self.leaf(node))

    def visit_scope(self, node: ir.Scope, owner: nn.Module) -> None:
        if forward.is_container(node):
            c = Container()
            register(owner, node.name, c)
            for n in node.body:
                self.visit(n, c)
            self.forms.register(node, c, None)
            return
        register(owner, node.name, self.scope(node))

    def visit_bind(self, node, owner) -> None:
        pass  # names a result; no module

    visit_from = visit_merge = visit_chunk = visit_bind

    def scope(self, node: ir.Scope) -> nn.Module:
        """The module of a block instance or labelled group."""
        doc = None if node.block is None else f"Block `{node.block}` of a netdsl spec."
        if forward.is_sequential(node.body):
            m = nn.Sequential() if node.cls is None else \
                spec_class(SequentialBlock, node.cls, "netdsl.blocks", doc)()
            for child in node.body:
                assert isinstance(child, (ir.Scope, ir.Layer))  # what is_sequential says
                m.add_module(child.name, self.scope(child) if isinstance(child, ir.Scope) else self.leaf(child))
            if node.cls is not None:
                self.forms.register(node, m, None)
            return m
        source = forward.write(node.body, scope=node).text()
        cls = spec_class(Group, "Group", "netdsl.groups", None, source) if node.cls is None else \
            spec_class(Block, node.cls, "netdsl.blocks", doc, source)
        m = cls()
        for n in node.body:
            self.visit(n, m)
        # Its class's forward is known once every instance of its block is registered.
        self.scoped.append((m, self.forms.register(node, m, source)))
        return m

    def share_classes(self) -> None:
        """Give the instances of a class that forms of a block share (the export's one
        ``Bottleneck``) that class: its forward calls each module some forms lack
        where it is not None, and an instance without one holds None under its name,
        as torchvision's ``self.downsample = None``."""
        for m, form in self.scoped:
            of = form.of
            if not of.optional:
                continue
            base, name, module, doc, _, outputs = type(m).__dict__["_recipe"]
            m.__class__ = spec_class(base, name, module, doc, of.source(form), outputs)
            for label in of.optional:
                if label not in m._modules:
                    setattr(m, label, None)

    def network(self, net: ir.Network) -> Network:
        """The root module: the network's class, with its forward, and its modules."""
        fwd = forward.write(net.body, net)
        outputs = None
        if net.outputs:  # side outputs: a named tuple in training
            outputs = (net.sides_type or f"{net.cls}Outputs", net.sides_order or ("logits",) + tuple(net.outputs))
        elif net.result is not None and net.result.form == "namedtuple":
            outputs = (f"{net.cls}Outputs", tuple(net.result.keys))
        source = fwd.text(outputs_variable(outputs[0]) if outputs else None)
        cls = spec_class(Network, net.cls, "netdsl.networks", f"Network `{net.name}` of a netdsl spec.",
                         source, outputs)
        root = cls()
        root.spec_name = net.name
        root.input_shape = tuple(net.input_shape)
        root.input_shapes = tuple(tuple(i.shape) for i in net.inputs)
        root.input_names = fwd.params if net.inputs else ()
        for n in net.body:
            self.visit(n, root)
        self.share_classes()
        return root


def register(owner: nn.Module, name: str, module: nn.Module) -> None:
    """``owner.add_module(name, module)``, where a dotted label (``"convs.0"``) makes
    the modules on its path, each a :class:`Container` (as a ``ModuleList`` holds its
    items), on first use: ``convs.0``, ``bns.0``, ``convs.1`` give timm's keys.

    >>> m = torch.nn.Module(); register(m, "convs.0", torch.nn.ReLU()); register(m, "convs.1", torch.nn.Tanh())
    >>> [name for name, _ in m.named_modules()]
    ['', 'convs', 'convs.0', 'convs.1']
    """
    *path, last = name.split(".")
    for part in path:
        child = owner._modules.get(part)
        if child is None:
            child = Container()
            owner.add_module(part, child)
        owner = child
    owner.add_module(last, module)


def _allocate(root: nn.Module, device, recurse: bool = True) -> None:
    """``root.to_empty(device=device)`` for a tree just made on the meta device (only
    ``root``'s own tensors where not ``recurse``).

    ``to_empty`` goes through ``Module._apply`` and ``torch.empty_like`` of each meta
    tensor, whose Python reference implementation was a quarter of lowering
    EfficientNet-B0; a fresh tree has no hooks or views to preserve, so each
    tensor is replaced by ``torch.empty`` of its shape.

    >>> m = torch.nn.BatchNorm2d(3, device="meta"); _allocate(m, torch.device("cpu"))
    >>> m.weight.device.type, m.running_mean.shape, isinstance(m.weight, torch.nn.Parameter)
    ('cpu', torch.Size([3]), True)
    """
    for m in root.modules() if recurse else (root,):
        for name, p in m._parameters.items():
            if p is not None and p.is_meta:
                m._parameters[name] = nn.Parameter(torch.empty(p.shape, dtype=p.dtype, device=device),
                                                   requires_grad=p.requires_grad)
        for name, b in m._buffers.items():
            if b is not None and b.is_meta:
                m._buffers[name] = torch.empty(b.shape, dtype=b.dtype, device=device)


def check_grant(net: ir.Network, grant=None) -> None:
    """Refuse to build a network whose extern modules ``grant`` does not cover: a checked
    network read back from JSON, or made by another call, is no grant to import code.
    Raises NetdslError (E0121) at each such extern's use."""
    from ..diagnostics import Diagnostic, NetdslError
    from ..grant import Grant
    from ..ir.walk import walk
    from ..layers.extern import Extern

    allowed = Grant.of(grant)
    refused = sorted({n.target for n in walk(net.body) if isinstance(n, Extern) and not allowed.allows(n.target)})
    if refused:
        raise NetdslError([Diagnostic(
            "E0121", f"extern `{t}` is not granted", None, "",
            f"importing it runs its code; if you trust it, grant its module: "
            f"grant=[\"{t.rsplit('.', 1)[0]}\"]") for t in refused])


def lower(net: ir.Network, device=None, grant=None) -> nn.Module:
    """Build the module of a checked network, its parameters made on ``device``.

    A module the spec declares no ``init`` for is made on ``device`` (default:
    torch's default device) by its own constructor, which initialises it as torch
    does. One with a declared scheme is made on the meta device, then its storage is
    allocated once on ``device`` and each parameter initialised once there, by its
    scheme or the module's own default: never twice. ``device="meta"`` allocates
    no memory and skips initialisation. A network with ``extern`` modules is built only
    where ``grant`` (as :func:`netdsl.compile` takes it) covers each of them.

    >>> import netdsl
    >>> m = lower(netdsl.compile("network n() { input [3, 8, 8]\\n c: conv2d(4, 3) }"), "meta")
    >>> m.c.weight.shape, m.c.weight.device.type
    (torch.Size([4, 3, 3, 3]), 'meta')
    """
    check_grant(net, grant)
    low = _Lowering(device)
    root = low.network(net)
    if low.init:
        # Storage is allocated once, on the target device; nothing is made on the CPU first.
        # Only what was made on meta: the leaves with state and the owners of bare
        # parameters (the rest of the tree was made on the device, a walk of nothing).
        for m, _ in low.stateful:
            _allocate(m, low.device)
        for owner, _ in low.bare:
            _allocate(owner, low.device, recurse=False)
        for m, node in low.stateful:
            initialise(m, node.init, node.kind)
        with torch.no_grad():
            for owner, node in low.bare:
                KINDS[node.kind].initialise(node, getattr(owner, node.name))
    return root


__all__ = ["lower", "init_parameter", "initialise", "target_device", "DeviceError"]
