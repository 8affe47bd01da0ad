"""
A hand-written sigmoid network and its derivatives
==================================================

A small 2 -> 2 -> 2 -> 1 sigmoid network with explicit weights, first written
by hand in NumPy with the usual hand-written backpropagation, then in
``jacobian_np``. The hand-written derivative code has three classic problems:
it returns a gradient of shape ``(2,)`` that only works for one point, a
transposed weight matrix in a square layer gives wrong numbers without any
error, and the textbook ``s * (1 - s)`` underflows to zero far in the tails.
``jacobian_np`` gives the Jacobian ``(1, 2)`` and the Hessian ``(1, 2, 2)``,
checked against central differences.
"""

import matplotlib.pyplot as plt
import numpy as np
from scipy.special import expit

from jacobian_np import Affine, Network, Sigmoid, check_network, numerical_jacobian

# %%
# The weights
# -----------
#
# ``W`` of shape ``(d_in, d_out)``, so that each layer computes ``a @ W + b``.

W1 = np.array([[1.5, -2.0], [0.8, 1.2]])
b1 = np.array([0.1, -0.3])
W2 = np.array([[2.0, -1.0], [-1.5, 2.5]])
b2 = np.array([0.2, 0.1])
W3 = np.array([[3.0], [-2.0]])
b3 = np.array([0.5])

# %%
# Written by hand
# ---------------
#
# The forward pass, and the backpropagation found in many tutorials: a "delta"
# per layer, using ``s'(z) = s (1 - s)``.


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def forward(x):
    a1 = sigmoid(x @ W1 + b1)
    a2 = sigmoid(a1 @ W2 + b2)
    return sigmoid(a2 @ W3 + b3)


def gradient_by_hand(x):
    a1 = sigmoid(x @ W1 + b1)
    a2 = sigmoid(a1 @ W2 + b2)
    a3 = sigmoid(a2 @ W3 + b3)
    d3 = a3 * (1 - a3)                  # (1,)
    d2 = (W3 @ d3) * a2 * (1 - a2)      # (2,)
    d1 = (W2 @ d2) * a1 * (1 - a1)      # (2,)
    return W1 @ d1                      # (2,)


x0 = np.array([0.5, -1.0])
print("y(x0) =", forward(x0), " hand-written gradient:", gradient_by_hand(x0),
      "shape", gradient_by_hand(x0).shape)

# %%
# **Problem 1: the shape.** The result has shape ``(2,)``: a gradient, not the
# ``(d_out, d_in) = (1, 2)`` Jacobian, and the code handles one point only.
# Given a batch of shape ``(n, 2)``, ``W3 @ d3`` multiplies ``(2, 1)`` by
# ``(n, 1)`` and fails:

batch = np.array([[0.5, -1.0], [1.0, 2.0], [-2.0, 0.5]])
try:
    gradient_by_hand(batch)
except ValueError as error:
    print("batch of 3 points:", type(error).__name__, "-", str(error).split(",")[0])

# %%
# **Problem 2: a transpose in a square layer.** Written with the other
# convention in mind (``delta @ W`` instead of ``W @ delta``), the middle layer
# is applied transposed. Its weights are 2 x 2, so nothing complains, but the
# numbers are wrong, as central differences show:


def gradient_transposed(x):
    a1 = sigmoid(x @ W1 + b1)
    a2 = sigmoid(a1 @ W2 + b2)
    a3 = sigmoid(a2 @ W3 + b3)
    d3 = a3 * (1 - a3)
    d2 = (W3 @ d3) * a2 * (1 - a2)
    d1 = (d2 @ W2) * a1 * (1 - a1)      # should be W2 @ d2
    return d1 @ W1                      # should be W1 @ d1


fd = numerical_jacobian(forward, x0)    # (1, 2)
print("central differences:", fd[0])
print("transposed version: ", gradient_transposed(x0), "<- no error, wrong values")

# %%
# **Problem 3: underflow.** ``sigmoid(40) = 1 - 4.2e-18`` rounds to exactly
# 1.0, so ``s * (1 - s)`` returns 0 instead of ``s'(40) = 4.25e-18``.
# ``jacobian_np`` computes ``s'(z) = s(z) s(-z)``, which keeps full relative
# accuracy. The same underflow spoils the network's gradient far from the
# origin, as shown below.

s = sigmoid(40.0)
one_unit = Network([Affine([[1.0]]), Sigmoid()])
print(f"at z = 40: s * (1 - s) = {s * (1 - s)},  jacobian_np: {one_unit.jacobian([40.0])[0, 0]:.4e}")

# %%
# In ``jacobian_np``
# ------------------
#
# The same weights as layers. One point gives ``J`` of shape ``(1, 2)``, a
# batch ``(n, 1, 2)``; the Hessian of one point has shape ``(1, 2, 2)``.

net = Network([Affine(W1, b1), Sigmoid(), Affine(W2, b2), Sigmoid(), Affine(W3, b3), Sigmoid()])
y, J = net.forward_backward(x0)
H = net.hessian(x0)
print("J:", J.shape, J[0], "| agrees with the hand-written gradient:", np.allclose(J[0], gradient_by_hand(x0)))
print("H:", H.shape, "symmetric:", np.array_equal(H, np.swapaxes(H, -1, -2)))
print(np.round(H[0], 5))
print("batch:", net.jacobian(batch).shape, net.hessian(batch).shape)

# %%
# By hand, second derivatives usually come from differencing the hand-written
# gradient: an approximation of shape ``(2, 2)``, whose accuracy depends on the
# step (here about ten digits), and only where the hand-written gradient itself
# is right.

H_fd = numerical_jacobian(gradient_by_hand, x0)
print(f"FD of the hand-written gradient: {H_fd.shape}, max |H_fd - H[0]| = {np.abs(H_fd - H[0]).max():.1e}")

# %%
# Back to problem 3: far out, at ``x = (40, 0)``, the first hidden unit
# saturates. The hand-written gradient is wrong by eight orders of magnitude,
# with the wrong sign in one component. Central differences cannot confirm
# derivatives of order ``1e-28`` next to an output of order 1, but the
# hand-written code with the accurate ``s'(z) = s(z) s(-z)`` (using
# :func:`scipy.special.expit`) can.

far = np.array([40.0, 0.0])
print(f"at x = (40, 0): hand-written {gradient_by_hand(far)}, jacobian_np {net.jacobian(far)[0]}")


def gradient_accurate(x):
    z1 = x @ W1 + b1
    z2 = expit(z1) @ W2 + b2
    z3 = expit(z2) @ W3 + b3
    d3 = expit(z3) * expit(-z3)
    d2 = (W3 @ d3) * expit(z2) * expit(-z2)
    d1 = (W2 @ d2) * expit(z1) * expit(-z1)
    return W1 @ d1


print("accurate hand-written version at (40, 0):", gradient_accurate(far),
      "| agrees with jacobian_np:", np.allclose(gradient_accurate(far), net.jacobian(far)[0], rtol=1e-12, atol=0))

# %%
# ``check_network(..., second_order=True)`` compares the Jacobian (both modes)
# with central differences of the output, and the Hessian and Laplacian with
# central differences of the analytic Jacobian, at a few points:

result = check_network(net, batch, second_order=True)
print(result)

# %%
# The output and its gradient
# ---------------------------
#
# Left: the output over the input square, with the gradient ``J[:, 0, :]`` as
# arrows (pointing uphill, longer where the output changes faster). Right: the
# Laplacian, ``u_xx + u_yy``, the trace of the Hessian.

grid = np.linspace(-3, 3, 121)
G0, G1 = np.meshgrid(grid, grid)
points = np.column_stack([G0.ravel(), G1.ravel()])
output = net.forward(points)[:, 0].reshape(G0.shape)
laplacian = net.laplacian(points)[:, 0].reshape(G0.shape)
coarse = np.linspace(-2.75, 2.75, 12)
C0, C1 = np.meshgrid(coarse, coarse)
arrows = net.jacobian(np.column_stack([C0.ravel(), C1.ravel()]))[:, 0, :]

fig, (ax_y, ax_lap) = plt.subplots(1, 2, figsize=(10, 4.2), layout="constrained")
filled = ax_y.contourf(G0, G1, output, levels=20, cmap="viridis")
ax_y.quiver(C0.ravel(), C1.ravel(), arrows[:, 0], arrows[:, 1], color="black")
fig.colorbar(filled, ax=ax_y, label="y")
ax_y.set_title("output y(x) and its gradient")
limit = np.abs(laplacian).max()
filled = ax_lap.contourf(G0, G1, laplacian, levels=20, cmap="RdBu_r", vmin=-limit, vmax=limit)
fig.colorbar(filled, ax=ax_lap, label="Laplacian")
ax_lap.set_title("Laplacian (trace of the Hessian)")
for ax in (ax_y, ax_lap):
    ax.set_xlabel("x[0]")
    ax.set_ylabel("x[1]")
    ax.set_aspect("equal")
plt.show()
