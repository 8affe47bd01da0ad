"""First-order entry points: values with Jacobians (forward and reverse mode), ``jvp``, ``vjp``, ``divergence``.

Reverse mode starts from the symbolic identity at the output and pulls it back
through every layer (``Layer.pull``); forward mode pushes the identity at the
input forward (``Layer.push``).  The layers decide what the identity becomes
(``docs/modes.md``).  Methods here validate, check capabilities, choose the chunk
size and call a pass; they never ask what kind of layer they have.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import numpy.typing as npt

from ._blocks import Eye, dense
from ._chain import mode_costs, require
from ._chunking import batched, chunk_length
from ._plans import plan_for
from ._typing import Array
from ._validation import as_input, direction, hutchinson_directions, method_and_samples

MODES = ("auto", "forward", "reverse")


class FirstOrderMethods:
    """The first-order methods of :class:`~jacobian_np.Network` (see the module)."""

    layers: Any
    d_in: Optional[int]
    d_out: Optional[int]
    _auto_mode: str
    forward_with_cache: Any
    pull: Any
    push: Any
    _trace: Any
    _batched: Any
    _per_sample_bytes: Any
    _forward_stop: int

    def forward_backward(
        self, x: npt.ArrayLike, mode: str = "auto", chunk_size: Optional[int] = None
    ) -> tuple[Array, Array]:
        """The output and its Jacobian with respect to the input, per sample.

        One forward pass keeps each layer's cache; then, in reverse mode, one
        backward pass starts from the last layer's own Jacobian (no identity seed
        is multiplied; trailing activations scale its rows) and propagates all
        ``d_out`` rows for all samples at once through the remaining layers.
        Forward mode does the mirror image with ``d_in`` tangents.

        Parameters
        ----------
        x : array_like of shape (d_in,) or (n, d_in)
            One point or a batch (``n`` may be 0).
        mode : {"auto", "forward", "reverse"}
            ``"auto"`` (the default) picks the mode with fewer multiply-adds
            (:meth:`mode_costs`).  Both give the same result up to rounding.
        chunk_size : int, optional
            Process a batch this many samples at a time.  By default chunks are
            sized so that each chunk's intermediates fit the memory budget
            (:func:`set_memory_budget`).  The result does not depend on it beyond
            rounding.

        Returns
        -------
        y : ndarray of shape (d_out,) or (n, d_out)
            Same as :meth:`forward`.
        J : ndarray of shape (d_out, d_in) or (n, d_out, d_in)
            ``J[i, j, k] = d y[i, j] / d x[i, k]``; never the cross-sample
            ``(n, d_out, n, d_in)`` form.  C-contiguous and owned by the caller.

        Raises
        ------
        ValueError
            If ``x`` is not 1-D or 2-D or its last axis is not ``d_in``, if ``mode``
            is unknown, or if ``chunk_size`` is not positive.
        TypeError
            If ``x`` is not real and numeric, or ``chunk_size`` is not an integer.
        NotImplementedError
            If ``mode="forward"`` and a layer that forward mode needs lacks
            ``tangent`` (the message names it).

        See Also
        --------
        jacobian : ``J`` alone, skipping work that only ``y`` needs.
        jvp, vjp : one product with ``J`` per sample, without forming ``J``.
        hessian : the second derivatives.
        mode_costs : the cost model behind ``mode="auto"``.
        jacobian_np.dask.forward_backward : the same for a dataset larger than memory.

        Examples
        --------
        >>> import numpy as np
        >>> from jacobian_np import Affine, Network, Tanh
        >>> W = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
        >>> net = Network([Affine(W), Tanh()])
        >>> X = np.array([[0.0, 0.0, 0.0], [0.1, 0.0, -0.1]])
        >>> Y, J = net.forward_backward(X)
        >>> J.shape
        (2, 2, 3)
        >>> np.allclose(J[1], (1 - np.tanh(X[1] @ W) ** 2)[:, None] * W.T)
        True
        >>> np.allclose(net.forward_backward(X, mode="forward")[1], J)
        True
        """
        return self._evaluate(x, mode, chunk_size, with_value=True)  # type: ignore[return-value]

    def jacobian(
        self, x: npt.ArrayLike, mode: str = "auto", chunk_size: Optional[int] = None
    ) -> Array:
        """The Jacobian of the output with respect to the input, per sample.

        The same as ``forward_backward(x, mode, chunk_size)[1]`` (see
        :meth:`forward_backward` for the parameters), but it skips work that only
        the output needs: in forward mode, the values of the final affine layers.

        See Also
        --------
        forward_backward : the output too, and the parameters explained.
        jvp, vjp : one product with ``J`` per sample, cheaper than all of ``J``.
        hessian : the second derivatives.
        divergence : the trace of ``J``, for vector fields.
        check_network : compare ``J`` with central finite differences.
        jacobian_np.dask.jacobian : the same for a dataset larger than memory.

        Examples
        --------
        >>> import numpy as np
        >>> from jacobian_np import Affine, Network, Tanh
        >>> rng = np.random.default_rng(0)
        >>> net = Network([Affine(rng.normal(size=(1, 50))), Tanh(), Affine(rng.normal(size=(50, 501)))])
        >>> net.mode_costs()  # one input, 501 outputs: forward mode is far cheaper
        {'forward': 25651, 'reverse': 75150}
        >>> X = rng.normal(size=(256, 1))
        >>> J = net.jacobian(X)  # mode="auto" picks forward
        >>> J.shape
        (256, 501, 1)
        >>> np.allclose(J, net.jacobian(X, mode="reverse", chunk_size=100))
        True
        """
        return self._evaluate(x, mode, chunk_size, with_value=False)[1]

    def mode_costs(self) -> dict[str, Optional[int]]:
        """Multiply-adds per sample of each mode, the cost model of ``mode="auto"``.

        Reverse mode pushes ``d_out`` rows back from its seed layer, forward mode
        ``d_in`` tangents forward from its seed; each layer passed through costs
        :meth:`Layer.cost` for that many rows (``rows * d_in * d_out`` for
        :class:`Affine`, ``rows * width`` for activations).  Forming the seed costs
        its size, and forward mode adds ``d_out * d_in`` to transpose its result.
        ``"auto"`` picks the cheaper, reverse on a tie.  A mode that is not
        available (a layer lacks ``tangent``) or a network whose widths are not
        known (activations only) has cost ``None``.

        See Also
        --------
        forward_backward, jacobian : take ``mode``; ``"auto"`` picks by these costs.
        Layer.cost : one layer's cost, which these sum.
        set_memory_budget : how many samples a chunk holds, the other speed knob.

        Examples
        --------
        >>> import numpy as np
        >>> from jacobian_np import Affine, Network, ReLU, Softmax
        >>> rng = np.random.default_rng(0)
        >>> net = Network([Affine(rng.normal(size=(500, 100))), ReLU(), Affine(rng.normal(size=(100, 10))), Softmax()])
        >>> net.mode_costs()
        {'forward': 610000, 'reverse': 511100}
        """
        return mode_costs(self.layers, self.d_in)

    def jvp(self, x: npt.ArrayLike, v: npt.ArrayLike, chunk_size: Optional[int] = None) -> tuple[Array, Array]:
        """The output and the Jacobian-vector product ``J v``, per sample, without forming ``J``.

        One forward pass that carries one tangent alongside the values.

        Parameters
        ----------
        x : array_like of shape (d_in,) or (n, d_in)
            One point or a batch.
        v : array_like of shape (d_in,) or (n, d_in)
            The direction at each sample; for a batch, a ``(d_in,)`` vector is
            used at every sample.
        chunk_size : int, optional
            Samples per chunk; by default chunks fit the memory budget.

        Returns
        -------
        y : ndarray of shape (d_out,) or (n, d_out)
        Jv : ndarray of shape (d_out,) or (n, d_out)
            ``Jv[i] = J(x[i]) @ v[i]``: the directional derivative of the output.

        Raises
        ------
        ValueError
            If the shapes of ``x`` or ``v`` are wrong.
        NotImplementedError
            If a layer lacks ``tangent`` (the message names it).

        See Also
        --------
        vjp : ``u^T J``, by reverse mode.
        jacobian : the whole ``J``.
        divergence : the trace of ``J`` from forward-mode products.
        jacobian_np.dask.jvp : the same for a dataset larger than memory.

        Examples
        --------
        >>> import numpy as np
        >>> from jacobian_np import Affine, Network, Tanh
        >>> rng = np.random.default_rng(0)
        >>> net = Network([Affine(rng.normal(size=(3, 4))), Tanh(), Affine(rng.normal(size=(4, 2)))])
        >>> X, V = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
        >>> y, Jv = net.jvp(X, V)
        >>> Jv.shape
        (5, 2)
        >>> np.allclose(Jv, np.einsum("ijk,ik->ij", net.jacobian(X), V))
        True
        """
        x = as_input(x, self.d_in, "Network.jvp")
        v = direction(v, x.shape, "Network.jvp", "v")
        require(self, ("tangent",), "Network.jvp", "Implement it, or use reverse mode (vjp).")

        def compute(part: Array, v_part: Array) -> tuple[Array, Array]:
            y, cache = self.forward_with_cache(part)
            return y, dense(self.push(v_part[..., None, :], cache, False)[0])[..., 0, :]

        return self._batched(compute, x, chunk_size, 1, "Network.jvp", v)

    def vjp(self, x: npt.ArrayLike, u: npt.ArrayLike, chunk_size: Optional[int] = None) -> tuple[Array, Array]:
        """The output and the vector-Jacobian product ``u^T J``, per sample, without forming ``J``.

        One forward pass, then one backward pass that carries one row.

        Parameters
        ----------
        x : array_like of shape (d_in,) or (n, d_in)
            One point or a batch.
        u : array_like of shape (d_out,) or (n, d_out)
            The weights of the outputs at each sample; for a batch, a ``(d_out,)``
            vector is used at every sample.
        chunk_size : int, optional
            Samples per chunk; by default chunks fit the memory budget.

        Returns
        -------
        y : ndarray of shape (d_out,) or (n, d_out)
        uJ : ndarray of shape (d_in,) or (n, d_in)
            ``uJ[i] = u[i] @ J(x[i])``: the gradient of ``u[i] . y[i]`` with
            respect to ``x[i]``.

        Raises
        ------
        ValueError
            If the shapes of ``x`` or ``u`` are wrong.

        See Also
        --------
        jvp : ``J v``, by forward mode.
        jacobian : the whole ``J``.
        param_grad : the gradient with respect to the parameters instead.
        jacobian_np.dask.vjp : the same for a dataset larger than memory.

        Examples
        --------
        >>> import numpy as np
        >>> from jacobian_np import Affine, Network, Tanh
        >>> rng = np.random.default_rng(0)
        >>> net = Network([Affine(rng.normal(size=(3, 4))), Tanh(), Affine(rng.normal(size=(4, 2)))])
        >>> X, U = rng.normal(size=(5, 3)), rng.normal(size=(5, 2))
        >>> y, uJ = net.vjp(X, U)
        >>> uJ.shape
        (5, 3)
        >>> np.allclose(uJ, np.einsum("ij,ijk->ik", U, net.jacobian(X)))
        True
        """
        x = as_input(x, self.d_in, "Network.vjp")
        d_out = self.d_out or x.shape[-1]
        u = direction(u, x.shape[:-1] + (d_out,), "Network.vjp", "u")

        def compute(part: Array, u_part: Array) -> tuple[Array, Array]:
            y, cache = self.forward_with_cache(part)
            return y, dense(self.pull(u_part[..., None, :], cache, False)[0])[..., 0, :]

        return self._batched(compute, x, chunk_size, 1, "Network.vjp", u)

    def divergence(
        self, x: npt.ArrayLike, method: str = "exact", samples: Optional[int] = None, seed: Any = None
    ) -> Array:
        """The divergence ``sum_k dy_k / dx_k`` of a vector field, per sample.

        For networks with ``d_in == d_out`` (normalising flows, score matching).
        ``method="exact"`` is the trace of the Jacobian, computed by forward mode
        one chunk at a time; ``method="hutchinson"`` is the unbiased estimate
        ``mean_s v_s^T J v_s`` over ``samples`` random Rademacher directions
        ``v_s`` per sample, drawn with ``numpy.random.default_rng(seed)``: one
        forward pass with ``samples`` tangents (``docs/taylor.md``).

        Parameters
        ----------
        x : array_like of shape (d,) or (n, d)
        method : {"exact", "hutchinson"}
        samples : int, optional
            Number of directions; required for ``"hutchinson"``.
        seed : int or numpy.random.Generator, optional
            Makes the estimate reproducible.

        Returns
        -------
        ndarray of shape () or (n,)

        Raises
        ------
        ValueError
            If ``d_in != d_out``, or for a bad ``method`` or ``samples``.

        See Also
        --------
        jacobian : the whole ``J``, whose trace this is.
        jvp : one forward-mode product ``J v``.
        laplacian : the divergence of the gradient (second derivatives).

        Examples
        --------
        >>> import numpy as np
        >>> from jacobian_np import Affine, Network, Tanh
        >>> rng = np.random.default_rng(0)
        >>> field = Network([Affine(rng.normal(size=(3, 8))), Tanh(), Affine(rng.normal(size=(8, 3)))])
        >>> X = rng.normal(size=(4, 3))
        >>> div = field.divergence(X)
        >>> np.allclose(div, np.trace(field.jacobian(X), axis1=-2, axis2=-1))
        True
        >>> estimate = field.divergence(X, method="hutchinson", samples=2000, seed=0)
        >>> bool(np.all(np.abs(estimate - div) < 0.2 * (1 + np.abs(div))))
        True
        """
        x = as_input(x, self.d_in, "Network.divergence")
        width_out = self.footprint(x.shape[-1])[0]  # type: ignore[attr-defined]
        if width_out != x.shape[-1]:
            raise ValueError(
                f"Network.divergence needs as many outputs as inputs (a vector field); "
                f"this network maps {x.shape[-1]} inputs to {width_out} outputs."
            )
        method, samples = method_and_samples(method, samples, "Network.divergence")
        require(self, ("tangent",), "Network.divergence")
        if method == "exact":
            directions = np.broadcast_to(np.eye(x.shape[-1], dtype=x.dtype), x.shape + x.shape[-1:])
        else:
            directions = hutchinson_directions(x, samples, range(x.shape[-1]), seed)

        def compute(part: Array, V: Array) -> tuple[Array]:
            _, cache = self.forward_with_cache(part)
            JV = dense(self.push(V.astype(part.dtype, copy=False), cache, False)[0])
            return (np.einsum("...sk,...sk->...", JV, V) / V.shape[-2],) if method != "exact" else (
                np.einsum("...kk->...", JV),
            )

        rows = directions.shape[-2]
        return self._batched(compute, x, None, rows, "Network.divergence", directions)[0]

    def _evaluate(
        self, x: npt.ArrayLike, mode: str, chunk_size: Optional[int], with_value: bool
    ) -> tuple[Optional[Array], Array]:
        """Validate the arguments; then the Jacobian, and ``y`` if ``with_value``, in chunks."""
        x = as_input(x, self.d_in, "Network")
        mode = self._auto_mode if mode == "auto" else self._resolve_mode(mode)
        rows = x.shape[-1] if mode == "forward" else self.d_out or x.shape[-1]  # carried per sample
        # an execution plan when one applies (see _plans), else the generic passes
        plan = plan_for(self, "value_and_jacobian" if with_value else "jacobian", mode, x, chunk_size, rows)
        if plan is not None:
            return plan(x)
        if x.ndim == 1 and chunk_size is None:  # one point, nothing to chunk: the hot path of small nets
            return self._value_and_jacobian(x, mode, with_value)
        chunk = chunk_length(self._per_sample_bytes(x, rows), chunk_size, "Network")
        return batched(lambda part: self._value_and_jacobian(part, mode, with_value), x, chunk)

    def _value_and_jacobian(self, x: Array, mode: str, with_value: bool) -> tuple[Optional[Array], Array]:
        if mode == "reverse":
            y, cache = self.forward_with_cache(x)
            J = dense(self.pull(Eye(y), cache, False)[0])
        else:
            # the final layers with constant Jacobians need no values for their tangents
            y, cache = self._trace(x, len(self.layers) if with_value else self._forward_stop)
            J = np.swapaxes(dense(self.push(Eye(x), cache, False)[0]), -1, -2)
        flags = J.flags
        if not (flags.writeable and flags.c_contiguous):  # a view (of weights, or transposed)
            J = np.array(J, order="C")
        return (y if with_value else None), J

    def _resolve_mode(self, mode: str) -> str:
        if mode == "auto":
            return self._auto_mode
        if mode == "forward":
            require(self, ("tangent",), "forward mode", "Implement it, or use reverse mode (mode='reverse', vjp).")
            return mode
        if mode == "reverse":
            return mode
        raise ValueError(f"mode must be one of {', '.join(map(repr, MODES))}; got {mode!r}.")
