"""The checker: naming rule, expansion, inference and a few diagnostics.

(Every error code has its own fixture in tests/check/test_diagnostics.py.)"""

import pytest
from pydantic import ValidationError

import netdsl
from netdsl import ir


def keys(src, **kw):
    return list(netdsl.build(src, device="meta", **kw).state_dict())


def codes(src, **kw):
    with pytest.raises(netdsl.NetdslError) as info:
        netdsl.compile(src, **kw)
    return [(d.code, d.span.line if d.span else None, d.span.column if d.span else None)
            for d in info.value.diagnostics]


def test_unlabelled_modules_are_numbered_by_position_in_their_scope():
    src = """network n() {
        input [3, 8, 8]
        features: { conv2d(4, 3); relu; conv2d(4, 3) }
        head: linear(2)
    }"""
    with pytest.raises(netdsl.NetdslError):  # linear after a 4-D tensor without flatten
        netdsl.compile(src)
    src = src.replace("head:", "flatten\n head:")
    assert keys(src) == ["features.0.weight", "features.0.bias", "features.2.weight",
                         "features.2.bias", "head.weight", "head.bias"]


def test_a_false_if_takes_no_number():
    src = """network n(bn = false) {
        input [3, 8, 8]
        f: { conv2d(4, 3, bias = false); if bn { batchnorm2d }; relu; conv2d(4, 1, bias = false) }
    }"""
    assert keys(src) == ["f.0.weight", "f.2.weight"]
    assert keys(src, bn=True)[:3] == ["f.0.weight", "f.1.weight", "f.1.bias"]


def test_labelled_repetition_numbers_copies_like_sequential():
    src = """block unit(c) { conv: conv2d(c, 3, padding = 1) }
    network n() { input [3, 8, 8]\n stage: unit(4) * 3 }"""
    assert keys(src) == [f"stage.{i}.conv.{p}" for i in range(3) for p in ("weight", "bias")]


def test_combinators_open_no_scope_but_labelled_shortcut_does():
    src = """block b(c) {
        residual { conv1: conv2d(c, 3, padding = 1) } shortcut down { conv2d(c, 1) }
    }
    network n() { input [2, 8, 8]\n blk: b(4) }"""
    assert keys(src) == ["blk.conv1.weight", "blk.conv1.bias", "blk.down.0.weight", "blk.down.0.bias"]


def test_in_channels_is_the_block_input_and_conditions_use_it():
    src = """block b(c) {
        residual { conv2d(c, 1) } shortcut proj if in_channels != c { conv2d(c, 1) }
    }
    network n() { input [3, 4, 4]\n b(3)\n b(5) }"""
    net = netdsl.compile(src)
    first, second = net.body
    assert first.body[0].shortcut is None          # 3 == 3: identity
    assert second.body[0].shortcut is not None     # 3 != 5: projection


def test_blocks_are_values_passed_to_networks():
    src = """block a() { conv2d(2, 1) }
    block b() { conv2d(7, 1) }
    network n(unit = a) { input [1, 4, 4]\n unit }"""
    assert netdsl.compile(src).out_shape == (2, 4, 4)
    assert netdsl.compile(src, unit="b").out_shape == (7, 4, 4)


def test_one_class_per_block_named_after_it():
    src = """block basic_unit() { conv2d(2, 1) }
    network tiny_net() { input [1, 4, 4]\n basic_unit\n basic_unit }"""
    m = netdsl.build(src)
    assert type(m).__name__ == "TinyNet"
    assert type(m[0] if hasattr(m, "__getitem__") else m._modules["0"]).__name__ == "BasicUnit"
    assert type(m._modules["0"]) is type(m._modules["1"])


def test_shapes_and_channels_are_inferred():
    net = netdsl.compile("""network n() {
        input [3, 32, 32]
        conv2d(8, [3, 5], stride = [1, 2], padding = [1, 2])
        maxpool2d(3, stride = 2, ceil_mode = true)
        flatten
        linear(10)
    }""")
    conv, pool, flat, fc = net.body
    assert conv.in_channels == 3 and conv.out_shape == (8, 32, 16)
    assert pool.out_shape == (8, 16, 8)
    assert flat.out_shape == (8 * 16 * 8,)
    assert fc.in_features == 1024


def test_concat_dense_and_gate_shapes():
    net = netdsl.compile("""network n() {
        input [4, 8, 8]
        concat { conv2d(3, 1)\n { conv2d(2, 1)\n conv2d(5, 3, padding = 1) } }
        dense { conv2d(2, 3, padding = 1) * 3 }
        gate { adaptive_avgpool2d(1)\n conv2d(14, 1)\n sigmoid }
    }""")
    cat, dense, gate = net.body
    assert cat.out_shape == (8, 8, 8)
    assert [layer[0].in_channels for layer in dense.layers] == [8, 10, 12]
    assert dense.out_shape == (14, 8, 8)
    assert gate.out_shape == (14, 8, 8)


def test_several_errors_are_reported_together():
    found = codes("""network n() {
        input [3, 8, 8]
        conv2d(4, 3, strid = 2)
        conv2 (4, 3)
        let ratio = 1 / 0
    }""")
    assert found == [("E0202", 3, 22), ("E0102", 4, 9), ("E0211", 5, 25)]


def test_errors_inside_a_block_name_the_instantiation():
    with pytest.raises(netdsl.NetdslError) as info:
        netdsl.compile("""block b(c) { conv2d(c, 9) }
        network n() { input [3, 4, 4]\n b(8) }""")
    d = info.value.diagnostics[0]
    assert d.code == "E0304" and d.span.line == 1
    assert any("in block `b` used at" in note and ":3:" in note for note in d.notes)


def test_unknown_names_suggest_the_closest():
    with pytest.raises(netdsl.NetdslError) as info:
        netdsl.compile("network n(width = 4) { input [3, 4, 4]\n conv2d(widht, 1) }")
    d = info.value.diagnostics[0]
    assert d.code == "E0101" and "`width`" in d.help


def test_ir_round_trips_through_json(spec_path):
    net = netdsl.compile(spec_path("resnet50"))
    again = ir.Network.model_validate_json(net.model_dump_json())
    assert again == net
    assert again.body[4].body[0].body[0].kind == "residual"


def test_ir_is_frozen_and_strict():
    net = netdsl.compile("network n() { input [3, 4, 4]\n c: conv2d(2, 1) }")
    with pytest.raises(ValidationError):
        net.body[0].out_channels = 3
    data = net.model_dump()
    data["body"][0]["surprise"] = 1
    with pytest.raises(ValidationError):
        ir.Network.model_validate(data)
    data["body"][0].pop("surprise")
    data["body"][0]["groups"] = 3           # 3 does not divide 3 → fine; 2 output channels → not
    with pytest.raises(ValidationError):
        ir.Network.model_validate(data)


def test_overrides_from_the_api():
    net = netdsl.compile("network n(c = 4, ks = [1, 3]) { input [3, 8, 8]\n conv2d(c, ks) }",
                         c=6, ks=[3, 3])
    assert net.body[0].out_shape == (6, 6, 6)
    net = netdsl.compile("network n(c = 4) { input [3, 8, 8]\n conv2d(c, 1) }", input=(5, 9, 9))
    assert net.body[0].in_channels == 5 and net.body[0].out_shape == (4, 9, 9)


def test_inplace_on_a_shared_tensor_is_refused():
    found = codes("""network n() { input [3, 4, 4]
        residual { relu(inplace = true)\n conv2d(3, 1) }
    }""")
    assert found == [("E0311", 2, 20)]


@pytest.mark.parametrize("spec, chosen", [
    ("network k = k()", "k"),
    ("network k = k2()\nnetwork k2 = k()", "k"),
    ("network a = b(w = 1)\nnetwork b = c()\nnetwork c = b()", "a"),
])
def test_network_variants_in_a_cycle_are_E0107_not_a_hang(spec, chosen):
    # Following the bases of these variants never ended.
    assert codes(spec + "\n", network=chosen)[0][0] == "E0107"


@pytest.mark.parametrize("before", ["sigmoid", "tanh", "relu", "relu(inplace = true)",
                                    "relu\n identity", "tanh\n flatten\n dropout(0.2)"])
@pytest.mark.parametrize("inplace", ["relu", "relu6", "silu", "hardswish", "dropout"])
def test_inplace_after_a_layer_whose_backward_reads_its_output_is_refused(before, inplace):
    import torch

    src = f"network n() {{ input [3, 4, 4]\n conv2d(3, 1)\n {before}\n {inplace}(inplace = true)\n}}"
    with pytest.raises(netdsl.NetdslError) as e:
        netdsl.compile(src)
    (d,) = e.value.diagnostics
    kind = before.split("(")[0].split("\n")[0]
    assert d.code == "E0311" and f"`{kind}` before it keeps its output" in d.label
    # without `inplace` it builds, and backward works
    model = netdsl.build(src.replace("(inplace = true)\n}", "\n}"))
    model(torch.randn(2, 3, 4, 4, requires_grad=True)).sum().backward()


@pytest.mark.parametrize("last", ["sigmoid", "tanh", "relu", "batchnorm2d\n relu(inplace = true)",
                                  "relu\n identity"])
def test_a_residual_body_ending_in_such_a_layer_adds_out_of_place(last):
    import torch

    model = netdsl.build(f"network n() {{ input [3, 4, 4]\n conv2d(3, 1)\n"
                         f" residual {{ conv2d(3, 1)\n {last} }}\n}}")
    x = torch.randn(2, 3, 4, 4, requires_grad=True)
    model(x).sum().backward()  # an in-place add broke this
    assert x.grad is not None


@pytest.mark.parametrize("name, why", [("logits", "main output"), ("_x", "`_`"), ("__", "`_`"),
                                       ("def", "keyword"), ("class", "keyword"),
                                       ("None", "keyword"), ("lambda", "keyword")])
def test_a_side_output_name_that_cannot_be_a_tuple_field_is_refused(name, why):
    src = f"network n() {{\n input [3, 8, 8]\n side {name} {{ flatten\n linear(2) }}\n flatten\n linear(3)\n}}"
    with pytest.raises(netdsl.NetdslError) as e:
        netdsl.compile(src)
    (d,) = e.value.diagnostics
    assert (d.code, d.span.line, d.span.column) == ("E0113", 3, 7) and why in d.label
    assert "rename it" in d.help


def test_side_output_names_that_are_tuple_fields_build_and_run():
    import torch

    names = ["aux", "Logits", "logits_", "match", "case", "type", "print", "self", "x_"]
    sides = "\n".join(f" side {n} {{ flatten\n linear(2) }}" for n in names)
    model = netdsl.build(f"network n() {{\n input [3, 4, 4]\n{sides}\n flatten\n linear(3)\n}}")
    out = model(torch.zeros(2, 3, 4, 4))
    assert out._fields == ("logits", *names) and out.logits.shape == (2, 3)


# ---------------------------------------------------------------- every diagnostic carries its fix


def diags(body, params="", **kw):
    with pytest.raises(netdsl.NetdslError) as info:
        netdsl.compile(f"network n({params}) {{\n    input [16, 32, 32]\n{body}\n}}\n", **kw)
    return info.value.diagnostics


def test_a_label_that_is_a_position_names_the_unlabelled_module_not_a_duplicate_label():
    (d,) = diags("    conv2d(16, 3)\n    relu\n    \"1\": relu")
    assert d.code == "E0108"
    assert d.message == "label `1` collides with the name of the unlabelled module at position 1"
    assert d.label == "the module at <spec>:4:5 is already named `1`" and "`layer1`" in d.help
    (d,) = diags("    a: relu\n    a: relu")
    assert d.message == "duplicate label `a` in one scope"


def test_an_invalid_template_label_in_a_loop_is_reported_once():
    ds = diags('    for i in range(3) {\n        "a.{i}.": relu\n        "": relu\n    }')
    assert [(d.code, d.span.line, d.message) for d in ds] == [
        ("E0111", 4, 'invalid label "a.0."'), ("E0111", 5, 'invalid label ""')]
    assert ds[0].help.endswith('e.g. "a_0_"')


@pytest.mark.parametrize("expr, params, help", [
    ("conv2d(width * 1.5, 3)", "width = 32",
     "`width * 1.5` is 48.0, a float: write `int(width * 1.5)` (48) or `make_divisible(width * 1.5, 8)` (48)"),
    ("linear(100 / 3)", "",
     "`100 / 3` is 33.333333333333336, a float: write `int(100 / 3)` (33) or `make_divisible(100 / 3, 8)` (32)"),
    ("conv2d(16, k / 2)", "k = 6",
     "`k / 2` is 3.0, a float: write `int(k / 2)` (3) or `ceil(k / 2)` (3)"),
    ("relu * (d * 1.5)", "d = 3", "`d * 1.5` is 4.5, a float: write `int(d * 1.5)` (4) or `ceil(d * 1.5)` (5)"),
    ('conv2d(16, 3, stride = "2")', "", "remove the quotes: the default is `stride = 1`"),
    ("for i in n { relu }", "n = 3", "write a list, e.g. `range(n)` for [0, 1, 2]"),
])
def test_a_value_of_the_wrong_type_says_how_to_make_the_right_one(expr, params, help):
    d = diags("    " + expr, params)[0]
    assert d.code == "E0206" and d.help == help


@pytest.mark.parametrize("cond, params, help", [
    ("p", "p = 0.5", "compare it explicitly: `p > 0` or `p != 0`"),
    ("p * 2", "p = 0.5", "compare it explicitly: `(p * 2) > 0` or `(p * 2) != 0`"),
    ("xs", "xs = [1]", "compare it explicitly: `len(xs) > 0`"),
    ("x", "x = none", "compare it explicitly: `x != none`"),
])
def test_a_condition_that_is_not_a_bool_gets_the_comparison_written_out(cond, params, help):
    d = diags(f"    if {cond} {{ relu }}", params)[0]
    assert d.code == "E0214" and d.help == help


def test_an_unknown_layer_used_as_a_value_suggests_the_nearest_layers_and_blocks():
    spec = """block act_block(act = relu) { act }
block hard_tanh_block() { tanh }
network n() {
    input [16, 8, 8]
    act_block(act = hardshrink)
    act_block(act = hardtanh)
}
"""
    with pytest.raises(netdsl.NetdslError) as info:
        netdsl.compile(spec)
    first, second = info.value.diagnostics
    assert first.code == second.code == "E0101"
    assert first.help.startswith("no layer or block is called `hardshrink`; the nearest layers and "
                                 "blocks are `hardswish`")
    assert first.help.endswith(". Or define it with `let`, or as a parameter of the enclosing block or network")
    assert second.help.startswith("no layer or block is called `hardtanh`; the nearest layers and blocks "
                                  "are `hard_tanh_block`, `hardswish` and `hardsigmoid`.")
    # A near misspelling still gets one answer.
    assert diags("    relu * len(convv2d)")[0].help == "did you mean `conv2d`?"


def test_an_unknown_layer_as_a_statement_suggests_the_nearest_layers():
    assert diags("    hardshrink")[0].help == (
        "the nearest layers are `hardswish` and `hardsigmoid`; or define it with "
        "`block hardshrink(...) { ... }` or import a spec that does")


@pytest.mark.parametrize("body, params, help", [
    ("    conv2d(16, 3, stride = 0)", "", "give `stride` a value of 1 or more (1 keeps the size, 2 halves it)"),
    ("    dropout(1.5)", "", "`p` is a probability; torch's default is 0.5"),
    ("    batchnorm2d(eps = 0)", "", "`eps` keeps the division by the variance finite; torch's default is 1e-5"),
    ("    conv2d(16, 3, stride = 2, stride = 1)", "", "the first `stride` is at 3:19; keep one of them"),
    ("    relu * (4 // (g - 1))", "g = 1",
     "the divisor is 0 (g = 1); give values that make it non-zero, or guard it, e.g. `max(1, ...)`"),
    ("    relu * (4 % 0)", "", "the divisor is 0; give values that make it non-zero, or guard it, e.g. `max(1, ...)`"),
    ("    relu * len(range(0, 4, 0))", "", "a range steps up or down: give a step of 1 (or -1 to count down)"),
])
def test_range_repeat_and_division_errors_carry_a_help(body, params, help):
    assert diags(body, params)[0].help == help


def test_a_block_sees_the_layout_of_each_use():
    # Equal shapes, other layouts: `linear` maps a channels-last input, and refuses the
    # [C, H, W] map of the second use (the block-instance key includes the layout).
    src = """block mlp() { linear(8) }
network n() {
    input [8, 8, 8]
    permute([1, 2, 0])
    mlp
    permute([2, 0, 1])
    mlp
}"""
    with pytest.raises(netdsl.NetdslError) as info:
        netdsl.compile(src)
    assert [d.code for d in info.value.diagnostics] == ["E0306"]


def test_in_shape_is_the_block_inputs_whole_shape_at_every_input_size():
    spec = """
block whole_map_pool(c) {
    pool: avgpool2d(in_shape[1:])
    proj: conv2d(c, 1)
    up: upsample(size = in_shape[1:])
}
network n() {
    input [3, 12, 16]
    stem: conv2d(8, 3, padding = 1)
    head: whole_map_pool(4)
}
"""
    for size in ((12, 16), (20, 9)):
        net = netdsl.compile(spec, input=(3, *size))
        pool, _, up = net.body[1].body
        assert (pool.kernel_size, up.size, net.out_shape) == (size, size, (4, *size))
    flat = netdsl.compile("block b() { linear(in_shape[0] * 2) }\nnetwork n() { input [5]\n b() }")
    assert flat.out_shape == (10,)
    with pytest.raises(netdsl.NetdslError) as e:
        netdsl.compile("block b(in_shape) { relu }\nnetwork n() { input [3, 4, 4]\n b(1) }")
    assert [(d.code, d.span.line, d.span.column) for d in e.value.diagnostics] == [("E0109", 1, 9)]
