import numpy as np
import pytest


@pytest.fixture
def rng():
    """A fresh, seeded generator per test; the global NumPy RNG is never seeded."""
    return np.random.default_rng(20261123)
