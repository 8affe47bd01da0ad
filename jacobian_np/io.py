"""Saving and loading networks: ``.npz`` files, no pickle, validated on load.

A model file (format version 2) is a NumPy ``.npz`` archive holding

- ``format``: the string ``"jacobian_np"``;
- ``version``: the format version, the integer 2;
- ``model``: a JSON object ``{"network": LAYER}``, optionally with
  ``"inputs": {"mean": NAME, "std": NAME}`` (statistics of the inputs, see
  :func:`save`);
- one array per parameter, named in the description: ``layers.0.W``,
  ``layers.0.b``, ``layers.2.block.layers.0.W``, ...

where ``LAYER`` describes one layer as a JSON object with its ``"type"``, its
settings (numbers: ``alpha``, ``scale``, ``eps``, ``d``), its sub-layers (one
layer for a ``Residual``'s ``"block"``, a list for a ``Network``'s ``"layers"``
and a ``Parallel``'s ``"branches"``) and the names of its parameter arrays
(``W``, ``b``; ``weight``, ``bias``)::

    {"type": "Network", "layers": [
        {"type": "Affine", "params": {"W": "layers.0.W", "b": "layers.0.b"}},
        {"type": "Residual", "scale": 0.5, "block": {"type": "Network", "layers": [
            {"type": "Affine", "params": {"W": "layers.1.block.layers.0.W"}},
            {"type": "Tanh"}]}},
        {"type": "LayerNorm", "d": 3, "eps": 1e-05,
         "params": {"weight": "layers.2.weight", "bias": "layers.2.bias"}},
        {"type": "Parallel", "branches": [
            {"type": "Affine", "params": {"W": "layers.3.branches.0.W"}},
            {"type": "LeakyReLU", "alpha": 0.1}]},
        {"shared": "layers.0"}]}

``{"shared": PATH}`` is a layer object that occurs more than once (its parameters
are stored once and stay shared after loading); ``PATH`` is where it was
described first.  Layers nest at most ``MAX_DEPTH`` deep.  Version 1 files (a
JSON list ``layers`` of flat layers and arrays ``layer<i>.W``, ``layer<i>.b``)
still load.

:func:`load` never unpickles (nothing in the file can run code), reads array data
in chunks straight into the layers' parameters after checking the declared sizes
(a file never costs more memory than its arrays), checks everything, and turns
every problem with the contents into :class:`ModelFileError`.
"""

from __future__ import annotations

import io
import json
import math
import os
import zipfile
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any, Iterator, Optional, Union, cast

import numpy as np
import numpy.typing as npt

from . import _npy, activations
from ._typing import Array
from ._validation import as_float_array
from .affine import Affine
from .composite import Parallel, Residual
from .errors import ModelFileError
from .layer import Layer
from .network import Network
from .normalization import LayerNorm

FORMAT = "jacobian_np"
VERSION = 2
#: Refuse files whose arrays would take more than this many bytes once loaded.
MAX_BYTES = 2**30
#: Layers nested deeper than this (a network inside a block inside ...) are refused.
MAX_DEPTH = 64
#: Longest layer description (JSON) accepted, in characters: about 20,000 layers.
MAX_DESCRIPTION_CHARS = 2**20
#: Room for zip and ``.npy`` headers: a file larger than ``max_bytes`` plus this is refused unread.
_OVERHEAD_BYTES = 2**22

PathLike = Union[str, bytes, "os.PathLike[str]", IO[bytes]]


@dataclass(frozen=True)
class _Kind:
    """How a layer class is described in a model file.

    Settings, parameters and sub-layers are attributes of the layer and keyword
    arguments of its constructor, under the same names.
    """

    cls: type
    settings: tuple[str, ...] = ()  # finite real numbers
    int_settings: tuple[str, ...] = ()  # positive integers
    params: tuple[str, ...] = ()  # parameter arrays
    optional_params: tuple[str, ...] = ()  # parameters that may be None (absent from the file)
    child: Optional[str] = None  # attribute holding one sub-layer
    children: Optional[str] = None  # attribute holding a sequence of sub-layers
    child_label: str = ""  # how one of those is named in messages

    def sub_layers(self, layer: Any) -> list[tuple[str, str, Any]]:
        """``(path suffix, label, sub-layer)`` of each sub-layer of ``layer``."""
        if self.child is not None:
            return [(self.child, self.child, getattr(layer, self.child))]
        if self.children is not None:
            return [
                (f"{self.children}.{index}", f"{self.child_label} {index}", child)
                for index, child in enumerate(getattr(layer, self.children))
            ]
        return []


_ACTIVATIONS = (
    "ReLU", "Sigmoid", "Tanh", "Softmax", "LogSoftmax", "Identity",
    "Softplus", "LeakyReLU", "ELU", "GELU", "SiLU", "Sin",
)
_KINDS: dict[str, _Kind] = {
    "Affine": _Kind(Affine, params=("W", "b"), optional_params=("b",)),
    **{
        name: _Kind(getattr(activations, name), settings=("alpha",) if name in ("LeakyReLU", "ELU") else ())
        for name in _ACTIVATIONS
    },
    "LayerNorm": _Kind(LayerNorm, settings=("eps",), int_settings=("d",), params=("weight", "bias")),
    "Network": _Kind(Network, children="layers", child_label="layer"),
    "Residual": _Kind(Residual, settings=("scale",), child="block"),
    "Parallel": _Kind(Parallel, children="branches", child_label="branch"),
}
#: The layer types a version 1 file may hold.
_V1_TYPES = frozenset(("Affine",) + _ACTIVATIONS)


def save(
    net: Network,
    path: PathLike,
    *,
    input_mean: Optional[npt.ArrayLike] = None,
    input_std: Optional[npt.ArrayLike] = None,
) -> None:
    """Save a network of built-in layers, composite and nested ones included, to an ``.npz`` file.

    Parameters
    ----------
    net : Network
        Its layers are built-in layers, or ``Network``, ``Residual`` and
        ``Parallel`` of them, to any depth up to ``MAX_DEPTH`` (64).  A layer
        object used more than once is stored once and is shared again after
        :func:`load`.
    path : str, path-like or binary file
        Where to write; NumPy adds ``.npz`` to a file name without it.
    input_mean, input_std : array_like of shape (d_in,), optional
        The mean and standard deviation of each input, in the units the network
        takes (for a scikit-learn pipeline, the raw units: a ``StandardScaler``'s
        ``mean_`` and ``scale_``).  Stored with the model; ``jacobian-np check``
        draws its random inputs from them.  Give both or neither.

    Raises
    ------
    TypeError
        If ``net`` is not a Network or holds a layer that is not one of the
        built-in layers (the message names it).
    ValueError
        If a parameter holds NaN or infinity (the message names the layer and the
        parameter; nothing is written), layers nest more than ``MAX_DEPTH`` deep, or
        the input statistics do not have shape ``(d_in,)``, are not finite, or a
        standard deviation is negative.

    See Also
    --------
    load : read the file back, validating everything.
    ModelFileError : what ``load`` raises for a file it refuses.
    to_onnx, to_c, to_torch : export the network for use outside jacobian_np.

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

    Weights that became NaN (a diverged training run) are refused, naming them:

    >>> net.layers[0].b[1] = np.nan
    >>> save(net, io.BytesIO())
    Traceback (most recent call last):
    ...
    ValueError: save: layer 0 (Affine) parameter b contains NaN (1 of 3 values); nothing was written.
    """
    if not isinstance(net, Network):
        raise TypeError(f"save expects a jacobian_np.Network; got {type(net).__name__}.")
    writer = _Writer()
    description: dict[str, Any] = {"network": writer.describe(net, "", "", 0)}
    statistics = _input_statistics(net, input_mean, input_std)
    if statistics:
        description["inputs"] = {name: f"inputs.{name}" for name in statistics}
        writer.arrays.update({f"inputs.{name}": value for name, value in statistics.items()})
    contents: dict[str, Any] = {
        "format": np.array(FORMAT),
        "version": np.array(VERSION),
        "model": np.array(json.dumps(description)),
        **writer.arrays,
    }
    np.savez(os.fsdecode(path) if isinstance(path, bytes) else path, **contents)


def load(path: PathLike, *, max_bytes: int = MAX_BYTES) -> Network:
    """Load a network saved by :func:`save`, validating everything.

    Parameters
    ----------
    path : str, path-like or binary file
        A binary file (opened with ``"rb"``) may also be a stream that cannot
        seek, such as a pipe; it is then read into memory first.
    max_bytes : int, default 1 GiB
        Refuse files whose arrays would take more memory than this.  Sizes are
        checked before any array is read, and arrays are read in chunks straight
        into the network's parameters, so loading takes about ``max_bytes`` of
        memory at most.

    Returns
    -------
    Network

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    TypeError
        If ``path`` is not a file name, a path or a binary file (for example a
        file opened in text mode), or ``max_bytes`` is not an integer.
    ModelFileError
        For any problem with the contents: not an ``.npz`` archive, truncated or
        corrupt, another format or version, object arrays, unknown layer types,
        bad settings, layers nested more than ``MAX_DEPTH`` deep, missing or extra
        arrays, non-float or non-finite weights, wrong shapes, widths that do not
        chain, or more than ``max_bytes`` of data.  A directory is refused the
        same way.  A subclass of ``ValueError``.
    OSError
        If the operating system cannot read the file (for example
        ``PermissionError``).
    MemoryError
        Only if arrays within ``max_bytes`` do not fit in memory.

    See Also
    --------
    save : write the file.
    ModelFileError : the error for any problem with the file's contents.
    from_onnx, from_torch, from_sklearn : a network from another library's model instead.

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
    return _read_model_file(path, max_bytes=max_bytes).network


@dataclass(frozen=True)
class _ModelFile:
    """The contents of a model file: the network and, if saved, its input statistics."""

    network: Network
    input_mean: Optional[Array] = None
    input_std: Optional[Array] = None


def _read_model_file(path: PathLike, *, max_bytes: int = MAX_BYTES) -> _ModelFile:
    """:func:`load`, also returning the input statistics saved with the network
    (for the command line).  Raises as :func:`load` does."""
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, (int, np.integer)):
        raise TypeError(f"max_bytes must be an integer; got {type(max_bytes).__name__}.")
    if max_bytes < 0:
        raise ValueError(f"max_bytes must be non-negative; got {max_bytes}.")
    with _binary_stream(path, int(max_bytes) + _OVERHEAD_BYTES) as stream:
        try:
            reader = _Reader(stream, int(max_bytes))
            with reader.zip:
                return reader.model_file()
        except (ModelFileError, MemoryError):
            raise
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
            raise ModelFileError(f"not a jacobian_np model file (.npz): {error}") from error
        except zlib.error as error:
            raise ModelFileError(f"not a jacobian_np model file (.npz): corrupt compressed data ({error})") from error
        except Exception as error:  # noqa: BLE001 - anything else zipfile or zlib raises on corrupt data
            raise ModelFileError(f"not a jacobian_np model file (.npz): {type(error).__name__}: {error}") from error


# --- saving ---------------------------------------------------------------------------


class _Writer:
    """Describes layers as JSON and collects their parameter arrays by name."""

    def __init__(self) -> None:
        self.arrays: dict[str, Array] = {}
        self._seen: dict[int, str] = {}  # id(layer) -> where it was described

    def describe(self, layer: Any, path: str, where: str, depth: int) -> dict[str, Any]:
        if path and id(layer) in self._seen:
            return {"shared": self._seen[id(layer)]}
        name = type(layer).__name__
        kind = _KINDS.get(name)
        label = f"{where} ({name})" if where else name
        if kind is None or kind.cls is not type(layer):
            raise TypeError(
                f"save: {label} is not a built-in layer; only {', '.join(_KINDS)} can be saved."
            )
        if depth > MAX_DEPTH:
            raise ValueError(f"save: {label} is nested more than {MAX_DEPTH} deep; load would refuse the file.")
        if path:
            self._seen[id(layer)] = path
        entry: dict[str, Any] = {"type": name}
        for setting in kind.settings:
            entry[setting] = float(getattr(layer, setting))
        for setting in kind.int_settings:
            entry[setting] = int(getattr(layer, setting))
        described = [
            self.describe(child, _join(path, suffix), _child_where(where, name, child_label), depth + 1)
            for suffix, child_label, child in kind.sub_layers(layer)
        ]
        if kind.child is not None:
            entry[kind.child] = described[0]
        elif kind.children is not None:
            entry[kind.children] = described
        names = {}
        for param in kind.params:
            value = getattr(layer, param)
            if value is None and param in kind.optional_params:
                continue
            _check_finite_param(value, f"{label} parameter {param}")
            names[param] = _join(path, param)
            self.arrays[names[param]] = value
        if names:
            entry["params"] = names
        return entry


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _child_where(where: str, name: str, label: str) -> str:
    """How a sub-layer is named in messages: ``layer 3 (Residual) > block (Network) > layer 0``."""
    return f"{where} ({name}) > {label}" if where else label


def _check_finite_param(value: Array, label: str) -> None:
    if np.all(np.isfinite(value)):
        return
    nan, inf = int(np.count_nonzero(np.isnan(value))), int(np.count_nonzero(np.isinf(value)))
    what = " and ".join(part for part, count in (("NaN", nan), ("infinity", inf)) if count)
    raise ValueError(f"save: {label} contains {what} ({nan + inf} of {value.size} values); nothing was written.")


def _input_statistics(net: Network, mean: Any, std: Any) -> dict[str, Array]:
    if mean is None and std is None:
        return {}
    if mean is None or std is None:
        raise ValueError("save: give both input_mean and input_std, or neither.")
    statistics = {"mean": as_float_array(mean, "input_mean"), "std": as_float_array(std, "input_std")}
    problem = _statistics_problem(statistics, net.d_in)
    if problem:
        raise ValueError(f"save: {problem}.")
    return statistics


def _statistics_problem(statistics: dict[str, Array], d_in: Optional[int]) -> Optional[str]:
    """What is wrong with input statistics, or None."""
    if d_in is None:
        return "input statistics need a network with a known input width (it starts with activations only)"
    for name, value in statistics.items():
        if value.shape != (d_in,):
            return f"input_{name} must have shape ({d_in},), one value per input; got shape {value.shape}"
        if not np.all(np.isfinite(value)):
            return f"input_{name} must be finite"
    if np.any(statistics["std"] < 0):
        return "input_std must not be negative"
    return None


# --- loading --------------------------------------------------------------------------


@contextmanager
def _binary_stream(path: PathLike, limit: int) -> Iterator[IO[bytes]]:
    """A seekable binary stream of ``path``'s contents, refusing more than ``limit`` bytes."""
    if isinstance(path, (str, bytes, os.PathLike)):
        name = os.fsdecode(path)
        if not os.path.exists(path):
            raise FileNotFoundError(f"no such model file: {name!r}")
        if os.path.isdir(path):
            raise ModelFileError(f"{name!r} is a directory, not a jacobian_np model file (.npz)")
        size = os.path.getsize(path)
        if size > limit:
            raise ModelFileError(f"model file {name!r} has {size} bytes, more than max_bytes allows")
        with open(path, "rb") as file:
            yield file
        return
    read = getattr(path, "read", None)
    if not callable(read):
        raise TypeError(f"load expects a file name, a path or a binary file; got {type(path).__name__}.")
    if isinstance(path, io.TextIOBase) or not isinstance(read(0), bytes):
        raise TypeError("load needs a binary file, but this one was opened in text mode; open it with 'rb'.")
    seekable = getattr(path, "seekable", None)
    if callable(seekable) and seekable():
        yield path
        return
    copy = io.BytesIO()  # a pipe or socket: into memory, up to the limit
    while copy.tell() <= limit:
        piece = read(min(_npy.CHUNK_BYTES, limit + 1 - copy.tell()))
        if not piece:
            break
        copy.write(piece)
    if copy.tell() > limit:
        raise ModelFileError("the model stream has more bytes than max_bytes allows")
    copy.seek(0)
    yield copy


@dataclass(frozen=True)
class _Member:
    info: zipfile.ZipInfo
    header: _npy.Header


class _Reader:
    """Reads one model file: member headers first, then the description, then the data."""

    def __init__(self, stream: IO[bytes], max_bytes: int) -> None:
        start = stream.tell()
        head = stream.read(4)
        stream.seek(start)
        if head != b"PK\x03\x04":
            raise ModelFileError("not a jacobian_np model file (.npz): it is not a zip archive")
        self.zip = zipfile.ZipFile(stream)
        try:
            self.members = self._headers(max_bytes)
        except BaseException:
            self.zip.close()
            raise
        self.used: set[str] = set()

    def _headers(self, max_bytes: int) -> dict[str, _Member]:
        """Every member's ``.npy`` header, read before any data; sizes checked against the stored bytes and max_bytes."""
        members: dict[str, _Member] = {}
        total = 0
        for info in self.zip.infolist():
            if not info.filename.endswith(".npy"):
                raise ModelFileError(f"model file has an unexpected member {info.filename!r:.80} (not .npy)")
            key = info.filename[: -len(".npy")]
            if key in members:
                raise ModelFileError(f"model file holds array {key!r:.80} twice")
            with self.zip.open(info) as member:
                header = _npy.read_header(member, f"array {key!r:.80}", ModelFileError)
            if header.header_bytes + header.nbytes > info.file_size:
                raise ModelFileError(
                    f"array {key!r:.80} claims shape {header.shape} ({header.nbytes} bytes) "
                    f"but stores {info.file_size - header.header_bytes} bytes"
                )
            total += header.nbytes
            if total > max_bytes:
                raise ModelFileError(f"model file holds more than max_bytes={max_bytes} bytes of arrays")
            members[key] = _Member(info, header)
        return members

    def model_file(self) -> _ModelFile:
        if not {"format", "version"} <= set(self.members):
            missing = sorted({"format", "version"} - set(self.members))
            raise ModelFileError(f"not a jacobian_np model file: missing {', '.join(missing)}")
        format_name = self.scalar("format", "U")
        if format_name != FORMAT:
            raise ModelFileError(f"not a jacobian_np model file: format is {format_name!r:.80}")
        version = self.scalar("version", "iu")
        if version == 1:
            description = {"network": self._version_1_network(self.description("layers"))}
        elif version == VERSION:
            description = self.description("model")
            if not isinstance(description, dict) or "network" not in description or set(description) - {"network", "inputs"}:
                raise ModelFileError("model file's description must be an object with 'network' (and optionally 'inputs')")
        else:
            raise ModelFileError(f"model file format version {version} is not supported; this release reads 1 and {VERSION}")
        builder = _Builder(self, allowed=_V1_TYPES if version == 1 else None)
        network = builder.network(description["network"])
        statistics = self._statistics(description.get("inputs"), network.d_in)
        extra = set(self.members) - self.used
        if extra:
            raise ModelFileError(f"model file has unexpected arrays: {', '.join(sorted(extra))[:200]}")
        for target, key in builder.fills:
            self.read_into(target, key, finite=True)
        return _ModelFile(network, statistics.get("mean"), statistics.get("std"))

    def scalar(self, key: str, kinds: str) -> Any:
        member = self.members[key]
        if member.header.shape != () or member.header.dtype.kind not in kinds:
            raise ModelFileError(
                f"model file entry {key!r} has the wrong type: dtype {member.header.dtype}, shape {member.header.shape}"
            )
        self.used.add(key)
        return self.read(key).item()

    def description(self, key: str) -> Any:
        if key not in self.members:
            raise ModelFileError(f"not a jacobian_np model file: missing {key}")
        dtype = self.members[key].header.dtype
        if dtype.kind == "U" and dtype.itemsize > 4 * MAX_DESCRIPTION_CHARS:
            raise ModelFileError(f"model file's layer description is longer than {MAX_DESCRIPTION_CHARS} characters")
        text = self.scalar(key, "U")
        try:
            return json.loads(text)
        except RecursionError:
            raise ModelFileError(
                f"model file's layer description is nested too deeply (layers nest at most {MAX_DEPTH} deep)"
            ) from None
        except ValueError as error:  # JSONDecodeError, and integers with too many digits
            raise ModelFileError(f"model file's layer description is not valid JSON: {error}") from None

    def read(self, key: str) -> Array:
        target = np.empty(self.members[key].header.shape, self.members[key].header.dtype.newbyteorder("="))
        self.read_into(target, key)
        return target

    def read_into(self, target: Array, key: str, finite: bool = False) -> None:
        """Read array ``key``'s data into ``target``, in chunks; the member's CRC is checked at its end."""
        member = self.members[key]
        name = f"array {key!r}"
        with self.zip.open(member.info) as stream:
            _npy.read_header(stream, name, ModelFileError)
            _npy.read_into(stream, target, member.header, name, ModelFileError, finite)
            if stream.read(1):
                raise ModelFileError(f"{name} has data after its {member.header.shape} values")

    def _version_1_network(self, entries: Any) -> dict[str, Any]:
        """A version 1 layer list as a version 2 description (Affine arrays ``layer<i>.W``, ``layer<i>.b``)."""
        if not isinstance(entries, list) or not entries:
            raise ModelFileError("model file's layer list must be a non-empty JSON list")
        layers = []
        for index, entry in enumerate(entries):
            if isinstance(entry, dict) and entry.get("type") == "Affine":
                if "params" in entry:
                    raise ModelFileError(f"layer {index} (Affine): unexpected settings params")
                names = {"W": f"layer{index}.W"}
                if f"layer{index}.b" in self.members:
                    names["b"] = f"layer{index}.b"
                entry = {**entry, "params": names}
            layers.append(entry)
        return {"type": "Network", "layers": layers}

    def _statistics(self, entry: Any, d_in: Optional[int]) -> dict[str, Array]:
        if entry is None:
            return {}
        if not isinstance(entry, dict) or set(entry) != {"mean", "std"}:
            raise ModelFileError("model file's 'inputs' must name the arrays 'mean' and 'std'")
        statistics = {name: self._float_array(entry[name], f"inputs {name}") for name in ("mean", "std")}
        problem = _statistics_problem(statistics, d_in)
        if problem:
            raise ModelFileError(f"model file's input statistics: {problem}")
        return statistics

    def _float_array(self, key: Any, where: str) -> Array:
        """Array ``key`` of floating-point numbers, marked used (read now: it is small)."""
        header = self.float_header(key, where)
        array = np.empty(header.shape, header.dtype.newbyteorder("="))
        self.read_into(array, key, finite=True)
        return array

    def float_header(self, key: Any, where: str) -> _npy.Header:
        """The header of array ``key``, which must exist, hold floats and not be used yet; marks it used."""
        if not isinstance(key, str) or key not in self.members:
            raise ModelFileError(f"{where}: missing array {key!r:.80}")
        if key in self.used:
            raise ModelFileError(f"{where}: array {key!r:.80} is used twice")
        header = self.members[key].header
        if header.dtype.kind != "f":
            raise ModelFileError(f"array {key!r} must hold floating-point numbers; got dtype {header.dtype}")
        self.used.add(key)
        return header


class _Builder:
    """Builds layers from their descriptions, with zero parameters of the stored shapes.

    The data is read afterwards straight into the layers' live parameter arrays
    (``fills``), as :meth:`Network.set_flat_params` writes them, so that each array
    is held once: the constructors copy what they are given.
    """

    def __init__(self, reader: _Reader, allowed: Optional[frozenset[str]]) -> None:
        self.reader = reader
        self.allowed = allowed
        self.fills: list[tuple[Array, str]] = []
        self.built: dict[str, Layer] = {}

    def network(self, entry: Any) -> Network:
        if not isinstance(entry, dict) or entry.get("type") != "Network":
            raise ModelFileError("model file's 'network' must describe a Network")
        return cast(Network, self.layer(entry, "", "", 0))

    def layer(self, entry: Any, path: str, where: str, depth: int) -> Any:
        label = where or "the network"
        if depth > MAX_DEPTH:
            raise ModelFileError(f"{label}: layers nested more than {MAX_DEPTH} deep")
        if isinstance(entry, dict) and "shared" in entry and path:
            if set(entry) != {"shared"} or not isinstance(entry["shared"], str) or entry["shared"] not in self.built:
                raise ModelFileError(f"{label}: 'shared' must name a layer described before it; got {entry!r:.80}")
            return self.built[entry["shared"]]
        if not isinstance(entry, dict) or not isinstance(entry.get("type"), str):
            raise ModelFileError(f"{label}: expected an object with a 'type'; got {entry!r:.80}")
        name = entry["type"]
        kind = _KINDS.get(name)
        if kind is None or (self.allowed is not None and depth > 0 and name not in self.allowed):
            known = sorted(self.allowed) if self.allowed is not None else list(_KINDS)
            raise ModelFileError(f"{label}: unknown layer type {name!r:.40}; known: {', '.join(known)}")
        label = f"{where} ({name})" if where else name
        structure = [key for key in (kind.child, kind.children) if key is not None]
        keys = {"type", *kind.settings, *kind.int_settings, *structure, *(["params"] if kind.params else [])}
        unknown = set(entry) - keys
        if unknown:
            raise ModelFileError(f"{label}: unexpected settings {', '.join(sorted(map(str, unknown)))[:200]}")
        kwargs: dict[str, Any] = {setting: _finite_number(entry.get(setting), setting, label) for setting in kind.settings}
        kwargs.update({setting: _positive_integer(entry.get(setting), setting, label) for setting in kind.int_settings})
        if kind.child is not None:
            if kind.child not in entry:
                raise ModelFileError(f"{label}: {kind.child!r} must describe a layer")
            kwargs[kind.child] = self.layer(
                entry[kind.child], _join(path, kind.child), _child_where(where, name, kind.child), depth + 1
            )
        if kind.children is not None:
            children = entry.get(kind.children)
            if not isinstance(children, list) or not children:
                raise ModelFileError(f"{label}: {kind.children!r} must be a non-empty list of layers")
            kwargs[kind.children] = [
                self.layer(
                    child, _join(path, f"{kind.children}.{index}"),
                    _child_where(where, name, f"{kind.child_label} {index}"), depth + 1,
                )
                for index, child in enumerate(children)
            ]
        headers = self._params(entry, kind, label)
        for param, (key, header) in headers.items():  # zeros of the stored shape, without allocating them
            kwargs[param] = np.broadcast_to(np.zeros((), header.dtype.newbyteorder("=")), header.shape)
        try:
            layer = kind.cls(**kwargs)
        except (ValueError, TypeError) as error:
            if name == "Network":
                raise ModelFileError(f"model file's layers do not form a network: {error}") from None
            raise ModelFileError(f"{label}: {error}") from None
        for param, (key, header) in headers.items():
            live = getattr(layer, param)
            if not (isinstance(live, np.ndarray) and live.shape == header.shape and live.flags.writeable):
                raise ModelFileError(f"{label}: cannot read parameter {param} into the layer")
            self.fills.append((live, key))
        if path:
            self.built[path] = layer
        return layer

    def _params(self, entry: dict[str, Any], kind: _Kind, label: str) -> dict[str, tuple[str, _npy.Header]]:
        """``param -> (array name, header)`` of the arrays a layer's description names."""
        if not kind.params:
            return {}
        names = entry.get("params", {})
        if not isinstance(names, dict) or set(names) - set(kind.params):
            raise ModelFileError(f"{label}: 'params' must map {', '.join(kind.params)} to array names; got {names!r:.80}")
        headers = {}
        for param in kind.params:
            if param in names:
                headers[param] = (names[param], self.reader.float_header(names[param], label))
            elif param not in kind.optional_params:
                raise ModelFileError(f"{label}: 'params' names no array for parameter {param}")
        return headers


def _positive_integer(value: Any, setting: str, label: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**63:
        raise ModelFileError(f"{label}: setting {setting!r} must be a positive integer; got {str(value)[:40]}")
    return value


def _finite_number(value: Any, setting: str, label: str) -> float:
    """A JSON number as a finite float; huge integers (10**400) are refused, not overflowed."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ModelFileError(f"{label}: setting {setting!r} must be a finite number; got {value!r:.40}")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise ModelFileError(f"{label}: setting {setting!r} must be a finite number; got {str(value)[:40]}")
    return number
