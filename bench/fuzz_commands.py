"""Every netdsl command run on fuzz inputs, and what each one promises.

``fuzz.py --commands`` hands each input to one command, chosen by the input's
seed: ``DRIVERS`` holds one driver per command of ``netdsl.cli.COMMANDS`` (the
coverage test fails when a command has none). A driver writes the command line
a user might type for the spec: its flags, ``--set`` and ``--limit`` values, the
spec read from a path or from stdin, and for a command that writes a file, a
target chosen to tempt it: a new file, the user's own ``notes.txt``, the spec
itself, a file the spec imports, a directory, a link that leads out of the
project, a file netdsl wrote before (unchanged, or edited since), with or
without ``--force``.

The command runs in a project folder of its own (copies of the shipped specs,
the input as ``input.net``, a sub-folder, a link to a ``victim`` file outside)
and is judged by what a user would see:

- its exit status is 0; 1 with diagnostics (or the command's own report of a
  difference: ``verify``, ``fmt --check``/``--diff``); or 2 with a
  ``netdsl: error:`` sentence. Never 3, never a traceback, never a raw control
  character on stderr, or on stdout when it prints text for a terminal;
- it ends within the CPU bound;
- the only files that change are the ones it was asked to write, and only where
  the write policy lets it (docs/cli.md, "Writing files"): never the spec or a file
  it imports, an existing file only with ``--force`` or when netdsl wrote it and
  nobody changed it since (its stamp, checked here by code of this module's own),
  nothing outside the project, through a link or otherwise, and no temporary
  file left behind.

The language server is driven as an editor drives it, by the same client the
tests use (``lsp_client.py``): the input opened and changed, diagnostics awaited,
hover, definition and completion at random places, formatting; every answer
within a deadline and no error in the server's log.

Commands run in this process (``netdsl.cli.main``) unless ``real`` is given: then
as ``python -m netdsl`` processes, as ``fuzz.py --cli`` does.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import random
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Commands whose exit status 1 may be a report rather than a diagnostic.
_REPORTS = {"verify", "fmt"}


@dataclass
class Project:
    """The folder one command runs in, and what the input is."""

    root: Path                    # the project: cwd of the command
    outside: Path                 # a folder beside it that nothing may touch
    spec: Path                    # root / input.net, the input's bytes
    data: bytes
    network: str | None = None
    overrides: tuple = ()
    limits: tuple = ()

    @property
    def text(self) -> str:
        return self.data.decode("utf-8", "replace")

    def imports(self) -> list[Path]:
        """The files of the project the input imports directly (by the text of its imports)."""
        out = []
        for name in re.findall(r'^\s*import\s+"([^"\\\n]*)"', self.text, re.M):
            path = self.root / name
            if name and path.is_file() and path.resolve().parent == self.root.resolve():
                out.append(path)
        return out

    def params(self) -> list[str]:
        """The parameter names of the input's networks, as a user reads them off the spec."""
        names = []
        for params in re.findall(r"^\s*network\s+\w+\s*\(([^)]*)\)", self.text, re.M):
            names += re.findall(r"([A-Za-z_]\w*)\s*(?:=|,|$)", params)
        return names or ["width"]


@dataclass
class Call:
    """One command line, its stdin, and the files it may change."""

    argv: list[str]
    stdin: bytes | None = None
    may_write: set[Path] = field(default_factory=set)
    text_stdout: bool = True      # stdout is text for a terminal (not a file's bytes)


def make_project(where: Path, data: bytes, sources: list[Path]) -> Project:
    where = where.resolve()
    root, outside = where / "proj", where / "outside"
    root.mkdir()
    outside.mkdir()
    for path in sources:
        shutil.copy(path, root)
    spec = root / "input.net"
    spec.write_bytes(data)
    (root / "notes.txt").write_text("the user's notes\n")
    (root / "sub").mkdir()
    (root / "sub" / "inner.net").write_text("network inner() {\n    input [3, 8, 8]\n    relu\n}\n")
    (outside / "victim.txt").write_text("not netdsl's\n")
    (outside / "victim.net").write_text("network victim() { input [3, 8, 8]; relu }\n")
    (root / "link.txt").symlink_to(outside / "victim.txt")
    (root / "sub" / "out.net").symlink_to(outside / "victim.net")  # a link out of the tree fmt walks
    return Project(root, outside, spec, data)


# ---------------------------------------------------------------- the write policy, re-stated

_STAMP = re.compile(rb"(?:# |%% |// |<!-- )netdsl-sha256: ([0-9a-f]{64})(?: -->)?\n\Z")


def netdsl_wrote(data: bytes) -> bool:
    """Whether ``data`` ends in a netdsl stamp that matches the bytes before it."""
    start = data.rfind(b"\n", 0, len(data) - 1) + 1
    m = _STAMP.match(data, start)
    return m is not None and hashlib.sha256(data[:start]).hexdigest().encode() == m.group(1)


def stamped(text: str, comment: str = "# {}") -> bytes:
    """``text`` as netdsl would have written it, with its stamp line."""
    digest = hashlib.sha256(text.encode()).hexdigest()
    return (text + comment.format(f"netdsl-sha256: {digest}") + "\n").encode()


def _is_checkpoint(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return False
    return head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"


def pick_target(rng: random.Random, p: Project, suffix: str, call: Call, force: bool,
                checkpoint: bool = False) -> str:
    """A file for a command to write, chosen to tempt it; what the policy allows of it
    goes into ``call.may_write``."""
    choices = ["new", "new", "notes", "spec", "link", "dir", "stamped", "edited", "missing_dir"]
    if p.imports():
        choices.append("import")
    if checkpoint:
        choices.append("checkpoint")
    what = rng.choice(choices)
    if what == "new":
        path = p.root / f"out{suffix}"
    elif what == "notes":
        path = p.root / "notes.txt"
    elif what == "spec":
        path = p.spec
    elif what == "import":
        path = rng.choice(p.imports())
    elif what == "link":
        path = p.root / "link.txt"
    elif what == "dir":
        path = p.root / "sub"
    elif what == "missing_dir":
        path = p.root / "nowhere" / f"out{suffix}"
    elif what == "checkpoint":
        import torch

        path = p.root / "old.pt"
        torch.save({"w": torch.zeros(1)}, path)
    else:
        path = p.root / f"earlier{suffix}"
        data = stamped("written by netdsl before\n")
        if what == "edited":
            data = data.replace(b"before", b"b4")
        path.write_bytes(data)
    # A named link is followed (docs/cli.md, "Writing files"): the file it leads to is the target.
    # The spec and its imports are never replaced; a spec read from stdin is no file of the
    # project's, and input.net is then a file like any other.
    real = path.resolve()
    protected = {i.resolve() for i in p.imports()} | ({p.spec.resolve()} if call.stdin is None else set())
    if real.is_dir() or real in protected or not real.parent.is_dir():
        return str(path)
    exists = real.exists()
    own = exists and real.is_file() and netdsl_wrote(real.read_bytes())
    if not exists or force or own or (checkpoint and _is_checkpoint(real)):
        call.may_write.add(real)
    return str(path)


# ---------------------------------------------------------------- command lines

_VALUES = ["1", "2", "3", "4", "8", "0", "-1", "0.5", "true", "none", '"a"', "[1, 2]", "10 ** 9",
           "1e39", "basic", "width", "", "1 +", "[", '"\x1b[2J"']


def spec_flags(rng: random.Random, p: Project, call: Call, stdin_ok: bool = True) -> list[str]:
    """The spec argument and the flags every compiling command takes."""
    args = []
    if stdin_ok and rng.random() < 0.15:
        args.append("-")
        call.stdin = p.data
    else:
        args.append(str(p.spec) if rng.random() < 0.5 else "input.net")
    if p.network:
        args += ["--network", p.network]
    for k, v in p.overrides:
        args += ["--set", f"{k}={v}"]
    for k, v in p.limits:
        args += ["--limit", f"{k}={v}"]
    if rng.random() < 0.1:
        args += ["--set", f"{rng.choice(p.params() + ['nope'])}={rng.choice(_VALUES)}"]
    if rng.random() < 0.05:
        args += ["--input", rng.choice(["3,8,8", "1,1,1", "3,0,8", "x", "3,8", "3,99999999,9", "in0=3,8,8"])]
    if rng.random() < 0.05:
        args += ["--import-path", rng.choice(["sub", str(p.outside), "missing", "notes.txt"])]
    # The fuzzer's grant for its externs (fuzz_specs.GRANT), now and then another or none.
    if rng.random() < 0.8:
        args += ["--allow-module", "torch.nn"]
    if rng.random() < 0.05:
        args += ["--allow-module", rng.choice(["torch", "fuzzlab", "a/b", "", "torch..nn"])]
    return args


def _table(rng: random.Random) -> list[str]:
    args = []
    if rng.random() < 0.4:
        args += ["--format", rng.choice(["table", "json"])]
    if rng.random() < 0.2:
        args += ["--depth", rng.choice(["1", "2", "5", "0", "x"])]
    return args


def d_check(rng, p):
    call = Call([])
    call.argv = ["check", *spec_flags(rng, p, call), *_table(rng)]
    if rng.random() < 0.1:
        call.argv.append("--emit-ir")
    return call


def d_build(rng, p):
    call = Call([])
    force = rng.random() < 0.3
    call.argv = ["build", *spec_flags(rng, p, call), *_table(rng)]
    call.argv += ["--device", rng.choice(["cpu", "cpu", "meta", "cuda:7", "tpu"])] if rng.random() < 0.3 else []
    if rng.random() < 0.4:
        call.argv += ["--save", pick_target(rng, p, ".pt", call, force, checkpoint=True)]
        if force:
            call.argv.append("--force")
    if rng.random() < 0.1:
        call.argv += ["--weights", rng.choice(["notes.txt", "missing.pt", str(p.outside / "victim.txt"),
                                              "input.net"])]
    for flag in ("--no-fvcore", "--fuse"):
        if rng.random() < 0.15:
            call.argv.append(flag)
    return call


def d_graph(rng, p):
    call = Call([])
    force = rng.random() < 0.3
    form = rng.choice(["mermaid", "dot", "svg", None])
    call.argv = ["graph", *spec_flags(rng, p, call)] + (["--format", form] if form else [])
    if rng.random() < 0.2:
        call.argv += ["--depth", rng.choice(["1", "3", "0"])]
    if rng.random() < 0.6:
        call.argv += ["-o", pick_target(rng, p, {"svg": ".svg", "dot": ".dot"}.get(form or "", ".mmd"),
                                        call, force)]
        if force:
            call.argv.append("--force")
    call.text_stdout = form != "svg"
    return call


def d_diff(rng, p):
    call = Call([])
    call.argv = ["diff", *spec_flags(rng, p, call), *_table(rng)]
    r = rng.random()
    if r < 0.4:
        call.argv.append(rng.choice(["lenet5.net", "resnet.net", "sub/inner.net", "notes.txt", "missing.net"]))
    elif r < 0.7:
        name = rng.choice(p.params())
        call.argv += ["--set-a", f"{name}={rng.choice(_VALUES)}", "--set-b", f"{name}={rng.choice(_VALUES)}"]
    return call


# References a user might name, the harmless and the wrong: never a function with effects.
_AGAINST = ["torchvision.models.resnet18", "torch.nn.Identity", "torch.nn.Conv2d", "torch.nn.Linear",
            "torch.nn", "torch.nn.NoSuchThing", "no_such_module.Model", "netdsl", "", ".", "torch..nn",
            "torchvision.models.alexnet", "math.pi"]


def d_verify(rng, p):
    call = Call([])
    call.argv = ["verify", *spec_flags(rng, p, call), "--against", rng.choice(_AGAINST)]
    if rng.random() < 0.3:
        call.argv += ["--against-args", rng.choice(['{"num_classes": 10}', '{"in_channels": 3, "out_channels": 4, '
                                                   '"kernel_size": 3}', "[1]", "{", '{"nope": 1}', "null"])]
    for flag, values in (("--batch", ["1", "2", "0", "x"]), ("--seed", ["0", "-1", "x"]),
                         ("--atol", ["0", "1e-5", "-1", "nan"]), ("--rtol", ["0", "inf"])):
        if rng.random() < 0.1:
            call.argv += [flag, rng.choice(values)]
    for flag in ("--randomise-norms", "--no-train", "--no-grad"):
        if rng.random() < 0.3:
            call.argv.append(flag)
    if rng.random() < 0.3:
        call.argv += ["--format", rng.choice(["text", "json"])]
    return call


def d_sweep(rng, p):
    call = Call([])
    call.argv = ["sweep", *spec_flags(rng, p, call)]
    for _ in range(rng.choice([1, 1, 2])):
        values = ",".join(rng.choice(_VALUES[:12]) for _ in range(rng.choice([1, 2, 3])))
        if rng.random() < 0.1:
            values = rng.choice(["range(1, 100000)", "1," * 2000 + "1", "", "[1, 2], [3]"])
        call.argv += ["--grid", f"{rng.choice(p.params() + ['nope'])}={values}"]
    if rng.random() < 0.2:
        call.argv += ["--where", rng.choice(["params < 1e6", "macs > 0", "nope", "1 +", "params"])]
    if rng.random() < 0.2:
        call.argv += ["--sort", rng.choice(["params", "-macs", "nope", "width"])]
    if rng.random() < 0.3:
        call.argv += ["--format", rng.choice(["table", "json", "csv"])]
    call.argv += ["--jobs", "1"]
    return call


def d_export(rng, p):
    call = Call([])
    force = rng.random() < 0.3
    onnx = rng.random() < 0.15
    call.argv = ["export", *spec_flags(rng, p, call)]
    if onnx:
        call.argv += ["--format", "onnx"]
        if rng.random() < 0.2:
            call.argv += ["--opset", rng.choice(["17", "1", "99", "x"])]
    if rng.random() < 0.7 or onnx:
        call.argv += ["-o", pick_target(rng, p, ".onnx" if onnx else ".py", call, force)]
        if force:
            call.argv.append("--force")
    if rng.random() < 0.25:
        call.argv += ["--weights", _weights_file(rng, p)]
    call.text_stdout = not onnx
    return call


def _weights_file(rng, p) -> str:
    """A `--weights` file: one that fits the spec (its own state_dict, zeros), one of the
    wrong keys, one that is no checkpoint, none, or one outside the project."""
    import torch

    what = rng.choice(["fits", "fits", "other keys", "notes.txt", "missing.pt", "outside", "input.net"])
    if what == "fits":
        import netdsl
        from netdsl.backend.lower import lower

        try:
            net = netdsl.compile(str(p.spec), limits=netdsl.Limits(max_params=5_000_000))
            state = {k: torch.zeros(v.shape, dtype=v.dtype) for k, v in lower(net, device="meta").state_dict().items()}
        except Exception:  # noqa: BLE001 - a spec with errors has no weights that fit: any will do
            state = {"w": torch.zeros(1)}
        torch.save(state, p.root / "fits.pt")
        return "fits.pt"
    if what == "other keys":
        torch.save({"w": torch.zeros(1)}, p.root / "other.pt")
        return "other.pt"
    return str(p.outside / "victim.txt") if what == "outside" else what


def d_explain(rng, p):
    from netdsl.codes import entries

    return Call(["explain"] + ([rng.choice(sorted(entries()) + ["E9999", "e0101", "E01", "", "\x1b[2J", "W0001"])]
                               if rng.random() < 0.9 else []))


def d_fmt(rng, p):
    call = Call([])
    r = rng.random()
    flags = [rng.choice(["--check", "--diff"])] if rng.random() < 0.3 else []
    # A diff into a pipe is a patch: the file's bytes, control characters included
    # (escaped only on a terminal).
    call.text_stdout = "--diff" not in flags
    if r < 0.15:
        call.argv = ["fmt", *flags, "-"]
        call.stdin = p.data
        call.text_stdout = False  # the spec itself, its comments byte for byte
    elif r < 0.5:
        call.argv = ["fmt", *flags, rng.choice([str(p.root), ".", "sub"])]
        if not flags:
            # Every spec inside the tree may be rewritten; nothing a link leads to outside.
            call.may_write |= {f for f in p.root.rglob("*.net") if not f.is_symlink()}
    else:
        call.argv = ["fmt", *flags, rng.choice(["input.net", str(p.spec)])]
        if not flags:
            call.may_write.add(p.spec)
    return call


def d_lsp(rng, p):
    return Call(["lsp"])  # run by run_lsp, not as a command line


DRIVERS: dict[str, Callable[[random.Random, Project], Call]] = {
    "check": d_check, "build": d_build, "graph": d_graph, "diff": d_diff, "verify": d_verify,
    "sweep": d_sweep, "export": d_export, "explain": d_explain, "fmt": d_fmt, "lsp": d_lsp,
}
# How often each is drawn: the front-end commands most, the slow ones (a reference model, ONNX) less.
WEIGHTS = {"check": 6, "build": 5, "graph": 4, "diff": 3, "verify": 1, "sweep": 2, "export": 3,
           "explain": 1, "fmt": 4, "lsp": 3}


# ---------------------------------------------------------------- running and judging


def snapshot(*roots: Path) -> dict[Path, bytes | str]:
    """Every entry under ``roots``: a file's bytes, a link's target, a folder's mark."""
    out: dict[Path, bytes | str] = {}
    for root in roots:
        for path in [root, *root.rglob("*")]:
            if path.is_symlink():
                out[path] = "-> " + os.readlink(path)
            elif path.is_dir():
                out[path] = "dir"
            else:
                out[path] = path.read_bytes()
    return out


def changes(before: dict, after: dict) -> list[Path]:
    return sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))


@contextlib.contextmanager
def _captured(stdin: bytes | None):
    """stdout and stderr into byte buffers, stdin from ``stdin``, as a process would see them."""
    saved = sys.stdin, sys.stdout, sys.stderr
    out, err = io.BytesIO(), io.BytesIO()
    sys.stdin = io.TextIOWrapper(io.BytesIO(stdin or b""), encoding="utf-8")
    sys.stdout = io.TextIOWrapper(out, encoding="utf-8", write_through=True)
    sys.stderr = io.TextIOWrapper(err, encoding="utf-8", write_through=True)
    try:
        yield out, err
    finally:
        for s in (sys.stdout, sys.stderr):
            with contextlib.suppress(ValueError):
                s.flush()
        sys.stdin, sys.stdout, sys.stderr = saved


def run_in_process(call: Call) -> tuple[int, bytes, bytes]:
    from netdsl.cli import main

    with _captured(call.stdin) as (out, err):
        try:
            status = main(call.argv)
        except SystemExit as e:  # argparse's usage errors and --help
            status = e.code if isinstance(e.code, int) else 2
        return status, out.getvalue(), err.getvalue()


def run_process(call: Call, cwd: Path, timeout: float) -> tuple[int, bytes, bytes]:
    # The check cache is used, as on a user's machine, in a directory of this run's own.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NETDSL_TRACEBACK": "1",
           "NETDSL_CACHE_DIR": str(cwd.parent.parent / "cache")}
    r = subprocess.run([sys.executable, "-m", "netdsl", *call.argv], input=call.stdin or b"",
                       capture_output=True, cwd=cwd, env=env, timeout=timeout)
    return r.returncode, r.stdout, r.stderr


def judge(command: str, call: Call, status: int, out: bytes, err: bytes) -> tuple[str, str]:
    """("ok" | a diagnostic code | "usage" | "report" | "crash", detail) of one run."""
    from fuzz import raw_control

    e, o = err.decode("utf-8", "replace"), out.decode("utf-8", "replace")
    if "Traceback (most recent call last)" in e or "internal error" in e:
        return "crash", e[-3000:]
    bad = raw_control(e) or (raw_control(o) if call.text_stdout else None)
    if bad:
        return "crash", f"the output holds a {bad}"
    if status == 0:
        return "ok", ""
    if status == 1:
        m = re.search(r"^error\[(E\d{4})\]", e, re.M)
        if m:
            return m.group(1), ""
        if command in _REPORTS and (o.strip() or e.strip()):
            return "report", ""
        if "--weights" in call.argv and re.search(r"^error: --weights .* does not fit `", e, re.M):
            return "report", ""  # the key report of a checkpoint for another network
        return "crash", "exit 1 with no diagnostic:\n" + e[-3000:]
    if status == 2 and re.search(r"^netdsl( \w+)?: error:", e, re.M):
        return "usage", ""
    return "crash", f"exit {status}:\n" + e[-3000:]


def judge_files(call: Call, before: dict, after: dict) -> str:
    """What the command changed that it had no right to ("" when nothing)."""
    wrong = [p for p in changes(before, after) if p not in call.may_write]
    if not wrong:
        return ""
    return "changed without consent: " + ", ".join(str(p) for p in wrong[:5])


# The command line of the command running now (or last run).
LAST_ARGV: list[str] = []


def asks_for_long_work(argv: list[str]) -> bool:
    """Whether a command line asks for more work than a command's time bound covers,
    as a user may: a sweep over more than 1,000 variants (each a full check). Past
    its bound it is slow as asked, not hung."""
    from netdsl.tools.sweep import grid

    if not argv or argv[0] != "sweep":
        return False
    total = 1
    for flag, value in zip(argv, argv[1:], strict=False):
        if flag == "--grid":
            try:
                total *= len(grid(value).values)
            except Exception:  # noqa: BLE001 - a grid the command refuses asks for nothing
                return False
    return total > 1000


def run_command(command: str, rng: random.Random, p: Project, real: bool, timeout: float) -> tuple[str, str]:
    """Run one command on the project; (result, detail) as :func:`judge` says, or a file breach."""
    if command == "lsp":
        return run_lsp(rng, p, timeout)
    call = DRIVERS[command](rng, p)
    global LAST_ARGV
    LAST_ARGV = call.argv  # what a timeout, raised from inside, reports
    before = snapshot(p.root, p.outside)
    if real:
        status, out, err = run_process(call, p.root, timeout)
    else:
        status, out, err = run_in_process(call)
    result, detail = judge(command, call, status, out, err)
    breach = judge_files(call, before, snapshot(p.root, p.outside))
    if breach:
        return "crash", (f"netdsl {' '.join(call.argv)}\n{breach}\n(exit {status}) "
                         f"{err.decode('utf-8', 'replace')[-1000:]}")
    if result == "crash":
        detail = f"netdsl {' '.join(call.argv)}\n{detail}"
    return result, detail


# ---------------------------------------------------------------- the language server

_SERVER: list = []  # one server per fuzzing process, started on first use


def _server(cwd: Path):
    from lsp_client import Client

    if _SERVER and _SERVER[0].proc.poll() is None:
        return _SERVER[0]
    client = Client(cwd)
    client.request("initialize", {"processId": None, "rootUri": None, "capabilities": {}})
    client.notify("initialized", {})
    _SERVER[:] = [client]
    return client


def stop_server() -> None:
    if _SERVER:
        _SERVER.pop().close()


def run_lsp(rng: random.Random, p: Project, timeout: float) -> tuple[str, str]:
    """Open the input in the language server, edit it, ask what an editor asks."""
    from lsp_client import NoAnswer, ServerError

    client = _server(p.root)
    uri = p.spec.resolve().as_uri()
    text = p.text
    lines = text.split("\n") or [""]
    steps = []
    try:
        client.logs.clear()
        client.notify("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "netdsl",
                                                               "version": 1, "text": text}})
        steps.append("open")
        client.diagnostics(uri, 1, timeout)
        if rng.random() < 0.5 and text:
            cut = rng.randrange(len(text) + 1)
            edited = text[:cut] + rng.choice(["", "(", "}", "conv2d(", "\n", "x"]) + text[cut:]
            client.notify("textDocument/didChange", {"textDocument": {"uri": uri, "version": 2},
                                                     "contentChanges": [{"text": edited}]})
            steps.append("change")
            client.diagnostics(uri, 2, timeout)
            lines = edited.split("\n")
        for _ in range(rng.choice([1, 2, 3])):
            line = rng.randrange(len(lines) + 1)
            character = rng.randrange(len(lines[line]) + 2) if line < len(lines) else 0
            method = rng.choice(["textDocument/hover", "textDocument/definition", "textDocument/completion",
                                 "textDocument/references", "textDocument/signatureHelp",
                                 "textDocument/prepareRename"])
            steps.append(method.split("/")[1])
            where = {"textDocument": {"uri": uri}, "position": {"line": line, "character": character}}
            if method == "textDocument/references":
                where["context"] = {"includeDeclaration": True}
            try:
                client.request(method, where, timeout)
            except ServerError as e:
                if e.args[0].get("code") != -32803:  # a rename refused, with its reason: an answer
                    raise
        whole = {"start": {"line": 0, "character": 0}, "end": {"line": len(lines), "character": 0}}
        for method, params in [("textDocument/documentSymbol", {}), ("textDocument/semanticTokens/full", {}),
                               ("textDocument/inlayHint", {"range": whole}),
                               ("textDocument/codeAction", {"range": whole, "context": {"diagnostics": []}})]:
            steps.append(method.split("/")[1])
            client.request(method, {"textDocument": {"uri": uri}, **params}, timeout)
        steps.append("formatting")
        client.request("textDocument/formatting", {"textDocument": {"uri": uri},
                                                   "options": {"tabSize": 4, "insertSpaces": True}}, timeout)
        client.notify("textDocument/didClose", {"textDocument": {"uri": uri}})
        client.diagnostics(uri, None, timeout)
    except NoAnswer as e:
        stop_server()
        return "timeout", f"the server did not answer {steps[-1]} within {timeout} s: {e}"
    errors = [m for m in client.logs if m.get("type") == 1]
    if errors:
        stop_server()
        return "crash", "the server logged an error after " + ", ".join(steps) + ":\n" + \
            json.dumps(errors[0].get("message", ""))[:3000]
    return "ok", ""
