"""Every layer in the registry against central differences in float64.

Gradient checks need double precision: float32 rounding swamps the differences.
"""

import inspect
import warnings

import numpy as np
import pytest
from cases import CASE_IDS, LAYER_CASES, with_dtype

import jacobian_np as jn

BATCH_SHAPES = [(), (4,), (0,), (2, 3)]


@pytest.mark.parametrize("batch", BATCH_SHAPES, ids=lambda b: f"batch{b}")
@pytest.mark.parametrize("case", LAYER_CASES, ids=CASE_IDS)
def test_layer_matches_central_differences(case, batch, rng):
    layer = case.make(rng)
    x = case.sample(rng, batch)
    result = jn.check_layer(layer, x, rng=rng)
    assert result, str(result)
    # check_layer compares backward(identity), jacobian and backward(random dy)
    assert {c.name for c in result.comparisons} >= {
        "backward(identity)",
        "jacobian",
        "backward(random dy)",
    }


@pytest.mark.parametrize("case", LAYER_CASES, ids=CASE_IDS)
def test_layer_inside_network_matches_central_differences(case, rng):
    """The layer last (it seeds reverse mode), in the middle, and first (it seeds
    forward mode); check_network compares both modes with central differences."""
    layer = case.make(rng)
    d = case.sample(rng, ()).shape[-1]
    d_out = layer.forward_with_cache(case.sample(rng, ()))[0].shape[-1]
    before = jn.Affine(rng.normal(size=(3, d)) * 0.5)
    after = jn.Affine(rng.normal(size=(d_out, 2)))
    x = rng.normal(size=(5, 3))
    for net in (jn.Network([before, layer]), jn.Network([before, layer, after])):
        if isinstance(layer, jn.ReLU):  # keep pre-activations off the kink
            x = _away_from_relu_kink(net, x, rng)
        result = jn.check_network(net, x)
        assert result, str(result)
        assert [c.name for c in result.comparisons] == ["J (reverse mode)", "J (forward mode)", "y"]
    first = jn.Network([layer, after])
    result = jn.check_network(first, case.sample(rng, (5,)))
    assert result, str(result)


def _away_from_relu_kink(net, x, rng):
    z = net.layers[0].forward_with_cache(x)[0]
    kept = x[np.all(np.abs(z) > 0.05, axis=1)]
    assert len(kept), "every sample is near the kink: change the seed"
    return kept


@pytest.mark.parametrize("case", LAYER_CASES, ids=CASE_IDS)
def test_layer_is_stable_far_out(case, rng):
    """At |x| = 1e4 no overflow/invalid/divide warning and every derivative is finite."""
    layer = case.make(rng)
    x = case.sample(rng, (6,))
    x = 1e4 * np.sign(x)  # all of +-1e4, and mixed signs within each row
    x[0] = 1e4
    x[1] = -1e4
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="raise", under="ignore"):
            y, cache = layer.forward_with_cache(x)
            J = jn.Network([layer]).jacobian(x, mode="reverse")
            dx = layer.backward(np.ones(x.shape[:-1] + (2, y.shape[-1])), cache)
    assert np.all(np.isfinite(y))
    assert np.all(np.isfinite(J))
    assert np.all(np.isfinite(dx))


@pytest.mark.parametrize("case", LAYER_CASES, ids=CASE_IDS)
def test_float32_in_float32_out(case, rng):
    layer = with_dtype(case.make(rng), np.float32)  # weights decide by promotion: use float32 weights
    x = case.sample(rng, (3,)).astype(np.float32)
    y, cache = layer.forward_with_cache(x)
    dy = np.ones((3, 2, y.shape[-1]), dtype=np.float32)
    assert y.dtype == np.float32
    assert layer.backward(dy, cache).dtype == np.float32
    net = jn.Network([layer])
    assert net.jacobian(x, mode="reverse").dtype == net.jacobian(x, mode="forward").dtype == np.float32


def test_every_exported_layer_has_a_case(rng):
    registered = {type(case.make(rng)) for case in LAYER_CASES}
    exported = {
        obj
        for obj in (getattr(jn, name) for name in jn.__all__)
        if inspect.isclass(obj) and issubclass(obj, jn.Layer) and not inspect.isabstract(obj)
    }
    assert exported, "no concrete layers exported"
    missing = {cls.__name__ for cls in exported - registered}
    assert not missing, f"layers without a case in tests/cases.py: {sorted(missing)}"


@pytest.mark.parametrize("case", LAYER_CASES, ids=CASE_IDS)
def test_check_layer_covers_forward_mode_and_second_derivatives(case, rng):
    """Every layer is checked in forward mode, every elementwise one also for f''."""
    layer = case.make(rng)
    result = jn.check_layer(layer, case.sample(rng, (4,)), rng=rng)
    names = {c.name for c in result.comparisons}
    assert "tangent(identity)" in names
    if isinstance(layer, jn.Elementwise):
        assert "fsecond" in names
    assert result, str(result)


@pytest.mark.parametrize("case", LAYER_CASES, ids=CASE_IDS)
def test_forward_mode_and_second_derivatives_are_stable_far_out(case, rng):
    """``tangent`` and ``fsecond`` at |x| = 1e4: no warning, finite, float32 kept."""
    layer = case.make(rng)
    for dtype in (np.float64, np.float32):
        x = (1e4 * np.sign(case.sample(rng, (6,)))).astype(dtype)
        x[0], x[1] = 1e4, -1e4
        dx = np.ones(x.shape[:-1] + (2, x.shape[-1]), dtype=dtype)
        layer = with_dtype(layer, dtype)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with np.errstate(all="raise", under="ignore"):
                y, cache = layer.forward_with_cache(x)
                dy = layer.tangent(dx, cache)
                second = layer.fsecond(x, y) if isinstance(layer, jn.Elementwise) else dy
        assert np.all(np.isfinite(dy)) and np.all(np.isfinite(second))
        assert dy.dtype == second.dtype == dtype


@pytest.mark.parametrize("case", LAYER_CASES, ids=CASE_IDS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_elementwise_derivatives_do_not_overflow_at_the_largest_floats(case, dtype, rng):
    layer = case.make(rng)
    if not isinstance(layer, jn.Elementwise) or isinstance(layer, jn.Sin):  # Sin: periodic, any x is fine
        pytest.skip("elementwise activations with tails only")
    big = np.finfo(dtype).max
    x = np.array([-big, -big / 2, big / 2, big, 0.0], dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="raise", under="ignore"):
            y, cache = layer.forward_with_cache(x)
            d1, d2 = layer.fprime(*cache), layer.fsecond(*cache)
    assert np.all(np.isfinite(d1)) and np.all(np.isfinite(d2))
