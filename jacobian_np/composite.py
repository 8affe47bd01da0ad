"""Composite layers: layers made of layers.

:class:`Composite` is their shared base: it answers every rule of the layer
protocol (``backward``, ``tangent``, ``curvature``, ...) from the engine's steps,
which each composite implements by combining its children's steps.  So a
composite can be used wherever a layer can, nested to any depth, and a child's
fast paths and overrides are used as they would be at the top level.

- :class:`Residual`: ``y = x + scale * block(x)``;
- :class:`Parallel`: ``y = concatenate([branch(x) for branch in branches], axis=-1)``;
- :class:`~jacobian_np.Network` (a chain) is one too.
"""

from __future__ import annotations

from typing import Any, Iterable, Optional

import numpy as np

from ._blocks import Block, Diag, Eye, anchored, dense
from ._steps import Groups, Pairs
from ._typing import Array, Cache
from ._validation import as_finite_real
from .layer import Layer


class Composite(Layer):
    """Base of layers made of other layers (``children``).

    A subclass implements the engine's steps (``forward_with_cache``, ``pull``,
    ``push``, ``push_second``, ``pull_params``, ``push_tangents``,
    ``pull_tangents``) from its children's; the rules of the layer protocol
    follow from them here.

    See Also
    --------
    Residual, Parallel, Network : the composites.
    Layer : the protocol a composite answers for its children.
    """

    children: tuple[Layer, ...]

    def forward(self, x: Array) -> Any:
        return self.forward_with_cache(x)

    def backward(self, dy: Array, cache: Cache) -> Array:
        return dense(self.pull(dy, cache, False)[0])

    def tangent(self, dx: Array, cache: Cache) -> Array:
        return dense(self.push(dx, cache, False)[0])

    def curvature(self, u: Array, v: Array, cache: Cache) -> Array:
        rows = u.shape[-2]
        pairs = (np.arange(rows), np.arange(rows, 2 * rows))
        T = np.concatenate(np.broadcast_arrays(u, v), axis=-2)
        _, S = self.push_second(T, None, cache, pairs, False, False)
        if S is None:  # a constant Jacobian
            return np.zeros(T.shape[:-2] + (rows, self.footprint(T.shape[-1])[0]), T.dtype)
        return S

    def tangent_grad(self, w: Array, u: Array, cache: Cache) -> Array:
        _, saved = self.push_tangents(u, cache)
        dz, _, _ = self.pull_tangents(None, w, saved, cache, True)
        return np.zeros(u.shape[:-2] + u.shape[-1:], u.dtype) if dz is None else dz

    def param_grad(self, dy: Array, cache: Cache) -> Any:
        return self.pull_params(dy, cache, False)[1]

    def tangent_param_grad(self, dT: Array, T: Array, cache: Cache) -> list[Array]:
        _, saved = self.push_tangents(T, cache)
        return self.pull_tangents(None, dT, saved, cache, False)[2]

    @property
    def params(self) -> list[Array]:
        """The children's parameter arrays in order, each array once (a shared layer is listed once)."""
        return _unique([p for child in self.children for p in child.params])

    @property
    def constant_jacobian(self) -> bool:  # type: ignore[override]
        return all(child.constant_jacobian for child in self.children)

    @property
    def piecewise_linear(self) -> bool:  # type: ignore[override]
        return all(child.piecewise_linear for child in self.children)

    def lacking(self, rule: str) -> list[str]:
        if getattr(type(self), rule, None) is None:  # not a rule of layers in general (fsecond)
            return [type(self).__name__]
        return [
            f"{self._child_name(index)} > {name}" if isinstance(child, Composite) else self._child_name(index)
            for index, child in enumerate(self.children)
            for name in child.lacking(rule)
        ]

    def _child_name(self, index: int) -> str:
        return f"{type(self).__name__}[{index}] ({type(self.children[index]).__name__})"

    def _merged_grads(self, grads: list[list[Array]]) -> list[Array]:
        """The children's gradients, one list per child, summed onto :attr:`params`."""
        return _merge(self.children, grads)

    def taylor(self, series: list[Array], cache: Cache) -> list[Array]:
        return self.push_taylor(series, cache, None)[0]

    def taylor_vjp(
        self, series: list[Array], grads: list[Array], cache: Cache
    ) -> tuple[Optional[Array], list[Array], list[Array]]:
        _, saved = self.push_taylor(series, cache, None)
        dx, grad_series, param_grads = self.pull_taylor(None, grads, saved, cache, None, True)
        return dx, grad_series, param_grads  # type: ignore[return-value]


class Residual(Composite):
    """A residual (skip) connection, ``y = x + scale * block(x)``.

    Parameters
    ----------
    block : Layer
        Any layer, a :class:`~jacobian_np.Network` too, whose output width equals
        its input width.
    scale : float, default 1.0
        Multiplies the block's output.

    Raises
    ------
    TypeError
        If ``block`` is not a layer or ``scale`` not a real number.
    ValueError
        If the block's widths are known and differ, or ``scale`` is not finite.

    See Also
    --------
    Parallel : branches side by side instead of a skip connection.
    Network : a chain of layers, the usual block.
    LayerNorm : normalises the input of a pre-norm block.

    Notes
    -----
    The Jacobian is ``I + scale * J_block``: every derivative of the block is
    scaled and the identity added to first derivatives only.  :attr:`params` are
    the block's.

    Examples
    --------
    >>> import numpy as np
    >>> from jacobian_np import Affine, Network, Residual, Tanh
    >>> rng = np.random.default_rng(0)
    >>> block = Network([Affine(rng.normal(size=(3, 3))), Tanh()])
    >>> net = Network([Residual(block, scale=0.5), Affine(rng.normal(size=(3, 2)))])
    >>> x = rng.normal(size=(4, 3))
    >>> y, J = net.forward_backward(x)
    >>> z = x + 0.5 * np.tanh(x @ block[0].W)
    >>> np.allclose(y, z @ net[1].W)
    True
    """

    def __init__(self, block: Layer, scale: float = 1.0) -> None:
        _check_layer(block, "Residual block")
        self.block = block
        self.scale = as_finite_real(scale, "scale", "Residual")
        if block.d_in is not None and block.d_out is not None and block.d_in != block.d_out:
            raise ValueError(
                f"Residual needs a block whose output width equals its input width; "
                f"{type(block).__name__} maps {block.d_in} to {block.d_out}."
            )
        self.d_in = self.d_out = block.d_in if block.d_in is not None else block.d_out
        self.children = (block,)

    def forward_with_cache(self, x: Array) -> tuple[Array, Cache]:
        z, cache = self.block.forward_with_cache(x)
        if z.shape != x.shape:
            raise ValueError(
                f"Residual block {type(self.block).__name__} returned shape {z.shape} for an input "
                f"of shape {x.shape}; a residual block must keep the width."
            )
        y = z * self.scale if self.scale != 1 else z.copy()
        y += x
        return y, (z, cache)

    def _child_name(self, index: int) -> str:
        return f"block ({type(self.block).__name__})"

    def _scaled(self, a: Optional[Array]) -> Optional[Array]:
        return a if a is None or self.scale == 1 else self.scale * a

    def pull(self, block: Block, cache: Cache, owned: bool) -> tuple[Block, bool]:
        z, inner_cache = _cache_parts(cache, 2)
        inner = self.block.pull(block if z is None else anchored(block, z), inner_cache, False)[0]
        result = self.scale * dense(inner)
        result += dense(block)
        return result, True

    def push(self, block: Block, cache: Cache, owned: bool) -> tuple[Block, bool]:
        _, inner_cache = _cache_parts(cache, 2)
        result = self.scale * dense(self.block.push(block, inner_cache, False)[0])
        result += dense(block)
        return result, True

    def push_second(
        self, T: Array, S: Optional[Array], cache: Cache, pairs: Pairs, collapse: bool, tangents: bool
    ) -> tuple[Optional[Array], Optional[Array]]:
        _, inner_cache = _cache_parts(cache, 2)
        T_inner, S_inner = self.block.push_second(T, S, inner_cache, pairs, collapse, tangents)
        T_out = None if T_inner is None else T + self.scale * T_inner
        return T_out, _added(S, self._scaled(S_inner))

    def pull_params(self, dy: Array, cache: Cache, need_input: bool) -> tuple[Optional[Array], list[Array]]:
        _, inner_cache = _cache_parts(cache, 2)
        dx, grads = self.block.pull_params(self.scale * dy, inner_cache, need_input)
        return _added(dy, dx) if need_input else None, grads

    def push_tangents(self, T: Array, cache: Cache) -> tuple[Array, Any]:
        _, inner_cache = _cache_parts(cache, 2)
        T_inner, saved = self.block.push_tangents(T, inner_cache)
        return T + self.scale * T_inner, saved

    def pull_tangents(
        self, dz: Optional[Array], dT: Array, saved: Any, cache: Cache, need_input: bool
    ) -> tuple[Optional[Array], Optional[Array], list[Array]]:
        _, inner_cache = _cache_parts(cache, 2)
        dz_in, dT_in, grads = self.block.pull_tangents(
            self._scaled(dz), self.scale * dT, saved, inner_cache, need_input
        )
        if not need_input:
            return None, None, grads
        return _added(dz, dz_in), _added(dT, dT_in), grads

    def cost(self, rows: int, width_in: int, width_out: int) -> int:
        return self.block.cost(rows, width_in, width_out) + rows * width_out

    def footprint(self, width_in: int) -> tuple[int, int, int]:
        width_out, widest, kept = self.block.footprint(width_in)
        return width_out, widest, kept + width_out

    def __repr__(self) -> str:
        scale = "" if self.scale == 1 else f", scale={self.scale!r}"
        return f"Residual({self.block!r}{scale})"

    def push_taylor(self, series: list[Array], cache: Cache, groups: Groups) -> tuple[list[Array], Any]:
        _, inner_cache = _cache_parts(cache, 2)
        inner, saved = self.block.push_taylor(series, inner_cache, groups)
        return [x_k + self.scale * y_k for x_k, y_k in zip(series, inner)], saved

    def pull_taylor(
        self, dy: Optional[Array], grads: list[Array], saved: Any, cache: Cache, groups: Groups, need_input: bool
    ) -> tuple[Optional[Array], Optional[list[Array]], list[Array]]:
        _, inner_cache = _cache_parts(cache, 2)
        dx, grad_series, param_grads = self.block.pull_taylor(
            self._scaled(dy), [self.scale * g for g in grads], saved, inner_cache, groups, need_input
        )
        if not need_input:
            return None, None, param_grads
        return _added(dy, dx), [g + g_in for g, g_in in zip(grads, grad_series or [])], param_grads


class Parallel(Composite):
    """Branches applied to the same input, outputs concatenated: ``y = [b_1(x), ..., b_m(x)]``.

    Multi-head networks (a shared trunk, then several heads) are a
    :class:`~jacobian_np.Network` ending in a ``Parallel`` of heads.

    Parameters
    ----------
    branches : iterable of Layer
        At least one; every branch whose input width is known must agree, and at
        least one must know it (or there must be a single branch).

    Raises
    ------
    TypeError
        If a branch is not a layer.
    ValueError
        If there are no branches or their input widths differ.

    See Also
    --------
    Residual : a skip connection, ``x + scale * block(x)``, instead.
    Network : a chain of layers: a branch, or the shared trunk before the heads.

    Notes
    -----
    The Jacobian stacks the branches' Jacobians, ``J = [J_1; ...; J_m]``, and a
    block of rows over the concatenated output splits into the branches' columns.
    :attr:`params` are the branches' in order.

    Examples
    --------
    >>> import numpy as np
    >>> from jacobian_np import Affine, Network, Parallel, Sin, Tanh
    >>> rng = np.random.default_rng(0)
    >>> heads = Parallel([Affine(rng.normal(size=(3, 2))), Network([Affine(rng.normal(size=(3, 1))), Sin()])])
    >>> heads.d_in, heads.d_out
    (3, 3)
    >>> J = Network([Tanh(), heads]).jacobian(rng.normal(size=(5, 3)))
    >>> J.shape
    (5, 3, 3)
    """

    def __init__(self, branches: Iterable[Layer]) -> None:
        self.branches = tuple(branches)
        if not self.branches:
            raise ValueError("Parallel needs at least one branch; got none.")
        for index, branch in enumerate(self.branches):
            _check_layer(branch, f"Parallel branch {index}")
        known = {branch.d_in for branch in self.branches if branch.d_in is not None}
        if len(known) > 1:
            widths = ", ".join(f"branch {i}: {b.d_in}" for i, b in enumerate(self.branches) if b.d_in is not None)
            raise ValueError(f"Parallel branches must take the same input width; got {widths}.")
        if not known and len(self.branches) > 1:
            raise ValueError(
                "Parallel needs at least one branch with a known input width (an Affine layer, say) "
                "to know its output width; every branch accepts any width."
            )
        self.children = self.branches
        self.d_in = known.pop() if known else None
        self.d_out = None if self.d_in is None else sum(b.footprint(self.d_in)[0] for b in self.branches)

    def forward_with_cache(self, x: Array) -> tuple[Array, Cache]:
        outputs, caches = zip(*(branch.forward_with_cache(x) for branch in self.branches))
        return np.concatenate(outputs, axis=-1), (tuple(o.shape[-1] for o in outputs), caches)

    def _child_name(self, index: int) -> str:
        return f"branch {index} ({type(self.branches[index]).__name__})"

    def _parts(self, cache: Cache) -> tuple[tuple[int, ...], Any]:
        """``(widths, caches)`` of the branches; without values (constant Jacobians),
        the widths from the layers and no caches."""
        if cache is not None:
            return cache
        widths = tuple(b.footprint(self.d_in)[0] for b in self.branches) if self.d_in is not None else (0,)
        return widths, (None,) * len(self.branches)

    def _pieces(self, a: Array, widths: tuple[int, ...]) -> list[Array]:
        """``a`` split along its last axis into the branches' columns."""
        return np.split(a, np.cumsum(widths)[:-1], axis=-1)

    def pull(self, block: Block, cache: Cache, owned: bool) -> tuple[Block, bool]:
        widths, caches = self._parts(cache)
        if isinstance(block, (Eye, Diag)):  # rows stack: J = [J_1; ...; J_m]
            ats = self._pieces(block.at, widths)
            ds = self._pieces(block.d, widths) if isinstance(block, Diag) else [None] * len(ats)
            parts = [
                dense(branch.pull(Eye(at) if d is None else Diag(d, at), c, False)[0])
                for branch, c, at, d in zip(self.branches, caches, ats, ds)
            ]
            return np.concatenate(parts, axis=-2), True
        pieces = self._pieces(block, widths)
        total = dense(self.branches[0].pull(pieces[0], caches[0], False)[0]).copy()
        for branch, c, piece in zip(self.branches[1:], caches[1:], pieces[1:]):
            total += dense(branch.pull(piece, c, False)[0])
        return total, True

    def push(self, block: Block, cache: Cache, owned: bool) -> tuple[Block, bool]:
        _, caches = self._parts(cache)
        parts = [dense(branch.push(block, c, False)[0]) for branch, c in zip(self.branches, caches)]
        return np.concatenate(parts, axis=-1), True

    def push_second(
        self, T: Array, S: Optional[Array], cache: Cache, pairs: Pairs, collapse: bool, tangents: bool
    ) -> tuple[Optional[Array], Optional[Array]]:
        widths, caches = self._parts(cache)
        results = [b.push_second(T, S, c, pairs, collapse, tangents) for b, c in zip(self.branches, caches)]
        T_out = np.concatenate([r[0] for r in results], axis=-1) if tangents else None
        if all(r[1] is None for r in results):
            return T_out, None
        rows = 1 if collapse else (T.shape[-2] if pairs is None else len(pairs[0]))
        Ss = [np.zeros(T.shape[:-2] + (rows, w), T.dtype) if r[1] is None else r[1] for r, w in zip(results, widths)]
        return T_out, np.concatenate(Ss, axis=-1)

    def pull_params(self, dy: Array, cache: Cache, need_input: bool) -> tuple[Optional[Array], list[Array]]:
        widths, caches = self._parts(cache)
        results = [
            b.pull_params(piece, c, need_input) for b, c, piece in zip(self.branches, caches, self._pieces(dy, widths))
        ]
        dx = _sum([r[0] for r in results]) if need_input else None
        return dx, self._merged_grads([r[1] for r in results])

    def push_tangents(self, T: Array, cache: Cache) -> tuple[Array, Any]:
        _, caches = self._parts(cache)
        results = [b.push_tangents(T, c) for b, c in zip(self.branches, caches)]
        return np.concatenate([r[0] for r in results], axis=-1), [r[1] for r in results]

    def pull_tangents(
        self, dz: Optional[Array], dT: Array, saved: Any, cache: Cache, need_input: bool
    ) -> tuple[Optional[Array], Optional[Array], list[Array]]:
        widths, caches = self._parts(cache)
        dzs = [None] * len(widths) if dz is None else self._pieces(dz, widths)
        results = [
            b.pull_tangents(piece_dz, piece_dT, s, c, need_input)
            for b, c, s, piece_dz, piece_dT in zip(self.branches, caches, saved, dzs, self._pieces(dT, widths))
        ]
        grads = self._merged_grads([r[2] for r in results])
        if not need_input:
            return None, None, grads
        return _sum([r[0] for r in results]), _sum([r[1] for r in results]), grads

    def cost(self, rows: int, width_in: int, width_out: int) -> int:
        return sum(b.cost(rows, width_in, b.footprint(width_in)[0]) for b in self.branches) + rows * width_out

    def footprint(self, width_in: int) -> tuple[int, int, int]:
        prints = [b.footprint(width_in) for b in self.branches]
        width_out = sum(p[0] for p in prints)
        return width_out, max(width_out, *(p[1] for p in prints)), width_out + sum(p[2] for p in prints)

    def __repr__(self) -> str:
        return f"Parallel([{', '.join(map(repr, self.branches))}])"

    def push_taylor(self, series: list[Array], cache: Cache, groups: Groups) -> tuple[list[Array], Any]:
        _, caches = cache
        results = [b.push_taylor(series, c, groups) for b, c in zip(self.branches, caches)]
        out = [np.concatenate([r[0][k] for r in results], axis=-1) for k in range(len(series))]
        return out, [r[1] for r in results]

    def pull_taylor(
        self, dy: Optional[Array], grads: list[Array], saved: Any, cache: Cache, groups: Groups, need_input: bool
    ) -> tuple[Optional[Array], Optional[list[Array]], list[Array]]:
        widths, caches = cache
        dys = [None] * len(widths) if dy is None else self._pieces(dy, widths)
        pieces = [self._pieces(g, widths) for g in grads]  # pieces[k][branch]
        results = [
            b.pull_taylor(piece_dy, [p[i] for p in pieces], s, c, groups, need_input)
            for i, (b, c, s, piece_dy) in enumerate(zip(self.branches, caches, saved, dys))
        ]
        param_grads = self._merged_grads([r[2] for r in results])
        if not need_input:
            return None, None, param_grads
        grad_series = [_sum([r[1][k] for r in results]) for k in range(len(grads))]  # type: ignore[index]
        return _sum([r[0] for r in results]), grad_series, param_grads  # type: ignore[return-value]


def _check_layer(layer: Any, what: str) -> None:
    if isinstance(layer, type) and issubclass(layer, Layer):
        raise TypeError(f"{what} is the class {layer.__name__}; pass an instance, {layer.__name__}(...).")
    if not isinstance(layer, Layer):
        raise TypeError(f"{what} must be a jacobian_np.Layer; got {type(layer).__name__}.")


def _cache_parts(cache: Cache, count: int) -> tuple:
    """A composite's cache, or ``None`` parts where a pass kept no values (constant Jacobians)."""
    return (None,) * count if cache is None else cache


def _added(a: Optional[Array], b: Optional[Array]) -> Optional[Array]:
    """``a + b`` where ``None`` stands for zero."""
    if a is None:
        return b
    if b is None:
        return a
    return a + b


def _sum(arrays: list[Optional[Array]]) -> Optional[Array]:
    total: Optional[Array] = None
    for a in arrays:
        total = _added(total, a)
    return total


def _unique(arrays: list[Array]) -> list[Array]:
    """The arrays in order, each object once."""
    seen: set[int] = set()
    return [a for a in arrays if not (id(a) in seen or seen.add(id(a)))]  # type: ignore[func-returns-value]


def _merge(children: tuple[Layer, ...], grads: list[list[Array]]) -> list[Array]:
    """Each child's gradients (aligned with its ``params``) summed onto the unique arrays."""
    keys = [id(p) for child in children for p in child.params]
    if len(set(keys)) == len(keys):  # nothing shared: the gradients in order
        return [g for child_grads in grads for g in child_grads]
    totals: dict[int, Array] = {}
    order: list[int] = []
    for child, child_grads in zip(children, grads):
        for p, g in zip(child.params, child_grads):
            key = id(p)
            if key in totals:
                totals[key] = totals[key] + g
            else:
                totals[key] = g
                order.append(key)
    return [totals[key] for key in order]
