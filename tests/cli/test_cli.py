"""The `netdsl` command, run as a user runs it: in a subprocess."""

import json
import subprocess
import sys

import pytest
import torch


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "netdsl", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


@pytest.mark.slow
def test_check_prints_the_table_with_totals(spec_path):
    r = run("check", spec_path("resnet50"))
    assert r.returncode == 0, r.stderr
    assert "params:       25,557,032" in r.stdout
    assert "MACs:         4,111,512,576" in r.stdout
    assert "layer1" in r.stdout and "Bottleneck" in r.stdout
    assert r.stderr == ""


@pytest.mark.slow
def test_build_prints_the_table_and_cross_checks_fvcore(spec_path, tmp_path):
    out = tmp_path / "lenet.pt"
    r = run("build", spec_path("lenet5"), "--save", str(out))
    assert r.returncode == 0, r.stderr
    assert "fvcore total: 416,520" in r.stdout
    assert "static MACs equal fvcore's total" in r.stdout
    state = torch.load(out)
    assert sorted(state) == sorted(["conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias",
                                    "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias",
                                    "fc3.weight", "fc3.bias"])


@pytest.mark.slow
def test_build_json_shape(spec_path):
    r = run("build", spec_path("lenet5"), "--format", "json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert {"network", "input", "params", "macs", "layers"} <= set(d)
    assert d["network"] == "lenet5" and d["input"] == [1, 32, 32]
    assert d["params"] == 61_706 and d["macs"] == 416_520 and d["fvcore"] == 416_520
    assert d["layers"][0] == {"name": "conv1", "type": "Conv2d", "output_shape": [6, 28, 28],
                              "params": 156, "macs": 117_600, "depth": 0, "counted": True}
    for row in d["layers"]:
        assert {"name", "type", "output_shape", "params", "macs"} <= set(row)


@pytest.mark.slow
def test_table_and_json_show_activation_memory(spec_path):
    table = run("check", spec_path("resnet50")).stdout
    assert "activations:  177,831,744 B (177.83 MB, forward/backward pass size as torchinfo" in table
    assert "largest:      3,211,264 B (3.21 MB, one tensor, at conv1)" in table
    for cmd in ("check", "build"):
        d = json.loads(run(cmd, spec_path("lenet5"), "--format", "json").stdout)
        assert (d["activation_bytes"], d["largest_activation_bytes"], d["largest_activation"]) == \
            (52_144, 18_816, "conv1")


@pytest.mark.slow
def test_the_activation_limit_is_set_from_the_cli(spec_path):
    r = run("check", spec_path("resnet50"), "--input", "3,4000,4000")
    assert r.returncode == 1 and "error[E0409]" in r.stderr and "Traceback" not in r.stderr
    assert run("check", spec_path("resnet50"), "--input", "3,4000,4000",
               "--limit", "max_activation_bytes=2e9").returncode == 0


@pytest.mark.slow
def test_depth_folds_deeper_modules(spec_path):
    shallow = json.loads(run("check", spec_path("resnet50"), "--format", "json", "--depth", "1").stdout)
    deep = json.loads(run("check", spec_path("resnet50"), "--format", "json").stdout)
    assert [r["name"] for r in shallow["layers"]] == ["conv1", "bn1", "relu", "maxpool", "layer1",
                                                      "layer2", "layer3", "layer4", "avgpool", "fc"]
    assert len(deep["layers"]) > 140
    assert sum(r["params"] for r in shallow["layers"]) == shallow["params"]
    assert "layer1.0.downsample.0" in [r["name"] for r in deep["layers"]]


@pytest.mark.slow
def test_set_and_input_override(spec_path):
    d = json.loads(run("check", spec_path("resnet"), "--set", "depth=18", "--set", "num_classes=10",
                       "--input", "3,64,64", "--format", "json").stdout)
    assert d["input"] == [3, 64, 64] and d["layers"][-1]["output_shape"] == [10]
    assert d["params"] == 11_181_642   # torchvision resnet18(num_classes=10)


@pytest.mark.slow
def test_emit_ir_is_json_of_the_checked_ir(spec_path):
    from netdsl import ir

    r = run("check", spec_path("alexnet"), "--emit-ir")
    assert r.returncode == 0
    net = ir.Network.model_validate_json(r.stdout)
    assert net.name == "alexnet" and net.out_shape == (1000,)


@pytest.mark.slow
def test_spec_error_exits_1_with_a_diagnostic_and_no_traceback(tmp_path):
    bad = tmp_path / "bad.net"
    bad.write_text("network n() {\n  input [3, 32, 32]\n  conv2d(64, 3)\n  lineer(10)\n}\n")
    r = run("build", str(bad))
    assert r.returncode == 1
    assert r.stdout == ""
    assert "error[E0102]: unknown layer or block `lineer`" in r.stderr
    assert f"{bad}:4:3" in r.stderr
    assert "did you mean `linear`?" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.slow
@pytest.mark.parametrize("args", [
    ("build",), ("frobnicate", "x.net"), ("check", "x.net", "--depth", "many"),
    ("check", "SPEC", "--input", "3,a,4"), ("check", "SPEC", "--set", "noequals"),
    ("build", "SPEC", "--device", "tpu"), ("check", "SPEC", "--limit", "max_bananas=3"),
])
def test_usage_errors_exit_2(spec_path, args):
    args = tuple(spec_path("lenet5") if a == "SPEC" else a for a in args)
    r = run(*args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="this checks the message on a machine without CUDA")
def test_cuda_without_cuda_is_a_usage_error(spec_path):
    r = run("build", spec_path("lenet5"), "--device", "cuda")
    assert r.returncode == 2 and "CUDA is not available" in r.stderr


@pytest.mark.slow
def test_meta_build_skips_fvcore_and_says_so(spec_path):
    r = run("build", spec_path("vgg16"), "--device", "meta")
    assert r.returncode == 0, r.stderr
    assert "params:       138,357,544" in r.stdout
    assert "skipped on the meta device" in r.stdout


@pytest.mark.slow
def test_missing_spec_file_is_a_spec_error(tmp_path):
    r = run("check", str(tmp_path / "nope.net"))
    assert r.returncode == 1 and "not found" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("depth", ["0", "-1", "x"])
def test_depth_must_be_positive(spec_path, capsys, depth):
    from netdsl.cli import main

    with pytest.raises(SystemExit) as e:  # argparse's exit, as the command exits
        main(["check", spec_path("lenet5"), "--depth", depth])
    assert e.value.code == 2
    assert "netdsl check: error: argument --depth: expects a positive integer" in capsys.readouterr().err


# The last resort: whatever goes wrong inside netdsl is one message and exit 3.

@pytest.fixture
def broken_analysis(monkeypatch):
    import netdsl.analysis.counts

    def boom(net):
        raise ZeroDivisionError("division by zero\nsecond line")

    monkeypatch.setattr(netdsl.analysis.counts, "analyse", boom)


def test_an_internal_error_is_one_message_and_exit_3(spec_path, capsys, monkeypatch, broken_analysis):
    from netdsl import __version__
    from netdsl.cli import main

    monkeypatch.delenv("NETDSL_TRACEBACK", raising=False)
    assert main(["check", spec_path("lenet5"), "--depth", "1"]) == 3
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert lines[0] == f"error: internal error in netdsl {__version__}: ZeroDivisionError: division by zero"
    assert lines[1].startswith("  please report it at ")
    assert f"with the command line: netdsl check {spec_path('lenet5')} --depth 1" in lines[1]
    assert len(lines) == 2 and "Traceback" not in err


def test_netdsl_traceback_1_shows_the_traceback(spec_path, capsys, monkeypatch, broken_analysis):
    from netdsl.cli import main

    monkeypatch.setenv("NETDSL_TRACEBACK", "1")
    assert main(["check", spec_path("lenet5")]) == 3
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):") and "in boom" in err
    assert "error: internal error in netdsl" in err


@pytest.mark.slow
def test_an_internal_error_in_a_subprocess_has_no_traceback(tmp_path):
    # A spec the checker accepts but whose build is made to fail, as a real user sees it.
    script = tmp_path / "crash.py"
    script.write_text("import sys, netdsl.backend.lower as l\n"
                      "def boom(*a, **k): raise KeyError('plan')\n"
                      "l.lower = boom\n"
                      "from netdsl.cli import main\nsys.exit(main())\n")
    spec = tmp_path / "n.net"
    spec.write_text("network n() { input [3, 8, 8]\n conv2d(4, 3) }\n")
    r = subprocess.run([sys.executable, str(script), "build", str(spec)], capture_output=True, text=True,
                       timeout=300, env={**__import__("os").environ, "NETDSL_TRACEBACK": "0"})
    assert r.returncode == 3
    assert "error: internal error in netdsl" in r.stderr and "KeyError: 'plan'" in r.stderr
    assert "Traceback" not in r.stderr


def test_keyboard_interrupt_exits_130(spec_path, monkeypatch):
    import netdsl.analysis.counts
    from netdsl.cli import main

    def interrupted(net):
        raise KeyboardInterrupt

    monkeypatch.setattr(netdsl.analysis.counts, "analyse", interrupted)
    assert main(["check", spec_path("lenet5")]) == 130


@pytest.mark.slow
def test_a_closed_pipe_is_not_an_internal_error(spec_path):
    # `netdsl check x.net | head -1`: the reader leaves early.
    p = subprocess.Popen([sys.executable, "-m", "netdsl", "check", spec_path("resnet50"), "--depth", "9"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()
    err = p.stderr.read().decode()
    assert p.wait(timeout=300) == 141
    assert "internal error" not in err and "Traceback" not in err


@pytest.mark.parametrize("error", [MemoryError(), RuntimeError(
    "[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory: you tried to "
    "allocate 40000000000000 bytes")])
def test_running_out_of_memory_is_not_an_internal_error(spec_path, capsys, monkeypatch, error):
    import netdsl.backend.lower
    from netdsl.cli import main

    def too_big(*a, **k):
        raise error

    monkeypatch.setattr(netdsl.backend.lower, "lower", too_big)
    assert main(["build", spec_path("lenet5")]) == 2
    assert capsys.readouterr().err == ("netdsl: error: not enough memory on cpu to build `lenet5` "
                                       "(61,706 parameters); try --device meta\n")


def test_version_prints_the_package_version():
    import netdsl

    r = run("--version")
    assert r.returncode == 0 and r.stdout == f"netdsl {netdsl.__version__}\n"
    assert netdsl.__version__ == "0.1.0"


def test_no_command_says_which_commands_there_are():
    r = run()
    assert r.returncode == 2
    from netdsl.cli import _parser, sub_names

    names = sorted(sub_names(_parser()))
    assert {"build", "check", "explain", "lsp", "verify", "graph", "diff", "sweep", "export", "fmt"} <= set(names)
    assert f"give a command: {', '.join(names[:-1])} or {names[-1]}" in r.stderr
    assert "required" not in r.stderr


def _build_on_a_terminal(spec, *args):
    """`netdsl build` with stderr on a pseudo-terminal and stdout on a pipe, as
    `netdsl build x.net | less` runs it: (what the terminal got, stdout, status)."""
    import os
    import pty

    main, secondary = pty.openpty()
    p = subprocess.Popen([sys.executable, "-m", "netdsl", "build", spec, *args], stdout=subprocess.PIPE,
                         stderr=secondary, env={**os.environ, "TERM": "xterm"})
    os.close(secondary)
    seen = b""
    while True:
        try:
            chunk = os.read(main, 4096)
        except OSError:  # EIO: the child closed its end
            break
        if not chunk:
            break
        seen += chunk
    os.close(main)
    out, _ = p.communicate(timeout=300)
    return seen.decode(), out.decode(), p.returncode


@pytest.mark.slow
def test_build_shows_what_it_is_doing_on_a_terminal_and_erases_it(spec_path):
    tty, out, status = _build_on_a_terminal(spec_path("lenet5"))
    assert status == 0
    erase = "\r\x1b[K"
    steps = [s for s in tty.split(erase) if s]
    assert steps == ["loading torch...", f"checking {spec_path('lenet5')}...",
                     "building `lenet5`: 61,706 parameters on cpu...",
                     "counting MACs with fvcore to cross-check them (--no-fvcore skips this)..."]
    assert tty.endswith(erase)  # erased: the prompt comes back on a clean line
    assert out == run("build", spec_path("lenet5")).stdout  # the table is as piped


@pytest.mark.slow
def test_a_spec_error_on_a_terminal_comes_after_the_status_is_erased(tmp_path):
    bad = tmp_path / "bad.net"
    bad.write_text("network n() {\n  input [1, 8, 8]\n  lineer(10)\n}\n")
    tty, out, status = _build_on_a_terminal(str(bad))
    assert status == 1 and out == ""
    before, _, error = tty.partition("error[E0102]")
    assert before.endswith("\r\x1b[K") and "\x1b" not in error


@pytest.mark.slow
def test_build_writes_no_status_into_a_pipe(spec_path):
    r = run("build", spec_path("lenet5"))
    assert r.returncode == 0 and r.stderr == ""
