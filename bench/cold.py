"""Cold command line: ``netdsl check SPEC`` as a whole process against bare ``python -c pass``,
both on a miss of check's result cache and on a hit.

    python bench/cold.py                     # 15 interleaved rounds, resnet50
    python bench/cold.py --runs 30 --spec specs/efficientnet_b0.net
    python bench/cold.py --importtime 12     # also the top entries of -X importtime (miss and hit)
    python bench/cold.py --baseline /tmp/old # also an older checkout of netdsl, interleaved

The commands run with the same interpreter and environment, interleaved (A B C,
C B A, A B C, ...), so a slow phase of a shared machine hits all of them. Bytecode is
written to a temporary ``PYTHONPYCACHEPREFIX`` and the first run of each is
discarded: an installed package has its ``.pyc`` files, and a checkout run
under ``PYTHONDONTWRITEBYTECODE`` would otherwise compile netdsl in every run.

Both caches live in a temporary ``NETDSL_CACHE_DIR``. The parser's table cache
(``netdsl.syntax.lalr``) is warm after the first run, as it is for a user after their
first command, and stays warm. "miss" empties the result cache (``check/``)
before each run: the full front end, as after an edit. "hit" runs on an entry
the miss before it left: a repeated check of unchanged files.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def forget_results(cache: str) -> None:
    """Remove the check cache's entries (``*.check``), keeping the parser's tables."""
    for p in Path(cache).glob("*.check"):
        p.unlink()


def run(cmd, env, empty: str | None = None) -> float:
    """Seconds ``cmd`` takes; ``empty``: a cache directory whose check results are
    removed just before (not timed)."""
    if empty:
        forget_results(empty)
    # `python -m` puts the working directory first on sys.path: each tree runs from its own.
    t = time.perf_counter()
    subprocess.run(cmd, env=env, cwd=env["PYTHONPATH"].split(os.pathsep)[0],
                   stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t


def importtime(cmd, env, top: int, empty: str | None = None) -> list[str]:
    """The ``top`` imports by cumulative time, from one run under ``-X importtime``."""
    if empty:
        forget_results(empty)
    out = subprocess.run([cmd[0], "-X", "importtime", *cmd[1:]], env=env,
                         cwd=env["PYTHONPATH"].split(os.pathsep)[0],
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
    ap.add_argument("--runs", type=int, default=15, help="interleaved rounds (default 15)")
    ap.add_argument("--spec", default="specs/resnet50.net")
    ap.add_argument("--importtime", type=int, metavar="N", default=0,
                    help="print the N slowest imports of the check command, on a miss and on a hit")
    ap.add_argument("--baseline", metavar="DIR",
                    help="another checkout of netdsl (e.g. `git archive REV | tar -x -C DIR`), "
                         "whose check is timed in the same interleaved run (its result cache, if "
                         "it has one, emptied as for the miss)")
    args = ap.parse_args(argv)

    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    prefix = tempfile.mkdtemp(prefix="netdsl-pyc-")
    env["PYTHONPYCACHEPREFIX"] = prefix
    cache = tempfile.mkdtemp(prefix="netdsl-cache-")
    env["NETDSL_CACHE_DIR"] = cache
    results = cache
    bare = [sys.executable, "-c", "pass"]
    check = [sys.executable, "-m", "netdsl", "check", str(Path(args.spec).resolve())]
    run(bare, env), run(check, env, results), run(check, env)  # bytecode, tables, an entry
    old_env = None
    if args.baseline:
        old_env = {**env, "PYTHONPATH": str(Path(args.baseline).resolve())}
        run(check, old_env, results)

    times = {"bare": [], "miss": [], "hit": [], "baseline": []}
    order = [("bare", env, bare, None), ("miss", env, check, results), ("hit", env, check, None)]
    if old_env:
        order.insert(2, ("baseline", old_env, check, results))
    for i in range(args.runs):
        # A hit always follows a run that left an entry: a miss, or the hit of the round before.
        for name, e, cmd, empty in (order if i % 2 == 0 else order[::-1]):
            if name == "hit" and not os.path.isdir(results):
                run(check, env)
            times[name].append(run(cmd, e, empty))
    a = times["bare"]

    def ms(xs):
        return f"min {min(xs) * 1e3:6.1f} ms, median {statistics.median(xs) * 1e3:6.1f} ms"

    def ratio(xs):  # each list has one time per round
        return (f"ratio of minima {min(xs) / min(a):5.2f}, median of pair ratios "
                f"{statistics.median([y / x for x, y in zip(a, xs, strict=True)]):5.2f}")

    print(f"load average {os.getloadavg()[0]:.2f}, {args.runs} interleaved rounds, {sys.executable}")
    print(f"python -c pass:            {ms(a)}")
    for name, what in (("miss", "result cache emptied"), ("hit", "result cache hit"),
                       ("baseline", f"baseline {args.baseline}")):
        if times[name]:
            print(f"check, {what + ':':22} {ms(times[name])}; {ratio(times[name])}")
    if times["baseline"]:
        print(f"miss / baseline, median of pairs "
              f"{statistics.median([y / z for y, z in zip(times['miss'], times['baseline'], strict=True)]):.2f}")
    if args.importtime:
        print(f"\npython -X importtime -m netdsl check {args.spec}, a miss (top {args.importtime}):")
        print("\n".join(importtime(check, env, args.importtime, results)))
        print(f"\nthe same, a hit (top {args.importtime}):")
        print("\n".join(importtime(check, env, args.importtime)))
        if old_env:
            print(f"\nthe same, baseline {args.baseline} (top {args.importtime}):")
            print("\n".join(importtime(check, old_env, args.importtime, results)))
    shutil.rmtree(cache, ignore_errors=True)
    shutil.rmtree(prefix, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
