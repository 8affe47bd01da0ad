"""The engine's steps: what a pass asks of each layer, with defaults built from its rules.

A layer's *rules* are the public methods a user writes (``forward``, ``backward``,
``tangent``, ``curvature``, ``tangent_grad``, ``param_grad``,
``tangent_param_grad``, ``jacobian``; ``f``, ``fprime``, ``fsecond`` for an
elementwise layer).  A pass never calls them directly: it calls a *step* of the
layer, one per kind of pass, and never asks what kind of layer it has.

========================  ===============================================
step                      used by
========================  ===============================================
``forward_with_cache``    every pass (values and caches)
``pull``                  reverse mode: ``jacobian``, ``vjp``
``push``                  forward mode: ``jacobian``, ``jvp``
``push_second``           second order: ``hessian``, ``laplacian``, ...
``pull_params``           ``param_grad``
``push_tangents`` and     training through the Jacobian
``pull_tangents``         (``jacobian_param_grad``)
``push_taylor`` and       Taylor mode (``taylor``, ``biharmonic``) and its
``pull_taylor``           reverse mode (``taylor_param_grad``, ...)
========================  ===============================================

:class:`LayerSteps` gives every step a generic default built from the rules, so a
user layer with ``forward`` and ``backward`` works everywhere it can.  Built-in
layers override steps with fused fast paths (an elementwise layer scales the block
in place; an affine layer turns the symbolic identity into its weights).  A fast
path is marked ``@fused(rule, ...)`` with the rules it stands for; a subclass that
overrides one of those rules loses the fast path at class creation and gets the
generic step back, so the override is honoured by every pass
(:func:`drop_stale_fast_paths`).  Composite layers override every step by
combining their children's.

Where a new feature lands: a new kind of pass adds a step here with a generic
default, and the pass itself in its own module (``_first_order``,
``_second_order``, ``_training``); a layer that can do the step faster overrides
it with ``@fused``.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, TypeVar

import numpy as np

from ._blocks import Block, Diag, Eye, dense
from ._series import collapse, group_starts, spread
from ._typing import Array, Cache

F = TypeVar("F", bound=Callable[..., Any])

#: (T, S) of a second-order step: first tangents and second tangents (None: zero).
Pairs = Optional[tuple[np.ndarray, np.ndarray]]
#: Groups of paths whose top Taylor coefficient is collapsed (row counts), or None.
Groups = Optional[tuple[int, ...]]


def fused(*rules: str) -> Callable[[F], F]:
    """Mark a step or rule as a fast path equal to what ``rules`` compute where it is defined.

    A subclass that overrides any of ``rules`` gets the next definition up the
    class hierarchy instead (ultimately the generic default), so the fast path
    cannot disagree with the override.
    """

    def mark(method: F) -> F:
        method.fuses = frozenset(rules)  # type: ignore[attr-defined]
        return method

    return mark


def optional(method: F) -> F:
    """Mark the raising default of an optional rule: a layer lacks the rule while it is inherited."""
    method.missing = True  # type: ignore[attr-defined]
    return method


def drop_stale_fast_paths(cls: type) -> None:
    """Replace, on ``cls``, every inherited ``@fused`` method whose rules ``cls`` or a base
    between them overrides, by the next valid definition up the MRO."""
    mro = cls.__mro__
    for name in dir(cls):
        position = next((i for i, klass in enumerate(mro) if name in vars(klass)), None)
        if position is None or position == 0:
            continue
        original = position
        while True:
            rules = getattr(vars(mro[position])[name], "fuses", None)
            if not rules or not any(rule in vars(klass) for klass in mro[:position] for rule in rules):
                break
            above = [i for i in range(position + 1, len(mro)) if name in vars(mro[i])]
            if not above:  # a fast path with no generic version: keep it (a definition bug)
                break
            position = above[0]
        if position != original:
            setattr(cls, name, vars(mro[position])[name])


def pair_rows(T: Array, pairs: Pairs) -> tuple[Array, Array]:
    """The rows ``(u, v)`` of the direction pairs: ``(T, T)`` for the pairs ``(k, k)``."""
    if pairs is None:
        return T, T
    return np.take(T, pairs[0], axis=-2), np.take(T, pairs[1], axis=-2)


#: Rules that only a layer with parameters needs.
_PARAMETER_RULES = ("param_grad", "tangent_param_grad")
#: Rules that only a layer whose Jacobian depends on its input needs.
_CURVATURE_RULES = ("curvature", "tangent_grad")
#: Taylor-mode rules, whose defaults serve layers with constant Jacobians.
_TAYLOR_RULES = ("taylor", "taylor_vjp")


class LayerSteps:
    """Generic defaults of the engine's steps, built from a layer's rules (see the module)."""

    d_in: Optional[int]
    d_out: Optional[int]
    constant_jacobian: bool
    forward: Callable[..., Any]
    backward: Callable[..., Any]
    tangent: Callable[..., Any]
    curvature: Callable[..., Any]
    tangent_grad: Callable[..., Any]
    param_grad: Callable[..., Any]
    tangent_param_grad: Callable[..., Any]
    jacobian: Callable[..., Any]
    taylor: Callable[..., Any]
    taylor_vjp: Callable[..., Any]

    @property
    def params(self) -> list[Array]:
        return []

    def forward_with_cache(self, x: Array) -> tuple[Array, Cache]:
        """``(y, cache)``: what every pass calls; a :class:`~jacobian_np.Network` overrides it
        (its public ``forward`` returns ``y`` alone)."""
        return self.forward(x)

    def pull(self, block: Block, cache: Cache, owned: bool) -> tuple[Block, bool]:
        """Reverse step: rows with respect to the output to rows with respect to the input.

        Returns the new block and whether the pass owns it (may write into it).
        """
        if isinstance(block, Eye):
            return self._checked(self.jacobian(block.at, cache), block.at.shape, "jacobian", "d_in"), False
        if isinstance(block, Diag):
            J = self._checked(self.jacobian(block.at, cache), block.at.shape, "jacobian", "d_in")
            return np.multiply(block.d[..., :, None], J, order="C"), True
        return self._checked(self.backward(block, cache), block.shape[:-1], "backward", "d_in"), False

    def push(self, block: Block, cache: Cache, owned: bool) -> tuple[Block, bool]:
        """Forward step: tangents at the input to tangents at the output."""
        block = dense(block)
        return self._checked(self.tangent(block, cache), block.shape[:-1], "tangent", "d_out"), False

    def push_second(
        self, T: Array, S: Optional[Array], cache: Cache, pairs: Pairs, collapse: bool, tangents: bool
    ) -> tuple[Optional[Array], Optional[Array]]:
        """Second-order step (forward over forward).

        ``T`` holds first tangents ``(*batch, K, width)`` and ``S`` second tangents
        ``(*batch, P, width)`` (``None``: zero) of the pairs of rows of ``T``
        (``pairs``; ``None`` for the pairs ``(k, k)``), summed into one row when
        ``collapse``.  Returns ``(J T, J S + D^2 f[u, v])``; the first is ``None``
        unless ``tangents``.
        """
        S_out = None if S is None else self.tangent(S, cache)
        if not self.constant_jacobian:
            bend = self.curvature(*pair_rows(T, pairs), cache)
            if collapse:
                bend = bend.sum(axis=-2, keepdims=True)
            S_out = bend if S_out is None else S_out + bend
        return (self.tangent(T, cache) if tangents else None), S_out

    def pull_params(self, dy: Array, cache: Cache, need_input: bool) -> tuple[Optional[Array], list[Array]]:
        """Backpropagation of one row ``dy`` of shape ``(*batch, d_out)``: ``(dx, parameter gradients)``."""
        grads = self.param_grad(dy, cache) if self.params else []
        dx = self.backward(dy[..., None, :], cache)[..., 0, :] if need_input else None
        return dx, grads

    def push_tangents(self, T: Array, cache: Cache) -> tuple[Array, Any]:
        """Training's forward step: the output tangents, and what :meth:`pull_tangents` needs."""
        return self.tangent(T, cache), T

    def pull_tangents(
        self, dz: Optional[Array], dT: Array, saved: Any, cache: Cache, need_input: bool
    ) -> tuple[Optional[Array], Optional[Array], list[Array]]:
        """Training's reverse step (reverse over forward).

        From the adjoints of the output value ``dz`` (``None``: zero) and tangents
        ``dT``, those of the input value and tangents, and the parameter gradients.
        """
        T_in = saved
        grads: list[Array] = []
        if self.params:
            grads = self.tangent_param_grad(dT, T_in, cache)
            if dz is not None:
                grads = [a + b for a, b in zip(grads, self.param_grad(dz, cache))]
        if not need_input:
            return None, None, grads
        dz_in = None if dz is None else self.backward(dz[..., None, :], cache)[..., 0, :]
        if not self.constant_jacobian:
            bend = self.tangent_grad(dT, T_in, cache)
            dz_in = bend if dz_in is None else dz_in + bend
        return dz_in, self.backward(dT, cache), grads

    def cost(self, rows: int, width_in: int, width_out: int) -> int:
        """Multiply-adds to push ``rows`` rows through the layer, per sample.

        :class:`~jacobian_np.Network` adds these up over the layers to choose
        between forward and reverse mode (``docs/modes.md``).  The default,
        ``rows * max(width_in, width_out)``, fits layers that do a few operations
        per element; override it for a layer that does a matrix product.

        Examples
        --------
        >>> from jacobian_np import Affine, Tanh
        >>> Tanh().cost(10, 5, 5), Affine([[1.0, 2.0]]).cost(10, 1, 2)
        (50, 20)
        """
        return rows * max(width_in, width_out)

    def footprint(self, width_in: int) -> tuple[int, int, int]:
        """``(width_out, widest, kept)``: the output width, the widest block the layer
        handles and the values its cache keeps, per sample, for input width ``width_in``.

        Chunking sizes batches from these (:func:`~jacobian_np.set_memory_budget`).
        The default fits layers that keep their output (their input is the previous
        layer's output); composite layers add up their children.
        """
        width_out = width_in if self.d_out is None else self.d_out
        return width_out, max(width_in, width_out), width_out

    def supports(self, rule: str) -> bool:
        """Whether the layer can do what ``rule`` needs (``"tangent"``, ``"curvature"``, ...).

        The one capability check of the package: passes and checks ask it before
        they start, and :meth:`lacking` names the layers that cannot.

        Examples
        --------
        >>> from jacobian_np import Layer, Tanh
        >>> Tanh().supports("tangent"), Tanh().supports("curvature")
        (True, True)
        >>> class Scale(Layer):
        ...     def forward(self, x):
        ...         return 2 * x, None
        ...     def backward(self, dy, cache):
        ...         return 2 * dy
        >>> Scale().supports("tangent")
        False
        """
        return not self.lacking(rule)

    def lacking(self, rule: str) -> list[str]:
        """Names of the layers (this one, or for a composite its parts) that lack ``rule``.

        A rule whose default raises is lacking while the class inherits that
        default; ``param_grad`` and ``tangent_param_grad`` are needed only by layers
        with parameters, ``curvature`` and ``tangent_grad`` only by layers whose
        Jacobian is not constant.
        """
        if rule in _PARAMETER_RULES and not self.params:
            return []
        if (rule in _CURVATURE_RULES or rule in _TAYLOR_RULES) and self.constant_jacobian:
            return []
        method = getattr(type(self), rule, None)
        if method is None or getattr(method, "missing", False):
            return [type(self).__name__]
        return []

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        drop_stale_fast_paths(cls)
        step = cls.forward_with_cache
        if step is LayerSteps.forward_with_cache or any(step is vars(k).get("forward") for k in cls.__mro__[1:]):
            cls.forward_with_cache = cls.forward  # type: ignore[method-assign]  # one call less per layer

    def _checked(self, result: Array, leading: tuple[int, ...], rule: str, width: str) -> Array:
        """``result``, after checking that its shape is ``leading`` plus the layer's width.

        Only generic steps call user rules, so only they check: a wrong shape is
        named here instead of surfacing as a wrong ``J`` or an error layers later.
        """
        expected = getattr(self, width)
        shape = getattr(result, "shape", None)
        if (
            shape is None
            or shape[:-1] != leading
            or (expected is not None and shape[-1] != expected)
        ):
            want = leading + ((expected,) if expected is not None else ("width",))
            raise ValueError(
                f"{type(self).__name__}.{rule} returned an array of shape {shape}; "
                f"expected {want} ({width} = {expected}). Fix the layer's {rule}."
            )
        return result

    def push_taylor(self, series: list[Array], cache: Cache, groups: Groups) -> tuple[list[Array], Any]:
        """Taylor step: the output coefficients of the paths, and what :meth:`pull_taylor` needs.

        ``series`` holds the normalised coefficients ``[x_1, ..., x_K]`` of ``R`` paths
        per sample, each ``(*batch, R, d_in)`` (``docs/taylor.md``).  With ``groups``
        (row counts adding up to ``R``) the top coefficient ``x_K`` is collapsed: it
        has one row per group, the sum over the group's paths, and so has the
        result's.  The top coefficient enters every layer linearly,
        ``y_K = J x_K + (terms in x_1, ..., x_(K-1))``, so a layer with a constant
        Jacobian maps the collapsed rows directly (one row per group in its matrix
        product, not one per path: its ``taylor`` and ``taylor_vjp`` get coefficients
        with different row counts); another layer gets each group's sum in the
        group's first row and zeros in the others, and its top output is summed
        per group.  Every ``taylor`` rule sees only ordinary series.
        """
        if groups is None or not series:
            return self.taylor(series, cache), series
        if self.constant_jacobian:  # linear: the collapsed rows go through as they are
            return self.taylor(series, cache), series
        out = self.taylor(series[:-1] + [spread(series[-1], groups)], cache)
        out[-1] = collapse(out[-1], groups)
        return out, series

    def pull_taylor(
        self, dy: Optional[Array], grads: list[Array], saved: Any, cache: Cache, groups: Groups, need_input: bool
    ) -> tuple[Optional[Array], Optional[list[Array]], list[Array]]:
        """Taylor's reverse step (reverse over Taylor mode), the adjoint of :meth:`push_taylor`.

        From the adjoints of the output value ``dy`` (``(*batch, d_out)``, ``None``:
        zero) and coefficients ``grads``, those of the input value (``None``: zero)
        and coefficients, and the parameter gradients; the input adjoints are
        ``None, None`` unless ``need_input``.
        """
        series = saved
        if groups is None or not series:
            dx, grad_series, param_grads = self.taylor_vjp(series, grads, cache)
        elif self.constant_jacobian:
            dx, grad_series, param_grads = self.taylor_vjp(series, grads, cache)
        else:  # the adjoint of a group's sum is the same in each of its rows, J^T times it
            spread_grads = grads[:-1] + [np.repeat(grads[-1], groups, axis=-2)]
            dx, grad_series, param_grads = self.taylor_vjp(series[:-1] + [spread(series[-1], groups)], spread_grads, cache)
            grad_series[-1] = np.take(grad_series[-1], group_starts(groups), axis=-2)
        if dy is not None:
            if self.params:
                param_grads = _plus_all(param_grads, self.param_grad(dy, cache))
            if need_input:
                dx = _plus(dx, self.backward(dy[..., None, :], cache)[..., 0, :])
        if not need_input:
            return None, None, param_grads
        return dx, grad_series, param_grads


def _plus(a: Optional[Array], b: Optional[Array]) -> Optional[Array]:
    """``a + b`` where ``None`` stands for zero."""
    return b if a is None else a if b is None else a + b


def _plus_all(a: list[Array], b: list[Array]) -> list[Array]:
    """Two lists of parameter gradients added (an empty list stands for zeros)."""
    return b if not a else a if not b else [x + y for x, y in zip(a, b)]
