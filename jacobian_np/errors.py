"""Warnings and errors specific to jacobian_np."""

from __future__ import annotations


class ZeroCurvatureWarning(UserWarning):
    """Second derivatives of a network whose layers are all piecewise linear.

    ReLU, LeakyReLU, Identity and Affine layers are linear on pieces of the input
    space, so the Hessian and Laplacian of a network made only of them are zero
    almost everywhere (except on the kinks, where they are undefined).  Training a
    physics-informed network through such second derivatives fails silently.
    :meth:`Network.hessian` and :meth:`Network.laplacian` warn once per call.

    See Also
    --------
    Network.hessian, Network.laplacian : the methods that warn.
    Tanh, Softplus, GELU, SiLU : smooth activations, with nonzero curvature.

    Examples
    --------
    >>> import warnings
    >>> import numpy as np
    >>> from jacobian_np import Affine, Network, ReLU, ZeroCurvatureWarning
    >>> net = Network([Affine([[1.0, -1.0]]), ReLU(), Affine([[1.0], [1.0]])])
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     H = net.hessian(np.array([0.5]))
    >>> [w.category.__name__ for w in caught], float(np.abs(H).max())
    (['ZeroCurvatureWarning'], 0.0)
    """


class ModelFileError(ValueError):
    """A model file that cannot be loaded: truncated, not a model, or inconsistent.

    Raised by :func:`jacobian_np.load` for every problem with the file's contents
    (a missing file is ``FileNotFoundError``).  A subclass of ``ValueError``.

    See Also
    --------
    load : raises it.
    save : writes the files that ``load`` accepts.

    Examples
    --------
    >>> import io
    >>> from jacobian_np import ModelFileError, load
    >>> try:
    ...     load(io.BytesIO(b"not a zip file"))
    ... except ModelFileError as error:
    ...     print(error)
    not a jacobian_np model file (.npz): it is not a zip archive
    """
