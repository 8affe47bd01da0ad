"""Reading ``.npy`` data from untrusted files with bounded memory.

NumPy's own reader trusts the header: it reads a header of any declared length,
parses it through :mod:`tokenize` for old files (which raises
``tokenize.TokenError`` on an unterminated string), and allocates whatever shape
the header claims before finding out that the data is not there
(``MemoryError`` for a 100-byte file declaring 10**12 elements).  Here the
header is read with a length limit and parsed with :func:`ast.literal_eval`
only, every problem is a ``ValueError`` (or the ``error`` class the caller
passes), the declared size is compared with the bytes actually stored before
anything is allocated, and the data is read in chunks straight into its
destination, so a file never costs more memory than the array it holds.

Used by :mod:`jacobian_np.io` (members of a model file) and by the command line
(``.npy`` inputs).
"""

from __future__ import annotations

import ast
import math
import struct
from dataclasses import dataclass
from typing import IO, Optional

import numpy as np

from ._typing import Array

_MAGIC = b"\x93NUMPY"
#: Longest header accepted; NumPy writes 64 to 128 bytes, and refuses more than 10,000 itself.
MAX_HEADER_BYTES = 2**16
#: Bytes read at a time when copying array data (a multiple of every itemsize).
CHUNK_BYTES = 2**20


@dataclass(frozen=True)
class Header:
    """What a ``.npy`` header declares, and how many bytes it took."""

    shape: tuple[int, ...]
    fortran_order: bool
    dtype: np.dtype
    header_bytes: int

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


def read_header(stream: IO[bytes], name: str, error: type[Exception] = ValueError) -> Header:
    """Read and validate the header of ``.npy`` data at the stream's position.

    ``name`` names the data in messages.  Raises ``error`` for anything that is not
    a well-formed version 1 or 2 header of an array without Python objects.
    """
    start = _read_exactly(stream, len(_MAGIC) + 2, name, "header", error)
    if start[: len(_MAGIC)] != _MAGIC:
        raise error(f"{name} is not .npy data: it does not start with the .npy magic string")
    version = (start[-2], start[-1])
    if version not in ((1, 0), (2, 0)):
        raise error(f"{name}: .npy format version {version[0]}.{version[1]} is not supported (only 1.0 and 2.0)")
    length_format = "<H" if version == (1, 0) else "<I"
    (length,) = struct.unpack(length_format, _read_exactly(stream, struct.calcsize(length_format), name, "header", error))
    if length > MAX_HEADER_BYTES:
        raise error(f"{name}: .npy header declares {length} bytes; at most {MAX_HEADER_BYTES} are accepted")
    text = _read_exactly(stream, length, name, "header", error).decode("latin1")
    try:
        fields = ast.literal_eval(text)
    except (SyntaxError, ValueError, TypeError, RecursionError, MemoryError):
        raise error(f"{name}: .npy header is not a Python literal: {text.strip()!r:.80}") from None
    if not isinstance(fields, dict) or set(fields) != {"descr", "fortran_order", "shape"}:
        raise error(f"{name}: .npy header must be a dict with keys descr, fortran_order, shape; got {text.strip()!r:.80}")
    shape, fortran_order = fields["shape"], fields["fortran_order"]
    if not isinstance(shape, tuple) or not all(type(n) is int and n >= 0 for n in shape) or len(shape) > 32:
        raise error(f"{name}: .npy header has an invalid shape {shape!r:.80}")
    if not isinstance(fortran_order, bool):
        raise error(f"{name}: .npy header has an invalid fortran_order {fortran_order!r:.40}")
    try:
        dtype = np.lib.format.descr_to_dtype(fields["descr"])
    except Exception:  # any malformed descriptor; NumPy raises several types
        raise error(f"{name}: .npy header has an invalid dtype {fields['descr']!r:.80}") from None
    if dtype.hasobject:
        raise error(f"{name} holds Python objects, which are never loaded (no pickle)")
    return Header(shape, fortran_order, dtype, len(start) + struct.calcsize(length_format) + length)


def read_into(
    stream: IO[bytes],
    target: Array,
    header: Header,
    name: str,
    error: type[Exception] = ValueError,
    finite: bool = False,
) -> None:
    """Read the data that follows ``header`` into ``target`` (of the header's shape), in chunks.

    ``target`` may have another byte order or memory layout than the file; only
    about one chunk of extra memory is used.  With ``finite``, NaN or infinity in
    the data raises ``error``.
    """
    if target.shape != header.shape:
        raise error(f"{name}: cannot read data of shape {header.shape} into shape {target.shape}")
    view = target.T if header.fortran_order else target  # the file holds the data in view's C order
    flat = view.reshape(-1) if view.flags.c_contiguous else None
    itemsize = header.dtype.itemsize
    if itemsize == 0:
        return
    per_chunk = max(1, CHUNK_BYTES // itemsize)
    count = math.prod(header.shape)
    for begin in range(0, count, per_chunk):
        stop = min(count, begin + per_chunk)
        chunk = np.frombuffer(_read_exactly(stream, (stop - begin) * itemsize, name, "data", error), dtype=header.dtype)
        if finite and not np.all(np.isfinite(chunk)):
            raise error(f"{name} contains NaN or infinity")
        if flat is not None:
            flat[begin:stop] = chunk
        else:
            view.flat[begin:stop] = chunk


def read_array(stream: IO[bytes], header: Header, name: str, error: type[Exception] = ValueError) -> Array:
    """The data that follows ``header`` as a new array in native byte order."""
    target = np.empty(header.shape, dtype=header.dtype.newbyteorder("="))
    read_into(stream, target, header, name, error)
    return target


def stored_bytes_after(stream: IO[bytes]) -> Optional[int]:
    """Bytes left in a seekable stream after its position, or None if it cannot tell."""
    try:
        here = stream.tell()
        end = stream.seek(0, 2)
        stream.seek(here)
    except (OSError, AttributeError, ValueError):
        return None
    return end - here


def _read_exactly(stream: IO[bytes], n: int, name: str, part: str, error: type[Exception]) -> bytes:
    pieces, got = [], 0
    while got < n:
        piece = stream.read(n - got)
        if not piece:
            raise error(f"{name} is truncated: its .npy {part} ends after {got} of {n} bytes")
        pieces.append(piece)
        got += len(piece)
    return b"".join(pieces)
