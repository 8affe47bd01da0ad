"""PyTorch modules as dataflow graphs, for :func:`~jacobian_np.from_torch`.

``torch.fx`` traces the module's ``forward`` symbolically: standard ``torch.nn``
modules stay whole (``call_module``), everything else (a custom ``forward``, loops
over ``ModuleList`` or ``Sequential``, residual additions) is unrolled into calls
of functions and tensor methods.  Each becomes a :class:`~._graph_import.Node`,
which :class:`~._graph_import.Structure` turns into layers.  Messages name the
module by its path (as in ``named_modules``) and an operation by the file and line
of the ``forward`` that calls it.
"""

from __future__ import annotations

import functools
import inspect
import operator
import os
import re
from typing import Any, Callable, Optional

import numpy as np

from ._graph_import import Node, Structure
from ._typing import Array
from .activations import ELU, GELU, Identity, LeakyReLU, LogSoftmax, ReLU, SiLU, Sigmoid, Sin, Softmax, Softplus, Tanh
from .affine import Affine
from .layer import Layer
from .network import Network
from .normalization import LayerNorm

SUPPORTED_MODULES = (
    "Linear, LayerNorm, ReLU, Sigmoid, Tanh, Softmax, LogSoftmax, Softplus, LeakyReLU, ELU, GELU, SiLU, "
    "Identity, Flatten, Dropout, and Sequential, ModuleList or any module whose forward combines these"
)
SUPPORTED = (
    f"the modules {SUPPORTED_MODULES}; their torch and torch.nn.functional functions and tensor methods "
    "(also torch.sin, F.linear, F.layer_norm, torch.cat on the last axis); +, -, * and / with constants; "
    "x + c * f(x) and sums of branches"
)


def network(module: Any, torch: Any) -> Network:
    """The network a module computes in evaluation mode."""
    _check_hooks_and_values(module, torch)
    reader = _GraphReader(module, torch)
    leaf = reader.tracer.is_leaf_module(module, "") and not list(module.children())
    if leaf:  # a single standard module: read it like a submodule
        layer = reader.module_layer(module, f"module {type(module).__name__}")
        return Network([layer if layer is not None else Identity()])
    output = reader.read()
    structure = Structure(output, "from_torch", SUPPORTED, reader.dtype)
    return Network(structure.layers())


def _check_hooks_and_values(module: Any, torch: Any) -> None:
    hooks = torch.nn.modules.module
    if getattr(hooks, "_global_forward_hooks", None) or getattr(hooks, "_global_forward_pre_hooks", None):
        raise ValueError(
            "from_torch: a global forward hook or pre-hook is registered "
            "(torch.nn.modules.module.register_module_forward_hook); it changes what every module computes "
            "and from_torch cannot read it: remove it first."
        )
    for path, sub in module.named_modules():
        where = f"module {type(sub).__name__}" + (f" at {path!r}" if path else "")
        for kind, attribute in (("forward hook", "_forward_hooks"), ("forward pre-hook", "_forward_pre_hooks")):
            if getattr(sub, attribute, None):
                pruned = " (torch.nn.utils.prune recomputes the weight in one: make the pruning permanent with " \
                         "prune.remove(module, 'weight'))" if kind == "forward pre-hook" else ""
                raise ValueError(
                    f"from_torch: {where} has a {kind}, which changes what it computes and which from_torch "
                    f"cannot read{pruned}; remove it first."
                )
        for name, tensor in list(sub.named_parameters(recurse=False)) + list(sub.named_buffers(recurse=False)):
            if tensor is not None and tensor.is_meta:
                raise ValueError(
                    f"from_torch: {where} has {name!r} on the meta device, where tensors have a shape but no "
                    "values; load the trained weights first (for example module.to_empty(device='cpu') "
                    "followed by module.load_state_dict(...))."
                )


def torch_array(tensor: Any, where: str, name: str, torch: Any) -> Array:
    if tensor.dtype not in (torch.float16, torch.float32, torch.float64):
        raise TypeError(
            f"from_torch: {where} has {name} of dtype {tensor.dtype}, which NumPy cannot hold as a real "
            "float; convert the model with model.double() (best for derivative checks) or model.float()."
        )
    return np.array(tensor.detach().cpu().numpy(), copy=True)


class _GraphReader:
    """Traces a module with torch.fx and translates its nodes."""

    def __init__(self, module: Any, torch: Any) -> None:
        self.module, self.torch = module, torch
        fx = __import__("torch.fx", fromlist=["Tracer"])

        class Tracer(fx.Tracer):  # type: ignore[name-defined,unused-ignore]
            record_stack_traces = True

        self.tracer = Tracer()
        first = next((p.dtype for p in module.parameters() if p.is_floating_point()), torch.float64)
        self.dtype = np.float32 if first == torch.float32 else np.float64
        self.functions = _functions(torch, self)

    # --- tracing -----------------------------------------------------------------------

    def read(self) -> Node:
        module, torch = self.module, self.torch
        name = type(module).__name__
        concrete = _default_arguments(module, name)
        modes = {sub: sub.training for sub in module.modules()}
        module.eval()
        try:
            graph = self.tracer.trace(module, concrete_args=concrete or None)
        except Exception as error:
            raise ValueError(
                f"from_torch: the forward of {name} cannot be traced with torch.fx ({type(error).__name__}: "
                f"{_first_line(error)}); from_torch reads a forward that applies supported operations to its "
                "input without branching on tensor values."
            ) from error
        finally:
            for sub, mode in modes.items():
                sub.training = mode
        nodes = list(graph.nodes)
        result = nodes[-1].args[0]  # the output node's argument
        if not (hasattr(result, "op") and hasattr(result, "users")):
            raise ValueError(
                f"from_torch: the forward of {name} must return one tensor computed from its input; "
                f"it returns {type(result).__name__}."
            )
        needed = _ancestors(result)  # leaves out the guards of arguments traced with their defaults
        placeholders = [node for node in nodes if node.op == "placeholder"]
        inputs = placeholders[:1] + [p for p in placeholders[1:] if p in needed]
        if len(inputs) != 1:
            raise ValueError(
                f"from_torch: the forward of {name} takes {len(inputs)} tensor inputs "
                f"({', '.join(p.target for p in inputs)}); from_torch reads modules with one input of shape "
                "(n, d_in)."
            )
        values: dict[Any, Any] = {inputs[0]: Node("input", (), f"the input {inputs[0].target!r}")}
        for fx_node in nodes:
            if fx_node not in needed or fx_node in values:
                continue
            if fx_node.op == "get_attr":
                values[fx_node] = self.attribute(fx_node.target)
            else:
                values[fx_node] = self.translate(fx_node, values)
        output = values[result]
        if not isinstance(output, Node):
            raise ValueError(f"from_torch: the forward of {name} returns a constant, not a tensor computed from its input.")
        return output

    def attribute(self, target: str) -> Array:
        value = functools.reduce(getattr, target.split("."), self.module)
        if not isinstance(value, self.torch.Tensor):
            raise ValueError(f"from_torch: attribute {target!r} is a {type(value).__name__}, not a tensor.")
        return torch_array(value, f"attribute {target!r}", "values", self.torch)

    def translate(self, fx_node: Any, values: dict[Any, Any]) -> Any:
        args = _substitute(fx_node.args, values)
        kwargs = _substitute(fx_node.kwargs, values)
        where = self.where(fx_node)
        if fx_node.op == "call_module":
            submodule = self.module.get_submodule(fx_node.target)
            if not isinstance(args[0], Node) or len(args) != 1 or kwargs:
                raise ValueError(f"from_torch: {where} must be called on one tensor computed from the input.")
            self._check_in_place(submodule, fx_node, where)
            layer = self.module_layer(submodule, where)
            return Node("identity" if layer is None else "layer", (args[0],), where, layer)
        key = fx_node.target if fx_node.op == "call_function" else f"Tensor.{fx_node.target}"
        handler = self.functions.get(key)
        if handler is None:
            raise ValueError(f"from_torch: unsupported operation {where}; supported: {SUPPORTED}.")
        if kwargs.get("inplace") and len(fx_node.args[0].users) > 1:
            raise ValueError(f"from_torch: {where} works in place on a tensor that is used again; use inplace=False.")
        return handler(where, *args, **kwargs)

    def _check_in_place(self, submodule: Any, fx_node: Any, where: str) -> None:
        if getattr(submodule, "inplace", False) and len(fx_node.args[0].users) > 1:
            raise ValueError(f"from_torch: {where} works in place on a tensor that is used again; use inplace=False.")

    def where(self, fx_node: Any) -> str:
        if fx_node.op == "call_module":
            module = self.module.get_submodule(fx_node.target)
            return f"module {type(module).__name__} at {fx_node.target!r}"
        if fx_node.op == "call_method":
            what = f"Tensor.{fx_node.target}"
        else:
            what = _function_name(fx_node.target)
        return what + _user_frame(fx_node.stack_trace)

    # --- modules -------------------------------------------------------------------------

    def module_layer(self, m: Any, where: str) -> Optional[Layer]:
        nn, torch = self.torch.nn, self.torch
        for base, convert in _module_converters(nn, self.dtype).items():
            if isinstance(m, base):
                if type(m).forward is not base.forward:  # pragma: no cover - fx traces such subclasses
                    raise TypeError(f"from_torch: {where} is a subclass of {base.__name__} with its own forward.")
                return convert(m, where, torch)
        raise TypeError(f"from_torch: unsupported {where}; supported: {SUPPORTED_MODULES}.")


def _default_arguments(module: Any, name: str) -> dict[str, Any]:
    """Arguments of forward after the first that have defaults: traced with their default values."""
    try:
        parameters = list(inspect.signature(module.forward).parameters.values())
    except (TypeError, ValueError):  # pragma: no cover - builtin forward
        return {}
    concrete = {}
    for parameter in parameters[1:]:
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        if parameter.default is parameter.empty:
            raise ValueError(
                f"from_torch: the forward of {name} takes {len(parameters)} inputs "
                f"({', '.join(p.name for p in parameters)}); from_torch reads modules with one input of shape "
                "(n, d_in) (further arguments need default values)."
            )
        concrete[parameter.name] = parameter.default
    return concrete


def _ancestors(node: Any) -> set[Any]:
    """The torch.fx nodes that ``node`` depends on, itself included."""
    seen, stack = {node}, [node]
    while stack:
        for parent in stack.pop().all_input_nodes:
            if parent not in seen:
                seen.add(parent)
                stack.append(parent)
    return seen


def _substitute(value: Any, values: dict[Any, Any]) -> Any:
    if isinstance(value, (list, tuple)):
        return type(value)(_substitute(v, values) for v in value)
    if isinstance(value, dict):
        return {k: _substitute(v, values) for k, v in value.items()}
    if hasattr(value, "op") and hasattr(value, "users"):  # a torch.fx Node
        return values[value]
    return value


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


_OPERATORS = {
    operator.add: "+", operator.sub: "-", operator.mul: "*", operator.truediv: "/", operator.neg: "unary -",
    operator.pow: "**", operator.matmul: "@", operator.getitem: "indexing [...]", operator.floordiv: "//",
    operator.mod: "%", operator.iadd: "+=", operator.imul: "*=", operator.isub: "-=", operator.itruediv: "/=",
}


def _function_name(function: Any) -> str:
    if function in _OPERATORS:
        return f"'{_OPERATORS[function]}'"
    module = getattr(function, "__module__", None) or "torch"
    module = {"torch._C._nn": "torch.nn.functional", "torch._C._VariableFunctions": "torch",
              "torch.functional": "torch"}.get(module, module)
    return f"{module}.{getattr(function, '__name__', repr(function))}"


_FRAME = re.compile(r'File "(?P<file>[^"]+)", line (?P<line>\d+), in (?P<function>\S+)\n\s*(?P<code>[^\n]*)')


def _user_frame(stack_trace: Optional[str]) -> str:
    """`` (file.py, line 12, in forward: code)`` for the innermost frame outside torch itself."""
    if not stack_trace:
        return ""
    torch_dir = os.sep + "torch" + os.sep
    frames = [m for m in _FRAME.finditer(stack_trace) if torch_dir not in m["file"]]
    if not frames:
        return ""
    frame = frames[-1]
    return f" ({os.path.basename(frame['file'])}, line {frame['line']}, in {frame['function']}: {frame['code'].strip()})"


# --- converters ---------------------------------------------------------------------------


def _last_axis(dim: Any, where: str) -> None:
    # Inputs are (n, d): dim=-1 and dim=1 are the last axis, and so is dim=None,
    # PyTorch's deprecated implicit choice (dim 1 of a 2-D input).
    if dim not in (-1, 1, None):
        raise ValueError(
            f"from_torch: {where} has dim={dim}; only the last axis of inputs of shape (n, d) "
            "is supported: dim=-1 or dim=1."
        )


def _softplus(beta: float, threshold: float, where: str) -> Layer:
    if beta != 1:
        raise ValueError(f"from_torch: {where} has beta={beta}; only beta=1 is supported.")
    if threshold < 20:
        raise ValueError(
            f"from_torch: {where} has threshold={threshold}; PyTorch's Softplus is the identity "
            "above the threshold and jacobian_np's Softplus is exact, so only threshold >= 20 "
            "(where they differ by less than 2.1e-9) is supported."
        )
    return Softplus()


def _gelu(approximate: str, where: str) -> Layer:
    if approximate != "none":
        raise ValueError(
            f"from_torch: {where} has approximate={approximate!r}; only the exact GELU "
            "(approximate='none') is supported."
        )
    return GELU()


def _layer_norm(shape: Any, weight: Any, bias: Any, eps: float, where: str, dtype: Any) -> Layer:
    shape = tuple(shape) if isinstance(shape, (list, tuple)) else (shape,)
    if len(shape) != 1:
        raise ValueError(
            f"from_torch: {where} normalises over {len(shape)} axes (normalized_shape={shape}); only the "
            "last axis is supported."
        )
    d = int(shape[0])
    dtype = np.result_type(*(a for a in (weight, bias) if a is not None)) if weight is not None or bias is not None else dtype
    weight = np.ones(d, dtype) if weight is None else weight
    bias = np.zeros(d, dtype) if bias is None else bias
    return LayerNorm(d, eps=float(eps), weight=weight, bias=bias)


def _module_converters(nn: Any, dtype: Any) -> dict[Any, Callable[[Any, str, Any], Optional[Layer]]]:
    def linear(m: Any, where: str, torch: Any) -> Layer:
        W = np.ascontiguousarray(torch_array(m.weight, where, "weight", torch).T)
        b = None if m.bias is None else torch_array(m.bias, where, "bias", torch)
        return Affine(W, b)

    def softmax(m: Any, where: str, torch: Any) -> Layer:
        _last_axis(m.dim, where)
        return Softmax() if isinstance(m, nn.Softmax) else LogSoftmax()

    def layer_norm(m: Any, where: str, torch: Any) -> Layer:
        weight = None if m.weight is None else torch_array(m.weight, where, "weight", torch)
        bias = None if m.bias is None else torch_array(m.bias, where, "bias", torch)
        return _layer_norm(m.normalized_shape, weight, bias, m.eps, where, dtype)

    def flatten(m: Any, where: str, torch: Any) -> None:
        if (m.start_dim, m.end_dim) != (1, -1):
            raise ValueError(
                f"from_torch: {where} has start_dim={m.start_dim}, end_dim={m.end_dim}; only "
                "start_dim=1, end_dim=-1 (the identity on inputs of shape (n, d)) is supported."
            )
        return None

    return {
        nn.Linear: linear,
        nn.LayerNorm: layer_norm,
        nn.ReLU: lambda m, where, torch: ReLU(),
        nn.Sigmoid: lambda m, where, torch: Sigmoid(),
        nn.Tanh: lambda m, where, torch: Tanh(),
        nn.Softmax: softmax,
        nn.LogSoftmax: softmax,
        nn.Softplus: lambda m, where, torch: _softplus(m.beta, m.threshold, where),
        nn.LeakyReLU: lambda m, where, torch: LeakyReLU(m.negative_slope),
        nn.ELU: lambda m, where, torch: ELU(m.alpha),
        nn.GELU: lambda m, where, torch: _gelu(m.approximate, where),
        nn.SiLU: lambda m, where, torch: SiLU(),
        nn.Identity: lambda m, where, torch: Identity(),
        nn.Flatten: flatten,
        nn.Dropout: lambda m, where, torch: None,  # the identity in evaluation mode
    }


def _functions(torch: Any, reader: _GraphReader) -> dict[Any, Callable[..., Node]]:
    """call_function targets and ``Tensor.method`` names -> ``handler(where, *args, **kwargs) -> Node``."""
    F = torch.nn.functional

    def data(value: Any, where: str) -> Node:
        if not isinstance(value, Node):
            raise ValueError(f"from_torch: {where} must be applied to a tensor computed from the input.")
        return value

    def constant(value: Any, where: str) -> Any:
        if isinstance(value, Node):
            return value
        if isinstance(value, torch.Tensor):
            return torch_array(value, where, "a constant", torch)
        if isinstance(value, bool) or not isinstance(value, (int, float, np.ndarray)):
            raise ValueError(f"from_torch: {where} takes {type(value).__name__} {value!r}; expected a tensor or a number.")
        return np.asarray(value, dtype=np.float64) if not isinstance(value, np.ndarray) else value

    def unary(layer: Callable[[], Layer]) -> Callable[..., Node]:
        def handler(where: str, x: Any, *args: Any, **kwargs: Any) -> Node:
            return Node("layer", (data(x, where),), where, layer())
        return handler

    def pattern(op: str) -> Callable[..., Node]:
        def handler(where: str, x: Any, *args: Any, **kwargs: Any) -> Node:
            return Node(op, (data(x, where),), where)
        return handler

    def binary(op: str) -> Callable[..., Node]:
        def handler(where: str, a: Any, b: Any, *args: Any, alpha: Any = 1, rounding_mode: Any = None,
                    **kwargs: Any) -> Node:
            if args or kwargs or rounding_mode is not None:
                raise ValueError(f"from_torch: {where} has arguments other than two operands, which is not supported.")
            a, b = constant(a, where), constant(b, where)
            if alpha != 1:  # torch.add(a, b, alpha=c) is a + c * b
                b = b * alpha if not isinstance(b, Node) else Node("mul", (b, np.asarray(float(alpha))), where)
            if not isinstance(a, Node) and not isinstance(b, Node):
                raise ValueError(f"from_torch: {where} combines two constants; compute them before forward.")
            return Node(op, (a, b), where)
        return handler

    def power(where: str, a: Any, b: Any) -> Node:
        return Node("pow", (data(a, where), constant(b, where)), where)

    def negative(where: str, x: Any) -> Node:
        return Node("neg", (data(x, where),), where)

    def softmax(layer: Callable[[], Layer]) -> Callable[..., Node]:
        def handler(where: str, x: Any, dim: Any = None, _stacklevel: int = 3, dtype: Any = None) -> Node:
            if dtype is not None:
                raise ValueError(f"from_torch: {where} casts to dtype={dtype}, which is not supported.")
            _last_axis(dim, where)
            return Node("layer", (data(x, where),), where, layer())
        return handler

    def softplus(where: str, x: Any, beta: float = 1.0, threshold: float = 20.0) -> Node:
        return Node("layer", (data(x, where),), where, _softplus(beta, threshold, where))

    def leaky_relu(where: str, x: Any, negative_slope: float = 0.01, inplace: bool = False) -> Node:
        return Node("layer", (data(x, where),), where, LeakyReLU(negative_slope))

    def elu(where: str, x: Any, alpha: float = 1.0, inplace: bool = False) -> Node:
        return Node("layer", (data(x, where),), where, ELU(alpha))

    def gelu(where: str, x: Any, approximate: str = "none") -> Node:
        return Node("layer", (data(x, where),), where, _gelu(approximate, where))

    def relu(where: str, x: Any, inplace: bool = False) -> Node:
        return Node("layer", (data(x, where),), where, ReLU())

    def silu(where: str, x: Any, inplace: bool = False) -> Node:
        return Node("layer", (data(x, where),), where, SiLU())

    def dropout(where: str, x: Any, p: float = 0.5, training: bool = True, inplace: bool = False) -> Node:
        if training:
            raise ValueError(
                f"from_torch: {where} is applied with training=True, which drops values at random; "
                "pass training=self.training (from_torch reads the module in evaluation mode)."
            )
        return Node("identity", (data(x, where),), where)

    def linear(where: str, x: Any, weight: Any, bias: Any = None) -> Node:
        W = constant(weight, where)
        b = None if bias is None else constant(bias, where)
        if isinstance(W, Node) or isinstance(b, Node):
            raise ValueError(f"from_torch: {where} has a weight computed from the input; weights must be constant.")
        return Node("layer", (data(x, where),), where, Affine(np.ascontiguousarray(np.asarray(W).T), b))

    def matmul(where: str, x: Any, W: Any) -> Node:
        W = constant(W, where)
        if isinstance(W, Node) or np.ndim(W) != 2:
            raise ValueError(f"from_torch: {where} is supported only as x @ W with a constant 2-D W.")
        return Node("layer", (data(x, where),), where, Affine(W))

    def layer_norm(where: str, x: Any, normalized_shape: Any, weight: Any = None, bias: Any = None,
                   eps: float = 1e-5) -> Node:
        weight, bias = (None if v is None else constant(v, where) for v in (weight, bias))
        return Node("layer", (data(x, where),), where, _layer_norm(normalized_shape, weight, bias, eps, where, reader.dtype))

    def cat(where: str, tensors: Any, dim: int = 0) -> Node:
        _last_axis(dim, where)
        if dim is None:
            raise ValueError(f"from_torch: {where} needs dim=-1 or dim=1.")
        return Node("cat", tuple(data(t, where) for t in tensors), where)

    def flatten(where: str, x: Any, start_dim: int = 0, end_dim: int = -1) -> Node:
        if (start_dim, end_dim) not in ((1, -1), (-1, -1)):
            raise ValueError(
                f"from_torch: {where} has start_dim={start_dim}, end_dim={end_dim}; only start_dim=1, end_dim=-1 "
                "(the identity on inputs of shape (n, d)) is supported."
            )
        return Node("identity", (data(x, where),), where)

    def reduction(op: str) -> Callable[..., Node]:
        def handler(where: str, x: Any, dim: Any = None, *args: Any, keepdim: bool = False,
                    unbiased: Any = None, correction: Any = None, **kwargs: Any) -> Node:
            dims = tuple(dim) if isinstance(dim, (list, tuple)) else (dim,)
            if args:
                keepdim = bool(args[-1])
            biased = op == "mean" or unbiased is False or correction == 0
            if dims not in ((-1,), (1,)) or not keepdim or not biased:
                raise ValueError(
                    f"from_torch: {where} is supported only over the last axis with keepdim=True"
                    + ("" if op == "mean" else " and unbiased=False (correction=0)")
                    + ", as part of a layer normalisation."
                )
            return Node(op, (data(x, where),), where)
        return handler

    def contiguous(where: str, x: Any, *args: Any, **kwargs: Any) -> Node:
        return Node("identity", (data(x, where),), where)

    table: dict[Any, Callable[..., Node]] = {
        torch.relu: relu, F.relu: relu, "Tensor.relu": relu,
        torch.tanh: unary(Tanh), F.tanh: unary(Tanh), "Tensor.tanh": unary(Tanh),
        torch.sigmoid: unary(Sigmoid), F.sigmoid: unary(Sigmoid), "Tensor.sigmoid": unary(Sigmoid),
        torch.sin: unary(Sin), "Tensor.sin": unary(Sin),
        F.silu: silu, F.gelu: gelu, F.softplus: softplus, F.leaky_relu: leaky_relu, F.elu: elu,
        F.softmax: softmax(Softmax), torch.softmax: softmax(Softmax), "Tensor.softmax": softmax(Softmax),
        F.log_softmax: softmax(LogSoftmax), torch.log_softmax: softmax(LogSoftmax),
        "Tensor.log_softmax": softmax(LogSoftmax),
        F.dropout: dropout, F.linear: linear, F.layer_norm: layer_norm,
        torch.matmul: matmul, operator.matmul: matmul,
        torch.cat: cat, torch.concat: cat,
        torch.flatten: flatten, "Tensor.flatten": flatten, "Tensor.contiguous": contiguous,
        operator.add: binary("add"), torch.add: binary("add"), "Tensor.add": binary("add"),
        operator.sub: binary("sub"), torch.sub: binary("sub"), "Tensor.sub": binary("sub"),
        operator.mul: binary("mul"), torch.mul: binary("mul"), "Tensor.mul": binary("mul"),
        operator.truediv: binary("div"), torch.div: binary("div"), "Tensor.div": binary("div"),
        operator.neg: negative, torch.neg: negative, "Tensor.neg": negative,
        operator.pow: power, torch.pow: power, "Tensor.pow": power,
        torch.erf: pattern("erf"), "Tensor.erf": pattern("erf"),
        torch.sqrt: pattern("sqrt"), "Tensor.sqrt": pattern("sqrt"),
        torch.mean: reduction("mean"), "Tensor.mean": reduction("mean"),
        torch.var: reduction("var"), "Tensor.var": reduction("var"),
    }
    if hasattr(torch, "concatenate"):
        table[torch.concatenate] = cat
    return table
