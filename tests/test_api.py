"""The API's front end: netdsl.compile pauses the cyclic garbage collector, which
otherwise rescans the whole process heap as a large spec's objects pile up
(the front end must be linear in the size of the spec); arguments of the wrong
kind are refused at the API's boundary."""

import gc
import os
from pathlib import Path

import pytest
import torch

import netdsl


def _flat_spec(layers):
    body = "\n".join("    conv2d(8, 3, padding = 1)" if i % 2 == 0 else "    relu" for i in range(layers))
    return f"network flat() {{\n    input [8, 8, 8]\n{body}\n}}\n"


def test_compile_runs_no_garbage_collection_and_restores_the_collector():
    started = []

    def count(phase, info):
        if phase == "start":
            started.append(info["generation"])

    gc.callbacks.append(count)
    try:
        assert gc.isenabled()
        net = netdsl.compile(_flat_spec(2_000))
        assert gc.isenabled()
    finally:
        gc.callbacks.remove(count)
    assert len(net.body) == 2_000
    # At most the one young-generation pass the collector makes as it resumes;
    # running, it makes over a hundred here.
    assert len(started) <= 1


def test_compile_leaves_a_disabled_collector_disabled():
    gc.disable()
    try:
        netdsl.compile(_flat_spec(10))
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_the_collector_resumes_after_a_spec_error():
    try:
        netdsl.compile("network n() { input [3, 8, 8]\n lineer(3) }")
    except netdsl.NetdslError:
        pass
    else:
        raise AssertionError("the misspelt layer was accepted")
    assert gc.isenabled()


# Arguments of the wrong kind are refused where they are given, in words, instead
# of an AttributeError from deep inside.

SPEC = "network n() { input [3, 8, 8]\n conv2d(4, 3) }"
SPEC_TYPES = "spec must be a path (str or os.PathLike), spec text (str) or bytes, not "


@pytest.mark.parametrize("call, error, says", [
    (lambda: netdsl.build(None), TypeError, SPEC_TYPES + "None"),
    (lambda: netdsl.build(123), TypeError, SPEC_TYPES + "int"),
    (lambda: netdsl.compile(["network"]), TypeError, SPEC_TYPES + "list"),
    (lambda: netdsl.parse(None), TypeError, "text must be spec source text (str), not None"),
    (lambda: netdsl.parse(b"network"), TypeError, "text must be spec source text (str), not bytes"),
    (lambda: netdsl.parse("network n() {}", 5), TypeError, "filename must be a str or None, not int"),
    (lambda: netdsl.compile(SPEC, input=5), TypeError,
     "input must be a shape: a tuple or list of integers (C, H, W) or (F,), not int"),
    (lambda: netdsl.compile(SPEC, input="3,8,8"), TypeError, "input must be a shape"),
    (lambda: netdsl.compile(SPEC, network=5), TypeError,
     "network must be the name of a network (str) or None, not int"),
    (lambda: netdsl.compile(SPEC, limits=5), TypeError, "limits must be a netdsl.Limits, not int"),
    (lambda: netdsl.compile(SPEC, limits={"max_params": 5}), TypeError,
     "limits must be a netdsl.Limits, not dict"),
    (lambda: netdsl.build(SPEC, device="bogus"), ValueError,
     "unknown device 'bogus'; use cpu, cuda, cuda:N or meta"),
    (lambda: netdsl.build(SPEC, device="mps"), ValueError, "unsupported device 'mps'"),
    (lambda: netdsl.build(SPEC, device=2.5), TypeError, 'device must be a str such as "cpu"'),
])
def test_arguments_of_the_wrong_kind_say_what_was_expected(call, error, says):
    with pytest.raises(error) as e:
        call()
    assert str(e.value).startswith(says)


def test_the_accepted_kinds_still_work(tmp_path):
    path = tmp_path / "n.net"
    path.write_text(SPEC)
    for spec in (SPEC, SPEC.encode(), path, str(path)):
        assert netdsl.compile(spec).out_shape == (4, 6, 6)
    assert netdsl.compile(SPEC, input=torch.Size([3, 10, 10]), network="n",
                          limits=netdsl.Limits()).out_shape == (4, 8, 8)
    assert netdsl.compile(SPEC, input=[3, 9, 9]).out_shape == (4, 7, 7)
    for device in ("cpu", torch.device("cpu"), "meta", None):
        assert next(netdsl.build(SPEC, device=device).parameters()).shape == (4, 3, 3, 3)


def test_a_bad_device_fails_before_the_spec_is_checked(monkeypatch):
    import netdsl.api

    monkeypatch.setattr(netdsl.api, "compile", lambda *a, **k: pytest.fail("checked first"))
    with pytest.raises(ValueError, match="unknown device"):
        netdsl.build(SPEC, device="bogus")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:0", torch.device("cuda", 1)])
def test_cuda_without_cuda_says_so_in_words(device):
    with pytest.raises(ValueError) as e:
        netdsl.build(SPEC, device=device)
    assert "CUDA is not available on this machine" in str(e.value)
    assert "NVIDIA" not in str(e.value)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_cuda_index_past_the_last_device_is_refused():
    n = torch.cuda.device_count()
    with pytest.raises(ValueError, match=f"this machine has {n} CUDA device"):
        netdsl.build(SPEC, device=f"cuda:{n}")


def test_the_cli_and_the_api_share_one_device_check(monkeypatch, capsys, tmp_path):
    import netdsl.backend.lower
    from netdsl.cli import main

    def refuse(device=None):
        raise netdsl.backend.lower.DeviceError("refused by the shared check")

    monkeypatch.setattr(netdsl.backend.lower, "target_device", refuse)
    path = tmp_path / "n.net"
    path.write_text(SPEC)
    assert main(["build", str(path), "--device", "cpu"]) == 2
    assert capsys.readouterr().err == "netdsl: error: refused by the shared check\n"
    with pytest.raises(ValueError, match="refused by the shared check"):
        netdsl.build(SPEC, device="cpu")
    assert os.path.exists(path) and Path(path).read_text() == SPEC
