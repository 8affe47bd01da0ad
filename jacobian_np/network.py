"""Network: a chain of layers, with its value and input derivatives in one call.

The public class is a thin front: it checks inputs and capabilities, sizes the
chunks and calls a pass.  Where things live:

- the rules of each layer: in its class (``layer.py``, ``affine.py``,
  ``activations.py``, ``normalization.py``, ``composite.py``);
- what a pass asks of a layer (its steps, with generic defaults built from the
  rules): ``_steps.py``; the symbolic identity and diagonal blocks: ``_blocks.py``;
- the chain of layers as one layer, the widths and the mode cost model: ``_chain.py``;
- the entry points by kind of pass: ``_first_order.py`` (values, Jacobians,
  ``jvp``, ``vjp``, ``divergence``), ``_second_order.py`` (``hessian``,
  ``laplacian``, ``hessian_diagonal``), ``_training.py`` (parameters and their
  gradients), ``_taylor_methods.py`` (``taylor``, ``biharmonic``) and
  ``_taylor_training.py`` (the weight gradients of Taylor-mode quantities); the
  series arithmetic of Taylor mode: ``_series.py``;
- chunking and the memory budget: ``_chunking.py``.

A new derivative quantity adds a step with a generic default to ``_steps.py``, its
fused forms to the layers that have one, and its entry point to the module of its
kind (``docs/adding_a_layer.md``).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Optional, Sequence, Union, overload

import numpy as np
import numpy.typing as npt

from ._chain import Chain, chain_widths, mode_costs
from ._chunking import DEFAULT_MEMORY_BUDGET, batched, chunk_length, get_memory_budget, set_memory_budget, summed
from ._first_order import MODES, FirstOrderMethods
from ._second_order import SecondOrderMethods
from ._taylor_methods import TaylorMethods
from ._taylor_training import TaylorTrainingMethods
from ._training import TrainingMethods
from ._typing import Array
from ._validation import as_input
from .composite import _check_layer
from .layer import Layer

__all__ = ["DEFAULT_MEMORY_BUDGET", "MODES", "Network", "get_memory_budget", "set_memory_budget"]


# TaylorMethods.taylor(x, v, order) is the public entry point; as a layer inside another network,
# a Network is driven through its push_taylor step, never through the rule taylor(series, cache)
class Network(FirstOrderMethods, SecondOrderMethods, TrainingMethods, TaylorMethods, TaylorTrainingMethods, Chain):  # type: ignore[misc]
    """A feed-forward chain of layers, ``y = layers[-1](... layers[0](x))``.

    A network is itself a layer: it can be a layer of another network, the block
    of a :class:`~jacobian_np.Residual` or a branch of a
    :class:`~jacobian_np.Parallel`, to any depth.

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
    Residual, Parallel : skip connections and branches, built from networks.
    check_network : compare the Jacobian with finite differences.
    save, load : keep a network in a file.
    from_torch, from_sklearn, from_onnx : a network from another library's model.

    Notes
    -----
    Shapes follow ``docs/conventions.md``: one point ``x`` of shape ``(d_in,)``, or a
    batch of shape ``(n, d_in)`` with per-sample Jacobians
    ``J[i, j, k] = d y[i, j] / d x[i, k]``.  ``net(x)`` is ``net.forward(x)``,
    ``len(net)`` the number of layers, ``net[i]`` a layer and ``net[i:j]`` a
    network of those layers (the same layer objects).  As a layer, a network's
    cache comes from :meth:`forward_with_cache`; its public :meth:`forward`
    returns ``y`` alone.

    Examples
    --------
    >>> import numpy as np
    >>> from jacobian_np import Affine, Network, Tanh
    >>> rng = np.random.default_rng(0)
    >>> net = Network([Affine(rng.normal(size=(2, 5))), Tanh(), Affine(rng.normal(size=(5, 3)))])
    >>> net
    Network([Affine(d_in=2, d_out=5), Tanh(), Affine(d_in=5, d_out=3)])
    >>> net.d_in, net.d_out, len(net)
    (2, 3, 3)
    >>> net[:2]
    Network([Affine(d_in=2, d_out=5), Tanh()])
    >>> np.allclose(net(np.ones(2)), net[2].forward(net[:2](np.ones(2)))[0])
    True
    """

    def __init__(self, layers: Iterable[Layer]) -> None:
        self.layers = tuple(layers)
        if not self.layers:
            raise ValueError("Network needs at least one layer; got none.")
        for index, layer in enumerate(self.layers):
            _check_layer(layer, f"layer {index}")
        self.d_in, self.d_out = chain_widths(self.layers)
        # forward mode without the output: the values of layers[_forward_stop:] are not needed
        self._forward_stop = len(self.layers)
        while self._forward_stop > 1 and self.layers[self._forward_stop - 1].constant_jacobian:
            self._forward_stop -= 1
        self._footprints: dict[int, tuple[int, int, int]] = {}
        costs = mode_costs(self.layers, self.d_in)
        forward, reverse = costs["forward"], costs["reverse"]
        self._auto_mode = "forward" if forward is not None and reverse is not None and forward < reverse else "reverse"

    def forward(self, x: npt.ArrayLike) -> Array:  # type: ignore[override]
        """The network's output.

        Parameters
        ----------
        x : array_like of shape (d_in,) or (n, d_in)
            One point or a batch.  Integers and booleans are converted to float64.

        Returns
        -------
        y : ndarray of shape (d_out,) or (n, d_out)

        See Also
        --------
        forward_backward : the output and its Jacobian.
        jacobian : the Jacobian alone.

        Examples
        --------
        >>> import numpy as np
        >>> from jacobian_np import Affine, Network, ReLU
        >>> net = Network([Affine([[1.0, -1.0]]), ReLU()])
        >>> net.forward([2.0])
        array([2., 0.])
        >>> net([[2.0], [-3.0]])
        array([[2., 0.],
               [0., 3.]])
        """
        y = as_input(x, self.d_in, "Network")
        for layer in self.layers:
            y, _ = layer.forward_with_cache(y)
        return y

    def __call__(self, x: npt.ArrayLike) -> Array:
        return self.forward(x)

    def __len__(self) -> int:
        return len(self.layers)

    @overload
    def __getitem__(self, index: int) -> Layer: ...

    @overload
    def __getitem__(self, index: slice) -> "Network": ...

    def __getitem__(self, index: Union[int, slice]) -> Union[Layer, "Network"]:
        if isinstance(index, slice):
            return Network(self.layers[index])
        return self.layers[index]

    @property
    def params(self) -> list[Array]:  # type: ignore[override]
        """The parameter arrays of all layers in layer order, ``[W1, b1, W2, ...]``.

        The live arrays, not copies: writing into them changes the network.  A
        layer (or array) used more than once is listed once.

        See Also
        --------
        get_flat_params, set_flat_params : all of them as one 1-D array.
        param_grad, jacobian_param_grad : gradients aligned with this list.

        Examples
        --------
        >>> import numpy as np
        >>> from jacobian_np import Affine, Network, Tanh
        >>> net = Network([Affine(np.ones((2, 3)), np.zeros(3)), Tanh(), Affine(np.ones((3, 1)))])
        >>> [p.shape for p in net.params]
        [(2, 3), (3,), (3, 1)]
        """
        return super().params

    def _batched(
        self, compute: Callable[..., tuple], x: Array, chunk_size: Optional[int], rows: int, owner: str,
        *extras: Array,
    ) -> tuple:
        """``compute(x, *extras)`` in chunks sized for ``rows`` rows carried per sample."""
        return batched(compute, x, chunk_length(self._per_sample_bytes(x, rows), chunk_size, owner), extras)

    def _batched_sum(self, compute: Callable[..., list], x: Array, rows: int, *extras: Array) -> list:
        """``compute(x, *extras)`` summed over chunks (parameter gradients)."""
        return summed(compute, x, chunk_length(self._per_sample_bytes(x, rows), None, "Network"), extras)

    def _per_sample_bytes(self, x: Array, rows: int) -> int:
        """Bytes of intermediates per sample: about two live blocks of ``rows`` rows of the
        widest layer (the input and output of a matrix product; activations scale
        blocks in place), plus the forward caches."""
        width = x.shape[-1]
        if width not in self._footprints:  # the layers are fixed: once per input width
            self._footprints[width] = self.footprint(width)
        _, widest, kept = self._footprints[width]
        return x.itemsize * (2 * rows * widest + 2 * kept)

    def __getstate__(self) -> dict[str, Any]:
        """Pickle the layers, not what is derived from them on use (execution plans hold
        locks and per-thread buffers; they are rebuilt after unpickling)."""
        state = dict(self.__dict__)
        state.pop("_plan_cache", None)
        return state

    def __repr__(self) -> str:
        return f"Network([{', '.join(map(repr, self.layers))}])"
