"""Initialisation: a freshly built spec model starts from the distributions a
fresh torchvision model starts from (each parameter's mean and std agree
within sampling error), as the spec's `init` statements declare, and
`resnet(zero_init_residual = true)` starts the last norm of every residual body at zero."""

import contextlib
import math
import os
import signal
import warnings
from pathlib import Path

import pytest
import torch
import torchvision
from slow_cases import slow_except
from torch import nn

import netdsl

SPECS = Path(__file__).resolve().parents[2] / "specs"

# Every spec that has a torchvision counterpart, with the constructor docs/specs.md names.
REFERENCES = {
    "alexnet": torchvision.models.alexnet,
    "vgg16": torchvision.models.vgg16,
    "resnet34": torchvision.models.resnet34,
    "resnet50": torchvision.models.resnet50,
    "efficientnet_b0": torchvision.models.efficientnet_b0,
    "inception_v3": lambda: torchvision.models.inception_v3(aux_logits=True, init_weights=True),
    "densenet121": torchvision.models.densenet121,
    "mobilenet_v2": torchvision.models.mobilenet_v2,
    "squeezenet1_0": torchvision.models.squeezenet1_0,
    "squeezenet1_1": torchvision.models.squeezenet1_1,
    "mnasnet1_0": torchvision.models.mnasnet1_0,
    "mobilenet_v3_large": torchvision.models.mobilenet_v3_large,
    "mobilenet_v3_small": torchvision.models.mobilenet_v3_small,
    "convnext_tiny": torchvision.models.convnext_tiny,
}
SHIPPED = [name for name in REFERENCES if (SPECS / f"{name}.net").exists()]

# Standard errors a statistic may be off by. Seeds are fixed, so this only has to
# keep a correct spec passing; a wrong scheme is off by far more (see the self-test).
K = 6.0


def weight_mismatches(ours: nn.Module, ref: nn.Module) -> list[str]:
    """Names of the parameters of ``ours`` whose mean or std differs from ``ref``'s
    by more than two independent draws from one distribution would.

    A constant parameter of ``ref`` (ones, zeros) must be equal exactly. Otherwise,
    with n values of std s, two sample means differ by about s * sqrt(2 / n) and two
    sample stds by about s / sqrt(n) (normal data; less for uniform data).

    >>> _ = torch.manual_seed(0); a, b = nn.Linear(64, 64), nn.Linear(64, 64)
    >>> weight_mismatches(a, b)
    []
    """
    theirs = dict(ref.named_parameters())
    bad = []
    for name, p in ours.named_parameters():
        p, q = p.detach(), theirs[name].detach()
        if q.min() == q.max():
            if not torch.equal(p, q):
                bad.append(name)
            continue
        n, s = q.numel(), q.std().item()
        mean_off = abs(p.mean().item() - q.mean().item()) > K * s * math.sqrt(2 / n)
        std_off = abs(p.std().item() - s) > K * s / math.sqrt(n)
        if mean_off or std_off:
            bad.append(name)
    return bad


def test_the_four_core_specs_are_compared():
    # The list below is found on disk; it must not shrink by a file going missing.
    assert {"vgg16", "resnet34", "resnet50", "efficientnet_b0"} <= set(SHIPPED)


@pytest.mark.parametrize("name", slow_except(SHIPPED, fast=("efficientnet_b0", "mobilenet_v2", "mobilenet_v3_large",
                                                        "mobilenet_v3_small", "squeezenet1_0", "squeezenet1_1")))
def test_fresh_weights_have_torchvision_statistics(name):
    torch.manual_seed(0)
    ours = netdsl.build(str(SPECS / f"{name}.net"))
    torch.manual_seed(1)
    ref = REFERENCES[name]()
    assert [k for k, _ in ours.named_parameters()] == [k for k, _ in ref.named_parameters()]
    assert weight_mismatches(ours, ref) == []
    del ours, ref


@pytest.mark.slow
def test_the_comparison_catches_a_wrong_scheme():
    torch.manual_seed(0)
    a = torchvision.models.resnet18()
    torch.manual_seed(1)
    b = torchvision.models.resnet18()
    assert weight_mismatches(a, b) == []
    with torch.no_grad():
        # fan_in instead of fan_out: std off by sqrt(2) where channels double
        nn.init.kaiming_normal_(b.layer2[0].conv1.weight, mode="fan_in", nonlinearity="relu")
        b.layer3[0].bn1.weight.zero_()  # a constant that is not torchvision's
        b.fc.bias.add_(0.02)  # a shifted mean
    assert weight_mismatches(b, a) == ["layer2.0.conv1.weight", "layer3.0.bn1.weight", "fc.bias"]


def _weights(model, suffix):
    return [v for k, v in model.state_dict().items() if k.endswith(suffix)]


def test_zero_init_residual_zeroes_every_bn3():
    path = str(SPECS / "resnet.net")
    torch.manual_seed(0)
    on = netdsl.build(path, zero_init_residual=True, depth=50)
    off = netdsl.build(path, depth=50)
    for model, value in ((on, 0.0), (off, 1.0)):
        bn3 = _weights(model, ".bn3.weight")
        assert len(bn3) == 3 + 4 + 6 + 3
        assert all(torch.all(w == value) for w in bn3)
    # Like torchvision: only a bottleneck's last norm, and only its weight.
    assert all(torch.all(w == 1) for w in _weights(on, ".bn2.weight") + _weights(on, ".bn1.weight"))
    assert all(torch.all(b == 0) for b in _weights(on, ".bn3.bias"))


def test_zero_init_residual_zeroes_bn2_of_basic_blocks():
    on = netdsl.build(str(SPECS / "resnet.net"), zero_init_residual=True, depth=34)
    bn2 = _weights(on, ".bn2.weight")
    assert len(bn2) == 3 + 4 + 6 + 3
    assert all(torch.all(w == 0) for w in bn2)
    assert all(torch.all(w == 1) for w in _weights(on, ".bn1.weight"))


# ---------------------------------------------------------------- scheme arguments (E0204)

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from netdsl.backend.lower import lower  # noqa: E402
from netdsl.check.evaluate import _SCHEME_ARGS, F32_MAX  # noqa: E402

EDGES = [0.0, -0.0, 1.0, -1.0, 0.5, 2.0, -2.0, 3.0, -3.0, 1e-300, -1e-300, 1e-45, 1e38, -1e38,
         F32_MAX, -F32_MAX, F32_MAX * (1 + 2 ** -40), F32_MAX / 2, F32_MAX / 4, F32_MAX / 3.4,
         F32_MAX / 3.5, 1.5e154, 1e300, -1e300, 5.0, 1e-8]
NUMBERS = st.one_of(st.sampled_from(EDGES), st.floats(allow_nan=False, allow_infinity=False),
                    st.floats(-10, 10), st.integers(-5, 5))
TARGETS = ["conv2d.weight", "conv2d.bias", "linear.weight", "linear.bias", "batchnorm2d.weight",
           "batchnorm2d.bias", "c.weight", "c.bias", "bn.weight", "fc.bias"]


@st.composite
def schemes(draw):
    fn = draw(st.sampled_from(sorted(_SCHEME_ARGS)))
    args = {}
    for name, default, check in _SCHEME_ARGS[fn]:
        if default is None or draw(st.booleans()):
            args[name] = draw(NUMBERS) if check == "num" else draw(st.sampled_from(check))
    return fn, args


@contextlib.contextmanager
def deadline(seconds):
    """Fail instead of hanging: torch's trunc_normal_ loops until every draw is kept."""
    def expire(*_):
        raise TimeoutError(f"still initialising after {seconds} s")
    old = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _init_spec(target, fn, args):
    """A small network whose `init` takes ``args``; numbers come in as network
    parameters (set from Python, so any float reaches the checker exactly)."""
    numbers = {f"p_{k}": v for k, v in args.items() if not isinstance(v, str)}
    call = ", ".join(f'{k} = "{v}"' if isinstance(v, str) else f"{k} = p_{k}" for k, v in args.items())
    params = ", ".join(f"{k} = 0.0" for k in numbers)
    return (f"network n({params}) {{\n input [3, 5, 5]\n init {target} = {fn}({call})\n"
            " c: conv2d(4, 3)\n bn: batchnorm2d\n flatten\n fc: linear(2)\n}"), numbers


# NETDSL_EXAMPLES=N runs more examples (by hand: 20,000 with --hypothesis-seed=1..3).
@pytest.mark.slow
@settings(max_examples=int(os.environ.get("NETDSL_EXAMPLES", 300)), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(target=st.sampled_from(TARGETS), scheme=schemes())
def test_init_arguments_check_refuses_exactly_what_torch_would(target, scheme):
    """Differential: either check refuses the scheme, or torch initialises with it."""
    spec, numbers = _init_spec(target, *scheme)
    try:
        net = netdsl.compile(spec, **numbers)
    except netdsl.NetdslError as e:
        assert {d.code for d in e.diagnostics} <= {"E0204"}, str(e)
        return
    with warnings.catch_warnings(), deadline(20):
        warnings.simplefilter("ignore")  # trunc_normal_ warns when the mean is far from [a, b]
        model = lower(net)
    assert model(torch.zeros(2, 3, 5, 5)).shape == (2, 2)


@pytest.mark.parametrize("init, accepted", [
    ("conv2d.weight = uniform(5, 1)", False), ("conv2d.weight = uniform(1, 1)", True),
    ("conv2d.weight = trunc_normal(a = 3, b = -3)", False),
    ("conv2d.weight = trunc_normal(std = 0)", False), ("conv2d.weight = normal(std = 0)", True),
    ("conv2d.weight = normal(0, -0.5)", False), ("conv2d.weight = xavier_normal(-1)", False),
    ("conv2d.weight = xavier_uniform(1e38)", False), ("conv2d.weight = constant(1e39)", False),
    ("conv2d.weight = uniform(-3e38, 3e38)", False), ("conv2d.weight = kaiming_normal(a = -1)", True),
    ("conv2d.weight = kaiming_uniform(a = 1e300)", False), ("conv2d.bias = kaiming_normal", False),
    ("batchnorm2d.weight = xavier_uniform", False), ("c.bias = kaiming_uniform", False),
    ("bn.weight = kaiming_normal(mode = \"fan_out\")", False), ("c.weight = xavier_normal(0)", True),
    # torch 2.x draws uniformly on [a, b] and rejects by density when [a, b] is in a tail:
    ("conv2d.weight = trunc_normal(0, 1, 100, 1000000)", False),  # would loop for ever
    ("conv2d.weight = trunc_normal(0, 1, 2, 1000000)", False),
    ("conv2d.weight = trunc_normal(0, 1, 2, 4)", True), ("conv2d.weight = trunc_normal(0, 1, 3, 3)", True),
    ("conv2d.weight = trunc_normal(1000000.03, 0.0001, 1000000.04, 1000000.04)", False),  # float32
    ("conv2d.weight = trunc_normal(1e38, 1e-150)", False),  # torch: OverflowError
    ("conv2d.weight = trunc_normal(std = 0.02)", True), ("conv2d.weight = trunc_normal(5, 1, 4.9, 5.1)", True),
])
def test_init_regressions(init, accepted):
    spec = (f"network n() {{\n input [3, 5, 5]\n init {init}\n c: conv2d(4, 3)\n bn: batchnorm2d\n}}")
    if accepted:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # trunc_normal_: mean more than 2 std from [a, b]
            netdsl.build(spec)
        return
    with pytest.raises(netdsl.NetdslError) as e:
        netdsl.compile(spec)
    (d,) = e.value.diagnostics
    line = spec.splitlines()[2]
    assert d.code == "E0204" and d.span.line == 3 and d.span.column > line.index("=") + 1
