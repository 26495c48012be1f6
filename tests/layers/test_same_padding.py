"""`conv2d(..., padding = "same")`: TensorFlow's padding at any stride, against timm's
`Conv2dSame` (the reference TensorFlow-ported weights are run with), at the size the
spec was checked at and at others, through build, export to Python and FX."""

import pytest
import torch

import netdsl
from netdsl.layers.conv import same_padding

timm_layers = pytest.importorskip("timm.layers")


def _spec(call: str, shape=(2, 9, 8)) -> str:
    return f"network n() {{\n    input {list(shape)}\n    c: {call}\n}}\n"


CASES = ["conv2d(4, 3, stride = 2, padding = \"same\")",
         "conv2d(4, 2, padding = \"same\")",
         "conv2d(4, 5, stride = 2, padding = \"same\", groups = 2, bias = false)",
         "conv2d(4, [3, 1], stride = [2, 1], padding = \"same\", dilation = [1, 2])",
         "conv2d(4, 3, stride = 3, padding = \"same\")"]


@pytest.mark.parametrize("call", CASES)
def test_same_padding_is_timms_conv2d_same_at_every_size(call):
    model = netdsl.build(_spec(call)).eval()
    conv = model.c
    ref = timm_layers.Conv2dSame(2, 4, conv.kernel_size, stride=conv.stride, dilation=conv.dilation,
                                 groups=conv.groups, bias=conv.bias is not None)
    ref.load_state_dict(conv.state_dict(), strict=True)
    for h, w in [(9, 8), (10, 11), (7, 7), (1, 2)]:
        x = torch.randn(2, 2, h, w)
        with torch.no_grad():
            got, want = model(x), ref(x)
        assert got.shape == want.shape == (2, 4, -(-h // conv.stride[0]), -(-w // conv.stride[1]))
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


def test_check_gives_ceil_of_the_input_over_the_stride():
    net = netdsl.compile(_spec("conv2d(4, 3, stride = 2, padding = \"same\")", (2, 9, 8)))
    assert net.out_shape == (4, 5, 4)


def test_a_symmetric_same_padding_is_a_plain_conv2d():
    # Stride 1 and an odd kernel: torch's own padding gives it at any size.
    model = netdsl.build(_spec("conv2d(4, 5, padding = \"same\", dilation = 2)"))
    assert type(model.c) is torch.nn.Conv2d and model.c.padding == (4, 4)


def test_same_padding_puts_the_odd_pixel_after():
    assert same_padding(224, 3, 2, 1) == (0, 1)   # TensorFlow: 111 + 112 positions read
    assert same_padding(225, 3, 2, 1) == (1, 1)
    assert same_padding(7, 4, 1, 1) == (1, 2)
    assert same_padding(8, 1, 2, 1) == (0, 0)


def test_the_exported_source_and_fx_keep_the_padding_dynamic(tmp_path):
    from netdsl.backend.codegen import generate

    spec = _spec("conv2d(4, 3, stride = 2, padding = \"same\")")
    model = netdsl.build(spec).eval()
    namespace: dict = {}
    exec(compile(generate(spec), "exported.py", "exec"), namespace)  # noqa: S102 - our own output
    exported = namespace["N"]().eval()
    exported.load_state_dict(model.state_dict(), strict=True)
    traced = torch.fx.symbolic_trace(model)
    x = torch.randn(1, 2, 10, 11)  # not the size the spec was checked at
    with torch.no_grad():
        want = model(x)
        torch.testing.assert_close(exported(x), want, rtol=0, atol=0)
        torch.testing.assert_close(traced(x), want, rtol=0, atol=0)


def test_a_layer_without_same_padding_says_which_has_it():
    with pytest.raises(netdsl.NetdslError) as e:
        netdsl.compile(_spec("maxpool2d(3, padding = \"same\")"))
    d = e.value.diagnostics[0]
    assert d.code == "E0206" and "`conv2d`" in d.help and "remove the quotes" not in d.help
