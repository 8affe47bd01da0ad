"""Saving and loading networks: ``.npz`` files, no pickle, validated on load.

A model file is an uncompressed NumPy ``.npz`` archive holding

- ``format``: the string ``"jacobian_np"``;
- ``version``: the format version, an integer (currently 1);
- ``layers``: a JSON list with one object per layer, ``{"type": "Affine"}``,
  ``{"type": "LeakyReLU", "alpha": 0.01}``, ...;
- ``layer<i>.W`` and ``layer<i>.b``: the parameters of layer ``i``, if it has any.

:func:`load` reads it with ``allow_pickle=False`` (nothing in the file can run
code), checks everything, and turns every problem into :class:`ModelFileError`.
"""

from __future__ import annotations

import json
import math
import os
import zipfile
from typing import IO, Any, Union

import numpy as np

from . import activations
from ._typing import Array
from .affine import Affine
from .errors import ModelFileError
from .layer import Layer
from .network import Network

FORMAT = "jacobian_np"
VERSION = 1
#: Refuse files whose arrays would take more than this many bytes once loaded.
MAX_BYTES = 2**30

#: Layers a file may hold, and the settings each takes.
_LAYERS: dict[str, tuple[type, tuple[str, ...]]] = {
    "Affine": (Affine, ()),
    **{
        name: (getattr(activations, name), ("alpha",) if name in ("LeakyReLU", "ELU") else ())
        for name in (
            "ReLU", "Sigmoid", "Tanh", "Softmax", "LogSoftmax", "Identity",
            "Softplus", "LeakyReLU", "ELU", "GELU", "SiLU", "Sin",
        )
    },
}

PathLike = Union[str, "os.PathLike[str]", IO[bytes]]


def save(net: Network, path: PathLike) -> None:
    """Save a network of built-in layers to an ``.npz`` file.

    Parameters
    ----------
    net : Network
    path : str, path-like or binary file
        Where to write; NumPy adds ``.npz`` to a file name without it.

    Raises
    ------
    TypeError
        If ``net`` is not a Network or holds a layer that is not one of the
        built-in layers (the message names it).

    Examples
    --------
    >>> import io
    >>> import numpy as np
    >>> from jacobian_np import Affine, LeakyReLU, Network, load, save
    >>> net = Network([Affine(np.ones((2, 3)), np.zeros(3)), LeakyReLU(0.1), Affine(np.ones((3, 1)))])
    >>> buffer = io.BytesIO()
    >>> save(net, buffer)
    >>> _ = buffer.seek(0)
    >>> load(buffer)
    Network([Affine(d_in=2, d_out=3), LeakyReLU(alpha=0.1), Affine(d_in=3, d_out=1)])
    """
    if not isinstance(net, Network):
        raise TypeError(f"save expects a jacobian_np.Network; got {type(net).__name__}.")
    header: list[dict[str, Any]] = []
    arrays: dict[str, Array] = {}
    for index, layer in enumerate(net.layers):
        name = type(layer).__name__
        if _LAYERS.get(name, (None,))[0] is not type(layer):
            raise TypeError(
                f"save: layer {index} ({name}) is not a built-in layer; only {', '.join(_LAYERS)} can be saved."
            )
        entry: dict[str, Any] = {"type": name}
        for setting in _LAYERS[name][1]:
            entry[setting] = float(getattr(layer, setting))
        header.append(entry)
        if isinstance(layer, Affine):
            arrays[f"layer{index}.W"] = layer.W
            if layer.b is not None:
                arrays[f"layer{index}.b"] = layer.b
    contents: dict[str, Any] = {
        "format": np.array(FORMAT),
        "version": np.array(VERSION),
        "layers": np.array(json.dumps(header)),
        **arrays,
    }
    np.savez(path, **contents)


def load(path: PathLike, *, max_bytes: int = MAX_BYTES) -> Network:
    """Load a network saved by :func:`save`, validating everything.

    Parameters
    ----------
    path : str, path-like or binary file
    max_bytes : int, default 1 GiB
        Refuse files whose arrays would take more memory than this.

    Returns
    -------
    Network

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ModelFileError
        For any problem with the contents: not an ``.npz`` archive, truncated,
        another format or version, object arrays, unknown layer types, bad
        settings, missing or extra arrays, non-float or non-finite weights, wrong
        shapes, widths that do not chain, or more than ``max_bytes`` of data.

    Examples
    --------
    >>> import io
    >>> import numpy as np
    >>> from jacobian_np import Affine, Network, Tanh, load, save
    >>> net = Network([Affine(np.arange(6.0).reshape(2, 3)), Tanh()])
    >>> buffer = io.BytesIO()
    >>> save(net, buffer)
    >>> _ = buffer.seek(0)
    >>> loaded = load(buffer)
    >>> np.array_equal(loaded.layers[0].W, net.layers[0].W)
    True
    """
    if isinstance(path, (str, os.PathLike)) and not os.path.exists(path):
        raise FileNotFoundError(f"no such model file: {os.fspath(path)!r}")
    if _first_bytes(path, 4) != b"PK\x03\x04":
        raise ModelFileError("not a jacobian_np model file (.npz): it is not a zip archive")
    try:
        with np.load(path, allow_pickle=False) as archive:
            return _network_from(archive, max_bytes)
    except ModelFileError:
        raise
    except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile, MemoryError) as error:
        raise ModelFileError(f"not a jacobian_np model file (.npz): {error}") from None


def _first_bytes(path: PathLike, n: int) -> bytes:
    if isinstance(path, (str, os.PathLike)):
        with open(path, "rb") as file:
            return file.read(n)
    start = path.tell()
    head = path.read(n)
    path.seek(start)
    return head


def _check_headers(archive: Any, max_bytes: int) -> None:
    """Read every member's ``.npy`` header before any data: refuse arrays larger
    than their stored data (a hostile header) or than ``max_bytes`` in all."""
    total = 0
    for info in archive.zip.infolist():
        with archive.zip.open(info) as member:
            version = np.lib.format.read_magic(member)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(member)
            else:
                shape, _, dtype = np.lib.format.read_array_header_2_0(member)
        nbytes = math.prod(shape) * dtype.itemsize
        if dtype.hasobject:
            raise ModelFileError(f"array {info.filename!r} holds Python objects, which are never loaded")
        if nbytes > info.file_size:
            raise ModelFileError(
                f"array {info.filename!r} claims shape {shape} ({nbytes} bytes) but stores {info.file_size} bytes"
            )
        total += nbytes
        if total > max_bytes:
            raise ModelFileError(f"model file holds more than max_bytes={max_bytes} bytes of arrays")


def _network_from(archive: Any, max_bytes: int) -> Network:
    _check_headers(archive, max_bytes)
    keys = set(archive.files)
    missing = {"format", "version", "layers"} - keys
    if missing:
        raise ModelFileError(f"not a jacobian_np model file: missing {', '.join(sorted(missing))}")
    if _scalar(archive, "format", "U") != FORMAT:
        raise ModelFileError(f"not a jacobian_np model file: format is {_scalar(archive, 'format', 'U')!r}")
    version = _scalar(archive, "version", "iu")
    if version != VERSION:
        raise ModelFileError(f"model file format version {version} is not supported; this release reads {VERSION}")
    try:
        header = json.loads(_scalar(archive, "layers", "U"))
    except json.JSONDecodeError as error:
        raise ModelFileError(f"model file's layer list is not valid JSON: {error}") from None
    if not isinstance(header, list) or not header:
        raise ModelFileError("model file's layer list must be a non-empty JSON list")
    layers, expected = [], {"format", "version", "layers"}
    for index, entry in enumerate(header):
        layer, names = _layer_from(index, entry, archive, keys)
        layers.append(layer)
        expected |= names
    extra = keys - expected
    if extra:
        raise ModelFileError(f"model file has unexpected arrays: {', '.join(sorted(extra))}")
    try:
        return Network(layers)
    except (ValueError, TypeError) as error:
        raise ModelFileError(f"model file's layers do not form a network: {error}") from None


def _layer_from(index: int, entry: Any, archive: Any, keys: set[str]) -> tuple[Layer, set[str]]:
    where = f"layer {index}"
    if not isinstance(entry, dict) or not isinstance(entry.get("type"), str):
        raise ModelFileError(f"{where}: expected an object with a 'type'; got {entry!r:.80}")
    name = entry["type"]
    if name not in _LAYERS:
        raise ModelFileError(f"{where}: unknown layer type {name!r:.40}; known: {', '.join(_LAYERS)}")
    cls, settings = _LAYERS[name]
    unknown = set(entry) - {"type", *settings}
    if unknown:
        raise ModelFileError(f"{where} ({name}): unexpected settings {', '.join(sorted(map(str, unknown)))}")
    kwargs = {}
    for setting in settings:
        value = entry.get(setting)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ModelFileError(f"{where} ({name}): setting {setting!r} must be a finite number; got {value!r:.40}")
        kwargs[setting] = float(value)
    if cls is not Affine:
        return cls(**kwargs), set()
    W_key, b_key = f"layer{index}.W", f"layer{index}.b"
    if W_key not in keys:
        raise ModelFileError(f"{where} (Affine): missing array {W_key!r}")
    W = _weights(archive, W_key)
    b = _weights(archive, b_key) if b_key in keys else None
    try:
        return Affine(W, b), {W_key, b_key}
    except (ValueError, TypeError) as error:
        raise ModelFileError(f"{where} (Affine): {error}") from None


def _weights(archive: Any, key: str) -> Array:
    array = archive[key]
    if array.dtype.kind != "f":
        raise ModelFileError(f"array {key!r} must hold floating-point numbers; got dtype {array.dtype}")
    if not np.all(np.isfinite(array)):
        raise ModelFileError(f"array {key!r} contains NaN or infinity")
    return array


def _scalar(archive: Any, key: str, kinds: str) -> Any:
    array = archive[key]
    if array.shape != () or array.dtype.kind not in kinds:
        raise ModelFileError(f"model file entry {key!r} has the wrong type: dtype {array.dtype}, shape {array.shape}")
    return array.item()
