"""The combinators' checks: what an E0301 says to change depends on why the shapes differ."""

import pytest

import netdsl


def residual_help(body, shortcut="", input_shape="[16, 32, 32]"):
    spec = (f"network n() {{\n    input {input_shape}\n    residual {{\n{body}\n    }}"
            + (f" shortcut {{\n{shortcut}\n    }}" if shortcut else "") + "\n}\n")
    with pytest.raises(netdsl.NetdslError) as e:
        netdsl.compile(spec)
    d = e.value.diagnostics[0]
    assert d.code == "E0301"
    return d.help


def test_no_shortcut_and_other_channels_asks_for_a_projection():
    assert residual_help("        conv2d(64, 3, padding = 1)") == (
        "add a shortcut that projects 16 → 64 channels, e.g. `shortcut { conv2d(64, 1, bias = false) }`")


def test_a_projection_takes_the_stride_of_the_body():
    assert residual_help("        conv2d(32, 3, stride = 2, padding = 1)") == (
        "add a shortcut that projects 16 → 32 channels, "
        "e.g. `shortcut { conv2d(32, 1, stride = 2, bias = false) }`")
    assert residual_help("        conv2d(16, 3, stride = 2, padding = 1)\n        relu") == (
        "add a shortcut that downsamples 32×32 to 16×16 like the body, "
        "e.g. `shortcut { conv2d(16, 1, stride = 2, bias = false) }`")


def test_a_dropped_padding_names_the_layer_and_the_padding_not_a_stride():
    # The help used to say "add a shortcut with the same stride": every stride here is 1.
    body = "        conv2d(16, 3, padding = 1)\n        relu\n        conv2d(16, 3)"
    assert residual_help(body) == "`conv2d(16, 3)` at 6:9 turns 32×32 into 30×30; give it `padding = 1`"
    assert residual_help("        conv2d(16, 5)\n        conv2d(16, 3)") == (
        "`conv2d(16, 5)` at 4:9 turns 32×32 into 28×28; give it `padding = 2` "
        "(1 more layer after it shrinks the size too)")
    assert residual_help("        conv2d(16, [3, 5], dilation = 2)").endswith("give it `padding = [2, 4]`")
    assert residual_help("        conv2d(16, 4, padding = 1)").endswith(
        "an even kernel cannot keep the size at stride 1: use an odd one with padding")
    assert residual_help("        maxpool2d(3, stride = 1)") == (
        "`maxpool2d(3, stride = 1)` at 4:9 turns 32×32 into 30×30; give it `padding = 1`")


def test_a_dropped_padding_and_other_channels_say_both():
    assert residual_help("        conv2d(32, 3)") == (
        "`conv2d(32, 3)` at 4:9 turns 32×32 into 30×30; give it `padding = 1`; and add a shortcut "
        "that projects 16 → 32 channels, e.g. `shortcut { conv2d(32, 1, bias = false) }`")


def test_a_size_change_that_no_stride_explains_gets_no_made_up_stride():
    for body in ("        conv2d(16, 3, stride = 2)", "        adaptive_avgpool2d(1)"):
        help = residual_help(body)
        assert "stride =" not in help and help.startswith("the body turns 32×32 into ")


def test_a_shortcut_that_disagrees_says_which_side_to_change_with_the_numbers():
    assert residual_help("        conv2d(64, 3, padding = 1)", "        conv2d(32, 1)\n        batchnorm2d") == (
        "the shortcut's last layer `conv2d(32, 1)` at 6:9 gives 32 channels and the body 64: "
        "make it give 64 (or make the body end with 32)")
    assert residual_help("        conv2d(16, 3, stride = 2, padding = 1)", "        conv2d(16, 1)") == (
        "the body turns 32×32 into 16×16 (stride 2) and the shortcut keeps 32×32 (stride 1): "
        "give the shortcut stride 2 like the body")
    assert residual_help("        conv2d(16, 3, padding = 1)", "        conv2d(16, 3)") == (
        "`conv2d(16, 3)` at 6:9 turns 32×32 into 30×30; give it `padding = 1`")
    assert residual_help("        conv2d(64, 3, padding = 1)", "        maxpool2d(1)") == (
        "the shortcut keeps 16 channels and the body gives 64: end the shortcut with "
        "`conv2d(64, 1, bias = false)`")


BOTTLENECK = """block bottleneck(planes, stride = 1) {
    residual {
        conv2d(planes, 1)
        conv2d(planes, 3, stride = stride, padding = 1)
        conv2d(planes * EXPANSION, 1)
    } shortcut downsample if stride != 1 or in_channels != planes * 4 {
        conv2d(planes * 4, 1, stride = stride)
    }
}
"""


def test_a_shortcut_whose_condition_is_false_shows_the_condition_and_its_values():
    # It used to say "add a shortcut that projects ...": there is one, its `if` is false here.
    spec = BOTTLENECK.replace("EXPANSION", "2") + "network n() {\n    input [64, 32, 32]\n    bottleneck(16)\n}\n"
    with pytest.raises(netdsl.NetdslError) as e:
        netdsl.compile(spec)
    assert e.value.diagnostics[0].help == (
        "the shortcut `downsample` is skipped for this use: its condition "
        "`stride != 1 or in_channels != planes * 4` is false (stride = 1, in_channels = 64, planes = 16), "
        "so the input is added unchanged; the condition must hold whenever the body changes the shape "
        "(here the channels, 64 → 32)")


def test_a_layer_in_an_imported_block_is_located_with_its_file(tmp_path):
    (tmp_path / "lib.net").write_text("block b() {\n    conv2d(16, 3)\n}\n")
    (tmp_path / "n.net").write_text('import "lib.net"\nnetwork n() {\n    input [16, 8, 8]\n'
                                    "    residual {\n        b\n    }\n}\n")
    with pytest.raises(netdsl.NetdslError) as e:
        netdsl.compile(tmp_path / "n.net")
    help = e.value.diagnostics[0].help
    assert help.startswith("`conv2d(16, 3)` at ") and "lib.net:2:5 turns 8×8 into 6×6" in help


def test_sides_states_the_training_tuples_type_and_order_and_it_pickles():
    import pickle

    import torch

    text = ("network n() as Net { input [2, 4, 4]\n side a { apply flatten\n linear(3) }\n"
            " side b { apply flatten\n linear(4) }\n sides Out(b, logits, a)\n apply flatten\n"
            " linear(5) }")
    model = netdsl.build(text).train()
    x = torch.randn(2, 2, 4, 4)
    out = model(x)
    assert type(out).__name__ == "Out" and out._fields == ("b", "logits", "a")
    assert [t.shape[1] for t in out] == [4, 5, 3]
    twin = pickle.loads(pickle.dumps(model))
    assert type(twin(x)).__name__ == "Out" and twin(x)._fields == out._fields
    default = netdsl.build(text.replace(" sides Out(b, logits, a)\n", "")).train()(x)
    assert type(default).__name__ == "NetOutputs" and default._fields == ("logits", "a", "b")


@pytest.mark.parametrize("sides, where", [
    ("sides (logits, a, a)", (4, 20)), ("sides (logits)", (4, 2)), ("sides (logits, a, c)", (4, 20)),
    ("sides class(logits, a)", (4, 2))])
def test_sides_must_list_logits_and_every_side_once(sides, where):
    text = f"network n() {{ input [2, 4, 4]\n side a {{ apply flatten\n linear(3) }}\n {sides}\n relu }}"
    with pytest.raises(netdsl.NetdslError) as e:
        netdsl.compile(text)
    d = e.value.diagnostics[0]
    assert (d.code, d.span.line, d.span.column) == ("E0120", *where)


def test_a_side_name_may_be_a_template_and_must_be_a_field_name():
    import torch

    text = ('network n() { input [2, 4, 4]\n for i in range(2) { side "aux{i + 1}" { apply flatten\n'
            ' linear(3) } }\n sides (logits, aux2, aux1)\n apply flatten\n linear(5) }')
    assert netdsl.build(text).train()(torch.randn(2, 2, 4, 4))._fields == ("logits", "aux2", "aux1")
    with pytest.raises(netdsl.NetdslError) as e:
        netdsl.compile(text.replace("aux{i + 1}", "a-{i}"))
    d = e.value.diagnostics[0]
    assert (d.code, d.span.line, d.span.column) == ("E0113", 2, 27)
