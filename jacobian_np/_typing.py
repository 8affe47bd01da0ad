"""Type aliases shared by the package."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

#: A floating-point NumPy array (float64, float32, ...).
Array = npt.NDArray[np.floating[Any]]

#: Whatever a layer's ``forward`` keeps for its ``backward``; opaque to everyone else.
Cache = Any

__all__ = ["Array", "Cache"]
