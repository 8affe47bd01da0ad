"""Execution plans: a pass compiled, once per input shape, into steps over preallocated buffers.

The generic passes (:mod:`jacobian_np._first_order`) ask every layer for its step on
every call and allocate every intermediate anew.  On small networks that per-call
work dominates, and on large batches the fresh multi-MiB blocks make the time depend
on the C library's allocator.  A plan does the same arithmetic, decided once: it is
built on the first call for a network, input shape, dtype, quantity and mode, and
kept in a small least-recently-used cache on the network.

Where a plan applies
--------------------
Four kinds of pass have plans: ``Network.jacobian`` and ``forward_backward``
(either mode, :class:`Plan`); training through the Jacobian,
``jacobian_and_pullback`` and ``jacobian_param_grad`` (:class:`TrainingPlan`); and
the second tangents of the pairs ``(k, k)`` behind ``laplacian`` (exact and
Hutchinson), ``hessian_diagonal`` and the ``hessian`` of one input
(:class:`SecondOrderPlan`).  A plan applies when every layer is an
:class:`~jacobian_np.Affine` or an :class:`~jacobian_np.Elementwise` layer whose
steps for the pass are the built-in fused ones: ``type(layer).pull`` (reverse
mode), ``push`` (forward mode), ``push_tangents`` and ``pull_tangents``
(training), ``push`` and ``push_second`` (second order), and
``forward_with_cache``, are the methods of ``Affine`` or ``Elementwise``
themselves (``Affine`` marks its generic training steps ``@fused`` for this).  That is the engine's own test of a fast path: a
subclass that overrides a rule loses the fused step at class creation
(:func:`jacobian_np._steps.drop_stale_fast_paths`), so its override is honoured
because the plan is not used.  Nested networks are flattened.  In reverse mode the
layers after the last of an unbroken run of such layers from the input (a Softmax
output, say) seed the pass by their own generic steps, and the plan takes over from
there.  Everything else (user layers, Softmax, LayerNorm, Residual and Parallel
before that point or in forward mode, a network without an affine layer in the run
or with an unknown input width) runs the generic passes.  So does training or second
order on a network with a weight matrix larger than :data:`MAX_WEIGHT_BYTES` allows.

What a plan does
----------------
- Layout: samples along the fast axis.  The values of a chunk of ``c`` samples are
  ``(width, c)`` and a block of Jacobian rows (reverse mode) or tangents (forward
  mode) is ``(width, rows, c)``: an elementwise layer scales it with loops over
  ``c`` contiguous samples (on widths of 5 that took a third of the time of the
  ``(c, rows, width)`` layout), and an affine layer is one matrix product
  ``W @ block`` per chunk.  The last matrix product of the pass writes
  ``(c, rows, width)`` directly into the result, a matrix product per row.
- One sample (``x`` of shape ``(d_in,)``): the pass is written out as straight-line
  Python over 1-D values, as a hand-written function would be, and compiled once
  (:class:`_Point`): on small networks the overhead of each NumPy call and each
  interpreted line is the whole cost.
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
  thread and chunk length, and reused; no buffer is ever returned.  Results are
  allocated for every call and owned by the caller.  Each thread has its own
  buffers, so a network can be used from several threads; all plans of a thread
  share a pool of at most twice the memory budget (:func:`_per_thread`).

Not yet planned: ``jvp``, ``vjp``, ``divergence``, ``param_grad`` and the full
``hessian`` of several inputs (the pairs ``k < l``), which run the generic passes.

Hooks: :func:`plan_cache_info` (hits, misses and size of a network's cache) and
:func:`set_plans_enabled` (switch plans off, for instance to compare with the
generic passes).
"""

from __future__ import annotations

import collections
import threading
import weakref
from typing import Any, Callable, NamedTuple, Optional

import numpy as np

from ._chunking import chunk_length, get_memory_budget, positive_int
from ._blocks import Eye, dense
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
        self.last: tuple = (None, None)  # (key, plan) of the latest lookup, the common case


def plan_for(
    network: Any, quantity: str, mode: str, x: Array, chunk_size: Optional[int], rows: int
) -> Optional[Callable[[Array], tuple[Optional[Array], Array]]]:
    """The plan of ``network`` for ``quantity`` (``"jacobian"`` or ``"value_and_jacobian"``)
    in ``mode`` on inputs shaped like ``x``, built on first use: ``x -> (y or None, J)``, a
    :class:`Plan` for a batch and a :class:`_Point`'s pass for one sample; ``None`` when
    plans are off or do not apply (see the module).  Batches are cut into the chunks of the
    generic passes: ``chunk_size``, or what the memory budget allows for ``rows`` rows per
    sample."""
    if not _enabled:
        return None
    if chunk_size is not None:
        chunk_size = positive_int(chunk_size, "Network", "chunk_size")
    key = (quantity, mode, x.shape, x.dtype, chunk_size, get_memory_budget() if x.ndim > 1 else None)
    return _cached(network, key, _build_plan, network, quantity, mode, x, chunk_size, rows)


def _build_plan(
    cache: _PlanCache, network: Any, quantity: str, mode: str, x: Array, chunk_size: Optional[int], rows: int
) -> Optional[Callable[[Array], tuple[Optional[Array], Array]]]:
    """The :class:`Plan` of :func:`plan_for`, or ``None`` if none applies."""
    steps = ("pull",) if mode == "reverse" else ("push",)
    # reverse mode: the longest run of fusable layers from the input; the rest, if any,
    # seeds the pass with its own generic steps
    k = len(network.layers)
    if mode == "reverse":
        k = next((i for i, layer in enumerate(network.layers) if _fusable_layers([layer], steps) is None), k)
    layers, suffix = _planned_layers(network, network.layers[:k], steps), list(network.layers[k:])
    if layers is None:
        return None
    probe = cache.probes.get((x.dtype, k))
    if probe is None:
        try:
            probe = cache.probes[x.dtype, k] = _probe(layers, suffix, x)
        except Exception:  # noqa: BLE001 - a layer's error: the generic passes report it on the real input
            return None
    if x.ndim == 1:  # one sample: its straight-line pass itself, called without a detour
        return _Point(Plan(layers, suffix, mode, quantity == "value_and_jacobian", probe, 1)).run
    chunk = chunk_length(network._per_sample_bytes(x, rows), chunk_size, "Network")
    return Plan(layers, suffix, mode, quantity == "value_and_jacobian", probe, chunk)


def training_plan_for(network: Any, x: Array) -> Optional["TrainingPlan"]:
    """The plan of ``network`` for training through the Jacobian (``jacobian_and_pullback``,
    ``jacobian_param_grad``) on inputs shaped like ``x``; ``None`` when plans are off or do
    not apply (see the module)."""
    if not _enabled:
        return None

    def build(cache: _PlanCache) -> Optional[TrainingPlan]:
        layers = _planned_layers(network, network.layers, ("push_tangents", "pull_tangents"))
        if layers is None or not _small_weights(layers, "training"):
            return None
        params = [p for layer in layers for p in layer.params]
        if len({id(p) for p in params}) < len(params):  # a shared array: gradients to merge
            return None
        try:
            return TrainingPlan(layers, x)
        except Exception:  # noqa: BLE001 - a layer's error: the generic passes report it on the real input
            return None

    return _cached(network, ("pullback", x.shape, x.dtype), build)


def second_order_plan_for(network: Any, x: Array, T: Array, collapse: bool) -> Optional["SecondOrderPlan"]:
    """The plan of ``network`` for the second tangents of the pairs ``(k, k)`` of the rows of
    ``T`` (``laplacian``, ``hessian_diagonal``, and ``hessian`` of one input), summed into one
    row if ``collapse``, on inputs shaped like ``x``; ``None`` when plans are off or do not
    apply (see the module)."""
    if not _enabled:
        return None

    def build(cache: _PlanCache) -> Optional[SecondOrderPlan]:
        layers = _planned_layers(network, network.layers, ("push", "push_second"))
        if layers is None or not _small_weights(layers, "second order"):
            return None
        try:
            return SecondOrderPlan(layers, x, T, collapse)
        except Exception:  # noqa: BLE001 - a layer's error: the generic passes report it on the real input
            return None

    return _cached(network, ("second", x.shape, x.dtype, T.shape, T.dtype, collapse), build)


#: The largest weight matrix, in bytes, of a network with training or second-order plans.
#: Their stacks hold the values and each direction as separate blocks, and an affine layer
#: is a product per block, which reads the weights again for each; beyond a core's cache
#: that made them slower than the generic passes' one product per layer over all rows.
#: Measured (plan / generic, interleaved, n = 256): training 0.83-0.92 at 8-256-256-8
#: (512 KiB), 1.05 at 8-362-362-8 (1 MiB), 1.29 at 16-768-768-16 (4.5 MiB); second order
#: 0.59 at 8-181-181-8 (256 KiB), 1.16 at 8-256-256-8, 2.7 at bench_taylor's 50-768-768-512-512-1.
MAX_WEIGHT_BYTES = {"training": 512 * 2**10, "second order": 256 * 2**10}


def _small_weights(layers: list, kind: str) -> bool:
    limit = MAX_WEIGHT_BYTES[kind]
    return all(layer.W.nbytes <= limit for layer in layers if isinstance(layer, Affine))


def _planned_layers(network: Any, layers: Any, steps: tuple[str, ...]) -> Optional[list]:
    """``layers`` flattened, if a plan can run them: every step in ``steps`` fusable, the
    input width known, and an affine layer to plan around; else ``None``."""
    fusable = _fusable_layers(layers, steps)
    if fusable is None or network.d_in is None or not any(isinstance(layer, Affine) for layer in fusable):
        return None
    return fusable


def _cached(network: Any, key: tuple, build: Callable[..., Any], *args: Any) -> Any:
    """The plan cached on ``network`` under ``key``, or ``build(cache, *args)``'s, cached."""
    cache = network.__dict__.get("_plan_cache")
    if cache is None:
        cache = network.__dict__.setdefault("_plan_cache", _PlanCache())
    last = cache.last  # the most recently used: already last in the order, nothing to move
    if last[0] == key:
        cache.hits += 1
        return last[1]
    plan = cache.plans.get(key, _MISSING)  # no lock: each OrderedDict operation is atomic
    if plan is not _MISSING:
        try:
            cache.plans.move_to_end(key)
        except KeyError:  # dropped by another thread meanwhile
            pass
        cache.hits += 1
        cache.last = key, plan
        return plan
    with cache.lock:
        cache.misses += 1
    plan = build(cache, *args)
    with cache.lock:
        cache.plans[key] = plan
        cache.plans.move_to_end(key)
        while len(cache.plans) > MAX_PLANS:
            cache.plans.popitem(last=False)
        cache.last = key, plan
    return plan


_MISSING = object()


def _probe(layers: list, suffix: list, x: Array) -> tuple[list, list, np.dtype]:
    """One sample through the layers' own rules, in the plan's layout, and through the
    steps of the ``suffix``: the widths and dtypes of the values, and the dtype of the
    blocks (done once per input dtype)."""
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
    if suffix:
        y, caches = _suffix_values(suffix, v.T)
        block_dtypes.append(_suffix_seed(suffix, y, caches).dtype)
        widths.append(y.shape[-1])
        value_dtypes.append(y.dtype)
    return widths, value_dtypes, np.result_type(*block_dtypes)


def _suffix_values(suffix: list, v: Array) -> tuple[Array, list]:
    """The output and the caches of the layers after a plan's, from its values ``(c, width)``."""
    caches = []
    for layer in suffix:
        v, cache = layer.forward_with_cache(v)
        caches.append(cache)
    return v, caches


def _suffix_seed(suffix: list, y: Array, caches: list) -> Array:
    """The Jacobian of the layers after a plan's, ``(c, d_out, width)``, by their own steps."""
    block, owned = Eye(y), False
    for layer, cache in zip(reversed(suffix), reversed(caches)):
        block, owned = layer.pull(block, cache, owned)
    return dense(block)


def _fusable_layers(layers: Any, steps: tuple[str, ...]) -> Optional[list]:
    """``layers`` with nested networks flattened, or ``None`` unless every layer's
    ``forward_with_cache`` and ``steps`` are those of ``Affine`` or ``Elementwise``."""
    from ._chain import Chain

    flat: list = []
    for layer in layers:
        cls = type(layer)
        base = Chain if isinstance(layer, Chain) else Affine if isinstance(layer, Affine) else (
            Elementwise if isinstance(layer, Elementwise) else None
        )
        if base is None or any(getattr(cls, step) is not getattr(base, step) for step in ("forward_with_cache",) + steps):
            return None
        if base is Chain:
            inner = _fusable_layers(layer.layers, steps)
            if inner is None:
                return None
            flat += inner
        else:
            flat.append(layer)
    return flat


class Plan:
    """The first-order pass of a chain of affine and elementwise layers, for batches of one shape.

    Calling it with a batch of the shape it was built for returns ``(y, J)`` as
    ``Network.forward_backward`` does (``y`` is ``None`` unless the value was asked for).
    One sample runs the straight-line pass of :class:`_Point`, built from a plan.
    """

    def __init__(self, layers: list, suffix: list, mode: str, with_value: bool, probe: tuple, chunk: int) -> None:
        self.layers, self.suffix, self.reverse = layers, suffix, mode == "reverse"
        self.with_value, self.chunk = with_value, chunk
        self.widths, self.value_dtypes, self.dtype = probe
        self.rows = self.widths[-1] if self.reverse else self.widths[0]

    def _program(self, c: int) -> "_Program":
        return _per_thread(self, c, lambda: _Program(self, c))

    def __call__(self, x: Array) -> tuple[Optional[Array], Array]:
        d_in, d_out = self.widths[0], self.widths[-1]
        n = len(x)
        J = np.empty((n, d_out, d_in), dtype=self.dtype)
        y = np.empty((n, d_out), dtype=self.value_dtypes[-1]) if self.with_value else None
        for start in range(0, n, self.chunk):
            stop = min(n, start + self.chunk)
            program = self._program(stop - start)
            if stop - start == n:  # one chunk: the whole arrays
                program(x, J, y)
            else:
                program(x[start:stop], J[start:stop], None if y is None else y[start:stop])
        return y, J


class _Point:
    """A plan's pass for one sample, on 1-D values: the shortest path, as straight-line code.

    Nothing to chunk, transpose or keep: every array holds a few numbers, so each
    NumPy call costs its overhead only, and so does each line of Python around it.
    The pass is therefore written out once, when the plan first sees one sample, as
    the function a user would write by hand for this network (:attr:`source`), and
    compiled: no loop over layers, no branch on their kinds, the symbolic seed
    resolved while writing it.  The weights are read from the layers at every call;
    every array is allocated by the call, so the result is the caller's and threads
    share nothing.

    The values are ``(width,)``.  The block ``B`` of the derivative pass is ``J^T``
    at the current position: ``dv / dx`` in forward mode, ``(d_in, width)``, and
    ``(dy / dv)^T`` in reverse mode, ``(width, d_out)``.  An affine layer multiplies
    it by its weights as they are stored, ``B W`` (forward) or ``W B`` (reverse): a
    transposed operand made OpenBLAS up to 1.3 times slower (W1's ``(10, 100) @
    (100, 500)`` product).  An elementwise layer scales its columns (forward) or rows
    (reverse) by ``f'``.  The block starts as the identity, kept symbolic with a
    pending diagonal until the first affine layer, and ends as the caller's copy of
    ``B^T``.
    """

    def __init__(self, plan: Plan) -> None:
        layers, reverse = plan.layers, plan.reverse
        names: dict[str, Any] = {"dot": np.dot, "copy": _owned_copy, "suffix_values": _suffix_values,
                                 "suffix_seed": _suffix_seed, "suffix": plan.suffix}
        lines = ["def point(x):", "    v = x"]
        elementwise = [i for i, layer in enumerate(layers) if not isinstance(layer, Affine)]
        stop = len(layers) if plan.with_value or plan.suffix else (elementwise[-1] + 1 if elementwise else 0)
        for i, layer in enumerate(layers[:stop]):  # the values, and f' of each elementwise layer
            names[f"L{i}"] = layer
            if isinstance(layer, Affine):  # dot returns a new array: the bias goes in place
                lines += [f"    v = dot(v, L{i}.W)", f"    if L{i}.b is not None:", f"        v += L{i}.b"]
            elif _is_plain(layer):  # Elementwise's own forward and diagonal: f(x), then f'(x, f(x))
                names[f"f{i}"], names[f"g{i}"] = layer.f, layer.fprime
                lines += [f"    z = v", f"    v = f{i}(z)", f"    d{i} = g{i}(z, v)"]
            else:
                names[f"f{i}"], names[f"g{i}"] = layer.forward_with_cache, layer.diagonal
                lines += [f"    v, cache = f{i}(v)", f"    d{i} = g{i}(cache)"]
        # the derivative pass: the block is "I" (identity), "diag" (pending diagonal only) or
        # "B" (in B, owned by the call or not)
        state, owned = "I", False
        if plan.suffix:  # reverse mode from the Jacobian of the layers after the plan's
            lines += ["    v, caches = suffix_values(suffix, v)", "    B = suffix_seed(suffix, v, caches).T"]
            state = "B"
        scale = "[:, None]" if reverse else ""  # rows (reverse) or columns (forward)
        for i in range(len(layers) - 1, -1, -1) if reverse else range(len(layers)):
            layer = layers[i]
            names[f"L{i}"] = layer
            if not isinstance(layer, Affine):
                if state == "B":
                    lines.append(f"    B *= d{i}{scale}" if owned else f"    B = B * d{i}{scale}")
                    owned = True
                else:
                    lines.append(f"    diagonal = d{i}" if state == "I" else f"    diagonal = diagonal * d{i}")
                    state = "diag"
                continue
            if state == "I":
                lines.append(f"    B = L{i}.W")
            elif state == "diag":  # diag(d) W (forward) or W diag(d) (reverse)
                lines.append(f"    B = L{i}.W * diagonal" if reverse else f"    B = diagonal[:, None] * L{i}.W")
            else:
                lines.append(f"    B = dot(L{i}.W, B)" if reverse else f"    B = dot(B, L{i}.W)")
            state, owned = "B", state != "I"
        y = "v" if plan.with_value else "None"
        lines.append(f"    return {y}, copy(B.T)")
        self.source = "\n".join(lines) + "\n"
        exec(compile(self.source, "<jacobian_np one-sample plan>", "exec"), names)
        # x -> (y or None, J); the same operations as the generic passes, so the same dtypes
        self.run: Callable[[Array], tuple[Optional[Array], Array]] = names["point"]


def _owned_copy(a: Array) -> Array:
    return np.array(a, order="C")


def _is_plain(layer: Elementwise) -> bool:
    """Whether the layer's ``forward_with_cache``, ``forward`` and ``diagonal`` are
    ``Elementwise``'s own: ``f(x)``, cached with ``x``, and ``fprime(x, f(x))``."""
    cls = type(layer)
    return all(getattr(cls, name) is getattr(Elementwise, name) for name in ("forward_with_cache", "forward", "diagonal"))


class _Buffers(tuple):
    """Arrays a plan reuses from call to call, with their size for the per-thread pool."""

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self)


#: Each thread's buffers of all plans: key -> (weak reference to the plan, buffers), least
#: recently used first, and their total size.
_pool = threading.local()


def _per_thread(plan: Any, key: Any, build: Callable[[], Any]) -> Any:
    """This thread's buffers (or a program holding them) of ``plan`` for ``key``: ``build()``'s,
    kept for the next call.

    All plans of a thread share one pool of at most twice the memory budget, the least
    recently used dropped first (and rebuilt if used again): a Dask worker, say, keeps the
    network of every task it ran, each a copy with its own plans, and those copies must
    not each keep their buffers.  A buffer never outlives its use by another plan, since
    the pool checks the plan's identity through a weak reference.
    """
    pool = _pool.__dict__.get("entries")
    if pool is None:
        pool = _pool.entries = collections.OrderedDict()
        _pool.nbytes = 0
    full_key = (id(plan), key)
    entry = pool.get(full_key)
    if entry is not None:
        if entry[0]() is plan:
            pool.move_to_end(full_key)
            return entry[1]
        del pool[full_key]  # a dead plan's, whose id is now another's
        _pool.nbytes -= entry[1].nbytes
    value = build()
    pool[full_key] = (weakref.ref(plan), value)
    _pool.nbytes += value.nbytes
    limit = 2 * get_memory_budget()
    while _pool.nbytes > limit and len(pool) > 1:
        _, (_, dropped) = pool.popitem(last=False)
        _pool.nbytes -= dropped.nbytes
    return value


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
    ``regs[i]`` the derivative ``f'`` of elementwise layer ``i``, ``(width, c)``,
    ``regs[-2]`` the output and caches of the layers after the plan's (reverse mode),
    and ``regs[-1]`` the result of the chunk.
    """

    def __init__(self, plan: Plan, c: int) -> None:
        layers, L = plan.layers, len(plan.layers)
        elementwise = [i for i, layer in enumerate(layers) if not isinstance(layer, Affine)]
        stop = L if plan.with_value or plan.suffix else (elementwise[-1] + 1 if elementwise else 0)  # values needed
        # values (width, c); when the output is asked for, (c, width) from the last affine
        # layer on, which then writes it directly (no transposing copy; the bias added
        # along a short last axis costs more, so only then).  One sample needs no
        # transposing at all: (c, width) throughout.
        last_affine = max(i for i, layer in enumerate(layers) if isinstance(layer, Affine))
        split = 0 if c == 1 else last_affine if plan.with_value else L
        self.head: list[tuple] = []
        self.tail: list[tuple] = []
        for i, layer in enumerate(layers[:stop]):
            out = None
            if isinstance(layer, Affine) and not (i == L - 1 and plan.with_value and not plan.suffix):
                width = plan.widths[i + 1]
                out = np.empty((width, c) if i < split else (c, width), plan.value_dtypes[i])
            (self.head if i < split else self.tail).append((i, layer, isinstance(layer, Affine), out))
        self.L, self.reverse, self.rows, self.suffix = L, plan.reverse, plan.rows, plan.suffix
        # forward mode writes (c, K, d_out), then transposes it into J, for several samples and tangents
        forward_rows = not plan.reverse and plan.rows > 1 and c > 1
        self.transposed = np.empty((c, plan.rows, plan.widths[-1]), plan.dtype) if forward_rows else None
        self.blocks: list = []
        self.steps = self._pass(plan, c)
        # two buffers, used in turn, each as large as the largest block it holds
        self.nbytes = sum(out.nbytes for _, _, _, out in self.head + self.tail if out is not None)
        self.nbytes += 0 if self.transposed is None else self.transposed.nbytes
        for slot in (0, 1):
            views = [block for block in self.blocks if block.slot == slot]
            if views:
                buffer = np.empty(max(block.size for block in views), dtype=plan.dtype)
                self.nbytes += buffer.nbytes
                for block in views:
                    block.allocate(buffer, self.rows, c)

    def __call__(self, x: Array, J: Array, y: Optional[Array]) -> None:
        regs: list = [None] * (self.L + 2)
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
        if self.suffix:  # the layers after the plan's, by their own steps
            v, caches = regs[-2] = _suffix_values(self.suffix, v)
        if y is not None and v is not y:
            np.copyto(y, v)
        if self.reverse:
            regs[-1] = J
        elif self.transposed is None:  # one sample, or one tangent: a view of J
            regs[-1] = J.transpose(0, 2, 1)
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
        if plan.suffix:  # reverse mode from the Jacobian of the layers after the plan's
            seed = self._block(state, plan.widths[L], c)
            steps.append(_seed_step(plan.suffix, seed))
            state = ("dense", seed)
        done = False  # the result has been written: later layers scale it
        for i in order:
            layer = layers[i]
            width = plan.widths[i] if reverse else plan.widths[i + 1]  # after this layer, in pass order
            if isinstance(layer, Affine):
                M = _matrix_getter(layer, reverse)
                if i == last_matrix:
                    steps.append(_result_step(state, M, c, reverse))
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


def _seed_step(suffix: list, out: _Block) -> Callable[[list], None]:
    def step(regs: list) -> None:  # from (c, rows, width) to the plan's (width, rows, c)
        y, caches = regs[-2]
        np.copyto(out.array, _suffix_seed(suffix, y, caches).transpose(2, 1, 0))

    return step


def _result_step(state: tuple, M: Callable[[], Array], c: int, reverse: bool) -> Callable[[list], None]:
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

    elif c == 1 and reverse:
        block = state[1]

        def step(regs: list) -> None:  # (width_out, width) @ (width, rows), then transposed:
            np.copyto(regs[-1][0], np.dot(M(), block.matrix).T)  # 1.7x faster than (rows, width) @ W^T

    elif c == 1:
        block = state[1]

        def step(regs: list) -> None:  # (width_out, width) @ (width, K) is J itself
            np.dot(M(), block.matrix, out=regs[-1][0].T)

    else:
        block = state[1]

        def step(regs: list) -> None:  # (rows, c, width) @ (width, width_out): a matrix product per row
            np.matmul(block.array.transpose(1, 2, 0), M().T, out=regs[-1].transpose(1, 0, 2))

    return step


class TrainingPlan:
    """Training through the Jacobian (reverse over forward mode) of a chain of affine and
    elementwise layers, for one input shape.

    Calling it returns ``(J, pullback)`` as ``Network._tangents_and_pullback``.  Each
    layer's input is kept as one stack ``V`` of shape ``(1 + K, width, n)``: its values
    ``V[0]`` and its ``K = d_in`` tangents ``V[1:]``, each a contiguous ``(width, n)``
    block, samples along the fast axis.  So an affine layer is one (batched) matrix
    product forward (``W^T V``), and in the pullback one for the gradient of ``W``
    (``sum_k V_k dV_k^T``, the value part of ``param_grad`` and the tangent part of
    ``tangent_param_grad`` together) and one for the adjoints (``W dV``); an
    elementwise layer scales whole contiguous blocks.  (With the layout
    ``(width, 1 + K, n)``, whose rows of values and tangents are strided, the forward
    pass took 1.2 times as long on 2 -> 5 -> 5 -> 2 at n = 256, the pullback as long.)

    The bias rides in the products: the input stack of an affine layer with a bias
    has one more row per block, ones in the values and zeros in the tangents, against
    the weights ``[W; b]`` (a broadcast ``+ b`` cost a few microseconds on small
    batches, as much as the product).  The stacks of a call are allocated for it,
    since its pullback keeps them; the pullback's own two buffers are per thread.
    Large stacks (from ``_KEEP_BYTES``, while two sets fit the memory budget) are
    reused: the thread's later calls take them back once no pullback holds them
    (:class:`_KeptStacks`), and the pullback has a third buffer for its products.
    """

    def __init__(self, layers: list, x: Array) -> None:
        self.layers = layers
        self.widths = [x.shape[-1]] + [layer.d_out if isinstance(layer, Affine) else 0 for layer in layers]
        for i, width in enumerate(self.widths[1:]):
            self.widths[i + 1] = width or self.widths[i]
        # the dtype of each stack, as the generic passes would have it: of x, the weights and
        # what the activations' rules return
        v = np.zeros((1, x.shape[-1]), dtype=x.dtype)
        self.dtypes = [x.dtype]
        for layer in layers:
            if isinstance(layer, Affine):
                v = v @ layer.W
                self.dtypes.append(np.result_type(self.dtypes[-1], v))
            else:
                v, cache = layer.forward_with_cache(v)
                self.dtypes.append(np.result_type(self.dtypes[-1], v, *layer.fprimes(*cache)))
        self.dtype = np.result_type(*self.dtypes)
        self.direct = isinstance(layers[-1], Affine)  # J straight from the last product
        # which stacks carry the row of ones of a bias (not the last affine layer's: J
        # does not depend on its bias), and that row: ones in the values, zeros in the tangents
        self.folded = [False] * (len(layers) + 1)
        for i, layer in enumerate(layers[: len(layers) - self.direct]):
            self.folded[i] = isinstance(layer, Affine) and layer.b is not None
        n, K = (1 if x.ndim == 1 else len(x)), x.shape[-1]
        self.ones = np.zeros((1 + K, n), dtype=x.dtype)
        self.ones[0] = 1
        # dW = sum_k V_k dV_k^T as one batched product and a sum over k when its
        # (1 + K, width, d_out) terms are no larger than the stack (1 + K, width, n);
        # else (few samples, wide layers) as one product of the stacks made (width, (1 + K) n)
        self.batched_dW = [isinstance(layer, Affine) and layer.d_out <= n for layer in layers]
        self.side_by_side = any(  # some layer's dW from its stacks side by side: a buffer for them
            isinstance(layer, Affine) and not batched for layer, batched in zip(layers, self.batched_dW)
        )
        # keep the stacks for later calls when they are large (small ones the allocator gives
        # cheaply, faster than looking them up), and their two sets fit the memory budget
        kept = range(len(layers) + 1 - self.direct)
        nbytes = (1 + K) * n * sum((self.widths[i] + self.folded[i]) * self.dtypes[i].itemsize for i in kept)
        self.keep = _KEEP_BYTES <= nbytes and 2 * nbytes <= get_memory_budget()

    def __call__(self, x: Array) -> tuple[Array, Callable[[Array], list[Array]]]:
        X = x[None] if x.ndim == 1 else x
        n, K = len(X), X.shape[-1]
        layers, widths, folded, direct = self.layers, self.widths, self.folded, self.direct
        last = len(layers) - 1 if direct else len(layers)  # the stacks kept: the inputs of the layers
        # large stacks: this thread's of an earlier call that no pullback holds any more
        entry = None
        if self.keep:
            entry = _per_thread(self, "stacks", lambda: _KeptStacks(lambda: self._new_stacks(n, K, last))).free()
        # (kept ones still hold the seed's zeros: nothing writes into V[1:] after it)
        stacks = self._new_stacks(n, K, last) if entry is None else entry[0]
        V = stacks[0]
        V[0, :K] = X.T
        # the identity seed, V[1 + k, k] = 1: every (width + 1)-th row of the tangents
        # (a view: V[1:] is contiguous)
        V[1:].reshape(K * V.shape[1], n)[:: V.shape[1] + 1] = 1
        derivatives: list = [None] * len(layers)
        for i in range(last):
            layer, V, out = layers[i], stacks[i], stacks[i + 1]
            if folded[i + 1]:
                out = out[:, : widths[i + 1]]
            if isinstance(layer, Affine):
                W = layer.W
                if folded[i]:  # [W; b] against the stack and its row of ones
                    V[:, -1] = self.ones
                    Wb = np.empty((V.shape[1], out.shape[1]), dtype=W.dtype)
                    Wb[:-1] = W
                    Wb[-1] = layer.b
                    W = Wb
                np.matmul(W.T, V, out=out)
            else:  # Elementwise.push_tangents, on (c, width) views of the stacks
                value, cache = layer.forward_with_cache(V[0].T)
                first, second = (f.T for f in layer.fprimes(*cache))
                out[0] = value.T
                np.multiply(V[1:], first, out=out[1:])
                derivatives[i] = first, second
        J = np.empty((n, self.widths[-1], K), dtype=self.dtypes[-1])
        if direct:  # the last affine layer's tangents straight into J, a matrix product per row
            np.matmul(stacks[-1][1:].transpose(0, 2, 1), layers[-1].W, out=J.transpose(2, 0, 1))
        else:
            np.copyto(J, stacks[-1][1:].transpose(2, 1, 0))

        def pullback(G: Array) -> list[Array]:
            return self._pullback(G[None] if x.ndim == 1 else G, stacks, derivatives)

        if entry is not None:
            entry[1] = weakref.ref(pullback)
        return (J[0] if x.ndim == 1 else J), pullback

    def _new_stacks(self, n: int, K: int, last: int) -> list:
        """Stacks for the inputs of layers ``0`` to ``last``, the first zeros (cheaper than a fill)."""
        shapes = [(1 + K, self.widths[i] + self.folded[i], n) for i in range(last + 1)]
        return [np.zeros(shapes[0], self.dtypes[0])] + [np.empty(shapes[i], self.dtypes[i]) for i in range(1, last + 1)]

    def _pullback(self, G: Array, stacks: list, derivatives: list) -> list[Array]:
        """The parameter gradients of ``sum(G * J)``: Layer.pull_tangents through the stacks."""
        n, K = G.shape[0], G.shape[2]
        dtype = np.promote_types(G.dtype, self.dtype)
        size = (max(self.widths) + 1) * (1 + K) * n  # a stack, with its row of ones
        # two for the adjoints; on large batches (as the stacks are kept) one for products; and
        # one for a stack side by side when a layer's dW takes that form
        count = 2 + self.keep + self.side_by_side
        buffers = _per_thread(self, (n, dtype), lambda: _Buffers([np.empty(size, dtype) for _ in range(count)]))
        width = self.widths[-1]
        dV = buffers[0][: (1 + K) * width * n].reshape(1 + K, width, n)
        dV[0] = 0  # the loss depends on the values only through the tangents
        np.copyto(dV[1:], G.transpose(2, 1, 0))
        grads: list[list[Array]] = []
        values_matter = False  # whether the value adjoints dz are nonzero yet
        other = 1  # the buffer the next adjoints go to
        for i in range(len(self.layers) - 1, -1, -1):
            layer, V = self.layers[i], stacks[i]
            if isinstance(layer, Affine):
                if self.batched_dW[i]:
                    dW = np.add.reduce(np.matmul(V, dV.transpose(0, 2, 1)), axis=0)
                else:
                    # the copies in this thread's buffers: fresh ones of a few MiB were page-faulted
                    # in on every call (1 -> 50 -> 50 -> 50 -> 501, n = 256: 2.9 ms, against 1.0)
                    dW = np.dot(_side_by_side(V, buffers[-1]), _side_by_side(dV, buffers[other]).T)
                # as the generic step: zeros of b's dtype while dz is zero (np.zeros: zeros_like
                # took 1.3 us longer)
                b = layer.b
                if b is None:
                    grads.append([dW])
                elif self.folded[i]:  # and the bias's gradient with it, from the row of ones
                    grads.append([dW[:-1], dW[-1] if values_matter else np.zeros(b.shape, b.dtype)])
                else:
                    grads.append([dW, dV[0].sum(axis=1) if values_matter else np.zeros(b.shape, b.dtype)])
                if i > 0:
                    width = self.widths[i]
                    dV_in = buffers[other][: (1 + K) * width * n].reshape(1 + K, width, n)
                    other = 1 - other
                    dV = np.matmul(layer.W, dV, out=dV_in)
            elif i > 0:  # Elementwise.pull_tangents: dz <- f' dz + f'' sum_k dT_k T_k, dT <- f' dT
                first, second = derivatives[i]
                # sum_k dT_k T_k: a product of whole blocks and a sum over them (the pullback took
                # 10% longer with einsum)
                tangents = dV[1:]
                scratch = buffers[2][: tangents.size].reshape(tangents.shape) if self.keep else None
                products = np.multiply(tangents, V[1:], out=scratch)
                if values_matter:
                    bend = np.add.reduce(products, axis=0)
                    bend *= second
                    dV *= first
                    dV[0] += bend
                else:  # dz is zero: dz <- f'' sum_k dT_k T_k, written in place
                    np.add.reduce(products, axis=0, out=dV[0])
                    dV[0] *= second
                    dV[1:] *= first
                    values_matter = True
        return [g for layer_grads in reversed(grads) for g in layer_grads]


#: Stacks of a training plan's call at least this large are kept for the next call of the thread
#: (glibc serves blocks from 128 KiB up by mmap, each page faulted in anew on every call)
_KEEP_BYTES = 256 * 1024


class _KeptStacks:
    """Two sets of a training plan's stacks kept by a thread for its calls, each reused once
    the pullback that held it (a weak reference) is gone: on large batches, fresh stacks
    of a few MiB per call made the time depend on the C library's allocator.  Two, since
    a loop's ``J, pullback = net.jacobian_and_pullback(x)`` still holds the previous
    pullback while it makes the next."""

    def __init__(self, make: Callable[[], list]) -> None:
        self.sets: list[list] = [[make(), None], [make(), None]]  # [stacks, owner]

    def free(self) -> Optional[list]:
        """A set no live pullback holds, or ``None``."""
        for entry in self.sets:
            if entry[1] is None or entry[1]() is None:
                return entry
        return None

    @property
    def nbytes(self) -> int:
        return sum(stack.nbytes for stacks, _ in self.sets for stack in stacks)


def _side_by_side(stack: Array, buffer: Array) -> Array:
    """The blocks of a stack ``(1 + K, width, n)`` side by side, ``(width, (1 + K) n)``, copied
    into ``buffer``."""
    blocks, width, n = stack.shape
    out = buffer[: stack.size].reshape(width, blocks, n)
    np.copyto(out, stack.transpose(1, 0, 2))
    return out.reshape(width, blocks * n)


class SecondOrderPlan:
    """Forward over forward mode (``Layer.push_second``) for the pairs ``(k, k)`` of the
    directions ``T``, through a chain of affine and elementwise layers, for one input shape.

    Each layer's input is one stack ``(1 + K + P, width, c)``: the values, the ``K`` first
    tangents and the ``P`` second tangents (``P = 1`` when collapsed into one row, else
    ``K``), each a contiguous ``(width, c)`` matrix with the samples along the fast axis.
    An affine layer is one call for all of them (``W^T @ stack``); an elementwise layer
    scales contiguous matrices.  A first affine layer reads ``x`` and ``T`` with its bias
    in the product (:func:`_enter`).  The second tangents are zero up to the first
    elementwise layer and are not computed there; after the last one only they go on
    (the values and first tangents are not formed), and the last affine layer writes
    them as the result ``(c, P, d_out)``.  The stacks are this thread's buffers, two per
    shape used in turn so that a layer writes into memory still in the cache; the
    result is allocated per call.
    """

    def __init__(self, layers: list, x: Array, T: Array, collapse: bool) -> None:
        self.layers, self.collapse = layers, collapse
        X = x[None] if x.ndim == 1 else x
        K = T.shape[-2]
        self.K, self.P = K, 1 if collapse else K
        self.widths = [X.shape[-1]]
        for layer in layers:
            self.widths.append(layer.d_out if isinstance(layer, Affine) else self.widths[-1])
        curved = [i for i, layer in enumerate(layers) if not isinstance(layer, Affine)]
        self.stop = curved[-1] + 1 if curved else 0  # the stacks end there: then second tangents only
        # the dtype of each stack, as the generic pass would have it: of x, T, the weights
        # and what the activations' rules return
        v = np.zeros((1, X.shape[-1]), dtype=X.dtype)
        self.dtypes = [np.result_type(X, T)]
        for layer in layers:
            if isinstance(layer, Affine):
                v = v @ layer.W
                self.dtypes.append(np.result_type(self.dtypes[-1], v))
            else:
                v, cache = layer.forward_with_cache(v)
                self.dtypes.append(np.result_type(self.dtypes[-1], v, *layer.fprimes(*cache)))

    def __call__(self, x: Array, T: Array) -> Array:
        X = x[None] if x.ndim == 1 else x
        c, K, P, L = len(X), self.K, self.P, len(self.layers)
        if not self.stop:  # an affine network has zero second tangents, in x's dtype as from the generic pass
            result = np.zeros((c, P, self.widths[-1]), dtype=X.dtype)
            return result[0] if x.ndim == 1 else result
        stacks = self._stacks(c)
        T = np.broadcast_to(T, X.shape[:-1] + T.shape[-2:]) if T.ndim > 2 else T
        start = isinstance(self.layers[0], Affine)
        if start:  # the first affine layer reads x and T where they are
            _enter(self.layers[0], X, T, stacks[0], stacks[1], K)
        else:
            V = stacks[0]
            V[0] = X.T
            V[1 : 1 + K] = np.broadcast_to(T, X.shape[:-1] + T.shape[-2:]).transpose(1, 2, 0)
        # the second tangents are zero up to the first elementwise layer: not computed there
        curved = False
        for i in range(start, self.stop):
            layer, V, out = self.layers[i], stacks[i], stacks[i + 1]
            if isinstance(layer, Affine):
                live = slice(None) if curved else slice(0, 1 + K)
                np.matmul(layer.W.T, V[live], out=out[live])
                if layer.b is not None:
                    out[0] += layer.b[:, None]
                continue
            # Elementwise.push_second, on (c, width) views of the values
            value, cache = layer.forward_with_cache(V[0].T)
            first, second = (f.T for f in layer.fprimes(*cache))
            tangents, last = V[1 : 1 + K], i == self.stop - 1
            # after the last elementwise layer only second tangents go on; V is not read after
            # this layer, so the products u * v of the pairs (k, k) take the tangents' place
            if curved:
                if last:
                    np.multiply(V[1 + K :], first, out=out[1 + K :])
                else:  # the first and second tangents times f', in one call
                    np.multiply(V[1:], first, out=out[1:])
            elif not last:
                np.multiply(tangents, first, out=out[1 : 1 + K])
            bend = np.square(tangents, out=tangents)
            if self.collapse and K > 1:
                bend = bend.sum(axis=0, keepdims=True)
            if curved:
                bend *= second
                out[1 + K :] += bend
            else:
                np.multiply(bend, second, out=out[1 + K :])
                curved = True
            if not last:
                out[0] = value.T
        S = stacks[self.stop][1 + K :]  # (P, width, c): on through the affine layers after
        for layer in self.layers[self.stop : L - 1]:
            S = np.matmul(layer.W.T, S)
        result = np.empty((c, P, self.widths[-1]), dtype=self.dtypes[-1])
        if self.stop < L:  # the last layer is affine: it writes the result, a product per row
            np.matmul(S.transpose(0, 2, 1), self.layers[-1].W, out=result.transpose(1, 0, 2))
        else:
            np.copyto(result, S.transpose(2, 0, 1))
        return result[0] if x.ndim == 1 else result

    def _stacks(self, c: int) -> list:
        """This thread's stacks for chunks of ``c`` samples, up to the last elementwise layer;
        before a first affine layer, the inputs and directions ``(1 + K, d_in + 1, c)`` (see
        :func:`_enter`)."""
        rows = 1 + self.K + self.P

        def build() -> _Stacks:
            stacks = [
                np.empty((rows, width, c), dtype) for width, dtype in zip(self.widths, self.dtypes[: self.stop + 1])
            ]
            if isinstance(self.layers[0], Affine):
                stacks[0] = np.zeros((1 + self.K, self.widths[0] + 1, c), self.dtypes[0])
                stacks[0][0, -1] = 1
            for i in range(2, len(stacks)):  # layer i - 1 reads stacks[i - 1] and writes stacks[i]:
                earlier = stacks[i - 2]  # two buffers in turn, which stay in the cache
                if earlier.shape == stacks[i].shape and earlier.dtype == stacks[i].dtype:
                    stacks[i] = earlier
            return _Stacks(stacks)

        return _per_thread(self, c, build)


class _Stacks(_Buffers):
    """A second-order plan's stacks, some of them the same array: counted once each."""

    @property
    def nbytes(self) -> int:
        return sum({id(a): a.nbytes for a in self}.values())


def _enter(layer: Affine, X: Array, T: Array, inputs: Array, out: Array, K: int) -> None:
    """The values and first tangents after the first layer, affine, of a second-order plan:
    ``out[0] = W^T x + b`` and ``out[1 + k] = W^T T_k`` from ``X (c, d_in)`` and ``T``,
    ``(K, d_in)`` for every sample or ``(c, K, d_in)``.

    One product ``[W; b]^T`` by ``inputs``, ``[x; 1]`` and the ``[T_k; 0]``: on W3's single
    input it takes 11 us where a product with the row-wise bias add took 20, and numpy's
    matrix product over one input (the same without the bias row) 15.
    """
    W, b = layer.W, layer.b
    d_in = W.shape[0]
    inputs[0, :d_in] = X.T
    inputs[1:, :d_in] = T[:, :, None] if T.ndim == 2 else T.transpose(1, 2, 0)
    bias = b[None] if b is not None else np.zeros((1, W.shape[1]), W.dtype)
    np.matmul(np.concatenate([W, bias]).T, inputs, out=out[: 1 + K])
