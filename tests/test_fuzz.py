"""A short run of the fuzzer (bench/fuzz.py), and the harness itself: it must
tell a crash and a hang from a diagnostic. The long run is docs/robustness.md."""

import sys
import time
from pathlib import Path

import pytest

import netdsl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import fuzz  # noqa: E402


def test_a_short_run_finds_no_crashes():
    report = fuzz.run(200, seed=0)
    assert report.tried == 200
    details = "\n".join(f"#{o.index} ({o.strategy}): {o.result}\n{o.detail}" for o in report.crashes)
    assert not report.crashes, details
    # A fuzzer stuck at the parser would prove little: the inputs reach every stage.
    assert report.results["compiled"] > 0
    codes = {k for k in report.results if k.startswith("E0")}
    assert {"E0001", "E0402"} <= codes and len(codes) >= 12, sorted(codes)
    assert any(c.startswith("E03") for c in codes) or any(c.startswith("E02") for c in codes)


def test_inputs_are_reproducible_one_by_one():
    texts = [p.read_text(encoding="utf-8") for p in fuzz.SOURCES]
    names = ["a", "b"]
    assert fuzz.make_input(7, 123, texts, names) == fuzz.make_input(7, 123, texts, names)
    assert fuzz.make_input(7, 123, texts, names) != fuzz.make_input(7, 124, texts, names)


def test_a_diagnostic_is_not_a_crash():
    result, detail, _ = fuzz.try_input(b"network n() { relu", None, 5.0)
    assert (result, detail) == ("E0004", "")
    result, _, _ = fuzz.try_input(b"network n() { input [3, 8, 8]\n relu }", None, 5.0)
    assert result == "compiled"


def test_an_exception_is_a_crash_with_its_traceback():
    def broken(data, **kw):
        raise ValueError("the compiler fell over")

    result, detail, _ = fuzz.try_input(b"anything", None, 5.0, compile=broken)
    assert result == "crash"
    assert "ValueError: the compiler fell over" in detail and "Traceback" in detail


def test_a_recursion_error_is_a_crash():
    def deep(data, **kw):
        return deep(data)

    assert fuzz.try_input(b"x", None, 5.0, compile=deep)[0] == "crash"


def test_a_hang_is_a_timeout():
    def hang(data, **kw):
        while True:
            pass

    started = time.process_time()
    result, detail, seconds = fuzz.try_input(b"x", None, 0.2, compile=hang)
    assert result == "timeout" and "over 0.2 s" in detail
    assert 0.15 <= seconds and time.process_time() - started < 5  # the timer ticks coarsely


def test_the_report_counts_crashes(monkeypatch):
    calls = []

    def flaky(data, **kw):
        calls.append(data)
        if len(calls) % 2:
            raise KeyError("odd")
        raise netdsl.NetdslError([netdsl.Diagnostic("E0001", "unexpected")])

    report = fuzz.run(6, seed=3, compile=flaky)
    assert report.tried == 6 and len(report.crashes) == 3 and report.results["E0001"] == 3


def test_the_command_line_prints_the_figures(capsys):
    assert fuzz.main(["--inputs", "20", "--seed", "5"]) == 0
    out = capsys.readouterr().out
    for line in ("inputs tried:  20 (seed 5", "crashes:       0", "slowest input: #"):
        assert line in out


@pytest.mark.parametrize("path", sorted((Path(__file__).parent / "fixtures" / "crashes").glob("*.net")),
                         ids=lambda p: p.stem)
def test_each_crash_found_is_now_a_diagnostic(path):
    # Regression fixtures: inputs that once crashed or hung netdsl. The first line says the
    # code they must give now, the second what happened before the fix.
    expected = path.read_text(encoding="utf-8").splitlines()[0].removeprefix("# expect: ")
    result, detail, _ = fuzz.try_input(path.read_bytes(), None, 5.0)
    assert result == expected, detail
