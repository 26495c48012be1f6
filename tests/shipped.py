"""The grant the tests give a shipped spec (specs/*.net): ``timm.layers`` where the
spec or a file it imports declares an ``extern``, nothing otherwise.

A shipped spec uses timm's own class where netdsl's layers cannot say an op exactly
(specs/tresnet.net's BlurPool2d). Every test that checks all shipped specs compiles
such a spec with this grant, and never a wider one: a shipped spec that names a
class outside ``timm.layers`` still fails those tests (E0121), and one without an
extern is checked as before, ungranted."""

from __future__ import annotations

from pathlib import Path

from netdsl.limits import Limits
from netdsl.syntax.loader import load

# The one module prefix the tests grant a shipped spec.
TIMM_LAYERS = "timm.layers"


def externs(path: str | Path) -> dict[str, str]:
    """The externs that ``path`` and the files it imports declare: name → class path."""
    p = Path(path)
    program = load(p.read_text(encoding="utf-8"), str(p), p.parent, Limits())
    return {name: e.target for name, e in program.externs.items()}


def grant_for(path: str | Path) -> list[str] | None:
    """``["timm.layers"]`` for a spec that declares an extern, else None (no grant)."""
    return [TIMM_LAYERS] if externs(path) else None


def allow_args(path: str | Path) -> list[str]:
    """The command-line form of :func:`grant_for`: ``--allow-module timm.layers`` or nothing."""
    grant = grant_for(path)
    return ["--allow-module", grant[0]] if grant else []
