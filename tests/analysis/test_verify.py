"""`netdsl verify` and `netdsl build --weights`: exit status 0 when equivalent, 1 with
the report when not (or when the weights do not fit), 2 for a usage error with a
message and no traceback."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision

import netdsl
from netdsl.cli import main

ROOT = Path(__file__).resolve().parents[2]
SQUEEZE = str(ROOT / "specs" / "squeezenet1_1.net")
LENET = str(ROOT / "specs" / "lenet5.net")
FAST = ["--input", "3,64,64"]


def verify(capsys, *args):
    code = main(["verify", *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.slow
def test_an_equivalent_spec_exits_0(capsys):
    code, out, err = verify(capsys, SQUEEZE, "--against", "torchvision.models.squeezenet1_1", *FAST)
    assert code == 0, out + err
    assert out.startswith(f"{SQUEEZE} vs torchvision.models.squeezenet1_1: equivalent")
    assert out.count("  ok  ") == 5


def test_a_model_without_parameters_has_no_gradients_to_compare(capsys, tmp_path):
    # Found by the command fuzzer: the loss of a parameter-free model needs no backward,
    # and calling it raised (exit 3).
    spec = tmp_path / "act.net"
    spec.write_text("network n() {\n    input [3, 8, 8]\n    act: relu\n}\n")
    code, out, err = verify(capsys, str(spec), "--against", "torch.nn.ReLU")
    assert code == 0, out + err
    assert "ok    gradients         0 parameters" in out
    code, out, err = verify(capsys, str(spec), "--against", "torch.nn.Identity")
    assert code == 1 and "FAIL  eval outputs" in out, out + err


@pytest.mark.slow
def test_a_different_spec_exits_1_naming_the_first_differing_module(capsys, tmp_path):
    # SqueezeNet 1.1 with 1.0's stem is another network of the same weights' names.
    spec = tmp_path / "squeezenet.net"
    text = (ROOT / "specs" / "squeezenet.net").read_text().replace(
        "conv2d(64, 3, stride = 2)", "conv2d(64, 3, stride = 2, padding = 1)")
    spec.write_text(text)
    code, out, _ = verify(capsys, str(spec), "--set", 'version="1_1"', "--against",
                          "torchvision.models.squeezenet1_1", *FAST, "--no-grad")
    assert code == 1
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "padding = 1)" in t and "conv2d(64" in t)
    assert f"first difference at features.0 ({spec}:{line}:13): output shape" in out
    assert "NOT equivalent" in out.splitlines()[0]


@pytest.mark.slow
def test_against_args_are_the_constructors_keywords(capsys):
    code, out, err = verify(capsys, SQUEEZE, "--against", "torchvision.models.squeezenet1_1",
                            "--against-args", '{"num_classes": 10}', "--set", "num_classes=10",
                            *FAST, "--no-train", "--no-grad", "--format", "json")
    assert code == 0, out + err
    report = json.loads(out)
    assert report["equivalent"] and report["first_difference"] is None
    assert [c["ok"] for c in report["checks"]] == [True, True, True, None, None]


def test_a_mismatch_of_classes_is_a_shape_report(capsys):
    code, out, _ = verify(capsys, SQUEEZE, "--against", "torchvision.models.squeezenet1_1",
                          "--against-args", '{"num_classes": 10}', *FAST)
    assert code == 1
    assert "2 of another shape" in out and "classifier.1.weight" in out


@pytest.mark.parametrize("against, args, message", [
    ("torchvision.models.squeezenet1_2", "{}",
     "module torchvision.models has no attribute squeezenet1_2 (did you mean squeezenet1_1?)"),
    ("no_such_package.models.net", "{}", "no module named no_such_package"),
    ("torchvision.models..x", "{}", "--against expects a dotted path"),
    ("torchvision.models.resnet", "{}", "is a module, not a model constructor"),
    ("torchvision.models.squeezenet1_1", "{num_classes: 10}", "--against-args is not valid JSON"),
    ("torchvision.models.squeezenet1_1", "[10]", "must be a JSON object"),
    ("torchvision.models.squeezenet1_1", '{"classes": 10}', "calling it with {\"classes\": 10} failed: TypeError"),
])
def test_usage_errors_exit_2_with_a_message(capsys, against, args, message):
    code, out, err = verify(capsys, SQUEEZE, "--against", against, "--against-args", args)
    assert code == 2 and out == ""
    assert message in err and "Traceback" not in err


def test_the_spec_is_checked_before_the_reference_is_imported(capsys, tmp_path):
    bad = tmp_path / "bad.net"
    bad.write_text("network n() { input [4]\n linear(0) }")
    code, _, err = verify(capsys, str(bad), "--against", "no_such_package.net")
    assert code == 1 and "error[E0204]" in err


def _reference_modules(tmp_path):
    (tmp_path / "myrefs.py").write_text(
        "import torch\n"
        "from torch import nn\n"
        "torch.manual_seed(0)\n"
        "net = nn.Sequential()\n"
        "net.add_module('fc', nn.Linear(4, 3))\n"
        "def make(out=3):\n"
        "    m = nn.Sequential()\n"
        "    m.add_module('fc', nn.Linear(4, out))\n"
        "    return m\n")
    (tmp_path / "broken.py").write_text("raise RuntimeError('this module refuses to import')\n")
    spec = tmp_path / "n.net"
    spec.write_text("network n(c = 3) { input [4]\n fc: linear(c) }")
    return spec


@pytest.mark.slow
def test_a_reference_in_the_current_directory_imports(tmp_path):
    # The `netdsl` script does not put the current directory on sys.path; verify does.
    spec = _reference_modules(tmp_path)
    script = ("import sys; from netdsl.cli import main; "
              "sys.path[:] = [p for p in sys.path if p]; sys.exit(main())")
    r = subprocess.run([sys.executable, "-c", script, "verify", str(spec), "--against", "myrefs.net"],
                       cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)},
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("args, code, message", [
    (["--against", "myrefs.make", "--against-args", '{"out": 5}', "--set", "c=5"], 0, ""),
    (["--against", "myrefs.make", "--against-args", '{"out": 5}'], 1, "2 of another shape"),
    (["--against", "myrefs.net", "--against-args", '{"out": 5}'], 2,
     "--against myrefs.net is a module object, not a constructor: --against-args does not apply"),
    (["--against", "broken.x"], 2,
     "--against broken.x: importing broken failed: RuntimeError: this module refuses to import"),
    (["--against", "myrefs.nett"], 2, "module myrefs has no attribute nett (did you mean net?)"),
    (["--against", "myrefs.net.fc.weights"], 2, "Linear myrefs.net.fc has no attribute weights"),
])
def test_module_objects_and_constructors(capsys, tmp_path, monkeypatch, args, code, message):
    spec = _reference_modules(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("myrefs", "broken"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    got, out, err = verify(capsys, str(spec), *args)
    assert got == code, out + err
    assert message in (out + err) and "Traceback" not in err


def test_help_says_that_importing_the_reference_runs_its_code(capsys):
    with pytest.raises(SystemExit):
        main(["verify", "--help"])
    out = capsys.readouterr().out
    assert "RUNS THAT MODULE'S PYTHON CODE" in out and "Specs themselves never run code" in out
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "importing --against runs its code" in " ".join(capsys.readouterr().out.split())


# ---------------------------------------------------------------- build --weights

@pytest.fixture(scope="module")
def lenet_weights(tmp_path_factory):
    from netdsl import build

    torch.manual_seed(7)
    state = build(LENET).state_dict()
    d = tmp_path_factory.mktemp("w")
    torch.save(state, d / "bare.pt")
    torch.save({"epoch": 3, "state_dict": state}, d / "wrapped.pt")
    torch.save({"model": state, "optimizer": {}}, d / "model.pt")
    renamed = {k.replace("fc2.", "fc_2."): v for k, v in state.items()}
    torch.save(renamed, d / "renamed.pt")
    torch.save(torch.nn.Linear(2, 2), d / "pickled_module.pt")
    (d / "text.pt").write_text("not a checkpoint")
    torch.save({"a": 1}, d / "no_tensors.pt")
    return d, state


@pytest.mark.parametrize("name", ["bare.pt", "wrapped.pt", "model.pt"])
def test_build_loads_weights_strictly(capsys, lenet_weights, tmp_path, name):
    d, state = lenet_weights
    out_file = tmp_path / "out.pt"
    code = main(["build", LENET, "--weights", str(d / name), "--no-fvcore", "--save", str(out_file)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert f"weights loaded from {d / name} (10 tensors, strict)" in out
    saved = torch.load(out_file)  # what was built carries the file's values
    assert all(torch.equal(saved[k], v) for k, v in state.items())


def test_build_weights_mismatch_gets_verifys_report(capsys, lenet_weights):
    d, _ = lenet_weights
    code = main(["build", LENET, "--weights", str(d / "renamed.pt"), "--no-fvcore"])
    out, err = capsys.readouterr()
    assert code == 1 and out == ""
    assert "does not fit `lenet5`: 2 missing, 2 unexpected" in err
    row = next(line for line in err.splitlines() if line.strip().startswith("fc2."))
    line = next(i for i, t in enumerate(Path(LENET).read_text().splitlines(), 1) if "fc2:" in t)
    assert row.split()[:3] == ["fc2.{weight,", "bias}", "fc_2"] and f"lenet5.net:{line}:" in row


@pytest.mark.parametrize("name, message", [
    ("pickled_module.pt", "loads without running code"),
    ("text.pt", "is not a PyTorch checkpoint"),
    ("no_tensors.pt", "holds no state_dict"),
    ("missing.pt", "No such file or directory"),
])
def test_build_weights_usage_errors(capsys, lenet_weights, name, message):
    d, _ = lenet_weights
    code = main(["build", LENET, "--weights", str(d / name), "--no-fvcore"])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err


def test_build_weights_refuses_the_meta_device(capsys, lenet_weights):
    d, _ = lenet_weights
    assert main(["build", LENET, "--weights", str(d / "bare.pt"), "--device", "meta"]) == 2
    assert "meta device holds no values" in capsys.readouterr().err


def test_torchvision_weights_into_a_family_member(capsys, tmp_path):
    torch.save(torchvision.models.squeezenet1_0().state_dict(), tmp_path / "sq.pt")
    code = main(["build", str(ROOT / "specs" / "squeezenet.net"), "--weights", str(tmp_path / "sq.pt"),
                 "--no-fvcore", "--format", "json"])
    out = capsys.readouterr().out
    assert code == 0 and json.loads(out)["weights"] == str(tmp_path / "sq.pt")


def test_a_reference_norm_with_its_activation_inside_is_compared_after_that_activation():
    # timm's BatchNormAct2d is a batch norm and its activation in one module of the norm's
    # name; the spec's norm is followed by the activation. The first difference is where
    # it is, never the norm that only looks different.
    from timm.layers import BatchNormAct2d

    from netdsl.analysis.compare import first_difference

    spec = """network n() {
    input [3, 8, 8]
    conv: conv2d(4, 3, padding = 1, bias = false)
    bn1: batchnorm2d
    relu
    conv2: conv2d(4, 3, padding = 1)
}"""

    def reference():
        m = torch.nn.Sequential()
        m.add_module("conv", torch.nn.Conv2d(3, 4, 3, padding=1, bias=False))
        m.add_module("bn1", BatchNormAct2d(4, act_layer=torch.nn.ReLU))
        m.add_module("conv2", torch.nn.Conv2d(4, 4, 3, padding=1))
        return m

    ours, x = netdsl.build(spec), torch.randn(2, 3, 8, 8)
    for where, param in (("conv2", "conv2.bias"), ("bn1", "bn1.bias")):
        ref = reference()
        ref.load_state_dict(ours.state_dict())
        with torch.no_grad():
            ref.get_parameter(param).add_(1)
        assert first_difference(ours, ref, x).module == where
