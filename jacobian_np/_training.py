"""Parameters and their gradients: ``params``, flat get/set, ``param_grad`` (backpropagation)
and training through the Jacobian (``jacobian_param_grad``, ``jacobian_and_pullback``).

``param_grad`` pulls one row back through the layers (``Layer.pull_params``).
Training through the Jacobian is reverse over forward mode: a forward pass
carries the values and the ``d_in`` tangents (``Layer.push_tangents``), then one
backward pass carries their adjoints (``Layer.pull_tangents``,
``docs/training.md``).  Gradients are summed over the batch and over the uses of
a layer that appears more than once.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np
import numpy.typing as npt

from ._chain import require
from ._plans import training_plan_for
from ._typing import Array
from ._validation import as_float_array, as_input, direction


class TrainingMethods:
    """The parameter methods of :class:`~jacobian_np.Network` (see the module)."""

    layers: Any
    d_in: Optional[int]
    d_out: Optional[int]
    params: list
    forward_with_cache: Any
    pull_params: Any
    push_tangents: Any
    pull_tangents: Any
    _batched_sum: Any

    def get_flat_params(self) -> Array:
        """All parameters in one new 1-D array, in the order of :attr:`params`.

        See Also
        --------
        set_flat_params : write such an array back into the layers.
        params : the live parameter arrays, one per layer parameter.
        jacobian_np.optimize.TargetProblem : ``scipy.optimize`` over the inputs instead.

        Examples
        --------
        >>> import numpy as np
        >>> from jacobian_np import Affine, Network
        >>> net = Network([Affine([[1.0, 2.0]], [3.0, 4.0])])
        >>> net.get_flat_params()
        array([1., 2., 3., 4.])
        """
        params = self.params
        if not params:
            return np.zeros(0)
        return np.concatenate([p.ravel() for p in params])

    def set_flat_params(self, theta: npt.ArrayLike) -> None:
        """Write a 1-D array of all parameters (as from :meth:`get_flat_params`) into the layers.

        The parameter arrays are updated in place and keep their dtypes.

        Raises
        ------
        ValueError
            If ``theta`` is not 1-D of the right length, or is not finite.
        TypeError
            If ``theta`` is not real and numeric.

        See Also
        --------
        get_flat_params : the parameters as such an array, in the same order.
        params : the live parameter arrays this writes into.

        Examples
        --------
        >>> import numpy as np
        >>> from jacobian_np import Affine, Network
        >>> net = Network([Affine([[1.0, 2.0]], [3.0, 4.0])])
        >>> net.set_flat_params(net.get_flat_params() * 10)
        >>> net.layers[0].b
        array([30., 40.])
        """
        params = self.params
        theta = as_float_array(theta, "theta")
        size = sum(p.size for p in params)
        if theta.shape != (size,):
            raise ValueError(
                f"set_flat_params expects theta of shape ({size},), one value per parameter; "
                f"got shape {theta.shape}."
            )
        if not np.all(np.isfinite(theta)):
            raise ValueError("set_flat_params expects finite parameters; theta contains NaN or infinity.")
        start = 0
        for p in params:
            p[...] = theta[start : start + p.size].reshape(p.shape)
            start += p.size

    def param_grad(self, x: npt.ArrayLike, grad_y: npt.ArrayLike) -> list[Array]:
        """Gradient of ``sum(grad_y * y(x))`` with respect to each of :attr:`params`.

        Ordinary backpropagation, summed over the batch: with ``grad_y`` the
        gradient of a loss with respect to the outputs, this is the loss's gradient
        with respect to the parameters.

        Parameters
        ----------
        x : array_like of shape (d_in,) or (n, d_in)
        grad_y : array_like of the shape of ``y``, (d_out,) or (n, d_out)

        Returns
        -------
        list of ndarray
            One array per entry of :attr:`params`, of the same shape.

        See Also
        --------
        vjp : the gradient of ``u . y`` with respect to the inputs instead.
        jacobian_param_grad : training through the Jacobian instead of the output.
        check_param_grads : compare with central finite differences.

        Examples
        --------
        >>> import numpy as np
        >>> from jacobian_np import Affine, Network, Tanh
        >>> rng = np.random.default_rng(0)
        >>> net = Network([Affine(rng.normal(size=(2, 4))), Tanh(), Affine(rng.normal(size=(4, 1)))])
        >>> X, target = rng.normal(size=(8, 2)), rng.normal(size=(8, 1))
        >>> y = net.forward(X)
        >>> grads = net.param_grad(X, 2 * (y - target) / len(X))  # of mean((y - target)**2)
        >>> [g.shape for g in grads]
        [(2, 4), (4, 1)]
        """
        x = as_input(x, self.d_in, "Network.param_grad")
        require(self, ("param_grad",), "Network.param_grad")
        d_out = self.d_out or x.shape[-1]
        g = direction(grad_y, x.shape[:-1] + (d_out,), "Network.param_grad", "grad_y", broadcast=False)

        def compute(part: Array, g_part: Array) -> list[Array]:
            _, cache = self.forward_with_cache(part)
            return self.pull_params(g_part, cache, False)[1]

        return self._batched_sum(compute, x, 1, g)

    def jacobian_param_grad(self, x: npt.ArrayLike, grad_J: npt.ArrayLike) -> list[Array]:
        """Gradient of ``sum(grad_J * J(x))`` with respect to each of :attr:`params`.

        Training through the Jacobian: with ``grad_J`` the gradient of a loss with
        respect to the per-sample Jacobians (for example from :func:`jacobian_np.losses.det`),
        this is the loss's gradient with respect to the parameters, summed over
        the batch.  Computed by reverse mode over forward mode: a forward pass
        carries the values and the ``d_in`` tangents, then one backward pass carries
        their adjoints (``docs/training.md``), so it costs a few forward-mode
        Jacobians.

        Parameters
        ----------
        x : array_like of shape (d_in,) or (n, d_in)
        grad_J : array_like of the shape of ``J``, (d_out, d_in) or (n, d_out, d_in)

        Returns
        -------
        list of ndarray
            One array per entry of :attr:`params`, of the same shape.

        Raises
        ------
        NotImplementedError
            If a layer lacks what training through the Jacobian needs (the message
            names it).

        See Also
        --------
        jacobian_and_pullback : ``J`` and this gradient from one pass, when
            ``grad_J`` depends on ``J`` (a training step).
        param_grad : training through the output instead.
        jacobian_np.losses.det, jacobian_np.losses.frobenius_squared : losses of ``J`` with their ``grad_J``.
        check_param_grads : compare with central finite differences.

        Examples
        --------
        Gradient of the mean squared Frobenius norm of ``J``:

        >>> import numpy as np
        >>> from jacobian_np import Affine, Network, Tanh
        >>> rng = np.random.default_rng(0)
        >>> net = Network([Affine(rng.normal(size=(2, 4))), Tanh(), Affine(rng.normal(size=(4, 2)))])
        >>> X = rng.normal(size=(8, 2))
        >>> J = net.jacobian(X)
        >>> grads = net.jacobian_param_grad(X, 2 * J / len(X))
        >>> [g.shape for g in grads]
        [(2, 4), (4, 2)]
        """
        x = as_input(x, self.d_in, "Network.jacobian_param_grad")
        self._require_training("Network.jacobian_param_grad")
        d = x.shape[-1]
        d_out = self.d_out or d
        G = direction(grad_J, x.shape[:-1] + (d_out, d), "Network.jacobian_param_grad", "grad_J", broadcast=False)
        return self._batched_sum(
            lambda part, G_part: self._tangents_and_pullback(part)[1](G_part), x, len(self.layers) * (d + 1), G
        )

    def jacobian_and_pullback(self, x: npt.ArrayLike) -> tuple[Array, Callable[[npt.ArrayLike], list[Array]]]:
        """The Jacobian, and a function that maps ``grad_J`` to the parameter gradients.

        ``J, pullback = net.jacobian_and_pullback(x)`` then ``pullback(grad_J)``
        gives the same as ``net.jacobian_param_grad(x, grad_J)``, but the forward
        and tangent passes run once, for both: use it when the loss's gradient
        ``grad_J`` depends on ``J`` (a training step).  The pullback keeps the
        tangents of every layer alive, so it is not chunked; for large batches use
        :meth:`jacobian` and :meth:`jacobian_param_grad`.

        See Also
        --------
        jacobian_param_grad : the same gradient, chunked, for large batches.
        jacobian : ``J`` alone.
        jacobian_np.losses.det : a loss of ``J`` that returns ``grad_J``.

        Examples
        --------
        >>> import numpy as np
        >>> from jacobian_np import Affine, Network, Tanh, losses
        >>> rng = np.random.default_rng(0)
        >>> net = Network([Affine(rng.normal(size=(2, 5))), Tanh(), Affine(rng.normal(size=(5, 2)))])
        >>> X = rng.normal(size=(16, 2))
        >>> J, pullback = net.jacobian_and_pullback(X)
        >>> d, d_grad = losses.det(J)
        >>> grads = pullback((2 * (d - 1) / len(d))[:, None, None] * d_grad)  # of mean((det J - 1)**2)
        >>> [g.shape for g in grads]
        [(2, 5), (5, 2)]
        """
        x = np.array(as_input(x, self.d_in, "Network.jacobian_and_pullback"))  # ours: the caller may change theirs
        self._require_training("Network.jacobian_and_pullback")
        J, pullback = self._tangents_and_pullback(x)
        shape = J.shape

        def checked_pullback(grad_J: npt.ArrayLike) -> list[Array]:
            return pullback(direction(grad_J, shape, "pullback", "grad_J", broadcast=False))

        return J, checked_pullback

    def _tangents_and_pullback(self, x: Array) -> tuple[Array, Callable[[Array], list[Array]]]:
        """Reverse over forward: the tangent pass now, the adjoints in the pullback.

        Forward: ``z_l = f_l(z_{l-1})`` and ``T_l = tangent_l(T_{l-1})`` with
        ``T_0 = I``, so that ``J = T_L^T``.  Backward, from ``dT_L = G^T`` and
        ``dz_L = 0``: ``dT_{l-1} = backward_l(dT_l)``, and the input of layer ``l``
        collects ``backward_l(dz_l)`` from the values and ``tangent_grad_l(dT_l,
        T_{l-1})`` from the tangents, whose Jacobian depends on it.
        """
        plan = training_plan_for(self, x)  # an execution plan when one applies (see _plans)
        if plan is not None:
            return plan(x)
        _, cache = self.forward_with_cache(x)
        d = x.shape[-1]
        T, saved = self.push_tangents(np.broadcast_to(np.eye(d, dtype=x.dtype), x.shape[:-1] + (d, d)), cache)
        J = np.ascontiguousarray(np.swapaxes(T, -1, -2))

        def pullback(G: Array) -> list[Array]:
            return self.pull_tangents(None, np.swapaxes(G, -1, -2), saved, cache, False)[2]

        return J, pullback

    def _require_training(self, what: str) -> None:
        if self.__dict__.get("_trainable"):  # checked before: the layers cannot change (8 us a call)
            return
        require(self, ("param_grad", "tangent", "tangent_param_grad", "tangent_grad"), what)
        self.__dict__["_trainable"] = True
