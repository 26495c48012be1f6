"""Fuzz the front end: bad input must never crash netdsl.

Each input is a shipped spec (specs/*.net, netdsl/stdlib/*.net) after one to
four random mutations: token deletion, duplication and swaps, names and
keywords put in the wrong place, extreme numbers, lines dropped or repeated,
deep nesting, splices of two specs, truncation and random bytes. Every input
must either compile (``netdsl.compile``, the front end only: nothing is built)
or raise ``netdsl.NetdslError``, within a bound of CPU time. Any other
exception, or running past the bound, is a crash.

    python bench/fuzz.py --inputs 20000 --seed 1
    python bench/fuzz.py --seed 1 --only 4711 --show       # one input again, printed
    python bench/fuzz.py --inputs 5000 --save-crashes /tmp/crashes

Input ``i`` of seed ``S`` depends on nothing else, so any one can be replayed.
It prints the inputs tried, how many compiled or gave which diagnostics, the
crashes (with their tracebacks), and the slowest input. Exit status 1 if
anything crashed.
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import re
import shutil
import signal
import sys
import tempfile
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import netdsl  # noqa: E402
from netdsl.layers import LAYERS  # noqa: E402

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


@dataclass
class Report:
    tried: int = 0
    results: collections.Counter = field(default_factory=collections.Counter)
    crashes: list[Outcome] = field(default_factory=list)
    slowest: Outcome | None = None
    seconds: float = 0.0

    def add(self, o: Outcome) -> None:
        self.tried += 1
        self.results[o.result] += 1
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
        "".join(f"let a = a + a\n" for _ in range(40)),
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


def make_input(seed: int, index: int, texts: list[str], names: list[str]):
    """Input ``index`` of ``seed``: (bytes, what was done to it, a network to ask for, overrides)."""
    rng = random.Random(f"{seed}:{index}")
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
    return data, f"{SOURCES[source].name}: {', '.join(steps)}", network, overrides


# ---------------------------------------------------------------- running


class _Timeout(BaseException):
    """Raised by the CPU-time alarm; a BaseException so no `except Exception` swallows it."""


def _on_alarm(signum, frame):
    raise _Timeout


@contextmanager
def cpu_bound(seconds: float):
    """Raise _Timeout after ``seconds`` of this process's CPU time.

    CPU time, not wall time, so other work on the machine does not make inputs time out.
    """
    old = signal.signal(signal.SIGVTALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_VIRTUAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_VIRTUAL, 0)
        signal.signal(signal.SIGVTALRM, old)


def try_input(data: bytes, network: str | None, bound: float, compile=None,
              overrides: dict | None = None) -> tuple[str, str, float]:
    """(result, traceback or "", CPU seconds) of compiling ``data``."""
    compile = compile or netdsl.compile
    start = time.process_time()
    try:
        with cpu_bound(bound):
            try:
                compile(data, network=network, **(overrides or {}))
                result, detail = "compiled", ""
            except netdsl.NetdslError as e:
                result, detail = (e.diagnostics[0].code if e.diagnostics else "E????"), ""
    except _Timeout:
        result, detail = "timeout", f"over {bound} s of CPU time"
    except BaseException as e:  # noqa: BLE001 - anything else is what we are looking for
        if isinstance(e, KeyboardInterrupt):
            raise
        result, detail = "crash", "".join(traceback.format_exception(e))
    return result, detail, time.process_time() - start


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


def run(inputs: int, seed: int, bound: float = 5.0, only: int | None = None,
        compile=None, progress=None) -> Report:
    """Try ``inputs`` inputs of ``seed`` (or just input ``only``); a Report of what happened.

    >>> run(5, seed=0).crashes
    []
    """
    texts = [p.read_text(encoding="utf-8") for p in SOURCES]
    names = sorted({n for t in texts for n in re.findall(r"[A-Za-z_]\w*", t)})
    report = Report()
    started = time.perf_counter()
    with spec_folder():
        for index in ([only] if only is not None else range(inputs)):
            data, strategy, network, overrides = make_input(seed, index, texts, names)
            result, detail, seconds = try_input(data, network, bound, compile, overrides)
            report.add(Outcome(index, strategy, seconds, result, detail, data))
            if progress and report.tried % progress == 0:
                print(f"  {report.tried} inputs, {len(report.crashes)} crashes, "
                      f"{time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    report.seconds = time.perf_counter() - started
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--inputs", type=int, default=1000, help="how many inputs to try")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=5.0, help="CPU seconds allowed per input")
    p.add_argument("--only", type=int, metavar="I", help="try input I of the seed alone")
    p.add_argument("--show", action="store_true", help="print the input(s) tried")
    p.add_argument("--save-crashes", metavar="DIR", help="write each crashing input to DIR")
    p.add_argument("--progress", type=int, metavar="N", help="report progress every N inputs")
    args = p.parse_args(argv)

    report = run(args.inputs, args.seed, args.timeout, args.only, progress=args.progress)
    if args.show:
        for o in ([report.slowest] if report.slowest else []):
            sys.stdout.write(o.data.decode("utf-8", "backslashreplace") + "\n")
    other = ", ".join(f"{k} {v}" for k, v in sorted(report.results.items())
                      if k not in ("compiled", "crash", "timeout"))
    print(f"inputs tried:  {report.tried} (seed {args.seed}, {report.seconds:.1f} s)")
    print(f"compiled:      {report.results['compiled']}")
    print(f"diagnostics:   {report.tried - report.results['compiled'] - len(report.crashes)} ({other})")
    print(f"crashes:       {len(report.crashes)} ({report.results['crash']} exceptions, "
          f"{report.results['timeout']} over {args.timeout} s)")
    if report.slowest:
        s = report.slowest
        print(f"slowest input: #{s.index} ({s.strategy}) {s.seconds:.3f} s CPU, {s.result}")
    for o in report.crashes:
        print(f"\n--- crash: input #{o.index} ({o.strategy}): {o.result}\n{o.detail}")
        if args.save_crashes:
            out = Path(args.save_crashes)
            out.mkdir(parents=True, exist_ok=True)
            (out / f"seed{args.seed}_{o.index}.net").write_bytes(o.data)
    return 1 if report.crashes else 0


if __name__ == "__main__":
    sys.exit(main())
