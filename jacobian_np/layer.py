"""The layer protocol and the shared base of elementwise activations.

See ``docs/conventions.md`` for the shapes and ``docs/adding_a_layer.md`` for a
worked example of a user layer.
"""

from __future__ import annotations

import abc
from typing import Any, Callable, Optional, TypeVar

import numpy as np

from ._typing import Array, Cache

F = TypeVar("F", bound=Callable[..., Any])


def returns_new(method: F) -> F:
    """Mark a built-in ``backward`` or ``tangent`` as returning a newly allocated array.

    :class:`~jacobian_np.Network` may then update that array in place.  An
    overriding method is not marked unless it is decorated too.
    """
    method.returns_new = True  # type: ignore[attr-defined]
    return method


class Layer(abc.ABC):
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
        it with a direct formula when they have one.

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

    def param_grad(self, dy: Array, cache: Cache) -> list[Array]:
        """Gradient of ``sum(dy * y)`` with respect to each of :attr:`params`.

        ``dy`` has the shape of the output, ``(*batch, d_out)``; the gradients are
        summed over the batch.  Needed only by layers with parameters.
        """
        raise NotImplementedError(
            f"{type(self).__name__} has parameters but does not implement param_grad(dy, cache)."
        )

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

    def cost(self, rows: int, width_in: int, width_out: int) -> int:
        """Multiply-adds to push ``rows`` rows through the layer, per sample.

        :class:`~jacobian_np.Network` adds these up over the layers to choose
        between forward and reverse mode (``docs/modes.md``).  The default,
        ``rows * max(width_in, width_out)``, fits layers that do a few operations
        per element; override it for a layer that does a matrix product.

        Examples
        --------
        >>> from jacobian_np import Affine, Tanh
        >>> Tanh().cost(10, 5, 5), Affine([[1.0, 2.0]]).cost(10, 1, 2)
        (50, 20)
        """
        return rows * max(width_in, width_out)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


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
    The width is unchanged.  :class:`~jacobian_np.Network` applies these layers
    through ``diagonal``, as a scaling of the block it carries (in place when it
    can), so a subclass defines its derivative through ``fprime``; overriding
    ``backward`` or ``tangent`` does not change what a network computes.

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
        ``f''`` is built on ``f'`` override it to compute ``f'`` once.  A subclass
        that overrides ``fprime`` or ``fsecond`` but not ``fprimes`` gets this
        default back, so the shortcut of a parent class cannot disagree with it.
        """
        return self.fprime(x, y), self.fsecond(x, y)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if ("fprime" in vars(cls) or "fsecond" in vars(cls)) and "fprimes" not in vars(cls):
            cls.fprimes = Elementwise.fprimes  # type: ignore[method-assign]

    def forward(self, x: Array) -> tuple[Array, Cache]:
        y = self.f(x)
        return y, (x, y)

    def backward(self, dy: Array, cache: Cache) -> Array:
        return dy * self.fprime(*cache)[..., None, :]

    def tangent(self, dx: Array, cache: Cache) -> Array:
        return self.backward(dx, cache)  # a diagonal Jacobian is its own transpose

    def curvature(self, u: Array, v: Array, cache: Cache) -> Array:
        product = u * v
        product *= self.fsecond(*cache)[..., None, :]
        return product

    def tangent_grad(self, w: Array, u: Array, cache: Cache) -> Array:
        grad = (w * u).sum(axis=-2)
        grad *= self.fsecond(*cache)
        return grad

    def jacobian(self, y: Array, cache: Cache) -> Array:
        return _diag_embed(self.diagonal(cache))

    def diagonal(self, cache: Cache) -> Array:
        """The diagonal of the Jacobian, ``f'(x)``, of shape ``(*batch, d)``.

        :class:`~jacobian_np.Network` uses it to apply trailing activations as a row
        scaling instead of a dense diagonal matrix.

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


def implements(layer: Layer, method: str) -> bool:
    """Whether ``layer`` implements the optional ``method`` (``"tangent"``, ``"curvature"``, ``"fsecond"``).

    The optional methods' defaults raise ``NotImplementedError``; a layer implements
    one when its class overrides that default.

    Examples
    --------
    >>> from jacobian_np import Tanh
    >>> from jacobian_np.layer import implements
    >>> implements(Tanh(), "tangent")
    True
    """
    if method in ("curvature", "tangent_grad") and isinstance(layer, Elementwise):
        method = "fsecond"  # Elementwise.curvature and tangent_grad are built on fsecond
    return getattr(type(layer), method, None) not in _RAISING_DEFAULTS


_RAISING_DEFAULTS = {Layer.tangent, Layer.curvature, Layer.tangent_grad, Elementwise.fsecond, None}


def _diagonal(J: Array) -> Array:
    """Writable view of the diagonals of a stack of square matrices ``(*batch, m, m)``."""
    return np.einsum("...ii->...i", J)


def _diag_embed(d: Array) -> Array:
    """Stack of diagonal matrices: ``(*batch, m)`` to ``(*batch, m, m)``."""
    out = np.zeros(d.shape + d.shape[-1:], dtype=d.dtype)
    _diagonal(out)[...] = d
    return out
