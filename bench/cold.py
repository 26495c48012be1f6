"""Cold command line: ``netdsl check SPEC`` as a whole process against bare ``python -c pass``.

    python bench/cold.py                     # 15 interleaved pairs, resnet50
    python bench/cold.py --runs 30 --spec specs/efficientnet_b0.net
    python bench/cold.py --importtime 12     # also the top entries of -X importtime
    python bench/cold.py --baseline /tmp/old # also an older checkout of netdsl, interleaved

Both commands run with the same interpreter and environment, interleaved (A B,
B A, A B, ...), so a slow phase of a shared machine hits both. Bytecode is
written to a temporary ``PYTHONPYCACHEPREFIX`` and the first run of each is
discarded: an installed package has its ``.pyc`` files, and a checkout run
under ``PYTHONDONTWRITEBYTECODE`` would otherwise compile netdsl in every run.
The parser's table cache (``netdsl.lalr``) is warm after the first run,
as it is for a user after their first command.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(cmd, env) -> float:
    # `python -m` puts the working directory first on sys.path: each tree runs from its own.
    t = time.perf_counter()
    subprocess.run(cmd, env=env, cwd=env["PYTHONPATH"].split(os.pathsep)[0],
                   stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t


def importtime(cmd, env, top: int) -> list[str]:
    """The ``top`` imports by cumulative time, from one run under ``-X importtime``."""
    out = subprocess.run([cmd[0], "-X", "importtime", *cmd[1:]], env=env, cwd=ROOT,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True).stderr
    rows = []
    for line in out.splitlines():
        if line.startswith("import time:") and "cumulative" not in line:
            self_us, cum_us, name = line.removeprefix("import time:").split("|")
            rows.append((int(cum_us), int(self_us), name.strip()))
    rows.sort(reverse=True)
    return [f"{cum / 1000:8.1f} ms cumulative {self_ / 1000:7.1f} ms self  {name}"
            for cum, self_, name in rows[:top]]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15, help="interleaved pairs (default 15)")
    ap.add_argument("--spec", default="specs/resnet50.net")
    ap.add_argument("--importtime", type=int, metavar="N", default=0,
                    help="print the N slowest imports of the check command")
    ap.add_argument("--baseline", metavar="DIR",
                    help="another checkout of netdsl (e.g. `git archive REV | tar -x -C DIR`), "
                         "whose check is timed in the same interleaved run")
    args = ap.parse_args(argv)

    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    prefix = tempfile.mkdtemp(prefix="netdsl-pyc-")
    env["PYTHONPYCACHEPREFIX"] = prefix
    bare = [sys.executable, "-c", "pass"]
    check = [sys.executable, "-m", "netdsl", "check", str(Path(args.spec).resolve())]
    run(bare, env), run(check, env)  # writes the bytecode and the parser cache
    old_env = None
    if args.baseline:
        old_env = {**env, "PYTHONPATH": str(Path(args.baseline).resolve())}
        run(check, old_env)

    a, b, c = [], [], []
    for i in range(args.runs):
        order = [(a, env, bare), (b, env, check)] + ([(c, old_env, check)] if old_env else [])
        for times, e, cmd in (order if i % 2 == 0 else order[::-1]):
            times.append(run(cmd, e))
    ratios = [y / x for x, y in zip(a, b)]
    ms = lambda xs: f"min {min(xs) * 1e3:.1f} ms, median {statistics.median(xs) * 1e3:.1f} ms"
    print(f"load average {os.getloadavg()[0]:.2f}, {args.runs} interleaved pairs, {sys.executable}")
    print(f"python -c pass:            {ms(a)}")
    print(f"netdsl check {args.spec}: {ms(b)}")
    print(f"ratio of minima {min(b) / min(a):.2f}, median of pair ratios {statistics.median(ratios):.2f}")
    if c:
        old = [z / x for x, z in zip(a, c)]
        print(f"baseline check ({args.baseline}): {ms(c)}")
        print(f"baseline ratio of minima {min(c) / min(a):.2f}, median of pair ratios "
              f"{statistics.median(old):.2f}; this checkout / baseline, median "
              f"{statistics.median([y / z for y, z in zip(b, c)]):.2f}")
    if args.importtime:
        print(f"\npython -X importtime -m netdsl check {args.spec} (top {args.importtime}):")
        print("\n".join(importtime(check, env, args.importtime)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
