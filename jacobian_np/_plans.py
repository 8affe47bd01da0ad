"""Execution plans: a pass compiled, once per input shape, into steps over preallocated buffers.

The generic passes (:mod:`jacobian_np._first_order`) ask every layer for its step on
every call and allocate every intermediate anew.  On small networks that per-call
work dominates, and on large batches the fresh multi-MiB blocks make the time depend
on the C library's allocator.  A plan does the same arithmetic, decided once: it is
built on the first call for a network, input shape, dtype, quantity and mode, and
kept in a small least-recently-used cache on the network.

Where a plan applies
--------------------
``Network.jacobian`` and ``Network.forward_backward`` (either mode), when every
layer is an :class:`~jacobian_np.Affine` or an :class:`~jacobian_np.Elementwise`
layer whose steps for the pass are the built-in fused ones: ``type(layer).pull``
(reverse mode) or ``type(layer).push`` (forward mode), and
``type(layer).forward_with_cache``, are the methods of ``Affine`` or
``Elementwise`` themselves.  That is the engine's own test of a fast path: a
subclass that overrides a rule loses the fused step at class creation
(:func:`jacobian_np._steps.drop_stale_fast_paths`), so its override is honoured
because the plan is not used.  Nested networks are flattened.  Everything else (user
layers, Softmax, LayerNorm, Residual, Parallel, a network without an affine
layer or with an unknown input width) runs the generic passes.

What a plan does
----------------
- Layout: samples along the fast axis.  The values of a chunk of ``c`` samples are
  ``(width, c)`` and a block of Jacobian rows (reverse mode) or tangents (forward
  mode) is ``(width, rows, c)``: an elementwise layer scales it with loops over
  ``c`` contiguous samples (on widths of 5 that took a third of the time of the
  ``(c, rows, width)`` layout), and an affine layer is one matrix product
  ``W @ block`` per chunk.  The last matrix product of the pass writes
  ``(c, rows, width)`` directly into the result, a matrix product per row.
- The symbolic blocks of the generic passes (:mod:`jacobian_np._blocks`) are
  resolved when the plan is built: the seed at the end of the pass becomes the
  weights of its first affine layer, or a diagonal, without an identity product.
- Values and derivatives of activations come from the layers' own rules
  (``forward_with_cache`` and ``diagonal``), called with ``(c, width)`` arrays as
  everywhere (transposed views of the plan's values, which elementwise ufuncs keep),
  so they are computed exactly as by the generic passes.  Weights are read from the layers (``layer.W``, ``layer.b``) at
  every call, never copied into the plan: writing into :attr:`Network.params` or
  calling :meth:`Network.set_flat_params` changes what the next call computes.
- Buffers: the blocks and the affine values of one chunk are allocated once per
  thread (``threading.local``) and chunk length, and reused; no buffer is ever
  returned.  Results are allocated for every call and owned by the caller.  Each
  thread has its own buffers, so a network can be used from several threads.

Hooks: :func:`plan_cache_info` (hits, misses and size of a network's cache) and
:func:`set_plans_enabled` (switch plans off, for instance to compare with the
generic passes).
"""

from __future__ import annotations

import collections
import threading
from typing import Any, Callable, NamedTuple, Optional

import numpy as np

from ._chunking import chunk_length, get_memory_budget, positive_int
from ._typing import Array
from .affine import Affine
from .layer import Elementwise

#: Plans kept per network; the least recently used is dropped beyond this.
MAX_PLANS = 8

_enabled = True


class PlanCacheInfo(NamedTuple):
    """Counters of a network's plan cache, as :func:`functools.lru_cache`'s ``cache_info``;
    ``generic`` counts the cached keys for which no plan applies (the generic passes run)."""

    hits: int
    misses: int
    size: int
    maxsize: int
    generic: int


def set_plans_enabled(enabled: bool) -> bool:
    """Use execution plans (``True``, the default) or always the generic passes; return the previous setting.

    Examples
    --------
    >>> from jacobian_np import _plans
    >>> previous = _plans.set_plans_enabled(False)
    >>> _plans.set_plans_enabled(previous)
    False
    """
    global _enabled
    previous, _enabled = _enabled, bool(enabled)
    return previous


def plan_cache_info(network: Any) -> PlanCacheInfo:
    """Hits, misses and size of ``network``'s plan cache.

    Examples
    --------
    >>> import numpy as np
    >>> from jacobian_np import Affine, Network, Tanh
    >>> from jacobian_np._plans import plan_cache_info
    >>> net = Network([Affine(np.ones((2, 3))), Tanh(), Affine(np.ones((3, 1)))])
    >>> X = np.zeros((4, 2))
    >>> J = net.jacobian(X)  # builds a plan
    >>> J = net.jacobian(X + 1)  # same shape, dtype and mode: reuses it
    >>> plan_cache_info(net)
    PlanCacheInfo(hits=1, misses=1, size=1, maxsize=8, generic=0)
    """
    cache = network.__dict__.get("_plan_cache")
    if cache is None:
        return PlanCacheInfo(0, 0, 0, MAX_PLANS, 0)
    with cache.lock:
        plans = list(cache.plans.values())
        return PlanCacheInfo(cache.hits, cache.misses, len(plans), MAX_PLANS, plans.count(None))


class _PlanCache:
    """Plans of one network, least recently used first (``None``: no plan applies), and
    what a probe found per input dtype (:func:`_probe`)."""

    def __init__(self) -> None:
        self.plans: collections.OrderedDict = collections.OrderedDict()
        self.probes: dict = {}
        self.lock = threading.Lock()
        self.hits = self.misses = 0


def plan_for(
    network: Any, quantity: str, mode: str, x: Array, chunk_size: Optional[int], rows: int
) -> Optional["Plan"]:
    """The plan of ``network`` for ``quantity`` (``"jacobian"`` or ``"value_and_jacobian"``)
    in ``mode`` on inputs shaped like ``x``, built on first use; ``None`` when plans are off
    or do not apply (see the module).  Batches are cut into the chunks of the generic
    passes: ``chunk_size``, or what the memory budget allows for ``rows`` rows per sample."""
    if not _enabled:
        return None
    if chunk_size is not None:
        chunk_size = positive_int(chunk_size, "Network", "chunk_size")
    cache = network.__dict__.get("_plan_cache")
    if cache is None:
        cache = network.__dict__.setdefault("_plan_cache", _PlanCache())
    key = (quantity, mode, x.shape, x.dtype, chunk_size, get_memory_budget() if x.ndim > 1 else None)
    plan = cache.plans.get(key, _MISSING)  # no lock: each OrderedDict operation is atomic
    if plan is not _MISSING:
        try:
            cache.plans.move_to_end(key)
        except KeyError:  # dropped by another thread meanwhile
            pass
        cache.hits += 1
        return plan
    with cache.lock:
        cache.misses += 1
    plan = None
    layers = _fusable_layers(network.layers, "pull" if mode == "reverse" else "push")
    if layers is not None and network.d_in is not None and any(isinstance(layer, Affine) for layer in layers):
        probe = cache.probes.get(x.dtype)
        if probe is None:
            probe = cache.probes[x.dtype] = _probe(layers, x)
        chunk = 1 if x.ndim == 1 else chunk_length(network._per_sample_bytes(x, rows), chunk_size, "Network")
        plan = Plan(layers, mode, quantity == "value_and_jacobian", probe, chunk)
    with cache.lock:
        cache.plans[key] = plan
        cache.plans.move_to_end(key)
        while len(cache.plans) > MAX_PLANS:
            cache.plans.popitem(last=False)
    return plan


_MISSING = object()


def _probe(layers: list, x: Array) -> tuple[list, list, np.dtype]:
    """One sample through the layers' own rules, in the plan's layout: the widths and
    dtypes of the values, and the dtype of the blocks (done once per input dtype)."""
    v = np.zeros((x.shape[-1], 1), dtype=x.dtype)
    widths, value_dtypes, block_dtypes = [v.shape[0]], [], []
    for layer in layers:
        if isinstance(layer, Affine):
            v = _affine_values(layer, v, None)
            block_dtypes.append(layer.W.dtype)
        else:
            value, cache = layer.forward_with_cache(v.T)
            block_dtypes.append(layer.diagonal(cache).dtype)
            v = value.T
        widths.append(v.shape[0])
        value_dtypes.append(v.dtype)
    return widths, value_dtypes, np.result_type(*block_dtypes)


def _fusable_layers(layers: Any, step: str) -> Optional[list]:
    """``layers`` with nested networks flattened, or ``None`` if one is not fusable for ``step``."""
    from ._chain import Chain

    flat: list = []
    for layer in layers:
        cls = type(layer)
        if isinstance(layer, Chain) and getattr(cls, step) is getattr(Chain, step) and (
            cls.forward_with_cache is Chain.forward_with_cache
        ):
            inner = _fusable_layers(layer.layers, step)
            if inner is None:
                return None
            flat += inner
            continue
        base = Affine if isinstance(layer, Affine) else Elementwise if isinstance(layer, Elementwise) else None
        if base is None or getattr(cls, step) is not getattr(base, step):
            return None
        if cls.forward_with_cache is not base.forward_with_cache:
            return None
        flat.append(layer)
    return flat


class Plan:
    """The first-order pass of a chain of affine and elementwise layers, for one input shape.

    Calling it with an input of the shape it was built for returns ``(y, J)`` as
    ``Network.forward_backward`` does (``y`` is ``None`` unless the value was asked for).
    """

    def __init__(self, layers: list, mode: str, with_value: bool, probe: tuple, chunk: int) -> None:
        self.layers, self.reverse, self.with_value, self.chunk = layers, mode == "reverse", with_value, chunk
        self.widths, self.value_dtypes, self.dtype = probe
        self.rows = self.widths[-1] if self.reverse else self.widths[0]
        self._local = threading.local()

    def __call__(self, x: Array) -> tuple[Optional[Array], Array]:
        d_in, d_out = self.widths[0], self.widths[-1]
        programs = self._local.__dict__.get("programs")
        if programs is None:
            programs = self._local.programs = {}
        if x.ndim == 1:  # one point: the shortest path
            J = np.empty((d_out, d_in), dtype=self.dtype)
            y = np.empty(d_out, dtype=self.value_dtypes[-1]) if self.with_value else None
            program = programs.get(1) or programs.setdefault(1, _Program(self, 1))
            program(x[None], J[None], None if y is None else y[None])
            return y, J
        n = len(x)
        J = np.empty((n, d_out, d_in), dtype=self.dtype)
        y = np.empty((n, d_out), dtype=self.value_dtypes[-1]) if self.with_value else None
        for start in range(0, n, self.chunk):
            stop = min(n, start + self.chunk)
            program = programs.get(stop - start) or programs.setdefault(stop - start, _Program(self, stop - start))
            if stop - start == n:  # one chunk: the whole arrays
                program(x, J, y)
            else:
                program(x[start:stop], J[start:stop], None if y is None else y[start:stop])
        return y, J


def _affine_values(layer: Affine, v: Array, out: Optional[Array]) -> Array:
    """``W^T v + b`` for values ``v`` of shape ``(d_in, c)``: an affine layer in the plan's layout."""
    z = np.matmul(layer.W.T, v, out=out)
    if layer.b is not None:
        z += layer.b[:, None]
    return z


class _Program:
    """A plan's steps for chunks of ``c`` samples, over this thread's buffers.

    The derivative pass visits the layers from the output (reverse mode) or the
    input (forward).  Its block ``B`` of shape ``(width, rows, c)`` maps the start
    of the pass to the current position: ``B[j, r, i] = dy_r / dv_j`` (reverse) or
    ``B[j, k, i] = dv_j / dx_k`` (forward), with ``v`` the values there.  An
    elementwise layer scales it by ``f'`` (``B *= d[:, None, :]``), an affine layer
    multiplies it by its matrix ``M`` (``W`` in reverse mode, ``W^T`` forward):
    ``B <- M @ B``.  The last matrix product writes ``(c, rows, width)``, the
    layout of the result, and the elementwise layers after it scale the result.

    The steps are closures over the buffers; they read and write ``regs``:
    ``regs[i]`` the derivative ``f'`` of elementwise layer ``i``, ``(width, c)``, and
    ``regs[-1]`` the result of the chunk.
    """

    def __init__(self, plan: Plan, c: int) -> None:
        layers, L = plan.layers, len(plan.layers)
        elementwise = [i for i, layer in enumerate(layers) if not isinstance(layer, Affine)]
        stop = L if plan.with_value else (elementwise[-1] + 1 if elementwise else 0)  # values needed
        # values (width, c) up to the last affine layer, then (c, width): the output needs no
        # transposing copy, and the last affine layer of a network writes it directly.  One
        # sample needs no transposing at all: (c, width) throughout.
        split = 0 if c == 1 else max(i for i, layer in enumerate(layers) if isinstance(layer, Affine))
        self.head: list[tuple] = []
        self.tail: list[tuple] = []
        for i, layer in enumerate(layers[:stop]):
            out = None
            if isinstance(layer, Affine) and not (i == L - 1 and plan.with_value):
                width = plan.widths[i + 1]
                out = np.empty((width, c) if i < split else (c, width), plan.value_dtypes[i])
            (self.head if i < split else self.tail).append((i, layer, isinstance(layer, Affine), out))
        self.L, self.reverse, self.rows = L, plan.reverse, plan.rows
        forward_rows = not plan.reverse and plan.rows > 1  # forward mode writes (c, K, d_out), then transposes
        self.transposed = np.empty((c, plan.rows, plan.widths[-1]), plan.dtype) if forward_rows else None
        self.blocks: list = []
        self.steps = self._pass(plan, c)
        # two buffers, used in turn, each as large as the largest block it holds
        for slot in (0, 1):
            views = [block for block in self.blocks if block.slot == slot]
            if views:
                buffer = np.empty(max(block.size for block in views), dtype=plan.dtype)
                for block in views:
                    block.allocate(buffer, self.rows, c)

    def __call__(self, x: Array, J: Array, y: Optional[Array]) -> None:
        regs: list = [None] * (self.L + 1)
        v = x.T
        for i, layer, affine, out in self.head:  # values (width, c)
            if affine:
                v = np.dot(layer.W.T, v, out=out)  # np.dot: half the overhead of matmul on small arrays
                if layer.b is not None:
                    v += layer.b[:, None]
            else:  # the rules see (c, width), as everywhere: a view of our (width, c)
                value, cache = layer.forward_with_cache(v.T)
                regs[i] = layer.diagonal(cache).T
                v = value.T
        v = v.T
        for i, layer, affine, out in self.tail:  # values (c, width)
            if affine:
                v = np.dot(v, layer.W, out=y if out is None else out)
                if layer.b is not None:
                    v += layer.b
            else:
                v, cache = layer.forward_with_cache(v)
                regs[i] = layer.diagonal(cache).T
        if y is not None and v is not y:
            np.copyto(y, v)
        if self.reverse:
            regs[-1] = J
        elif self.transposed is None:  # one tangent: (c, d_out, 1) is (c, 1, d_out)
            regs[-1] = J.reshape(len(J), 1, J.shape[1])
        else:
            regs[-1] = self.transposed
        for step in self.steps:
            step(regs)
        if self.transposed is not None:
            np.copyto(J, self.transposed.transpose(0, 2, 1))

    def _pass(self, plan: Plan, c: int) -> list:
        """The derivative pass as steps, with the symbolic seed resolved while building.

        While building, the block is in one of the states ``("eye",)`` (the
        identity), ``("const", M)`` (the same matrix at every sample, ``M()`` read
        from the weights at run time), ``("diag", register)`` or ``("dense",
        buffer)``.
        """
        layers, L, rows, reverse = plan.layers, self.L, plan.rows, plan.reverse
        order = range(L - 1, -1, -1) if reverse else range(L)
        last_matrix = [i for i in order if isinstance(layers[i], Affine)][-1]
        state: tuple = ("eye",)
        steps: list = []
        done = False  # the result has been written: later layers scale it
        for i in order:
            layer = layers[i]
            width = plan.widths[i] if reverse else plan.widths[i + 1]  # after this layer, in pass order
            if isinstance(layer, Affine):
                M = _matrix_getter(layer, reverse)
                if i == last_matrix:
                    steps.append(_result_step(state, M, c))
                    done = True
                elif state[0] == "eye":
                    state = ("const", M)
                elif state[0] == "const":
                    state = ("const", lambda M=M, previous=state[1]: M() @ previous())
                else:
                    out = self._block(state, width, c)
                    steps.append(_diag_times_matrix(state[1], M, out) if state[0] == "diag"
                                 else _matrix_times_dense(M, state[1], out))
                    state = ("dense", out)
                continue
            d = i
            if done:
                steps.append(_scale_result(d))
            elif state[0] == "eye":
                state = ("diag", d)
            elif state[0] == "diag":
                steps.append(_diag_product(state[1], d))
                state = ("diag", d)
            elif state[0] == "const":
                out = self._block(state, width, c)
                steps.append(_const_times_diag(state[1], d, out))
                state = ("dense", out)
            else:
                steps.append(_scale_dense(state[1], d))
        return steps

    def _block(self, state: tuple, width: int, c: int) -> "_Block":
        """A block ``(width, rows, c)`` in the buffer that the current block is not in."""
        slot = 1 - state[1].slot if state[0] == "dense" else 0
        block = _Block(slot, width, width * self.rows * c)
        self.blocks.append(block)
        return block


class _Block:
    """A block of the pass, a view of one of a program's two buffers, set once they are sized."""

    __slots__ = ("slot", "width", "size", "array", "matrix")

    def __init__(self, slot: int, width: int, size: int) -> None:
        self.slot, self.width, self.size = slot, width, size

    def allocate(self, buffer: Array, rows: int, c: int) -> None:
        self.array = buffer[: self.size].reshape(self.width, rows, c)
        self.matrix = self.array.reshape(self.width, rows * c)  # for the matrix products


def _matrix_getter(layer: Affine, reverse: bool) -> Callable[[], Array]:
    """The matrix ``M`` by which the layer maps a block, read from the layer when called."""
    if reverse:
        return lambda: layer.W
    return lambda: layer.W.T


# --- steps: each takes the registers (see _Program) ---------------------------------


def _diag_product(previous: int, d: int) -> Callable[[list], None]:
    def step(regs: list) -> None:  # two elementwise layers in a row: one diagonal
        regs[d] = regs[previous] * regs[d]

    return step


def _const_times_diag(M: Callable[[], Array], d: int, out: _Block) -> Callable[[list], None]:
    def step(regs: list) -> None:  # B[j, r, i] = M[j, r] d[j, i]
        np.multiply(M()[:, :, None], regs[d][:, None, :], out=out.array)

    return step


def _diag_times_matrix(d: int, M: Callable[[], Array], out: _Block) -> Callable[[list], None]:
    def step(regs: list) -> None:  # B[k, r, i] = M[k, r] d[r, i]
        np.multiply(M()[:, :, None], regs[d][None, :, :], out=out.array)

    return step


def _matrix_times_dense(M: Callable[[], Array], block: _Block, out: _Block) -> Callable[[list], None]:
    def step(regs: list) -> None:  # one matrix product for all rows and samples
        np.dot(M(), block.matrix, out=out.matrix)

    return step


def _scale_dense(block: _Block, d: int) -> Callable[[list], None]:
    def step(regs: list) -> None:
        np.multiply(block.array, regs[d][:, None, :], out=block.array)

    return step


def _scale_result(d: int) -> Callable[[list], None]:
    def step(regs: list) -> None:  # the result (c, rows, width) and d (width, c)
        result = regs[-1]
        np.multiply(result, regs[d].T[:, None, :], out=result)

    return step


def _result_step(state: tuple, M: Callable[[], Array], c: int) -> Callable[[list], None]:
    """The last matrix product of the pass, into the result ``R`` of shape ``(c, rows, width)``:
    ``R[i, r, w] = (M @ B)[w, r, i]``."""
    kind = state[0]
    if kind == "eye":

        def step(regs: list) -> None:
            np.copyto(regs[-1], M().T)

    elif kind == "const":
        previous = state[1]

        def step(regs: list) -> None:
            np.copyto(regs[-1], (M() @ previous()).T)

    elif kind == "diag":
        d = state[1]

        def step(regs: list) -> None:
            np.multiply(regs[d].T[:, :, None], M().T[None, :, :], out=regs[-1])

    elif c == 1:
        block = state[1]

        def step(regs: list) -> None:  # (rows, width) @ (width, width_out)
            np.dot(block.matrix.T, M().T, out=regs[-1][0])

    else:
        block = state[1]

        def step(regs: list) -> None:  # (rows, c, width) @ (width, width_out): a matrix product per row
            np.matmul(block.array.transpose(1, 2, 0), M().T, out=regs[-1].transpose(1, 0, 2))

    return step
