"""The API's front end: netdsl.compile pauses the cyclic garbage collector, which
otherwise rescans the whole process heap as a large spec's objects pile up
(the front end must be linear in the size of the spec)."""

import gc

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
