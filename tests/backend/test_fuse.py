"""The inference mode (batch norms and activations folded into convolutions, channels_last,
oneDNN kernels): the same eval-mode function on both of its paths, and no training."""

import copy
import pickle
import random
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from shipped import grant_for
from slow_cases import slow_except
from torch import nn

import netdsl
from netdsl.backend.fuse import _POST, STEPS, FusedConv2d, FusedModelTrainingError, fuse
from netdsl.diagnostics import NetdslError

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import fuzz_specs  # noqa: E402

SPECS = Path(__file__).resolve().parents[2] / "specs"

# Every shipped network, at a small input it accepts (the function is the same at any size).
SHIPPED = {"lenet5": None, "alexnet": (3, 64, 64), "vgg16": (3, 32, 32), "resnet34": (3, 64, 64),
           "resnet50": (3, 64, 64), "inception_v3": None, "densenet121": (3, 64, 64),
           "efficientnet_b0": (3, 64, 64), "efficientnet_b1": (3, 64, 64),
           "resnet": (3, 32, 32), "vgg": (3, 32, 32), "densenet": (3, 32, 32), "efficientnet": (3, 32, 32),
           "unet_paper": (1, 188, 188),
           # reuse, apply, dataflow containers, split, several outputs, bare parameters
           **{name: (3, 64, 64) for name in (
               "convnext", "convnext_tiny", "googlenet", "lraspp_mobilenet_v3_large", "mnasnet", "mnasnet1_0",
               "mobilenet_v2", "mobilenet_v3", "mobilenet_v3_large", "mobilenet_v3_small", "regnet", "regnet_x_400mf",
               "regnet_y_400mf", "resnet50_fpn", "resnext50_32x4d", "shufflenet_v2",
               "shufflenet_v2_x0_5", "shufflenet_v2_x1_0", "shufflenet_v2_x1_5", "shufflenet_v2_x2_0",
               "squeezenet", "squeezenet1_0", "squeezenet1_1", "unet", "vgg16_bn", "wide_resnet50_2")},
           # timm's: a 1-D convolution across channels (ECA), average-pooled shortcuts, and a
           # softmax over stacked paths (selective kernels)
           "resnet_d": (3, 32, 32), "resnet50d": (3, 32, 32), "ecaresnet101d": (3, 32, 32),
           "sknet": (3, 32, 32), "skresnet18": (3, 32, 32), "resnest": (3, 32, 32),
           "resnest26d": (3, 32, 32), "tf_efficientnet": (3, 33, 33), "tf_efficientnet_b3": (3, 33, 33),
           "res2net": (3, 32, 32), "res2net50_14w_8s": (3, 32, 32), "nf_resnet": (3, 32, 32),
           "nf_resnet26": (3, 32, 32), "inception_resnet": (3, 75, 75), "inception_resnet_v2": (3, 75, 75),
           "cs3darknet": (3, 32, 32), "cs3darknet_m": (3, 32, 32), "dpn": (3, 32, 32), "dpn92": (3, 32, 32),
           "ghostnet": (3, 64, 64), "ghostnetv2_100": (3, 64, 64),
           # blocks of several tensors (DLA's trees and bottlenecks, HRNet's modules)
           "dla": (3, 32, 32), "dla60": (3, 32, 32), "hrnet": (3, 32, 32), "hrnet_w18": (3, 32, 32),
           # an extern (timm's BlurPool2d) after folded convolutions, leaky ReLU
           "tresnet": (3, 64, 64), "tresnet_m": (3, 64, 64)}
# The libraries' own networks, where a setting makes them fold something else.
# The libraries' networks at their other settings (vgg with batch norm), or smaller ones:
# their defaults are the aliases' networks, tested already.
SETTINGS = {"vgg": {"batch_norm": True, "depth": 11}, "resnet": {"depth": 18},
            "densenet": {"growth_rate": 8, "num_init_features": 16, "block_config": [2, 2, 2, 2]}}


def _randomise_statistics(model: nn.Module, seed: int = 0) -> None:
    """Batch-norm statistics and affine parameters away from their identity defaults,
    so that folding them is not trivially right."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                if m.running_mean is not None:  # track_running_stats=False keeps none
                    m.running_mean.copy_(torch.randn(n, generator=g) * 0.2)
                    m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                if m.affine:
                    m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                    m.bias.copy_(torch.randn(n, generator=g) * 0.2)


def _n_bn(model) -> int:
    return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def test_every_shipped_spec_is_listed():
    assert {p.stem for p in SPECS.glob("*.net")} == set(SHIPPED)


@pytest.mark.parametrize("name", slow_except(sorted(SHIPPED)))
def test_fused_outputs_match_unfused(name):
    torch.manual_seed(0)
    path = SPECS / f"{name}.net"
    model = netdsl.build(str(path), input=SHIPPED[name], grant=grant_for(path), **SETTINGS.get(name, {}))
    _randomise_statistics(model)
    model.eval()
    shape = SHIPPED[name] or model.input_shape
    x = torch.randn(1, *shape)
    with torch.no_grad():
        expected = model(x)
        before = _n_bn(model)
        fused = fuse(model)
        got = fused(x)  # the oneDNN kernels
    plain = fused(x)  # autograd on: torch's own convolution and activation
    if before:
        assert _n_bn(fused) < before  # something was folded
    # Every model with a plain convolution gets fused ones (a subclass, such as NF-ResNet's
    # weight-standardised convolution, is left as it is).
    assert any(isinstance(m, FusedConv2d) for m in fused.modules()) == \
        any(type(m) in (nn.Conv2d, FusedConv2d) for m in fused.modules())
    _assert_close(expected, got)
    _assert_close(expected, plain)


def _assert_close(expected, got):
    expected, got = _tensors(expected), _tensors(got)
    assert len(got) == len(expected)
    for e, g in zip(expected, got, strict=True):
        assert g.shape == e.shape
        # The layout handed back: torch's default wherever the unfused output had it (a
        # permute-based layer_norm2d's own output may be strided; the fused one never is).
        assert g.is_contiguous() or not e.is_contiguous()
        # A NaN is a value too: `div` of 0 by 0 gives one, fused or not.
        assert torch.equal(g.isnan(), e.isnan())
        g, e = g.nan_to_num(nan=0.0), e.nan_to_num(nan=0.0)
        assert (g - e).abs().max() <= 1e-4 * e.abs().max()


def _tensors(out) -> list:
    """A network's output as a list of tensors (a tuple, namedtuple or dict result too)."""
    if isinstance(out, dict):
        return list(out.values())
    return list(out) if isinstance(out, tuple) else [out]


def test_build_fuse_folds_every_conv_batchnorm_pair_of_resnet50():
    model = netdsl.build(str(SPECS / "resnet50.net"), input=(3, 32, 32), fuse=True)
    assert _n_bn(model) == 0
    assert all(m.bias is not None for m in model.modules() if isinstance(m, nn.Conv2d))
    assert isinstance(model.layer1[0].bn1, nn.Identity)  # the names stay where they were
    assert not model.training


def test_a_batch_norm_after_something_else_stays():
    # DenseNet's pre-activation norms follow a concatenation or a pooling, not a convolution.
    model = netdsl.build(str(SPECS / "densenet121.net"), input=(3, 32, 32), fuse=True)
    assert isinstance(model.features.denseblock1.denselayer1.norm1, nn.BatchNorm2d)
    assert isinstance(model.features.denseblock1.denselayer1.norm2, nn.Identity)


def test_fused_model_refuses_training():
    model = netdsl.build(str(SPECS / "lenet5.net"), fuse=True)
    x = torch.randn(1, *model.input_shape)
    with pytest.raises(FusedModelTrainingError, match="fuse=True.*eval-mode"):
        model.train()
    model.eval()  # allowed
    nn.Module.train(model, True)  # round the guard: the forward call still refuses
    with pytest.raises(FusedModelTrainingError, match="build it without fuse to train"):
        model(x)


def test_fused_model_pickles_and_still_refuses():
    model = netdsl.build(str(SPECS / "resnet.net"), input=(3, 32, 32), depth=18,
                         fuse=True)
    x = torch.randn(1, 3, 32, 32)
    back = pickle.loads(pickle.dumps(model))
    with torch.no_grad():
        assert torch.equal(back(x), model(x))
    with pytest.raises(FusedModelTrainingError):
        back.train()


# -- the oneDNN kernel against torch's, one convolution at a time

@settings(max_examples=40, deadline=None)
@given(cin=st.integers(1, 6), cout=st.integers(1, 6), kernel=st.tuples(st.integers(1, 3), st.integers(1, 3)),
       stride=st.tuples(st.integers(1, 2), st.integers(1, 2)), padding=st.tuples(st.integers(0, 2), st.integers(0, 2)),
       dilation=st.integers(1, 2), groups=st.sampled_from([1, 2, 3]), bias=st.booleans(),
       post=st.sampled_from([None, *sorted(_POST)]), channels_last=st.booleans(), batch=st.integers(1, 3),
       seed=st.integers(0, 2**16))
def test_the_onednn_kernel_and_its_post_op_are_torchs_conv_and_activation(
        cin, cout, kernel, stride, padding, dilation, groups, bias, post, channels_last, batch, seed):
    cin, cout = cin * groups, cout * groups
    g = torch.Generator().manual_seed(seed)
    conv = nn.Conv2d(cin, cout, kernel, stride, padding, dilation, groups, bias)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=g))
        if bias:
            conv.bias.copy_(torch.randn(cout, generator=g))
    size = (kernel[0] - 1) * dilation + 1 + 3, (kernel[1] - 1) * dilation + 1 + 4
    x = torch.randn(batch, cin, *size, generator=g)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    kwargs = {"negative_slope": 0.1} if post == "leaky_relu" else {}
    want = conv(x) if post is None else _POST[post](conv(x), **kwargs)
    conv.__class__, conv._post = FusedConv2d, None if post is None else (post, kwargs)
    with torch.no_grad():
        got = conv(x)
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-4 * want.abs().max().item())


def test_with_autograd_on_the_fused_model_gives_torchs_gradients():
    # The oneDNN kernel has no backward: where autograd records, torch's convolution runs.
    torch.manual_seed(0)
    model = netdsl.build(str(SPECS / "resnet.net"), input=(3, 32, 32), depth=18)
    _randomise_statistics(model)
    x = torch.randn(2, 3, 32, 32, requires_grad=True)
    model.eval()(x).square().sum().backward()
    want = x.grad.clone()
    x.grad = None
    fuse(model)(x).square().sum().backward()
    assert torch.allclose(x.grad, want, rtol=1e-4, atol=1e-4 * want.abs().max().item())


@pytest.mark.slow
def test_every_step_alone_keeps_the_function():
    torch.manual_seed(0)
    model = netdsl.build(str(SPECS / "mobilenet_v3_small.net"), input=(3, 64, 64))
    _randomise_statistics(model)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        want = model.eval()(x)
        for k in range(1, len(STEPS) + 1):
            _assert_close(want, fuse(copy.deepcopy(model), steps=STEPS[:k])(x))
    with pytest.raises(ValueError, match="prefix"):
        fuse(model, steps=("onednn",))


@pytest.mark.slow
def test_activations_after_a_convolution_are_folded_where_they_save_a_pass():
    model = netdsl.build(str(SPECS / "mobilenet_v3_small.net"), input=(3, 64, 64), fuse=True)
    posts = {m._post[0] for m in model.modules() if isinstance(m, FusedConv2d) and m._post}
    assert posts == {"relu", "hardswish", "hardsigmoid"}  # the last in the SE gate
    model = netdsl.build(str(SPECS / "resnet50.net"), input=(3, 32, 32), fuse=True)
    assert model.layer1[0].conv1._post == ("relu", {}) and model.layer1[0].conv3._post is None
    assert isinstance(model.layer1[0].relu, nn.ReLU)  # still called after the residual add
    # SiLU's exponential costs the same in the post-op: EfficientNet's stay steps.
    model = netdsl.build(str(SPECS / "efficientnet_b0.net"), input=(3, 32, 32), fuse=True)
    assert not any(getattr(m, "_post", None) for m in model.modules())


REUSED = """network n() {
    input [4, 8, 8]
    c: conv2d(4, 3, padding = 1, bias = false)
    b: batchnorm2d
    relu: relu
    maxpool2d(2)
    reuse b
    reuse relu
    d: conv2d(4, 1)
    reuse c
    flatten
    linear(3)
}"""


def test_a_reused_batch_norm_or_convolution_is_not_folded():
    # Regression: folding `b` into `c` and dropping it dropped its second use too, and
    # folding into a convolution called again elsewhere changed that call.
    torch.manual_seed(0)
    model = netdsl.build(REUSED)
    _randomise_statistics(model)
    x = torch.randn(2, 4, 8, 8)
    with torch.no_grad():
        want = model.eval()(x)
        fused = fuse(model)
        got = fused(x)
    assert isinstance(fused.b, nn.BatchNorm2d) and fused.c._post is None
    _assert_close(want, got)


def test_the_fused_model_holds_channels_last_weights_and_hands_back_the_default_layout():
    model = netdsl.build(str(SPECS / "unet.net"), input=(3, 64, 64), fuse=True)
    assert all(p.is_contiguous(memory_format=torch.channels_last)
               for p in model.parameters() if p.ndim == 4)
    with torch.no_grad():
        y = model(torch.randn(1, 3, 64, 64))
    assert y.ndim == 4 and y.is_contiguous()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10**6), strategy=st.sampled_from(["layers", "sharing", "dataflow", "tensor"]))
@example(seed=886001, strategy="layers")  # layer_norm2d alone: a strided output unfused
@example(seed=96, strategy="dataflow")  # a `div` of 0 by 0: NaN in both outputs
def test_generated_specs_fuse_to_the_same_function(seed, strategy):
    text = fuzz_specs.GENERATORS[strategy](random.Random(seed))
    try:
        model = netdsl.build(text, limits=netdsl.Limits(max_params=2_000_000))
    except NetdslError:
        return  # the generators aim at errors too; what check refuses has no model
    torch.manual_seed(seed)
    _randomise_statistics(model)
    xs = [torch.randn(2, *s) for s in (model.input_shapes or (model.input_shape,))]
    with torch.no_grad():
        want = model.eval()(*xs)
        got = fuse(model)(*xs)
    _assert_close(want, got)


@pytest.mark.slow
def test_a_fused_model_deepcopies_traces_compiles_and_exports():
    torch.manual_seed(0)
    model = netdsl.build(str(SPECS / "resnet.net"), input=(3, 32, 32), depth=18, fuse=True)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        want = model(x)
        assert torch.equal(copy.deepcopy(model)(x), want)
        traced = torch.fx.symbolic_trace(model)
        assert not any("mkldnn" in str(n.target) for n in traced.graph.nodes)
        _assert_close(want, traced(x))
        compiled = torch.compile(model, backend="eager", fullgraph=True)
        _assert_close(want, compiled(x))
        exported = torch.export.export(model, (x,))
        assert not any("mkldnn" in str(n.target) for n in exported.graph.nodes)
        _assert_close(want, exported.module()(x))


def test_a_torch_without_the_onednn_kernel_keeps_its_own_convolutions(monkeypatch):
    # The kernel is a private op: where this torch lacks it, convolutions stay nn.Conv2d
    # and everything else is fused as before.
    from netdsl.backend import fuse as fuse_module

    monkeypatch.setattr(fuse_module, "_has_kernel", lambda: False)
    torch.manual_seed(0)
    model = netdsl.build(str(SPECS / "resnet.net"), input=(3, 32, 32), depth=18).eval()
    _randomise_statistics(model)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        want = model(x)
        fused = fuse(model)
        got = fused(x)
    assert not any(isinstance(m, FusedConv2d) for m in fused.modules())
    assert _n_bn(fused) == 0
    _assert_close(want, got)


def test_a_network_of_several_outputs_fuses_and_hands_each_back():
    # Regression: the entry/exit layout change wrapped `return a, b` as a call of two
    # arguments (found by the generated-spec property).
    spec = """network n() {
        input [3, 8, 8]
        a: conv2d(4, 3, padding = 1) -> a
        bn: batchnorm2d
        relu -> b
        output tuple(a, b)
    }"""
    torch.manual_seed(0)
    model = netdsl.build(spec).eval()
    _randomise_statistics(model)
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        want = model(x)
        got = fuse(model)(x)
    assert type(got) is tuple and len(got) == 2
    for w, g in zip(want, got, strict=True):
        _assert_close(w, g)
        assert g.is_contiguous()


@pytest.mark.parametrize("spec", ["ghostnet", "regnet_y_400mf"])
def test_a_class_that_forms_share_folds_as_each_form_s_own_would(spec):
    # GhostBottleneck's conv_dw and bn_dw are each called under `if self.NAME is not
    # None`: the fused instance runs its forward without those guards, so they fold.
    torch.manual_seed(0)
    model = netdsl.build(str(SPECS / f"{spec}.net")).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
        fused = fuse(model)
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
        torch.testing.assert_close(fused(x), expected, rtol=1e-4, atol=1e-4)
