"""Export a network's value and input Jacobian to ONNX, C and PyTorch.

PyTorch, ONNX and ONNX Runtime decline to export gradients, yet a surrogate
embedded elsewhere often needs its Jacobian there: a finite-element material
routine returns dσ/dε, a Newton solver or an MCMC sampler in C needs ``J``.  The
networks of this package are matrix products and elementwise functions, so the
value and the Jacobian lower to plain ONNX operators and to plain C
(``docs/exporting.md``).

Each exporter walks the layers recursively (``_export_walk.LayerWalk``) and
refuses any layer whose exact type is not built in, naming it.  ONNX and PyTorch
are optional and imported when an exporter that needs them is called.
"""

from __future__ import annotations

import importlib
import os
import re
import warnings
from typing import Any, Union

from . import _export_c, _export_onnx
from .errors import ZeroCurvatureWarning
from .layer import Layer
from .network import Network

__all__ = ["to_c", "to_onnx", "to_torch"]

_C_KEYWORDS = frozenset(
    "auto break case char const continue default do double else enum extern float for goto if inline int "
    "long register restrict return short signed sizeof static struct switch typedef union unsigned void "
    "volatile while _Bool _Complex _Imaginary".split()
)


def to_onnx(net: Network, path: Union[str, "os.PathLike[str]"], laplacian: bool = False) -> str:
    """Write an ONNX model computing a network's output and input Jacobian.

    Parameters
    ----------
    net : Network
        A network of built-in layers (a single layer is accepted too) whose input
        width is fixed (it has an ``Affine`` layer).
    path : str or path-like
        The ``.onnx`` file to write (overwritten if it exists).
    laplacian : bool, default False
        Also output ``L`` of shape ``(n, d_out)``, the Laplacian of each output,
        ``L[i, j] = sum_k d^2 y[i, j] / d x[i, k]^2``, as
        :meth:`Network.laplacian` computes it (physics-informed residuals need
        it).  Meaningful where the network is smooth: kinks (``ReLU``,
        ``LeakyReLU``, ``ELU`` at 0) contribute nothing.

    Returns
    -------
    str
        The path written.

    Raises
    ------
    ImportError
        If the ``onnx`` package is not installed.
    TypeError
        If ``net`` is not a network, or a layer is user-defined or a subclass of
        a built-in layer (the message names it and where it sits).
    ValueError
        If the network's input width is not fixed.

    Warns
    -----
    ZeroCurvatureWarning
        With ``laplacian=True``, if every layer is piecewise linear (as
        :meth:`Network.laplacian` warns).

    See Also
    --------
    from_onnx : the reverse, a network from an ONNX model.
    to_c : dependency-free C source instead.
    to_torch : a PyTorch module instead.
    Network.forward_backward, Network.laplacian : what the model's outputs equal.

    Notes
    -----
    The model has one input, ``x`` of shape ``(n, d_in)`` with a dynamic ``n``,
    and two outputs: ``y`` of shape ``(n, d_out)`` and ``J`` of shape
    ``(n, d_out, d_in)``, ``J[i, j, k] = d y[i, j] / d x[i, k]``, as
    :meth:`Network.forward_backward` returns them (and ``L`` with
    ``laplacian=True``: the graph then also carries the Laplacian of every
    hidden value forward, ``f' lap + f'' sum_k t_k**2`` through an activation).  The element type is float32
    when every weight is float32 and float64 otherwise.

    The graph propagates the Jacobian forward from the identity, with standard
    operators of opset 17 only (IR version 8).  ONNX Runtime lacks double
    kernels for ``Erf``, ``Softplus`` and ``Elu`` and computes ``Sigmoid`` in
    double to about 1e-8 only, so these functions are composed from ``Exp``,
    ``Log`` and arithmetic with the package's accurate forms (the normal
    distribution function of GELU from a 25-term Chebyshev series).  In float64
    ONNX Runtime agrees with :meth:`Network.forward_backward` to about 1e-15
    relative.

    Examples
    --------
    >>> import os, shutil, tempfile
    >>> import numpy as np
    >>> import onnxruntime as ort  # doctest: +SKIP
    >>> from jacobian_np import Affine, Network, Tanh, to_onnx
    >>> rng = np.random.default_rng(0)
    >>> net = Network([Affine(rng.normal(size=(3, 8))), Tanh(), Affine(rng.normal(size=(8, 2)))])
    >>> folder = tempfile.mkdtemp()
    >>> path = to_onnx(net, os.path.join(folder, "net.onnx"))
    >>> session = ort.InferenceSession(path)  # doctest: +SKIP
    >>> X = rng.normal(size=(5, 3))
    >>> y, J = session.run(["y", "J"], {"x": X})  # doctest: +SKIP
    >>> J.shape  # doctest: +SKIP
    (5, 2, 3)
    >>> y_ref, J_ref = net.forward_backward(X)
    >>> np.allclose(J, J_ref, rtol=1e-12)  # doctest: +SKIP
    True
    >>> shutil.rmtree(folder)
    """
    from .importers import _import_optional

    onnx = _import_optional("onnx", "onnx", "onnx", "to_onnx")
    importlib.import_module("onnx.numpy_helper")
    if not isinstance(laplacian, bool):
        raise TypeError(f"to_onnx: laplacian must be True or False; got {type(laplacian).__name__}.")
    target = _output_path(path, "to_onnx", "path")
    if laplacian and isinstance(net, Layer) and net.piecewise_linear:
        warnings.warn(
            f"to_onnx: every layer of {type(net).__name__} is piecewise linear, so the Laplacian output L is "
            "zero almost everywhere. For nonzero curvature use smooth activations such as Tanh, Softplus, "
            "GELU or SiLU.",
            ZeroCurvatureWarning,
            stacklevel=2,
        )
    model = _export_onnx.build(net, onnx, laplacian)
    onnx.save(model, target)
    return target


def to_c(net: Network, directory: Union[str, "os.PathLike[str]"], name: str = "jnp_net") -> tuple[str, str]:
    """Write dependency-free C99 computing a network's output and input Jacobian.

    Parameters
    ----------
    net : Network
        A network of built-in layers (a single layer is accepted too) whose input
        width is fixed (it has an ``Affine`` layer).
    directory : str or path-like
        An existing directory; ``name.h`` and ``name.c`` are written there
        (overwritten if they exist).
    name : str, default "jnp_net"
        A C identifier: the prefix of the function and, upper-cased, of the
        macros.

    Returns
    -------
    header_path, source_path : str
        The paths of ``name.h`` and ``name.c``.

    Raises
    ------
    TypeError
        If ``net`` is not a network or ``name`` not a string, or a layer is
        user-defined or a subclass of a built-in layer (the message names it).
    ValueError
        If ``name`` is not a C identifier (or is a C keyword), or the network's
        input width is not fixed.
    FileNotFoundError, NotADirectoryError
        If ``directory`` does not exist or is not a directory.

    See Also
    --------
    to_onnx : for ONNX runtimes, optionally with the Laplacian.
    to_torch : a PyTorch module instead.
    Network.forward_backward : what the C function computes.

    Notes
    -----
    The header declares::

        #define NAME_D_IN  d_in
        #define NAME_D_OUT d_out
        #define NAME_STACK_BYTES ...  /* the bytes of its stack buffers */
        int name_forward_jacobian(long n, const double *x, double *y, double *J);

    which reads ``n`` points ``x`` (row-major, ``n x d_in``) and writes ``y``
    (``n x d_out``) and ``J`` (``n x d_out x d_in``, ``J[i][j][k] = d y[i][j] /
    d x[i][k]``); it returns 0, or -1 if ``n < 0`` or a pointer is ``NULL``.
    Arithmetic is in double, whatever the dtype of the weights (float32 weights
    convert exactly).

    The source includes only ``<math.h>``, ``<float.h>`` and ``<stddef.h>``,
    allocates nothing (its buffers are arrays on the stack, sized from the
    widths: a chain uses two pairs of ``w`` and ``w * d_in`` doubles for its
    widest ``w``), holds no state (it is thread-safe) and compiles with
    ``cc -std=c99 -Wall -Wextra -Werror``; link with ``-lm``.  The weights are
    ``static const double`` arrays printed with 17 significant digits, so they
    are exact.  Each point is carried forward with its Jacobian, from the
    identity, with the activations' accurate formulas (``tanh'`` from
    ``exp(-2|x|)``, ``sigmoid' = s(x) s(-x)``, ``expm1``, ``log1p``, ``erfc``).

    Examples
    --------
    >>> import shutil, tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from jacobian_np import Affine, Network, Tanh, to_c
    >>> rng = np.random.default_rng(0)
    >>> net = Network([Affine(rng.normal(size=(3, 8))), Tanh(), Affine(rng.normal(size=(8, 2)))])
    >>> folder = tempfile.mkdtemp()
    >>> header, source = to_c(net, folder, name="surrogate")
    >>> print(Path(header).read_text())  # doctest: +ELLIPSIS
    /* surrogate.h: ...
    #define SURROGATE_D_IN 3
    #define SURROGATE_D_OUT 2
    ...
    int surrogate_forward_jacobian(long n, const double *x, double *y, double *J);
    ...
    >>> shutil.rmtree(folder)
    """
    if not isinstance(name, str):
        raise TypeError(f"to_c: name must be a string; got {type(name).__name__}.")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) or name in _C_KEYWORDS:
        raise ValueError(
            f"to_c: name must be a C identifier (letters, digits and underscores, not starting with a digit, "
            f"not a C keyword); got {name!r}."
        )
    folder = _directory(directory)
    header, source = _export_c.generate(net, name)
    header_path = os.path.join(folder, f"{name}.h")
    source_path = os.path.join(folder, f"{name}.c")
    for path, text in ((header_path, header), (source_path, source)):
        with open(path, "w", encoding="ascii", newline="\n") as file:
            file.write(text)
    return header_path, source_path


def to_torch(net: Network) -> Any:
    """A ``torch.nn.Module`` computing the same function as a network.

    Parameters
    ----------
    net : Network
        A network of built-in layers (a single layer is accepted too) whose input
        width is fixed.

    Returns
    -------
    torch.nn.Module
        In evaluation mode, with the weights copied (``Affine(W, b)`` becomes
        ``Linear`` with ``weight = W.T``), float32 when every weight is float32
        and float64 otherwise.  ``Network`` becomes ``nn.Sequential``; the
        activations become their ``torch.nn`` modules (``Softplus`` with
        ``threshold=40``, beyond which it equals ``x`` to the last bit in float64;
        ``Sin`` a one-line module), ``LayerNorm`` ``nn.LayerNorm``; ``Residual``
        and ``Parallel`` small modules of ``jacobian_np._export_torch``.

    Raises
    ------
    ImportError
        If PyTorch is not installed.
    TypeError
        If ``net`` is not a network, or a layer is user-defined or a subclass of
        a built-in layer (the message names it and where it sits).
    ValueError
        If the network's input width is not fixed.

    See Also
    --------
    from_torch : the reverse, a network from a PyTorch module.
    to_onnx, to_c : for ONNX runtimes or plain C instead.
    save : jacobian_np's own file format.

    Examples
    --------
    >>> import numpy as np
    >>> import torch  # doctest: +SKIP
    >>> from jacobian_np import Affine, Network, Tanh, to_torch
    >>> rng = np.random.default_rng(0)
    >>> net = Network([Affine(rng.normal(size=(3, 8))), Tanh(), Affine(rng.normal(size=(8, 2)))])
    >>> module = to_torch(net)  # doctest: +SKIP
    >>> module  # doctest: +SKIP
    Sequential(
      (0): Linear(in_features=3, out_features=8, bias=False)
      (1): Tanh()
      (2): Linear(in_features=8, out_features=2, bias=False)
    )
    >>> X = rng.normal(size=(5, 3))
    >>> np.allclose(module(torch.from_numpy(X)).detach().numpy(), net.forward(X))  # doctest: +SKIP
    True
    """
    from .importers import _import_optional

    _import_optional("torch", "torch", "torch", "to_torch")
    builder = importlib.import_module("jacobian_np._export_torch")
    return builder.build(net)


def _output_path(path: Any, owner: str, what: str) -> str:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{owner}: {what} must be a str or path-like; got {type(path).__name__}.")
    target = os.fspath(path)
    folder = os.path.dirname(target) or "."
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{owner}: the directory of {target!r} does not exist.")
    return target


def _directory(directory: Any) -> str:
    if not isinstance(directory, (str, os.PathLike)):
        raise TypeError(f"to_c: directory must be a str or path-like; got {type(directory).__name__}.")
    folder = os.fspath(directory)
    if not os.path.exists(folder):
        raise FileNotFoundError(f"to_c: no such directory: {folder!r}.")
    if not os.path.isdir(folder):
        raise NotADirectoryError(f"to_c: {folder!r} is not a directory.")
    return folder

