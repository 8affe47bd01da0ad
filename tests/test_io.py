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
    "newer version": (lambda rng: changed(rng, version=np.array(3)), "format version 3 is not supported"),
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


# --- every bad file is a ModelFileError (issue 15), with bounded memory ---------------------


def zip_of(members, compression=zipfile.ZIP_STORED):
    """A zip archive of raw members ``{name: bytes}``."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def npy_bytes(array):
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def unterminated_header():
    text = b"{'descr': '<f8', 'fortran_order': False, 'shape': (3,), '''"
    text += b" " * (63 - len(text)) + b"\n"
    member = np.lib.format.magic(1, 0) + len(text).to_bytes(2, "little") + text + b"\x00" * 24
    return zip_of({**{f"{k}.npy": npy_bytes(v) for k, v in valid_entries(np.random.default_rng(0)).items()}, "layer0.b.npy": member})


def corrupt_deflate():
    data = bytearray(zip_of({f"{k}.npy": npy_bytes(v) for k, v in valid_entries(np.random.default_rng(0)).items()}, zipfile.ZIP_DEFLATED))
    start = data.find(b"layer0.W.npy") + len("layer0.W.npy") + 5  # inside the first member's compressed data
    data[start : start + 20] = b"\xff" * 20
    return bytes(data)


ISSUE_15_FILES = {  # each escaped load as another exception before
    "unterminated .npy header (tokenize.TokenError)": (unterminated_header, "array 'layer0.b': .npy header is not a Python literal"),
    "layer JSON nested 100,000 deep (RecursionError)": (
        lambda: changed(np.random.default_rng(0), layers=np.array("[" * 100_000 + "]" * 100_000)),
        "layer description is nested too deeply",
    ),
    "a 400-digit alpha (OverflowError)": (
        lambda: changed(
            np.random.default_rng(0),
            layers=np.array('[{"type": "Affine"}, {"type": "LeakyReLU", "alpha": 1' + "0" * 400 + "}]"),
        ),
        r"layer 1 \(LeakyReLU\): setting 'alpha' must be a finite number",
    ),
    "corrupt deflate stream (zlib.error)": (corrupt_deflate, "corrupt compressed data"),
}


@pytest.mark.parametrize("kind", ISSUE_15_FILES, ids=list(ISSUE_15_FILES))
def test_hostile_contents_are_model_file_errors(kind):
    make, match = ISSUE_15_FILES[kind]
    with pytest.raises(jn.ModelFileError, match=match):
        jn.load(io.BytesIO(make()))


def test_a_directory_is_a_model_file_error(tmp_path):
    with pytest.raises(jn.ModelFileError, match="is a directory, not a jacobian_np model file"):
        jn.load(tmp_path)


@pytest.mark.parametrize("thing", [3, None, [b"PK"], 2.5])
def test_what_is_not_a_path_or_binary_file_is_a_type_error(thing):
    with pytest.raises(TypeError, match="load expects a file name, a path or a binary file; got"):
        jn.load(thing)


def test_a_text_mode_file_is_a_type_error(rng, tmp_path):
    path = tmp_path / "model.npz"
    jn.save(every_layer_network(rng), path)
    with open(path, encoding="latin1") as text:
        with pytest.raises(TypeError, match="opened in text mode; open it with 'rb'"):
            jn.load(text)
    with open(path, "rb") as binary:
        assert repr(jn.load(binary)) == repr(every_layer_network(rng))


class Pipe(io.RawIOBase):
    """A binary stream that cannot seek, like a pipe or a socket."""

    def __init__(self, data):
        self.data = io.BytesIO(data)

    def readable(self):
        return True

    def readinto(self, buffer):
        return self.data.readinto(buffer)


def test_an_unseekable_stream_loads(rng):
    net = every_layer_network(rng)
    stream = io.BufferedReader(Pipe(saved_bytes(net)))
    assert not stream.seekable()
    loaded = jn.load(stream)
    for a, b in zip(loaded.params, net.params):
        np.testing.assert_array_equal(a, b)
    too_long = b"PK\x03\x04" + bytes(5 * 2**20)  # more than max_bytes plus room for headers (4 MiB)
    with pytest.raises(jn.ModelFileError, match="the model stream has more bytes than max_bytes allows"):
        jn.load(io.BufferedReader(Pipe(too_long)), max_bytes=10)


def test_a_file_much_larger_than_max_bytes_is_refused_unread(tmp_path):
    path = tmp_path / "big.npz"
    path.write_bytes(b"PK\x03\x04" + bytes(5 * 2**20))
    with pytest.raises(jn.ModelFileError, match=r"has 5242884 bytes, more than max_bytes allows"):
        jn.load(path, max_bytes=10)


def bomb(shape, max_bytes_claim=None):
    """A deflated model file whose one weight matrix of zeros inflates about 1000-fold."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for key, value in {
            "format": np.array("jacobian_np"),
            "version": np.array(1),
            "layers": np.array(json.dumps([{"type": "Affine"}])),
        }.items():
            archive.writestr(f"{key}.npy", npy_bytes(value))
        with archive.open("layer0.W.npy", "w", force_zip64=True) as member:
            np.lib.format.write_array_header_1_0(member, {"descr": "<f8", "fortran_order": False, "shape": shape})
            left = 8 * shape[0] * shape[1]
            zeros = bytes(2**20)
            while left > 0:
                member.write(zeros[:left])
                left -= len(zeros)
    return buffer.getvalue()


def test_a_zip_bomb_costs_no_more_memory_than_its_arrays():
    tracemalloc = pytest.importorskip("tracemalloc")
    shape = (1000, 2500)  # 20 MB of float64 zeros in a file of about 20 kB
    data = bomb(shape)
    assert len(data) < 100_000
    tracemalloc.start()
    try:
        net = jn.load(io.BytesIO(data), max_bytes=20_001_000)  # the weights and the small entries
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert net.layers[0].W.shape == shape and not net.layers[0].W.any()
    assert peak < 1.25 * 20_000_000  # was 2x: the array read, then copied by Affine
    tracemalloc.start()
    try:
        with pytest.raises(jn.ModelFileError, match="more than max_bytes=19999999 bytes"):
            jn.load(io.BytesIO(data), max_bytes=19_999_999)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2_000_000  # refused from the header, before inflating


MORE_BAD_FILES = {
    "data cut short": (
        lambda rng: zip_of({**{f"{k}.npy": npy_bytes(v) for k, v in valid_entries(rng).items()}, "layer0.W.npy": npy_bytes(rng.normal(size=(2, 3)))[:-8]}),
        r"array 'layer0.W' claims shape \(2, 3\) \(48 bytes\) but stores 40 bytes",
    ),
    "data after the values": (
        lambda rng: zip_of({**{f"{k}.npy": npy_bytes(v) for k, v in valid_entries(rng).items()}, "layer0.b.npy": npy_bytes(np.zeros(3)) + b"\x00" * 8}),
        r"array 'layer0.b' has data after its \(3,\) values",
    ),
    "a member that is not .npy": (
        lambda rng: zip_of({**{f"{k}.npy": npy_bytes(v) for k, v in valid_entries(rng).items()}, "run.sh": b"rm -rf /"}),
        "unexpected member 'run.sh'",
    ),
    "a header of 70,000 bytes": (
        lambda rng: zip_of({"format.npy": np.lib.format.magic(2, 0) + (70_000).to_bytes(4, "little") + b" " * 70_000}),
        "header declares 70000 bytes",
    ),
    "a negative shape": (
        lambda rng: zip_of({"format.npy": np.lib.format.magic(1, 0) + b"\x40\x00" + b"{'descr': '<f8', 'fortran_order': False, 'shape': (-3,), }".ljust(63) + b"\n"}),
        r"invalid shape \(-3,\)",
    ),
    "JSON integers too long to parse": (
        lambda rng: changed(rng, layers=np.array('[{"type": "ELU", "alpha": 1' + "0" * 5000 + "}]")),
        "not valid JSON",
    ),
    "a layer description longer than the limit": (
        lambda rng: changed(rng, layers=np.array(" " * (2**20 + 1))),
        "layer description is longer than 1048576 characters",
    ),
}


@pytest.mark.parametrize("kind", MORE_BAD_FILES, ids=list(MORE_BAD_FILES))
def test_more_bad_files(kind, rng):
    make, match = MORE_BAD_FILES[kind]
    with pytest.raises(jn.ModelFileError, match=match):
        jn.load(io.BytesIO(make(rng)))


def test_a_corrupt_stored_member_fails_its_checksum(rng):
    data = bytearray(npz(**valid_entries(rng)))
    start = data.find(npy_bytes(valid_entries(rng)["layer0.W"])[:10])  # valid_entries draws from rng: find by header
    assert start > 0
    data[start + 200] ^= 0xFF  # a byte of the weights
    with pytest.raises(jn.ModelFileError, match="Bad CRC-32"):
        jn.load(io.BytesIO(bytes(data)))


def test_fortran_order_and_big_endian_arrays_load(rng):
    W = np.asfortranarray(rng.normal(size=(2, 3))).astype(">f4", order="F")
    b = rng.normal(size=3).astype(">f4")
    net = jn.load(io.BytesIO(changed(rng, **{"layer0.W": W, "layer0.b": b})))
    np.testing.assert_array_equal(net.layers[0].W, W)
    np.testing.assert_array_equal(net.layers[0].b, b)
    assert net.layers[0].W.dtype == np.float32 and net.layers[0].b.dtype == np.float32


@pytest.mark.parametrize("max_bytes, error", [(2.5, TypeError), (True, TypeError), (-1, ValueError)])
def test_max_bytes_is_checked(max_bytes, error, rng):
    with pytest.raises(error, match="max_bytes must be"):
        jn.load(io.BytesIO(saved_bytes(every_layer_network(rng))), max_bytes=max_bytes)


# --- save refuses what load would refuse ----------------------------------------------------


def test_save_refuses_non_finite_weights_naming_them(rng, tmp_path):
    net = every_layer_network(rng)
    net.layers[12].b[[0, 2]] = np.nan  # a diverged training run writes NaN in place
    with pytest.raises(ValueError, match=r"^save: layer 12 \(Affine\) parameter b contains NaN \(2 of 4 values\); nothing was written\.$"):
        jn.save(net, tmp_path / "model.npz")
    assert not (tmp_path / "model.npz").exists()
    net = every_layer_network(rng)
    net.layers[2].W[0, 0] = -np.inf
    net.layers[2].W[1, 1] = np.nan
    with pytest.raises(ValueError, match=r"layer 2 \(Affine\) parameter W contains NaN and infinity \(2 of 36 values\)"):
        jn.save(net, io.BytesIO())


# --- format version 2: input statistics, shared layers, old files ---------------------------


def test_input_statistics_round_trip(rng):
    from jacobian_np.io import _read_model_file

    net = every_layer_network(rng)
    buffer = io.BytesIO()
    jn.save(net, buffer, input_mean=[1.0, 2.0, 3.0], input_std=np.array([0.5, 0.0, 2.0], np.float32))
    buffer.seek(0)
    contents = _read_model_file(buffer)
    np.testing.assert_array_equal(contents.input_mean, [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(contents.input_std, [0.5, 0.0, 2.0])
    assert repr(contents.network) == repr(net)
    assert _read_model_file(io.BytesIO(saved_bytes(net))).input_mean is None


@pytest.mark.parametrize(
    "mean, std, match",
    [
        ([0.0] * 3, None, "give both input_mean and input_std, or neither"),
        ([0.0] * 2, [1.0] * 2, r"input_mean must have shape \(3,\), one value per input; got shape \(2,\)"),
        ([0.0] * 3, [1.0, np.nan, 1.0], "input_std must be finite"),
        ([0.0] * 3, [1.0, -1.0, 1.0], "input_std must not be negative"),
    ],
)
def test_save_checks_input_statistics(mean, std, match, rng):
    with pytest.raises(ValueError, match=match):
        jn.save(every_layer_network(rng), io.BytesIO(), input_mean=mean, input_std=std)


def version_2_entries(rng, description=None, **arrays):
    """A version 2 file's entries: Affine(2 -> 3), LeakyReLU, unless told otherwise."""
    if description is None:
        description = {
            "network": {
                "type": "Network",
                "layers": [
                    {"type": "Affine", "params": {"W": "layers.0.W", "b": "layers.0.b"}},
                    {"type": "LeakyReLU", "alpha": 0.1},
                ],
            }
        }
    entries = {
        "format": np.array("jacobian_np"),
        "version": np.array(2),
        "model": np.array(json.dumps(description)),
        "layers.0.W": rng.normal(size=(2, 3)),
        "layers.0.b": rng.normal(size=3),
        **arrays,
    }
    return npz(**{key: value for key, value in entries.items() if value is not None})


def nested(depth):
    entry = {"type": "Affine", "params": {"W": "layers.0.W"}}
    for _ in range(depth):
        entry = {"type": "Network", "layers": [entry]}
    return {"network": entry}


def test_the_version_2_entries_load(rng):
    assert repr(jn.load(io.BytesIO(version_2_entries(rng)))) == "Network([Affine(d_in=2, d_out=3), LeakyReLU(alpha=0.1)])"


def layers_of(*layers, **extra):
    return {"network": {"type": "Network", "layers": list(layers)}, **extra}


AFFINE = {"type": "Affine", "params": {"W": "layers.0.W", "b": "layers.0.b"}}
BAD_VERSION_2 = {
    "not an object": ([1, 2], "must be an object with 'network'"),
    "extra top-level key": (layers_of(AFFINE, code="x"), "must be an object with 'network'"),
    "root is not a Network": ({"network": AFFINE}, "'network' must describe a Network"),
    "params not a mapping": (layers_of({"type": "Affine", "params": ["layers.0.W"]}), "'params' must map W, b to array names"),
    "unknown parameter": (layers_of({"type": "Affine", "params": {"W": "layers.0.W", "V": "layers.0.b"}}), "'params' must map W, b"),
    "no array for W": (layers_of({"type": "Affine", "params": {"b": "layers.0.b"}}), r"layer 0 \(Affine\): 'params' names no array for parameter W"),
    "an array used twice": (
        layers_of(AFFINE, {"type": "Affine", "params": {"W": "layers.0.W"}}),
        r"layer 1 \(Affine\): array 'layers.0.W' is used twice",
    ),
    "a missing array": (layers_of({"type": "Affine", "params": {"W": "nowhere"}}), "missing array 'nowhere'"),
    "settings on an activation": (layers_of(AFFINE, {"type": "Tanh", "alpha": 1.0}), r"layer 1 \(Tanh\): unexpected settings alpha"),
    "shared before described": (layers_of({"shared": "layers.1"}, AFFINE), "'shared' must name a layer described before it"),
    "shared with settings": (layers_of(AFFINE, {"shared": "layers.0", "alpha": 1}), "'shared' must name a layer described before it"),
    "shared naming a list": (layers_of(AFFINE, {"shared": ["layers.0"]}), "'shared' must name a layer described before it"),
    "empty sub-layer list": (layers_of(AFFINE, {"type": "Network", "layers": []}), "'layers' must be a non-empty list of layers"),
    "nested too deep": (nested(70), "layers nested more than 64 deep"),
    "inputs naming one array": (layers_of(AFFINE, inputs={"mean": "layers.0.b"}), "'inputs' must name the arrays 'mean' and 'std'"),
    "inputs of the wrong width": (
        layers_of(AFFINE, inputs={"mean": "m", "std": "s"}),
        r"input statistics: input_mean must have shape \(2,\)",
    ),
}


@pytest.mark.parametrize("kind", BAD_VERSION_2, ids=list(BAD_VERSION_2))
def test_bad_version_2_files(kind, rng):
    description, match = BAD_VERSION_2[kind]
    arrays = {"m": np.zeros(3), "s": np.ones(3)} if "inputs" in kind else {}
    with pytest.raises(jn.ModelFileError, match=match):
        jn.load(io.BytesIO(version_2_entries(rng, description, **arrays)))


def test_a_layer_used_twice_stays_shared(rng):
    square = jn.Affine(rng.normal(size=(3, 3)), rng.normal(size=3))
    net = jn.Network([square, jn.Tanh(), square])
    data = saved_bytes(net)
    with np.load(io.BytesIO(data)) as archive:
        assert sorted(archive.files) == ["format", "layers.0.W", "layers.0.b", "model", "version"]
    loaded = jn.load(io.BytesIO(data))
    assert loaded.layers[0] is loaded.layers[2]
    X = rng.normal(size=(4, 3))
    np.testing.assert_array_equal(loaded.jacobian(X), net.jacobian(X))


def save_version_1(net):
    """The version 1 writer, as released: a flat JSON layer list and arrays layer<i>.W, layer<i>.b."""
    header, arrays = [], {}
    for index, layer in enumerate(net.layers):
        entry = {"type": type(layer).__name__}
        if hasattr(layer, "alpha"):
            entry["alpha"] = float(layer.alpha)
        header.append(entry)
        if isinstance(layer, jn.Affine):
            arrays[f"layer{index}.W"] = layer.W
            if layer.b is not None:
                arrays[f"layer{index}.b"] = layer.b
    return npz(format=np.array("jacobian_np"), version=np.array(1), layers=np.array(json.dumps(header)), **arrays)


def test_version_1_files_still_load(rng):
    net = every_layer_network(rng)
    loaded = jn.load(io.BytesIO(save_version_1(net)))
    assert repr(loaded) == repr(net)
    for a, b in zip(loaded.params, net.params):
        assert a.dtype == b.dtype and np.array_equal(a, b)


def test_version_1_files_hold_only_flat_layers(rng):
    nested_v1 = changed(rng, layers=np.array(json.dumps([{"type": "Network", "layers": [{"type": "Tanh"}]}])))
    with pytest.raises(jn.ModelFileError, match="layer 0: unknown layer type 'Network'"):
        jn.load(io.BytesIO(nested_v1))


# --- composite layers and nested networks (format version 2) -------------------------------


def composite_network(rng):
    shared = jn.Affine(rng.normal(size=(3, 3)), rng.normal(size=3))
    block = jn.Network([shared, jn.Tanh(), jn.Affine(rng.normal(size=(3, 3)))])
    heads = jn.Parallel([jn.Affine(rng.normal(size=(3, 2))), jn.Network([jn.Affine(rng.normal(size=(3, 1))), jn.Sin()])])
    return jn.Network(
        [
            jn.Affine(rng.normal(size=(4, 3)), rng.normal(size=3)),
            jn.Residual(block, scale=0.5),
            jn.LayerNorm(3, eps=1e-3, weight=rng.normal(size=3), bias=rng.normal(size=3)),
            jn.Residual(jn.Network([jn.Residual(jn.Network([jn.GELU()]))])),  # nested three deep
            shared,  # the same object as inside the block: one set of parameters
            heads,
            jn.LeakyReLU(0.3),
        ]
    )


def test_composite_and_nested_networks_round_trip(rng):
    net = composite_network(rng)
    data = saved_bytes(net)
    loaded = jn.load(io.BytesIO(data))
    assert repr(loaded) == repr(net)
    assert loaded.layers[4] is loaded.layers[1].block.layers[0]  # still shared
    assert len(loaded.params) == len(net.params)
    for a, b in zip(loaded.params, net.params):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    assert loaded.layers[1].scale == 0.5 and loaded.layers[2].eps == 1e-3 and loaded.layers[2].d == 3
    X = rng.normal(size=(5, 4))
    np.testing.assert_array_equal(loaded.jacobian(X), net.jacobian(X))
    np.testing.assert_array_equal(loaded.hessian(X), net.hessian(X))
    with np.load(io.BytesIO(data)) as archive:
        description = json.loads(archive["model"].item())["network"]
    assert description["layers"][1]["block"]["layers"][0]["params"] == {"W": "layers.1.block.layers.0.W", "b": "layers.1.block.layers.0.b"}
    assert description["layers"][4] == {"shared": "layers.1.block.layers.0"}
    assert description["layers"][2] == {
        "type": "LayerNorm", "eps": 1e-3, "d": 3, "params": {"weight": "layers.2.weight", "bias": "layers.2.bias"}
    }
    assert [branch.get("type") for branch in description["layers"][5]["branches"]] == ["Affine", "Network"]


def test_save_names_nested_problems(rng):
    net = composite_network(rng)
    net.layers[1].block.layers[2].W[0, 0] = np.nan
    with pytest.raises(ValueError, match=r"^save: layer 1 \(Residual\) > block \(Network\) > layer 2 \(Affine\) parameter W contains NaN"):
        jn.save(net, io.BytesIO())

    class Mine(jn.Tanh):
        pass

    odd = jn.Network([jn.Parallel([jn.Affine(np.ones((2, 2))), Mine()])])
    with pytest.raises(TypeError, match=r"save: layer 0 \(Parallel\) > branch 1 \(Mine\) is not a built-in layer"):
        jn.save(odd, io.BytesIO())


def test_nesting_deeper_than_the_limit_is_refused_when_saving(rng):
    net = jn.Network([jn.Tanh()])
    for _ in range(70):
        net = jn.Network([net])
    with pytest.raises(ValueError, match="is nested more than 64 deep; load would refuse the file"):
        jn.save(net, io.BytesIO())


LN = {"type": "LayerNorm", "eps": 1e-5, "d": 3, "params": {"weight": "w", "bias": "v"}}
BAD_COMPOSITES = {
    "Residual without a block": ({"type": "Residual", "scale": 1.0}, r"layer 1 \(Residual\): 'block' must describe a layer"),
    "Residual block of the wrong width": (
        {"type": "Residual", "scale": 1.0, "block": {"type": "Affine", "params": {"W": "u"}}},
        r"layer 1 \(Residual\): .*width",
    ),
    "Residual scale too large": ({"type": "Residual", "scale": 10**400, "block": {"type": "Tanh"}}, "setting 'scale' must be a finite number"),
    "a bad sub-layer named with its path": (
        {"type": "Residual", "scale": 1.0, "block": {"type": "Network", "layers": [{"type": "Tanh"}, {"type": "Lambda"}]}},
        r"layer 1 \(Residual\) > block \(Network\) > layer 1: unknown layer type 'Lambda'",
    ),
    "Parallel without branches": ({"type": "Parallel", "branches": []}, "'branches' must be a non-empty list of layers"),
    "LayerNorm d not an integer": ({**LN, "d": 2.5}, "setting 'd' must be a positive integer; got 2.5"),
    "LayerNorm d a boolean": ({**LN, "d": True}, "setting 'd' must be a positive integer; got True"),
    "LayerNorm d of 400 digits": ({**LN, "d": 10**400}, "setting 'd' must be a positive integer"),
    "LayerNorm d not the weights' width": ({**LN, "d": 4}, r"layer 1 \(LayerNorm\): .*shape \(4,\)"),
    "LayerNorm eps negative": ({**LN, "eps": -1.0}, r"layer 1 \(LayerNorm\): .*eps"),
    "LayerNorm without bias": ({**LN, "params": {"weight": "w"}}, "'params' names no array for parameter bias"),
}


@pytest.mark.parametrize("kind", BAD_COMPOSITES, ids=list(BAD_COMPOSITES))
def test_bad_composite_descriptions(kind, rng):
    entry, match = BAD_COMPOSITES[kind]
    description = layers_of(AFFINE, entry)
    arrays = {"u": np.ones((3, 2)), "w": np.ones(3), "v": np.zeros(3)}
    used = json.dumps(entry)
    arrays = {key: value for key, value in arrays.items() if f'"{key}"' in used}
    with pytest.raises(jn.ModelFileError, match=match):
        jn.load(io.BytesIO(version_2_entries(rng, description, **arrays)))


def test_nesting_is_bounded_on_load(rng):
    entry = {"type": "Tanh"}
    for _ in range(70):
        entry = {"type": "Residual", "scale": 1.0, "block": entry}
    with pytest.raises(jn.ModelFileError, match=r"layers nested more than 64 deep"):
        jn.load(io.BytesIO(version_2_entries(rng, layers_of(AFFINE, entry))))
