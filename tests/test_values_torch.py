"""The torch family: modules by state_dict, other buffers, own attributes and training mode,
optimizers and schedulers by state_dict, generators by state, tensors of every layout and
device, valueless tensors.

No torch optimizer is created in this process: that imports triton, which aborts a
process that has loaded TensorFlow (other test modules do)."""

from __future__ import annotations

import warnings

import pytest
from conftest import run_python

from det_nb.fingerprint import Fingerprint, describe_difference, fingerprint, snapshot
from det_nb.values import view_of

torch = pytest.importorskip("torch")


def model(seed: int) -> object:
    """A small model with a BatchNorm (parameters and buffers), built from ``seed``."""
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3), torch.nn.ReLU())


def test_a_buffer_that_differs_is_named_by_its_state_dict_key() -> None:
    """Parameters and buffers count: the BatchNorm's running mean saw other data."""
    net, other = model(0), model(0)
    assert fingerprint(net) == fingerprint(other)
    assert fingerprint(net).summary == "Sequential (torch.nn.Module, 7 tensors)"
    net(torch.randn(8, 4, generator=torch.Generator().manual_seed(1)))  # updates the buffers
    other(torch.randn(8, 4, generator=torch.Generator().manual_seed(2)))
    found = describe_difference(net, other, "net")
    assert found.startswith(
        "net: torch.nn.Module: state_dict['1.running_mean']: 3 of 3 elements differ; "
        "max abs difference ")
    assert found.endswith("; first at state_dict['1.running_mean'][0]")
    assert fingerprint(snapshot(net)) == fingerprint(net)


def test_one_changed_parameter_and_the_training_flag() -> None:
    net, other = model(0), model(0)
    with torch.no_grad():
        other[0].weight[2, 1] += 0.5
    assert describe_difference(net, other, "net") == (
        "net: torch.nn.Module: state_dict['0.weight']: 1 of 12 elements differ; "
        "max abs difference 0.5; first at state_dict['0.weight'][2, 1]")
    assert describe_difference(net, model(0).eval(), "net") == (
        "net: torch.nn.Module: training: bool True vs False")
    mixed = model(0)
    mixed[1].eval()
    assert describe_difference(net, mixed, "net") == (
        "net: torch.nn.Module: part 'training (submodules in the other mode)' only in run 2")


def test_optimizers_and_schedulers_by_state_dict() -> None:
    """In a fresh process: creating a torch optimizer imports torch._dynamo and with it
    triton, whose LLVM aborts a process that has loaded TensorFlow's (DESIGN.md)."""
    found = run_python("""
        import json
        import torch
        from det_nb.fingerprint import describe_difference, fingerprint, snapshot

        def trained(seed):
            torch.manual_seed(seed)
            net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
            optimizer = torch.optim.Adam(net.parameters(), lr=0.01)
            scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1)
            data = torch.randn(8, 4, generator=torch.Generator().manual_seed(seed))
            net(data).pow(2).mean().backward()
            optimizer.step()
            scheduler.step()
            return net, optimizer, scheduler

        (net, optimizer, scheduler), (_, same, same_scheduler) = trained(0), trained(0)
        other = trained(0)[1]
        other.state[other.param_groups[0]["params"][1]]["exp_avg"][1] += 1.0
        stepped = trained(0)[2]
        stepped.step()
        print(json.dumps({
            "equal": [fingerprint(optimizer) == fingerprint(same),
                      fingerprint(scheduler) == fingerprint(same_scheduler),
                      fingerprint(snapshot(optimizer)) == fingerprint(optimizer)],
            "summaries": [fingerprint(optimizer).summary, fingerprint(scheduler).summary],
            "optimizer": describe_difference(optimizer, other, "opt"),
            "scheduler": describe_difference(scheduler, stepped, "sched"),
        }))
    """)
    assert found["equal"] == [True, True, True]
    assert found["summaries"] == [
        "Adam (torch.optim.Optimizer)", "StepLR (torch.optim.lr_scheduler.LRScheduler)"]
    assert found["optimizer"] == (
        "opt: torch.optim.Optimizer: state_dict['state'][1]['exp_avg']: 1 of 3 elements "
        "differ; max abs difference 1; first at state_dict['state'][1]['exp_avg'][1]")
    assert found["scheduler"] == (
        "sched: torch.optim.lr_scheduler.LRScheduler: state_dict['last_epoch']: int differs "
        "by 1")


def test_generators_by_state() -> None:
    a, b = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert fingerprint(a) == fingerprint(b)
    torch.rand(1, generator=b)
    assert describe_difference(a, b, "g") == (
        "g: torch.Generator state differs, so its next draws differ")


def test_tensors_of_every_layout() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # beta and prototype layouts warn
        coo = torch.sparse_coo_tensor([[0, 1], [1, 0]], [1.0, 2.0], (2, 2))
        same = torch.sparse_coo_tensor([[1, 0], [0, 1]], [2.0, 1.0], (2, 2))  # other order
        other = torch.sparse_coo_tensor([[0, 1], [1, 0]], [1.0, 3.0], (2, 2))
        assert fingerprint(coo) == fingerprint(same)
        assert describe_difference(coo, other, "s") == (
            "s: torch.Tensor sparse_coo: values: 1 of 2 elements differ; max abs difference 1; "
            "first at values[1]")
        csr = coo.to_sparse_csr()
        assert fingerprint(csr).summary == "torch.Tensor sparse_csr float32 (2, 2)"
        assert fingerprint(csr) == fingerprint(same.to_sparse_csr()) != fingerprint(
            other.to_sparse_csr())
        nested = torch.nested.nested_tensor([torch.ones(2), torch.ones(3)])
        assert fingerprint(nested).summary == "torch.Tensor nested float32 (2 tensors)"
        quantized = torch.quantize_per_tensor(torch.ones(3), 0.1, 0, torch.quint8)
        assert fingerprint(quantized) != fingerprint(
            torch.quantize_per_tensor(torch.ones(3), 0.2, 0, torch.quint8))
    half = torch.tensor([1.0, 2.0], dtype=torch.bfloat16)
    assert fingerprint(half).summary == "torch.Tensor bfloat16 (2,)"
    assert fingerprint(half) != fingerprint(half.float())
    conjugate = torch.ones(2, dtype=torch.complex64).mul(1j).conj()
    assert fingerprint(conjugate) == fingerprint(conjugate.resolve_conj())


def test_valueless_tensors_are_not_compared_and_say_why() -> None:
    meta = fingerprint(torch.empty(3, device="meta"))
    assert meta.summary == "torch.Tensor"
    assert meta.reason == "a tensor on the meta device has a shape but no values"
    assert fingerprint({"w": torch.empty(2, device="meta")}).reason == (
        "at ['w']: a tensor on the meta device has a shape but no values")


def test_an_expanded_tensor_costs_its_memory_not_its_size() -> None:
    view = torch.arange(3.0).expand(10**6, 3)
    printed = fingerprint(view)
    assert printed.summary == "torch.Tensor float32 (1000000, 3), a view of 12 bytes of memory"
    assert isinstance(printed, Fingerprint)
    assert printed == fingerprint(torch.arange(3.0).expand(10**6, 3))
    assert fingerprint(snapshot(view)) == printed
    half = torch.arange(3.0, dtype=torch.bfloat16).expand(10**6, 3)  # widened: memory only
    assert fingerprint(half).summary == (
        "torch.Tensor bfloat16 (1000000, 3), a view of 12 bytes of memory")


class Projected(torch.nn.Module):
    """A module with more than weights: a plain tensor, a non-persistent buffer, a number
    and a hook, as users write them."""

    def __init__(self, seed: int, temperature: float = 2.0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.lin = torch.nn.Linear(2, 2)
        self.proj = torch.randn(2, 2)  # a plain tensor: not in the state_dict
        self.register_buffer("mask", torch.ones(2), persistent=False)
        self.temperature = temperature
        self.history: list[float] = []
        self.handle = self.register_forward_hook(lambda *_: None)

    def forward(self, x: object) -> object:
        return self.lin(x @ self.proj) * self.mask / self.temperature


def test_a_module_is_compared_by_everything_that_is_the_users_not_only_its_weights() -> None:
    """Before, only the state_dict: a projection drawn from OS entropy, a non-persistent
    buffer or a number set from the process id left the module 'identical'."""
    net, same = Projected(0), Projected(0)
    assert fingerprint(net) == fingerprint(same)  # a hook (a lambda each) is not a value
    assert fingerprint(net).summary == "Projected (torch.nn.Module, 2 tensors)"
    other = Projected(0)
    other.proj = torch.randn(2, 2, generator=torch.Generator().manual_seed(9))
    assert describe_difference(net, other, "net").startswith(
        "net: torch.nn.Module: attributes['proj']: 4 of 4 elements differ; max abs difference ")
    other = Projected(0)
    other.mask[1] = 0.5
    assert describe_difference(net, other, "net") == (
        "net: torch.nn.Module: non-persistent buffers['mask']: 1 of 2 elements differ; "
        "max abs difference 0.5; first at non-persistent buffers['mask'][1]")
    assert describe_difference(net, Projected(0, temperature=3.0), "net") == (
        "net: torch.nn.Module: attributes['temperature']: float differs by 1")
    other = Projected(0)
    other.history.append(0.25)
    assert describe_difference(net, other, "net") == (
        "net: torch.nn.Module: attributes['history']: list length 0 vs 1")
    assert fingerprint(snapshot(net)) == fingerprint(net)


def test_submodules_attributes_are_keyed_by_their_path() -> None:
    net, other = model(0), model(0)
    other[1].momentum = 0.5  # BatchNorm1d's own setting, as the user changed it
    assert describe_difference(net, other, "net") == (
        "net: torch.nn.Module: attributes['1.momentum']: float differs by 0.4")
    holder, other = torch.nn.Sequential(Projected(0)), torch.nn.Sequential(Projected(0))
    other[0].temperature = 5.0
    assert describe_difference(holder, other, "net") == (
        "net: torch.nn.Module: attributes['0.temperature']: float differs by 3")


def test_torchs_own_bookkeeping_is_not_a_value() -> None:
    """An LSTM keeps weak references to its weights, a lazy module hook handles; neither
    is a value, and the same modules built twice are equal."""

    class Encoder(torch.nn.LSTM):  # a user's subclass: torch's private attributes stay out
        pass

    for build in (lambda: torch.nn.LSTM(2, 3), lambda: Encoder(2, 3),
                  lambda: torch.nn.TransformerEncoder(
                      torch.nn.TransformerEncoderLayer(4, 2, dim_feedforward=8), 2,
                      enable_nested_tensor=False)):
        torch.manual_seed(0)
        first = build()
        torch.manual_seed(0)
        second = build()
        assert isinstance(fingerprint(first), Fingerprint)
        assert fingerprint(first) == fingerprint(second)
    lazy = torch.nn.LazyLinear(2)
    lazy(torch.ones(1, 3))  # materialised: its weights exist, its hook handles are no value
    assert isinstance(fingerprint(lazy), Fingerprint)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_a_scripted_module_is_compared_by_its_attributes_too() -> None:
    """torch.jit.script moves a module's attributes into its C++ module."""
    scripted = torch.jit.script(Scripted(2.0))
    assert fingerprint(scripted) == fingerprint(torch.jit.script(Scripted(2.0)))
    assert describe_difference(scripted, torch.jit.script(Scripted(3.0)), "net") == (
        "net: torch.nn.Module: attributes['temperature']: float differs by 1")


class Scripted(torch.nn.Module):
    def __init__(self, temperature: float) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lin = torch.nn.Linear(2, 2)
        self.temperature = temperature

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x) / self.temperature


def test_a_compiled_module_is_compared_by_the_module_it_compiles() -> None:
    """In a fresh process: torch.compile imports triton (see the module docstring)."""
    found = run_python("""
        import json
        import torch
        from det_nb.fingerprint import Fingerprint, describe_difference, fingerprint

        def compiled(temperature):
            torch.manual_seed(0)
            net = torch.nn.Linear(2, 2)
            net.temperature = temperature
            return torch.compile(net)

        print(json.dumps({
            "fingerprinted": isinstance(fingerprint(compiled(1)), Fingerprint),
            "equal": fingerprint(compiled(1)) == fingerprint(compiled(1)),
            "difference": describe_difference(compiled(1), compiled(2), "net"),
        }))
    """)
    assert found == {"fingerprinted": True, "equal": True, "difference": (
        "net: torch.nn.Module: attributes['_orig_mod.temperature']: int differs by 1")}


def test_gradients_are_compared_where_backward_left_them() -> None:
    """``backward()`` without an optimizer step leaves its result in ``.grad``: a module's
    parameters' gradients and a leaf tensor's gradient are compared; a tensor without one
    keeps the view of its values alone."""

    def backed(scale: float) -> object:
        net = model(0).eval()  # its buffers stay as they are: only the gradients differ
        net(torch.full((8, 4), scale)).pow(2).sum().backward()
        return net

    assert fingerprint(backed(1.0)) == fingerprint(backed(1.0))
    assert "grads" not in view_of(model(0)).payload
    found = describe_difference(backed(1.0), backed(2.0), "net")
    assert found.startswith("net: torch.nn.Module: grads['0.weight']: ")
    plain = torch.ones(2)
    assert fingerprint(plain) == fingerprint(torch.ones(2, requires_grad=True))
    first, second = torch.ones(2, requires_grad=True), torch.ones(2, requires_grad=True)
    (first * 2).sum().backward()
    (second * 2).sum().backward()
    assert fingerprint(first) == fingerprint(second)
    assert fingerprint(first) != fingerprint(plain)
    third = torch.ones(2, requires_grad=True)
    (third * torch.tensor([2.0, 3.0])).sum().backward()
    assert describe_difference(first, third, "x") == (
        "x: torch.Tensor: grad: 1 of 2 elements differ; max abs difference 1; first at "
        "grad[1]")


def test_a_private_attribute_of_a_users_subclass_of_a_torch_module_is_compared() -> None:
    """torch's own private attributes stay out; the user's subclass's ``_scale`` is
    the user's."""

    class MyLinear(torch.nn.Linear):
        def __init__(self, scale: float) -> None:
            torch.manual_seed(0)
            super().__init__(2, 1)
            self._scale = scale

    assert fingerprint(MyLinear(1.0)) == fingerprint(MyLinear(1.0))
    assert describe_difference(MyLinear(1.0), MyLinear(2.0), "net") == (
        "net: torch.nn.Module: attributes['_scale']: float differs by 1")
    for build in (lambda: torch.nn.LSTM(2, 3), lambda: torch.nn.Linear(2, 1),
                  lambda: torch.nn.BatchNorm1d(3), lambda: torch.nn.MultiheadAttention(4, 2)):
        torch.manual_seed(0)
        first = build()
        torch.manual_seed(0)
        assert fingerprint(first) == fingerprint(build())
