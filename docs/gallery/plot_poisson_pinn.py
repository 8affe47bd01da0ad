"""
Training a PINN on the Poisson equation
=======================================

A physics-informed network ``u(x, y)`` for ``Δu = f`` on the unit square with
``u = 0`` on the boundary, where ``f = -2 pi**2 sin(pi x) sin(pi y)`` so that the
solution is ``u = sin(pi x) sin(pi y)``. The loss is the mean squared residual
``Δu - f`` at interior points plus the mean squared boundary values;
:meth:`Network.laplacian_and_pullback` gives the Laplacian and the gradient of
the residual term with respect to every weight (reverse mode over the collapsed
Taylor pass), :meth:`Network.param_grad` that of the boundary term, and
``scipy.optimize.minimize(method="L-BFGS-B")`` trains on them. Everything is
exact and in NumPy; no framework is involved.
"""

import time

import matplotlib.pyplot as plt
import numpy as np
import scipy.optimize

from jacobian_np import Affine, Network, Tanh

rng = np.random.default_rng(0)

# %%
# The network and the collocation points
# --------------------------------------
#
# A 2 -> 16 -> 16 -> 1 tanh network (Glorot-initialised), 144 interior points on
# a grid and 48 on the boundary.

sizes = [2, 16, 16, 1]
layers = []
for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
    layers.append(Affine(rng.normal(0, np.sqrt(2 / (a + b)), (a, b)), np.zeros(b)))
    if i < len(sizes) - 2:
        layers.append(Tanh())
pinn = Network(layers)

grid = (np.arange(12) + 0.5) / 12
inside = np.array([(a, b) for a in grid for b in grid])
t = np.linspace(0, 1, 13)[:-1]
boundary = np.concatenate([np.c_[t, 0 * t], np.c_[1 + 0 * t, t], np.c_[1 - t, 1 + 0 * t], np.c_[0 * t, 1 - t]])
f = -2 * np.pi**2 * np.sin(np.pi * inside[:, :1]) * np.sin(np.pi * inside[:, 1:])


def exact(points):
    return np.sin(np.pi * points[:, :1]) * np.sin(np.pi * points[:, 1:])


# %%
# The loss and its gradient
# -------------------------
#
# ``L, pullback = laplacian_and_pullback(inside)`` runs the forward pass once;
# ``pullback(grad_L)`` maps the loss's gradient with respect to the Laplacians,
# ``2 (Δu - f) / n``, to the gradient with respect to every weight. The boundary
# term is weighted by 10, which makes L-BFGS converge several times faster here.


def loss_and_gradient(theta):
    pinn.set_flat_params(theta)
    L, pullback = pinn.laplacian_and_pullback(inside)
    residual, edge = L - f, pinn.forward(boundary)
    loss = np.mean(residual**2) + 10 * np.mean(edge**2)
    grads = zip(pullback(2 * residual / len(residual)), pinn.param_grad(boundary, 20 * edge / len(edge)))
    return loss, np.concatenate([(a + b).ravel() for a, b in grads])


test = np.random.default_rng(1).uniform(size=(2000, 2))
history = []


def record(theta):
    pinn.set_flat_params(theta)
    history.append(np.linalg.norm(pinn.forward(test) - exact(test)) / np.linalg.norm(exact(test)))


start = time.perf_counter()
result = scipy.optimize.minimize(
    loss_and_gradient, pinn.get_flat_params(), jac=True, method="L-BFGS-B", callback=record,
    options={"maxiter": 600, "maxcor": 50, "ftol": 0, "gtol": 0},
)
pinn.set_flat_params(result.x)
error = history[-1]
print(f"{result.nit} L-BFGS-B iterations in {time.perf_counter() - start:.1f} s, final loss {result.fun:.2e}")
print(f"relative L2 error against sin(pi x) sin(pi y) at 2,000 random points: {error:.1e}")
assert error <= 1e-2

# %%
# The solution, its error, and the error during training
# ------------------------------------------------------

n = 101
xs = np.linspace(0, 1, n)
points = np.array([(a, b) for b in xs for a in xs])
u = pinn.forward(points).reshape(n, n)
fig, axes = plt.subplots(1, 3, figsize=(14, 4), layout="constrained")
image = axes[0].imshow(u, origin="lower", extent=(0, 1, 0, 1))
fig.colorbar(image, ax=axes[0])
axes[0].set_title("u (network)")
image = axes[1].imshow(u - exact(points).reshape(n, n), origin="lower", extent=(0, 1, 0, 1), cmap="RdBu")
fig.colorbar(image, ax=axes[1])
axes[1].set_title("u - sin(pi x) sin(pi y)")
axes[2].semilogy(history)
axes[2].set_xlabel("L-BFGS-B iteration")
axes[2].set_ylabel("relative L2 error")
axes[2].axhline(1e-2, color="grey", lw=0.8, ls="--")
plt.show()
