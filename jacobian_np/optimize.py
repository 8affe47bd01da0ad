"""Adapters for ``scipy.optimize``: find the input that gives a target output.

:class:`TargetProblem` turns a network and a target output into the callables
``scipy.optimize.least_squares`` and ``scipy.optimize.minimize(jac=True)`` expect,
with the exact Jacobian.  The network runs once per point: the value and the
Jacobian at the last point are kept, so ``fun(x)`` followed by ``jac(x)`` costs
one :meth:`Network.forward_backward`.  They are reused only while ``x`` and the
network's parameters are unchanged.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import numpy.typing as npt

from ._typing import Array
from ._validation import as_float_array, as_input
from .network import Network


class TargetProblem:
    """The residuals ``net(x) - target`` of one input ``x``, for ``scipy.optimize``.

    Parameters
    ----------
    net : Network
    target : array_like of shape (d_out,)

    Attributes
    ----------
    evaluations : int
        How many times the network has been evaluated (each gives ``y`` and ``J``).

    See Also
    --------
    scipy.optimize.least_squares, scipy.optimize.minimize : the solvers it is made for.
    jacobian_np.Network.forward_backward : what each evaluation computes.

    Notes
    -----
    ``y`` and ``J`` at the last ``x`` are kept and reused while ``x`` and the
    values of ``net.params`` are unchanged: after
    :meth:`Network.set_flat_params`, or an in-place update of a parameter array,
    the next call evaluates the network again.  Checking that costs one
    comparison of the parameters, less than an evaluation.  The residual is
    taken against the current ``target`` at every call.

    Examples
    --------
    Recover an input from the output it produces:

    >>> import numpy as np
    >>> from scipy.optimize import least_squares
    >>> from jacobian_np import Affine, Network, Tanh
    >>> from jacobian_np.optimize import TargetProblem
    >>> rng = np.random.default_rng(0)
    >>> net = Network([Affine(rng.normal(size=(3, 8))), Tanh(), Affine(rng.normal(size=(8, 5)))])
    >>> x_true = np.array([0.3, -0.5, 0.2])
    >>> problem = TargetProblem(net, net.forward(x_true))
    >>> result = least_squares(problem.fun, np.zeros(3), jac=problem.jac)
    >>> bool(np.allclose(result.x, x_true, atol=1e-6)), problem.evaluations == result.nfev
    (True, True)
    """

    def __init__(self, net: Network, target: npt.ArrayLike) -> None:
        if not isinstance(net, Network):
            raise TypeError(f"TargetProblem expects a jacobian_np.Network; got {type(net).__name__}.")
        self.net = net
        self.target = np.array(as_float_array(target, "target"), copy=True)
        if self.target.ndim != 1 or (net.d_out is not None and self.target.shape != (net.d_out,)):
            raise ValueError(
                f"TargetProblem expects target of shape ({net.d_out if net.d_out is not None else 'd_out'},); "
                f"got shape {self.target.shape}."
            )
        self.evaluations = 0
        self._x: Optional[Array] = None
        self._params: list[Array] = []  # copies of net.params at self._x
        self._y: Array = np.zeros(0)
        self._J: Array = np.zeros((0, 0))

    def _evaluate(self, x: npt.ArrayLike) -> None:
        x = as_input(x, self.net.d_in, "TargetProblem")
        if x.ndim != 1:
            raise ValueError(f"TargetProblem expects one point x of shape ({self.net.d_in},); got shape {x.shape}.")
        if self._x is not None and np.array_equal(x, self._x) and self._same_params():
            return
        y, J = self.net.forward_backward(x)
        self._x, self._y, self._J = x.copy(), y, J
        self._params = [np.array(p, copy=True) for p in self.net.params]
        self.evaluations += 1

    def _same_params(self) -> bool:
        params = self.net.params
        return len(params) == len(self._params) and all(
            np.array_equal(p, kept) for p, kept in zip(params, self._params)
        )

    def fun(self, x: npt.ArrayLike) -> Array:
        """The residuals ``net(x) - target``, shape ``(d_out,)``, for ``least_squares``.

        See Also
        --------
        jac, fun_and_jac
        """
        self._evaluate(x)
        return self._y - self.target

    def jac(self, x: npt.ArrayLike) -> Array:
        """Their Jacobian ``d net(x) / dx``, shape ``(d_out, d_in)``, for ``least_squares``.

        See Also
        --------
        fun, fun_and_jac
        """
        self._evaluate(x)
        return self._J.copy()

    def fun_and_jac(self, x: npt.ArrayLike) -> tuple[float, Array]:
        """``0.5 * |net(x) - target|**2`` and its gradient ``J^T r``, for ``minimize(jac=True)``.

        See Also
        --------
        fun, jac
        """
        self._evaluate(x)
        r = self._y - self.target
        return 0.5 * float(r @ r), r @ self._J
