"""The registry of every layer, used by the parametrised derivative tests.

Each case builds a layer and draws inputs from a domain where its derivative is
defined.  Widths are non-square (3 to 5) so that a transposed Jacobian fails.
Adding a layer to ``jacobian_np.__all__`` without a case here fails
``test_every_exported_layer_has_a_case``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

import numpy as np

import jacobian_np as jn

Shape = tuple


@dataclass(frozen=True)
class LayerCase:
    name: str
    make: Callable[[np.random.Generator], jn.Layer]
    sample: Callable[[np.random.Generator, Shape], np.ndarray]
    """Draw inputs of shape ``batch + (d_in,)`` from the layer's valid domain."""


def uniform(low, high, width):
    return lambda rng, batch: rng.uniform(low, high, batch + (width,))


def away_from_zero(width, low=0.1, high=3.0):
    """Kinks sit at 0: keep inputs at least ``low`` away so finite differences are valid."""
    return lambda rng, batch: rng.choice([-1.0, 1.0], batch + (width,)) * rng.uniform(
        low, high, batch + (width,)
    )


LAYER_CASES = [
    LayerCase(
        "Affine",
        lambda rng: jn.Affine(rng.normal(size=(3, 5)), rng.normal(size=5)),
        uniform(-3, 3, 3),
    ),
    LayerCase("Affine-no-bias", lambda rng: jn.Affine(rng.normal(size=(5, 3))), uniform(-3, 3, 5)),
    LayerCase("ReLU", lambda rng: jn.ReLU(), away_from_zero(4)),
    LayerCase("Sigmoid", lambda rng: jn.Sigmoid(), uniform(-3, 3, 4)),
    LayerCase("Tanh", lambda rng: jn.Tanh(), uniform(-3, 3, 4)),
    LayerCase("Softmax", lambda rng: jn.Softmax(), uniform(-3, 3, 4)),
    LayerCase("LogSoftmax", lambda rng: jn.LogSoftmax(), uniform(-3, 3, 4)),
    LayerCase("Identity", lambda rng: jn.Identity(), uniform(-3, 3, 4)),
    LayerCase("Softplus", lambda rng: jn.Softplus(), uniform(-3, 3, 4)),
    LayerCase("LeakyReLU", lambda rng: jn.LeakyReLU(), away_from_zero(4)),
    LayerCase("LeakyReLU-alpha0.2", lambda rng: jn.LeakyReLU(alpha=0.2), away_from_zero(4)),
    # f'' jumps at 0 even when alpha = 1 (f' is then continuous): keep off the kink
    LayerCase("ELU", lambda rng: jn.ELU(), away_from_zero(4)),
    LayerCase("ELU-alpha0.7", lambda rng: jn.ELU(alpha=0.7), away_from_zero(4)),
    LayerCase("GELU", lambda rng: jn.GELU(), uniform(-3, 3, 4)),
    LayerCase("SiLU", lambda rng: jn.SiLU(), uniform(-3, 3, 4)),
    LayerCase("Sin", lambda rng: jn.Sin(), uniform(-3, 3, 4)),
    LayerCase(
        "LayerNorm",
        lambda rng: jn.LayerNorm(4, eps=0.1, weight=rng.normal(size=4), bias=rng.normal(size=4)),
        uniform(-3, 3, 4),
    ),
    LayerCase("LayerNorm-defaults", lambda rng: jn.LayerNorm(5), uniform(-3, 3, 5)),
    # composite layers, nested: every rule of theirs is built from their children's
    LayerCase(
        "Network",
        lambda rng: jn.Network([jn.Affine(rng.normal(size=(3, 4)), rng.normal(size=4)), jn.Tanh(), jn.Affine(rng.normal(size=(4, 5)))]),
        uniform(-2, 2, 3),
    ),
    LayerCase(
        "Residual",
        lambda rng: jn.Residual(jn.Network([jn.Affine(rng.normal(size=(4, 4))), jn.SiLU()]), scale=0.7),
        uniform(-2, 2, 4),
    ),
    LayerCase("Residual-elementwise", lambda rng: jn.Residual(jn.Sin()), uniform(-3, 3, 4)),
    LayerCase(
        "Parallel",
        lambda rng: jn.Parallel(
            [
                jn.Affine(rng.normal(size=(3, 2)), rng.normal(size=2)),
                jn.Network([jn.Affine(rng.normal(size=(3, 3))), jn.Softplus()]),
                jn.Sigmoid(),
            ]
        ),
        uniform(-2, 2, 3),
    ),
    LayerCase(
        "Nested",
        lambda rng: jn.Network(
            [
                jn.Affine(rng.normal(size=(3, 4)) * 0.7),
                jn.Residual(jn.Network([jn.LayerNorm(4), jn.Affine(rng.normal(size=(4, 4)) * 0.5), jn.GELU()])),
                jn.Parallel([jn.Tanh(), jn.Network([jn.Affine(rng.normal(size=(4, 1))), jn.Softmax()]), jn.Affine(rng.normal(size=(4, 2)))]),
            ]
        ),
        uniform(-2, 2, 3),
    ),
]

CASE_IDS = [case.name for case in LAYER_CASES]


def with_dtype(layer, dtype):
    """A deep copy of ``layer`` whose parameter arrays have ``dtype`` (weights decide the
    result's dtype by promotion), composites included."""
    layer = copy.deepcopy(layer)
    _cast(layer, np.dtype(dtype), set())
    return layer


def _cast(obj, dtype, seen):
    if id(obj) in seen:
        return
    seen.add(id(obj))
    for name, value in list(vars(obj).items()):
        if isinstance(value, np.ndarray) and value.dtype.kind == "f":
            setattr(obj, name, value.astype(dtype))
        elif isinstance(value, jn.Layer):
            _cast(value, dtype, seen)
        elif isinstance(value, tuple):
            for item in value:
                if isinstance(item, jn.Layer):
                    _cast(item, dtype, seen)
