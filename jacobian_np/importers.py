"""Import trained networks from scikit-learn, PyTorch and ONNX.

Each importer copies a trained model's weights into a :class:`Network` whose
``forward`` reproduces the model's predictions and whose ``jacobian`` is then
the exact input Jacobian of those predictions (``docs/importing.md``).

scikit-learn, PyTorch and ONNX are optional: each is imported inside the function
that needs it, when it is called, so ``import jacobian_np`` never imports them.
"""

from __future__ import annotations

import importlib
import os
from typing import Any, Callable, Iterator, Optional, Union, cast

import numpy as np

from ._typing import Array
from ._validation import as_float_array
from .activations import (
    ELU,
    GELU,
    Identity,
    LeakyReLU,
    LogSoftmax,
    ReLU,
    SiLU,
    Sigmoid,
    Sin,
    Softmax,
    Softplus,
    Tanh,
)
from .affine import Affine
from .layer import Layer
from .network import Network

__all__ = ["from_onnx", "from_sklearn", "from_torch"]


def _import_optional(module: str, package: str, extra: str, owner: str) -> Any:
    """Import an optional dependency, or raise ImportError saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(
            f'{owner} needs {package}, which is not installed; pip install "jacobian_np[{extra}]" '
            f"(or pip install {package})."
        ) from error


# --- scikit-learn ----------------------------------------------------------------------

#: MLP ``activation`` (hidden layers) -> layer.
_SKLEARN_HIDDEN: dict[str, Callable[[], Layer]] = {
    "identity": Identity,
    "logistic": Sigmoid,
    "tanh": Tanh,
    "relu": ReLU,
}
#: MLP ``out_activation_`` -> layer, or None for no output activation.
_SKLEARN_OUTPUT: dict[str, Optional[Callable[[], Layer]]] = {
    "identity": None,
    "logistic": Sigmoid,
    "softmax": Softmax,
}
_SKLEARN_SCALERS = ("StandardScaler", "MinMaxScaler", "MaxAbsScaler")


def from_sklearn(estimator: Any) -> Network:
    """A :class:`Network` computing a fitted scikit-learn multilayer perceptron.

    Parameters
    ----------
    estimator : MLPRegressor, MLPClassifier or Pipeline
        A fitted ``sklearn.neural_network.MLPRegressor`` or ``MLPClassifier``, or a
        fitted ``sklearn.pipeline.Pipeline`` whose last step is one and whose
        other steps are ``StandardScaler``, ``MinMaxScaler`` or ``MaxAbsScaler``
        (or ``"passthrough"``; nested pipelines are flattened).

    Returns
    -------
    Network
        ``Affine`` layers from ``coefs_`` and ``intercepts_`` (already in the
        ``(d_in, d_out)`` layout, dtype kept) with the hidden activation between
        them (``'identity'``, ``'logistic'``, ``'tanh'``, ``'relu'`` become
        :class:`Identity`, :class:`Sigmoid`, :class:`Tanh`, :class:`ReLU`), then
        the output activation:

        - ``MLPRegressor``: none; ``forward`` equals ``predict`` (of shape
          ``(n, 1)`` for a single target, where ``predict`` returns ``(n,)``).
        - ``MLPClassifier``, more than two classes: :class:`Softmax`; ``forward``
          equals ``predict_proba``.
        - ``MLPClassifier``, two classes: :class:`Sigmoid` on scikit-learn's
          single output unit; ``forward`` has ONE column, the probability of
          ``classes_[1]``, that is ``predict_proba(X)[:, 1]``.
        - ``MLPClassifier``, multi-label targets: :class:`Sigmoid`, one column per
          label; ``forward`` equals ``predict_proba``.

        The scalers of a pipeline are folded into the first layer,
        ``W' = diag(scale) W`` and ``b' = offset W + b``, so the Jacobian is with
        respect to the raw inputs (at no extra cost).

    Raises
    ------
    ImportError
        If scikit-learn is not installed.
    sklearn.exceptions.NotFittedError
        If the estimator or a pipeline step is not fitted (a ``ValueError``).
    TypeError
        If the estimator, or a pipeline step, is of an unsupported type.
    ValueError
        For settings that are not affine or have no layer: ``clip=True`` on a
        scaler, ``MLPRegressor(loss='poisson')`` (output ``exp``), an unknown
        activation.

    See Also
    --------
    from_torch, from_onnx

    Notes
    -----
    A scaler maps ``x`` to ``x * scale + offset`` feature by feature:

    - ``StandardScaler``: ``(x - mean_) / scale_``, without the subtraction when
      ``with_mean=False`` and the division when ``with_std=False``;
    - ``MinMaxScaler``: ``x * scale_ + min_`` (this includes ``feature_range``);
    - ``MaxAbsScaler``: ``x / scale_``.

    scikit-learn sets ``scale_`` to 1 for constant (zero-variance or zero-range)
    features, and so does the imported layer.  By the chain rule the Jacobian
    with respect to the raw inputs is the one with respect to the scaled inputs
    times ``diag(1 / scale_)`` for a ``StandardScaler``:
    ``J_raw = J_scaled @ diag(1 / scale_)``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.neural_network import MLPRegressor
    >>> from jacobian_np import from_sklearn, numerical_jacobian
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(50, 3))
    >>> y = np.sin(X[:, 0]) + X[:, 1] * X[:, 2]
    >>> mlp = MLPRegressor(hidden_layer_sizes=(8,), activation="tanh", solver="lbfgs",
    ...                    max_iter=2000, random_state=0).fit(X, y)
    >>> net = from_sklearn(mlp)
    >>> net
    Network([Affine(d_in=3, d_out=8), Tanh(), Affine(d_in=8, d_out=1)])
    >>> np.allclose(net.forward(X)[:, 0], mlp.predict(X))
    True
    >>> J = net.jacobian(X[0])  # d predict / d x at one point, shape (1, 3)
    >>> np.allclose(J[0], numerical_jacobian(lambda x: mlp.predict(x[None])[0], X[0]))
    True
    """
    owner = "from_sklearn"
    _import_optional("sklearn", "scikit-learn", "sklearn", owner)
    pipeline = importlib.import_module("sklearn.pipeline")
    steps = list(_sklearn_steps(estimator, "", pipeline.Pipeline))
    if not steps:
        raise TypeError(f"{owner}: the pipeline has no step other than 'passthrough'; it must end in an MLP.")
    *scalers, (final_name, final) = steps
    scale: Optional[Array] = None
    offset: Optional[Array] = None
    for name, step in scalers:  # compose x -> x * scale + offset over the scalers
        s, o = _sklearn_scaling(step, name)
        scale, offset = (s, o) if scale is None or offset is None else (scale * s, offset * s + o)
    layers = _sklearn_mlp(final, final_name)
    if scale is not None and offset is not None:
        # fold the scaling into the first layer, exactly: (x * s + o) W + b = x (s W) + (o W + b)
        first = cast(Affine, layers[0])
        bias = offset @ first.W + (0 if first.b is None else first.b)
        layers[0] = Affine(scale[:, None] * first.W, bias)
    return Network(layers)


def _sklearn_steps(estimator: Any, prefix: str, pipeline_type: Any) -> Iterator[tuple[str, Any]]:
    """``(name, estimator)`` of every step, nested pipelines flattened, passthrough steps dropped."""
    if isinstance(estimator, pipeline_type):
        for name, step in estimator.steps:
            if step is None or (isinstance(step, str) and step == "passthrough"):
                continue
            yield from _sklearn_steps(step, f"{prefix}__{name}" if prefix else name, pipeline_type)
    else:
        yield prefix, estimator


def _describe_step(name: str, estimator: Any) -> str:
    kind = type(estimator).__name__
    return f"pipeline step {name!r} ({kind})" if name else kind


def _check_fitted(estimator: Any, name: str) -> None:
    validation = importlib.import_module("sklearn.utils.validation")
    exceptions = importlib.import_module("sklearn.exceptions")
    try:
        validation.check_is_fitted(estimator)
    except exceptions.NotFittedError as error:
        raise exceptions.NotFittedError(
            f"from_sklearn: {_describe_step(name, estimator)} is not fitted; call fit before importing it."
        ) from error


def _sklearn_mlp(estimator: Any, name: str) -> list[Layer]:
    nn = importlib.import_module("sklearn.neural_network")
    if not isinstance(estimator, (nn.MLPRegressor, nn.MLPClassifier)):
        where = f"the last pipeline step {name!r} is" if name else "got"
        raise TypeError(
            f"from_sklearn supports MLPRegressor, MLPClassifier, or a Pipeline of "
            f"{', '.join(_SKLEARN_SCALERS)} steps ending in one; {where} {type(estimator).__name__}."
        )
    kind = _describe_step(name, estimator)
    _check_fitted(estimator, name)
    hidden = _SKLEARN_HIDDEN.get(estimator.activation)
    if hidden is None:
        raise ValueError(
            f"from_sklearn: {kind} has activation={estimator.activation!r}; "
            f"supported: {', '.join(map(repr, _SKLEARN_HIDDEN))}."
        )
    output_name = estimator.out_activation_
    if output_name not in _SKLEARN_OUTPUT:
        detail = " (MLPRegressor(loss='poisson') predicts exp of its last layer)" if output_name == "exp" else ""
        raise ValueError(
            f"from_sklearn: {kind} has output activation {output_name!r}{detail}, which jacobian_np has "
            f"no layer for; supported: {', '.join(map(repr, _SKLEARN_OUTPUT))}."
        )
    layers: list[Layer] = []
    last = len(estimator.coefs_) - 1
    for index, (W, b) in enumerate(zip(estimator.coefs_, estimator.intercepts_)):
        layers.append(Affine(W, b))
        if index < last:
            layers.append(hidden())
    output = _SKLEARN_OUTPUT[output_name]
    if output is not None:
        layers.append(output())
    return layers


def _sklearn_scaling(scaler: Any, name: str) -> tuple[Array, Array]:
    """A scaler as ``(scale, offset)``: it maps ``x`` to ``x * scale + offset``."""
    preprocessing = importlib.import_module("sklearn.preprocessing")
    kind = _describe_step(name, scaler)
    if not isinstance(
        scaler, (preprocessing.StandardScaler, preprocessing.MinMaxScaler, preprocessing.MaxAbsScaler)
    ):
        raise TypeError(
            f"from_sklearn: {kind} is not supported; the steps before the final MLP must be "
            f"{', '.join(_SKLEARN_SCALERS)} (affine, feature by feature) or 'passthrough'."
        )
    _check_fitted(scaler, name)
    if getattr(scaler, "clip", False):
        raise ValueError(
            f"from_sklearn: {kind} has clip=True, which clips held-out data to the training range and "
            "is not affine; only clip=False can be imported."
        )
    # The fitted arrays keep their dtype (MinMaxScaler and MaxAbsScaler fitted on float32
    # data hold float32; StandardScaler always float64).
    if isinstance(scaler, preprocessing.StandardScaler):
        d = int(scaler.n_features_in_)
        scale = 1 / np.asarray(scaler.scale_) if scaler.with_std else np.ones(d)
        offset = -np.asarray(scaler.mean_) * scale if scaler.with_mean else np.zeros_like(scale)
    elif isinstance(scaler, preprocessing.MinMaxScaler):
        scale, offset = np.asarray(scaler.scale_), np.asarray(scaler.min_)
    else:  # MaxAbsScaler
        scale = 1 / np.asarray(scaler.scale_)
        offset = np.zeros_like(scale)
    return scale, offset


# --- PyTorch ---------------------------------------------------------------------------


def from_torch(module: Any) -> Network:
    """A :class:`Network` computing a PyTorch module.

    Parameters
    ----------
    module : torch.nn.Module
        Any module whose ``forward`` traces with ``torch.fx`` to supported
        operations, applied to one input of shape ``(n, d_in)``: an
        ``nn.Sequential``, or a module of your own with a loop over an
        ``nn.ModuleList``, residual connections and so on.

    Returns
    -------
    Network
        The network that the module computes in evaluation mode
        (``module.eval()``; the module's own modes are left as they were),
        with the weights copied with their dtype (float32 weights give float32
        layers).  The forward is traced symbolically (``torch.fx``); then

        - ``Linear`` (or ``F.linear``, or ``x @ W`` with a constant ``W``) becomes
          ``Affine(weight.T, bias)``;
        - ``ReLU``, ``Sigmoid``, ``Tanh``, ``SiLU``, ``GELU``, ``Softplus``,
          ``LeakyReLU``, ``ELU``, ``Softmax``, ``LogSoftmax``, ``Identity``, as
          modules, as ``torch``/``torch.nn.functional`` functions or as tensor
          methods, and ``torch.sin``, become the layer of the same name;
        - ``LayerNorm`` (or ``F.layer_norm``) over the last axis becomes
          :class:`LayerNorm`, and so does ``(x - mean) / sqrt(var + eps)``
          written out;
        - ``x + block(x)`` and ``x + c * block(x)`` become
          ``Residual(block, scale=c)`` (``x - block(x)`` has ``scale=-1``), a
          sum of two other branches ``Parallel`` then ``Affine([I; I])``;
        - ``torch.cat`` of branches on the last axis becomes ``Parallel``;
        - multiplying by, dividing by, adding or subtracting a constant (a
          number or one value per feature, such as an input normalisation) is
          folded exactly into the neighbouring ``Affine`` or ``LayerNorm``;
        - ``x * torch.sigmoid(x)`` becomes :class:`SiLU`;
        - ``Dropout`` (the identity in evaluation mode) and ``Flatten`` (the
          identity on ``(n, d)`` inputs) are left out.

    Raises
    ------
    ImportError
        If PyTorch is not installed.
    TypeError
        If ``module`` is not a ``torch.nn.Module``, or it contains a standard
        module of an unsupported type (the message names it and its path, as in
        ``named_modules``), or weights have a dtype NumPy lacks (``bfloat16``).
    ValueError
        If the forward cannot be traced (it branches on tensor values, say) or
        uses an unsupported operation (the message names it, with the file and
        line that call it); if a module has a forward hook or pre-hook (pruning
        recomputes the weight in one) or tensors on the meta device; for
        unsupported settings: a softmax over a ``dim`` other than the last,
        ``Softplus`` with ``beta != 1`` or ``threshold < 20``,
        ``GELU(approximate='tanh')``, ``Flatten`` with other than
        ``start_dim=1, end_dim=-1``.

    See Also
    --------
    from_sklearn, from_onnx, to_torch

    Notes
    -----
    PyTorch's ``Softplus`` switches to the identity where ``beta * x >
    threshold`` (20 by default); :class:`Softplus` is exact everywhere.  Beyond
    the threshold the two differ by ``log1p(exp(-x)) < 2.1e-9`` in value and
    ``1 - sigmoid(x) < 2.1e-9`` in derivative.

    Check derivatives in float64: convert the module with ``module.double()``
    before importing it (or import and compare in float64), since central
    differences in float32 are accurate to about 3 digits only.

    Examples
    --------
    >>> import numpy as np
    >>> import torch  # doctest: +SKIP
    >>> from jacobian_np import from_torch
    >>> class MLP(torch.nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.hidden = torch.nn.ModuleList([torch.nn.Linear(4, 16), torch.nn.Linear(16, 16)])
    ...         self.out = torch.nn.Linear(16, 3)
    ...     def forward(self, x):
    ...         for layer in self.hidden:
    ...             x = torch.tanh(layer(x))
    ...         return self.out(x)  # doctest: +SKIP
    >>> model = MLP().double()  # doctest: +SKIP
    >>> net = from_torch(model)  # doctest: +SKIP
    >>> net  # doctest: +SKIP
    Network([Affine(d_in=4, d_out=16), Tanh(), Affine(d_in=16, d_out=16), Tanh(), Affine(d_in=16, d_out=3)])
    >>> X = np.random.default_rng(0).normal(size=(5, 4))  # doctest: +SKIP
    >>> np.allclose(net.forward(X), model(torch.from_numpy(X)).detach().numpy())  # doctest: +SKIP
    True
    """
    owner = "from_torch"
    torch = _import_optional("torch", "torch", "torch", owner)
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"from_torch expects a torch.nn.Module (one whose forward torch.fx can trace); got {type(module).__name__}.")
    reader = importlib.import_module("jacobian_np._torch_import")
    return cast(Network, reader.network(module, torch))


# --- ONNX ------------------------------------------------------------------------------

#: ONNX float attributes are float32, defaults included: LeakyRelu's alpha is float32(0.01).
_ONNX_LEAKY_RELU_ALPHA = float(np.float32(0.01))
_ONNX_ACTIVATIONS: dict[str, Callable[[dict[str, Any]], Layer]] = {
    "Relu": lambda attrs: ReLU(),
    "Sigmoid": lambda attrs: Sigmoid(),
    "Tanh": lambda attrs: Tanh(),
    "Softplus": lambda attrs: Softplus(),
    "Sin": lambda attrs: Sin(),
    "Identity": lambda attrs: Identity(),
    "LeakyRelu": lambda attrs: LeakyReLU(attrs.get("alpha", _ONNX_LEAKY_RELU_ALPHA)),
    "Elu": lambda attrs: ELU(attrs.get("alpha", 1.0)),
}
_ONNX_SUPPORTED = (
    "Gemm, MatMul, Add (a bias after MatMul or Gemm), Relu, Sigmoid, Tanh, Softmax, LogSoftmax, "
    "Softplus, LeakyRelu, Elu, Gelu, Sin, Identity, Flatten, Dropout, Constant"
)


def from_onnx(model: Union[str, "os.PathLike[str]", Any]) -> Network:
    """A :class:`Network` computing an ONNX model that is a chain of dense layers.

    Parameters
    ----------
    model : str, path-like or onnx.ModelProto
        A path to an ``.onnx`` file (read with ``onnx.load``: ONNX is protobuf,
        loading runs no code) or a loaded model.

    Returns
    -------
    Network
        The graph must be a single chain from its one input, of shape
        ``(n, d_in)``, to its one output.  The operators become:

        - ``Gemm`` (``transA=0``): ``Affine(alpha * B', beta * C)``, where ``B'``
          is ``B`` or, with ``transB=1``, ``B.T``; ``C`` broadcast to ``(d_out,)``;
        - ``MatMul`` with a constant ``(d_in, d_out)`` right operand:
          ``Affine(B)``, and an ``Add`` of a constant right after a ``MatMul``
          or ``Gemm`` (either operand order) adds to its bias;
        - ``Relu``, ``Sigmoid``, ``Tanh``, ``Softplus``, ``Sin``, ``Identity``,
          ``LeakyRelu`` (``alpha``, default 0.01), ``Elu`` (``alpha``, default 1),
          ``Gelu`` (``approximate='none'``), ``Softmax`` and ``LogSoftmax`` over
          the last axis (``axis`` -1 or 1);
        - ``Flatten`` (``axis=1``, the identity on ``(n, d)``) and ``Dropout``
          (inference) are left out; ``Constant`` nodes supply weights like
          initializers.

        Weights come from the initializers (``onnx.numpy_helper.to_array``),
        with their dtype.

    Raises
    ------
    ImportError
        If the ``onnx`` package is not installed.
    FileNotFoundError
        If the path does not exist.
    TypeError
        If ``model`` is neither a path nor an ``onnx.ModelProto``.
    ValueError
        If the file or model is not valid ONNX (``onnx.checker`` rejects it), the
        graph is not a single chain (branches, several inputs or outputs, a
        computed operand where a weight should be), an operator is not supported
        (the message names it, its node and the supported operators), or an
        attribute is (``transA=1``, a softmax axis other than the last,
        ``Gelu(approximate='tanh')``).

    See Also
    --------
    from_sklearn, from_torch

    Notes
    -----
    In opsets before 13, ``Softmax`` and ``LogSoftmax`` flatten the input to 2-D
    at ``axis`` (default 1) and normalise over the second part: on a 2-D input
    with ``axis=1`` this is the last axis, the same as from opset 13 on.

    Examples
    --------
    A graph ``y = softmax(tanh(x @ W1 + b1) @ W2)`` built with ``onnx.helper``:

    >>> import numpy as np
    >>> import onnx
    >>> from onnx import TensorProto, helper, numpy_helper
    >>> from jacobian_np import from_onnx
    >>> rng = np.random.default_rng(0)
    >>> W1, b1, W2 = rng.normal(size=(3, 4)), rng.normal(size=4), rng.normal(size=(4, 2))
    >>> graph = helper.make_graph(
    ...     [helper.make_node("Gemm", ["x", "W1", "b1"], ["h"]),
    ...      helper.make_node("Tanh", ["h"], ["t"]),
    ...      helper.make_node("MatMul", ["t", "W2"], ["z"]),
    ...      helper.make_node("Softmax", ["z"], ["y"], axis=-1)],
    ...     "mlp",
    ...     [helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["n", 3])],
    ...     [helper.make_tensor_value_info("y", TensorProto.DOUBLE, ["n", 2])],
    ...     initializer=[numpy_helper.from_array(W1, "W1"), numpy_helper.from_array(b1, "b1"),
    ...                  numpy_helper.from_array(W2, "W2")])
    >>> model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    >>> net = from_onnx(model)  # or from_onnx("model.onnx")
    >>> net
    Network([Affine(d_in=3, d_out=4), Tanh(), Affine(d_in=4, d_out=2), Softmax()])
    >>> x = rng.normal(size=3)
    >>> z = np.tanh(x @ W1 + b1) @ W2
    >>> np.allclose(net.forward(x), np.exp(z) / np.exp(z).sum())
    True
    """
    owner = "from_onnx"
    onnx = _import_optional("onnx", "onnx", "onnx", owner)
    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        if not os.path.exists(path):
            raise FileNotFoundError(f"from_onnx: no such file: {path!r}.")
        source = f"{path!r}"
        try:
            proto = onnx.load(path)
        except OSError:
            raise
        except Exception as error:  # protobuf's DecodeError and whatever else a foreign file causes
            raise ValueError(
                f"from_onnx: {source} is not a valid ONNX model: it does not parse "
                f"({type(error).__name__}: {_first_line(error)})."
            ) from error
    elif isinstance(model, onnx.ModelProto):
        proto, source = model, "the model"
    else:
        raise TypeError(
            f"from_onnx expects a path to an .onnx file or an onnx.ModelProto; got {type(model).__name__}."
        )
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as error:
        raise ValueError(f"from_onnx: {source} is not a valid ONNX model: {_first_line(error)}") from error
    return _OnnxChain(proto, onnx).network()


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


class _OnnxChain:
    """Walks an ONNX graph from its input to its output, one node at a time."""

    def __init__(self, proto: Any, onnx: Any) -> None:
        self.onnx = onnx
        self.graph = proto.graph
        self.opset = max(
            (op.version for op in proto.opset_import if op.domain in ("", "ai.onnx")), default=1
        )
        self.constants: dict[str, Array] = {
            init.name: onnx.numpy_helper.to_array(init) for init in self.graph.initializer
        }
        self.nodes = []
        self.positions: dict[int, int] = {}  # id(node) -> index in graph.node, for messages
        for index, node in enumerate(self.graph.node):
            self.positions[id(node)] = index
            if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
                self.constants[node.output[0]] = self._constant_value(node)
            else:
                self.nodes.append(node)
        inputs = [value for value in self.graph.input if value.name not in self.constants]
        if len(inputs) != 1 or len(self.graph.output) != 1:
            raise ValueError(
                "from_onnx: the graph must have one input and one output (a chain from x to y); got "
                f"inputs {[v.name for v in inputs]} and outputs {[v.name for v in self.graph.output]}."
            )
        self.input, self.output = inputs[0], self.graph.output[0].name
        self.d_in = self._input_width(self.input)

    def network(self) -> Network:
        consumers: dict[str, list[Any]] = {}
        for node in self.nodes:
            for name in set(node.input):
                if name:
                    consumers.setdefault(name, []).append(node)
        layers: list[Layer] = []
        visited: set[int] = set()
        current = self.input.name
        bias_open = False  # the last layer is an Affine that a following Add may extend
        while current != self.output:
            users = consumers.get(current, [])
            if not users:
                raise ValueError(
                    f"from_onnx: tensor {current!r} is used by no node and is not the graph output "
                    f"{self.output!r}; the graph must be a chain from its input to its output."
                )
            if len(users) > 1:
                raise ValueError(
                    f"from_onnx: tensor {current!r} feeds {len(users)} nodes "
                    f"({', '.join(self._describe(n) for n in users)}); only a single chain of "
                    "operators is supported (no branches)."
                )
            node = users[0]
            visited.add(id(node))
            bias_open = self._convert(node, current, layers, bias_open)
            current = node.output[0]
        left = [self._describe(node) for node in self.nodes if id(node) not in visited]
        if left:
            raise ValueError(
                f"from_onnx: {', '.join(left)} not on the chain from the input {self.input.name!r} "
                f"to the output {self.output!r}; only a single chain of operators is supported."
            )
        if not layers:
            layers.append(Identity())
        network = Network(layers)
        if self.d_in is not None and network.d_in is not None and network.d_in != self.d_in:
            raise ValueError(
                f"from_onnx: the graph input {self.input.name!r} has width {self.d_in}, but the first "
                f"weight expects {network.d_in}."
            )
        return network

    def _convert(self, node: Any, current: str, layers: list[Layer], bias_open: bool) -> bool:
        """Append the node's layer, if any; return whether an Add may extend the last Affine."""
        op = node.op_type
        where = self._describe(node)
        if node.domain not in ("", "ai.onnx"):
            raise ValueError(
                f"from_onnx: unsupported operator {node.domain + '.' + op!r} ({self._name(node)}); "
                f"supported (default domain): {_ONNX_SUPPORTED}."
            )
        supported = op in _ONNX_ACTIVATIONS or op in (
            "Gemm", "MatMul", "Add", "Softmax", "LogSoftmax", "Gelu", "Flatten", "Dropout"
        )
        if not supported:
            raise ValueError(
                f"from_onnx: unsupported operator {op!r} ({self._name(node)}); supported: {_ONNX_SUPPORTED}."
            )
        outputs = [name for name in node.output if name]
        if outputs[1:] and any(self._is_used(name) for name in outputs[1:]):
            raise ValueError(f"from_onnx: {where} has a second output that is used; only its first output can be.")
        attrs = {a.name: self.onnx.helper.get_attribute_value(a) for a in node.attribute}
        attrs = {k: v.decode() if isinstance(v, bytes) else v for k, v in attrs.items()}
        if op == "Gemm":
            self._operands(node, current, (0,), where)
            if attrs.get("transA", 0):
                raise ValueError(
                    f"from_onnx: {where} has transA=1, which transposes the input batch; only transA=0 "
                    "(y = x @ B + C) is supported."
                )
            B = self._weight(node.input[1], where)
            W = B.T if attrs.get("transB", 0) else B
            alpha, beta = attrs.get("alpha", 1.0), attrs.get("beta", 1.0)
            if alpha != 1:
                W = W * alpha
            b = None
            if len(node.input) > 2 and node.input[2]:
                b = self._bias(node.input[2], W.shape[1], where)
                if beta != 1:
                    b = b * beta
            layers.append(Affine(np.ascontiguousarray(W), b))
            return True
        if op == "MatMul":
            self._operands(node, current, (0,), where, "x @ W with a constant W")
            layers.append(Affine(self._weight(node.input[1], where)))
            return True
        if op == "Add":
            position = self._operands(node, current, (0, 1), where)
            last = layers[-1] if layers else None
            if not (bias_open and isinstance(last, Affine)):
                raise ValueError(
                    f"from_onnx: {where} adds a constant other than right after MatMul or Gemm; "
                    "an Add is supported only as the bias of a MatMul or Gemm."
                )
            b = self._bias(node.input[1 - position], last.d_out, where)
            layers[-1] = Affine(last.W, b if last.b is None else last.b + b)
            return True
        if op in ("Softmax", "LogSoftmax"):
            self._operands(node, current, (0,), where)
            axis = attrs.get("axis", -1 if self.opset >= 13 else 1)
            if axis not in (-1, 1):
                raise ValueError(
                    f"from_onnx: {where} has axis={axis}; only the last axis of the (n, d) input "
                    "(axis=-1 or axis=1) is supported."
                )
            layers.append(Softmax() if op == "Softmax" else LogSoftmax())
            return False
        if op == "Gelu":
            self._operands(node, current, (0,), where)
            if attrs.get("approximate", "none") != "none":
                raise ValueError(
                    f"from_onnx: {where} has approximate={attrs['approximate']!r}; only the exact GELU "
                    "(approximate='none') is supported."
                )
            layers.append(GELU())
            return False
        if op == "Flatten":
            self._operands(node, current, (0,), where)
            if attrs.get("axis", 1) not in (1, -1):
                raise ValueError(
                    f"from_onnx: {where} has axis={attrs['axis']}; only axis=1 (the identity on inputs "
                    "of shape (n, d)) is supported."
                )
            return bias_open
        if op == "Dropout":
            self._operands(node, current, (0,), where)
            training = node.input[2] if len(node.input) > 2 else ""
            if training and bool(np.any(self.constants[training])):
                raise ValueError(
                    f"from_onnx: {where} has training_mode=True; only inference (False) is supported."
                )
            return bias_open
        self._operands(node, current, (0,), where)
        layers.append(_ONNX_ACTIVATIONS[op](attrs))
        return False

    def _operands(
        self, node: Any, current: str, positions: tuple[int, ...], where: str, form: str = ""
    ) -> int:
        """Check that ``current`` is at one of ``positions`` and every other input is constant."""
        inputs = list(node.input)
        if inputs.count(current) != 1 or inputs.index(current) not in positions:
            expected = form or f"the data as input {' or '.join(map(str, positions))}"
            raise ValueError(
                f"from_onnx: {where} takes {current!r} as input {inputs.index(current)} of "
                f"{inputs}; supported: {expected}."
            )
        for name in inputs:
            if name and name != current and name not in self.constants:
                raise ValueError(
                    f"from_onnx: {where} combines {current!r} with the computed tensor {name!r}; only a "
                    "single chain of operators with constant weights (initializers) is supported."
                )
        return inputs.index(current)

    def _weight(self, name: str, where: str) -> Array:
        W = as_float_array(self.constants[name], f"from_onnx: {where} weight {name!r}")
        if W.ndim != 2:
            raise ValueError(f"from_onnx: {where} has weight {name!r} of shape {W.shape}; expected 2-D.")
        return W

    def _bias(self, name: str, d_out: int, where: str) -> Array:
        """A constant that broadcasts against ``(n, d_out)`` without changing its shape, as ``(d_out,)``."""
        c = as_float_array(self.constants[name], f"from_onnx: {where} bias {name!r}")
        if c.ndim > 2 or (c.ndim == 2 and c.shape[0] != 1) or (c.ndim >= 1 and c.shape[-1] not in (1, d_out)):
            raise ValueError(
                f"from_onnx: {where} has bias {name!r} of shape {c.shape}; expected a shape that broadcasts "
                f"to ({d_out},): ({d_out},), (1, {d_out}), (1,) or ()."
            )
        return np.broadcast_to(c.reshape(-1), (d_out,)).copy() if c.size == 1 else c.reshape(d_out)

    def _constant_value(self, node: Any) -> Array:
        helper = self.onnx.helper
        for attr in node.attribute:
            value = helper.get_attribute_value(attr)
            if attr.name == "value":
                return np.asarray(self.onnx.numpy_helper.to_array(value))
            if attr.name in ("value_float", "value_floats", "value_int", "value_ints"):
                return np.asarray(value)
        raise ValueError(
            f"from_onnx: {self._describe(node)} holds a sparse or string constant; only dense numeric "
            "constants are supported."
        )

    def _is_used(self, name: str) -> bool:
        return name == self.output or any(name in node.input for node in self.nodes)

    def _input_width(self, value: Any) -> Optional[int]:
        """The declared width of a 2-D graph input; ValueError for another declared rank."""
        tensor = value.type.tensor_type
        if not tensor.HasField("shape"):
            return None
        dims = tensor.shape.dim
        if len(dims) != 2:
            raise ValueError(
                f"from_onnx: the graph input {value.name!r} has {len(dims)} dimensions; only inputs "
                "of shape (n, d_in) are supported."
            )
        return int(dims[1].dim_value) if dims[1].HasField("dim_value") else None

    def _name(self, node: Any) -> str:
        """``node 'name'``, or ``node i`` (its position in the graph) for an unnamed node."""
        if node.name:
            return f"node {node.name!r}"
        return f"node {self.positions[id(node)]}"

    def _describe(self, node: Any) -> str:
        return f"{self._name(node)} ({node.op_type})"
