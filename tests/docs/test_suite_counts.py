"""The number of tests the docs give is the suite's: README.md's whole suite and
fast subset, and docs/contributing.md's fast subset, each within 5% ("about")."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# (page, pattern giving the stated count, which count: "all" or "fast")
STATED = [
    ("README.md", r"whole test\s+suite, about ([\d,]+) tests", "all"),
    ("README.md", r"runs about ([\d,]+) tests in", "fast"),
    ("docs/contributing.md", r'-m "not slow"(?: -n auto)?\s+# about ([\d,]+) tests', "fast"),
]


def stated() -> list[tuple[str, int, str]]:
    out = []
    for page, pattern, which in STATED:
        m = re.search(pattern, (ROOT / page).read_text(encoding="utf-8"))
        assert m, f"{page}: no count of tests matches {pattern!r}"
        out.append((page, int(m.group(1).replace(",", "")), which))
    return out


def about(stated: int, actual: int) -> bool:
    """Whether "about ``stated``" is true of ``actual``: within 5%.

    >>> about(4370, 4371), about(3100, 3346)
    (True, False)
    """
    return abs(stated - actual) <= 0.05 * actual


def test_every_count_of_tests_is_found():
    assert len(stated()) == len(STATED)


@pytest.mark.slow
def test_the_counts_of_tests_the_docs_give_are_the_suites():
    r = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                        "-m", "not slow"], cwd=ROOT, capture_output=True, text=True, timeout=900)
    m = re.search(r"^(\d+)/(\d+) tests collected \(\d+ deselected\)", r.stdout, flags=re.M)
    assert r.returncode == 0 and m, r.stdout[-2000:] + r.stderr[-2000:]
    actual = {"fast": int(m.group(1)), "all": int(m.group(2))}
    wrong = [f"{page}: about {n:,} tests, the suite has {actual[which]:,} ({which})"
             for page, n, which in stated() if not about(n, actual[which])]
    assert not wrong, wrong
