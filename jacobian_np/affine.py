"""The affine (fully connected) layer."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import numpy.typing as npt

from ._typing import Array, Cache
from ._validation import as_bias, as_parameter, check_last_axis
from ._blocks import Block, Diag, Eye
from ._series import is_zero, zeros
from ._steps import fused
from .layer import Layer


class Affine(Layer):
    """Fully connected layer ``y = x @ W + b``.

    Parameters
    ----------
    W : array_like of shape (d_in, d_out)
        Weights, in the scikit-learn ``coefs_`` / Keras layout (PyTorch's
        ``Linear.weight`` is the transpose).  Copied; integers become float64.
    b : array_like of shape (d_out,) or (1, d_out), optional
        Bias (a ``(1, d_out)`` row is flattened).  ``None`` (the default) means
        no bias.

    Raises
    ------
    ValueError
        If ``W`` is not 2-D, ``b`` does not have shape ``(d_out,)``, or either holds
        NaN or infinity.
    TypeError
        If ``W`` or ``b`` is not a real numeric array.

    See Also
    --------
    Network : chains affine layers and activations into a model.
    LayerNorm : normalises the features between dense layers.
    from_torch, from_sklearn : import ``torch.nn.Linear`` as ``Affine(weight.T, bias)``
        and scikit-learn's ``coefs_`` and ``intercepts_`` as affine layers.
    Layer : the protocol it implements; its Jacobian ``W.T`` is the same at every input.

    Notes
    -----
    The Jacobian of one sample is ``dy/dx = W.T``, of shape ``(d_out, d_in)``,
    the same at every input.  ``backward`` is therefore ``dx = dy @ W.T``, computed
    as one matrix product over all samples and all Jacobian rows: ``dy`` of shape
    ``(*batch, M, d_out)`` is viewed as ``(prod(batch) * M, d_out)``.  Forward
    mode's ``tangent`` is ``dx @ W``, one matrix product likewise.

    Examples
    --------
    >>> import numpy as np
    >>> from jacobian_np import Affine
    >>> layer = Affine(np.array([[1.0, 2.0, 0.0], [0.0, 1.0, 3.0]]), b=np.array([0.5, 0.0, -1.0]))
    >>> layer
    Affine(d_in=2, d_out=3)
    >>> y, cache = layer.forward(np.array([1.0, 1.0]))
    >>> y
    array([1.5, 3. , 2. ])
    >>> layer.jacobian(y, cache)
    array([[1., 0.],
           [2., 1.],
           [0., 3.]])
    """

    constant_jacobian = True
    piecewise_linear = True
    d_in: int
    d_out: int

    def curvature(self, u: Array, v: Array, cache: Cache) -> Array:
        return np.zeros(u.shape[:-1] + (self.d_out,), dtype=np.result_type(u, v, self.W))

    @property
    def params(self) -> list[Array]:
        return [self.W] if self.b is None else [self.W, self.b]

    def param_grad(self, dy: Array, cache: Cache) -> list[Array]:
        x = cache  # dW = sum over the batch of x^T dy: one matrix product
        dW = x.reshape(-1, self.d_in).T @ dy.reshape(-1, self.d_out)
        return [dW] if self.b is None else [dW, dy.reshape(-1, self.d_out).sum(axis=0)]

    def tangent_param_grad(self, dT: Array, T: Array, cache: Cache) -> list[Array]:
        # the tangents are T @ W: no bias, and dW = sum over samples and rows of T^T dT
        dW = T.reshape(-1, self.d_in).T @ dT.reshape(-1, self.d_out)
        return [dW] if self.b is None else [dW, np.zeros_like(self.b)]

    def __init__(self, W: npt.ArrayLike, b: Optional[npt.ArrayLike] = None) -> None:
        self.W = as_parameter(W, "W", (None, None), "Affine")
        self.d_in, self.d_out = self.W.shape
        self.b = None if b is None else as_bias(b, self.d_out, "Affine")
        if self.b is not None and self.b.dtype != self.W.dtype:
            dtype = np.promote_types(self.W.dtype, self.b.dtype)
            self.W, self.b = self.W.astype(dtype), self.b.astype(dtype)
        self._views: dict[str, Array] = {}

    def forward(self, x: Array) -> tuple[Array, Cache]:
        y = _matmul_last_axis(x, self.W, "Affine", "x")
        if self.b is not None:
            y += self.b
        return y, x

    def backward(self, dy: Array, cache: Cache) -> Array:
        return _matmul_last_axis(dy, self.W.T, "Affine.backward", "dy")

    def tangent(self, dx: Array, cache: Cache) -> Array:
        return _matmul_last_axis(dx, self.W, "Affine.tangent", "dx")

    def cost(self, rows: int, width_in: int, width_out: int) -> int:
        return rows * width_in * width_out

    @fused("backward")
    def jacobian(self, y: Array, cache: Cache) -> Array:
        if y.ndim == 1:  # one point: a read-only view of W.T, copied by callers that write
            return self._weights_view("T")
        # a batch: a C-ordered copy of W.T (small), broadcast.  The step after it scales
        # or multiplies it sample by sample, and read through the transposed view with
        # strides (0, 8, 8 * d_out) that took up to three times as long.
        return np.broadcast_to(np.ascontiguousarray(self.W.T), y.shape[:-1] + (self.d_out, self.d_in))

    # --- fused steps: the symbolic identity becomes the weights, a diagonal scales them

    @fused("backward")
    def pull(self, block: Block, cache: Cache, owned: bool) -> tuple[Block, bool]:
        if isinstance(block, Eye):
            return self.jacobian(block.at, cache), False
        if isinstance(block, Diag):  # C order: what the next matrix product reads fastest
            return np.multiply(block.d[..., :, None], self._weights_view("T"), order="C"), True
        return self.backward(block, cache), True  # a matrix product: a new array

    @fused("tangent")
    def push(self, block: Block, cache: Cache, owned: bool) -> tuple[Block, bool]:
        if isinstance(block, Eye):
            W = self._weights_view("")
            return (W if block.at.ndim == 1 else np.broadcast_to(W, block.at.shape[:-1] + W.shape)), False
        if isinstance(block, Diag):
            return np.multiply(block.d[..., :, None], self.W, order="C"), True
        return self.tangent(block, cache), True

    # --- training steps: the generic ones, marked with the rules they call, so that a subclass
    # overriding one of those rules gets the unmarked generic step back; execution plans
    # (jacobian_np._plans) replace only these marked, built-in steps

    @fused("tangent")
    def push_tangents(self, T: Array, cache: Cache) -> tuple[Array, Any]:
        return Layer.push_tangents(self, T, cache)

    @fused("backward", "param_grad", "tangent_param_grad")
    def pull_tangents(
        self, dz: Optional[Array], dT: Array, saved: Any, cache: Cache, need_input: bool
    ) -> tuple[Optional[Array], Optional[Array], list[Array]]:
        return Layer.pull_tangents(self, dz, dT, saved, cache, need_input)

    def _weights_view(self, kind: str) -> Array:
        """A read-only view of ``W`` (``kind=""``) or ``W.T`` (``"T"``), made once per array ``W``."""
        view = self._views.get(kind)
        if view is None or view.base is not self.W:  # W was replaced since the view was made
            view = self._views[kind] = _read_only(self.W.T if kind else self.W)
        return view

    def __repr__(self) -> str:
        return f"Affine(d_in={self.d_in}, d_out={self.d_out})"

    @fused("backward", "param_grad", "tangent_param_grad", "taylor_vjp")
    def pull_taylor(
        self, dy: Optional[Array], grads: list[Array], saved: Any, cache: Cache, groups: Any, need_input: bool
    ) -> tuple[Optional[Array], Optional[list[Array]], list[Array]]:
        # the value's adjoint rides with the coefficients': one matrix product for every input
        # adjoint and one for dW = sum over rows of [x_k; x_0]^T [grads_k; dy] (the bias sees dy only)
        series = saved
        live = [k for k, g_k in enumerate(grads) if not is_zero(g_k)]
        rows = [grads[k] for k in live] + ([] if dy is None else [dy[..., None, :]])
        pairs = [k for k in live if not is_zero(series[k])]
        inputs = [series[k] for k in pairs] + ([] if dy is None else [cache[..., None, :]])
        if inputs:
            adjoints = rows if len(pairs) == len(live) else [grads[k] for k in pairs] + rows[len(live) :]
            dW = np.concatenate(inputs, axis=-2).reshape(-1, self.d_in).T @ np.concatenate(adjoints, axis=-2).reshape(-1, self.d_out)
        else:
            dW = np.zeros_like(self.W)
        param_grads = [dW] if self.b is None else [dW, np.zeros_like(self.b) if dy is None else dy.reshape(-1, self.d_out).sum(axis=0)]
        if not need_input:
            return None, None, param_grads
        back = self.backward(np.concatenate(rows, axis=-2), cache) if rows else None
        dtype = np.result_type(self.W, *grads) if back is None else back.dtype
        grad_series = [zeros(dtype, g_k.shape[:-1] + (self.d_in,)) for g_k in grads]
        start = 0
        for k in live:
            grad_series[k] = back[..., start : start + grads[k].shape[-2], :]  # type: ignore[index]
            start += grads[k].shape[-2]
        return (None if dy is None else back[..., -1, :]), grad_series, param_grads  # type: ignore[index]


def _read_only(a: Array) -> Array:
    view = a.view()
    view.flags.writeable = False
    return view


def _matmul_last_axis(a: Array, B: Array, owner: str, name: str) -> Array:
    """``a @ B`` over the last axis of ``a`` as a single GEMM, whatever the leading axes.

    The width is checked only when the product fails, so the check costs nothing on
    the hot path but the error still names the layer and the shapes.
    """
    try:
        if a.ndim <= 2:
            return a @ B
        return (a.reshape(-1, a.shape[-1]) @ B).reshape(a.shape[:-1] + (B.shape[1],))
    except ValueError:
        check_last_axis(a, B.shape[0], owner, name)
        raise
