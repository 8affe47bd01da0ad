"""
Jacobian of a softmax classifier
================================

A classifier with 500 inputs, one hidden layer of 100 ReLU units and 10 softmax
outputs. Its Jacobian at one input, of shape ``(10, 500)``, comes from a single
call; row ``j`` is the gradient of the probability of class ``j``, a saliency
map. We plot the saliency of the predicted class and check the Jacobian against
central differences with :func:`jacobian_np.check_network`.
"""

import matplotlib.pyplot as plt
import numpy as np

from jacobian_np import Affine, Network, ReLU, Softmax, check_network

rng = np.random.default_rng(0)

# %%
# The network
# -----------
#
# The weights are random here (He initialisation); in practice they come from
# training, for example imported with :func:`jacobian_np.from_sklearn`.
# ``Affine(W, b)`` takes ``W`` of shape ``(d_in, d_out)`` and computes
# ``x @ W + b``.

W1 = rng.normal(scale=np.sqrt(2 / 500), size=(500, 100))
W2 = rng.normal(scale=np.sqrt(1 / 100), size=(100, 10))
net = Network([Affine(W1, np.zeros(100)), ReLU(), Affine(W2, np.zeros(10)), Softmax()])
print(net)
print("multiply-adds per sample:", net.mode_costs(), "-> reverse mode")

# %%
# The Jacobian in one call
# ------------------------
#
# ``forward_backward`` returns the probabilities and the Jacobian from one
# forward and one backward pass; the backward pass carries all ten rows at
# once. The rows add up to zero, because the probabilities always sum to one.

x = rng.normal(size=500)
y, J = net.forward_backward(x)
top = int(np.argmax(y))
print("y:", y.shape, "J:", J.shape)
print(f"predicted class {top} with probability {y[top]:.3f}")
print(f"max |sum of the rows of J| = {np.abs(J.sum(axis=0)).max():.1e}")

# %%
# Saliency of the predicted class
# -------------------------------
#
# ``J[top, k]`` says how much the probability of the predicted class changes per
# unit change of input ``k``. Left: all 500 inputs; right: the 15 inputs with
# the largest effect. (For a batch ``X`` of shape ``(n, 500)`` the same call
# returns ``J`` of shape ``(n, 10, 500)``.)

saliency = J[top]
strongest = np.argsort(np.abs(saliency))[::-1][:15]
print("most influential inputs:", strongest[:5].tolist())

fig, (ax_all, ax_top) = plt.subplots(1, 2, figsize=(11, 3.8), layout="constrained",
                                     gridspec_kw={"width_ratios": [2, 1]})
colors = np.where(saliency > 0, "tab:red", "tab:blue")
ax_all.bar(np.arange(500), saliency, width=1.0, color=colors)
ax_all.set_xlabel("input k")
ax_all.set_ylabel(f"d p[{top}] / d x[k]")
ax_all.set_title(f"saliency of class {top}, all inputs")
ax_top.barh(np.arange(15), saliency[strongest][::-1], color=colors[strongest][::-1])
ax_top.set_yticks(np.arange(15), [f"x[{k}]" for k in strongest[::-1]])
ax_top.axvline(0, color="k", lw=0.8)
ax_top.set_title("15 largest |saliency|")
plt.show()

# %%
# Check against central differences
# ---------------------------------
#
# :func:`jacobian_np.check_network` compares both modes with central
# differences of ``net.forward`` (1,000 evaluations of the network for 500
# inputs). It is truthy only when they agree; printing it gives the verdict
# and the largest errors. For a ReLU network, a check could fail at an input
# that puts a hidden unit within one finite-difference step of its kink; the
# smallest distance here is far larger than the step (about ``6e-6``).

print(f"smallest |pre-activation| of a hidden unit: {np.abs(x @ W1).min():.1e}")
result = check_network(net, x)
print(result)
print("passed:", bool(result))
