"""Weight gradients of Taylor-mode quantities: losses on derivatives of any order and on Laplacians.

Reverse mode over the Taylor pass (``Layer.pull_taylor``, each layer's
``taylor_vjp``): physics-informed training on ``u_xx``, ``Δu``, ``u_xxxx``
(``docs/taylor.md``).  Like :mod:`jacobian_np._training` for the Jacobian, each
quantity has a one-call gradient and a pullback form for training steps.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional, Sequence

import numpy as np
import numpy.typing as npt

from ._chunking import chunk_length, summed
from ._series import zeros
from ._taylor_methods import Pullback, _line, _rows, _stack_derivatives, _taylor_input, _width_out
from ._typing import Array
from ._validation import as_order, direction, input_dims
from .layer import Layer


class TaylorTrainingMethods:
    """The Taylor-mode parameter gradients of :class:`~jacobian_np.Network` (see the module)."""

    layers: tuple[Layer, ...]
    d_in: Optional[int]
    _forward_stop: int
    _trace: Any
    _per_sample_bytes: Any
    forward_with_cache: Any
    push_taylor: Any
    pull_taylor: Any
    footprint: Any

    def taylor_and_pullback(self, x: npt.ArrayLike, v: npt.ArrayLike, order: int) -> tuple[Array, Pullback]:
        """:meth:`taylor`, and a function that maps ``grad_T`` to the parameter gradients.

        ``T, pullback = net.taylor_and_pullback(x, v, order)`` then
        ``pullback(grad_T)`` gives the same as
        ``net.taylor_param_grad(x, v, order, grad_T)``, but the Taylor pass runs
        once for both: use it when the loss's gradient depends on ``T`` (a
        training step).  The pullback keeps every layer's coefficients alive, so
        it is not chunked.

        See Also
        --------
        taylor : the derivatives alone.
        taylor_param_grad : the gradient in one call, when grad_T does not depend on T.
        jacobian_and_pullback : the same for the Jacobian.

        Examples
        --------
        >>> import numpy as np
        >>> from jacobian_np import Affine, Network, Tanh
        >>> rng = np.random.default_rng(0)
        >>> net = Network([Affine(rng.normal(size=(1, 8)), rng.normal(size=8)), Tanh(), Affine(rng.normal(size=(8, 1)))])
        >>> x = rng.normal(size=(16, 1))
        >>> T, pullback = net.taylor_and_pullback(x, [1.0], order=3)
        >>> grads = pullback(2 * T / T[3].size * (np.arange(4) == 3)[:, None, None])  # of mean(u_xxx**2)
        >>> [g.shape for g in grads]
        [(1, 8), (8,), (8, 1)]
        """
        owner = "Network.taylor_and_pullback"
        x = _taylor_input(self, x, owner, order, params=True)
        order = as_order(order, owner)
        v = direction(v, x.shape, owner, "v")
        T, pullback = self._taylor_and_pullback(x, v, order)
        shape = T.shape

        def checked_pullback(grad_T: npt.ArrayLike) -> list[Array]:
            return pullback(direction(grad_T, shape, "pullback", "grad_T", broadcast=False))

        return T, checked_pullback

    def taylor_param_grad(
        self, x: npt.ArrayLike, v: npt.ArrayLike, order: int, grad_T: npt.ArrayLike, chunk_size: Optional[int] = None
    ) -> list[Array]:
        """Gradient of ``sum(grad_T * taylor(x, v, order))`` with respect to each of :attr:`params`.

        Reverse mode over Taylor mode, summed over the batch: each layer's
        ``taylor_vjp`` carries the adjoints of the output coefficients back to its
        input coefficients, its expansion point and its parameters
        (``docs/taylor.md``).  It costs a few Taylor passes.

        Parameters
        ----------
        x, v, order
            As in :meth:`taylor`.
        grad_T : array_like of the shape of ``T``, (order + 1, d_out) or (order + 1, n, d_out)
        chunk_size : int, optional
            As in :meth:`taylor`.

        Returns
        -------
        list of ndarray
            One array per entry of :attr:`params`, of the same shape.

        Raises
        ------
        ValueError, TypeError, NotImplementedError
            As in :meth:`taylor`, and for ``grad_T`` of the wrong shape.

        See Also
        --------
        taylor : the derivatives themselves.
        taylor_and_pullback : one pass for both, for a training step.
        check_param_grads : checks this gradient (taylor=True).

        Examples
        --------
        >>> import numpy as np
        >>> from jacobian_np import Affine, Network, Tanh, check_param_grads
        >>> rng = np.random.default_rng(0)
        >>> net = Network([Affine(rng.normal(size=(2, 6)), rng.normal(size=6)), Tanh(), Affine(rng.normal(size=(6, 1)))])
        >>> x, v = rng.normal(size=(4, 2)), np.array([1.0, 0.0])
        >>> grad_T = rng.normal(size=(4, 4, 1))
        >>> [g.shape for g in net.taylor_param_grad(x, v, 3, grad_T)]
        [(2, 6), (6,), (6, 1)]
        """
        owner = "Network.taylor_param_grad"
        x = _taylor_input(self, x, owner, order, params=True)
        order = as_order(order, owner)
        v = direction(v, x.shape, owner, "v")
        G = np.moveaxis(direction(grad_T, (order + 1,) + x.shape[:-1] + (_width_out(self, x),), owner, "grad_T", broadcast=False), 0, -2)
        rows = _rows(self.layers, x.shape[-1], [1] * order, tape=True)
        chunk = chunk_length(self._per_sample_bytes(x, rows), chunk_size, owner)
        return summed(
            lambda part, v_part, G_part: self._taylor_and_pullback(part, v_part, order)[1](np.moveaxis(G_part, -2, 0)),
            x, chunk, (v, G),
        )

    def laplacian_and_pullback(self, x: npt.ArrayLike, dims: Optional[Sequence[int]] = None) -> tuple[Array, Pullback]:
        """The Laplacian over ``dims``, and a function that maps ``grad_L`` to the parameter gradients.

        ``L, pullback = net.laplacian_and_pullback(x)`` then ``pullback(grad_L)``
        gives the same as ``net.laplacian_param_grad(x, grad_L)``, with one
        forward pass for both: a physics-informed training step.  The forward
        pass is the collapsed one of ``docs/taylor.md``: the first-order
        coefficients of the ``len(dims)`` directions and one summed
        second-order coefficient.  Not chunked (the pullback keeps every
        layer's coefficients alive).

        See Also
        --------
        laplacian : the Laplacian alone.
        laplacian_param_grad : the gradient in one call.
        jacobian_and_pullback : the same for the Jacobian.

        Examples
        --------
        A Poisson residual ``r = Δu - f`` and the gradient of ``mean(r**2)``:

        >>> import numpy as np
        >>> from jacobian_np import Affine, Network, Tanh
        >>> rng = np.random.default_rng(0)
        >>> net = Network([Affine(rng.normal(size=(2, 8)), rng.normal(size=8)), Tanh(), Affine(rng.normal(size=(8, 1)))])
        >>> x = rng.uniform(size=(32, 2))
        >>> L, pullback = net.laplacian_and_pullback(x)
        >>> np.allclose(L, net.laplacian(x))
        True
        >>> r = L - 1.0
        >>> [g.shape for g in pullback(2 * r / len(r))]
        [(2, 8), (8,), (8, 1)]
        """
        owner = "Network.laplacian_and_pullback"
        x = _taylor_input(self, x, owner, 2, params=True)
        dims = input_dims(dims, x.shape[-1], owner)
        L, pullback = self._laplacian_and_pullback(x, dims)
        shape = L.shape

        def checked_pullback(grad_L: npt.ArrayLike) -> list[Array]:
            return pullback(direction(grad_L, shape, "pullback", "grad_L", broadcast=False))

        return L, checked_pullback

    def laplacian_param_grad(
        self,
        x: npt.ArrayLike,
        grad_L: npt.ArrayLike,
        dims: Optional[Sequence[int]] = None,
        chunk_size: Optional[int] = None,
    ) -> list[Array]:
        """Gradient of ``sum(grad_L * laplacian(x, dims))`` with respect to each of :attr:`params`.

        Physics-informed training on ``Δu`` or ``u_xx``: with ``grad_L`` the
        gradient of a loss with respect to the per-sample Laplacians, this is the
        loss's gradient with respect to the parameters, summed over the batch.
        Reverse mode over the collapsed Taylor pass (:meth:`laplacian_and_pullback`).

        Parameters
        ----------
        x : array_like of shape (d_in,) or (n, d_in)
        grad_L : array_like of shape (d_out,) or (n, d_out)
        dims : sequence of int, optional
            The inputs of the Laplacian (all by default).
        chunk_size : int, optional
            Samples per chunk; by default chunks fit the memory budget.

        Returns
        -------
        list of ndarray
            One array per entry of :attr:`params`, of the same shape.

        See Also
        --------
        laplacian : the Laplacian itself.
        laplacian_and_pullback : one pass for both, for a training step.
        param_grad : the gradient of a loss on the output instead.

        Examples
        --------
        >>> import numpy as np
        >>> from jacobian_np import Affine, Network, Tanh, check_param_grads
        >>> rng = np.random.default_rng(0)
        >>> net = Network([Affine(rng.normal(size=(3, 6)), rng.normal(size=6)), Tanh(), Affine(rng.normal(size=(6, 1)))])
        >>> x = rng.normal(size=(10, 3))
        >>> grads = net.laplacian_param_grad(x, np.ones((10, 1)), dims=[0, 1])  # of sum(u_00 + u_11)
        >>> [g.shape for g in grads]
        [(3, 6), (6,), (6, 1)]
        """
        owner = "Network.laplacian_param_grad"
        x = _taylor_input(self, x, owner, 2, params=True)
        dims = input_dims(dims, x.shape[-1], owner)
        G = direction(grad_L, x.shape[:-1] + (_width_out(self, x),), owner, "grad_L", broadcast=False)
        chunk = chunk_length(self._per_sample_bytes(x, _rows(self.layers, x.shape[-1], [len(dims), 1], tape=True)), chunk_size, owner)
        return summed(lambda part, G_part: self._laplacian_and_pullback(part, dims)[1](G_part), x, chunk, (G,))

    def _taylor_and_pullback(self, x: Array, v: Array, order: int) -> tuple[Array, Callable[[Array], list[Array]]]:
        y, cache = self.forward_with_cache(x)
        out, saved = self.push_taylor(_line(v, order), cache, None)
        T = _stack_derivatives(y, out)

        def pullback(grad_T: Array) -> list[Array]:
            grads = [grad_T[k][..., None, :] * math.factorial(k) for k in range(1, order + 1)]
            return self.pull_taylor(grad_T[0], grads, saved, cache, None, False)[2]

        return T, pullback

    def _laplacian_and_pullback(self, x: Array, dims: Sequence[int]) -> tuple[Array, Callable[[Array], list[Array]]]:
        """The collapsed Taylor pass: the first coefficients of the unit directions of ``dims``
        and one summed second coefficient; ``L = 2 sum_k y_2[k]``."""
        batch, d, groups = x.shape[:-1], x.shape[-1], (len(dims),)
        E = np.eye(d, dtype=x.dtype)[list(dims)]
        series = [np.broadcast_to(E, batch + E.shape), zeros(x.dtype, batch + (1, d))]
        _, cache = self._trace(x, self._forward_stop)  # the final constant Jacobians need no values
        out, saved = self.push_taylor(series, cache, groups)
        L = 2 * out[1][..., 0, :]

        def pullback(grad_L: Array) -> list[Array]:
            grads = [zeros(out[0].dtype, out[0].shape), 2 * grad_L[..., None, :]]
            return self.pull_taylor(None, grads, saved, cache, groups, False)[2]

        return L, pullback
