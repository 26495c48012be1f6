"""Comparing a built spec with a reference model: the checks behind ``netdsl verify``,
``netdsl.testing.assert_equivalent`` and ``netdsl build --weights``.

A check loads the reference's ``state_dict`` into the spec's model strictly, then
compares parameter counts, eval outputs, training-mode outputs under one seed and
the gradients of one fixed loss. Where outputs differ, both models run again with
forward hooks and the report names the first module, in execution order, whose
output differs, with the spec line that made it. Nothing here raises on a
difference: the :class:`Report` says what differs and where.

Tolerances follow ``torch.testing.assert_close``: an element agrees when
``|ours - reference| <= atol + rtol * |reference|``.
"""

from __future__ import annotations

import contextlib
import difflib
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from .. import ir
from ..span import Span
from .counts import _is_module, _modules

ATOL = 1e-5
RTOL = 1e-4


# ---------------------------------------------------------------- module names → spec lines

def module_spans(net: ir.Network) -> dict[str, Span]:
    """The spec span of every module the built model has, by its module path, as
    lowering names them: layers and scopes (block instances, labelled groups) are
    modules of the nearest enclosing scope; combinators and sides make none.

    >>> import netdsl
    >>> net = netdsl.compile("network n() { input [3, 8, 8]\\n a: { conv2d(4, 3)\\n relu } }")
    >>> {k: v.where() for k, v in module_spans(net).items()}
    {'a': '<spec>:2:5', 'a.0': '<spec>:2:7', 'a.1': '<spec>:3:2'}
    """
    spans: dict[str, Span] = {}

    def walk(nodes, prefix: str) -> None:
        for node in _modules(nodes):
            if not _is_module(node):  # reuse, apply and bare parameters make no module
                continue
            path = prefix + node.name
            if node.span is not None:
                spans[path] = node.span
            if isinstance(node, ir.Scope):
                walk(node.body, path + ".")

    walk(net.body, "")
    return spans


def where(spans: dict[str, Span] | None, name: str) -> str | None:
    """``file:line:col`` of the module ``name`` or of the nearest module above it
    (a parameter's key names its module first).

    >>> where({"layer1.0.conv1": Span(file="r.net", line=3, column=9)}, "layer1.0.conv1.weight")
    'r.net:3:9'
    """
    if not spans:
        return None
    while name:
        if name in spans:
            return spans[name].where()
        name = name.rpartition(".")[0]
    return None


# ---------------------------------------------------------------- the report

@dataclass
class Check:
    """One comparison: its title, whether it passed (None: not run), a one-line
    summary and the lines that explain a failure."""

    title: str
    ok: bool | None
    summary: str
    details: list[str] = field(default_factory=list)
    max_abs: float | None = None  # outputs and gradients: the largest differences found
    max_rel: float | None = None

    def to_dict(self) -> dict:
        return {"title": self.title, "ok": self.ok, "summary": self.summary, "details": self.details,
                "max_abs_diff": self.max_abs, "max_rel_diff": self.max_rel}


@dataclass
class Difference:
    """The first module, in execution order, whose output differs."""

    mode: str           # "eval" or "train"
    module: str | None  # None: no module both models have differs; the root's own code does
    where: str | None
    max_abs: float
    detail: str
    call: int = 0       # which call of that module (a module may run more than once)
    hint: str | None = None

    def render(self) -> str:
        if self.module is None:
            return (f"no module both models name differs in {self.mode} mode: the difference "
                    f"arises in the top-level forward ({self.detail})")
        at = self.module + (f" (call {self.call + 1})" if self.call else "")
        loc = f" ({self.where})" if self.where else ""
        return f"first difference at {at}{loc}: {self.detail}"


@dataclass
class Report:
    """The outcome of comparing a spec's model with a reference; ``ok`` when every
    check that ran passed. ``render()`` is the text ``netdsl verify`` prints."""

    spec: str
    reference: str
    checks: list[Check] = field(default_factory=list)
    first_difference: Difference | None = None
    atol: float = ATOL
    rtol: float = RTOL

    @property
    def ok(self) -> bool:
        return all(c.ok is not False for c in self.checks)

    def check(self, title: str) -> Check:
        """The check of that title: ``report.check("eval outputs").max_rel``."""
        for c in self.checks:
            if c.title == title:
                return c
        raise KeyError(f"no check {title!r}; the report has {[c.title for c in self.checks]}")

    def render(self) -> str:
        verdict = "equivalent" if self.ok else "NOT equivalent"
        lines = [f"{self.spec} vs {self.reference}: {verdict} "
                 f"(atol={self.atol:g}, rtol={self.rtol:g})"]
        width = max(len(c.title) for c in self.checks) if self.checks else 0
        for c in self.checks:
            mark = {True: "ok  ", False: "FAIL", None: "skip"}[c.ok]
            lines.append(f"  {mark}  {c.title.ljust(width)}  {c.summary}")
            lines += [f"          {d}" for d in c.details]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        d = {"spec": self.spec, "reference": self.reference, "equivalent": self.ok,
             "atol": self.atol, "rtol": self.rtol, "checks": [c.to_dict() for c in self.checks]}
        f = self.first_difference
        d["first_difference"] = None if f is None else {
            "mode": f.mode, "module": f.module, "where": f.where, "call": f.call,
            "max_abs_diff": f.max_abs, "detail": f.detail}
        return d


# ---------------------------------------------------------------- state_dict keys

def _shape(v) -> tuple[int, ...]:
    return tuple(v.shape) if hasattr(v, "shape") else ()


def _group(keys) -> dict[str, list[str]]:
    """Keys by the module that holds them: ``{"layer1.0.bn1": ["weight", "bias", ...]}``."""
    out: dict[str, list[str]] = {}
    for k in keys:
        module, _, leaf = k.rpartition(".")
        out.setdefault(module, []).append(leaf)
    return out


def _keys_text(module: str, leaves: list[str]) -> str:
    if not module:
        return ", ".join(leaves)
    return f"{module}.{leaves[0]}" if len(leaves) == 1 else f"{module}.{{{', '.join(leaves)}}}"


def check_keys(ours: dict, theirs: dict, spans: dict[str, Span] | None = None,
               ours_name: str = "spec", theirs_name: str = "reference") -> Check:
    """Compare two state_dicts' keys and shapes (``ours`` is the spec's model).

    Missing keys (the spec's model has them, ``theirs`` does not) and unexpected ones
    (the other way round) are listed side by side, grouped by module, each paired
    with its nearest match on the other side (difflib) and the spec line that
    made the spec's module; then same-named keys whose shapes differ.

    >>> import torch
    >>> c = check_keys({"fc.weight": torch.zeros(2, 3)}, {"head.weight": torch.zeros(2, 3)})
    >>> c.ok, c.summary
    (False, '1 missing, 1 unexpected')
    >>> print("\\n".join(c.details))
    missing: only the spec has it  unexpected: only the reference has it  spec line
    fc.weight                      head.weight                            ?
    """
    missing = [k for k in ours if k not in theirs]
    unexpected = [k for k in theirs if k not in ours]
    shapes = [k for k in ours if k in theirs and _shape(ours[k]) != _shape(theirs[k])]
    if not (missing or unexpected or shapes):
        return Check("state_dict keys", True, f"{len(ours):,} keys, names and shapes equal")
    parts = [f"{len(missing):,} missing"] if missing else []
    parts += [f"{len(unexpected):,} unexpected"] if unexpected else []
    parts += [f"{len(shapes):,} of another shape"] if shapes else []
    details: list[str] = []
    # Keys grouped by module (`conv1.{weight, bias}`); each missing group is paired
    # with the nearest unexpected one not paired yet, by their text.
    gm, gu = _group(missing), _group(unexpected)
    texts = {_keys_text(m, leaves): m for m, leaves in gu.items()}
    rows = []
    for module, leaves in gm.items():
        near = _nearest(_keys_text(module, leaves), list(texts))
        other = "—"
        if near is not None:
            other = texts.pop(near)
            other = other if gu[other] == leaves and len(leaves) > 1 else near  # the module says it
        rows.append((_keys_text(module, leaves), other, where(spans, module) or "?"))
    rows += [("—", text, "") for text in texts]
    if rows:
        details += _table((f"missing: only the {ours_name} has it",
                           f"unexpected: only the {theirs_name} has it", "spec line"), rows)
    if shapes:
        details += _table(("same key, other shape", ours_name, theirs_name, "spec line"),
                          [(k, str(list(_shape(ours[k]))), str(list(_shape(theirs[k]))),
                            where(spans, k) or "?") for k in shapes])
    return Check("state_dict keys", False, ", ".join(parts), details)


def _nearest(name: str, candidates: list[str]) -> str | None:
    found = difflib.get_close_matches(name, candidates, n=1, cutoff=0.5)
    return found[0] if found else None


def _table(head: tuple[str, ...], rows: Sequence[tuple[str, ...]], limit: int = 20) -> list[str]:
    shown = rows[:limit]
    widths = [max(len(head[i]), *(len(r[i]) for r in shown)) for i in range(len(head))]
    fmt = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()  # noqa: E731
    out = [fmt(head)] + [fmt(r) for r in shown]
    if len(rows) > limit:
        out.append(f"... and {len(rows) - limit:,} more")
    return out


# ---------------------------------------------------------------- outputs

def flatten_output(out, path: str = "output") -> list[tuple[str, torch.Tensor]]:
    """The tensors of a model's output with a label each: a tensor, a (named)
    tuple or list, or a dict, nested.

    >>> import collections, torch
    >>> O = collections.namedtuple("O", "logits aux")
    >>> [k for k, _ in flatten_output(O(torch.zeros(1), {"a": torch.zeros(1)}))]
    ['output.logits', 'output.aux[a]']
    """
    if isinstance(out, torch.Tensor):
        return [(path, out)]
    if isinstance(out, tuple) and hasattr(out, "_fields"):
        return [item for f, v in zip(out._fields, out, strict=True) for item in flatten_output(v, f"{path}.{f}")]
    if isinstance(out, (tuple, list)):
        return [item for i, v in enumerate(out) for item in flatten_output(v, f"{path}[{i}]")]
    if isinstance(out, dict):
        return [item for k, v in out.items() for item in flatten_output(v, f"{path}[{k}]")]
    return []


@dataclass
class Diff:
    """How two tensors compare under atol/rtol."""

    ok: bool
    max_abs: float
    max_rel: float
    bad: int
    numel: int
    why: str = ""

    def text(self, atol: float, rtol: float) -> str:
        if self.why:
            return self.why
        return (f"max abs diff {_g(self.max_abs)}, max rel diff {_g(self.max_rel)}; "
                f"{self.bad:,} of {self.numel:,} elements over atol + rtol·|reference|")


def _g(x: float) -> str:
    return f"{x:.3g}"


def tensor_diff(a: torch.Tensor, b: torch.Tensor, atol: float = ATOL, rtol: float = RTOL,
                scaled: bool = False) -> Diff:
    """Compare ``a`` (ours) with ``b`` (the reference) as ``torch.testing.assert_close``
    does: shapes equal, and ``|a - b| <= atol + rtol * |b|`` element-wise (NaN
    equals nothing; infinities equal themselves).

    ``scaled``: the relative tolerance is of the tensor's largest magnitude, not of each
    element's, ``|a - b| <= atol + rtol * max|b|``: what gradients need, whose tiny
    elements are sums of large terms that cancel, so that summing them in another order
    changes them by far more than their own size.

    >>> import torch
    >>> d = tensor_diff(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.5]))
    >>> d.ok, d.bad, d.max_abs
    (False, 1, 0.5)
    >>> g, h = torch.tensor([100.0, 1e-7]), torch.tensor([100.0, 3e-7])
    >>> tensor_diff(g, h, atol=0, rtol=1e-6).ok, tensor_diff(g, h, atol=0, rtol=1e-6, scaled=True).ok
    (False, True)
    """
    if a.shape != b.shape:
        return Diff(False, math.inf, math.inf, a.numel(), a.numel(),
                    f"shape {list(a.shape)} vs the reference's {list(b.shape)}")
    # float32 at least: its rounding is far below any tolerance worth asking for.
    dtype = torch.promote_types(torch.promote_types(a.dtype, b.dtype), torch.float32)
    a, b = a.detach().to("cpu", dtype), b.detach().to("cpu", dtype)
    if a.numel() == 0:
        return Diff(True, 0.0, 0.0, 0, 0)
    if torch.equal(a, b) and not a.isnan().any():  # the common case, at a fraction of the cost
        return Diff(True, 0.0, 0.0, 0, a.numel())
    finite = a.isfinite() & b.isfinite()
    if scaled:
        largest = float(b.abs().masked_fill(~finite, 0.0).max())
        close = torch.isclose(a, b, rtol=0.0, atol=atol + rtol * largest)
    else:
        close = torch.isclose(a, b, rtol=rtol, atol=atol)  # what assert_close uses, NaN unequal
    diff = (a - b).abs().masked_fill(~finite, 0.0)
    rel = (diff / b.abs()).masked_fill(diff == 0, 0.0)
    bad = int((~close).sum())
    max_abs, max_rel = float(diff.max()), float(rel.max())
    if bool((~finite & ~close).any()):  # NaN, or infinities that disagree
        max_abs = max_rel = math.nan
    return Diff(bad == 0, max_abs, max_rel, bad, a.numel())


def _compare_outputs(ours, theirs, atol, rtol) -> tuple[bool, list[str], float, float]:
    """(equal, lines, worst abs diff, worst rel diff) for two model outputs of any structure."""
    a, b = flatten_output(ours), flatten_output(theirs)
    fa, fb = getattr(ours, "_fields", None), getattr(theirs, "_fields", None)
    if len(a) != len(b) or (fa is not None and fb is not None and tuple(fa) != tuple(fb)):
        return False, [f"the outputs differ in structure: the spec's model gives "
                       f"{_structure(ours)}, the reference {_structure(theirs)}"], math.inf, math.inf
    if not a:
        return False, ["the models return no tensors"], math.inf, math.inf
    lines, ok, worst, worst_rel = [], True, 0.0, 0.0
    for (label, x), (_, y) in zip(a, b, strict=True):
        d = tensor_diff(x, y, atol, rtol)
        worst, worst_rel = _max(worst, d.max_abs), _max(worst_rel, d.max_rel)
        ok &= d.ok
        if not d.ok:
            lines.append(f"{label}: {d.text(atol, rtol)}")
    return ok, lines, worst, worst_rel


def _max(a: float, b: float) -> float:
    return math.nan if math.isnan(a) or math.isnan(b) else max(a, b)


def _structure(out) -> str:
    if isinstance(out, torch.Tensor):
        return f"a tensor {list(out.shape)}"
    if isinstance(out, tuple) and hasattr(out, "_fields"):
        return f"{type(out).__name__}({', '.join(out._fields)})"
    if isinstance(out, (tuple, list)):
        return f"a {type(out).__name__} of {len(out)}"
    if isinstance(out, dict):
        return f"a dict with keys {list(out)}"
    return type(out).__name__


def _scale_note(out, atol: float) -> str | None:
    values = [t for _, t in flatten_output(out)]
    if values and max(float(t.detach().abs().max()) if t.numel() else 0.0 for t in values) <= atol:
        return ("every reference output is within atol of zero: this comparison proves little; "
                "give the reference weights with non-trivial outputs")
    return None


# ---------------------------------------------------------------- running the models

@contextlib.contextmanager
def _kept(*models: nn.Module):
    """Restore each model's training flag, buffers and gradients afterwards: a
    check runs both models in training mode, which updates batch-norm statistics.
    (Parameters are only read: nothing steps an optimiser.)"""
    saved = [(m.training, [(b, b.detach().clone()) for b in m.buffers()],
              [(p, p.grad) for p in m.parameters()]) for m in models]
    try:
        yield
    finally:
        for m, (training, buffers, grads) in zip(models, saved, strict=True):
            m.train(training)
            with torch.no_grad():
                for b, value in buffers:
                    b.copy_(value)
            for p, grad in grads:
                p.grad = grad


def _run(model: nn.Module, x, train: bool, seed: int, grad: bool = False):
    model.train(train)
    with torch.random.fork_rng(devices=[]), (contextlib.nullcontext() if grad else torch.no_grad()):
        torch.manual_seed(seed)
        return model(x)


def _trace(model: nn.Module, x, train: bool, seed: int) -> list[tuple[str, int, list]]:
    """(module name, call number, output tensors) of every submodule call, in the
    order the calls finish (a container after its children)."""
    events: list[tuple[str, int, list]] = []
    calls: Counter = Counter()

    def hook(name):
        def record(_module, _inputs, output):
            # Cloned now: an in-place activation later would change it.
            events.append((name, calls[name], [t.detach().clone() for _, t in flatten_output(output)]))
            calls[name] += 1
        return record

    handles = [m.register_forward_hook(hook(name)) for name, m in model.named_modules() if name]
    try:
        _run(model, x, train, seed)
    finally:
        for h in handles:
            h.remove()
    return events


def first_difference(model: nn.Module, reference: nn.Module, x, *, train: bool = False,
                     seed: int = 0, atol: float = ATOL, rtol: float = RTOL,
                     spans: dict[str, Span] | None = None) -> Difference:
    """Run both models with forward hooks and find the first module call, in the
    spec's model's execution order, whose output differs from the reference
    module's of the same name and call number.

    >>> import torch
    >>> a = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU())
    >>> b = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU())
    >>> _ = b.load_state_dict(a.state_dict())
    >>> with torch.no_grad():
    ...     _ = b[0].bias.add_(1)
    >>> first_difference(a, b, torch.ones(1, 2)).module
    '0'
    """
    with _kept(model, reference):
        ours = _trace(model, x, train, seed)
        theirs = {(name, k): out for name, k, out in _trace(reference, x, train, seed)}
        fused = _fused_norms(reference)
        for name, k, outs in ours:
            other = theirs.get((name, k))
            if other is None:
                continue
            if name in fused and not isinstance(model.get_submodule(name), type(fused[name])):
                # The reference's module of this name is a norm with its activation inside
                # (timm's BatchNormAct2d), the spec's a norm the activation follows: ours
                # goes through the reference's own activation before they are compared.
                outs = [_through_activation(fused[name], t) for t in outs]
            if len(outs) != len(other):
                return Difference("train" if train else "eval", name, where(spans, name), math.inf,
                                  f"gives {len(outs)} tensors, the reference's {len(other)}", k)
            for a, b in zip(outs, other, strict=True):
                d = tensor_diff(a, b, atol, rtol)
                if not d.ok:
                    detail = (f"output {d.why}" if d.why else
                              f"max abs diff {_g(d.max_abs)} ({d.bad:,} of {d.numel:,} elements "
                              f"over tolerance)")
                    return Difference("train" if train else "eval", name, where(spans, name),
                                      d.max_abs, detail, k)
        out_ours = _run(model, x, train, seed)
        out_ref = _run(reference, x, train, seed)
        _, lines, worst, _ = _compare_outputs(out_ours, out_ref, atol, rtol)
    return Difference("train" if train else "eval", None, None, worst, "; ".join(lines) or "?")


def _fused_norms(model: nn.Module) -> dict[str, nn.Module]:
    """The modules of ``model`` that are a normalisation with an activation inside (timm's
    ``BatchNormAct2d`` and ``GroupNormAct``: a ``_NormBase`` or ``GroupNorm`` with an
    ``act`` submodule that is no ``Identity``), by name."""
    return {name: m for name, m in model.named_modules()
            if isinstance(m, (nn.modules.batchnorm._NormBase, nn.GroupNorm))
            and isinstance(getattr(m, "act", None), nn.Module) and not isinstance(m.act, nn.Identity)}


def _through_activation(norm: nn.Module, t: torch.Tensor) -> torch.Tensor:
    """``t`` through what a fused norm module applies after its norm (its ``drop``, if
    any, and its ``act``), on a copy (the activation may work in place)."""
    steps = [getattr(norm, "drop", None), norm.act]
    with torch.no_grad():
        t = t.clone()
        for step in steps:
            if isinstance(step, nn.Module):
                t = step(t)
    return t


def _module_kind(model: nn.Module, name: str) -> str:
    try:
        return type(model.get_submodule(name)).__name__
    except AttributeError:
        return ""


_RANDOM_KINDS = ("Dropout", "StochasticDepth", "Dropout2d", "AlphaDropout")


def _random_hint(model: nn.Module, diff: Difference) -> str | None:
    """Why a module differs in training mode only, when it draws random numbers."""
    if diff.module is None or _module_kind(model, diff.module) not in _RANDOM_KINDS:
        return None
    return ("it draws random numbers: both models ran from the same seed, so the draws differ "
            "when the models run their random layers in another order or draw another "
            "number of values before it")


# ---------------------------------------------------------------- the whole check

def compare(model: nn.Module, reference: nn.Module, x: torch.Tensor, *,
            spans: dict[str, Span] | None = None, atol: float = ATOL, rtol: float = RTOL,
            seed: int = 0, train: bool = True, gradients: bool = True, load: bool = True,
            spec_name: str = "spec", reference_name: str = "reference") -> Report:
    """Compare the spec's ``model`` with ``reference`` on the input batch ``x``.

    With ``load`` (the default) the reference's state_dict is first loaded into
    ``model`` strictly; a key or shape mismatch ends the check there. Then:
    parameter counts; eval outputs; training-mode outputs and batch-norm
    statistics, each model run after ``torch.manual_seed(seed)`` (the global RNG
    is restored afterwards); gradients of ``sum(out * w)`` over every output
    tensor, with fixed random weights ``w``, per parameter name. Both models are
    left in the mode, with the statistics, they had (``model`` keeps the loaded
    weights).

    >>> import torch
    >>> a, b = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    >>> compare(a, b, torch.randn(4, 3)).ok
    True
    """
    report = Report(spec_name, reference_name, atol=atol, rtol=rtol)
    keys = check_keys(model.state_dict(), reference.state_dict(), spans)
    report.checks.append(keys)
    if not keys.ok:
        return report
    if load:
        model.load_state_dict(reference.state_dict(), strict=True)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    pa, pb = count(model), count(reference)
    report.checks.append(Check("parameters", pa == pb, f"{pa:,}" + (" = " if pa == pb else " ≠ ")
                               + f"{pb:,}" + ("" if pa == pb else " (the reference's)")))
    with _kept(model, reference):
        _check_outputs(report, model, reference, x, False, seed, spans)
        if train:
            _check_outputs(report, model, reference, x, True, seed, spans)
        else:
            report.checks.append(Check("training outputs", None, "not checked"))
        if gradients:
            grads = _check_gradients(model, reference, x, seed, atol, rtol, spans)
            if not grads.ok and report.first_difference is not None:
                grads.details = []  # the outputs already differ, and where is said above
            report.checks.append(grads)
        else:
            report.checks.append(Check("gradients", None, "not checked"))
    return report


def _check_outputs(report: Report, model, reference, x, train: bool, seed: int, spans) -> None:
    atol, rtol = report.atol, report.rtol
    mode = "training" if train else "eval"
    with _kept(model, reference):
        ours = _run(model, x, train, seed)
        theirs = _run(reference, x, train, seed)
        ok, lines, worst, worst_rel = _compare_outputs(ours, theirs, atol, rtol)
        state_lines = []
        if ok and train:
            # The same batch statistics, folded in with the same momentum.
            ref_state = reference.state_dict()
            params = dict(model.named_parameters())
            for k, v in model.state_dict().items():
                if v.is_floating_point() and k not in params:
                    d = tensor_diff(v, ref_state[k], atol, rtol)
                    if not d.ok:
                        state_lines.append(f"{k} after one training step ({where(spans, k) or '?'}): "
                                           f"{d.text(atol, rtol)}")
    title = f"{mode} outputs"
    if not ok:
        report.checks.append(Check(title, False, lines[0], lines[1:], worst, worst_rel))
        if report.first_difference is None:
            diff = first_difference(model, reference, x, train=train, seed=seed, atol=atol,
                                    rtol=rtol, spans=spans)
            if train and any(c.title == "eval outputs" and c.ok for c in report.checks):
                diff.hint = _random_hint(model, diff)
            report.first_difference = diff
            report.checks[-1].details.append(diff.render())
            if diff.hint:
                report.checks[-1].details.append(diff.hint)
        return
    shape = "; ".join(f"{list(t.shape)}" for _, t in flatten_output(theirs))
    summary = (f"equal within tolerance (max abs diff {_g(worst)}, max rel {_g(worst_rel)}; "
               f"output {shape})")
    if state_lines:
        report.checks.append(Check(title, False, "outputs equal, but the running statistics "
                                   "differ", state_lines[:10], worst, worst_rel))
        return
    note = _scale_note(theirs, atol)
    report.checks.append(Check(title, True, summary + (f", seed {seed}" if train else ""),
                               [note] if note else [], worst, worst_rel))


def _loss_weights(out, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed + 1)
    return [torch.randn(t.shape, generator=g, dtype=t.dtype) for _, t in flatten_output(out)]


def _grads(model, x, seed: int) -> dict[str, torch.Tensor | None]:
    for p in model.parameters():
        p.grad = None
    out = _run(model, x, True, seed, grad=True)
    tensors = [t for _, t in flatten_output(out)]
    loss = sum((t * w.to(t.device)).sum() for t, w in zip(tensors, _loss_weights(out, seed), strict=True))
    # No tensor in the output, or none that depends on a parameter (a model without
    # parameters, or whose outputs are constants): nothing has a gradient.
    if isinstance(loss, torch.Tensor) and loss.requires_grad:
        loss.backward()
    return {k: (None if p.grad is None else p.grad.detach().clone()) for k, p in model.named_parameters()}


def _check_gradients(model, reference, x, seed, atol, rtol, spans) -> Check:
    with _kept(model, reference):
        ga = _grads(model, x, seed)
        gb = _grads(reference, x, seed)
    rows = []
    worst = worst_rel = 0.0
    for k, a in ga.items():
        b = gb.get(k)
        if k not in gb:
            rows.append((k, "the reference has no parameter of this name", where(spans, k) or "?"))
            continue
        if a is None or b is None:
            if (a is None) != (b is None):
                rows.append((k, "no gradient in the " + ("spec's model" if a is None else "reference"),
                             where(spans, k) or "?"))
            continue
        d = tensor_diff(a, b, atol, rtol, scaled=True)
        worst, worst_rel = _max(worst, d.max_abs), _max(worst_rel, d.max_rel)
        if not d.ok:
            rows.append((k, d.text(atol, rtol), where(spans, k) or "?"))
    title = "gradients"
    if rows:
        return Check(title, False, f"{len(rows):,} of {len(ga):,} parameters differ "
                     f"(first in parameter order: {rows[0][0]})",
                     _table(("parameter", "difference", "spec line"), rows, limit=10), worst, worst_rel)
    return Check(title, True, f"{len(ga):,} parameters, equal within tolerance "
                 f"(max abs diff {_g(worst)}; loss sum(out · w), seed {seed})", [], worst, worst_rel)


__all__ = ["ATOL", "RTOL", "Check", "Difference", "Report", "check_keys", "compare",
           "first_difference", "flatten_output", "module_spans", "tensor_diff", "where"]
