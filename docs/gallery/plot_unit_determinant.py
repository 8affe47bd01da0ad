"""
Training a map with unit Jacobian determinant
=============================================

A volume-preserving map has ``det J(x) = 1`` everywhere. Here a
2 -> 5 -> 5 -> 2 tanh network is trained towards that property at 256 points
with the loss ``mean((det J(x_i) - 1)**2)``, which depends on the network's
*Jacobian*, not only on its output. The weight gradient of such a loss comes
from :meth:`Network.jacobian_and_pullback` and :func:`jacobian_np.losses.det`;
:func:`scipy.optimize.minimize` does the rest (see ``docs/training.md``).
"""

import matplotlib.pyplot as plt
import numpy as np
from scipy.optimize import minimize

from jacobian_np import Affine, Network, Tanh, losses

rng = np.random.default_rng(0)

# %%
# The network and the training points
# ------------------------------------

net = Network([
    Affine(rng.normal(size=(2, 5)) * 0.5, np.zeros(5)), Tanh(),
    Affine(rng.normal(size=(5, 5)) * 0.5, np.zeros(5)), Tanh(),
    Affine(rng.normal(size=(5, 2)) * 0.5, np.zeros(2)),
])
X = rng.uniform(-1, 1, size=(256, 2))
theta0 = net.get_flat_params()
det_before = np.linalg.det(net.jacobian(X))
print(f"{theta0.size} parameters, {len(X)} training points")

# %%
# The objective and its gradient
# ------------------------------
#
# ``jacobian_and_pullback`` returns the per-sample Jacobians ``J`` (256, 2, 2)
# and a function mapping ``d loss / d J`` to the gradients of every weight.
# ``losses.det`` returns ``det J`` and its derivative with respect to ``J``
# (the cofactor matrix); the chain rule for the mean squared error gives
# ``d loss / d J``.


def objective(theta):
    net.set_flat_params(theta)
    J, pullback = net.jacobian_and_pullback(X)
    d, d_grad = losses.det(J)                         # per-sample det J and d det / dJ
    grad_J = (2 * (d - 1) / len(d))[:, None, None] * d_grad
    grads = pullback(grad_J)                          # d loss / d each parameter
    return np.mean((d - 1) ** 2), np.concatenate([g.ravel() for g in grads])


# %%
# Training with L-BFGS-B
# ----------------------
#
# ``jac=True`` tells SciPy that the objective returns the loss and its
# gradient together. The callback records the loss after every iteration.

history = [objective(theta0)[0]]


def record(theta):
    history.append(objective(theta)[0])


result = minimize(objective, theta0, jac=True, method="L-BFGS-B", callback=record,
                  options={"maxiter": 500})
net.set_flat_params(result.x)
det_after = np.linalg.det(net.jacobian(X))
print(f"L-BFGS-B: {result.nit} iterations, {result.nfev} evaluations, converged: {result.success}")
print(f"loss: {history[0]:.3e} -> {result.fun:.3e}")
print(f"det J before: [{det_before.min():.3f}, {det_before.max():.3f}]")
print(f"det J after:  [{det_after.min():.5f}, {det_after.max():.5f}]")

# %%
# The property holds between the training points too: at 1,000 fresh points
# of the same square the determinant stays close to one.

X_test = rng.uniform(-1, 1, size=(1000, 2))
det_test = np.linalg.det(net.jacobian(X_test))
print(f"held-out points: max |det J - 1| = {np.abs(det_test - 1).max():.2e}")

# %%
# Loss curve and determinants
# ---------------------------
#
# Note the horizontal scales: before training the map reverses orientation and
# shrinks areas 17 to 30 times; after training every determinant is within
# half a percent of one.

fig, (ax_loss, ax_before, ax_after) = plt.subplots(1, 3, figsize=(12, 3.6), layout="constrained")
ax_loss.semilogy(history)
ax_loss.set_xlabel("L-BFGS-B iteration")
ax_loss.set_ylabel("mean((det J - 1)²)")
ax_loss.set_title("training loss")
ax_before.hist(det_before, bins=30, color="tab:gray")
ax_before.set_title("det J before training")
ax_after.hist(det_after, bins=30, color="tab:blue")
ax_after.axvline(1.0, color="k", lw=0.8, ls="--")
ax_after.set_title("det J after training")
for ax in (ax_before, ax_after):
    ax.set_xlabel("det J(x) at the 256 training points")
    ax.set_ylabel("count")
plt.show()

# %%
# The trained map in pictures: a grid of the square and its image. Cells
# change shape but, with ``det J = 1``, keep their area.

fig, ax = plt.subplots(figsize=(5, 5), layout="constrained")
t = np.linspace(-1, 1, 11)
s = np.linspace(-1, 1, 101)
for c in t:
    for line in (np.column_stack([np.full_like(s, c), s]), np.column_stack([s, np.full_like(s, c)])):
        ax.plot(*line.T, color="0.8", lw=0.8)
        ax.plot(*net.forward(line).T, color="tab:blue", lw=0.8)
ax.set_aspect("equal")
ax.set_title("a grid (grey) and its image (blue)")
plt.show()
