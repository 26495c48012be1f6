"""`netdsl build` cross-checks the static MAC count against fvcore and says so
loudly when they differ; `netdsl check` prints the same table columns and JSON
keys as `build`, from the IR alone."""

import json

import pytest

import netdsl
import netdsl.analysis.counts
from netdsl.cli import main


@pytest.fixture
def off_by_one(monkeypatch):
    """Make the static analysis wrong, as a netdsl bug would."""
    real = netdsl.analysis.analyse

    def wrong(net):
        a = real(net)
        a.macs += 1
        return a

    monkeypatch.setattr(netdsl.analysis.counts, "analyse", wrong)


def test_a_mismatch_with_fvcore_is_reported_loudly(spec_path, capsys, off_by_one):
    assert main(["build", spec_path("lenet5")]) == 3
    out, err = capsys.readouterr()
    assert "fvcore total: 416,520" in out
    assert "MISMATCH — static analysis says 416,521 MACs, fvcore counts 416,520" in out
    assert err.startswith("error: fvcore cross-check: MISMATCH")
    assert "report this as a netdsl bug" in err


def test_a_mismatch_is_reported_in_json_mode_too(spec_path, capsys, off_by_one):
    assert main(["build", spec_path("lenet5"), "--format", "json"]) == 3
    out, err = capsys.readouterr()
    d = json.loads(out)
    assert d["macs"] == 416_521 and d["fvcore"] == 416_520
    assert "MISMATCH" in err


def test_no_fvcore_skips_the_cross_check_even_when_it_would_fail(spec_path, capsys, off_by_one):
    assert main(["build", spec_path("lenet5"), "--no-fvcore"]) == 0
    out, err = capsys.readouterr()
    assert "skipped (--no-fvcore)" in out and "MISMATCH" not in out + err


def test_an_agreeing_build_exits_0_and_says_so(spec_path, capsys):
    assert main(["build", spec_path("lenet5")]) == 0
    out, err = capsys.readouterr()
    assert "static MACs equal fvcore's total" in out and err == ""


def _table_head(text):
    lines = text.splitlines()
    i = next(i for i, line in enumerate(lines) if line.startswith("name"))
    return lines[0], lines[i].split(), lines[i + 2:i + 6]


@pytest.mark.parametrize("name", ["lenet5", "resnet50"])
def test_check_prints_the_same_table_as_build(spec_path, capsys, name):
    assert main(["check", spec_path(name)]) == 0
    checked = capsys.readouterr().out
    assert main(["build", spec_path(name), "--device", "meta"]) == 0
    built = capsys.readouterr().out
    assert _table_head(checked) == _table_head(built)
    assert _table_head(checked)[1] == ["name", "type", "output", "shape", "params", "MACs"]
    totals = [line for line in checked.splitlines() if line.startswith(("params:", "MACs:"))]
    assert len(totals) == 2 and all(line in built.splitlines() for line in totals)


@pytest.mark.parametrize("depth", [None, "1"])
def test_check_json_has_the_shape_of_build_json(spec_path, capsys, depth):
    extra = ["--depth", depth] if depth else []
    assert main(["check", spec_path("resnet50"), "--format", "json", *extra]) == 0
    checked = json.loads(capsys.readouterr().out)
    assert main(["build", spec_path("resnet50"), "--format", "json", "--device", "meta", *extra]) == 0
    built = json.loads(capsys.readouterr().out)
    assert list(checked) == list(built)
    assert checked["fvcore"] is None and checked["device"] is None
    assert built["device"] == "meta"
    assert checked["layers"] == built["layers"]
    for key in ("network", "input", "output_shape", "params", "macs", "flops"):
        assert checked[key] == built[key]


def test_a_batch_norm_on_batch_statistics_of_one_value_per_channel_is_refused(tmp_path, capsys):
    # Eval mode at batch 1 would fail (torch needs more than one value per channel), and
    # so did build's fvcore pass: check refuses it, at the layer.
    spec = tmp_path / "bn.net"
    spec.write_text("network n() {\n input [8, 4, 4]\n adaptive_avgpool2d(1)\n conv2d(8, 1)\n"
                    " batchnorm2d(track_running_stats = false)\n flatten\n linear(3)\n}\n")
    assert main(["build", str(spec)]) == 1
    err = capsys.readouterr().err
    assert "error[E0306]" in err and "bn.net:5:14" in err and "Traceback" not in err
