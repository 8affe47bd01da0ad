"""The layer protocol and the shared base of elementwise activations.

A layer's derivative rules live in its class, side by side with its function.
The engine calls them through the steps of :mod:`jacobian_np._steps`, whose
generic defaults are built from these rules.  See ``docs/conventions.md`` for the
shapes and ``docs/adding_a_layer.md`` for a worked example of a user layer.
"""

from __future__ import annotations

import abc
from typing import Any, Optional

import numpy as np

from ._blocks import Block, Diag, Eye, diag_embed
from ._series import (
    collapsed_top,
    compose,
    is_zero,
    join,
    nonzero,
    or_zeros,
    series_powers,
    split,
    sum_of_products,
    truncated,
    zeros,
)
from ._steps import _CURVATURE_RULES, LayerSteps, Pairs, fused, optional, pair_rows
from ._typing import Array, Cache

class Layer(LayerSteps, abc.ABC):
    """A differentiable map applied to the last axis of its input.

    A subclass implements :meth:`forward` and :meth:`backward`; everything else has a
    working default.  A layer holds only what it was given at construction: the
    cache produced by ``forward`` is returned to the caller, never stored on ``self``.

    Attributes
    ----------
    d_in, d_out : int or None
        The widths of the input and output last axis.  ``None`` means "any width,
        and the output has the width of the input" (elementwise layers).  Set both
        on a layer that changes the width, so that :class:`~jacobian_np.Network`
        can check that consecutive layers chain.
    constant_jacobian : bool
        ``True`` when the Jacobian does not depend on the input (an affine map):
        ``backward`` and ``tangent`` then must not use the cache, and forward mode
        skips the values of final layers with constant Jacobians.  Default
        ``False``.
    piecewise_linear : bool
        ``True`` when the layer is linear on each of finitely many pieces, so its
        second derivative is zero almost everywhere (``ReLU``, ``LeakyReLU``,
        ``Identity``, ``Affine``).  :meth:`Network.hessian` warns when every layer
        is.  Default ``False``.

    See Also
    --------
    Elementwise : base class for activations applied elementwise.
    check_layer : compare a layer's derivatives with finite differences.

    Examples
    --------
    A layer that scales its input by a constant:

    >>> import numpy as np
    >>> from jacobian_np import Layer, check_layer
    >>> class Scale(Layer):
    ...     def __init__(self, c):
    ...         self.c = c
    ...     def forward(self, x):
    ...         return self.c * x, None
    ...     def backward(self, dy, cache):
    ...         return self.c * dy
    >>> y, cache = Scale(3.0).forward(np.array([1.0, 2.0]))
    >>> y
    array([3., 6.])
    >>> bool(check_layer(Scale(3.0), np.array([1.0, 2.0])))
    True
    """

    d_in: Optional[int] = None
    d_out: Optional[int] = None
    #: True when the Jacobian is the same at every input (affine maps):
    #: ``backward`` and ``tangent`` then do not use the cache, and forward mode
    #: skips computing values that nothing needs.
    constant_jacobian: bool = False
    #: True when the layer is linear on each of finitely many pieces (ReLU,
    #: LeakyReLU, Identity, Affine): its second derivative is zero almost everywhere.
    piecewise_linear: bool = False

    @abc.abstractmethod
    def forward(self, x: Array) -> tuple[Array, Cache]:
        """Apply the layer.

        Parameters
        ----------
        x : ndarray of shape ``(*batch, d_in)``
            Input; never modified.

        Returns
        -------
        y : ndarray of shape ``(*batch, d_out)``
            Output.
        cache : object
            Whatever :meth:`backward` needs, passed back to it unchanged.
        """

    @abc.abstractmethod
    def backward(self, dy: Array, cache: Cache) -> Array:
        """Propagate a full upstream Jacobian through the layer (chain rule).

        Parameters
        ----------
        dy : ndarray of shape ``(*batch, M, d_out)``
            ``M`` rows of derivatives with respect to this layer's output, per sample.
            Never modified; it may be a read-only view.
        cache : object
            The cache returned by :meth:`forward`.

        Returns
        -------
        dx : ndarray of shape ``(*batch, M, d_in)``
            ``dx[..., m, :] = dy[..., m, :] @ J`` where ``J`` is the layer's
            ``(d_out, d_in)`` Jacobian at each sample.
        """

    def jacobian(self, y: Array, cache: Cache) -> Array:
        """The layer's own per-sample Jacobian at the point ``forward`` was called.

        This seeds a backward pass without multiplying by an identity matrix.  The
        default propagates an identity seed through :meth:`backward`; layers override
        it with a direct formula when they have one (marked ``@fused("backward")``, so
        that a subclass overriding ``backward`` gets the default back).

        Parameters
        ----------
        y : ndarray of shape ``(*batch, d_out)``
            The output returned by :meth:`forward`.
        cache : object
            The cache returned by :meth:`forward`.

        Returns
        -------
        J : ndarray of shape ``(*batch, d_out, d_in)``
            ``J[..., j, k] = d y[..., j] / d x[..., k]``.  May be a read-only view.

        Examples
        --------
        >>> import numpy as np
        >>> from jacobian_np import Tanh
        >>> layer = Tanh()
        >>> y, cache = layer.forward(np.array([0.0, 1.0]))
        >>> np.allclose(layer.jacobian(y, cache), np.diag(1 - np.tanh([0.0, 1.0]) ** 2))
        True
        """
        width = y.shape[-1]
        seed = np.broadcast_to(np.eye(width, dtype=y.dtype), y.shape[:-1] + (width, width))
        return self.backward(seed, cache)

    @optional
    def tangent(self, dx: Array, cache: Cache) -> Array:
        """Push a block of tangents through the layer (forward mode).

        Optional: a layer without it works in reverse mode, and forward mode
        reports it by name.

        Parameters
        ----------
        dx : ndarray of shape ``(*batch, K, d_in)``
            ``K`` tangent directions at this layer's input, per sample.  Never
            modified; it may be a read-only view.
        cache : object
            The cache returned by :meth:`forward`.

        Returns
        -------
        dy : ndarray of shape ``(*batch, K, d_out)``
            ``dy[..., k, :] = J @ dx[..., k, :]`` where ``J`` is the layer's
            ``(d_out, d_in)`` Jacobian at each sample.

        Examples
        --------
        >>> import numpy as np
        >>> from jacobian_np import Affine
        >>> layer = Affine(np.array([[1.0, 2.0, 3.0]]))
        >>> y, cache = layer.forward(np.array([0.5]))
        >>> layer.tangent(np.array([[1.0], [-1.0]]), cache)
        array([[ 1.,  2.,  3.],
               [-1., -2., -3.]])
        """
        raise NotImplementedError(
            f"{type(self).__name__} does not implement tangent(dx, cache), which forward mode needs."
        )

    @optional
    def curvature(self, u: Array, v: Array, cache: Cache) -> Array:
        """Second directional derivatives of the layer, for pairs of directions.

        Optional: needed only for second-order derivatives (:meth:`Network.hessian`,
        :meth:`Network.laplacian`); layers with ``constant_jacobian`` do not need it.

        Parameters
        ----------
        u, v : ndarray of shape ``(*batch, P, d_in)``
            ``P`` pairs of directions at this layer's input, per sample.
        cache : object
            The cache returned by :meth:`forward`.

        Returns
        -------
        ndarray of shape ``(*batch, P, d_out)``
            ``D^2 f(x)[u_p, v_p]``: for each output ``j``,
            ``sum_ab d^2 y_j / dx_a dx_b * u_p[a] * v_p[b]``.

        Examples
        --------
        >>> import numpy as np
        >>> from jacobian_np import Tanh
        >>> layer = Tanh()
        >>> y, cache = layer.forward(np.array([0.5, -1.0]))
        >>> u, v = np.array([[1.0, 0.0]]), np.array([[1.0, 2.0]])
        >>> np.allclose(layer.curvature(u, v, cache), [[layer.fsecond(*cache)[0], 0.0]])
        True
        """
        raise NotImplementedError(
            f"{type(self).__name__} does not implement curvature(u, v, cache), "
            "which second-order derivatives need."
        )

    @optional
    def tangent_grad(self, w: Array, u: Array, cache: Cache) -> Array:
        """Gradient with respect to the layer's input of ``sum_k <w_k, J u_k>``.

        Optional: needed to train through the Jacobian
        (:meth:`Network.jacobian_param_grad`), where it carries the loss's
        dependence on ``J`` back to the layer's input; layers with
        ``constant_jacobian`` do not need it.  It equals
        ``sum_k D^2 f(x)[u_k, .]^T w_k``.

        Parameters
        ----------
        w : ndarray of shape ``(*batch, K, d_out)``
            Adjoints of the output tangents.
        u : ndarray of shape ``(*batch, K, d_in)``
            The input tangents.
        cache : object
            The cache returned by :meth:`forward`.

        Returns
        -------
        ndarray of shape ``(*batch, d_in)``

        Examples
        --------
        >>> import numpy as np
        >>> from jacobian_np import Tanh
        >>> layer = Tanh()
        >>> y, cache = layer.forward(np.array([0.5, -1.0]))
        >>> w, u = np.array([[1.0, 2.0]]), np.array([[3.0, 1.0]])
        >>> np.allclose(layer.tangent_grad(w, u, cache), w[0] * u[0] * layer.fsecond(*cache))
        True
        """
        raise NotImplementedError(
            f"{type(self).__name__} does not implement tangent_grad(w, u, cache), "
            "which training through the Jacobian needs."
        )

    @property
    def params(self) -> list[Array]:
        """The layer's parameter arrays, live (not copies); ``[]`` if it has none.

        A layer with parameters also implements :meth:`param_grad` and
        :meth:`tangent_param_grad`.
        """
        return []

    @optional
    def param_grad(self, dy: Array, cache: Cache) -> list[Array]:
        """Gradient of ``sum(dy * y)`` with respect to each of :attr:`params`.

        ``dy`` has the shape of the output, ``(*batch, d_out)``; the gradients are
        summed over the batch.  Needed only by layers with parameters.
        """
        raise NotImplementedError(
            f"{type(self).__name__} has parameters but does not implement param_grad(dy, cache)."
        )

    @optional
    def tangent_param_grad(self, dT: Array, T: Array, cache: Cache) -> list[Array]:
        """Gradient of ``sum(dT * tangent(T))`` with respect to each of :attr:`params`.

        ``T`` of shape ``(*batch, K, d_in)`` are input tangents and ``dT`` of shape
        ``(*batch, K, d_out)`` the adjoints of the output tangents; the gradients
        are summed over the batch and the ``K`` rows.  Needed only by layers with
        parameters, to train through the Jacobian.
        """
        raise NotImplementedError(
            f"{type(self).__name__} has parameters but does not implement tangent_param_grad(dT, T, cache)."
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    @optional
    def taylor(self, series: list[Array], cache: Cache) -> list[Array]:
        """Push truncated Taylor series through the layer (Taylor mode).

        For an input path ``x(t) = x_0 + sum_k series[k-1] t^k`` around the point
        ``x_0`` at which :meth:`forward` produced ``cache``, return the normalised
        Taylor coefficients ``[y_1, ..., y_K]`` of ``y(t) = layer(x(t))``
        (normalised: the ``k``-th derivative divided by ``k!``).  Optional: needed
        for derivatives of order three and more, and for the PDE operators
        (``docs/taylor.md``).  The default serves layers with ``constant_jacobian``
        (``y_k = J x_k``, through :meth:`tangent`) and raises
        ``NotImplementedError`` for the others.

        Parameters
        ----------
        series : list of K ndarrays of shape ``(*batch, R, d_in)``
            ``x_1, ..., x_K`` for ``R`` paths per sample.  Never modified.
        cache : object
            The cache returned by :meth:`forward`.

        Returns
        -------
        list of K ndarrays of shape ``(*batch, R, d_out)``
            ``y_1, ..., y_K``.  ``y_k`` depends on ``x_0, ..., x_k`` only, and
            linearly on ``x_k``: ``y_k = J x_k + (terms in x_1, ..., x_{k-1})``.

        Examples
        --------
        >>> import numpy as np
        >>> from jacobian_np import Tanh
        >>> layer = Tanh()
        >>> x0, x1 = np.array([0.5]), np.array([[2.0]])
        >>> y1, y2 = layer.taylor([x1, np.zeros((1, 1))], layer.forward(x0)[1])
        >>> t = np.tanh(0.5)  # y(t) = tanh(0.5 + 2t): y_2 = f''(0.5) * 2**2 / 2
        >>> np.allclose(y1, (1 - t**2) * 2), np.allclose(y2, -2 * t * (1 - t**2) * 2)
        (True, True)
        """
        if self.constant_jacobian:
            # every nonzero coefficient in one call (one matrix product for Affine); the
            # coefficients may differ in their row counts (a collapsed top coefficient)
            live = [k for k, x_k in enumerate(series) if not is_zero(x_k)]
            if not live:
                probe = self.tangent(series[0][..., :0, :], cache) if series else None  # shape, dtype
                return [zeros(probe.dtype, x_k.shape[:-1] + probe.shape[-1:]) for x_k in series]  # type: ignore[union-attr]
            images = split(self.tangent(join([series[k] for k in live]), cache), [series[k] for k in live])
            out = [zeros(images[0].dtype, x_k.shape[:-1] + images[0].shape[-1:]) for x_k in series]
            for k, y_k in zip(live, images):
                out[k] = y_k
            return out
        raise NotImplementedError(
            f"{type(self).__name__} does not implement taylor(series, cache), which Taylor mode needs."
        )

    @optional
    def taylor_vjp(
        self, series: list[Array], grads: list[Array], cache: Cache
    ) -> tuple[Optional[Array], list[Array], list[Array]]:
        """Pull adjoints back through :meth:`taylor` (reverse mode over Taylor mode).

        With ``[y_1, ..., y_K] = taylor(series, cache)`` and ``grads`` the adjoints
        ``[g_1, ..., g_K]`` of the output coefficients, this is the gradient of
        ``sum_k sum(g_k * y_k)`` with respect to the expansion point ``x_0``, to the
        input coefficients and to the parameters.  The value ``y_0`` is not
        included: its adjoint goes through :meth:`backward` and
        :meth:`param_grad`.  Optional: needed to train through Taylor mode
        (``Network.taylor_param_grad``, ``Network.laplacian_param_grad``).  The
        default serves layers with ``constant_jacobian`` (``x_k`` gets
        ``backward(g_k)``, the parameters :meth:`tangent_param_grad`).

        Parameters
        ----------
        series : list of K ndarrays of shape ``(*batch, R, d_in)``
            The input coefficients given to :meth:`taylor`.
        grads : list of K ndarrays of shape ``(*batch, R, d_out)``
            The adjoints of the output coefficients.
        cache : object
            The cache returned by :meth:`forward`.

        Returns
        -------
        grad_x0 : ndarray of shape ``(*batch, d_in)``, or None
            The gradient with respect to ``x_0``, summed over the ``R`` paths;
            ``None`` when it is zero (a constant Jacobian).
        grad_series : list of K ndarrays of shape ``(*batch, R, d_in)``
            The gradients with respect to ``x_1, ..., x_K``.
        param_grads : list of ndarray
            One per entry of :attr:`params`, summed over the batch and the paths;
            ``[]`` for a layer without parameters.

        Examples
        --------
        >>> import numpy as np
        >>> from jacobian_np import Affine
        >>> layer = Affine(np.array([[1.0, 2.0]]))
        >>> cache = layer.forward(np.array([0.5]))[1]
        >>> grad_x0, grad_series, (dW,) = layer.taylor_vjp([np.array([[3.0]])], [np.array([[1.0, -1.0]])], cache)
        >>> grad_x0 is None, grad_series, dW
        (True, [array([[-1.]])], array([[ 3., -3.]]))
        """
        if not self.constant_jacobian:
            raise NotImplementedError(
                f"{type(self).__name__} does not implement taylor_vjp(series, grads, cache), "
                "which training through Taylor mode needs."
            )
        live = [k for k, g_k in enumerate(grads) if not is_zero(g_k)]
        both = [k for k in live if not is_zero(series[k])]
        param_grads: list[Array] = []
        if self.params:  # one product over every pair of nonzero coefficients and adjoints
            if both:
                param_grads = self.tangent_param_grad(join([grads[k] for k in both]), join([series[k] for k in both]), cache)
            else:
                param_grads = [np.zeros_like(p) for p in self.params]
        if not live:
            probe = self.backward(grads[0][..., :0, :], cache) if grads else None  # shape and dtype
            return None, [zeros(probe.dtype, g_k.shape[:-1] + probe.shape[-1:]) for g_k in grads], param_grads  # type: ignore[union-attr]
        images = split(self.backward(join([grads[k] for k in live]), cache), [grads[k] for k in live])
        grad_series = [zeros(images[0].dtype, g_k.shape[:-1] + images[0].shape[-1:]) for g_k in grads]
        for k, dx_k in zip(live, images):
            grad_series[k] = dx_k
        return None, grad_series, param_grads


class Elementwise(Layer):
    """Base class for activations ``y = f(x)`` applied to each element.

    A subclass supplies only the function and its derivative, side by side:

    - ``f(x)`` returns ``y``;
    - ``fprime(x, y)`` returns ``f'(x)`` (it may reuse ``y = f(x)``).

    and, optionally, for second-order derivatives:

    - ``fsecond(x, y)`` returns ``f''(x)``.

    The base class does the broadcasting: ``backward`` is ``dy * f'(x)[..., None, :]``,
    ``tangent`` (forward mode) is the same because the Jacobian is diagonal,
    ``curvature`` (second order) is ``u * v * f''(x)[..., None, :]``,
    ``jacobian`` places ``f'(x)`` on a diagonal and ``diagonal`` returns ``f'(x)``.
    The width is unchanged.  Passes apply these layers as a scaling of the block
    they carry (in place when they can); a subclass that overrides ``backward``,
    ``tangent``, ``curvature`` or ``tangent_grad`` loses that fast path, so its
    override is what every method of :class:`~jacobian_np.Network` computes.

    See Also
    --------
    Layer : the protocol, for layers that are not elementwise.
    check_layer : compare f', f'' and the steps built on them with finite differences.
    Tanh : a built-in activation written this way.

    Examples
    --------
    A cube activation in three lines:

    >>> import numpy as np
    >>> from jacobian_np import Elementwise, check_layer
    >>> class Cube(Elementwise):
    ...     def f(self, x):
    ...         return x**3
    ...     def fprime(self, x, y):
    ...         return 3 * x**2
    >>> bool(check_layer(Cube(), np.array([[0.5, -1.0, 2.0]])))
    True
    """

    @abc.abstractmethod
    def f(self, x: Array) -> Array:
        """The activation, elementwise."""

    @abc.abstractmethod
    def fprime(self, x: Array, y: Array) -> Array:
        """The derivative ``f'(x)`` elementwise; ``y`` is ``f(x)``."""

    @optional
    def fsecond(self, x: Array, y: Array) -> Array:
        """The second derivative ``f''(x)`` elementwise; ``y`` is ``f(x)``.

        Optional: needed only for second-order derivatives.
        """
        raise NotImplementedError(
            f"{type(self).__name__} does not implement fsecond(x, y) (f''), "
            "which second-order derivatives need."
        )

    def fprimes(self, x: Array, y: Array) -> tuple[Array, Array]:
        """``(f'(x), f''(x))`` together, for second-order passes.

        The default calls :meth:`fprime` and :meth:`fsecond`; activations whose
        ``f''`` is built on ``f'`` override it, marked ``@fused("fprime", "fsecond")``,
        to compute ``f'`` once; a subclass that overrides ``fprime`` or ``fsecond``
        gets this default back, so the shortcut cannot disagree with it.
        """
        return self.fprime(x, y), self.fsecond(x, y)

    def forward(self, x: Array) -> tuple[Array, Cache]:
        y = self.f(x)
        return y, (x, y)

    def diagonal(self, cache: Cache) -> Array:
        """The diagonal of the Jacobian, ``f'(x)``, of shape ``(*batch, d)``.

        The first-order rules of the class are built on it.

        Examples
        --------
        >>> import numpy as np
        >>> from jacobian_np import ReLU
        >>> y, cache = ReLU().forward(np.array([-1.0, 2.0]))
        >>> ReLU().diagonal(cache)
        array([0., 1.])
        """
        x, y = cache
        return self.fprime(x, y)

    def backward(self, dy: Array, cache: Cache) -> Array:
        return dy * self.diagonal(cache)[..., None, :]

    def tangent(self, dx: Array, cache: Cache) -> Array:
        return dx * self.diagonal(cache)[..., None, :]  # a diagonal Jacobian is its own transpose

    def curvature(self, u: Array, v: Array, cache: Cache) -> Array:
        product = u * v
        product *= self.fsecond(*cache)[..., None, :]
        return product

    def tangent_grad(self, w: Array, u: Array, cache: Cache) -> Array:
        grad = (w * u).sum(axis=-2)
        grad *= self.fsecond(*cache)
        return grad

    @fused("backward")
    def jacobian(self, y: Array, cache: Cache) -> Array:
        return diag_embed(self.diagonal(cache))

    def lacking(self, rule: str) -> list[str]:
        if rule in _CURVATURE_RULES:  # built on f''
            rule = "fsecond"
        return super().lacking(rule)

    # --- fused steps: the Jacobian is diagonal, so a block is scaled (in place when owned)

    @fused("backward")
    def pull(self, block: Block, cache: Cache, owned: bool) -> tuple[Block, bool]:
        return self._scale_block(block, cache, owned, cache[0])  # the block moves to the input x

    @fused("tangent")
    def push(self, block: Block, cache: Cache, owned: bool) -> tuple[Block, bool]:
        return self._scale_block(block, cache, owned, cache[1])  # the block moves to the output y

    def _scale_block(self, block: Block, cache: Cache, owned: bool, at: Array) -> tuple[Block, bool]:
        """``diag(f') block`` (a diagonal Jacobian is its own transpose), symbolic when ``block`` is."""
        d = self.diagonal(cache)
        if isinstance(block, Eye):
            return Diag(d, at), True
        if isinstance(block, Diag):
            return Diag(block.d * d, at), True
        return _scaled(block, d, owned), True

    @fused("tangent", "curvature")
    def push_second(
        self, T: Array, S: Optional[Array], cache: Cache, pairs: Pairs, collapse: bool, tangents: bool
    ) -> tuple[Optional[Array], Optional[Array]]:
        # f' and f'' once, for the three products J T, J S and D^2 f[u, v]
        first, second = (g[..., None, :] for g in self.fprimes(*cache))
        u, v = pair_rows(T, pairs)
        bend = (u * v).sum(axis=-2, keepdims=True) if collapse else u * v
        bend *= second
        if S is not None:
            bend += S * first
        return (T * first if tangents else None), bend

    @fused("tangent", "backward", "tangent_grad")
    def push_tangents(self, T: Array, cache: Cache) -> tuple[Array, Any]:
        first, second = self.fprimes(*cache)
        return T * first[..., None, :], (T, first, second)

    @fused("tangent", "backward", "tangent_grad")
    def pull_tangents(
        self, dz: Optional[Array], dT: Array, saved: Any, cache: Cache, need_input: bool
    ) -> tuple[Optional[Array], Optional[Array], list[Array]]:
        if not need_input:
            return None, None, []
        T_in, first, second = saved  # dz_in = f' dz + f'' sum_k dT_k T_k
        dz_in = (dT * T_in).sum(axis=-2)
        dz_in *= second
        if dz is not None:
            dz_in += dz * first
        return dz_in, dT * first[..., None, :], []

    def derivatives(self, x: Array, y: Array, order: int) -> list[Array]:
        """``[f'(x), f''(x), ..., f^(order)(x)]`` elementwise; ``y`` is ``f(x)``.

        Taylor mode of order ``K`` needs the derivatives up to ``K`` (and its
        reverse mode up to ``K + 1``).  The default builds them from
        :meth:`fprime` and :meth:`fsecond`, so it serves orders up to 2 and raises
        ``NotImplementedError`` beyond; the built-in activations override it with
        formulas of every order, marked ``@fused("fprime", "fsecond")``: a subclass
        that overrides ``fprime`` or ``fsecond`` gets this default back, so that the
        orders cannot disagree.  The arrays may be shared: never write into them.

        Examples
        --------
        >>> import numpy as np
        >>> from jacobian_np import Tanh
        >>> x = np.array([0.0, 1.0])
        >>> d1, d2, d3 = Tanh().derivatives(x, np.tanh(x), 3)
        >>> t = np.tanh(x)  # the third derivative is (1 - t**2) (6 t**2 - 2)
        >>> np.allclose(d3, (1 - t**2) * (6 * t**2 - 2))
        True
        """
        if order <= 1:
            return [self.fprime(x, y)][:order]
        if order == 2:
            return list(self.fprimes(x, y))
        raise NotImplementedError(
            f"{type(self).__name__} does not implement derivatives(x, y, order) beyond order 2 (f''), "
            f"which Taylor mode needs up to order {order}."
        )

    def taylor(self, series: list[Array], cache: Cache) -> list[Array]:
        """Faà di Bruno's formula on normalised coefficients (``docs/taylor.md``).

        With ``h(t) = sum_m x_m t^m`` and ``c_j = f^(j)(x_0) / j!``,
        ``y_k = sum_{j=1..k} c_j [t^k] h(t)^j``, the powers of ``h`` built by
        repeated series products.  A ``piecewise_linear`` layer has ``c_j = 0``
        for ``j >= 2``, so ``y_k = f'(x_0) x_k``.  Zero coefficients passed as
        broadcast zeros (:func:`~jacobian_np._series.zeros`) are skipped.
        """
        if not series:
            return []
        x, y = cache
        xs = nonzero(series)
        if self.piecewise_linear:
            first = self.fprime(x, y)[..., None, :]
            return [or_zeros(None if x_k is None else x_k * first, x_k_in, first) for x_k, x_k_in in zip(xs, series)]
        derivatives = self.derivatives(x, y, len(series))
        return [or_zeros(y_k, series[0], derivatives[0]) for y_k in compose(derivatives, series_powers(xs), stacked=True)]

    def taylor_vjp(
        self, series: list[Array], grads: list[Array], cache: Cache
    ) -> tuple[Optional[Array], list[Array], list[Array]]:
        """Adjoint of :meth:`taylor`, through the series of ``f'`` along the path.

        ``y(t) = f(x(t))`` changes with the coefficient ``x_m`` by
        ``f'(x(t)) t^m``, so with ``g(t) = f'(x(t)) = sum_j g_j t^j`` (Faà di
        Bruno again, with ``f'', ..., f^(K+1)``) the adjoints are
        ``grad x_m = sum_{k >= m} grads_k g_{k-m}`` and
        ``grad x_0 = sum over paths of sum_{k >= 1} grads_k g_k``.
        """
        if not series:
            return None, [], []
        x, y = cache
        K = len(series)
        gs = nonzero(grads)
        if self.piecewise_linear:  # g(t) = f'(x_0), a constant
            first = self.fprime(x, y)[..., None, :]
            return None, [or_zeros(None if g_k is None else g_k * first, g_k_in, first) for g_k, g_k_in in zip(gs, grads)], []
        derivatives = self.derivatives(x, y, K + 1)
        g = [derivatives[0][..., None, :]] + compose(derivatives[1:], series_powers(nonzero(series)))
        grad_series = [
            or_zeros(sum_of_products(gs[m - 1 :], g[: K - m + 1]), grads[0], derivatives[0]) for m in range(1, K + 1)
        ]
        grad_x0 = sum_of_products(gs, g[1:])
        return (None if grad_x0 is None else grad_x0.sum(axis=-2)), grad_series, []

    @fused("taylor", "taylor_vjp")
    def push_taylor(self, series: list[Array], cache: Cache, groups: Any) -> tuple[list[Array], Any]:
        if groups is None or not series or self.piecewise_linear:
            return LayerSteps.push_taylor(self, series, cache, groups)
        # collapsed natively: the top coefficient's nonlinear terms row by row (x_K taken as 0),
        # summed per group, plus f'(x_0) times the group's sum of x_K
        x, y = cache
        derivatives = self.derivatives(x, y, len(series))
        powers = series_powers(nonzero(series[:-1]) + [None])
        result = [or_zeros(y_k, series[0], derivatives[0]) for y_k in compose(derivatives, truncated(powers), stacked=True)]
        top = series[-1] * derivatives[0][..., None, :]
        nonlinear = collapsed_top(derivatives, powers, groups)
        if nonlinear is not None:
            top += nonlinear
        return result + [top], series

    @fused("taylor", "taylor_vjp")
    def pull_taylor(
        self, dy: Optional[Array], grads: list[Array], saved: Any, cache: Cache, groups: Any, need_input: bool
    ) -> tuple[Optional[Array], Optional[list[Array]], list[Array]]:
        series = saved
        if groups is None or not series or self.piecewise_linear or not need_input:
            return LayerSteps.pull_taylor(self, dy, grads, saved, cache, groups, need_input)
        # the adjoint of a group's top coefficient is shared by its rows; g(t) = f'(x(t)) with
        # x_K taken as 0 row by row, its x_K term f'' x_K added per group where it is needed
        x, y = cache
        K = len(series)
        derivatives = self.derivatives(x, y, K + 1)
        powers = series_powers(nonzero(series[:-1]) + [None])
        g = [derivatives[0][..., None, :]] + compose(derivatives[1:], truncated(powers))  # g_0 .. g_(K-1)
        lower = nonzero(grads[:-1])
        top = None if is_zero(grads[-1]) else grads[-1]
        rows = None if top is None else (top if len(groups) == 1 else np.repeat(top, groups, axis=-2))
        grad_series = [
            or_zeros(sum_of_products(lower[m - 1 :] + [rows], g[: K - m + 1]), series[m - 1], derivatives[0])
            for m in range(1, K)
        ]
        grad_series.append(or_zeros(None if top is None else top * derivatives[0][..., None, :], series[-1], derivatives[0]))
        dx = sum_of_products(lower, g[1:K])
        dx = None if dx is None else dx.sum(axis=-2)
        if top is not None:  # sum over a group's rows of top * g_K: g_K's row terms, and f'' times the sum of x_K
            g_top = series[-1] * derivatives[1][..., None, :]
            nonlinear = collapsed_top(derivatives[1:], powers, groups)
            if nonlinear is not None:
                g_top += nonlinear
            top_dx = (top * g_top).sum(axis=-2)
            dx = top_dx if dx is None else dx + top_dx
        if dy is not None:
            value_dx = dy * derivatives[0]
            dx = value_dx if dx is None else dx + value_dx
        return dx, grad_series, []


def implements(layer: Layer, method: str) -> bool:
    """Whether ``layer`` implements the optional ``method``: ``layer.supports(method)``.

    Kept for code written before :meth:`Layer.supports`.

    See Also
    --------
    Layer.supports : the capability check itself.
    Layer.lacking : which parts of a composite layer lack a rule.

    Examples
    --------
    >>> from jacobian_np import Tanh
    >>> from jacobian_np.layer import implements
    >>> implements(Tanh(), "tangent")
    True
    """
    return layer.supports(method)


def _scaled(block: Array, d: Array, owned: bool) -> Array:
    """``block * d[..., None, :]``: in place when the pass owns the block."""
    d = d[..., None, :]
    if owned and d.dtype == block.dtype and block.ndim >= d.ndim:
        block *= d
        return block
    return block * d
