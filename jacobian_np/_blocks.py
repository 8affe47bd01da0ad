"""Symbolic Jacobian blocks: the identity and diagonal matrices a pass starts from.

A pass carries a block of rows (reverse mode) or tangents (forward mode) from
layer to layer.  At its start the block is the identity, and after elementwise
layers it is diagonal: forming either densely would cost a matrix product per
layer for nothing.  So a pass starts with :class:`Eye` and lets each layer's step
(``Layer.pull``, ``Layer.push``) turn it into what it needs: an elementwise layer
into a :class:`Diag`, an affine layer into (a scaled copy of) its weights.  A
layer that has no use for the symbolic form calls :func:`dense`.  This is JAX's
symbolic zero (``Zero`` and ``instantiate_zeros``) for the identity.
"""

from __future__ import annotations

from typing import Union

import numpy as np

from ._typing import Array


class Eye:
    """The identity block ``(*batch, m, m)`` at the point ``at`` of shape ``(*batch, m)``.

    ``at`` is the value where the block sits: a layer's output in reverse mode,
    its input in forward mode, so that a layer's ``jacobian(y, cache)`` can be
    called with it.
    """

    __slots__ = ("at",)

    def __init__(self, at: Array) -> None:
        self.at = at

    def dense(self) -> Array:
        width = self.at.shape[-1]
        return np.broadcast_to(np.eye(width, dtype=self.at.dtype), self.at.shape + (width,))


class Diag:
    """The diagonal block ``diag(d)`` of shape ``(*batch, m, m)`` at the point ``at``."""

    __slots__ = ("d", "at")

    def __init__(self, d: Array, at: Array) -> None:
        self.d, self.at = d, at

    def dense(self) -> Array:
        return diag_embed(self.d)


#: What a pass carries between layers.
Block = Union[Array, Eye, Diag]


def dense(block: Block) -> Array:
    """The block as an array (a read-only view for :class:`Eye`)."""
    return block if isinstance(block, np.ndarray) else block.dense()


def anchored(block: Block, at: Array) -> Block:
    """The same block, sitting at the point ``at`` (a composite hands it to a child)."""
    if isinstance(block, Eye):
        return Eye(at)
    if isinstance(block, Diag):
        return Diag(block.d, at)
    return block


def diagonal_view(J: Array) -> Array:
    """Writable view of the diagonals of a stack of square matrices ``(*batch, m, m)``."""
    return np.einsum("...ii->...i", J)


def diag_embed(d: Array) -> Array:
    """Stack of diagonal matrices: ``(*batch, m)`` to ``(*batch, m, m)``."""
    out = np.zeros(d.shape + d.shape[-1:], dtype=d.dtype)
    diagonal_view(out)[...] = d
    return out
