"""Network: a chain of layers, with its value and input Jacobian in one call."""

from __future__ import annotations

from typing import Iterable, Optional, cast

import numpy as np
import numpy.typing as npt

from ._typing import Array
from ._validation import as_input
from .layer import Elementwise, Layer, _diag_embed


class Network:
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
        # The backward pass is seeded by the last layer that is not elementwise; the
        # elementwise layers after it become a row scaling (see _seed).
        start = len(self.layers)
        while start > 0 and isinstance(self.layers[start - 1], Elementwise):
            start -= 1
        self._seed_index = start - 1  # -1 for a network of activations only
        self._trailing = cast("tuple[Elementwise, ...]", self.layers[start:])

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

    def forward_backward(self, x: npt.ArrayLike) -> tuple[Array, Array]:
        """The output and its Jacobian with respect to the input, per sample.

        One forward pass keeps each layer's cache; one backward pass starts from the
        last layer's own Jacobian (no identity seed is multiplied; trailing
        activations scale its rows) and propagates the whole Jacobian, all samples
        and all ``d_out`` rows at once, through the remaining layers.

        Parameters
        ----------
        x : array_like of shape (d_in,) or (n, d_in)
            One point or a batch (``n`` may be 0).

        Returns
        -------
        y : ndarray of shape (d_out,) or (n, d_out)
            Same as :meth:`forward`.
        J : ndarray of shape (d_out, d_in) or (n, d_out, d_in)
            ``J[i, j, k] = d y[i, j] / d x[i, k]``; never the cross-sample
            ``(n, d_out, n, d_in)`` form.

        Raises
        ------
        ValueError
            If ``x`` is not 1-D or 2-D or its last axis is not ``d_in``.
        TypeError
            If ``x`` is not real and numeric.

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
        """
        x = as_input(x, self.d_in, "Network")
        outputs, caches = [], []
        for layer in self.layers:
            x, cache = layer.forward(x)
            outputs.append(x)
            caches.append(cache)
        J = self._seed(outputs, caches)
        for index in range(self._seed_index - 1, -1, -1):
            J = self.layers[index].backward(J, caches[index])
        if not J.flags.writeable:  # a view of a weight matrix (single Affine layer)
            J = J.copy()
        return x, J

    def _seed(self, outputs: list, caches: list) -> Array:
        """Jacobian of the layers from ``self._seed_index`` to the end, to seed the backward pass.

        Elementwise layers have diagonal Jacobians, so the trailing ones become a
        row scaling of the Jacobian of the layer before them,
        ``diag(d) J = d[..., :, None] * J``: no dense ``diag(d)`` and no matrix product.
        """
        start = self._seed_index
        scale: Optional[Array] = None
        for layer, cache in zip(self._trailing, caches[start + 1 :]):
            d = layer.diagonal(cache)
            scale = d if scale is None else scale * d
        if start < 0:  # activations only
            return _diag_embed(cast(Array, scale))
        J = self.layers[start].jacobian(outputs[start], caches[start])
        if scale is not None:  # C order: what the next backward step reads fastest
            J = np.multiply(scale[..., :, None], J, order="C")
        return J

    def __repr__(self) -> str:
        return f"Network([{', '.join(map(repr, self.layers))}])"


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
