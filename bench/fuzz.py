"""Fuzz netdsl: bad input must never crash it, and what `check` accepts must work.

Inputs come from two sources:

- mutations of a shipped spec (specs/*.net, netdsl/stdlib/*.net), one to four
  each: token deletion, duplication and swaps, names and keywords put in the
  wrong place, extreme numbers, lines dropped or repeated, deep nesting, splices
  of two specs, truncation and random bytes, random ``--set`` values;
- whole generated specs (``fuzz_specs.py``): random chains of every catalogue
  layer with random arguments inside every combinator, attribute-like labels and
  side names, random ``init`` arguments, 16 KB misspelt names, thousands of
  errors, control characters; and limits set to their edges.

Every input must either compile or raise ``netdsl.NetdslError``, within a
bound of CPU time (``--timeout`` seconds per 100 KB of input, at least
``--timeout``: the front end is linear in its input, a hang is not), and its
rendered diagnostics must hold no raw control
character. Every input that parses must survive ``netdsl fmt``: the same AST,
every comment kept, and formatting the result again changing nothing. With
``--contract`` (the default of the long run), every input that
compiles then goes through what ``check`` promises: a build on the meta device
and on the CPU, a forward in training and in eval mode, a backward, the output
shape the checker inferred, the parameter count and fvcore's MACs equal to the
static analysis, a pickled copy giving the same outputs, and a save of the
state_dict that loads back strictly.
Networks over ``--macs-budget`` are run at a smaller ``--input`` when the spec
accepts one, else built on meta only (reported as such). ``--commands`` then
runs one netdsl command on the input, chosen by its seed from every command
(``fuzz_commands.py``: check, build, graph, diff, verify, sweep, export,
explain, fmt and the language server), with the flags and the files a user
would give it, and judges its exit status, its output and every file it
touched; ``--cli`` runs that command as a real ``python -m netdsl`` process,
without the in-process compile. Anything else is a crash.

    python bench/fuzz.py --inputs 20000 --seed 1 --contract --jobs 2
    python bench/fuzz.py --seed 1 --only 4711 --show       # one input again, printed
    python bench/fuzz.py --inputs 20000 --seed 1 --commands --jobs 2   # and every command
    python bench/fuzz.py --inputs 300 --seed 1 --cli       # the real command, one process each
    python bench/fuzz.py --inputs 5000 --save-crashes /tmp/crashes

Input ``i`` of seed ``S`` depends on nothing else, so any one can be replayed.
It prints the inputs tried, how many compiled or gave which diagnostics, how
many went through the contract, the crashes (with their tracebacks), and the
slowest input. Exit status 1 if anything crashed.
"""

from __future__ import annotations

import argparse
import collections
import os
import pickle
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import netdsl  # noqa: E402
from netdsl import ir  # noqa: E402
from netdsl.ir.walk import walk  # noqa: E402
from netdsl.layers import LAYERS  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fuzz_specs  # noqa: E402
import ir_eval  # noqa: E402
from fuzz_specs import GRANT  # noqa: E402

SOURCES = sorted((ROOT / "specs").glob("*.net")) + sorted((ROOT / "netdsl" / "stdlib").glob("*.net"))

# Tokens as the mutations see them: close enough to the grammar's to make
# plausible specs, and crude enough to make every kind of broken one.
_TOKEN = re.compile(r'"(?:[^"\\\n]|\\.)*"?|#[^\n]*|\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|[A-Za-z_]\w*'
                    r'|\*\*|//|==|!=|<=|>=|\n|[ \t]+|.', re.S)

KEYWORDS = ["block", "network", "let", "input", "init", "for", "in", "if", "else", "residual",
            "shortcut", "assert", "concat", "dense", "gate", "side", "import", "true", "false",
            "none", "and", "or", "not", "in_channels"]
FUNCTIONS = ["min", "max", "ceil", "floor", "round", "make_divisible", "len", "sum", "range", "int",
             "float", "abs", "sqrt", "kaiming_normal", "zeros", "ones"]
PUNCTUATION = list("{}()[],;:.=*+-/%<>") + ["**", "//", "==", "!=", "<=", ">=", "\n", '"']
EXTREME_NUMBERS = ["0", "-1", "1", "2", "3", "7", "1000000", "10000000", "99999", "4294967296",
                   "9223372036854775807", "9223372036854775808", "99999999999999999999999",
                   "9" * 5000, "0.5", "1.0", "1e-300", "1e300", "1e308", "1e999", "0.0", ".5",
                   "2 ** 62", "2 ** 64", "10 ** 18", "(0 - 1)", "1 / 0", "1 // 0"]


@dataclass
class Outcome:
    index: int
    strategy: str
    seconds: float
    result: str                     # "compiled", a diagnostic code, "crash" or "timeout"
    detail: str = ""                # the traceback of a crash
    data: bytes = b""
    contract: str = ""              # "full", "smaller input", "meta only" or "" (not run)
    command: str = ""               # "graph usage", "fmt ok", ...: the command run and its result


@dataclass
class Report:
    tried: int = 0
    results: collections.Counter = field(default_factory=collections.Counter)
    crashes: list[Outcome] = field(default_factory=list)
    slowest: Outcome | None = None
    seconds: float = 0.0
    contracts: collections.Counter = field(default_factory=collections.Counter)
    strategies: collections.Counter = field(default_factory=collections.Counter)
    commands: collections.Counter = field(default_factory=collections.Counter)

    def add(self, o: Outcome) -> None:
        self.tried += 1
        self.results[o.result] += 1
        self.strategies[o.strategy.split(":")[0].split(", limit")[0]] += 1
        if o.contract:
            self.contracts[o.contract] += 1
        if o.command:
            self.commands[o.command] += 1
        if o.result in ("crash", "timeout"):
            self.crashes.append(o)
        if self.slowest is None or o.seconds > self.slowest.seconds:
            self.slowest = o


# ---------------------------------------------------------------- mutations


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text)


def _pick_token(rng: random.Random, toks: list[str], meaningful: bool = True) -> int:
    if not toks:
        return 0
    if meaningful:
        idx = [i for i, t in enumerate(toks) if not t.isspace()]
        if idx:
            return rng.choice(idx)
    return rng.randrange(len(toks))


def _statement_point(rng: random.Random, toks: list[str]) -> int:
    """A place where a statement may start: after a line break below an `input`, if any."""
    first = toks.index("input") if "input" in toks else 0
    points = [i + 1 for i, t in enumerate(toks) if t == "\n" and i > first]
    return rng.choice(points) if points else _pick_token(rng, toks, meaningful=False)


def _number_point(rng: random.Random, toks: list[str]) -> int:
    nums = [i for i, t in enumerate(toks) if t[:1].isdigit()]
    return rng.choice(nums) if nums else _pick_token(rng, toks, meaningful=False)


def m_delete(rng, toks, ctx):
    if toks:
        del toks[_pick_token(rng, toks)]
    return toks


def m_duplicate(rng, toks, ctx):
    if toks:
        i = _pick_token(rng, toks)
        j = min(len(toks), i + rng.choice([1, 1, 2, 3, 8]))
        toks[j:j] = toks[i:j] * rng.choice([1, 1, 2, 10])
    return toks


def m_swap(rng, toks, ctx):
    if len(toks) > 1:
        i = _pick_token(rng, toks)
        j = i + 2 if rng.random() < 0.5 and i + 2 < len(toks) else _pick_token(rng, toks)
        toks[i], toks[j] = toks[j], toks[i]
    return toks


def m_replace_name(rng, toks, ctx):
    names = [i for i, t in enumerate(toks) if re.match(r"[A-Za-z_]", t)]
    if names:
        pool = rng.choice([KEYWORDS, FUNCTIONS, list(LAYERS), ctx["names"]])
        toks[rng.choice(names)] = rng.choice(pool)
    return toks


def m_extreme_number(rng, toks, ctx):
    nums = [i for i, t in enumerate(toks) if t[:1].isdigit()]
    for _ in range(rng.choice([1, 1, 1, 2, 5])):
        if nums:
            toks[rng.choice(nums)] = rng.choice(EXTREME_NUMBERS)
    return toks


def m_rename(rng, toks, ctx):
    # One name of the spec for another of the same spec: still parses, rarely still checks.
    names = [i for i, t in enumerate(toks) if re.match(r"[A-Za-z_]", t) and t not in KEYWORDS]
    if names:
        toks[rng.choice(names)] = rng.choice([n for n in ctx["names"] if n not in KEYWORDS])
    return toks


def m_insert(rng, toks, ctx):
    i = _pick_token(rng, toks, meaningful=False)
    pool = rng.choice([KEYWORDS, FUNCTIONS, list(LAYERS), PUNCTUATION, EXTREME_NUMBERS])
    toks[i:i] = [" ", rng.choice(pool), " "]
    return toks


def m_lines(rng, toks, ctx):
    lines = "".join(toks).split("\n")
    i = rng.randrange(len(lines))
    j = min(len(lines), i + rng.choice([1, 1, 2, 5]))
    action = rng.choice(["drop", "repeat", "move"])
    if action == "drop":
        del lines[i:j]
    elif action == "repeat":
        lines[j:j] = lines[i:j] * rng.choice([1, 2, 3, 50])
    else:
        chunk = lines[i:j]
        del lines[i:j]
        k = rng.randrange(len(lines) + 1)
        lines[k:k] = chunk
    return tokens("\n".join(lines))


def m_nest(rng, toks, ctx):
    # Deep nesting, of the kinds that recurse in a checker: brackets, operators, bodies.
    depth = rng.choice([5, 50, 99, 101, 150, 1000, 5000])
    kind = rng.choice(["paren", "list", "brace", "minus", "not", "plus", "ifelse", "residual", "else"])
    at_statement = kind in ("brace", "residual", "else")
    i = _statement_point(rng, toks) if at_statement else _number_point(rng, toks)
    if kind == "paren":
        j = min(len(toks), i + 1)
        return toks[:i] + ["("] * depth + toks[i:j] + [")"] * depth + toks[j:]
    if kind == "list":
        return toks[:i] + ["["] * depth + ["1"] + ["]"] * depth + toks[i:]
    if kind == "brace":
        return toks[:i] + ["{ "] * depth + ["relu"] + [" }"] * depth + toks[i:]
    if kind == "residual":
        return toks[:i] + ["residual { "] * depth + ["relu"] + [" }"] * depth + toks[i:]
    if kind == "else":
        return toks[:i] + ["if false { relu }"] + [" else if false { relu }"] * depth + ["\n"] + toks[i:]
    if kind == "ifelse":
        return toks[:i] + ["1 if true else "] * depth + toks[i:]
    return toks[:i] + [{"minus": "-", "not": "not ", "plus": "1 + "}[kind]] * depth + toks[i:]


def m_splice(rng, toks, ctx):
    other = tokens(rng.choice(ctx["texts"]))
    i, j = sorted(rng.randrange(len(other) + 1) for _ in range(2))
    k = rng.randrange(len(toks) + 1)
    return toks[:k] + other[i:j] + toks[k:]


def m_truncate(rng, toks, ctx):
    return toks[:rng.randrange(len(toks) + 1)]


def m_big_repeat(rng, toks, ctx):
    # Counts and loops that multiply: what the limits are for.
    i = _statement_point(rng, toks)
    snippet = rng.choice([
        "\nrelu * 100000\n", "\nfor i in range(10000) { relu * 10000 }\n",
        "\nfor i in range(10000) { for j in range(10000) { let x = i } }\n",
        "\n{ { } * 10000 } * 10000\n", "\nlet a = [1, 2, 3, 4]\n" +
        "".join("let a = a + a\n" for _ in range(40)),
        "\nlet r = range(-9223372036854775807, 9223372036854775807)\n",
        "\nlet m = [[x for x in range(10000)] for y in range(10000)]\n",
        "\nlet big = range(10000)\nfor i in range(10000) { let s = big[1:] }\n",
    ])
    return toks[:i] + [snippet] + toks[i:]


# Syntax-breaking mutations stop at the parser; the others mostly reach the checker.
MUTATIONS = [m_delete, m_duplicate, m_swap, m_replace_name, m_insert, m_truncate, m_splice,
             m_extreme_number, m_rename, m_lines, m_nest, m_big_repeat]
WEIGHTS = [6, 5, 5, 4, 4, 1, 2,
           16, 10, 8, 3, 1]
# Half the inputs get only these, so that half get past the parser.
PARSEABLE = [0, 0, 0, 0, 0, 0, 0,
             16, 10, 8, 3, 1]


def random_bytes(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.choice([1, 1, 2, 5, 20])):
        i = rng.randrange(len(out) + 1)
        what = rng.random()
        if what < 0.4:
            out[i:i] = bytes(rng.randrange(256) for _ in range(rng.choice([1, 2, 4])))
        elif what < 0.6:
            out[i:i] = rng.choice([b"\x00", b"\xef\xbb\xbf", b"\r", b"\r\n", b"\t", b"\xff\xfe",
                                   "é".encode(), "→".encode(), b"\xc3", b"\x1b[31m", b"\\"])
        elif i < len(out):
            out[i] = rng.randrange(256)
    return bytes(out)


def random_overrides(rng: random.Random, text: str) -> dict[str, str]:
    """``--set`` values for a network's own parameters, as netdsl expressions."""
    params = re.findall(r"(\w+)\s*=", " ".join(re.findall(r"^network\s+\w+\s*\(([^)]*)\)", text,
                                                         re.M | re.S)))
    values = EXTREME_NUMBERS + ["true", "false", "none", '"x"', "[]", "[1, 2]", "[0]", "relu",
                                "[[1]]", "-5", "0.0001"]
    return {name: rng.choice(values) for name in rng.sample(params, min(len(params), rng.choice([1, 2])))}


@dataclass(frozen=True)
class Input:
    """One fuzz input: the spec bytes and how to compile them."""

    data: bytes
    strategy: str                    # what was done, to read in a report
    network: str | None = None
    overrides: tuple = ()            # (name, netdsl expression) pairs, as --set gives them
    limits: tuple = ()               # (name, value) pairs for Limits(...), as --limit gives them


# A limit set to an edge: the smallest values, one past the default, and absurd ones.
LIMIT_EDGES = [0, 1, 2, 3, 10, 100, 101, 1000, 2**31, 2**63 - 1, 2**63, 10**30, -1]


def random_limits(rng: random.Random) -> tuple:
    name = rng.choice(netdsl.Limits.names())
    return ((name, rng.choice(LIMIT_EDGES)),)


def make_input(seed: int, index: int, texts: list[str], names: list[str]) -> Input:
    """Input ``index`` of ``seed``, from nothing but the seed, the index and the sources."""
    rng = random.Random(f"{seed}:{index}")
    limits = random_limits(rng) if rng.random() < 0.04 else ()
    if rng.random() < 0.3:
        what, text = fuzz_specs.generate(rng)
        steps = [f"generated {what}"]
        if limits:
            steps.append("limit " + " ".join(f"{k}={v}" for k, v in limits))
        return Input(text.encode("utf-8"), ", ".join(steps), limits=limits)
    # Library files define no network and would all end in E0107: they are spliced, not roots.
    source = rng.choice([i for i, t in enumerate(texts) if re.search(r"^network\s", t, re.M)])
    text = texts[source]
    ctx = {"names": names, "texts": texts}
    toks = tokens(text)
    steps = []
    weights = PARSEABLE if rng.random() < 0.5 else WEIGHTS
    for _ in range(rng.choice([1, 1, 2, 3, 4])):
        m = rng.choices(MUTATIONS, weights)[0]
        toks = m(rng, toks, ctx)
        steps.append(m.__name__[2:])
    data = "".join(toks).encode("utf-8")
    if rng.random() < 0.08:
        data = random_bytes(rng, data)
        steps.append("bytes")
    networks = re.findall(r"^network\s+(\w+)", text, re.M)
    network = rng.choice(networks) if len(networks) > 1 else None
    overrides = random_overrides(rng, text) if rng.random() < 0.1 else {}
    if overrides:
        steps.append("set " + " ".join(f"{k}={v[:20]}" for k, v in overrides.items()))
    if limits:
        steps.append("limit " + " ".join(f"{k}={v}" for k, v in limits))
    return Input(data, f"{SOURCES[source].name}: {', '.join(steps)}", network,
                 tuple(overrides.items()), limits)


# ---------------------------------------------------------------- running


class _Timeout(BaseException):
    """Raised by the CPU-time alarm; a BaseException so no `except Exception` swallows it."""


def _on_alarm(signum, frame):
    raise _Timeout


@contextmanager
def cpu_bound(seconds: float):
    """Raise _Timeout after ``seconds`` of this process's CPU time.

    CPU time, not wall time, so other work on the machine does not make inputs time out.
    The alarm repeats every 50 ms of CPU time after the first: Python ignores an
    exception raised where it cannot propagate (a garbage-collector callback, a
    ``__del__``), and a timeout raised there would otherwise be lost.
    """
    old = signal.signal(signal.SIGVTALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_VIRTUAL, seconds, 0.05)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_VIRTUAL, 0)
        signal.signal(signal.SIGVTALRM, old)


# C0 controls but newline and tab, DEL and C1: what a terminal would act on.
_RAW_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def raw_control(text: str) -> str | None:
    """A report of the first raw control character in ``text``, or None.

    >>> raw_control("error[E0101]: fine"), raw_control("a\x1b[2Jb")
    (None, "raw control character '\\x1b' at offset 1")
    """
    m = _RAW_CONTROL.search(text)
    return None if m is None else f"raw control character {m.group()!r} at offset {m.start()}"


class ContractBroken(Exception):
    """What `check` accepted did not build, run or save as promised."""


def _compile(spec, **kwargs):
    """``netdsl.compile`` with the fuzzer's grant (fuzz_specs.GRANT): the extern classes it
    writes are torch's own; any other module a spec names stays refused."""
    return netdsl.compile(spec, grant=GRANT, **kwargs)


def try_input(data: bytes, network: str | None, bound: float, compile=None,
              overrides: dict | None = None, limits: dict | None = None,
              contract=None, contract_bound: float = 60.0) -> tuple[str, str, float]:
    """(result, traceback or "", CPU seconds) of compiling ``data``, then of ``contract(net)``.

    The front end gets ``bound`` CPU seconds per 100 KB of ``data`` (at least
    ``bound``), ``contract`` (called with the checked network: building and
    running it) ``contract_bound`` more.
    """
    compile = compile or _compile
    bound = bound * max(1.0, len(data) / 100_000)
    start = time.process_time()
    try:
        with cpu_bound(bound):
            try:
                kwargs = dict(overrides or {})
                if limits:
                    try:
                        kwargs["limits"] = netdsl.Limits(**limits)
                    except (TypeError, ValueError) as e:
                        return "limit refused", str(e), time.process_time() - start
                broken = check_fmt(data)
                if broken:
                    return "crash", broken, time.process_time() - start
                net = compile(data, network=network, **kwargs)
                result, detail = "compiled", ""
            except netdsl.NetdslError as e:
                result, detail = (e.diagnostics[0].code if e.diagnostics else "E????"), ""
                bad = raw_control(e.render())
                if bad is not None:
                    result, detail = "crash", f"the rendered diagnostics hold a {bad}"
                return result, detail, time.process_time() - start
        if contract is not None:
            bound = contract_bound
            with cpu_bound(contract_bound):
                detail = contract(net)
    except _Timeout:
        result, detail = "timeout", f"over {bound} s of CPU time"
        if _raises_time_limits(limits):
            result = "slow, as its limits allow"
    except BaseException as e:  # noqa: BLE001 - anything else is what we are looking for
        if isinstance(e, KeyboardInterrupt):
            raise
        result, detail = "crash", "".join(traceback.format_exception(e))
    return result, detail, time.process_time() - start


def check_fmt(data: bytes) -> str:
    """What is wrong with ``netdsl fmt`` on ``data`` ("" when nothing): for input that
    parses, the formatted text must parse to the same AST, keep every comment in order,
    and be its own format.

    >>> check_fmt(b"network n() { input [1, 4, 4]; relu }  # x"), check_fmt(b"network {")
    ('', '')
    """
    from netdsl.syntax.fmt import _tokens, format_text
    from netdsl.syntax.parser import parse

    try:
        text = data.decode("utf-8")
        out = format_text(text)
    except (UnicodeDecodeError, netdsl.NetdslError):
        return ""
    if parse(out) != parse(text.removeprefix("\ufeff")):
        return "fmt changed the AST:\n" + out
    if [t.text for t in _tokens(out) if t.kind == "comment"] != \
            [t.text for t in _tokens(text) if t.kind == "comment"]:
        return "fmt lost or moved a comment:\n" + out
    if format_text(out) != out:
        return "fmt is not a fixed point:\n" + out
    return ""


def _raises_time_limits(limits: dict | None) -> bool:
    """Whether ``limits`` let a spec expand further than the defaults do: then it may
    take as long as it asked (10⁸ steps are minutes), and running past the bound is no hang.

    >>> _raises_time_limits({"max_nodes": 2**31}), _raises_time_limits({"max_nodes": 10})
    (True, False)
    """
    default = netdsl.Limits()
    return any(isinstance(v, int) and k in ("max_nodes", "max_repeat") and v > getattr(default, k)
               for k, v in (limits or {}).items())


# ---------------------------------------------------------------- the contract


def _outputs(out) -> tuple:
    """The outputs, the main one first (`sides` may put `logits` anywhere in the tuple)."""
    if isinstance(out, dict):  # `output dict(...)`
        return tuple(out.values())
    if not isinstance(out, tuple):
        return (out,)
    fields = getattr(out, "_fields", ())
    if "logits" in fields:
        i = fields.index("logits")
        return (out[i],) + tuple(out[:i]) + tuple(out[i + 1:])
    return tuple(out)


FLOAT32_MAX = 3.4028234663852886e38


def _overflows_float32(model, xs: list) -> bool:
    """Whether the same step in float64 gives gradients beyond float32's range: the
    network's own scale (a hundred batch norms in a row over two values each, say), which
    torch's float32 cannot hold either; not a value netdsl got wrong. A float32 defect,
    such as an `eps` that float32 holds as 0, stays finite in float64 and is reported."""
    import copy

    import torch

    twin = copy.deepcopy(model).double().train()
    twin.zero_grad(set_to_none=True)
    outs = _outputs(twin(*[x.detach().double() for x in xs]))
    sum(o.sum() for o in outs).backward()
    grads = [p.grad for p in twin.parameters() if p.grad is not None]
    return any(not torch.isfinite(g).all() or g.abs().max() > FLOAT32_MAX for g in grads)


def _depends_on(model, xs: list, k: int) -> bool:
    """Whether the outputs (eval mode) change when input ``k`` holds other values: an
    input read only for its size (`resize(a, in1)`, or a result made from it) gets no
    gradient, rightly."""
    import torch

    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            plain = [x.detach() for x in xs]
            other = list(plain)
            other[k] = torch.randn_like(plain[k])
            a, b = _outputs(model(*plain)), _outputs(model(*other))
            return not all(bool(((u == v) | (u.isnan() & v.isnan())).all()) for u, v in zip(a, b, strict=True))
    finally:
        model.train(was)


def run_model(net, workdir: Path, fvcore: bool = True) -> None:
    """Build a checked network on the CPU, train one step's worth, evaluate, count and save it.

    Raises :class:`ContractBroken` (or whatever broke) when any promise of `check` fails.
    """
    import torch

    from netdsl.analysis import analyse
    from netdsl.backend.checkpoint import check_target, save
    from netdsl.backend.lower import lower
    from netdsl.cli.build import fvcore_total

    a = analyse(net)
    model = lower(net, device="cpu", grant=GRANT)
    built = sum(p.numel() for p in model.parameters())
    if built != a.params:
        raise ContractBroken(f"built {built} parameters, the analysis says {a.params}")
    # Batch 2: batch norm in training needs more than one value per channel, as in torch.
    shapes = [tuple(i.shape) for i in net.inputs] or [tuple(net.input_shape)]
    xs = [torch.randn(2, *s, requires_grad=True) for s in shapes]
    model.train()
    outs = _outputs(model(*xs))
    sum(o.float().sum() for o in outs).backward()
    for k, x in enumerate(xs):
        if x.grad is None and _depends_on(model, xs, k):
            raise ContractBroken("the backward pass gave no gradient to an input the outputs depend on")
    # A `div` by a result that is 0 somewhere is infinite there, in torch as in the spec.
    divides = any(isinstance(n, ir.Merge) and n.op == "div" for n in walk(net.body))
    if not divides and not all(torch.isfinite(p.grad).all() for p in model.parameters()
                               if p.grad is not None) and not _overflows_float32(model, xs):
        raise ContractBroken("the backward pass gave non-finite gradients")
    wants = [(2, *s) for s in net.result.shapes] if net.result is not None else [(2, *net.out_shape)]
    if [tuple(o.shape) for o in outs[:len(wants)]] != wants:
        raise ContractBroken(f"training outputs {[list(o.shape) for o in outs]}, the checker inferred "
                             f"{[list(w) for w in wants]}")
    model.eval()
    with torch.no_grad():
        y = _outputs(model(*[x.detach().clone() for x in xs]))
        # Differential: the forward netdsl wrote against the IR evaluated node by node.
        want = _outputs(ir_eval.evaluate(net, model, *[x.detach().clone() for x in xs]))
    if [tuple(t.shape) for t in y] != wants:
        raise ContractBroken(f"eval output {[list(t.shape) for t in y]}, the checker inferred "
                             f"{[list(w) for w in wants]}")
    if len(want) != len(y) or not all(a.shape == b.shape and bool(((a == b) | (a.isnan() & b.isnan())).all())
                                      for a, b in zip(y, want, strict=True)):
        raise ContractBroken("the built model's forward differs from the IR's own evaluation (bench/ir_eval.py)")
    twin = pickle.loads(pickle.dumps(model))
    with torch.no_grad():
        again = _outputs(twin(*[x.detach() for x in xs]))
        # Equal to the bit, NaN where NaN (`div(r, r)` of a relu's zeros is 0 / 0).
        if len(again) != len(y) or not all(bool(((a == b) | (a.isnan() & b.isnan())).all())
                                           for a, b in zip(again, y, strict=True)):
            raise ContractBroken("the unpickled model gives other outputs")
    if fvcore:
        total = fvcore_total(model, shapes, torch.device("cpu"))
        if total != a.macs:
            raise ContractBroken(f"fvcore counts {total} MACs, the analysis says {a.macs}")
    path = workdir / "model.pt"
    save(model.state_dict(), str(path), check_target(str(path)))
    fresh = lower(net, device="meta", grant=GRANT)
    fresh.load_state_dict(torch.load(path, weights_only=True), strict=True, assign=True)
    path.unlink()


# Allocating, initialising and saving 100M parameters takes seconds and proves
# nothing that 30M do not; such networks are built on meta only.
PARAMS_BUDGET = 30_000_000


def make_contract(item: Input, workdir: Path, macs_budget: float, compile=None):
    """The contract for one input: a function of its checked network, for :func:`try_input`."""
    compile = compile or _compile

    def contract(net) -> str:
        from netdsl.analysis import analyse
        from netdsl.backend.lower import lower

        lower(net, device="meta", grant=GRANT)
        a = analyse(net)
        if a.params > PARAMS_BUDGET:
            return "meta only"
        if a.macs <= macs_budget:
            run_model(net, workdir)
            return "full"
        # Too big to run here at its own size: at a smaller input, if the spec takes one.
        if len(net.input_shape) == 3 and not net.inputs:
            c, h, w = net.input_shape
            for size in (64, 96, 128):
                if size >= min(h, w):
                    break
                try:
                    small = compile(item.data, network=item.network, input=(c, size, size),
                                    limits=netdsl.Limits(**dict(item.limits)),
                                    **dict(item.overrides))
                except netdsl.NetdslError:
                    continue
                if analyse(small).macs <= macs_budget:
                    run_model(small, workdir)
                    return "smaller input"
        return "meta only"

    return contract


def try_command(item: Input, seed: int, index: int, folder: Path, bound: float,
                real: bool) -> tuple[str, str, str, float]:
    """(command, result, detail, seconds) of one netdsl command on the input, as
    fuzz_commands.py chooses, writes and judges it: in this process under a CPU bound,
    or (``real``) as a ``python -m netdsl`` process under a wall-clock one."""
    import fuzz_commands

    rng = random.Random(f"{seed}:{index}:command")
    name = rng.choices(list(fuzz_commands.WEIGHTS), list(fuzz_commands.WEIGHTS.values()))[0]
    where = Path(tempfile.mkdtemp(prefix=f"i{index}-", dir=folder))
    project = fuzz_commands.make_project(where, item.data, SOURCES)
    project.network, project.overrides, project.limits = item.network, item.overrides, item.limits
    before = os.getcwd()
    os.chdir(project.root)
    start = time.perf_counter() if real else time.process_time()
    try:
        if real:
            result, detail = fuzz_commands.run_command(name, rng, project, True, bound)
        else:
            with cpu_bound(bound):
                result, detail = fuzz_commands.run_command(name, rng, project, False, bound)
    except _Timeout:
        result, detail = "timeout", (f"{name}: over {bound} s of CPU time\n"
                                     f"netdsl {' '.join(fuzz_commands.LAST_ARGV)}")
        if fuzz_commands.asks_for_long_work(fuzz_commands.LAST_ARGV):
            result = "slow, as its limits allow"
    except subprocess.TimeoutExpired:
        result, detail = "timeout", f"{name}: over {bound} s"
    except BaseException as e:  # noqa: BLE001 - anything else is what we are looking for
        if isinstance(e, KeyboardInterrupt):
            raise
        result, detail = "crash", f"{name}: " + "".join(traceback.format_exception(e))
    finally:
        os.chdir(before)
        shutil.rmtree(where, ignore_errors=True)
    seconds = (time.perf_counter() if real else time.process_time()) - start
    return name, result, detail, seconds


@contextmanager
def spec_folder():
    """Work in a copy of specs/, so `import "resnet.net"` resolves and nothing real is touched."""
    before = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="netdsl-fuzz-") as tmp:
        for path in SOURCES:
            shutil.copy(path, tmp)
        os.chdir(tmp)
        try:
            yield Path(tmp)
        finally:
            os.chdir(before)


def _sources():
    texts = [p.read_text(encoding="utf-8") for p in SOURCES]
    names = sorted({n for t in texts for n in re.findall(r"[A-Za-z_]\w*", t)})
    return texts, names


def _try_one(index: int, seed: int, texts, names, folder: Path, bound: float, compile,
             mode: str, macs_budget: float) -> Outcome:
    item = make_input(seed, index, texts, names)
    if mode == "cli":
        name, result, detail, seconds = try_command(item, seed, index, folder, max(bound, 60.0) * 4, True)
        return Outcome(index, item.strategy, seconds, result, detail, item.data, command=f"{name} {result}")
    outcome = {}
    contract = None
    if mode in ("contract", "commands"):
        inner = make_contract(item, folder, macs_budget, compile)

        def contract(net):
            outcome["contract"] = inner(net)
            return ""

    result, detail, seconds = try_input(item.data, item.network, bound, compile,
                                        dict(item.overrides), dict(item.limits), contract)
    command = ""
    if mode == "commands" and result not in ("crash", "timeout"):
        name, got, why, more = try_command(item, seed, index, folder, max(bound, 60.0), False)
        command, seconds = f"{name} {got}", seconds + more
        if got in ("crash", "timeout"):
            result, detail = got, why
    return Outcome(index, item.strategy, seconds, result, detail, item.data,
                   outcome.get("contract", ""), command)


def _worker(args) -> list[Outcome]:
    indices, seed, bound, mode, macs_budget, journal = args
    import dataclasses
    import json

    import torch

    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    texts, names = _sources()
    out = []
    with spec_folder() as folder, open(journal, "a", encoding="utf-8") as log:
        try:
            for index in indices:
                o = _try_one(index, seed, texts, names, folder, bound, None, mode, macs_budget)
                if o.result not in ("crash", "timeout"):
                    o.data = b""  # only crashes travel back whole
                out.append(o)
                # Each input's outcome as it ends: if a native crash kills this process, the
                # parent knows which inputs ended and which one was running.
                log.write(json.dumps({**dataclasses.asdict(o), "data": o.data.decode("latin-1")}) + "\n")
                log.flush()
        finally:
            _stop_server()
    return out


def _journal(path: Path) -> list[Outcome]:
    import json

    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        d = json.loads(line)
        out.append(Outcome(**{**d, "data": d["data"].encode("latin-1")}))
    return out


def _in_pool(chunks: list[list[int]], jobs: int, args: tuple, work: Path, add) -> list[int]:
    """Run ``chunks`` in a pool of ``jobs`` spawned processes, giving ``add`` each outcome.
    When a process dies (a segfault in a native kernel, the kernel's out-of-memory
    killer), the pool breaks: returns the inputs that did not end, to be run again."""
    import concurrent.futures
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    unfinished: list[int] = []
    with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=ctx) as pool:
        futures = {}
        first = len(os.listdir(work))  # journals are numbered across pools, never reused
        for chunk in chunks:
            journal = work / f"{first + len(futures)}.jsonl"
            futures[pool.submit(_worker, (chunk, *args, str(journal)))] = (chunk, journal)
        for future in concurrent.futures.as_completed(futures):
            chunk, journal = futures[future]
            try:
                outcomes = future.result()
            except concurrent.futures.process.BrokenProcessPool:
                outcomes = _journal(journal)
                unfinished += chunk[len(outcomes):]
            for o in outcomes:
                add(o)
    return unfinished


def _run_jobs(indices: list[int], jobs: int, args: tuple, add) -> None:
    """Run the inputs in ``jobs`` processes; an input whose process dies is run again
    alone, and if it kills a process of its own, it is a crash."""
    with tempfile.TemporaryDirectory(prefix="netdsl-fuzz-journal-") as tmp:
        work = Path(tmp)
        todo = [indices[k:k + 50] for k in range(0, len(indices), 50)]
        while todo:
            unfinished = _in_pool(todo, jobs, args, work, add)
            todo = []
            if not unfinished:
                break
            # The first input that did not end is the suspect (or was killed with the pool):
            # alone, in a process of its own, it either ends or is the crash.
            suspect, rest = unfinished[0], unfinished[1:]
            if _in_pool([[suspect]], 1, args, work, add):
                item = make_input(args[0], suspect, *_sources())
                add(Outcome(suspect, item.strategy, 0.0, "crash", "the process died running this input "
                            "(a native crash, or killed for memory)", item.data))
            todo = [rest[k:k + 50] for k in range(0, len(rest), 50)]


def _stop_server() -> None:
    """Stop the language server a command run may have started (fuzz_commands.py)."""
    if "fuzz_commands" in sys.modules:
        sys.modules["fuzz_commands"].stop_server()


def run(inputs: int, seed: int, bound: float = 5.0, only: int | None = None,
        compile=None, progress=None, mode: str = "compile", macs_budget: float = 3e8,
        jobs: int = 1) -> Report:
    """Try ``inputs`` inputs of ``seed`` (or just input ``only``); a Report of what happened.

    ``mode`` is "compile" (the front end only), "contract" (then build, run and
    save what compiles), "commands" (the contract, then one netdsl command per
    input, in this process: fuzz_commands.py) or "cli" (one command per input, as
    a real process).

    >>> run(5, seed=0).crashes
    []
    """
    warnings.simplefilter("ignore")  # torch's advice on odd init arguments is not a crash
    os.environ["NETDSL_TRACEBACK"] = "1"  # an internal error of a command run here shows where
    report = Report()
    started = time.perf_counter()
    indices = [only] if only is not None else list(range(inputs))
    if jobs > 1 and compile is None and len(indices) > 1:
        def add(o: Outcome) -> None:
            before = report.tried
            report.add(o)
            if progress and before // progress != report.tried // progress:
                print(f"  {report.tried} inputs, {len(report.crashes)} crashes, "
                      f"{time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)

        _run_jobs(indices, jobs, (seed, bound, mode, macs_budget), add)
        report.seconds = time.perf_counter() - started
        return report
    texts, names = _sources()
    with spec_folder() as folder:
        try:
            for index in indices:
                report.add(_try_one(index, seed, texts, names, folder, bound, compile, mode, macs_budget))
                if progress and report.tried % progress == 0:
                    print(f"  {report.tried} inputs, {len(report.crashes)} crashes, "
                          f"{time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
        finally:
            _stop_server()
    report.seconds = time.perf_counter() - started
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--inputs", type=int, default=1000, help="how many inputs to try")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=5.0,
                   help="CPU seconds allowed per input (per 100 KB of a larger one) for the front "
                        "end (default 5; the contract gets 60 more, a command 60, a --cli process "
                        "4 × 60 of wall time)")
    p.add_argument("--only", type=int, metavar="I", help="try input I of the seed alone")
    p.add_argument("--show", action="store_true", help="print the input(s) tried")
    p.add_argument("--save-crashes", metavar="DIR", help="write each crashing input to DIR")
    p.add_argument("--progress", type=int, metavar="N", help="report progress every N inputs")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--contract", action="store_true",
                      help="build, run, backprop and save every input that compiles")
    mode.add_argument("--commands", action="store_true",
                      help="the contract, then one netdsl command per input (fuzz_commands.py), in-process")
    mode.add_argument("--cli", action="store_true",
                      help="one netdsl command per input, as a real process")
    p.add_argument("--macs-budget", type=float, default=3e8,
                   help="run the contract at the spec's own input up to this many MACs (default 3e8)")
    p.add_argument("--jobs", type=int, default=1, help="worker processes")
    args = p.parse_args(argv)

    mode_name = ("contract" if args.contract else "commands" if args.commands else
                 "cli" if args.cli else "compile")
    report = run(args.inputs, args.seed, args.timeout, args.only, progress=args.progress,
                 mode=mode_name, macs_budget=args.macs_budget, jobs=args.jobs)
    if args.show:
        texts, names = _sources()
        for index in ([args.only] if args.only is not None else
                      [report.slowest.index] if report.slowest else []):
            item = make_input(args.seed, index, texts, names)
            sys.stdout.write(item.data.decode("utf-8", "backslashreplace") + "\n")
    other = ", ".join(f"{k} {v}" for k, v in sorted(report.results.items())
                      if k not in ("compiled", "crash", "timeout"))  # "slow, as its limits allow" too
    print(f"inputs tried:  {report.tried} (seed {args.seed}, mode {mode_name}, {report.seconds:.1f} s)")
    print("sources:       " + ", ".join(f"{k} {v}" for k, v in sorted(report.strategies.items())))
    print(f"compiled:      {report.results['compiled']}")
    if report.commands:
        print("commands:      " + ", ".join(f"{k} {v}" for k, v in sorted(report.commands.items())))
    if mode_name in ("contract", "commands"):
        print("contract:      " + (", ".join(f"{k} {v}" for k, v in sorted(report.contracts.items()))
                                   or "none ran"))
    print(f"diagnostics:   {report.tried - report.results['compiled'] - len(report.crashes)} ({other})")
    print(f"crashes:       {len(report.crashes)} ({report.results['crash']} exceptions, "
          f"{report.results['timeout']} over their bound)")
    if report.slowest:
        s = report.slowest
        print(f"slowest input: #{s.index} ({s.strategy}) {s.seconds:.3f} s, {s.result}")
    for o in report.crashes:
        print(f"\n--- crash: input #{o.index} ({o.strategy}): {o.result}\n{o.detail}")
        if args.save_crashes:
            out = Path(args.save_crashes)
            out.mkdir(parents=True, exist_ok=True)
            (out / f"seed{args.seed}_{o.index}.net").write_bytes(o.data)
    return 1 if report.crashes else 0


if __name__ == "__main__":
    sys.exit(main())
