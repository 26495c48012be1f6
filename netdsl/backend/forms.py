"""Which instances of a block share one class: the one decision that ``lower`` (a
built model) and ``codegen`` (``netdsl export --format python``) both follow, so that
a built model's classes are the export's, forwards included, by construction.

Instances of a block that are made of the same modules (same names, same module
classes, from the same spec lines) and run the same forward share a class. Forms
of a block that differ only in modules some lack (a ``shortcut NAME if``, a
labelled module under ``if``) share one too, as torchvision's ``Bottleneck`` with
its ``downsample``: the class's forward is the fullest form's, each such module
called only where it is not None, and an instance that lacks one holds None
under its name. Forms are registered as a model's modules are made, each block's
modules before the block, and a form joins the first class of its block's name
that it can share; so the classes depend only on the spec, never on who asks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

from .. import ir
from ..analysis.counts import _modules
from ..ir.walk import bodies, walk
from ..layers import KINDS
from ..layers.extern import Extern
from .forward import is_container, write
from .source import class_name, is_attribute


def modules_in_order(nodes):
    """The Layer and Scope nodes of a body in the order lowering registers them, but
    those that register no module of their own (a reuse, an apply)."""
    return [n for n in _modules(nodes) if not (isinstance(n, ir.Layer) and (n.reuse or n.functional))]


@dataclass(eq=False)
class Form:
    """One instance of a block or labelled group, as far as its class is concerned."""

    base: str  # "nn.Module", or "nn.Sequential" for a block whose body is a plain sequence
    name: str  # its class's name, as the export writes it
    notes: tuple  # which block definition it comes from (its comments go with the class)
    forward: str | None  # the forward its own modules run (None: a sequence, a container)
    items: tuple  # per module: (name, what makes it)
    scope: ir.Scope | None
    key: tuple = ()
    cls: FormClass | None = None

    @property
    def names(self) -> frozenset[str]:
        return frozenset(n for n, _ in self.items)

    @property
    def of(self) -> FormClass:
        assert self.cls is not None, "a form is registered before its class is read"
        return self.cls


@dataclass(eq=False)
class FormClass:
    """One class of a model's block instances: the forms that share it, the template
    (the form with every module of the others) first."""

    key: tuple  # its first form's
    forms: list  # one per instance, in order of registration; the template first
    # Modules some instances lack, in the template's order, and the forward that calls
    # each only where it is not None (None while every form has every module).
    optional: tuple[str, ...] = ()
    forward: str | None = None

    @property
    def template(self) -> Form:
        return self.forms[0]

    def source(self, form: Form) -> str | None:
        """The forward an instance of this class runs."""
        return self.forward if self.optional else form.forward


@dataclass(eq=False)
class Forms:
    """The classes of one model's block instances, decided as they are registered."""

    classes: dict = field(default_factory=dict)  # a form's key -> its class
    by_name: dict = field(default_factory=dict)  # class name -> its classes
    made: dict = field(default_factory=dict)  # id of a registered module -> its form
    # The forward of a template less some modules, by (id of the template, those modules):
    # a block of many forms (DPN's) compares each new one with the same templates again.
    less: dict = field(default_factory=dict)
    may_lack: dict = field(default_factory=dict)  # the same key -> optional(template, those)

    def register(self, node: ir.Scope, module: nn.Module, forward: str | None) -> Form:
        """The form of ``module``, the block instance or group ``node`` made, whose
        modules are registered already; ``forward`` is its own (``write(node.body,
        scope=node).text()``), None for a plain sequence or a container."""
        base = "nn.Sequential" if isinstance(module, nn.Sequential) else "nn.Module"
        notes: tuple = ()
        if node.block is not None:
            files = [n.span.file for n in modules_in_order(node.body) if n.span is not None]
            notes = (files[0] if files else None, node.block)
        form = Form(base, class_name(node.cls if node.cls is not None else node.name), notes, forward,
                    self.items(node.body, module), node)
        form.key = (form.base, form.name, form.notes, form.forward, form.items)
        cls = self.classes.get(form.key) or self.merge(form)
        if cls is None:
            cls = FormClass(form.key, [])
            self.by_name.setdefault(form.name, []).append(cls)
        if cls.forms and form.names > cls.template.names:
            cls.forms.insert(0, form)  # a form with more modules: the new template
        else:
            cls.forms.append(form)
        self.classes[form.key] = cls
        form.cls = cls
        self.made[id(module)] = form
        return form

    def items(self, nodes, owner: nn.Module) -> tuple:
        """(name, what makes it) of each module of a body: a leaf's class, an extern's
        target and keywords, a plain sequence's own items, a block's class; and the
        spec line of each."""
        out = []
        for n in modules_in_order(nodes):
            where = None if n.span is None else (n.span.file, n.span.line)
            m = owner.get_submodule(n.name) if not (isinstance(n, ir.Layer) and KINDS[n.kind].bare_parameter) \
                else None
            what: tuple
            if isinstance(n, Extern):
                what = ("extern", n.target, tuple(k for k, _ in n.kwargs))
            elif isinstance(n, ir.Layer):
                what = ("parameter", n.kind) if m is None else ("leaf", type(m))
            elif type(m) is nn.Sequential:
                what = ("seq", self.items(n.body, m))
            else:
                what = ("class", self.made[id(m)].of.key)
            out.append((n.name, (where, what)))
        return tuple(out)

    # -- forms of a block that differ only in optional modules: one class
    def merge(self, form: Form) -> FormClass | None:
        """The class of another form of the same block that ``form`` can share, where
        one form among them has every module of the others and each other form is
        that one without some of its modules (see :func:`optional`); None where
        there is none. The class's forward then calls those modules where not None."""
        if form.base != "nn.Module" or form.forward is None or form.scope is None:
            return None
        for cls in self.by_name.get(form.name, ()):
            t = cls.template
            if t.base != form.base or t.notes != form.notes or t.forward is None or t.scope is None:
                continue
            forms = {f.key: f for f in cls.forms}  # one per form: the last registered
            forms[form.key] = form
            template = max(forms.values(), key=lambda f: len(f.names))
            left = set().union(*(template.names - f.names for f in forms.values()))
            if all(f.names <= template.names and self.form_of(template, f) for f in forms.values()) \
                    and self.optional(template, frozenset(left)):
                assert template.scope is not None
                cls.optional = tuple(n for n, _ in template.items if n in left)
                cls.forward = write(template.scope.body, scope=template.scope, optional=frozenset(left)).text()
                if template is not cls.template and template is not form:
                    cls.forms.remove(template)
                    cls.forms.insert(0, template)
                return cls
        return None


    def optional(self, template: Form, left: frozenset[str]) -> bool:
        """:func:`optional` of a template's block, once per template and modules."""
        key = (id(template), left)
        if key not in self.may_lack:
            assert template.scope is not None
            self.may_lack[key] = optional(template.scope, left)
        return self.may_lack[key]

    def form_of(self, template: Form, form: Form) -> bool:
        """Whether ``form`` is ``template`` without the modules it lacks: the same
        modules in the same order, made alike, and the same forward once those
        modules are left out of the template's body."""
        if form is template:
            return True
        left = template.names - form.names
        assert template.scope is not None
        if not self.optional(template, left):
            return False
        if tuple(i for i in template.items if i[0] not in left) != form.items:
            return False
        if not left:
            return template.forward == form.forward  # what its body gives with nothing left out
        key = (id(template), left)
        if key not in self.less:
            self.less[key] = write(drop(template.scope.body, left), scope=template.scope).text()
        return self.less[key] == form.forward


def optional(scope: ir.Scope, names) -> bool:
    """Whether the modules ``names`` of ``scope``'s block can be None in some of its
    instances: each a module of the block itself under a plain attribute name (no
    position, no dotted path), made by a layer or a block or group of one tensor in
    and out, no parameter of the block itself (``scale``) and never called again
    (``reuse``): a statement that calls it can then pass its input on instead."""
    if not names:
        return True
    own = {n.name: n for n in modules_in_order(scope.body)}
    for name in names:
        n = own.get(name)
        if n is None or not is_attribute(name) or "." in name:
            return False
        if isinstance(n, ir.Layer) and KINDS[n.kind].bare_parameter:
            return False
        if isinstance(n, ir.Scope) and (is_container(n) or n.sources or n.targets):
            return False
    return not any(isinstance(n, ir.Layer) and n.reuse and n.name in names for n in walk(scope.body))


def drop(nodes, names) -> tuple:
    """A body without the modules ``names``: what an instance that lacks them runs. A
    shortcut left empty is the identity, as a false ``shortcut ... if`` gives."""
    out = []
    for n in nodes:
        if isinstance(n, (ir.Layer, ir.Scope)) and n.name in names and not (isinstance(n, ir.Layer) and n.reuse):
            continue
        if not isinstance(n, (ir.Layer, ir.Scope)) and bodies(n):
            update: dict[str, Any] = {}
            for f in type(n).body_fields:
                v = getattr(n, f)
                if v and isinstance(v[0], tuple):
                    update[f] = tuple(drop(b, names) for b in v)
                elif v:
                    update[f] = drop(v, names)
            if isinstance(n, ir.Residual) and n.shortcut is not None and not update.get("shortcut", n.shortcut):
                update["shortcut"] = None
            n = n.model_copy(update=update)
        out.append(n)
    return tuple(out)
