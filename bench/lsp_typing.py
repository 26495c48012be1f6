"""Typing into a spec through the real language server: how long after each keystroke
the editor shows diagnostics at least as new as it, and how long completion takes
meanwhile.

    python bench/lsp_typing.py                    # inception_v3.net, 3 new layer lines at 100 ms a key
    python bench/lsp_typing.py --interval 0.05 --rounds 5
    python bench/lsp_typing.py --full             # whole-text changes instead of incremental ones
    python bench/lsp_typing.py --busy 2           # with 2 processes spinning on the CPUs meanwhile
    python bench/lsp_typing.py --tree /tmp/old    # the server of another checkout, to compare
    python bench/lsp_typing.py --spec specs/resnet.net --after "    layer4: stage(512, 3, 2)"

It starts ``netdsl lsp`` over stdio (bench/lsp_client.py), opens the spec and, as
an editor does, sends one ``didChange`` a key: Enter at the end of the line
``--after`` (a new line, indented), then the characters of ``--line``, one every
``--interval`` seconds, ``--rounds`` times (each round a new line below the one
before). After the first letter of a word, ``(`` and ``,``, it asks for completion
without waiting, as VS Code's quick suggestions do. Nothing is saved: the spec on
disk is not changed.

A change's latency is the time from sending it to the first diagnostics published
for it or for a later version (a server may skip a version a newer one replaced);
``last`` is that of the last key, the delay the user waits once they stop typing.
Arrival times are taken when the client's reader thread receives each message.
``--busy N`` starts N processes that spin on the CPUs for the time of the typing,
to see the server on a machine busy with other work.
The server's peak resident memory (``VmHWM``) and CPU time come from /proc (Linux).
"""

from __future__ import annotations

import argparse
import os
import queue
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lsp_client import TIMEOUT, Client, NoAnswer  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RECEIVED = "received"  # the key under which the inbox notes when a message arrived


class _Stamped(queue.Queue):
    """The client's inbox, noting in each message when it arrived."""

    def _put(self, item):
        if item is not None:
            item[RECEIVED] = time.monotonic()
        super()._put(item)


def keys(text: str, after: str, line: str, rounds: int) -> list[tuple[int, int, str]]:
    """The keystrokes, as (row, column, inserted text), 0-based: Enter with the indent of
    ``line``, then its characters, ``rounds`` times, on new lines after ``after``.

    >>> keys("a\\nb\\n", "a", "  xy", 1)
    [(0, 1, '\\n  '), (1, 2, 'x'), (1, 3, 'y')]
    """
    rows = text.split("\n")
    row = next(i for i, r in enumerate(rows) if r == after)
    indent = line[:len(line) - len(line.lstrip())]
    out = []
    end = len(rows[row])
    for _ in range(rounds):
        out.append((row, end, "\n" + indent))
        row += 1
        for i, ch in enumerate(line[len(indent):]):
            out.append((row, len(indent) + i, ch))
        end = len(line)
    return out


def insert(text: str, row: int, column: int, s: str) -> str:
    rows = text.split("\n")
    rows[row] = rows[row][:column] + s + rows[row][column:]
    return "\n".join(rows)


def asks_completion(typed: str, before: str) -> bool:
    """Whether VS Code asks for completion after this key: a trigger character, or
    the first letter of a word."""
    return typed in "(," or (typed.isalpha() and not (before[-1:].isalnum() or before[-1:] == "_"))


def proc_status(pid: int) -> dict[str, str]:
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return {}
    return dict(line.split(":", 1) for line in lines if ":" in line)


def cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(p / 100 * len(xs) + 0.5) - 1))]


def summary(name: str, xs: list[float]) -> str:
    if not xs:
        return f"{name}: none"
    ms = [x * 1000 for x in xs]
    return (f"{name}: p50 {statistics.median(ms):.0f} ms, p90 {pct(ms, 90):.0f} ms, "
            f"max {max(ms):.0f} ms ({len(ms)})")


@dataclass
class Typed:
    """When each change was sent and its diagnostics arrived, and each completion asked
    and answered (``time.monotonic()``)."""

    sent: dict[int, float] = field(default_factory=dict)  # version -> sent
    shown: dict[int, float] = field(default_factory=dict)  # version -> its own diagnostics arrived
    asked: dict[int, float] = field(default_factory=dict)  # request id -> sent
    answered: dict[int, float] = field(default_factory=dict)

    def latencies(self) -> list[float]:
        """For each change, until the first diagnostics as new as it: its own, or a later version's."""
        return [min(at for w, at in self.shown.items() if w >= v) - t for v, t in self.sent.items()]


def type_into(client: Client, uri: str, text: str, typed, interval: float, full: bool) -> Typed:
    """Send the keys ``typed`` to the open document ``uri``, one every ``interval`` seconds
    (``full``: each change as the whole text), and wait for the diagnostics of the last
    and the answers to every completion."""
    out = Typed()

    def take(until: float) -> None:
        while True:
            try:
                m = client.inbox.get(timeout=max(until - time.monotonic(), 0.001))
            except queue.Empty:
                return
            if m is None:
                raise NoAnswer(f"the server exited; stderr:\n{client.log()}")
            if m.get("method") == "textDocument/publishDiagnostics" and m["params"]["uri"] == uri:
                out.shown.setdefault(m["params"]["version"], m[RECEIVED])
            elif m.get("id") in out.asked and "method" not in m:
                out.answered[m["id"]] = m[RECEIVED]

    start = time.monotonic()
    for k, (row, column, s) in enumerate(typed):
        take(start + k * interval)
        version = k + 2
        before = text.split("\n")[row][:column]
        text = insert(text, row, column, s)
        change = ({"text": text} if full else
                  {"range": {"start": {"line": row, "character": column},
                             "end": {"line": row, "character": column}}, "text": s})
        out.sent[version] = time.monotonic()
        client.notify("textDocument/didChange", {"textDocument": {"uri": uri, "version": version},
                                                 "contentChanges": [change]})
        if asks_completion(s, before):
            at = {"line": row, "character": column + len(s)}
            out.asked[client.ask("textDocument/completion", {"textDocument": {"uri": uri}, "position": at})] = \
                time.monotonic()
    last, deadline = max(out.sent), time.monotonic() + TIMEOUT
    while (last not in out.shown or len(out.answered) < len(out.asked)) and time.monotonic() < deadline:
        take(time.monotonic() + 0.05)
    if last not in out.shown:
        raise NoAnswer(f"no diagnostics for the last version ({last}) within {TIMEOUT} s")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--spec", type=Path, default=ROOT / "specs" / "inception_v3.net")
    ap.add_argument("--after", default="    Mixed_7c: inception_e", help="the line to type below")
    ap.add_argument("--line", default="    extra: basic_conv2d(2048, 1)", help="the line typed")
    ap.add_argument("--interval", type=float, default=0.1, help="seconds between keys")
    ap.add_argument("--rounds", type=int, default=3, help="how many times the line is typed")
    ap.add_argument("--full", action="store_true", help="send the whole text on each change")
    ap.add_argument("--tree", type=Path, default=ROOT, help="the netdsl checkout whose server runs")
    ap.add_argument("--busy", type=int, default=0, help="processes spinning on the CPUs meanwhile")
    args = ap.parse_args()

    spec, tree = args.spec.resolve(), args.tree.resolve()
    text = spec.read_text(encoding="utf-8")
    typed = keys(text, args.after, args.line, args.rounds)
    load = os.getloadavg()
    busy: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory() as tmp:
        client = Client(Path(tmp), tree)
        client.inbox = _Stamped()  # before the server has anything to send
        try:
            client.request("initialize", {"processId": os.getpid(), "rootUri": spec.parent.as_uri(),
                                          "capabilities": {}})
            client.notify("initialized", {})
            opened = time.monotonic()
            uri = client.open(spec, text)
            first = client.wait(lambda m: m.get("method") == "textDocument/publishDiagnostics"
                                and m["params"]["uri"] == uri, "the first diagnostics")[RECEIVED] - opened
            busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
            run = type_into(client, uri, text, typed, args.interval, args.full)
            status, cpu = proc_status(client.proc.pid), cpu_seconds(client.proc.pid)
        finally:
            for p in busy:
                p.kill()
                p.wait()
            client.close()

    last = max(run.sent)
    print(f"{tree}: {spec.name}, {len(run.sent)} {'full' if args.full else 'incremental'} changes, one every "
          f"{args.interval * 1000:.0f} ms; load average {load[0]:.2f} before, {os.getloadavg()[0]:.2f} after, "
          f"{os.cpu_count()} CPUs" + (f", {args.busy} busy processes" if args.busy else ""))
    print(f"first diagnostics after opening: {first * 1000:.0f} ms")
    print(summary("a change to diagnostics as new", run.latencies()))
    print(summary("a change to its own diagnostics", [run.shown[v] - t for v, t in run.sent.items() if v in run.shown]))
    print(f"last key to its diagnostics: {(run.shown[last] - run.sent[last]) * 1000:.0f} ms")
    print(summary("completion while typing", [run.answered[i] - t for i, t in run.asked.items()]))
    if "VmHWM" in status:
        print(f"server peak memory (VmHWM): {status['VmHWM'].strip()}, CPU time {cpu:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
