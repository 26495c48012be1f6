"""Safety limits (netdsl/limits.py): each one refuses a spec with its own
diagnostic, can be changed from the API and the CLI, and a hostile spec ends in
a diagnostic, never a RecursionError, a hang or an allocation."""

import subprocess
import sys

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import netdsl
from netdsl import Limits

H = "network n() {\n input [3, 8, 8]\n"


def codes(spec, **kw):
    with pytest.raises(netdsl.NetdslError) as e:
        netdsl.compile(spec, **kw)
    assert "Traceback" not in str(e.value)
    return e.value.codes


# Each limit: a spec within the default that a lowered limit refuses.
LOWERED = [
    ("max_file_bytes", 20, H + " relu }", "E0401"),
    ("max_nesting", 3, H + " { { { relu } } } }", "E0402"),
    ("max_repeat", 3, H + " relu * 4 }", "E0403"),
    ("max_nodes", 10, H + " for i in range(4) { relu * 3 } }", "E0404"),
    ("max_block_depth", 2, "block a() { b }\nblock b() { c }\nblock c() { relu }\n" + H + " a }",
     "E0405"),
    ("max_dim", 100, H + " conv2d(101, 1) }", "E0407"),
    ("max_params", 100, H + " conv2d(16, 3) }", "E0408"),
    ("max_activation_bytes", 1000, H + " conv2d(16, 3) }", "E0409"),
    ("max_int", 1000, H + " let x = 999 + 2\n relu }", "E0215"),
]


@pytest.mark.parametrize("name, value, spec, code", LOWERED, ids=[x[0] for x in LOWERED])
def test_each_limit_is_enforced_and_set_from_the_api(name, value, spec, code):
    netdsl.compile(spec)  # fine under the defaults
    assert codes(spec, limits=Limits().replace(**{name: value}))[0] == code


def test_import_depth_limit(tmp_path):
    (tmp_path / "a.net").write_text('import "b.net"\n' + H + " relu }")
    (tmp_path / "b.net").write_text('import "c.net"\n')
    (tmp_path / "c.net").write_text("block c() { relu }\n")
    netdsl.compile(tmp_path / "a.net")
    assert codes(tmp_path / "a.net", limits=Limits(max_import_depth=2)) == ["E0406"]


@pytest.mark.slow
def test_limits_are_set_from_the_cli(tmp_path):
    spec = tmp_path / "n.net"
    spec.write_text(H + " conv2d(16, 3) }")
    run = lambda *a: subprocess.run([sys.executable, "-m", "netdsl", "check", str(spec), *a],  # noqa: E731
                                    capture_output=True, text=True)
    assert run().returncode == 0
    r = run("--limit", "max_params=100")
    assert r.returncode == 1 and "error[E0408]" in r.stderr and "over the limit of 100" in r.stderr
    assert run("--limit", "max_params=1e3").returncode == 0  # 448 parameters
    assert run("--limit", "max_params=1.5e3").returncode == 0  # an integer, however written
    for bad in ("max_params=lots", "max_params=1e400", "max_params=-1", "no_such_limit=3",
                "max_repeat=1e-5", "max_repeat=2.5", "max_params=nan", "max_params=inf",
                "max_nesting=100000", "max_int=1e19", "max_params=1e999999999"):
        r = run("--limit", bad)
        assert r.returncode == 2 and r.stderr.startswith("netdsl: error: --limit"), bad
        assert "Traceback" not in r.stderr
    r = run("--limit", "max_repeat=1e-5")  # was silently 0, which refuses every repetition
    assert "needs a non-negative integer" in r.stderr
    r = run("--limit", "max_nesting=100000")
    assert "max_nesting must be between 0 and 150" in r.stderr and "stack" in r.stderr


@pytest.mark.parametrize("value", [1.0, 1e9, True, "100", None])
def test_a_limit_that_is_not_an_int_is_a_type_error(value):
    with pytest.raises(TypeError, match="must be an int"):
        Limits(max_params=value)


@pytest.mark.parametrize("name, value", [
    ("max_nesting", -1), ("max_nesting", 151), ("max_block_depth", 151), ("max_import_depth", 201),
    ("max_int", 2**63), ("max_params", 2**63), ("max_repeat", 10**5000),
], ids=["negative", "nesting", "block_depth", "import_depth", "int", "params", "5000_digits"])
def test_a_limit_out_of_its_range_is_a_value_error(name, value):
    with pytest.raises(ValueError, match=f"Limits.{name} must be between 0 and [0-9,]+, got .*: ") as e:
        Limits().replace(**{name: value})
    assert len(str(e.value)) < 300


def test_every_limit_can_be_set_to_its_cap():
    from netdsl.limits import CAPS, INT64_MAX

    caps = {name: CAPS.get(name, (INT64_MAX, ""))[0] for name in Limits.names()}
    assert Limits(**caps).max_nesting == 150


# ---------------------------------------------------------------- parameters (E0408)


def test_a_trillion_parameters_are_refused_before_anything_is_built(monkeypatch):
    import netdsl.backend.lower

    def never(*a, **kw):
        raise AssertionError("lowering must not start")

    monkeypatch.setattr(netdsl.backend.lower, "lower", never)
    spec = "network huge() {\n input [1000000]\n fc: linear(1000000)\n}"
    with pytest.raises(netdsl.NetdslError) as e:
        netdsl.build(spec)
    d = e.value.diagnostics[0]
    assert d.code == "E0408"
    assert d.message == "the network has 1,000,001,000,000 parameters, over the limit of 2,000,000,000"
    assert (d.span.line, d.span.column) == (3, 6) and "`fc`" in d.label


def test_the_parameter_limit_points_at_the_largest_layer_inside_blocks():
    spec = "block b(c) { conv2d(c, 3)\n wide: conv2d(c * 64, 3) }\n" + H + " b(64) }"
    with pytest.raises(netdsl.NetdslError) as e:
        netdsl.compile(spec, limits=Limits(max_params=10_000))
    d = e.value.diagnostics[0]
    assert d.code == "E0408" and d.span.line == 2 and "`wide`" in d.label


# ---------------------------------------------------------------- activations (E0409)

# Each passed check, then building ran fvcore's forward into gigabytes (issue 8).
ACTIVATION_REPROS = [
    ("specs/resnet50.net", {"input": (3, 100000, 100000)}, "conv1", 640_000_000_000),
    ("network n() {\n input [3, 8, 8]\n adaptive_avgpool2d(1000000)\n}", {}, "avgpool", 12 * 10**12),
    ("network big() {\n input [3, 4000, 4000]\n conv2d(16, 3, padding = 1)\n relu\n"
     " adaptive_avgpool2d(1)\n flatten\n linear(10)\n}", {}, "0", 1_024_000_000),
    ("network n() {\n input [3, 100000, 100000]\n adaptive_avgpool2d(1)\n}", {}, "input",
     120_000_000_000),
    # torch pads the squared input by size - 1 channels: 4 GB inside one layer
    ("network n() {\n input [3, 32, 32]\n local_response_norm(1000000)\n}", {}, "local_response_norm",
     4 * (3 + 999_999) * 1024),
    ("network n() {\n input [64, 600, 600]\n concat {\n identity\n identity\n identity\n"
     " identity\n identity\n identity\n identity\n }\n}", {}, "concat", 7 * 4 * 64 * 360_000),
]


@pytest.mark.parametrize("spec, kw, where, size", ACTIVATION_REPROS)
def test_huge_activations_are_refused_before_anything_is_built(spec, kw, where, size, monkeypatch):
    import netdsl.backend.lower

    monkeypatch.setattr(netdsl.backend.lower, "lower", lambda *a, **k: pytest.fail("lowering started"))
    with pytest.raises(netdsl.NetdslError) as e:
        netdsl.build(spec, **kw)
    (d,) = e.value.diagnostics
    assert d.code == "E0409" and f"is {size:,} bytes" in d.message and "max_activation_bytes" in d.help
    assert where == "input" and "input" in d.label or f"module `{where}`" in d.notes[0]
    assert netdsl.compile(spec, limits=Limits(max_activation_bytes=size), **kw)


FAMILIES = [(f"specs/{n}.net", {}) for n in ("lenet5", "alexnet", "vgg16", "inception_v3", "resnet34",
                                             "resnet50", "densenet121", "efficientnet_b0",
                                             "efficientnet_b1")] + \
    [("specs/vgg.net", {"depth": d, "batch_norm": bn}) for d in (11, 13, 16, 19) for bn in (False, True)] + \
    [("specs/resnet.net", {"depth": d}) for d in (18, 34, 50, 101, 152)] + \
    [("specs/resnet.net", {"depth": 101, "width_per_group": 128}),
     ("specs/resnet.net", {"depth": 152, "groups": 32, "width_per_group": 8}),
     ("specs/densenet.net", {"growth_rate": 48, "block_config": "[6, 12, 36, 24]",
                             "num_init_features": 96}),
     ("specs/densenet.net", {"block_config": "[6, 12, 48, 32]"})] + \
    [("specs/efficientnet.net", {"variant": v}) for v in range(8)]


@pytest.mark.slow
def test_every_shipped_network_is_far_below_the_activation_limit():
    from netdsl.analysis import activations

    largest = {}
    for spec, kw in FAMILIES:
        net = netdsl.compile(spec, **kw)  # E0409 would raise here
        largest[spec, str(kw)] = activations(net)[1]
    # EfficientNet-B7 at 600 x 600 is the largest: 69.1 MB, a seventh of the limit.
    assert max(largest.values()) == largest["specs/efficientnet.net", "{'variant': 7}"] == 69_120_000
    assert max(largest.values()) * 7 < Limits().max_activation_bytes


def test_the_activation_limit_points_at_the_layer_inside_a_block():
    spec = "block b(c) { conv2d(c, 3)\n wide: conv2d(c * 64, 3) }\n" + H + " b(64) }"
    with pytest.raises(netdsl.NetdslError) as e:
        netdsl.compile(spec, limits=Limits(max_activation_bytes=100_000))
    d = e.value.diagnostics[0]
    assert d.code == "E0409" and (d.span.line, d.span.column) == (2, 8)
    assert "module `0.wide`" in d.notes[0] and "[4096, 4, 4]" in d.label


# ---------------------------------------------------------------- recursion and depth


def test_a_block_that_uses_itself_is_E0405():
    assert codes("block b() { b }\n" + H + " b }") == ["E0405"]


def test_recursion_through_two_blocks_is_E0405():
    assert codes("block a(c) { conv2d(c, 1)\n b(c) }\nblock b(c) { a(c) }\n" + H + " a(4) }")[0] == "E0405"


def test_recursion_that_nests_bodies_ends_in_E0405_not_a_recursion_error():
    # Each level of this recursion costs many Python frames: the stack runs out before
    # max_block_depth, and that is reported as the recursion it is.
    body = "residual { " * 20 + "if n > 0 { b(n - 1) }\n relu " + "}" * 20
    assert codes(f"block b(n) {{ {body} }}\n" + H + " b(1000) }") == ["E0405"]


def test_deep_nesting_without_recursion_ends_in_E0402():
    deep = "block b0() { relu }\n" + "".join(
        f"block b{i}() {{ {'{ ' * 90}b{i - 1}{' }' * 90} }}\n" for i in range(1, 20))
    assert codes(deep + H + " b19 }") == ["E0402"]


@pytest.mark.parametrize("expr", [
    "(" * 150 + "1" + ")" * 150,
    "-" * 5000 + "1",
    "1" + " + 1" * 5000,
    "2" + " ** 2" * 3000,
    "not " * 3000 + "true",
    "1 if true else " * 2000 + "1",
], ids=["parens", "minus", "sum", "power", "not", "ifexp"])
def test_deep_expressions_are_E0402(expr):
    assert codes(H + f" let x = {expr}\n relu }}") == ["E0402"]


@pytest.mark.slow
def test_a_long_else_if_chain_is_E0402():
    chain = " if false { relu }" + " else if false { relu }" * 3000
    assert codes(H + chain + "\n relu }") == ["E0402"]


def test_lists_nested_line_by_line_are_E0402():
    lets = "let a0 = [1]\n" + "".join(f"let a{i} = [a{i - 1}]\n" for i in range(1, 150))
    assert codes(lets + H + " relu }") == ["E0402"]


def test_deep_nesting_in_a_string_template_is_E0402():
    assert codes(H + ' "a{' + "-" * 500 + '1}": relu }') == ["E0402"]


# ---------------------------------------------------------------- sizes


def test_huge_repetition_is_E0403():
    assert codes(H + " relu * 100000000 }") == ["E0403"]


@pytest.mark.parametrize("expr", ["range(10 ** 18)", "range(-9223372036854775807, 9223372036854775807)"])
def test_huge_ranges_are_E0403(expr):
    assert codes(f"let r = {expr}\n" + H + " relu }") == ["E0403"]


@pytest.mark.parametrize("start", ["[1, 2, 3, 4]", '"abcd"'])
def test_doubling_a_list_or_string_is_E0403_not_a_memory_error(start):
    lets = f"let a0 = {start}\n" + "".join(f"let a{i} = a{i - 1} + a{i - 1}\n" for i in range(1, 60))
    assert codes(lets + H + " relu }") == ["E0403"]


def test_doubling_a_string_through_a_template_is_E0403():
    lets = 'let a0 = "abcd"\n' + "".join(f'let a{i} = "{{a{i - 1}}}{{a{i - 1}}}"\n' for i in range(1, 60))
    assert codes(lets + H + " relu }") == ["E0403"]


def test_nested_loops_that_make_no_layers_still_end():
    # 10^8 iterations of nothing: each loop is within max_repeat, their product is not.
    spec = H + " for i in range(10000) { for j in range(10000) { let x = i } } }"
    assert codes(spec) == ["E0404"]
    assert codes(H + " { { } * 10000 } * 10000 }") == ["E0404"]


def test_nested_repetition_of_layers_is_E0404():
    assert codes(H + " { relu * 100 } * 100 }", limits=Limits(max_nodes=5_000)) == ["E0404"]


@pytest.mark.parametrize("work", [
    "let s = sum(big)", "let t = big == copy", "let u = 5 in big", "let r = range(10000)",
    "for x in big { }", 'let s = "{text}{text}"', "let m = max(big)", "let l = [big, big]",
])
def test_work_on_big_lists_in_loops_is_counted(work):
    # Each of these is one statement per iteration but walks 10,000 items: 10^4 iterations
    # of it would be 10^8 operations, so the items count as steps.
    lets = 'let big = range(10000)\nlet copy = big + []\nlet text = "' + "a" * 4000 + '"\n'
    spec = lets + H + f" for i in range(10000) {{ {work} }}\n relu }}"
    assert codes(spec) == ["E0404"]


def test_sharing_cannot_hide_the_size_of_a_list():
    # a9 is [a8, a8], a8 is [a7, a7], ...: ten lines, 2^10 copies of `big` to compare.
    lets = "let big = range(1000)\nlet a0 = [big]\nlet b0 = [big + []]\n" + "".join(
        f"let a{i} = [a{i - 1}, a{i - 1}]\nlet b{i} = [b{i - 1}, b{i - 1}]\n" for i in range(1, 12))
    assert codes(lets + H + " assert a11 == b11\n relu }") == ["E0404"]


def _tower(levels):
    # Each level is a block instance holding a labelled group: two modules deep.
    return ("block b(n) {\n a: { if n > 0 { b(n - 1) } }\n relu\n}\n"
            f"network n() {{\n input [3, 8, 8]\n b({levels})\n}}")


def test_modules_nested_by_recursion_are_E0402():
    assert codes(_tower(55)) == ["E0402"]


def test_modules_nested_to_the_limit_build_run_and_print():
    import torch

    from netdsl.ir import Network

    net = netdsl.compile(_tower(48))  # 98 modules deep
    assert Network.model_validate_json(net.model_dump_json()) == net
    model = netdsl.build(_tower(48))
    assert model(torch.zeros(1, 3, 8, 8)).shape == (1, 3, 8, 8)


@pytest.mark.parametrize("expr", [
    "[[x for x in big] for y in big]",
    "[sum(big) for y in big]",
])
def test_nested_comprehensions_are_counted(expr):
    assert codes(f"let big = range(10000)\nlet m = {expr}\n" + H + " relu }") == ["E0404"]


def test_comprehensions_cannot_nest_lists_without_bound():
    lets = "let a0 = [1]\n" + "".join(f"let a{i} = [a{i - 1} for x in [1]]\n" for i in range(1, 150))
    assert codes(lets + H + " relu }") == ["E0402"]


def test_slices_in_a_loop_are_counted():
    spec = "let big = range(10000)\n" + H + " for i in range(10000) { let s = big[1:] }\n relu }"
    assert codes(spec) == ["E0404"]


# ---------------------------------------------------------------- refusing max_nodes early

FANOUT = "block b0() { relu }\n" + "".join(f"block b{i}() {{ b{i - 1} * 10 }}\n" for i in range(1, 8))
FANOUT_ARGS = "block b0(c) { conv2d(c, 1) }\n" + "".join(
    f"block b{i}(c) {{ b{i - 1}(c) * 10 }}\n" for i in range(1, 8))
FANOUT_LINES = "block b0() { relu }\n" + "".join(
    f"block b{i}() {{ {'; '.join([f'b{i - 1}'] * 10)} }}\n" for i in range(1, 8))


@pytest.mark.parametrize("spec", [
    H + " { { relu * 9999 } * 9999 } * 9999\n}",
    FANOUT + H + " b7\n}",
    FANOUT_ARGS + H + " b7(4)\n}",
    FANOUT_LINES + H + " b7\n}",
], ids=["nested_repeat", "fanout", "fanout_args", "fanout_lines"])
def test_work_that_must_pass_max_nodes_is_refused_before_it_is_done(monkeypatch, spec):
    # Each of these took the whole budget (90,000 to 200,000 layers, 1.4 to 4 s) before
    # E0404; once one copy or instance shows what each costs, the rest need not be made.
    from netdsl.check import checker as elaborate

    made = []
    real = elaborate.Checker.layer
    monkeypatch.setattr(elaborate.Checker, "layer", lambda self, *a, **kw: made.append(1) or real(self, *a, **kw))
    assert codes(spec) == ["E0404"]
    assert 0 < len(made) <= 20_000


def test_an_early_refusal_says_why():
    with pytest.raises(netdsl.NetdslError) as e:
        netdsl.compile(H + " { relu * 100 } * 100\n}", limits=Limits(max_nodes=5_000))
    d = e.value.diagnostics[0]
    # The first copy sees the network's input, the second what the first made: from the
    # third on, each copy sees what the one before saw.
    assert d.code == "E0404" and (d.span.line, d.span.column) == (3, 2)
    assert d.label == "98 more copies of 102 steps each would pass the limit"


_UNITS = ["b{p}", "b{p} * 3", "relu", "conv2d(4, 1)", "if in_channels == 3 {{ relu * 5 }}",
          "{{ b{p} }} * 2", "concat {{ b{p}; b{p} }}", "relu * 4", "dense {{ b{p} * 2 }}",
          "let x = range(in_channels * 3)", "b{p}; b{p}"]


@st.composite
def _fanout_specs(draw):
    lines = ["block b0() { if in_channels == 3 { relu * 7 }\n conv2d(4, 1) }"]
    for i in range(1, 5):
        body = draw(st.lists(st.sampled_from(_UNITS), min_size=1, max_size=4))
        lines.append(f"block b{i}() {{ " + "; ".join(u.format(p=i - 1) for u in body) + " }")
    # Last, two equal statements that see different inputs (3 channels, then 4).
    return "\n".join(lines) + "\n" + H + " b4 * 3\n conv2d(3, 1); b1; b1\n}"


def _steps_and_codes(spec, max_nodes):
    from unittest import mock

    from netdsl.check import checker as elaborate

    steps = []
    real = elaborate.Checker.network

    def network(self, *a, **kw):
        try:
            return real(self, *a, **kw)
        finally:
            steps.append(self.nodes)

    with mock.patch.object(elaborate.Checker, "network", network):
        try:
            netdsl.compile(spec, limits=Limits(max_nodes=max_nodes))
            return steps[0], []
        except netdsl.NetdslError as e:
            return steps[0], e.codes


@pytest.mark.slow
@settings(max_examples=60, deadline=None)
@given(_fanout_specs())
def test_refusing_early_refuses_exactly_what_expanding_would(spec):
    # The shortcuts only predict: a spec of exactly max_nodes steps still passes, one
    # step fewer is refused, whichever copy, statement or instance shows it first.
    steps, found = _steps_and_codes(spec, 10**9)
    assume(steps <= 30_000 and found == [])
    assert "E0404" not in _steps_and_codes(spec, steps)[1]
    assert "E0404" in _steps_and_codes(spec, steps - 1)[1]


# ---------------------------------------------------------------- every stage works at the caps

AT_CAPS = Limits(max_nesting=150, max_block_depth=150, max_import_depth=200)


def _tower_of(kind, levels, leaf):
    return H + " " + f"{kind} {{ " * levels + leaf + " }" * levels + "\n}"


def _init_groups(levels):
    return _tower_of("a:", levels, "conv2d(3, 1)").replace(
        "\n a:", '\n init conv2d.weight = kaiming_normal(mode = "fan_out")\n a:')


def _lets(n):  # n operators, n - 1 inside a list
    return "let x = " + "-" * n + "1\nlet y = [1" + " + 1" * (n - 1) + "]\n" + H + " relu\n}"


def _defaults(n):  # n - 1 brackets, n operators
    return ("network n(x = " + "(" * (n - 1) + "1" + ")" * (n - 1) + ", y = 1" + " ** 1" * n + ") {\n"
            " input [3, 8, 8]\n relu\n}")


# The deepest specs the limits admit at their caps, and one level more. Modules: as deep as
# the IR's JSON holds, 98 levels of groups, blocks or residuals, 65 of concat or dense.
# Expressions: as deep as max_nesting, where nothing catches a RecursionError.
DEEPEST = {
    "groups": (_init_groups(97), _init_groups(98)),
    "residuals": (_tower_of("residual", 98, "conv2d(3, 1)"), _tower_of("residual", 99, "conv2d(3, 1)")),
    "concats": (_tower_of("concat", 65, "conv2d(3, 1)"), _tower_of("concat", 66, "conv2d(3, 1)")),
    "denses": (_tower_of("dense", 65, "conv2d(2, 1)"), _tower_of("dense", 66, "conv2d(2, 1)")),
    "blocks": (_tower(48), _tower(49)),
    "lets": (_lets(150), _lets(151)),
    "defaults": (_defaults(150), _defaults(151)),
}


@pytest.mark.parametrize("name", DEEPEST)
def test_at_the_caps_the_deepest_specs_check_emit_build_run_and_save(name):
    import io

    import torch

    from netdsl.backend.lower import lower
    from netdsl.cli.build import fvcore_total
    from netdsl.ir import Network

    spec, deeper = DEEPEST[name]
    net = netdsl.compile(spec, limits=AT_CAPS)
    assert Network.model_validate_json(net.model_dump_json()) == net
    model = lower(net)
    x = torch.randn(2, *net.input_shape, requires_grad=True)
    model(x).sum().backward()
    assert x.grad is not None
    fvcore_total(model, net.input_shape, torch.device("cpu"))
    torch.save(model.state_dict(), io.BytesIO())
    assert codes(deeper, limits=AT_CAPS)[0] == "E0402"  # one level more: refused, not a crash


@pytest.mark.slow
def test_at_the_caps_the_cli_emits_the_deepest_ir(tmp_path):
    (tmp_path / "deep.net").write_text(_tower_of("concat", 65, "relu"))
    r = subprocess.run([sys.executable, "-m", "netdsl", "check", "deep.net", "--emit-ir",
                        "--limit", "max_nesting=150"], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    from netdsl.ir import Network

    assert Network.model_validate_json(r.stdout).body[0].kind == "concat"


def test_imports_to_the_cap_are_read(tmp_path):
    # 200 files: main.net and 199 more, each importing the next.
    for i in range(199):
        (tmp_path / f"f{i}.net").write_text(f'import "f{i + 1}.net"\n' if i < 198 else "block b() { relu }\n")
    (tmp_path / "main.net").write_text('import "f0.net"\n' + H + " b\n}")
    assert netdsl.compile(tmp_path / "main.net", limits=AT_CAPS).body[0].cls == "B"
    assert codes(tmp_path / "main.net", limits=AT_CAPS.replace(max_import_depth=199)) == ["E0406"]


@pytest.mark.parametrize("leaf, levels", [("relu", 65), ("relu", 66)])
def test_modules_past_what_the_ir_json_holds_are_E0402(leaf, levels):
    # Within max_nesting, but 66 concats are 202 levels of JSON: --emit-ir could not be read back.
    spec = _tower_of("concat", levels, leaf)
    if levels == 65:
        netdsl.compile(spec)
    else:
        assert codes(spec) == ["E0402"]
