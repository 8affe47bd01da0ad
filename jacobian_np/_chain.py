"""A chain of layers as one layer, and the facts the entry points need about it.

:class:`Chain` implements the engine's steps for ``layers[-1](... layers[0](x))``
as loops over the layers' own steps; :class:`~jacobian_np.Network` is a chain with
the public entry points on top.  The module also holds the facts derived from the
layer widths (the chain check, the mode cost model) and the one capability check
with its one message format (:func:`require`).
"""

from __future__ import annotations

from typing import Any, Optional

from ._blocks import Block
from ._steps import Groups, Pairs
from ._typing import Array, Cache
from .composite import Composite
from .layer import Layer


class Chain(Composite):
    """The steps of a chain of layers (``layers``, a tuple); see :mod:`jacobian_np._steps`."""

    layers: tuple[Layer, ...]

    @property
    def children(self) -> tuple[Layer, ...]:  # type: ignore[override]
        return self.layers

    def _child_name(self, index: int) -> str:
        return f"layer {index} ({type(self.layers[index]).__name__})"

    def forward_with_cache(self, x: Array) -> tuple[Array, Cache]:
        return self._trace(x, len(self.layers))

    def _trace(self, x: Array, stop: int) -> tuple[Array, Cache]:
        """Values and caches through ``layers[:stop]``; the later layers get ``None``
        caches (a pass that needs no values there: constant Jacobians)."""
        x_in, caches = x, []
        try:
            for layer in self.layers[:stop]:
                x, cache = layer.forward_with_cache(x)
                caches.append(cache)
        except ValueError:  # perhaps a width error from the layer after the culprit
            self._find_wrong_width(x_in, stop)
            raise
        if stop == len(self.layers) and self.d_out is not None and x.shape[-1] != self.d_out:
            self._find_wrong_width(x_in, stop)
        caches += [None] * (len(self.layers) - stop)
        return x, caches

    def _find_wrong_width(self, x: Array, stop: int) -> None:
        """Raise ``ValueError`` naming the first layer whose output has the wrong shape."""
        for index in range(stop):
            layer = self.layers[index]
            y, _ = layer.forward_with_cache(x)
            expected = x.shape[-1] if layer.d_out is None else layer.d_out
            if y.shape[:-1] != x.shape[:-1] or y.shape[-1] != expected:
                raise ValueError(
                    f"{self._child_name(index)} returned shape {y.shape} for an input of shape "
                    f"{x.shape}; expected {x.shape[:-1] + (expected,)}. Fix the layer's forward, or its d_out."
                )
            x = y

    def _caches(self, cache: Cache) -> list:
        return [None] * len(self.layers) if cache is None else cache

    def pull(self, block: Block, cache: Cache, owned: bool) -> tuple[Block, bool]:
        for layer, layer_cache in zip(reversed(self.layers), reversed(self._caches(cache))):
            block, owned = layer.pull(block, layer_cache, owned)
        return block, owned

    def push(self, block: Block, cache: Cache, owned: bool) -> tuple[Block, bool]:
        for layer, layer_cache in zip(self.layers, self._caches(cache)):
            block, owned = layer.push(block, layer_cache, owned)
        return block, owned

    def push_second(
        self, T: Array, S: Optional[Array], cache: Cache, pairs: Pairs, collapse: bool, tangents: bool
    ) -> tuple[Optional[Array], Optional[Array]]:
        # first tangents are needed up to the last layer with curvature
        curved = [i for i, layer in enumerate(self.layers) if not layer.constant_jacobian]
        last_curved = curved[-1] if curved else -1
        T_now: Optional[Array] = T
        for index, (layer, layer_cache) in enumerate(zip(self.layers, self._caches(cache))):
            need = tangents or index < last_curved
            if T_now is None:  # only constant Jacobians from here: S alone moves on
                S = None if S is None else layer.tangent(S, layer_cache)
                continue
            T_now, S = layer.push_second(T_now, S, layer_cache, pairs, collapse, need)
        return T_now, S

    def pull_params(self, dy: Array, cache: Cache, need_input: bool) -> tuple[Optional[Array], list[Array]]:
        caches = self._caches(cache)
        grads: list[list[Array]] = []
        g: Optional[Array] = dy
        for index in range(len(self.layers) - 1, -1, -1):
            g, layer_grads = self.layers[index].pull_params(g, caches[index], need_input or index > 0)  # type: ignore[arg-type]
            grads.append(layer_grads)
        return g, self._merged_grads(grads[::-1])

    def push_tangents(self, T: Array, cache: Cache) -> tuple[Array, Any]:
        saved = []
        for layer, layer_cache in zip(self.layers, self._caches(cache)):
            T, layer_saved = layer.push_tangents(T, layer_cache)
            saved.append(layer_saved)
        return T, saved

    def pull_tangents(
        self, dz: Optional[Array], dT: Array, saved: Any, cache: Cache, need_input: bool
    ) -> tuple[Optional[Array], Optional[Array], list[Array]]:
        caches = self._caches(cache)
        grads: list[list[Array]] = []
        dT_now: Optional[Array] = dT
        for index in range(len(self.layers) - 1, -1, -1):
            dz, dT_now, layer_grads = self.layers[index].pull_tangents(
                dz, dT_now, saved[index], caches[index], need_input or index > 0  # type: ignore[arg-type]
            )
            grads.append(layer_grads)
        return dz, dT_now, self._merged_grads(grads[::-1])

    def cost(self, rows: int, width_in: int, width_out: int) -> int:
        total, width = 0, width_in
        for layer in self.layers:
            out = layer.footprint(width)[0]
            total += layer.cost(rows, width, out)
            width = out
        return total

    def footprint(self, width_in: int) -> tuple[int, int, int]:
        width, widest, kept = width_in, width_in, 0
        for layer in self.layers:
            width, layer_widest, layer_kept = layer.footprint(width)
            widest, kept = max(widest, layer_widest), kept + layer_kept
        return width, widest, kept

    def push_taylor(self, series: list[Array], cache: Cache, groups: Groups) -> tuple[list[Array], Any]:
        saved = []
        for layer, layer_cache in zip(self.layers, self._caches(cache)):
            series, layer_saved = layer.push_taylor(series, layer_cache, groups)
            saved.append(layer_saved)
        return series, saved

    def pull_taylor(
        self, dy: Optional[Array], grads: list[Array], saved: Any, cache: Cache, groups: Groups, need_input: bool
    ) -> tuple[Optional[Array], Optional[list[Array]], list[Array]]:
        caches = self._caches(cache)
        param_grads: list[list[Array]] = []
        grads_now: Optional[list[Array]] = grads
        for index in range(len(self.layers) - 1, -1, -1):
            dy, grads_now, layer_grads = self.layers[index].pull_taylor(
                dy, grads_now, saved[index], caches[index], groups, need_input or index > 0  # type: ignore[arg-type]
            )
            param_grads.append(layer_grads)
        return dy, grads_now, self._merged_grads(param_grads[::-1])


def require(layer: Any, rules: tuple[str, ...], what: str, hint: str = "") -> None:
    """Raise ``NotImplementedError`` naming every part of ``layer`` that lacks one of ``rules``.

    The one capability check of the entry points, with one message format.  A
    layer's rules are fixed once it exists, so a check that passed is remembered.
    """
    passed = layer.__dict__.setdefault("_passed_checks", set())
    if rules in passed:
        return
    missing: dict[str, list[str]] = {}
    for rule in rules:
        for name in layer.lacking(rule):
            missing.setdefault(name, []).append(rule)
    if missing:
        detail = "; ".join(f"{name} lacks {', '.join(lacks)}" for name, lacks in missing.items())
        needs = ", ".join(f"Layer.{rule}" for rule in rules)
        raise NotImplementedError(f"{what} needs {needs}: {detail}.{' ' + hint if hint else ''}")
    passed.add(rules)


def chain_widths(layers: tuple[Layer, ...]) -> tuple[Optional[int], Optional[int]]:
    """Check that consecutive widths agree; return the chain's ``(d_in, d_out)``."""
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


def layer_widths(layers: tuple[Layer, ...], d_in: Optional[int]) -> Optional[list[tuple[int, int]]]:
    """``(width_in, width_out)`` of every layer, or ``None`` if the input width is unknown."""
    if d_in is None:
        return None
    widths, width = [], d_in
    for layer in layers:
        out = layer.footprint(width)[0]
        widths.append((width, out))
        width = out
    return widths


def mode_costs(layers: tuple[Layer, ...], d_in: Optional[int]) -> dict[str, Optional[int]]:
    """Multiply-adds per sample of forward and reverse mode (see ``Network.mode_costs``).

    A mode pushes its rows from its seed, the layer nearest its end whose Jacobian
    is not diagonal (the diagonal ones beyond it scale the seed); the seed costs its
    size, and forward mode adds ``d_out * d_in`` to transpose its result.
    """
    widths = layer_widths(layers, d_in)
    costs: dict[str, Optional[int]] = {"forward": None, "reverse": None}
    if widths is None or d_in is None:
        return costs
    d_out = widths[-1][1]
    diagonal = [layer.supports("diagonal") for layer in layers]
    if not any(layer.lacking("tangent") for layer in layers):
        s = diagonal.index(False) if False in diagonal else len(layers)
        seed = widths[s][0] * widths[s][1] if s < len(layers) else 0
        costs["forward"] = (
            seed + sum(layers[i].cost(d_in, *widths[i]) for i in range(s + 1, len(layers))) + d_in * d_out
        )
    r = len(diagonal) - 1 - diagonal[::-1].index(False) if False in diagonal else -1
    seed = widths[r][0] * widths[r][1] if r >= 0 else 0
    costs["reverse"] = seed + sum(layers[i].cost(d_out, *widths[i]) for i in range(max(r, 0)))
    return costs
