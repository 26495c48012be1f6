"""netdsl/backend/onnx.py and `netdsl export --format onnx`: the file onnx.checker
accepts holds the built model's weights under its state_dict names, runs in
onnxruntime like the model, and a missing extra is a usage error that says what
to install. Every shipped network is exported in tests/backend/test_ecosystem.py."""

import sys

import pytest
import torch

import netdsl
from netdsl.cli import main

onnx = pytest.importorskip("onnx", reason="the onnx extra: pip install 'netdsl[onnx]'")
ort = pytest.importorskip("onnxruntime", reason="the onnx extra: pip install 'netdsl[onnx]'")


def _run(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])


@pytest.mark.slow
def test_cli_writes_a_checked_model_with_the_built_weights(tmp_path, spec_path, capsys):
    out = tmp_path / "lenet5.onnx"
    assert main(["export", spec_path("lenet5"), "--format", "onnx", "-o", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    model_proto = onnx.load(out)
    onnx.checker.check_model(model_proto, full_check=True)
    model = netdsl.build(spec_path("lenet5")).eval()
    keys = model.state_dict().keys()
    weights = {t.name: torch.from_numpy(onnx.numpy_helper.to_array(t).copy())
               for t in model_proto.graph.initializer if t.name in keys}
    # The file keeps each weight under its state_dict name (other initializers are
    # constants such as Flatten's shape); given them, the model gives the file's outputs.
    model.load_state_dict(weights, strict=True)
    x = torch.randn(3, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(_run(out, x), model(x), rtol=1e-5, atol=1e-5)
    dims = model_proto.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [1, 32, 32]


@pytest.mark.slow
def test_cli_exports_the_weights_it_is_given_and_says_when_it_has_none(tmp_path, spec_path, capsys):
    # The CLI's ONNX held fresh random weights and said nothing: against a trained model the
    # outputs differed by up to 27.8. With --weights the file is that model; without, a note.
    torch.manual_seed(3)
    trained = netdsl.build(spec_path("lenet5")).eval()
    with torch.no_grad():
        for p in trained.parameters():
            p.mul_(3.0).add_(0.1)
    torch.save(trained.state_dict(), tmp_path / "trained.pt")
    out = tmp_path / "lenet5.onnx"
    assert main(["export", spec_path("lenet5"), "--format", "onnx", "-o", str(out),
                 "--weights", str(tmp_path / "trained.pt")]) == 0
    assert "freshly initialised" not in capsys.readouterr().err
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(_run(out, x), trained(x), rtol=1e-5, atol=1e-5)
    fresh = tmp_path / "fresh.onnx"
    assert main(["export", spec_path("lenet5"), "--format", "onnx", "-o", str(fresh)]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no --weights" in err and "freshly initialised" in err


def test_cli_refuses_weights_that_do_not_fit_and_writes_nothing(tmp_path, spec_path, capsys):
    torch.save(netdsl.build(spec_path("lenet5")).state_dict(), tmp_path / "w.pt")
    for fmt, name in (("onnx", "m.onnx"), ("python", "m.py")):
        status = main(["export", spec_path("lenet5"), "--format", fmt, "-o", str(tmp_path / name),
                       "--weights", str(tmp_path / "w.pt"), "--set", "num_classes=11"])
        err = capsys.readouterr().err
        assert status == 1 and "does not fit `lenet5`" in err and "fc3.weight" in err
        assert not (tmp_path / name).exists()
    # A file that fits: the Python export says how to load it into the class it wrote.
    assert main(["export", spec_path("lenet5"), "-o", str(tmp_path / "m.py"),
                 "--weights", str(tmp_path / "w.pt")]) == 0
    assert "model = Lenet5()" in capsys.readouterr().err
    # The network's class, not the first class of the file (a block's).
    torch.save(netdsl.build(spec_path("resnet34"), device="meta").state_dict(), tmp_path / "r.pt")
    assert main(["export", spec_path("resnet34"), "-o", str(tmp_path / "r.py"),
                 "--weights", str(tmp_path / "r.pt")]) == 0
    assert "after model = ResNet()" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_opset_and_overrides_reach_the_file(tmp_path, spec_path):
    out = tmp_path / "m.onnx"
    assert main(["export", spec_path("lenet5"), "--format", "onnx", "-o", str(out), "--opset", "18",
                 "--set", "num_classes=7"]) == 0
    m = onnx.load(out)
    assert {o.version for o in m.opset_import if o.domain in ("", "ai.onnx")} == {18}
    assert _run(out, torch.randn(1, 1, 32, 32)).shape == (1, 7)


@pytest.mark.slow
def test_export_leaves_the_model_in_its_mode(tmp_path):
    from netdsl.backend.onnx import export

    model = netdsl.build("network n() { input [4]\n linear(3)\n dropout(0.5) }").train()
    export(model, torch.randn(2, 4), tmp_path / "n.onnx")
    assert model.training
    assert "Dropout" not in {n.op_type for n in onnx.load(tmp_path / "n.onnx").graph.node}


@pytest.mark.parametrize("argv, message", [
    (["--format", "onnx"], "needs -o FILE"),
    (["--format", "onnx", "-o", "{tmp}"], "is a directory"),
    (["--format", "onnx", "-o", "{tmp}/no/such/m.onnx"], "does not exist"),
    (["--format", "onnx", "-o", "{spec}"], "is the spec; netdsl never writes over a spec"),
    (["--format", "python", "--opset", "18", "-o", "m.py"], "--opset only applies to --format onnx"),
])
def test_cli_usage_errors(argv, message, tmp_path, spec_path, capsys):
    spec = tmp_path / "lenet5.net"
    spec.write_text(open(spec_path("lenet5")).read())
    argv = [a.format(tmp=tmp_path, spec=spec) for a in argv]
    assert main(["export", str(spec), *argv]) == 2
    assert message in capsys.readouterr().err
    assert spec.read_text() == open(spec_path("lenet5")).read()


@pytest.mark.parametrize("package", ["onnx", "onnxscript"])
def test_a_missing_extra_is_a_usage_error_naming_the_install(package, tmp_path, spec_path,
                                                           monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, package, None)  # find_spec then says: not installed
    out = tmp_path / "m.onnx"
    assert main(["export", spec_path("lenet5"), "--format", "onnx", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"needs {package}" in err and "pip install 'netdsl[onnx]'" in err
    assert not out.exists()


SEVERAL = """network rgbd() {
    input rgb: [3, 8, 8]
    input depth: [1, 8, 8]
    from rgb
    a: conv2d(4, 3, padding = 1) -> a
    from depth
    b: conv2d(4, 3, padding = 1) -> b
    concat(a, b)
    head: conv2d(2, 1) -> seg
    pool: adaptive_avgpool2d(1)
    flatten
    fc: linear(3) -> cls
    output namedtuple(seg, cls)
}
"""


@pytest.mark.slow
def test_a_network_of_several_inputs_and_named_outputs_exports_with_its_names(tmp_path, capsys):
    spec = tmp_path / "rgbd.net"
    spec.write_text(SEVERAL)
    out = tmp_path / "rgbd.onnx"
    assert main(["export", str(spec), "--format", "onnx", "-o", str(out)]) == 0, capsys.readouterr().err
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["rgb", "depth"]
    assert [o.name for o in session.get_outputs()] == ["seg", "cls"]
    model = netdsl.build(str(spec)).eval()
    model.load_state_dict({t.name: torch.from_numpy(onnx.numpy_helper.to_array(t).copy())
                           for t in onnx.load(out).graph.initializer if t.name in model.state_dict()})
    rgb, depth = torch.randn(2, 3, 8, 8), torch.randn(2, 1, 8, 8)
    seg, cls = session.run(None, {"rgb": rgb.numpy(), "depth": depth.numpy()})
    with torch.no_grad():
        want = model(rgb, depth)
    torch.testing.assert_close(torch.from_numpy(seg), want.seg, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.from_numpy(cls), want.cls, rtol=1e-5, atol=1e-5)


def test_export_refuses_a_layer_whose_onnx_form_differs_and_writes_nothing(tmp_path, capsys):
    spec = tmp_path / "pool.net"
    spec.write_text("network n() {\n    input [3, 7, 7]\n"
                    "    maxpool2d(2, stride = 2, padding = 1, ceil_mode = true)\n}\n")
    out = tmp_path / "pool.onnx"
    assert main(["export", str(spec), "--format", "onnx", "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "error[E0601]" in err and f"{spec}:3:5" in err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["pool.net"]


@pytest.mark.slow
def test_a_file_onnxruntime_disagrees_with_is_not_written(tmp_path, spec_path, capsys, monkeypatch):
    # Whatever the exporter gives is run and compared before it replaces anything: here a
    # stand-in exporter writes another network's file.
    from netdsl.backend import onnx as onnx_module

    real = onnx_module.export
    other = netdsl.build("network m() { input [1, 32, 32]\n conv2d(3, 5)\n flatten\n linear(10) }").eval()
    monkeypatch.setattr(onnx_module, "export", lambda model, x, path, **kw: real(other, x, path, **kw))
    out = tmp_path / "lenet5.onnx"
    out.write_bytes(b"before")
    assert main(["export", spec_path("lenet5"), "--format", "onnx", "-o", str(out), "--force"]) == 2
    err = capsys.readouterr().err
    assert "does not do what the model does" in err and "nothing was written" in err
    assert out.read_bytes() == b"before" and sorted(p.name for p in tmp_path.iterdir()) == ["lenet5.onnx"]


def test_an_opset_the_exporter_cannot_meet_is_refused_and_writes_nothing(tmp_path, capfd):
    # Found by the command fuzzer: Mish has no ONNX form before opset 18. torch's exporter
    # logged a traceback, kept opset 18 and wrote the file as if 17 had been met.
    spec = tmp_path / "m.net"
    spec.write_text("network n() {\n    input [2, 4, 4]\n    mish\n}\n")
    out = tmp_path / "m.onnx"
    assert main(["export", str(spec), "--format", "onnx", "--opset", "17", "-o", str(out)]) == 2
    err = capfd.readouterr().err
    assert "at opset 17 (it wrote opset 18" in err and "use --opset 18" in err
    assert "Traceback" not in err and not out.exists() and list(tmp_path.iterdir()) == [spec]


def test_an_opset_the_exporter_converts_to_is_the_files_without_log_lines(tmp_path, capfd):
    import onnx

    spec = tmp_path / "c.net"
    spec.write_text("network n() {\n    input [3, 8, 8]\n    conv2d(4, 3)\n    relu\n}\n")
    out = tmp_path / "c.onnx"
    assert main(["export", str(spec), "--format", "onnx", "--opset", "17", "-o", str(out)]) == 0
    # The one line that says the weights are fresh ones, and none of the exporter's log.
    assert capfd.readouterr().err == f"note: no --weights: {out} holds freshly initialised weights, not trained ones\n"
    assert [o.version for o in onnx.load(out).opset_import if o.domain in ("", "ai.onnx")] == [17]


def test_an_input_returned_as_an_output_is_named_apart(tmp_path, capsys):
    # Found by the command fuzzer: `output dict("in1": in1, ...)` named an output as its
    # input, which ONNX's single assignment forbids (internal error, exit 3).
    import onnx

    spec = tmp_path / "io.net"
    spec.write_text('network n() {\n    input in0: [2, 8, 8]\n    input in1: [1, 8, 8]\n    from in0\n'
                    '    relu -> r\n    output dict("in1": in1, "r": r)\n}\n')
    out = tmp_path / "io.onnx"
    assert main(["export", str(spec), "--format", "onnx", "-o", str(out)]) == 0, capsys.readouterr().err
    m = onnx.load(out)
    assert [i.name for i in m.graph.input] == ["in0", "in1"]
    assert [o.name for o in m.graph.output] == ["in1_output", "r"]


# Every tensor layer, as a module and as `apply`'s function, and ECA's 1-D convolution.
TENSOR_LAYERS = """
network t() {
    input [8, 6, 5]
    gate {
        apply mean(dim = [1, 2])
        apply unflatten(0, [1, -1])
        conv1d(1, 3, padding = 1, bias = false)
        sigmoid
        apply unflatten(1, [-1, 1, 1])
        apply flatten(0, 1)
    }
    narrow(0, 2, 4)
    apply narrow(-1, 1, 3)
    unflatten(0, [2, -1])
    sum(dim = 0)
    amax(dim = -1, keepdim = true)
    apply amax(dim = [1, 2], keepdim = true)
    apply softmax(dim = 0)
    flatten(1)
    conv1d(4, 1)
    mean(dim = -1)
    apply sum(dim = 0, keepdim = true)
}
"""


def test_every_tensor_layer_exports_and_runs_in_onnxruntime(tmp_path, capsys):
    spec = tmp_path / "t.net"
    spec.write_text(TENSOR_LAYERS)
    out = tmp_path / "t.onnx"
    # export runs the file in onnxruntime and compares it with the model before writing it.
    assert main(["export", str(spec), "--format", "onnx", "-o", str(out)]) == 0, capsys.readouterr().err
    model = netdsl.build(str(spec)).eval()
    model.load_state_dict({t.name: torch.from_numpy(onnx.numpy_helper.to_array(t).copy())
                           for t in onnx.load(out).graph.initializer if t.name in model.state_dict()})
    x = torch.randn(3, 8, 6, 5)
    with torch.no_grad():
        want = model(x)
    assert want.shape == (3, 1)
    torch.testing.assert_close(_run(out, x), want, rtol=1e-5, atol=1e-5)


def test_tensorflow_same_padding_exports_and_runs_in_onnxruntime(tmp_path, capsys):
    spec = tmp_path / "same.net"
    spec.write_text("network s() {\n    input [3, 9, 8]\n    conv2d(4, 3, stride = 2, padding = \"same\")\n"
                    "    conv2d(4, 2, padding = \"same\", groups = 2)\n}\n")
    out = tmp_path / "same.onnx"
    assert main(["export", str(spec), "--format", "onnx", "-o", str(out)]) == 0, capsys.readouterr().err
    model = netdsl.build(str(spec)).eval()
    model.load_state_dict({t.name: torch.from_numpy(onnx.numpy_helper.to_array(t).copy())
                           for t in onnx.load(out).graph.initializer if t.name in model.state_dict()})
    x = torch.randn(2, 3, 9, 8)
    with torch.no_grad():
        want = model(x)
    assert want.shape == (2, 4, 5, 4)
    torch.testing.assert_close(_run(out, x), want, rtol=1e-5, atol=1e-5)
