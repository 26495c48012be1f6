"""netdsl.testing.assert_equivalent and the checks of netdsl.analysis.compare, on real models:
each report path (a wrong padding named at the first module it changes, a renamed
label beside its nearest match, an extra layer, a wrong shape, training-only and
gradient-only differences, outputs that are named tuples and dicts), and
properties: a perturbed parameter is found at the module that owns it, and
tensor_diff agrees with torch.testing.assert_close."""

import collections
import re
from pathlib import Path

import pytest
import torch
import torchvision
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import netdsl
from netdsl.analysis.compare import compare, flatten_output, module_spans, tensor_diff
from netdsl.testing import assert_equivalent, check_equivalent, randomise_norms

ROOT = Path(__file__).resolve().parents[2]
RESNET = (ROOT / "specs" / "resnet.net").read_text()
SMALL = (3, 32, 32)


def _variant(tmp_path, old: str, new: str) -> tuple[str, str]:
    """specs/resnet.net with one edit, written to tmp_path: (path, text)."""
    assert RESNET.count(old) == 1, old
    text = RESNET.replace(old, new)
    path = tmp_path / "resnet.net"
    path.write_text(text)
    return str(path), text


def _where(path: str, text: str, line_text: str, word: str) -> str:
    """path:line:col of ``word`` on the first line containing ``line_text``."""
    for i, line in enumerate(text.splitlines(), 1):
        if line_text in line:
            return f"{path}:{i}:{line.index(word) + 1}"
    raise AssertionError(line_text)


@pytest.fixture(scope="module")
def resnet18():
    torch.manual_seed(0)
    return randomise_norms(torchvision.models.resnet18(), 1)


@pytest.mark.slow
def test_an_equivalent_spec_passes_every_check(resnet18):
    before = {k: v.clone() for k, v in resnet18.state_dict().items()}
    resnet18.eval()
    report = assert_equivalent(str(ROOT / "specs" / "resnet.net"), resnet18, input=SMALL, depth=18)
    # The reference is left as it was: its mode, running statistics and gradients.
    assert not resnet18.training
    assert all(torch.equal(before[k], v) for k, v in resnet18.state_dict().items())
    assert all(p.grad is None for p in resnet18.parameters())
    assert [(c.title, c.ok) for c in report.checks] == [
        ("state_dict keys", True), ("parameters", True), ("eval outputs", True),
        ("training outputs", True), ("gradients", True)]
    assert report.check("eval outputs").max_abs <= 1e-5
    assert report.check("eval outputs").max_rel <= 1e-4
    assert report.first_difference is None
    assert "equivalent" in report.render() and "NOT" not in report.render()


@pytest.mark.slow
def test_a_changed_padding_is_found_at_the_conv_it_changes(tmp_path, resnet18):
    # Dilation 2 with padding 2 keeps every shape: only the values of conv2 change.
    old = "        conv2: conv2d(planes, 3, padding = 1, bias = false)"
    path, text = _variant(tmp_path, old, old.replace("padding = 1", "padding = 2, dilation = 2"))
    with pytest.raises(AssertionError) as info:
        assert_equivalent(path, resnet18, input=SMALL, depth=18, train=False, gradients=False)
    message = str(info.value)
    where = _where(path, text, "conv2: conv2d(planes, 3, padding = 2", "conv2d")
    assert f"first difference at layer1.0.conv2 ({where}): max abs diff" in message
    assert "FAIL  eval outputs" in message and "NOT equivalent" in message


@pytest.mark.slow
def test_a_changed_stem_padding_is_a_shape_difference_at_conv1(tmp_path, resnet18):
    path, text = _variant(tmp_path, "conv1: conv2d(64, 7, stride = 2, padding = 3",
                          "conv1: conv2d(64, 7, stride = 2, padding = 2")
    report = check_equivalent(path, resnet18, input=SMALL, depth=18, train=False, gradients=False)
    diff = report.first_difference
    assert (diff.module, diff.where, diff.mode) == ("conv1", _where(path, text, "conv1: conv2d(64, 7", "conv2d"),
                                                    "eval")
    assert "shape [2, 64, 15, 15] vs the reference's [2, 64, 16, 16]" in diff.detail


def test_a_renamed_label_is_listed_beside_its_nearest_match(tmp_path, resnet18):
    old = "        bn2: batchnorm2d\n    } shortcut downsample if stride != 1 or in_channels != planes {"
    path, text = _variant(tmp_path, old, old.replace("bn2:", "bn_2:"))
    with pytest.raises(AssertionError) as info:
        assert_equivalent(path, resnet18, input=SMALL, depth=18)
    lines = str(info.value).splitlines()
    assert "FAIL  state_dict keys  40 missing, 40 unexpected" in lines[1]
    where = _where(path, text, "bn_2: batchnorm2d", "batchnorm2d")
    row = next(line for line in lines if "layer2.1.bn_2." in line)
    # the spec's keys, the reference's nearest module, the spec line, side by side
    assert row.split() == ["layer2.1.bn_2.{weight,", "bias,", "running_mean,", "running_var,",
                           "num_batches_tracked}", "layer2.1.bn2", where]
    assert len(lines) == 3 + 8  # header lines, then one row per renamed module; nothing else ran


def test_an_extra_layer_has_no_counterpart(tmp_path, resnet18):
    path, text = _variant(tmp_path, "    avgpool: adaptive_avgpool2d(1)",
                          "    extra: conv2d(512, 1)\n    avgpool: adaptive_avgpool2d(1)")
    report = check_equivalent(path, resnet18, input=SMALL, depth=18)
    assert not report.ok and [c.title for c in report.checks] == ["state_dict keys"]
    assert report.checks[0].summary == "2 missing"
    assert report.checks[0].details[1].split() == ["extra.{weight,", "bias}", "—",
                                                   _where(path, text, "extra: conv2d", "conv2d")]


def test_a_layer_the_spec_lacks_is_unexpected_and_shapes_shift():
    ref = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 8), nn.Linear(8, 2))
    report = check_equivalent("network n() { input [4]\n linear(8)\n linear(2) }", ref)
    keys = report.checks[0]
    assert keys.summary == "2 unexpected, 2 of another shape"
    rows = [r.split() for r in keys.details]
    assert rows[1] == ["—", "2.{weight,", "bias}"]
    assert rows[3][:5] == ["1.weight", "[2,", "8]", "[8,", "8]"] and rows[3][-1] == "<spec>:3:2"


def test_shapes_of_same_named_keys_are_compared(resnet18):
    report = check_equivalent(str(ROOT / "specs" / "resnet.net"), resnet18, input=SMALL, depth=18,
                              num_classes=10)
    keys = report.checks[0]
    assert keys.summary == "2 of another shape"
    rows = {r.split()[0]: r.split()[1:] for r in keys.details[1:]}
    assert rows["fc.weight"][:4] == ["[10,", "512]", "[1000,", "512]"]
    assert rows["fc.bias"][:2] == ["[10]", "[1000]"]
    assert re.fullmatch(r".*resnet\.net:\d+:\d+", rows["fc.weight"][-1])


class _TwoDropouts(nn.Module):
    """The spec below, but it draws one random number before its first dropout."""

    def __init__(self, draw_first: bool):
        super().__init__()
        self.a, self.d1, self.b, self.d2 = nn.Linear(6, 6), nn.Dropout(0.5), nn.Linear(6, 6), nn.Dropout(0.5)
        self.draw_first = draw_first

    def forward(self, x):
        if self.training and self.draw_first:
            torch.rand(1)
        return self.d2(self.b(self.d1(self.a(x))))


TWO_DROPOUTS = "network n() { input [6]\n a: linear(6)\n d1: dropout\n b: linear(6)\n d2: dropout }"


def test_training_mode_draws_the_same_dropout_masks_from_one_seed():
    assert assert_equivalent(TWO_DROPOUTS, _TwoDropouts(draw_first=False), batch=8).ok


def test_dropout_masks_differ_when_random_draws_come_in_another_order():
    report = check_equivalent(TWO_DROPOUTS, _TwoDropouts(draw_first=True), batch=8)
    assert report.check("eval outputs").ok and not report.check("training outputs").ok
    diff = report.first_difference
    assert (diff.mode, diff.module, diff.where) == ("train", "d1", "<spec>:3:6")
    assert "draws random numbers" in diff.hint and "another order" in diff.hint


class _Detached(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 2)

    def forward(self, x):
        return self.b(self.a(x).detach())


def test_a_gradient_only_difference_names_the_parameters():
    report = check_equivalent("network n() { input [4]\n a: linear(4)\n b: linear(2) }", _Detached())
    assert [c.ok for c in report.checks] == [True, True, True, True, False]
    grads = report.check("gradients")
    assert grads.summary.startswith("2 of 4 parameters differ (first in parameter order: a.weight)")
    assert grads.details[1].split()[:6] == ["a.weight", "no", "gradient", "in", "the", "reference"]
    assert grads.details[1].split()[-1] == "<spec>:2:5"


SIDES = ("network n() { input [3, 8, 8]\n c: conv2d(4, 3)\n side aux { h: { flatten\n linear(5) } }\n"
         " relu\n flatten\n fc: linear(2) }")


class _Sides(nn.Module):
    def __init__(self, fields=("logits", "aux"), as_dict=False):
        super().__init__()
        self.c, self.fc = nn.Conv2d(3, 4, 3), nn.Linear(144, 2)
        self.h = nn.Sequential(nn.Flatten(), nn.Linear(144, 5))
        self.out = collections.namedtuple("Out", fields)
        self.as_dict = as_dict

    def forward(self, x):
        x = self.c(x)
        main = self.fc(torch.relu(x).flatten(1))
        if not self.training:
            return main
        if self.as_dict:
            return {"logits": main, "aux": self.h(x)}
        return self.out(main, self.h(x))


@pytest.mark.slow
def test_named_tuple_outputs_are_compared_field_by_field():
    assert assert_equivalent(SIDES, _Sides()).ok
    report = check_equivalent(SIDES, _Sides(fields=("logits", "aux_logits")))
    train = report.check("training outputs")
    assert not train.ok and "differ in structure" in train.summary
    assert "NOutputs(logits, aux)" in train.summary and "Out(logits, aux_logits)" in train.summary


def test_a_dict_output_is_compared_by_position():
    out = {"logits": torch.ones(1), "aux": torch.zeros(2)}
    assert [k for k, _ in flatten_output(out)] == ["output[logits]", "output[aux]"]
    report = check_equivalent(SIDES, _Sides(as_dict=True))
    assert report.check("training outputs").ok


def test_module_spans_cover_every_module_of_the_built_model():
    from netdsl.backend.lower import lower

    for name in ("inception_v3", "densenet121", "efficientnet_b0"):  # side, dense, gate, residual
        net = netdsl.compile(str(ROOT / "specs" / f"{name}.net"))
        spans = module_spans(net)
        assert set(spans) == {n for n, _ in lower(net, device="meta").named_modules() if n}, name


@pytest.fixture(scope="module")
def pair18():
    """A resnet18 spec carrying torchvision's weights (eval mode), and torchvision's."""
    torch.manual_seed(3)
    ref = randomise_norms(torchvision.models.resnet18(), 4).eval()
    net = netdsl.compile(str(ROOT / "specs" / "resnet.net"), depth=18, input=SMALL)
    from netdsl.backend.lower import lower

    ours = lower(net, device="cpu")
    ours.load_state_dict(ref.state_dict())
    return ours, ref, module_spans(net)


@pytest.mark.slow
@settings(max_examples=6, deadline=None)
@given(data=st.data())
def test_a_perturbed_parameter_is_found_at_the_module_that_owns_it(pair18, data):
    ours, ref, spans = pair18
    names = [k for k, _ in ours.named_parameters()]
    name = data.draw(st.sampled_from(names))
    p = ours.get_parameter(name)
    x = torch.randn(2, *SMALL, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        p.add_(0.5)
    try:
        report = compare(ours, ref, x, spans=spans, load=False, train=False, gradients=False)
    finally:
        with torch.no_grad():
            p.sub_(0.5)
    owner = name.rpartition(".")[0]
    assert not report.ok
    # Every module that ran before the owner computed the same thing, so the owner is first.
    assert report.first_difference.module == owner
    assert report.first_difference.where == spans[owner].where()


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(a=st.lists(st.floats(-1e3, 1e3, allow_nan=False, width=32) | st.just(float("nan"))
                  | st.just(float("inf")), min_size=1, max_size=6),
       noise=st.lists(st.sampled_from([0.0, 1e-7, -1e-6, 1e-5, -2e-5, 1e-4, 1e-3]), min_size=6, max_size=6),
       atol=st.sampled_from([0.0, 1e-6, 1e-5, 1e-3]), rtol=st.sampled_from([0.0, 1e-5, 1e-4, 1e-2]))
def test_tensor_diff_agrees_with_assert_close(a, noise, atol, rtol):
    b = torch.tensor(a, dtype=torch.float32)
    ours = b + torch.tensor(noise[:len(a)], dtype=torch.float32)
    try:
        torch.testing.assert_close(ours, b, atol=atol, rtol=rtol)
        expected = True
    except AssertionError:
        expected = False
    assert tensor_diff(ours, b, atol, rtol).ok == expected


def test_a_reference_output_near_zero_is_flagged():
    ref = nn.Sequential(nn.Linear(4, 2))
    with torch.no_grad():
        ref[0].weight.mul_(1e-9)
        ref[0].bias.zero_()
    report = check_equivalent("network n() { input [4]\n linear(2) }", ref, train=False, gradients=False)
    assert report.ok and "proves little" in report.check("eval outputs").details[0]


def test_gradients_are_compared_at_the_scale_of_the_tensor_outputs_element_by_element():
    import torch

    from netdsl.analysis.compare import tensor_diff

    # A gradient with one large element and a tiny one that summation order moved by
    # three times its own size: within 1e-4 of the tensor's scale.
    ours, ref = torch.tensor([50.0, 2e-6, -30.0]), torch.tensor([50.0, 6e-6, -30.0])
    assert not tensor_diff(ours, ref, atol=1e-7, rtol=1e-4).ok
    assert tensor_diff(ours, ref, atol=1e-7, rtol=1e-4, scaled=True).ok
    # A difference at the tensor's own scale is still one.
    wrong = torch.tensor([50.0, 2e-6, -30.1])
    assert not tensor_diff(wrong, ref, atol=1e-7, rtol=1e-4, scaled=True).ok
    # NaN equals nothing, scaled or not.
    assert not tensor_diff(torch.tensor([float("nan"), 1.0]), torch.tensor([0.0, 1.0]), scaled=True).ok
