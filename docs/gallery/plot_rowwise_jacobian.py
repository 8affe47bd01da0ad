"""
Row-wise Jacobians of a batch
=============================

For a batch ``X`` of shape ``(n, d_in)`` you usually want one Jacobian per
sample, ``J[i, j, k] = d y[i, j] / d x[i, k]``, of shape ``(n, d_out, d_in)``.
This example shows what that array is, why calling ``y.backward(ones)`` in an
autograd framework does *not* give it (it gives the gradient of the *sum* of the
outputs), and why the "full" Jacobian of the batch, of shape
``(n, d_out, n, d_in)``, is mostly zeros. Everything is plain NumPy.
"""

import matplotlib.pyplot as plt
import numpy as np

from jacobian_np import Affine, Network, Softmax, Tanh, numerical_jacobian

rng = np.random.default_rng(0)

# %%
# A small network and its per-sample Jacobians
# --------------------------------------------
#
# A 3 -> 16 -> 2 tanh network, evaluated on a batch of ``n = 4`` points.
# ``forward_backward`` returns the outputs ``Y`` of shape ``(n, d_out)`` and the
# Jacobians ``J`` of shape ``(n, d_out, d_in)``: one ``(2, 3)`` matrix per sample.

net = Network([
    Affine(rng.normal(size=(3, 16)), rng.normal(size=16)), Tanh(),
    Affine(rng.normal(size=(16, 2)) / 4, rng.normal(size=2)),
])
n, d_in, d_out = 4, net.d_in, net.d_out
X = rng.normal(size=(n, d_in))
Y, J = net.forward_backward(X)
print("Y:", Y.shape, " J:", J.shape)

# %%
# ``J[i]`` is exactly the Jacobian of sample ``i`` evaluated on its own:
# the samples of a batch do not interact.

same = all(np.allclose(J[i], net.jacobian(X[i])) for i in range(n))
print("J[i] equals the single-point Jacobian for every i:", same)

# %%
# What ``y.backward(ones)`` computes
# ----------------------------------
#
# Reverse-mode autodiff computes vector-Jacobian products ``u^T J``. In PyTorch,
# ``Y.backward(torch.ones_like(Y))`` (the same as ``Y.sum().backward()``) uses
# ``u = ones`` and leaves in ``X.grad`` an array of shape ``(n, d_in)``:
#
# .. math:: \mathrm{grad}[i, k] = \sum_j 1 \cdot J[i, j, k],
#
# the gradient of the **sum of the outputs**. In NumPy that is ``ones @ J``.
# ``net.vjp`` computes the same product without forming ``J``, and central
# differences of ``sum(net(X))`` agree: all three are one ``(n, d_in)`` array,
# not the ``(n, d_out, d_in)`` Jacobian.

summed = np.ones(d_out) @ J                                  # (n, d_in)
_, vjp_ones = net.vjp(X, np.ones(d_out))                     # what backward(ones) returns
fd_of_sum = numerical_jacobian(lambda X: net.forward(X).sum(), X)
print("ones @ J:", summed.shape, "| vjp(ones) agrees:", np.allclose(vjp_ones, summed),
      "| FD of sum(y) agrees:", np.allclose(fd_of_sum, summed))
print("row 0 of sample 0:", np.round(J[0, 0], 4))
print("row 1 of sample 0:", np.round(J[0, 1], 4))
print("their sum        :", np.round(summed[0], 4), "<- the rows cannot be recovered from it")

# %%
# For a softmax classifier the outputs always sum to one, so the gradient of
# their sum is zero everywhere, while the Jacobian is not:

classifier = Network([Affine(rng.normal(size=(3, 5))), Tanh(), Affine(rng.normal(size=(5, 4))), Softmax()])
J_cls = classifier.jacobian(X)
print("softmax: max |ones @ J| =", f"{np.abs(np.ones(4) @ J_cls).max():.1e}",
      "| max |J| =", f"{np.abs(J_cls).max():.3f}")

# %%
# The cross-sample Jacobian is block diagonal
# -------------------------------------------
#
# A general-purpose tool differentiates the whole output ``Y`` (``n x d_out``)
# with respect to the whole input ``X`` (``n x d_in``), giving shape
# ``(n, d_out, n, d_in)`` (``jax.jacrev(f)(X)``,
# ``torch.autograd.functional.jacobian(f, X)``, or
# :func:`jacobian_np.numerical_jacobian` here). Output ``i`` depends on input
# ``i`` only, so every block ``[i, :, l, :]`` with ``i != l`` is zero and the
# diagonal blocks are the per-sample Jacobians: ``(n - 1) / n`` of the array
# is zeros, a waste that grows with the batch.

J_full = numerical_jacobian(net.forward, X)
print("cross-sample Jacobian:", J_full.shape)
diagonal_ok = all(np.allclose(J_full[i, :, i, :], J[i]) for i in range(n))
off_zero = all(np.all(J_full[i, :, l, :] == 0) for i in range(n) for l in range(n) if i != l)
print("diagonal blocks equal J[i]:", diagonal_ok, "| off-diagonal blocks exactly zero:", off_zero)
print(f"fraction of zeros: {np.mean(J_full == 0):.2f} (expected {(n - 1) / n:.2f})")

# %%
# The three arrays side by side: the cross-sample Jacobian as an
# ``(n d_out) x (n d_in)`` matrix, the per-sample Jacobians (its diagonal
# blocks, stacked), and the gradient of the sum that ``backward(ones)`` returns.

fig, axes = plt.subplots(1, 3, figsize=(11, 3.8), layout="constrained",
                         gridspec_kw={"width_ratios": [n * d_in, d_in, d_in]})
limit = np.abs(J_full).max()
style = {"cmap": "RdBu_r", "vmin": -limit, "vmax": limit}
image = axes[0].imshow(J_full.reshape(n * d_out, n * d_in), **style)
axes[0].set_title("cross-sample (n·d_out, n·d_in)")
axes[1].imshow(J.reshape(n * d_out, d_in), **style)
axes[1].set_title("per-sample J\n(n·d_out, d_in)")
axes[2].imshow(summed, **style)
axes[2].set_title("ones @ J\n(n, d_in)")
for ax in axes:
    ax.set_xticks([])
    ax.set_yticks([])
for i in range(1, n):
    axes[0].axhline(i * d_out - 0.5, color="0.6", lw=0.8)
    axes[0].axvline(i * d_in - 0.5, color="0.6", lw=0.8)
    axes[1].axhline(i * d_out - 0.5, color="0.6", lw=0.8)
fig.colorbar(image, ax=axes, shrink=0.8, label="derivative")
plt.show()
