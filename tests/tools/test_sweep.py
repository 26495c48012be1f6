"""Sweeps: every combination checked, refusals on their rows, `where` in netdsl's own language."""

import csv
import io
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import netdsl
from netdsl.analysis import analyse
from netdsl.cli import main
from netdsl.diagnostics import NetdslError
from netdsl.tools.sweep import Grid, GridError, combinations, grid, run

ROOT = Path(__file__).resolve().parents[2]

SPEC = """network n(c = 4, k = 3) {
    input [3, 16, 16]
    conv2d(c, k)
    relu
    flatten
    linear(10)
}
"""


@given(st.integers(-50, 50), st.integers(0, 40), st.integers(1, 25))
@settings(max_examples=60, deadline=None)
def test_a_range_is_exact_in_decimal_and_includes_its_stop(start, count, step):
    # START:STOP:STEP in tenths: each value is the decimal START + i * STEP, STOP included.
    a, s = start / 10, step / 10
    stop = (start + count * step) / 10
    values = grid(f"x={a}:{stop}:{s}").values
    assert values == tuple(float(f"{(start + i * step) / 10}") for i in range(count + 1))


def test_grid_items_are_numbers_or_netdsl_texts():
    assert grid("depths=[2, 2, 2, 2], [3, 4, 6, 3]").values == ("[2, 2, 2, 2]", "[3, 4, 6, 3]")
    assert grid("n=1:3, 8").values == (1, 2, 3, 8)
    for bad in ("x", "x=", "=1", "x=1:2:0", "x=1,,2", "x=a:b"):
        with pytest.raises(GridError):
            grid(bad)


def test_combinations_are_the_product_in_order():
    combos = list(combinations([Grid("a", (1, 2, 3)), Grid("b", (4, 5))]))
    assert len(combos) == 6 and combos[1] == {"a": 1, "b": 5} and combos[-1] == {"a": 3, "b": 5}


def test_each_row_is_what_compile_and_analyse_give():
    rows = run(SPEC, [grid("c=2,8"), grid("k=1,3")])
    assert len(rows) == 4
    for r in rows:
        a = analyse(netdsl.compile(SPEC, **r.values))
        assert (r.params, r.macs, r.activation_bytes, r.output_shape) == (
            a.params, a.macs, a.activation_bytes, tuple(a.output_shape))


def _torch_figures(spec, values, shape):
    """An independent reference for a row: the built model's parameter count as torch
    counts it, and fvcore's MACs on it (one multiply-add is one fvcore "flop")."""
    import torch
    from fvcore.nn import FlopCountAnalysis

    model = netdsl.build(spec, **values).eval()
    count = FlopCountAnalysis(model, torch.randn(1, *shape))
    macs = count.unsupported_ops_warnings(False).uncalled_modules_warnings(False).total()
    return sum(p.numel() for p in model.parameters()), macs


def test_each_row_is_what_torch_and_fvcore_count_on_the_built_model():
    rows = run(SPEC, [grid("c=2,8"), grid("k=1,3,5")])
    assert len(rows) == 6 and all(r.error is None for r in rows)
    for r in rows:
        assert (r.params, r.macs) == _torch_figures(SPEC, r.values, (3, 16, 16)), r.values


@pytest.mark.slow
def test_a_sweep_of_a_shipped_family_is_what_torch_and_fvcore_count():
    spec = str(ROOT / "specs" / "efficientnet.net")
    rows = run(spec, [grid("width=0.5,1.0"), grid("depth=1.0,1.2"), grid("resolution=64")])
    assert len(rows) == 4 and all(r.error is None for r in rows)
    for r in rows:
        assert (r.params, r.macs) == _torch_figures(spec, r.values, (3, 64, 64)), r.values


def test_an_invalid_combination_gets_its_diagnostic_and_the_sweep_goes_on():
    rows = run(SPEC, [grid("k=3,17,5")])
    assert [r.error is None for r in rows] == [True, False, True]
    bad = rows[1]
    with pytest.raises(NetdslError) as e:
        netdsl.compile(SPEC, k=17)
    assert bad.code == e.value.diagnostics[0].code
    assert bad.params is None and "at " in bad.error


def test_where_keeps_rows_and_sort_orders_them():
    rows = run(SPEC, [grid("c=1:6")], where="params > 5000 and c != 4", sort="-macs")
    assert [r.values["c"] for r in rows] == [6, 5, 3]
    assert all(r.params > 5000 for r in rows)
    macs = [r.macs for r in rows]
    assert macs == sorted(macs, reverse=True)


@pytest.mark.parametrize("where, code", [("mac < 1", "E0101"), ("macs +", "E0004"),
                                         ("params", "E0210"), ("__import__('os')", "E0002")])
def test_where_errors_are_located_diagnostics(where, code):
    with pytest.raises(NetdslError) as e:
        run(SPEC, [grid("c=2")], where=where)
    d = e.value.diagnostics[0]
    assert d.code == code
    assert d.span is not None and d.span.file == "<--where>"


@pytest.mark.slow
def test_parallel_rows_equal_serial_rows():
    grids = [grid("c=1:8"), grid("k=1,3,5,15")]
    serial = run(SPEC, grids, jobs=1)
    parallel = run(SPEC, grids, jobs=2)
    assert [(r.values, r.params, r.macs, r.error) for r in serial] == \
        [(r.values, r.params, r.macs, r.error) for r in parallel]


def test_cli_sweep_formats(capsys, tmp_path):
    spec = tmp_path / "n.net"
    spec.write_text(SPEC)
    args = ["sweep", str(spec), "--grid", "c=2,4", "--grid", "k=3,17", "--jobs", "1"]
    assert main([*args, "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 4 and sum(r["error"] is not None for r in rows) == 2
    assert main([*args, "--format", "csv", "--where", "macs > 0", "--sort", "params"]) == 0
    table = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["c"] for r in table] == ["2", "4", "2", "4"] and table[-1]["error"].startswith("E0")
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "4 rows, 2 checked, 2 refused" in out and "error[E0" in out


@pytest.mark.parametrize("form", ["table", "csv"])
def test_cli_sweep_shows_control_characters_as_escapes(capsys, tmp_path, form):
    # Found by the command fuzzer: an assertion's message rang the terminal's bell.
    spec = tmp_path / "n.net"
    spec.write_text('network n(width = 4) {\n input [3, 8, 8]\n assert width > 2, "\x07\x1b]0;t\x07"\n'
                    ' conv2d(width, 1)\n}\n')
    assert main(["sweep", str(spec), "--grid", "width=2,1", "--jobs", "1", "--format", form]) == 0
    out = capsys.readouterr().out
    assert not any(ch in out for ch in "\x07\x1b") and r"\x07\x1b]0;t\x07" in out


@pytest.mark.parametrize("extra", [["--grid", "params=1,2"], ["--grid", "c=1:2:0"],
                                   ["--sort", "nope"], ["--jobs", "0"], ["--set", "c=3"]])
def test_cli_sweep_usage_errors(capsys, tmp_path, extra):
    spec = tmp_path / "n.net"
    spec.write_text(SPEC)
    assert main(["sweep", str(spec), "--grid", "c=2", *extra]) == 2
    assert "netdsl: error:" in capsys.readouterr().err


def test_a_product_over_the_limit_is_refused_before_anything_runs(monkeypatch):
    # Two grids of 1,000 values are a million variants: refused at once, by their product,
    # and never built as a list.
    from netdsl.tools import sweep as sweep_module

    monkeypatch.setattr(sweep_module, "_measure", lambda *a: pytest.fail("a variant was checked"))
    with pytest.raises(GridError, match="1,000 × 1,000 = 1,000,000 combinations, over the limit of 100,000"):
        run(SPEC, [grid("c=1:1000:1"), grid("k=1:1000:1")])
    with pytest.raises(GridError, match="over the limit of 10"):
        run(SPEC, [grid("c=1,2,3"), grid("k=1,3,5,7")], limits=netdsl.Limits(max_sweep_variants=10))
    # Five grids of 100 values: 10^10 combinations, refused just as fast.
    with pytest.raises(GridError, match="10,000,000,000 combinations"):
        run(SPEC, [grid(f"{n}=1:100:1") for n in ("c", "k", "a", "b", "d")])


def test_the_cli_says_it_as_a_usage_error(capsys, tmp_path):
    from netdsl.cli import main

    spec = tmp_path / "s.net"
    spec.write_text(SPEC)
    assert main(["sweep", str(spec), "--grid", "c=1:1000:1", "--grid", "k=1:1000:1"]) == 2
    assert "over the limit of 100,000" in capsys.readouterr().err
