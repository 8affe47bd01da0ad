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
from .activations import Identity, ReLU, Sigmoid, Softmax, Tanh
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
    estimator : MLPRegressor, MLPClassifier, TransformedTargetRegressor or Pipeline
        A fitted ``sklearn.neural_network.MLPRegressor`` or ``MLPClassifier``; a
        fitted ``sklearn.compose.TransformedTargetRegressor`` around one (or
        around a pipeline ending in one) whose ``transformer`` is a
        ``StandardScaler``, ``MinMaxScaler`` or ``MaxAbsScaler`` (or the identity);
        or a fitted ``sklearn.pipeline.Pipeline`` ending in any of these whose
        other steps are ``StandardScaler``, ``MinMaxScaler``, ``MaxAbsScaler``,
        ``PCA`` or ``IncrementalPCA`` (or ``"passthrough"``; nested pipelines are
        flattened).

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
        respect to the raw inputs (at no extra cost); so is a ``PCA`` step,
        ``x -> (x - mean_) @ components_.T`` (divided by
        ``sqrt(explained_variance_)`` when ``whiten=True``).  The target scaler of
        a ``TransformedTargetRegressor`` is folded into the last layer:
        ``forward`` equals ``predict`` in the target's own units.

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
        activation, a ``TransformedTargetRegressor`` with ``func`` and
        ``inverse_func``.

    See Also
    --------
    from_torch, from_onnx : the same for PyTorch modules and ONNX models.
    check_network : compare the imported network's Jacobian with finite differences.
    save : keep the imported network, with its input statistics, for the command line.

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
    compose = importlib.import_module("sklearn.compose")
    steps = list(_sklearn_steps(estimator, "", pipeline.Pipeline))
    if not steps:
        raise TypeError(f"{owner}: the pipeline has no step other than 'passthrough'; it must end in an MLP.")
    *preprocessing, (final_name, final) = steps
    target: Optional[tuple[Array, Array]] = None
    if isinstance(final, compose.TransformedTargetRegressor):
        _check_fitted(final, final_name)
        target = _sklearn_target(final.transformer_, final_name or "TransformedTargetRegressor")
        prefix = f"{final_name}__regressor" if final_name else "regressor"
        *inner, (final_name, final) = list(_sklearn_steps(final.regressor_, prefix, pipeline.Pipeline))
        preprocessing += inner
    layers = _sklearn_mlp(final, final_name)
    if target is not None:  # y = z * scale + offset, folded into the last (linear) layer
        last = cast(Affine, layers[-1])
        scale, offset = (np.asarray(a, dtype=last.W.dtype) for a in target)
        bias = offset + (0 if last.b is None else last.b * scale)
        layers[-1] = Affine(last.W * scale, np.broadcast_to(bias, (last.d_out,)))
    for name, step in reversed(preprocessing):  # fold x -> x A + c into the first layer: x (A W) + (c W + b)
        first = cast(Affine, layers[0])
        layers[0] = _sklearn_fold(step, name, first)
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
            f"from_sklearn supports MLPRegressor, MLPClassifier, a TransformedTargetRegressor around one, or a "
            f"Pipeline of {', '.join(_SKLEARN_SCALERS)} or PCA steps ending in one; {where} "
            f"{type(estimator).__name__}."
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
            f"{', '.join(_SKLEARN_SCALERS)} (affine, feature by feature), PCA, IncrementalPCA or 'passthrough'."
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


def _sklearn_fold(step: Any, name: str, first: Affine) -> Affine:
    """The affine map ``x -> x A + c`` of a preprocessing step followed by ``first``, as one Affine."""
    decomposition = importlib.import_module("sklearn.decomposition")
    if isinstance(step, (decomposition.PCA, decomposition.IncrementalPCA)):
        _check_fitted(step, name)
        components = np.asarray(step.components_)
        A = components.T.astype(first.W.dtype)
        c = -(np.asarray(step.mean_) @ components.T).astype(first.W.dtype)
        if step.whiten:  # as sklearn, with the variance clipped below at eps
            scale = np.sqrt(np.asarray(step.explained_variance_))
            scale = np.maximum(scale, np.finfo(scale.dtype).eps).astype(first.W.dtype)
            A, c = A / scale, c / scale
        if A.shape[1] != first.d_in:
            raise ValueError(
                f"from_sklearn: {_describe_step(name, step)} outputs {A.shape[1]} features, but the MLP "
                f"expects {first.d_in}."
            )
        return Affine(A @ first.W, c @ first.W + (0 if first.b is None else first.b))
    scale, offset = _sklearn_scaling(step, name)
    bias = offset @ first.W + (0 if first.b is None else first.b)
    return Affine(scale[:, None] * first.W, bias)


def _sklearn_target(transformer: Any, name: str) -> tuple[Array, Array]:
    """A target transformer's inverse as ``(scale, offset)``: predictions are ``z * scale + offset``."""
    preprocessing = importlib.import_module("sklearn.preprocessing")
    where = f"the target transformer of {name}"
    if isinstance(transformer, preprocessing.FunctionTransformer):
        if transformer.func is None and transformer.inverse_func is None:
            return np.ones(1), np.zeros(1)  # the identity: TransformedTargetRegressor without a transformer
        raise ValueError(
            f"from_sklearn: {where} applies func={getattr(transformer.func, '__name__', transformer.func)!r}, "
            "which is not affine; only StandardScaler, MinMaxScaler, MaxAbsScaler (or none) can be folded "
            "into the network."
        )
    if isinstance(transformer, preprocessing.StandardScaler):
        scale = np.asarray(transformer.scale_) if transformer.with_std else np.ones(1)
        offset = np.asarray(transformer.mean_) if transformer.with_mean else np.zeros(1)
        return scale, offset
    if isinstance(transformer, preprocessing.MinMaxScaler):
        return 1 / np.asarray(transformer.scale_), -np.asarray(transformer.min_) / np.asarray(transformer.scale_)
    if isinstance(transformer, preprocessing.MaxAbsScaler):
        return np.asarray(transformer.scale_), np.zeros(1)
    raise TypeError(
        f"from_sklearn: {where} is {type(transformer).__name__}; only StandardScaler, MinMaxScaler, "
        "MaxAbsScaler (affine maps) or none can be folded into the network."
    )


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
    to_torch : the reverse, a PyTorch module from a network.
    from_onnx : for models in other frameworks that export ONNX.
    from_sklearn : for scikit-learn multilayer perceptrons.
    check_network : compare the imported network's Jacobian with finite differences.

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


def from_onnx(model: Union[str, "os.PathLike[str]", Any]) -> Network:
    """A :class:`Network` computing an ONNX model of dense layers, including the patterns exporters write.

    Parameters
    ----------
    model : str, path-like or onnx.ModelProto
        A path to an ``.onnx`` file (read with ``onnx.load``: ONNX is protobuf,
        loading runs no code) or a loaded model.

    Returns
    -------
    Network
        The graph must compute its one output from its one input, of shape
        ``(n, d_in)``, with constant weights.  The operators become:

        - ``Gemm`` (``transA=0``): ``Affine(alpha * B', beta * C)``, where ``B'``
          is ``B`` or, with ``transB=1``, ``B.T``; ``C`` broadcast to ``(d_out,)``;
        - ``MatMul`` with a constant ``(d_in, d_out)`` right operand:
          ``Affine(B)``;
        - ``Add``, ``Sub``, ``Mul``, ``Div`` with a constant (a scalar or one value
          per feature) and ``Neg``: folded exactly into the neighbouring
          ``Affine`` (a bias after ``MatMul``, say) or ``LayerNorm``;
        - ``Relu``, ``Sigmoid``, ``Tanh``, ``Softplus``, ``Sin``,
          ``LeakyRelu`` (``alpha``, default 0.01), ``Elu`` (``alpha``, default 1),
          ``Gelu`` (``approximate='none'``), ``Softmax`` and ``LogSoftmax`` over
          the last axis (``axis`` -1 or 1); ``LayerNormalization`` over the last
          axis: :class:`LayerNorm`;
        - ``Add`` of a tensor and a function of it, ``x + c * f(x)``:
          ``Residual(f, c)``; ``Add`` or ``Sub`` of two other branches:
          ``Parallel`` then ``Affine([I; +-I])``; ``Concat`` on the last axis:
          ``Parallel``;
        - the patterns exporters write: ``Mul(x, Sigmoid(x))`` (SiLU, as
          ``torch.onnx.export`` writes ``nn.SiLU``), ``x * (1 + Erf(x / sqrt 2)) / 2``
          (GELU before opset 20), ``Where(Greater(x, threshold), x, Softplus(x))``
          (PyTorch's Softplus, ``threshold >= 20``) and
          ``(x - ReduceMean(x)) / Sqrt(ReduceMean(d ** 2) + eps)`` (layer
          normalisation before opset 17);
        - ``Identity``, ``Flatten`` (``axis=1``, the identity on ``(n, d)``) and
          ``Dropout`` (inference) are left out; ``Constant`` nodes supply weights
          like initializers.

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
        graph has several inputs or outputs, a node off the path from the input
        to the output, or a computed operand where a weight should be; if an
        operator is not supported (the message names it, its node and the
        supported operators), or an attribute is (``transA=1``, a softmax axis
        other than the last, ``Gelu(approximate='tanh')``).

    See Also
    --------
    to_onnx : the reverse, an ONNX model from a network.
    from_torch, from_sklearn : import from those libraries directly.
    check_network : compare the imported network's Jacobian with finite differences.
    load : read jacobian_np's own model files.

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
                f"({type(error).__name__}: {_onnx_first_line(error)})."
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
        raise ValueError(f"from_onnx: {source} is not a valid ONNX model: {_onnx_first_line(error)}") from error
    reader = importlib.import_module("jacobian_np._onnx_import")
    return cast(Network, reader.OnnxGraph(proto, onnx).network())


def _onnx_first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
