"""
Derivatives for a physics-informed network
==========================================

A physics-informed neural network (PINN) for a one-dimensional problem needs
the network's output ``u(x)`` and its derivatives ``u_x`` and ``u_xx`` at a
batch of collocation points, to form a residual such as ``u_xx + u`` for the
equation ``u'' = -u``. Here they come from :meth:`Network.forward_backward`
and :meth:`Network.laplacian`, exactly and for the whole batch at once, and are
compared with finite differences. Then the same with ReLU activations: its
second derivative is identically zero, and ``jacobian_np`` says so with a
:class:`~jacobian_np.ZeroCurvatureWarning`.
"""

import warnings

import matplotlib.pyplot as plt
import numpy as np

from jacobian_np import Affine, Network, ReLU, Tanh, ZeroCurvatureWarning

rng = np.random.default_rng(0)

# %%
# A 1 -> 32 -> 32 -> 1 tanh network
# ---------------------------------
#
# Untrained, with random weights: the derivatives do not care.

pinn = Network([
    Affine(rng.normal(size=(1, 32)), rng.normal(size=32)), Tanh(),
    Affine(rng.normal(size=(32, 32)) / 6, rng.normal(size=32)), Tanh(),
    Affine(rng.normal(size=(32, 1)) / 6),
])
x = np.linspace(-2, 2, 401)[:, None]          # 401 collocation points, d_in = 1

# %%
# ``u``, ``u_x`` and ``u_xx``
# ---------------------------
#
# ``forward_backward`` gives ``u`` (401, 1) and the Jacobian (401, 1, 1);
# ``laplacian`` the sum of the second derivatives over the inputs, which for
# one input is ``u_xx`` (401, 1). It runs forward over forward mode and never
# forms a Hessian.

u, J = pinn.forward_backward(x)
u_x = J[:, :, 0]
u_xx = pinn.laplacian(x)
print("u:", u.shape, " u_x:", u_x.shape, " u_xx:", u_xx.shape)
print(f"residual of u'' = -u: mean |u_xx + u| = {np.abs(u_xx + u).mean():.3f} (untrained)")

# %%
# Comparison with finite differences
# ----------------------------------
#
# Central differences of ``u`` with step ``h``: ``(u(x+h) - 2u(x) + u(x-h)) / h²``
# has a truncation error of order ``h²`` and a rounding error of order
# ``eps |u| / h²``; with ``h = 1e-4`` both are of order ``1e-8``, so the finite
# differences can confirm six or seven digits of the exact ``u_xx``.

h = 1e-4
u_plus, u_minus = pinn.forward(x + h), pinn.forward(x - h)
u_x_fd = (u_plus - u_minus) / (2 * h)
u_xx_fd = (u_plus - 2 * u + u_minus) / h**2
print(f"max |u_x  - FD| = {np.abs(u_x - u_x_fd).max():.1e}   (max |u_x|  = {np.abs(u_x).max():.2f})")
print(f"max |u_xx - FD| = {np.abs(u_xx - u_xx_fd).max():.1e}   (max |u_xx| = {np.abs(u_xx).max():.2f})")

fig, axes = plt.subplots(1, 3, figsize=(12, 3.6), layout="constrained", sharex=True)
for ax, value, fd, name in zip(axes, (u, u_x, u_xx), (None, u_x_fd, u_xx_fd), ("u", "u_x", "u_xx")):
    ax.plot(x[:, 0], value[:, 0], label="jacobian_np")
    if fd is not None:
        ax.plot(x[::20, 0], fd[::20, 0], "o", ms=4, mfc="none", label="finite differences")
        ax.legend()
    ax.set_title(name)
    ax.set_xlabel("x")
plt.show()

# %%
# With ReLU, ``u_xx`` is zero
# ---------------------------
#
# A network of affine layers and ReLUs is piecewise linear, so its second
# derivative is zero wherever it exists. A PINN loss on ``u_xx`` then has zero
# gradient and training fails silently. ``hessian`` and ``laplacian`` emit a
# ``ZeroCurvatureWarning`` (a ``UserWarning``) for such networks; here it is
# recorded with ``warnings.catch_warnings(record=True)`` and printed.

relu_net = Network([
    Affine(rng.normal(size=(1, 32)), rng.normal(size=32)), ReLU(),
    Affine(rng.normal(size=(32, 32)) / 6, rng.normal(size=32)), ReLU(),
    Affine(rng.normal(size=(32, 1)) / 6),
])
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    relu_u_xx = relu_net.laplacian(x)
relu_u, relu_J = relu_net.forward_backward(x)
print(f"ReLU network: max |u_xx| = {np.abs(relu_u_xx).max()}")
for warning in caught:
    print(f"{warning.category.__name__}: {warning.message}")
assert any(issubclass(w.category, ZeroCurvatureWarning) for w in caught)

# %%
# ``u`` is made of straight pieces, ``u_x`` is a step function and the exact
# ``u_xx`` is zero. Finite differences show only rounding noise, of order
# ``1e-8``: no grid point lies within ``h`` of a kink (there they would show a
# spike, the Dirac delta that a loss on ``u_xx`` can never see).

relu_u_xx_fd = (relu_net.forward(x + h) - 2 * relu_u + relu_net.forward(x - h)) / h**2
fig, axes = plt.subplots(1, 3, figsize=(12, 3.6), layout="constrained", sharex=True)
axes[0].plot(x[:, 0], relu_u[:, 0])
axes[0].set_title("u (ReLU)")
axes[1].plot(x[:, 0], relu_J[:, 0, 0])
axes[1].set_title("u_x (ReLU)")
axes[2].plot(x[:, 0], relu_u_xx_fd[:, 0], lw=0.8, color="tab:orange", label="finite differences")
axes[2].plot(x[:, 0], relu_u_xx[:, 0], lw=2, color="tab:blue", label="laplacian: exactly 0")
axes[2].set_title("u_xx (ReLU)")
axes[2].legend(loc="lower right")
for ax in axes:
    ax.set_xlabel("x")
plt.show()
