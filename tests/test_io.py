"""save and load: bit-exact round trips, and every kind of bad file refused with
ModelFileError (never executing anything, never allocating what a header claims)."""

import io
import json
import zipfile

import numpy as np
import pytest

import jacobian_np as jn


def every_layer_network(rng):
    return jn.Network(
        [
            jn.Affine(rng.normal(size=(3, 6)), rng.normal(size=6)),
            jn.LeakyReLU(0.2),
            jn.Affine(rng.normal(size=(6, 6))),
            jn.ELU(0.7),
            jn.Tanh(),
            jn.Sigmoid(),
            jn.ReLU(),
            jn.Softplus(),
            jn.GELU(),
            jn.SiLU(),
            jn.Sin(),
            jn.Identity(),
            jn.Affine(rng.normal(size=(6, 4)), rng.normal(size=4)),
            jn.LogSoftmax(),
            jn.Softmax(),
        ]
    )


def saved_bytes(net):
    buffer = io.BytesIO()
    jn.save(net, buffer)
    return buffer.getvalue()


def test_round_trip_is_bit_exact(rng, tmp_path):
    net = every_layer_network(rng)
    for target in (tmp_path / "model.npz", str(tmp_path / "other")):  # numpy adds .npz to a bare name
        jn.save(net, target)
    loaded = jn.load(tmp_path / "model.npz")
    assert repr(loaded) == repr(net)
    for a, b in zip(loaded.params, net.params):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    X = rng.normal(size=(5, 3))
    np.testing.assert_array_equal(loaded.jacobian(X), net.jacobian(X))
    assert repr(jn.load(tmp_path / "other.npz")) == repr(net)


def test_float32_weights_stay_float32(rng):
    net = jn.Network([jn.Affine(rng.normal(size=(2, 3)).astype(np.float32)), jn.Tanh()])
    loaded = jn.load(io.BytesIO(saved_bytes(net)))
    assert loaded.layers[0].W.dtype == np.float32


def test_save_refuses_layers_it_cannot_restore(rng):
    class Mine(jn.Tanh):
        pass

    with pytest.raises(TypeError, match=r"layer 1 \(Mine\) is not a built-in layer; only Affine, ReLU"):
        jn.save(jn.Network([jn.Affine(np.ones((2, 2))), Mine()]), io.BytesIO())
    with pytest.raises(TypeError, match="save expects a jacobian_np.Network; got list"):
        jn.save([], io.BytesIO())


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such model file"):
        jn.load(tmp_path / "absent.npz")


def npz(**arrays):
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def valid_entries(rng):
    return {
        "format": np.array("jacobian_np"),
        "version": np.array(1),
        "layers": np.array(json.dumps([{"type": "Affine"}, {"type": "LeakyReLU", "alpha": 0.1}])),
        "layer0.W": rng.normal(size=(2, 3)),
        "layer0.b": rng.normal(size=3),
    }


def changed(rng, **changes):
    entries = valid_entries(rng)
    for key, value in changes.items():
        if value is None:
            del entries[key]
        else:
            entries[key] = value
    return npz(**entries)


def test_the_valid_entries_load(rng):
    assert repr(jn.load(io.BytesIO(npz(**valid_entries(rng))))) == (
        "Network([Affine(d_in=2, d_out=3), LeakyReLU(alpha=0.1)])"
    )


BAD_FILES = {
    "not a zip": (lambda rng: b"\x00" * 100, "it is not a zip archive"),
    "a pickle": (lambda rng: b"\x80\x04\x95" + b"\x00" * 50, "it is not a zip archive"),
    "an .npy file": (lambda rng: np.lib.format.magic(1, 0) + b"\x00" * 50, "it is not a zip archive"),
    "truncated": (lambda rng: npz(**valid_entries(rng))[:300], "not a jacobian_np model file"),
    "other format": (lambda rng: changed(rng, format=np.array("keras")), "format is 'keras'"),
    "newer version": (lambda rng: changed(rng, version=np.array(2)), "format version 2 is not supported"),
    "no layers": (lambda rng: changed(rng, layers=None), "missing layers"),
    "object array": (
        lambda rng: changed(rng, **{"layer0.b": np.array([{"a": 1}] * 3, dtype=object)}),
        "holds Python objects",
    ),
    "bad JSON": (lambda rng: changed(rng, layers=np.array("[{")), "not valid JSON"),
    "empty layer list": (lambda rng: changed(rng, layers=np.array("[]")), "non-empty JSON list"),
    "unknown layer": (
        lambda rng: changed(rng, layers=np.array(json.dumps([{"type": "Affine"}, {"type": "Lambda"}]))),
        "layer 1: unknown layer type 'Lambda'",
    ),
    "non-numeric setting": (
        lambda rng: changed(rng, layers=np.array(json.dumps([{"type": "Affine"}, {"type": "ELU", "alpha": "x"}]))),
        "setting 'alpha' must be a finite number",
    ),
    "extra setting": (
        lambda rng: changed(rng, layers=np.array(json.dumps([{"type": "Affine", "code": "rm -rf"}]))),
        "unexpected settings code",
    ),
    "missing weights": (lambda rng: changed(rng, **{"layer0.W": None}), "missing array 'layer0.W'"),
    "extra array": (lambda rng: changed(rng, extra=np.zeros(2)), "unexpected arrays: extra"),
    "integer weights": (lambda rng: changed(rng, **{"layer0.W": np.ones((2, 3), int)}), "floating-point"),
    "NaN weights": (lambda rng: changed(rng, **{"layer0.W": np.full((2, 3), np.nan)}), "NaN or infinity"),
    "bias of the wrong shape": (lambda rng: changed(rng, **{"layer0.b": np.zeros(4)}), r"b must have shape \(3,\)"),
    "widths that do not chain": (
        lambda rng: changed(
            rng,
            layers=np.array(json.dumps([{"type": "Affine"}, {"type": "Affine"}])),
            **{"layer1.W": np.zeros((4, 2))},
        ),
        "do not form a network: layer 1 \\(Affine\\) expects d_in = 4",
    ),
    "a string as the version": (lambda rng: changed(rng, version=np.array("1")), "'version' has the wrong type"),
}


@pytest.mark.parametrize("kind", BAD_FILES, ids=list(BAD_FILES))
def test_bad_files_are_refused_with_model_file_error(kind, rng):
    make, match = BAD_FILES[kind]
    with pytest.raises(jn.ModelFileError, match=match):
        jn.load(io.BytesIO(make(rng)))
    assert issubclass(jn.ModelFileError, ValueError)


def test_a_header_claiming_a_huge_array_is_refused_before_allocating():
    header = {"descr": "<f8", "fortran_order": False, "shape": (10**12,)}
    member = io.BytesIO()
    np.lib.format.write_array_header_1_0(member, header)
    member.write(b"\x00" * 64)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("layer0.W.npy", member.getvalue())
    with pytest.raises(jn.ModelFileError, match=r"claims shape \(1000000000000,\) .* but stores"):
        jn.load(io.BytesIO(buffer.getvalue()))


def test_size_cap(rng):
    data = npz(**valid_entries(rng))
    with pytest.raises(jn.ModelFileError, match="more than max_bytes=100 bytes"):
        jn.load(io.BytesIO(data), max_bytes=100)
