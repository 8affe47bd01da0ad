"""
A KdV residual with u_xxx
=========================

The Korteweg-de Vries equation ``u_t + 6 u u_x + u_xxx = 0`` needs a third
derivative in space. Its two-soliton solution has Hirota's form
``u = 2 (log F)_xx`` with ``F = 1 + e^th1 + e^th2 + A e^(th1 + th2)``,
``th_i = k_i x - k_i**3 t + c_i`` and ``A = ((k1 - k2) / (k1 + k2))**2``. Since
``log F`` is the log-sum-exp of four affine functions of ``(x, t)``, it is
exactly the network ``Affine -> LogSoftmax -> Affine``; ``u`` and every term of
the residual are derivatives of that network, up to the fifth order in ``x``.
:meth:`Network.taylor` computes them, and the residual of the exact solution
comes out as rounding noise. A mixed derivative ``d^3/dx^2 dt`` comes from third
derivatives along ``e_x + e_t``, ``e_x - e_t`` and ``e_t`` (polarisation).
"""

import matplotlib.pyplot as plt
import numpy as np

from jacobian_np import Affine, LogSoftmax, Network

# %%
# ``log F`` as a network
# ----------------------
#
# ``z = (0, th1, th2, th1 + th2 + log A)`` is affine in ``(x, t)``; LogSoftmax's
# first output is ``z_0 - logsumexp(z) = -log F``, and the last layer flips its sign.

k1, k2, c1, c2 = 1.0, 1.6, 0.0, -3.0
A = ((k1 - k2) / (k1 + k2)) ** 2
W = np.array([[0, k1, k2, k1 + k2], [0, -(k1**3), -(k2**3), -(k1**3 + k2**3)]])
log_F = Network([Affine(W, [0, c1, c2, c1 + c2 + np.log(A)]), LogSoftmax(), Affine([[-1.0], [0.0], [0.0], [0.0]])])

# %%
# The residual ``u_t + 6 u u_x + u_xxx``
# --------------------------------------
#
# With ``phi = log F``: ``u = 2 phi_xx``, ``u_x = 2 phi_xxx``, ``u_xxx = 2 phi_xxxxx``
# (one call of order 5 along ``e_x``) and ``u_t = 2 phi_xxt``, where
# ``D^3 phi[(e_x +- e_t)^3] = phi_xxx +- 3 phi_xxt + 3 phi_xtt +- phi_ttt``.

xs, ts = np.linspace(-12, 12, 241), np.linspace(-3, 3, 61)
X = np.array([(a, b) for b in ts for a in xs])
along_x = log_F.taylor(X, [1.0, 0.0], order=5)
plus, minus, along_t = (log_F.taylor(X, v, order=3)[3] for v in ([1.0, 1.0], [1.0, -1.0], [0.0, 1.0]))
u, u_x, u_xxx = 2 * along_x[2], 2 * along_x[3], 2 * along_x[5]
u_t = 2 * (plus - minus - 2 * along_t) / 6
residual = u_t + 6 * u * u_x + u_xxx
scale = np.max(np.abs(u_t) + np.abs(6 * u * u_x) + np.abs(u_xxx))
print(f"max |u_t + 6 u u_x + u_xxx| = {np.abs(residual).max():.1e}, against terms up to {scale:.1f}")
assert np.abs(residual).max() < 1e-10 * scale

# %%
# ``u_xxx`` against differences of the exact ``u_xx``
# ---------------------------------------------------

h = 1e-4
u_xx = lambda points: 2 * log_F.taylor(points, [1.0, 0.0], order=4)[4]  # noqa: E731
difference = (u_xx(X + [h, 0.0]) - u_xx(X - [h, 0.0])) / (2 * h)
print(f"max |u_xxx - central difference of u_xx| = {np.abs(u_xxx - difference).max():.1e} (max |u_xxx| = {np.abs(u_xxx).max():.1f})")

# %%
# The two solitons, and the terms of the residual at ``t = 0``
# ------------------------------------------------------------

fig, axes = plt.subplots(1, 2, figsize=(13, 4), layout="constrained")
image = axes[0].imshow(u.reshape(len(ts), len(xs)), origin="lower", aspect="auto", extent=(xs[0], xs[-1], ts[0], ts[-1]))
fig.colorbar(image, ax=axes[0])
axes[0].set_xlabel("x")
axes[0].set_ylabel("t")
axes[0].set_title("u = 2 (log F)_xx: the taller soliton overtakes the other")
row = slice(len(xs) * (len(ts) // 2), len(xs) * (len(ts) // 2 + 1))
for term, name in ((u_t, "u_t"), (6 * u * u_x, "6 u u_x"), (u_xxx, "u_xxx"), (residual, "residual")):
    axes[1].plot(xs, term[row, 0], label=name)
axes[1].set_xlabel("x")
axes[1].set_title("the terms at t = 0")
axes[1].legend()
plt.show()
