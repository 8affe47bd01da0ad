"""Taylor mode: the forward pass of truncated Taylor series and its reverse pass.

A pass is a loop over layers that calls their methods (``forward``,
``Layer.taylor``, ``Layer.taylor_vjp``, ``backward``, ``param_grad``) and never
asks what kind of layer it has.  Shapes: ``series`` is a list of the ``K``
normalised coefficients ``x_1, ..., x_K`` of ``R`` input paths per sample, each
``(*batch, R, width)``; see ``docs/taylor.md`` for the math.

Collapsing.  A PDE operator often needs only a sum over directions of the top
coefficient (the Laplacian is ``2 sum_r y_2[r]``).  The top coefficient enters
every layer linearly, ``y_K = J x_K + (terms in x_1, ..., x_(K-1))``, so its sum
over a group of paths can be carried as one row: ``groups`` (row counts that add
up to ``R``) says which paths are summed together, and the top coefficient then
has one row per group.  Layers with a constant Jacobian map the collapsed rows
directly (one matrix product for the group, not one per path); the other layers
get the group's sum in the group's first row and zeros in the rest, and their
top output is summed per group.  So every layer's ``taylor`` sees only ordinary
series, and the matrix products of the top coefficient shrink from ``R`` rows
to one per group.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import numpy as np

from ._typing import Array, Cache
from .layer import Layer, zeros as _zeros

Groups = Optional[tuple[int, ...]]


def forward_with_cache(layer: Layer, x: Array) -> tuple[Array, Cache]:
    """``(y, cache)`` of a layer (``forward_with_cache`` where the layer has it)."""
    method = getattr(layer, "forward_with_cache", None)
    return method(x) if method is not None else layer.forward(x)


def taylor_pass(
    layers: Sequence[Layer], x: Array, series: list[Array], groups: Groups = None, keep: bool = False
) -> tuple[Array, list[Array], list[tuple[list[Array], Cache]]]:
    """The value and the output coefficients; with ``keep``, each layer's input series and cache.

    Returns ``(y, series_out, tape)``; ``tape`` is empty unless ``keep``.
    """
    tape = []
    for layer in layers:
        y, cache = forward_with_cache(layer, x)
        if keep:
            tape.append((series, cache))
        series = layer_taylor(layer, series, cache, groups)
        x = y
    return x, series, tape


def derivatives_along_line(layers: Sequence[Layer], x: Array, v: Array, order: int) -> Array:
    """``T`` of shape ``(order + 1, *batch, d_out)``, ``T[k] = d^k/dt^k y(x + t v)`` at ``t = 0``.

    The trailing layers with constant Jacobians (with the default ``taylor``)
    form an affine map ``A z = J z + c``; they map the stacked
    ``[z_0, 1! z_1, ..., K! z_K]`` in one call each, whose result is ``T`` once
    ``c = A(0)`` is added to its first row: no separate value pass through them
    and no copy of the (often widest) output.
    """
    stop = len(layers)
    while stop and layers[stop - 1].constant_jacobian and type(layers[stop - 1]).taylor is Layer.taylor:
        stop -= 1
    y, out, _ = taylor_pass(layers[:stop], x, line(v, order))
    if stop == len(layers):
        return stack_derivatives(y, out)
    block = np.stack([y] + [y_k[..., 0, :] * math.factorial(k) for k, y_k in enumerate(out, 1)])
    offset = np.zeros((1, y.shape[-1]), dtype=y.dtype)
    for layer in layers[stop:]:
        block = layer.tangent(block, None)  # a constant Jacobian does not read the cache
        offset = forward_with_cache(layer, offset)[0]
    if not block.flags.writeable:
        block = block.copy()
    block[0] += offset[0]
    return block


def line(v: Array, order: int) -> list[Array]:
    """The coefficients of the line ``x + t v``, one path per sample: ``[v, 0, ..., 0]``."""
    if not order:
        return []
    direction = v[..., None, :]
    return [direction] + [_zeros(v.dtype, direction.shape)] * (order - 1)


def stack_derivatives(y: Array, out: list[Array]) -> Array:
    """``T`` of shape ``(K + 1, *batch, d_out)``: ``y`` and ``k! y_k`` of the one path per sample."""
    T = np.empty((len(out) + 1,) + y.shape, dtype=np.result_type(y, *out))
    T[0] = y
    for k, y_k in enumerate(out, 1):
        np.multiply(y_k[..., 0, :], math.factorial(k), out=T[k])
    return T


def taylor_pullback(
    layers: Sequence[Layer],
    tape: list[tuple[list[Array], Cache]],
    grad_y: Optional[Array],
    grads: list[Array],
    groups: Groups = None,
) -> list[Array]:
    """Parameter gradients of ``sum(grad_y * y) + sum_k sum(grads[k-1] * y_k)``, in ``params`` order.

    ``grad_y`` (the value's adjoint, ``None`` for zero) goes through ``backward``
    and ``param_grad``; the coefficients' adjoints through ``taylor_vjp``, whose
    ``grad_x0`` joins the value's adjoint of the layer below.
    """
    per_layer: list[list[Array]] = []
    for index in range(len(layers) - 1, -1, -1):
        layer, (series, cache) = layers[index], tape[index]
        grad_x0, grads, param_grads = layer_taylor_vjp(layer, series, grads, cache, groups)
        if grad_y is not None:
            if layer.params:
                value_grads = layer.param_grad(grad_y, cache)
                param_grads = value_grads if not param_grads else [a + b for a, b in zip(param_grads, value_grads)]
            if index:
                back = layer.backward(grad_y[..., None, :], cache)[..., 0, :]
                grad_x0 = back if grad_x0 is None else grad_x0 + back
        per_layer.append(param_grads if layer.params else [])
        grad_y = grad_x0
    return [grad for layer_grads in per_layer[::-1] for grad in layer_grads]


def layer_taylor(layer: Layer, series: list[Array], cache: Cache, groups: Groups) -> list[Array]:
    """``layer.taylor``, with the top coefficient collapsed by ``groups`` (see the module docstring)."""
    if groups is None or not series:
        return layer.taylor(series, cache)
    if layer.constant_jacobian:  # linear in each coefficient: the collapsed rows go straight through
        return (layer.taylor(series[:-1], cache) if len(series) > 1 else []) + layer.taylor(series[-1:], cache)
    out = layer.taylor(series[:-1] + [_spread(series[-1], groups)], cache)
    out[-1] = np.add.reduceat(out[-1], _starts(groups), axis=-2)
    return out


def layer_taylor_vjp(
    layer: Layer, series: list[Array], grads: list[Array], cache: Cache, groups: Groups
) -> tuple[Optional[Array], list[Array], list[Array]]:
    """``layer.taylor_vjp``, the adjoint of :func:`layer_taylor` with the same ``groups``."""
    if groups is None or not series:
        return layer.taylor_vjp(series, grads, cache)
    if layer.constant_jacobian:
        low: Any = layer.taylor_vjp(series[:-1], grads[:-1], cache) if len(series) > 1 else (None, [], [])
        top = layer.taylor_vjp(series[-1:], grads[-1:], cache)
        grad_x0 = low[0] if top[0] is None else top[0] if low[0] is None else low[0] + top[0]
        param_grads = [a + b for a, b in zip(low[2], top[2])] if low[2] else top[2]
        return grad_x0, low[1] + top[1], param_grads
    spread_grads = grads[:-1] + [np.repeat(grads[-1], groups, axis=-2)]
    grad_x0, grad_series, param_grads = layer.taylor_vjp(series[:-1] + [_spread(series[-1], groups)], spread_grads, cache)
    # the top's adjoint is J^T times the group's adjoint: the same in every row of a group
    grad_series[-1] = np.take(grad_series[-1], _starts(groups), axis=-2)
    return grad_x0, grad_series, param_grads


def _starts(groups: tuple[int, ...]) -> Array:
    return np.concatenate([[0], np.cumsum(groups[:-1])]).astype(np.intp)


def _spread(top: Array, groups: tuple[int, ...]) -> Array:
    """Collapsed rows ``(*batch, G, d)`` to ``(*batch, R, d)``: each group's sum in its first row."""
    full = np.zeros(top.shape[:-2] + (sum(groups), top.shape[-1]), dtype=top.dtype)
    full[..., _starts(groups), :] = top
    return full
