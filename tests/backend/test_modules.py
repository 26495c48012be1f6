"""Runtime pieces of a built model: an input the spec does not accept raises
InputShapeError naming the network, the expected and the given shape."""

import pytest
import torch

import netdsl
from netdsl.backend.runtime import InputShapeError

CNN = "network small_cnn() {\n input [3, 16, 16]\n conv2d(8, 3)\n relu\n flatten\n linear(10)\n}"
MLP = "network mlp() {\n input [20]\n linear(5)\n}"


@pytest.fixture(scope="module")
def cnn():
    return netdsl.build(CNN).eval()


def test_a_fitting_input_runs(cnn):
    assert cnn(torch.zeros(2, 3, 16, 16)).shape == (2, 10)


@pytest.mark.parametrize("shape, says", [
    ((2, 4, 16, 16), "(batch first, 3 channels), got [2, 4, 16, 16]"),       # wrong channels
    ((2, 1, 16, 16), "(batch first, 3 channels), got [2, 1, 16, 16]"),
    ((3, 16, 16), "(batch first, 3 channels), got [3, 16, 16]"),             # no batch dimension
    ((2, 3, 16), "(batch first, 3 channels), got [2, 3, 16]"),               # rank 3
    ((2, 3, 16, 16, 1), "(batch first, 3 channels), got [2, 3, 16, 16, 1]"),  # rank 5
    ((2, 3, 20, 20), "got [2, 3, 20, 20]: its layers were sized for the spec's `input [3, 16, 16]`"),
])
def test_a_wrong_input_names_network_expected_and_given_shape(cnn, shape, says):
    with pytest.raises(InputShapeError) as e:
        cnn(torch.zeros(*shape))
    message = str(e.value)
    assert message.startswith("network `small_cnn` expects input [N, 3, 16, 16]")
    assert says in message
    if len(shape) == 4:
        # The torch error that revealed it stays attached for whoever wants the detail.
        assert isinstance(e.value.__cause__, (RuntimeError, TypeError))


CONV_ONLY = "network convs() {\n input [3, 16, 16]\n c1: conv2d(8, 3)\n c2: conv2d(8, 3)\n}"


@pytest.mark.parametrize("spec, name", [(CNN, "small_cnn"), (CONV_ONLY, "convs")])
def test_an_unbatched_input_is_refused_before_any_layer_runs(spec, name):
    # Convolutions alone would take [3, 16, 16] as a batch of 3 one-channel images
    # and fail only with torch's words, or not at all when the channels happen to fit.
    model = netdsl.build(spec)
    ran = []
    first = next(model.children())
    first.register_forward_pre_hook(lambda m, args: ran.append(m))
    with pytest.raises(InputShapeError) as e:
        model(torch.zeros(3, 16, 16))
    assert str(e.value) == (f"network `{name}` expects input [N, 3, 16, 16] (batch first, 3 channels), "
                            "got [3, 16, 16]: one sample without its batch dimension? pass x.unsqueeze(0)")
    assert ran == []
    model(torch.zeros(1, 3, 16, 16))
    assert ran == [first]


def test_a_conv_only_network_refuses_an_unbatched_input_whose_channels_fit():
    model = netdsl.build("network n() {\n input [1, 8, 8]\n conv2d(1, 3)\n}")
    with pytest.raises(InputShapeError, match=r"got \[1, 8, 8\]: one sample"):
        model(torch.zeros(1, 8, 8))


def test_the_model_still_traces_with_fx(cnn):
    graph = torch.fx.symbolic_trace(cnn)
    x = torch.randn(2, 3, 16, 16)
    assert torch.equal(graph(x), cnn(x))
    assert [n.op for n in graph.graph.nodes].count("call_module") == 4  # no trace of the check


@pytest.mark.slow
def test_the_model_still_compiles(cnn):
    x = torch.randn(2, 3, 16, 16)
    compiled = torch.compile(cnn, backend="eager", fullgraph=True)
    assert torch.equal(compiled(x), cnn(x))
    with pytest.raises(InputShapeError, match="batch first"):
        torch.compile(cnn, backend="eager")(torch.zeros(3, 16, 16))


def test_input_shape_error_is_a_value_error(cnn):
    with pytest.raises(ValueError):
        cnn(torch.zeros(1, 5, 16, 16))


def test_not_a_tensor(cnn):
    with pytest.raises(InputShapeError, match="network `small_cnn` takes a tensor, got list"):
        cnn([[1.0, 2.0]])


def test_a_flat_network_speaks_of_features():
    model = netdsl.build(MLP)
    assert model(torch.zeros(4, 20)).shape == (4, 5)
    with pytest.raises(InputShapeError, match=r"expects input \[N, 20\] \(batch first, 20 features\), "
                                              r"got \[4, 21\]"):
        model(torch.zeros(4, 21))


def test_an_error_that_is_not_about_the_shape_passes_through(cnn):
    # Right shape, wrong dtype: torch's own error is the clearest one.
    with pytest.raises(RuntimeError) as e:
        cnn(torch.zeros(2, 3, 16, 16, dtype=torch.int64))
    assert not isinstance(e.value, InputShapeError)


def test_side_outputs_in_training_check_the_input_too():
    spec = ("network aux_net() {\n input [3, 16, 16]\n conv2d(8, 3)\n side aux { flatten\n linear(2) }\n"
            " flatten\n linear(10)\n}")
    model = netdsl.build(spec).train()
    assert model(torch.zeros(2, 3, 16, 16)).aux.shape == (2, 2)
    with pytest.raises(InputShapeError, match="network `aux_net` expects input"):
        model(torch.zeros(2, 2, 16, 16))
