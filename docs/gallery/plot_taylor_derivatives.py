"""
Derivatives to order four in one call
=====================================

A physics-informed network for a beam or a plate needs ``u_xxxx``; the KdV
equation needs ``u_xxx``. Nesting first derivatives four times costs a pass per
level and per input. :meth:`Network.taylor` propagates truncated Taylor series
instead: one forward pass carries, for every layer, the first four Taylor
coefficients of its output along the line ``x + t v``, and returns
``u, u_x, u_xx, u_xxx, u_xxxx`` together. Here for the 1 -> 50 -> 50 -> 50 -> 501
tanh network of the benchmarks (501 outputs, 256 points), checked order by order
against central differences of the exact order below.
"""

import matplotlib.pyplot as plt
import numpy as np

from jacobian_np import Affine, Network, Tanh

rng = np.random.default_rng(0)

# %%
# The network and the call
# ------------------------
#
# ``taylor(x, v, order)`` returns ``T`` of shape ``(order + 1, n, d_out)`` with
# ``T[k] = d^k/dt^k u(x + t v)`` at ``t = 0``; with one input and ``v = [1]``,
# ``T[k]`` is the ``k``-th derivative ``d^k u / dx^k``.

widths = [1, 50, 50, 50, 501]
layers = []
for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
    layers.append(Affine(rng.normal(0, 1 / np.sqrt(a), (a, b)), rng.normal(0, 0.1, b)))
    if i < len(widths) - 2:
        layers.append(Tanh())
pinn = Network(layers)

x = np.linspace(-3, 3, 256)[:, None]
T = pinn.taylor(x, [1.0], order=4)
print("T:", T.shape, "(order + 1, n, d_out)")
u, u_x, u_xx, u_xxx, u_xxxx = T

# %%
# Each order against differences of the order below
# --------------------------------------------------
#
# ``T[k](x) = (T[k-1](x + h) - T[k-1](x - h)) / (2 h) + O(h**2)``: the exact
# lower orders, differenced once. With ``h = 1e-4`` the truncation error is of
# order ``1e-8`` times the next derivative and the rounding error of order
# ``1e-12 / h``, so about eight digits should agree.

h = 1e-4
for k in range(1, 5):
    upper = pinn.taylor(x + h, [1.0], order=k - 1)[k - 1]
    lower = pinn.taylor(x - h, [1.0], order=k - 1)[k - 1]
    difference = (upper - lower) / (2 * h)
    error = np.abs(T[k] - difference).max() / np.abs(T[k]).max()
    print(f"order {k}: max |T[{k}] - central difference of T[{k - 1}]| / max |T[{k}]| = {error:.1e}")
    assert error < 1e-6

# %%
# The derivatives of three of the 501 outputs
# -------------------------------------------

fig, axes = plt.subplots(1, 5, figsize=(15, 3.2), layout="constrained", sharex=True)
names = ["u", "u_x", "u_xx", "u_xxx", "u_xxxx"]
for k, ax in enumerate(axes):
    for j in (0, 7, 300):
        ax.plot(x[:, 0], T[k][:, j], lw=1.2)
    ax.set_title(names[k])
    ax.set_xlabel("x")
plt.show()
