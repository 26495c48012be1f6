"""Short runs of the fuzzer (bench/fuzz.py) in each mode, and the harness itself:
it must tell a crash, a hang, a broken promise of `check` and a terminal escape
from a diagnostic. The long runs are in docs/robustness.md."""

import sys
import time
from pathlib import Path

import pytest
import torch

import netdsl
from netdsl.layers import LAYERS

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import fuzz  # noqa: E402
import fuzz_specs  # noqa: E402

# The CPU-time alarm can fire inside hypothesis's garbage-collector callback, where
# Python ignores the timeout and reports it; the alarm repeats, so the input still
# ends (test_a_cpu_timeout_lost_once_is_raised_again). Only that report is silenced.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Exception ignored in. <function gc_cumulative_time:pytest.PytestUnraisableExceptionWarning")


@pytest.mark.slow
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
    assert isinstance(fuzz.make_input(7, 123, texts, names), fuzz.Input)
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


@pytest.mark.slow
def test_running_long_is_no_hang_when_the_input_raised_its_step_limits():
    def hang(data, **kw):
        while True:
            pass

    raised = fuzz.try_input(b"x", None, 0.2, compile=hang, limits={"max_nodes": 10**9})
    lowered = fuzz.try_input(b"x", None, 0.2, compile=hang, limits={"max_nodes": 10})
    assert (raised[0], lowered[0]) == ("slow, as its limits allow", "timeout")


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
    for line in ("inputs tried:  20 (seed 5, mode compile", "crashes:       0", "slowest input: #"):
        assert line in out


@pytest.mark.slow
def test_a_short_contract_run_builds_runs_and_saves_what_compiles():
    report = fuzz.run(60, seed=11, mode="contract")
    details = "\n".join(f"#{o.index} ({o.strategy}): {o.result}\n{o.detail}" for o in report.crashes)
    assert not report.crashes, details
    assert report.contracts["full"] >= 3, report.contracts
    assert report.contracts["full"] + report.contracts["smaller input"] + \
        report.contracts["meta only"] == report.results["compiled"]


def test_the_contract_catches_a_model_that_does_not_match_its_check(monkeypatch, tmp_path):
    net = netdsl.compile("network n() { input [3, 8, 8]\n conv2d(4, 3)\n relu }")
    fuzz.run_model(net, tmp_path)  # the real lowering keeps every promise

    import netdsl.backend.lower as lower

    real = lower._Lowering.leaf
    monkeypatch.setattr(lower._Lowering, "leaf", lambda self, node: torch.nn.Identity()
                        if node.kind == "conv2d" else real(self, node))
    with pytest.raises(fuzz.ContractBroken, match="parameters"):
        fuzz.run_model(net, tmp_path)


def test_a_broken_contract_is_a_crash_with_its_traceback():
    def contract(net):
        raise fuzz.ContractBroken("eval output [2, 5], the checker inferred [2, 4]")

    result, detail, _ = fuzz.try_input(b"network n() { input [4]\n linear(4) }", None, 5.0,
                                       contract=contract)
    assert result == "crash" and "ContractBroken: eval output" in detail


def test_a_raw_control_character_in_a_diagnostic_is_a_crash():
    class Unescaped(netdsl.NetdslError):
        def render(self):  # as netdsl rendered a spec's ESC before it escaped them
            return "error[E0101]: unknown name `\x1b[2J`"

    def escaping(data, **kw):
        raise Unescaped([netdsl.Diagnostic("E0101", "unknown name")])

    result, detail, _ = fuzz.try_input(b"x", None, 5.0, compile=escaping)
    assert result == "crash" and "'\\x1b'" in detail
    # netdsl's own rendering escapes it
    escaped = netdsl.NetdslError([netdsl.Diagnostic("E0101", "unknown name `\x1b[2J`")]).render()
    assert fuzz.raw_control(escaped) is None and "\\x1b[2J" in escaped


def test_limits_a_spec_cannot_have_are_not_crashes():
    result, _, _ = fuzz.try_input(b"network n() { input [4]\n relu }", None, 5.0,
                                  limits={"no_such_limit": 3})
    assert result == "limit refused"


def test_the_generated_specs_reach_every_layer_through_the_contract():
    # The differential test of the shape rules is only as wide as the layers that compile:
    # the fuzzer's own drawing of a layer's arguments (layer_call, which gen_layers writes
    # every layer with) and of inputs (_input) makes an accepted use of every kind.
    import random

    missing = []
    for kind in sorted(LAYERS):
        rng = random.Random(kind)
        for _ in range(300):
            text = f"network n() {{\n    input {fuzz_specs._input(rng)}\n    {fuzz_specs.layer_call(rng, kind)}\n}}\n"
            try:
                netdsl.compile(text)
                break
            except netdsl.NetdslError:
                continue
        else:
            missing.append(kind)
    assert not missing
    # And the generators of whole specs: a layer in a compiled spec, for most kinds.
    compiled_kinds = set()
    for i in range(300):
        for gen in (fuzz_specs.gen_layers, fuzz_specs.gen_tensor):
            text = gen(random.Random(i))
            try:
                netdsl.compile(text)
            except netdsl.NetdslError:
                continue
            compiled_kinds |= {kind for kind in LAYERS if kind in text}
    assert len(compiled_kinds) >= 0.75 * len(LAYERS), sorted(set(LAYERS) - compiled_kinds)


@pytest.mark.slow
def test_every_generator_makes_specs_that_parse_or_fail_with_a_diagnostic():
    import random

    for name, gen in fuzz_specs.GENERATORS.items():
        for i in range(5):
            text = gen(random.Random(i))
            result, detail, _ = fuzz.try_input(text.encode(), None, 5.0)
            assert result != "crash" or "raw control" in detail, (name, i, detail)


def test_a_command_is_judged_by_its_status_and_output():
    from fuzz_commands import Call, judge

    check, fmt, export = Call(["check"]), Call(["fmt"]), Call(["export"], text_stdout=False)
    assert judge("check", check, 0, b"{}", b"") == ("ok", "")
    assert judge("check", check, 1, b"", b"error[E0301]: residual ...") == ("E0301", "")
    assert judge("check", check, 2, b"", b"netdsl: error: --depth must be at least 1") == ("usage", "")
    assert judge("check", check, 1, b"", b"Traceback (most recent call last):\n ...")[0] == "crash"
    assert judge("check", check, 3, b"", b"error: internal error in netdsl 0.2.0: KeyError")[0] == "crash"
    assert judge("check", check, 1, b"", b"error[E0101]: `\x1b]0;x\x07`")[0] == "crash"
    assert judge("check", check, 1, b"", b"something else")[0] == "crash"
    assert judge("check", check, -11, b"", b"")[0] == "crash"
    assert judge("check", check, 0, b"\x1b[2J", b"")[0] == "crash"
    # fmt --check's list of files to change is its report, not a diagnostic; an ONNX file's
    # bytes on stdout are not text for a terminal.
    assert judge("fmt", fmt, 1, b"input.net\n", b"") == ("report", "")
    assert judge("check", check, 1, b"input.net\n", b"")[0] == "crash"
    assert judge("export", export, 0, b"\x08\x1b\x00", b"") == ("ok", "")


@pytest.mark.slow
def test_a_short_cli_run_of_the_real_command():
    report = fuzz.run(3, seed=4, mode="cli")
    assert report.tried == 3 and sum(report.commands.values()) == 3
    assert not report.crashes, "\n".join(o.detail for o in report.crashes)


@pytest.mark.slow
def test_a_short_commands_run_runs_a_command_per_input():
    report = fuzz.run(12, seed=5, mode="commands")
    assert not report.crashes, "\n".join(o.detail for o in report.crashes)
    ran = sum(report.commands.values())
    assert ran == report.tried - report.results["limit refused"], report.commands


@pytest.mark.slow
@pytest.mark.parametrize("path", sorted((Path(__file__).parent / "fixtures" / "crashes").glob("*.net")),
                         ids=lambda p: p.stem)
def test_each_crash_found_is_now_a_diagnostic(path, tmp_path):
    # Regression fixtures: inputs that once crashed or hung netdsl. The first line says the
    # code they must give now (or `compiled`: then build, run and save must work too), the
    # second what happened before the fix.
    expected = path.read_text(encoding="utf-8").splitlines()[0].removeprefix("# expect: ")
    result, detail, _ = fuzz.try_input(path.read_bytes(), None, 5.0,
                                       contract=lambda net: fuzz.run_model(net, tmp_path))
    assert result == expected, detail


def test_a_cpu_timeout_lost_once_is_raised_again():
    # Python ignores an exception raised in a garbage-collector callback or a __del__;
    # the alarm repeats, so such a lost timeout still ends the input.
    start = time.process_time()
    with pytest.raises(fuzz._Timeout):
        with fuzz.cpu_bound(0.05):
            try:
                while time.process_time() - start < 2:
                    pass
            except fuzz._Timeout:
                pass  # swallowed, as a gc callback would
            while time.process_time() - start < 4:
                pass
    assert time.process_time() - start < 2


def test_only_a_sweep_that_asks_for_thousands_of_variants_may_run_past_its_bound():
    import fuzz_commands

    many = ["sweep", "n.net", "--grid", "width=" + "1," * 2000 + "1", "--grid", "depth=1,2,3"]
    assert fuzz_commands.asks_for_long_work(many)
    assert not fuzz_commands.asks_for_long_work(["sweep", "n.net", "--grid", "width=1,2,3"])
    assert not fuzz_commands.asks_for_long_work(["check", "n.net"])
    assert not fuzz_commands.asks_for_long_work(["sweep", "n.net", "--grid", "width="])  # refused
