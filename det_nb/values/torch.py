"""PyTorch: tensors on any device (sparse, quantized and nested ones by their components;
a leaf tensor with a gradient with its ``.grad``), modules by ``state_dict()``, their other
buffers, their parameters' gradients, their own attributes and training mode,
optimizers, LR schedulers and other torch objects by ``state_dict()``, generators by their
state."""

from __future__ import annotations

import functools
import inspect
import sys
import weakref
from types import CodeType, ModuleType
from typing import Any

from det_nb.values.base import Family, Reduced, View, count, find, parts, scalar, state
from det_nb.values.numpy import array_view
from det_nb.values.objects import instance_attributes

TENSOR = "torch.Tensor"
# The index tensors of each sparse layout besides values().
_SPARSE_PARTS = {
    "sparse_coo": ("indices",),
    "sparse_csr": ("crow_indices", "col_indices"),
    "sparse_bsr": ("crow_indices", "col_indices"),
    "sparse_csc": ("ccol_indices", "row_indices"),
    "sparse_bsc": ("ccol_indices", "row_indices"),
}


class Torch(Family):
    """``torch.Tensor``, ``nn.Module``, optimizers, LR schedulers, ``torch.Generator``,
    dtypes and devices, and any other torch object with a ``state_dict()``."""

    name = "torch"
    module = "torch"

    def view(self, value: object, module: ModuleType | None) -> View | None:
        torch: Any = module
        if isinstance(value, find(torch, "Tensor")):
            return tensor_view(torch, value)
        kind = type(value).__name__
        if isinstance(value, find(torch, "nn.Module")):
            if _keras_layer(value):  # Keras on torch: left to the Keras family
                return None
            return _module_view(torch, value, kind)
        if isinstance(value, find(torch, "optim.Optimizer")):
            return _by_state_dict(value, "torch.optim.Optimizer")
        if isinstance(value, find(torch, "optim.lr_scheduler.LRScheduler")):
            return _by_state_dict(value, "torch.optim.lr_scheduler.LRScheduler")
        if isinstance(value, find(torch, "Generator")):
            named = {"device": str(value.device), "get_state()": value.get_state().numpy()}
            return state("torch.Generator", named)
        if isinstance(value, find(torch, "dtype") + find(torch, "device") + find(torch, "layout")):
            return scalar(f"torch.{kind}", str(value), f"torch.{kind} {value}")
        if type(value).__module__.startswith("torch.") and callable(
                getattr(type(value), "state_dict", None)):
            return _by_state_dict(value, f"torch.{kind}")  # GradScaler, ...
        return None


def tensor_view(torch: Any, tensor: Any) -> View:
    """A tensor by its values (copied to the CPU), or by its components where its layout
    is not strided; a tensor without values (on the meta device) is not compared. A leaf
    tensor whose ``.grad`` is set (after ``backward()``) is compared by its values and that
    gradient; one without a gradient keeps the view of its values alone."""
    values = _values_view(torch, tensor)
    grad = tensor.grad if tensor.is_leaf else None  # .grad of a non-leaf only warns
    if grad is None:
        return values
    return parts(TENSOR, {"values": Reduced(values), "grad": grad},
                 f"{values.summary} with its grad")


def _values_view(torch: Any, tensor: Any) -> View:
    if tensor.is_meta:
        return View("bad", TENSOR, "a tensor on the meta device has a shape but no values",
                    TENSOR)
    dtype = _DTYPE_NAMES.get(tensor.dtype) or _dtype_name(tensor.dtype)
    if tensor.is_nested:  # before its shape, which a nested tensor may not have
        pieces = list(tensor.unbind())
        return View("seq", f"{TENSOR} nested", pieces, f"{TENSOR} nested {dtype} "
                    f"({len(pieces)} tensors)")
    shape = tuple(tensor.shape)
    layout = "strided" if tensor.layout is torch.strided else str(tensor.layout)[6:]
    if layout in _SPARSE_PARTS:
        if layout == "sparse_coo":
            tensor = tensor.coalesce()  # one order of (index, value) pairs for equal tensors
        named = {name: getattr(tensor, name)() for name in _SPARSE_PARTS[layout]}
        named["values"] = tensor.values()
        named["shape"] = shape
        return parts(f"{TENSOR} {layout}", named, f"{TENSOR} {layout} {dtype} {shape}")
    if tensor.is_quantized:
        return _quantized_view(torch, tensor, dtype, shape)
    try:
        array = tensor_array(tensor)
    except Exception as exc:  # fake and functional tensors and the like have no values
        return View("bad", TENSOR, f"its value cannot be read ({type(exc).__name__})", TENSOR)
    return array_view(array, TENSOR, dtype)


def tensor_array(tensor: Any) -> Any:
    """A strided tensor's values as an ndarray on the CPU (shared where the tensor is on the
    CPU already). bfloat16 and other dtypes NumPy lacks are widened exactly (to float32,
    complex64). An expanded tensor (stride 0) brings only the memory it spans to the CPU,
    viewed with its strides: ``zeros(1).expand(10**6, 10**6)`` costs one element."""
    import numpy as np  # torch has loaded it

    if tensor.requires_grad:  # a state_dict's tensors are detached already
        tensor = tensor.detach()
    if tensor.is_conj() or tensor.is_neg():
        tensor = tensor.resolve_conj().resolve_neg()
    if tensor.is_contiguous():  # the common case: no element shares memory with another
        return _cpu_numpy(tensor)
    count = tensor.numel()
    span = 1 + sum((n - 1) * s for n, s in zip(tensor.shape, tensor.stride(), strict=True))
    if count == 0 or count <= span:
        return _cpu_numpy(tensor)
    memory = _cpu_numpy(tensor.as_strided((span,), (1,), tensor.storage_offset()))
    strides = tuple(s * memory.itemsize for s in tensor.stride())
    return np.lib.stride_tricks.as_strided(memory, tuple(tensor.shape), strides,
                                           writeable=False)


# "float32" for torch.float32 (a report's dtype names, made once per dtype).
_DTYPE_NAMES: dict[Any, str] = {}


def _dtype_name(dtype: Any) -> str:
    _DTYPE_NAMES[dtype] = str(dtype).removeprefix("torch.")
    return _DTYPE_NAMES[dtype]


def _cpu_numpy(tensor: Any) -> Any:
    if not tensor.is_cpu:
        tensor = tensor.cpu()
    try:
        return tensor.numpy()
    except TypeError:  # bfloat16, float8, complex32: no NumPy dtype
        return (tensor.cfloat() if tensor.is_complex() else tensor.float()).numpy()


def _quantized_view(torch: Any, tensor: Any, dtype: str, shape: tuple) -> View:
    scheme = str(tensor.qscheme()).removeprefix("torch.")
    named: dict[str, object] = {"qscheme": scheme, "int_repr()": tensor.int_repr()}
    if "per_channel" in scheme:
        named["q_per_channel_scales()"] = tensor.q_per_channel_scales()
        named["q_per_channel_zero_points()"] = tensor.q_per_channel_zero_points()
        named["q_per_channel_axis()"] = tensor.q_per_channel_axis()
    else:
        named["q_scale()"] = tensor.q_scale()
        named["q_zero_point()"] = tensor.q_zero_point()
    return parts(f"{TENSOR} quantized", named, f"{TENSOR} {dtype} {shape}")


def _module_view(torch: Any, module: Any, kind: str) -> View:
    """A module by its ``state_dict()`` (parameters and persistent buffers, by key), its
    non-persistent buffers, its parameters' gradients where set (``grads['0.weight']``:
    ``backward()`` without a step leaves its result there), its own attributes and those of
    its submodules (by submodule path: ``lin.in_features``) and training mode."""
    weights = module.state_dict()
    named: dict[str, object] = {"class": kind, "training": module.training}
    submodules = list(module.named_modules())
    other_mode = {name: sub.training for name, sub in submodules
                  if sub.training != module.training}
    if other_mode:
        named["training (submodules in the other mode)"] = other_mode
    named["state_dict"] = dict(weights)  # without its _metadata: torch's format versions
    unsaved = {name: buffer for name, buffer in module.named_buffers() if name not in weights}
    if unsaved:
        named["non-persistent buffers"] = unsaved
    grads = {name: parameter.grad for name, parameter in module.named_parameters()
             if parameter.grad is not None}
    if grads:
        named["grads"] = grads
    attributes = {f"{path}.{name}" if path else name: part
                  for path, sub in submodules for name, part in _own_attributes(torch, sub)}
    if attributes:
        named["attributes"] = attributes
    mode = "" if module.training else ", eval mode"
    return parts("torch.nn.Module", named,
                 f"{kind} (torch.nn.Module, {count(len(weights), 'tensor')}{mode})")


def _own_attributes(torch: Any, module: Any) -> list[tuple[str, object]]:
    """The attributes of ``module`` that are the user's: those a bare ``nn.Module()`` does
    not have (its parameters, buffers, submodules, hooks and flags), less torch's own
    bookkeeping: hook handles and weak references anywhere, and, in a module whose class
    torch defines or derives, the private (``_``) attributes torch's code names
    (``nn.LSTM``'s ``_flat_weight_refs``); a private attribute of the user's own subclass
    (``self._scale`` in ``class MyLinear(nn.Linear)``) is compared.
    The machinery of ``torch.compile``'s wrapper is left out too: the module it compiles is
    its submodule ``_orig_mod``, compared with everything. A module made by
    ``torch.jit.script`` keeps its attributes in its C++ module, which lists them."""
    bare = _bare_module_attributes(torch)
    kind = _kind_of_module(torch, type(module))
    if kind == "compiled":
        return []
    torchs: frozenset[str] = frozenset()
    if kind == "torch":
        scripted = vars(module).get("_concrete_type")
        if scripted is not None:  # torch.jit.script: the attributes live in its C++ module
            return [(name, getattr(module, name))
                    for name, (_, is_parameter) in sorted(scripted.get_attributes().items())
                    if not is_parameter and name not in bare]
        torchs = _names_torch_uses(type(module))
    weak = _WEAK + find(torch, "utils.hooks.RemovableHandle")
    return [(name, part) for name, part in instance_attributes(module, bare).items()
            if not (name.startswith("_") and name in torchs) and not isinstance(part, weak)]


@functools.lru_cache(maxsize=1024)  # asked for every submodule, of few classes
def _kind_of_module(torch: Any, kind: type) -> str:
    """``compiled`` for torch.compile's wrapper, ``torch`` for a class torch defines or one
    derived from such (not from ``nn.Module`` alone): torch's code keeps private
    attributes in it; ``user`` for the others."""
    if kind.__name__ == "OptimizedModule" and _torch_defined(kind):
        return "compiled"
    if any(_torch_defined(base) for base in kind.__mro__
           if base is not torch.nn.Module and issubclass(base, torch.nn.Module)):
        return "torch"
    return "user"


@functools.lru_cache(maxsize=1024)
def _names_torch_uses(kind: type) -> frozenset[str]:
    """Every name the code of torch's own classes among ``kind``'s bases mentions (the
    attribute names and the strings in their functions, nested ones included): the
    private attributes torch keeps in a module of that kind."""
    names: set[str] = set()
    for base in kind.__mro__:
        if not _torch_defined(base):
            continue
        names.update(name for name in vars(base) if isinstance(name, str))
        for member in vars(base).values():
            for code in _code_objects(member):
                _collect_names(code, names)
    return frozenset(names)


def _code_objects(member: object) -> list[CodeType]:
    """The code of a function, method, static or class method or property in a class."""
    if isinstance(member, staticmethod | classmethod):
        member = member.__func__
    functions = ([member.fget, member.fset, member.fdel] if isinstance(member, property)
                 else [member])
    found = []
    for function in functions:
        function = inspect.unwrap(function) if callable(function) else function
        code = getattr(function, "__code__", None)
        if isinstance(code, CodeType):
            found.append(code)
    return found


def _collect_names(code: CodeType, names: set[str]) -> None:
    names.update(code.co_names)
    for constant in code.co_consts:
        if isinstance(constant, str):
            names.add(constant)
        elif isinstance(constant, CodeType):
            _collect_names(constant, names)


def _keras_layer(value: object) -> bool:
    """Whether ``value`` is a Keras layer (a torch module on Keras's torch backend, whose
    attributes hold Keras's session-numbered bookkeeping)."""
    keras = sys.modules.get("keras")
    return keras is not None and isinstance(value, find(keras, "layers.Layer"))


def _torch_defined(kind: type) -> bool:
    return kind.__module__.split(".")[0] == "torch"


@functools.cache
def _bare_module_attributes(torch: Any) -> frozenset[str]:
    """What every ``nn.Module`` holds for torch: its parameter, buffer and submodule maps,
    its hooks, its training flag."""
    return frozenset(vars(torch.nn.Module()))


# Weak references (with hook handles): what a module keeps to reach others, not values.
_WEAK = (weakref.ReferenceType, weakref.ProxyType, weakref.CallableProxyType)


def _by_state_dict(value: Any, kind: str) -> View:
    name = type(value).__name__
    return parts(kind, {"class": name, "state_dict": value.state_dict()}, f"{name} ({kind})")
