"""Adapters for ``scipy.optimize``: find the input that gives a target output.

:class:`TargetProblem` turns a network and a target output into the callables
``scipy.optimize.least_squares`` and ``scipy.optimize.minimize(jac=True)`` expect,
with the exact Jacobian.  The network runs once per point: the value and the
Jacobian at the last point are kept, so ``fun(x)`` followed by ``jac(x)`` costs
one :meth:`Network.forward_backward`.
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
        self._residual: Array = np.zeros(0)
        self._J: Array = np.zeros((0, 0))

    def _evaluate(self, x: npt.ArrayLike) -> None:
        x = as_input(x, self.net.d_in, "TargetProblem")
        if x.ndim != 1:
            raise ValueError(f"TargetProblem expects one point x of shape ({self.net.d_in},); got shape {x.shape}.")
        if self._x is not None and np.array_equal(x, self._x):
            return
        y, J = self.net.forward_backward(x)
        self._x, self._residual, self._J = x.copy(), y - self.target, J
        self.evaluations += 1

    def fun(self, x: npt.ArrayLike) -> Array:
        """The residuals ``net(x) - target``, shape ``(d_out,)``, for ``least_squares``."""
        self._evaluate(x)
        return self._residual.copy()

    def jac(self, x: npt.ArrayLike) -> Array:
        """Their Jacobian ``d net(x) / dx``, shape ``(d_out, d_in)``, for ``least_squares``."""
        self._evaluate(x)
        return self._J.copy()

    def fun_and_jac(self, x: npt.ArrayLike) -> tuple[float, Array]:
        """``0.5 * |net(x) - target|**2`` and its gradient ``J^T r``, for ``minimize(jac=True)``."""
        self._evaluate(x)
        r = self._residual
        return 0.5 * float(r @ r), r @ self._J
