"""Network: a chain of layers, with its value and input Jacobian in one call.

Two ways to form the Jacobian (``docs/modes.md``):

- reverse mode seeds the output end and pushes ``d_out`` rows back through the
  layers with ``backward``;
- forward mode seeds the input end and pushes ``d_in`` tangents forward with
  ``tangent``.

``mode="auto"`` picks the one with fewer multiply-adds, counted from the layer
widths.  Batches are processed in chunks so that the intermediates stay within a
memory budget (:func:`set_memory_budget`).
"""

from __future__ import annotations

import functools
import operator
import warnings
from typing import Any, Callable, Iterable, Optional, cast

import numpy as np
import numpy.typing as npt

from ._taylor_methods import TaylorMethods
from ._typing import Array
from ._validation import as_float_array, as_input
from .errors import ZeroCurvatureWarning
from .layer import Elementwise, Layer, _diag_embed, implements

MODES = ("auto", "forward", "reverse")

#: Default memory budget for the intermediates of one chunk, in bytes.
DEFAULT_MEMORY_BUDGET = 8 * 2**20
_memory_budget = DEFAULT_MEMORY_BUDGET


def set_memory_budget(nbytes: int) -> int:
    """Set the memory budget for a Jacobian's intermediates; return the previous one.

    With ``chunk_size=None``, :meth:`Network.jacobian` and
    :meth:`Network.forward_backward` process a batch in chunks small enough that the
    arrays a chunk's pass creates (the blocks of Jacobian rows or tangents it
    carries) stay within this many bytes.  The result itself, ``J`` of shape
    ``(n, d_out, d_in)``, is not counted: it is allocated once, whole.  The
    default, :data:`DEFAULT_MEMORY_BUDGET`, is 8 MiB: chunks that size keep the
    intermediates in cache while their matrix products are still large enough to
    be efficient (on a 64 -> 256 -> 256 -> 32 network at batch 4,096, 4 to 8 MiB
    chunks ran 20% faster than 64 MiB ones).

    Parameters
    ----------
    nbytes : int
        A positive number of bytes.

    Returns
    -------
    int
        The budget that was in force, to restore later.

    Examples
    --------
    >>> import jacobian_np as jn
    >>> previous = jn.set_memory_budget(2**30)  # 1 GiB: fewer, larger chunks
    >>> jn.get_memory_budget()
    1073741824
    >>> jn.set_memory_budget(previous) == 2**30
    True
    """
    global _memory_budget
    nbytes = _positive_int(nbytes, "set_memory_budget", "nbytes")
    previous, _memory_budget = _memory_budget, nbytes
    return previous


def get_memory_budget() -> int:
    """The memory budget in bytes (see :func:`set_memory_budget`).

    Examples
    --------
    >>> import jacobian_np as jn
    >>> jn.get_memory_budget() == jn.network.DEFAULT_MEMORY_BUDGET
    True
    """
    return _memory_budget


class Network(TaylorMethods):
    """A feed-forward chain of layers, ``y = layers[-1](... layers[0](x))``.

    Parameters
    ----------
    layers : iterable of Layer
        Applied in order.  Consecutive widths must chain.

    Raises
    ------
    TypeError
        If an element is not a :class:`Layer`.
    ValueError
        If there are no layers, or a layer's ``d_in`` differs from the width the
        previous layers output (the message names the layer index and both widths).

    Attributes
    ----------
    layers : tuple of Layer
    d_in, d_out : int or None
        Input and output widths; ``None`` when no layer fixes them (for example a
        network of activations only, which accepts any width).

    See Also
    --------
    check_network : compare the Jacobian with finite differences.

    Notes
    -----
    Shapes follow ``docs/conventions.md``: one point ``x`` of shape ``(d_in,)``, or a
    batch of shape ``(n, d_in)`` with per-sample Jacobians
    ``J[i, j, k] = d y[i, j] / d x[i, k]``.

    Examples
    --------
    >>> import numpy as np
    >>> from jacobian_np import Affine, Network, Tanh
    >>> rng = np.random.default_rng(0)
    >>> net = Network([Affine(rng.normal(size=(2, 5))), Tanh(), Affine(rng.normal(size=(5, 3)))])
    >>> net
    Network([Affine(d_in=2, d_out=5), Tanh(), Affine(d_in=5, d_out=3)])
    >>> net.d_in, net.d_out
    (2, 3)
    """

    def __init__(self, layers: Iterable[Layer]) -> None:
        self.layers = tuple(layers)
        if not self.layers:
            raise ValueError("Network needs at least one layer; got none.")
        for index, layer in enumerate(self.layers):
            if isinstance(layer, type) and issubclass(layer, Layer):
                raise TypeError(
                    f"layer {index} is the class {layer.__name__}; pass an instance, "
                    f"{layer.__name__}(...)."
                )
            if not isinstance(layer, Layer):
                raise TypeError(
                    f"layer {index} must be a jacobian_np.Layer; got {type(layer).__name__}."
                )
        self.d_in, self.d_out = _chain_widths(self.layers)
        # Each mode is seeded by the layer nearest its end that is not elementwise;
        # the elementwise layers beyond it become a scaling of the seed's rows.
        # Reverse mode: the last such layer; forward mode: the first.
        elementwise = [isinstance(layer, Elementwise) for layer in self.layers]
        self._elementwise = tuple(elementwise)
        # whether each layer's backward/tangent returns a new array that nothing else references
        self._fresh = {
            method: tuple(getattr(getattr(type(layer), method), "returns_new", False) for layer in self.layers)
            for method in ("backward", "tangent")
        }
        last = len(elementwise) - elementwise[::-1].index(False) if False in elementwise else 0
        first = elementwise.index(False) if False in elementwise else len(elementwise)
        self._seed_index = last - 1  # -1 for a network of activations only
        self._trailing = cast("tuple[Elementwise, ...]", self.layers[last:])
        self._first_index = first  # len(layers) for a network of activations only
        # forward mode without the output: the values of layers[_forward_stop:] are not needed
        self._forward_stop = len(self.layers)
        while self._forward_stop > first + 1 and self.layers[self._forward_stop - 1].constant_jacobian:
            self._forward_stop -= 1
        self._leading = cast("tuple[Elementwise, ...]", self.layers[:first])
        self._widths = _layer_widths(self.layers, self.d_in)
        self._auto_mode = self._choose_mode()

    # --- values --------------------------------------------------------------------

    def forward(self, x: npt.ArrayLike) -> Array:
        """The network's output.

        Parameters
        ----------
        x : array_like of shape (d_in,) or (n, d_in)
            One point or a batch.  Integers and booleans are converted to float64.

        Returns
        -------
        y : ndarray of shape (d_out,) or (n, d_out)

        Examples
        --------
        >>> import numpy as np
        >>> from jacobian_np import Affine, Network, ReLU
        >>> net = Network([Affine([[1.0, -1.0]]), ReLU()])
        >>> net.forward([2.0])
        array([2., 0.])
        >>> net.forward([[2.0], [-3.0]])
        array([[2., 0.],
               [0., 3.]])
        """
        x = as_input(x, self.d_in, "Network")
        for layer in self.layers:
            x, _ = layer.forward(x)
        return x

    # --- Jacobians -----------------------------------------------------------------

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

        Examples
        --------
        >>> import numpy as np
        >>> from jacobian_np import Affine, Network, ReLU, Softmax
        >>> rng = np.random.default_rng(0)
        >>> net = Network([Affine(rng.normal(size=(500, 100))), ReLU(), Affine(rng.normal(size=(100, 10))), Softmax()])
        >>> net.mode_costs()
        {'forward': 610000, 'reverse': 511100}
        """
        widths = self._widths
        if widths is None:
            return {"forward": None, "reverse": None}
        d_in, d_out = widths[0][0], widths[-1][1]
        costs: dict[str, Optional[int]] = {"forward": None, "reverse": None}
        if not self._lacking_tangent():
            s = self._first_index
            passed = range(s + 1, len(self.layers))
            costs["forward"] = (
                widths[s][0] * widths[s][1]
                + sum(self.layers[i].cost(d_in, *widths[i]) for i in passed)
                + d_in * d_out
            )
        r = self._seed_index
        costs["reverse"] = widths[r][0] * widths[r][1] + sum(
            self.layers[i].cost(d_out, *widths[i]) for i in range(r)
        )
        return costs

    def jvp(self, x: npt.ArrayLike, v: npt.ArrayLike) -> tuple[Array, Array]:
        """The output and the Jacobian-vector product ``J v``, per sample, without forming ``J``.

        One forward pass that carries one tangent alongside the values.

        Parameters
        ----------
        x : array_like of shape (d_in,) or (n, d_in)
            One point or a batch.
        v : array_like of shape (d_in,) or (n, d_in)
            The direction at each sample; for a batch, a ``(d_in,)`` vector is
            used at every sample.

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
        v = _direction(v, x.shape, "Network.jvp", "v")
        self._require_tangent(0, "Network.jvp")
        outputs, caches = self._trace(x)
        T = v[..., None, :]
        for layer, cache in zip(self.layers, caches):
            T = layer.tangent(T, cache)
        return outputs[-1], T[..., 0, :]

    def vjp(self, x: npt.ArrayLike, u: npt.ArrayLike) -> tuple[Array, Array]:
        """The output and the vector-Jacobian product ``u^T J``, per sample, without forming ``J``.

        One forward pass, then one backward pass that carries one row.

        Parameters
        ----------
        x : array_like of shape (d_in,) or (n, d_in)
            One point or a batch.
        u : array_like of shape (d_out,) or (n, d_out)
            The weights of the outputs at each sample; for a batch, a ``(d_out,)``
            vector is used at every sample.

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
        outputs, caches = self._trace(x)
        y = outputs[-1]
        U = _direction(u, y.shape, "Network.vjp", "u")[..., None, :]
        for layer, cache in zip(self.layers[::-1], caches[::-1]):
            U = layer.backward(U, cache)
        return y, U[..., 0, :]

    # --- parameters and training ---------------------------------------------------

    @property
    def params(self) -> list[Array]:
        """The parameter arrays of all layers in layer order, ``[W1, b1, W2, ...]``.

        The live arrays, not copies: writing into them changes the network.

        Examples
        --------
        >>> import numpy as np
        >>> from jacobian_np import Affine, Network, Tanh
        >>> net = Network([Affine(np.ones((2, 3)), np.zeros(3)), Tanh(), Affine(np.ones((3, 1)))])
        >>> [p.shape for p in net.params]
        [(2, 3), (3,), (3, 1)]
        """
        return [p for layer in self.layers for p in layer.params]

    def get_flat_params(self) -> Array:
        """All parameters in one new 1-D array, in the order of :attr:`params`.

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
        self._require_param_grads("Network.param_grad", tangents=False)
        outputs, caches = self._trace(x)
        g = _direction(grad_y, outputs[-1].shape, "Network.param_grad", "grad_y", broadcast=False)
        grads: list[list[Array]] = []
        for index in range(len(self.layers) - 1, -1, -1):
            layer, cache = self.layers[index], caches[index]
            grads.append(layer.param_grad(g, cache) if layer.params else [])
            if index:
                g = layer.backward(g[..., None, :], cache)[..., 0, :]
        return [grad for layer_grads in grads[::-1] for grad in layer_grads]

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
        self._require_param_grads("Network.jacobian_param_grad", tangents=True)
        d = x.shape[-1]
        d_out = self.d_out or d
        G = _direction(grad_J, x.shape[:-1] + (d_out, d), "Network.jacobian_param_grad", "grad_J", broadcast=False)
        chunk = self._auto_chunk_size(x, len(self.layers) * (d + 1)) if x.ndim == 2 else len(x)
        if x.ndim == 1 or len(x) <= chunk:
            return self._jacobian_param_grad(x, G)
        total = [np.zeros_like(p) for p in self.params]
        for start in range(0, len(x), chunk):
            part = slice(start, start + chunk)
            for t, g in zip(total, self._jacobian_param_grad(x[part], G[part])):
                t += g
        return total

    def jacobian_and_pullback(self, x: npt.ArrayLike) -> tuple[Array, Callable[[npt.ArrayLike], list[Array]]]:
        """The Jacobian, and a function that maps ``grad_J`` to the parameter gradients.

        ``J, pullback = net.jacobian_and_pullback(x)`` then ``pullback(grad_J)``
        gives the same as ``net.jacobian_param_grad(x, grad_J)``, but the forward
        and tangent passes run once, for both: use it when the loss's gradient
        ``grad_J`` depends on ``J`` (a training step).  The pullback keeps the
        tangents of every layer alive, so it is not chunked; for large batches use
        :meth:`jacobian` and :meth:`jacobian_param_grad`.

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
        x = as_input(x, self.d_in, "Network.jacobian_and_pullback")
        self._require_param_grads("Network.jacobian_and_pullback", tangents=True)
        J, pullback = self._tangents_and_pullback(x)
        shape = J.shape

        def checked_pullback(grad_J: npt.ArrayLike) -> list[Array]:
            return pullback(_direction(grad_J, shape, "pullback", "grad_J", broadcast=False))

        return J, checked_pullback

    def _jacobian_param_grad(self, x: Array, G: Array) -> list[Array]:
        return self._tangents_and_pullback(x)[1](G)

    def _tangents_and_pullback(self, x: Array) -> tuple[Array, Callable[[Array], list[Array]]]:
        """Reverse over forward: the tangent pass now, the adjoints in the pullback.

        Forward: ``z_l = f_l(z_{l-1})`` and ``T_l = tangent_l(T_{l-1})`` with
        ``T_0 = I``, so that ``J = T_L^T``.  Backward, from ``dT_L = G^T`` and
        ``dz_L = 0``: ``dT_{l-1} = backward_l(dT_l)``, and the input of layer ``l``
        collects ``backward_l(dz_l)`` from the values and ``tangent_grad_l(dT_l,
        T_{l-1})`` from the tangents, whose Jacobian depends on it.
        """
        outputs, caches = self._trace(x)
        d = x.shape[-1]
        # an elementwise layer's f' and f'' are computed once and used four times
        derivatives: list[Any] = [
            cast(Elementwise, layer).fprimes(*cache) if elementwise else None
            for layer, cache, elementwise in zip(self.layers, caches, self._elementwise)
        ]
        T: Array = np.broadcast_to(np.eye(d, dtype=x.dtype), x.shape[:-1] + (d, d))
        tangents_in = []
        for index, (layer, cache) in enumerate(zip(self.layers, caches)):
            tangents_in.append(T)
            f = derivatives[index]
            T = T * f[0][..., None, :] if f is not None else layer.tangent(T, cache)
        J = np.ascontiguousarray(np.swapaxes(T, -1, -2))

        def pullback(G: Array) -> list[Array]:
            dT = np.swapaxes(G, -1, -2)  # the adjoint of T_L = J^T
            dz: Optional[Array] = None  # the adjoint of the values: J does not depend on the output
            grads: list[list[Array]] = []
            for index in range(len(self.layers) - 1, -1, -1):
                layer, cache, T_in, f = self.layers[index], caches[index], tangents_in[index], derivatives[index]
                layer_grads = []
                if layer.params:
                    layer_grads = layer.tangent_param_grad(dT, T_in, cache)
                    if dz is not None:
                        layer_grads = [a + b for a, b in zip(layer_grads, layer.param_grad(dz, cache))]
                grads.append(layer_grads)
                if index == 0:
                    break
                if f is not None:  # elementwise: dz_in = f' dz + f'' sum_k dT_k T_k
                    dz_in = (dT * T_in).sum(axis=-2)
                    dz_in *= f[1]
                    if dz is not None:
                        dz_in += dz * f[0]
                    dz, dT = dz_in, dT * f[0][..., None, :]
                    continue
                dz_in = None if dz is None else layer.backward(dz[..., None, :], cache)[..., 0, :]
                if not layer.constant_jacobian:
                    bend = layer.tangent_grad(dT, T_in, cache)
                    dz_in = bend if dz_in is None else dz_in + bend
                dz = dz_in
                dT = layer.backward(dT, cache)
            return [grad for layer_grads in grads[::-1] for grad in layer_grads]

        return J, pullback

    def _require_param_grads(self, what: str, tangents: bool) -> None:
        lacking = []
        for index, layer in enumerate(self.layers):
            needs = []
            if layer.params and type(layer).param_grad is Layer.param_grad:
                needs.append("param_grad")
            if tangents:
                if not implements(layer, "tangent"):
                    needs.append("tangent")
                if layer.params and type(layer).tangent_param_grad is Layer.tangent_param_grad:
                    needs.append("tangent_param_grad")
                if not (layer.constant_jacobian or implements(layer, "tangent_grad")):
                    needs.append("fsecond" if isinstance(layer, Elementwise) else "tangent_grad")
            if needs:
                lacking.append(f"layer {index} ({type(layer).__name__}) lacks {', '.join(needs)}")
        if lacking:
            raise NotImplementedError(f"{what}: {'; '.join(lacking)}.")

    # --- second order -------------------------------------------------------------

    def hessian(self, x: npt.ArrayLike, chunk_size: Optional[int] = None) -> Array:
        """Second derivatives of the outputs with respect to the inputs, per sample.

        Forward over forward mode: one pass carries, alongside the values, the
        ``d_in`` first tangents and the ``d_in (d_in + 1) / 2`` second tangents of
        the pairs ``k <= l``; the other half is filled by symmetry.  Each affine
        layer costs one matrix product for each block.  See ``docs/second_order.md``.

        Parameters
        ----------
        x : array_like of shape (d_in,) or (n, d_in)
            One point or a batch (``n`` may be 0).
        chunk_size : int, optional
            Samples per chunk, as in :meth:`jacobian`; by default chunks fit the
            memory budget.

        Returns
        -------
        H : ndarray of shape (d_out, d_in, d_in) or (n, d_out, d_in, d_in)
            ``H[i, j, k, l] = d^2 y[i, j] / dx[i, k] dx[i, l]``, exactly symmetric
            in ``k, l``.

        Raises
        ------
        NotImplementedError
            If a layer lacks second-order support (the message names it).

        Warns
        -----
        ZeroCurvatureWarning
            If every layer is piecewise linear (ReLU, LeakyReLU, Identity, Affine):
            the result is then zero almost everywhere.

        Examples
        --------
        >>> import numpy as np
        >>> from jacobian_np import Affine, Network, Tanh
        >>> net = Network([Affine([[1.0, 2.0]]), Tanh(), Affine([[1.0], [1.0]])])
        >>> x = np.array([[0.3], [-0.2]])
        >>> H = net.hessian(x)
        >>> H.shape
        (2, 1, 1, 1)
        >>> t1, t2 = np.tanh(x), np.tanh(2 * x)  # y = tanh(x) + tanh(2x)
        >>> np.allclose(H[:, 0, 0, 0], (-2 * t1 * (1 - t1**2) - 8 * t2 * (1 - t2**2))[:, 0])
        True
        """
        return self._second_order(x, chunk_size, "hessian")

    def laplacian(self, x: npt.ArrayLike, chunk_size: Optional[int] = None) -> Array:
        """The Laplacian of each output, ``sum_k d^2 y_j / dx_k^2``, per sample.

        The trace of :meth:`hessian` over the inputs, computed without it: the pass
        carries the ``d_in`` first tangents and only the ``d_in`` second tangents of
        the pairs ``(k, k)``, so it costs ``O(d_in)`` blocks instead of
        ``O(d_in**2)``.

        Parameters
        ----------
        x : array_like of shape (d_in,) or (n, d_in)
        chunk_size : int, optional
            As in :meth:`hessian`.

        Returns
        -------
        ndarray of shape (d_out,) or (n, d_out)

        Raises
        ------
        NotImplementedError
            If a layer lacks second-order support (the message names it).

        Warns
        -----
        ZeroCurvatureWarning
            As in :meth:`hessian`.

        Examples
        --------
        >>> import numpy as np
        >>> from jacobian_np import Affine, Network, Tanh
        >>> rng = np.random.default_rng(0)
        >>> net = Network([Affine(rng.normal(size=(3, 16))), Tanh(), Affine(rng.normal(size=(16, 1)))])
        >>> X = rng.normal(size=(5, 3))
        >>> lap = net.laplacian(X)
        >>> lap.shape
        (5, 1)
        >>> np.allclose(lap, np.trace(net.hessian(X), axis1=-2, axis2=-1))
        True
        """
        return self._second_order(x, chunk_size, "laplacian")

    def _second_order(self, x: npt.ArrayLike, chunk_size: Optional[int], kind: str) -> Array:
        x = as_input(x, self.d_in, f"Network.{kind}")
        lacking = [
            f"layer {index} ({type(layer).__name__})"
            for index, layer in enumerate(self.layers)
            if not (layer.constant_jacobian or implements(layer, "curvature"))
        ]
        if lacking:
            raise NotImplementedError(
                f"Network.{kind} needs second-order support (Layer.curvature, or fsecond for "
                f"an Elementwise layer), which {', '.join(lacking)} does not implement."
            )
        if all(layer.piecewise_linear for layer in self.layers):
            warnings.warn(
                f"Network.{kind}: every layer is piecewise linear ("
                + ", ".join(sorted({type(layer).__name__ for layer in self.layers}))
                + "), so second derivatives are zero almost everywhere. For nonzero "
                "curvature use smooth activations such as Tanh, Softplus, GELU or SiLU.",
                ZeroCurvatureWarning,
                stacklevel=3,
            )
        d = x.shape[-1]
        pairs = d * (d + 1) // 2 if kind == "hessian" else d
        (S,) = self._batched(
            lambda part: (self._second_tangents(part, kind == "hessian"),), x, chunk_size, d + pairs, f"Network.{kind}"
        )
        return self._assemble(S, d, kind)

    def _second_tangents(self, x: Array, all_pairs: bool) -> Array:
        """Second tangents of the output, ``(*batch, P, d_out)``, for the pairs
        ``k <= l`` (``all_pairs``) or ``(k, k)`` of input directions.

        Forward over forward: for ``z = f(x)`` with first tangents ``T`` and second
        tangents ``S`` of ``x``, those of ``z`` are ``J T`` and
        ``J S + D^2 f[T_k, T_l]``.  The input has ``T = I`` and ``S = 0``.
        """
        # the final layers with constant Jacobians need no values
        outputs, caches = self._trace(x, self._forward_stop)
        caches += [None] * (len(self.layers) - self._forward_stop)
        d = x.shape[-1]
        pairs = _upper_pairs(d) if all_pairs and d > 1 else None  # None: the pairs (k, k)
        T: Array = np.broadcast_to(np.eye(d, dtype=x.dtype), x.shape[:-1] + (d, d))
        S: Optional[Array] = None  # zero
        curved = [i for i, layer in enumerate(self.layers) if not layer.constant_jacobian]
        last_curved = curved[-1] if curved else -1
        for index, layer in enumerate(self.layers):
            cache = caches[index]
            u, v = (T, T) if pairs is None else (np.take(T, pairs[0], axis=-2), np.take(T, pairs[1], axis=-2))
            if self._elementwise[index]:
                # f' and f'' once, for the three products (J T, J S, D^2 f[u, v])
                first, second = (g[..., None, :] for g in cast(Elementwise, layer).fprimes(*cache))
                curvature = u * v
                curvature *= second
                if S is not None:
                    curvature += S * first
                S = curvature
                if index < last_curved:
                    T = T * first
                continue
            S_next = None if S is None else layer.tangent(S, cache)
            if not layer.constant_jacobian:  # constant Jacobian: no curvature
                bend = layer.curvature(u, v, cache)
                S_next = bend if S_next is None else S_next + bend
            # first tangents are needed up to the last layer with curvature
            if index < last_curved or S_next is None:
                T = layer.tangent(T, cache)
            S = S_next
        if S is None:  # every layer has a constant Jacobian: the network is affine
            P = d if pairs is None else len(pairs[0])
            return np.zeros(T.shape[:-2] + (P, T.shape[-1]), dtype=T.dtype)
        return S

    def _assemble(self, S: Array, d: int, kind: str) -> Array:
        """The Hessian (symmetric, from the pairs ``k <= l``) or the Laplacian from ``S``."""
        if kind == "laplacian":  # a sum over the few pairs: faster than S.sum(axis=-2)
            total = S[..., 0, :]
            for k in range(1, S.shape[-2]):
                total = total + S[..., k, :]
            return total
        first, second = _upper_pairs(d)
        where = np.empty((d, d), dtype=np.intp)  # which pair holds H[k, l]
        where[first, second] = where[second, first] = np.arange(len(first))
        H = np.take(S, where.ravel(), axis=-2)  # (*batch, d * d, d_out)
        return np.ascontiguousarray(np.swapaxes(H, -1, -2)).reshape(S.shape[:-2] + (S.shape[-1], d, d))

    # --- the passes ----------------------------------------------------------------

    def _trace(self, x: Array, stop: Optional[int] = None) -> tuple[list, list]:
        """Forward pass through ``layers[:stop]`` keeping every output and cache."""
        outputs, caches = [], []
        for layer in self.layers if stop is None else self.layers[:stop]:
            x, cache = layer.forward(x)
            outputs.append(x)
            caches.append(cache)
        return outputs, caches

    def _evaluate(
        self, x: npt.ArrayLike, mode: str, chunk_size: Optional[int], with_value: bool
    ) -> tuple[Optional[Array], Array]:
        """Validate the arguments; then the Jacobian, and ``y`` if ``with_value``, in chunks."""
        x = as_input(x, self.d_in, "Network")
        mode = self._auto_mode if mode == "auto" else self._resolve_mode(mode)
        if x.ndim == 1 and chunk_size is None:  # one point, nothing to chunk: the hot path of small nets
            return self._value_and_jacobian(x, mode, with_value)
        rows = x.shape[-1] if mode == "forward" else self.d_out or x.shape[-1]  # carried per sample
        return self._batched(
            lambda part: self._value_and_jacobian(part, mode, with_value), x, chunk_size, rows, "Network"
        )

    def _value_and_jacobian(self, x: Array, mode: str, with_value: bool) -> tuple[Optional[Array], Array]:
        if mode == "reverse":
            outputs, caches = self._trace(x)
            J = self._reverse(outputs, caches)
        else:
            # the final layers with constant Jacobians need no values for their tangents
            stop = len(self.layers) if with_value else self._forward_stop
            outputs, caches = self._trace(x, stop)
            caches += [None] * (len(self.layers) - stop)
            J = self._forward(outputs, caches)
        flags = J.flags
        if not (flags.writeable and flags.c_contiguous):  # a view (of weights, or transposed)
            J = np.array(J, order="C")
        return (outputs[-1] if with_value else None), J

    def _reverse(self, outputs: list, caches: list) -> Array:
        """Reverse mode: seed at the output end, then ``backward`` to the first layer.

        Elementwise layers have diagonal Jacobians, so the trailing ones become a
        row scaling of the Jacobian of the layer before them,
        ``diag(d) J = d[..., :, None] * J``: no dense ``diag(d)`` and no matrix product.
        """
        start = self._seed_index
        scale = _diagonal_product(self._trailing, caches[start + 1 :])
        if start < 0:  # activations only
            return _diag_embed(cast(Array, scale))
        J = self.layers[start].jacobian(outputs[start], caches[start])
        if scale is not None:  # C order: what the next backward step reads fastest
            J = np.multiply(scale[..., :, None], J, order="C")
        return self._push(J, scale is not None, range(start - 1, -1, -1), caches, "backward")

    def _forward(self, outputs: list, caches: list) -> Array:
        """Forward mode: seed at the input end, then ``tangent`` to the last layer.

        The tangent block ``T`` of shape ``(*batch, d_in, width)`` is the transposed
        Jacobian so far; the seed is the first non-elementwise layer's Jacobian,
        transposed, with the leading activations' diagonals scaling its rows.
        """
        start = self._first_index
        scale = _diagonal_product(self._leading, caches)
        if start == len(self.layers):  # activations only
            return _diag_embed(cast(Array, scale))
        T = np.swapaxes(self.layers[start].jacobian(outputs[start], caches[start]), -1, -2)
        if scale is not None:
            T = np.multiply(scale[..., :, None], T, order="C")
        T = self._push(T, scale is not None, range(start + 1, len(self.layers)), caches, "tangent")
        return np.swapaxes(T, -1, -2)

    def _push(self, block: Array, owned: bool, indices: range, caches: list, method: str) -> Array:
        """Push a block of rows (``backward``) or tangents (``tangent``) through ``layers[indices]``.

        The network applies elementwise layers itself, as a scaling of the block's
        columns by their Jacobian's diagonal: in place when the block is ``owned``,
        that is, newly allocated in this pass and referenced nowhere else, which
        saves a pass over memory for every large block.
        """
        layers, elementwise, fresh = self.layers, self._elementwise, self._fresh[method]
        for index in indices:
            layer: Any = layers[index]
            if elementwise[index]:
                d = layer.diagonal(caches[index])[..., None, :]
                if owned and d.dtype == block.dtype:
                    block *= d
                else:
                    block = block * d
                    owned = True
            else:
                block = getattr(layer, method)(block, caches[index])
                owned = fresh[index]
        return block

    def _batched(
        self, compute: Callable[[Array], tuple], x: Array, chunk_size: Optional[int], rows: int, owner: str
    ) -> tuple:
        """``compute(x)``, a batch in chunks of ``chunk_size`` samples (validated), or
        by default of as many as the memory budget allows for ``rows`` rows per sample."""
        if chunk_size is not None:
            chunk_size = _positive_int(chunk_size, owner, "chunk_size")
        if x.ndim == 2:
            chunk = self._auto_chunk_size(x, rows) if chunk_size is None else chunk_size
            if len(x) > chunk:
                return self._chunked(compute, x, chunk)
        return compute(x)

    @staticmethod
    def _chunked(compute: Callable[[Array], tuple], x: Array, chunk: int) -> tuple:
        """``compute`` over the batch ``chunk`` samples at a time, written into
        preallocated results (``compute`` returns a tuple of arrays or ``None``)."""
        first = compute(x[:chunk])
        results = tuple(
            None if part is None else np.empty((len(x),) + part.shape[1:], dtype=part.dtype) for part in first
        )
        for result, part in zip(results, first):
            if result is not None:
                result[:chunk] = part
        del first, part  # free before the next chunk
        for start in range(chunk, len(x), chunk):
            piece = slice(start, start + chunk)
            for result, part in zip(results, compute(x[piece])):
                if result is not None:
                    result[piece] = part
        return results

    # --- mode and chunk choice -----------------------------------------------------

    def _choose_mode(self) -> str:
        costs = self.mode_costs()
        forward, reverse = costs["forward"], costs["reverse"]
        if forward is not None and reverse is not None and forward < reverse:
            return "forward"
        return "reverse"

    def _resolve_mode(self, mode: str) -> str:
        if mode == "auto":
            return self._auto_mode
        if mode == "forward":
            self._require_tangent(self._first_index + 1, "forward mode")
            return mode
        if mode == "reverse":
            return mode
        raise ValueError(f"mode must be one of {', '.join(map(repr, MODES))}; got {mode!r}.")

    def _lacking_tangent(self, start: Optional[int] = None) -> list[str]:
        """``"layer i (Name)"`` for each layer from ``start`` on without ``tangent``."""
        start = self._first_index + 1 if start is None else start
        return [
            f"layer {index} ({type(layer).__name__})"
            for index, layer in enumerate(self.layers)
            if index >= start and not implements(layer, "tangent")
        ]

    def _require_tangent(self, start: int, what: str) -> None:
        lacking = self._lacking_tangent(start)
        if lacking:
            raise NotImplementedError(
                f"{what} needs Layer.tangent, which {', '.join(lacking)} does not implement; "
                "implement it, or use reverse mode (mode='reverse', vjp)."
            )

    def _auto_chunk_size(self, x: Array, rows: int) -> int:
        """Samples per chunk such that a chunk's intermediates fit the memory budget.

        ``rows`` is the number of rows (or tangents) carried per sample.
        """
        widths = self._widths or [(x.shape[-1], x.shape[-1])]
        widest = max(max(pair) for pair in widths)
        # per sample: about two live blocks of rows x widest (the input and output of
        # a matrix product; activations scale blocks in place), plus the forward caches
        per_sample = x.itemsize * (2 * rows * widest + 2 * sum(w for _, w in widths))
        return max(1, _memory_budget // per_sample)

    def __repr__(self) -> str:
        return f"Network([{', '.join(map(repr, self.layers))}])"


@functools.lru_cache(maxsize=16)
def _upper_pairs(d: int) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """The pairs ``k <= l`` of ``d`` inputs, as ``np.triu_indices(d)`` (cached)."""
    first, second = np.triu_indices(d)
    first.flags.writeable = second.flags.writeable = False  # shared by every call
    return first, second


def _diagonal_product(layers: tuple[Elementwise, ...], caches: list) -> Optional[Array]:
    """The product of the layers' Jacobian diagonals, or ``None`` if there are no layers."""
    result = None
    for layer, cache in zip(layers, caches):
        d = layer.diagonal(cache)
        result = d if result is None else result * d
    return result


def _positive_int(value: object, owner: str, name: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{owner} expects {name} to be a positive integer; got {value!r}.")
    if value < 1:
        raise ValueError(f"{owner} expects {name} to be a positive integer; got {value!r}.")
    return operator.index(value)


def _direction(v: npt.ArrayLike, shape: tuple[int, ...], owner: str, name: str, broadcast: bool = True) -> Array:
    """``v`` of the given shape, or (``broadcast``) of its last axis alone broadcast over a batch."""
    v = as_float_array(v, name)
    if v.shape == shape:
        return v
    if broadcast and len(shape) == 2 and v.shape == shape[1:]:
        return np.broadcast_to(v, shape)
    expected = f"{shape}" + (f" or ({shape[1]},)" if broadcast and len(shape) == 2 else "")
    raise ValueError(f"{owner} expects {name} of shape {expected}; got shape {v.shape}.")


def _layer_widths(layers: tuple[Layer, ...], d_in: Optional[int]) -> Optional[list[tuple[int, int]]]:
    """``(width_in, width_out)`` of every layer, or ``None`` if the input width is unknown."""
    if d_in is None:
        return None
    widths, width = [], d_in
    for layer in layers:
        out = width if layer.d_out is None else layer.d_out
        widths.append((width, out))
        width = out
    return widths


def _chain_widths(layers: tuple[Layer, ...]) -> tuple[Optional[int], Optional[int]]:
    """Check that consecutive widths agree; return the network's ``(d_in, d_out)``."""
    d_in: Optional[int] = None
    width: Optional[int] = None  # width output by the layers so far; None while unknown
    for index, layer in enumerate(layers):
        if layer.d_in is not None:
            if width is not None and layer.d_in != width:
                previous = type(layers[index - 1]).__name__
                raise ValueError(
                    f"layer {index} ({type(layer).__name__}) expects d_in = {layer.d_in}, "
                    f"but layer {index - 1} ({previous}) outputs width {width}."
                )
            if width is None and d_in is None:
                d_in = layer.d_in
            width = layer.d_in
        if layer.d_out is not None:
            width = layer.d_out
    return d_in, width
