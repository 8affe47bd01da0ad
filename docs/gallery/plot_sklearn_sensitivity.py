"""
Input sensitivity of a scikit-learn classifier
==============================================

How strongly does each measured feature move a trained classifier's predicted
probabilities? We fit a scikit-learn ``MLPClassifier`` behind a
``StandardScaler`` on the wine recognition data set (bundled with
scikit-learn, no download), import the whole pipeline with
:func:`jacobian_np.from_sklearn`, and compute per-sample Jacobians of
``predict_proba`` with respect to the **raw** features of the test set. The
heatmaps show why raw derivatives must be put on a common scale before they
are compared, and the text explains the preprocessing trap.
"""

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import LogNorm
from sklearn.datasets import load_wine
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from jacobian_np import from_sklearn, numerical_jacobian

# %%
# Fit a pipeline
# --------------
#
# 178 wines, 13 chemical measurements in very different units (``proline`` in
# mg/L ranges over hundreds, ``hue`` over tenths), three cultivars. The
# ``lbfgs`` solver converges on this small problem well within ``max_iter``;
# ``alpha=1`` regularises the network so that its probabilities vary smoothly.

data = load_wine()
names = list(data.feature_names)
X_train, X_test, y_train, y_test = train_test_split(
    data.data, data.target, test_size=0.3, random_state=0, stratify=data.target)
pipeline = make_pipeline(
    StandardScaler(),
    MLPClassifier(hidden_layer_sizes=(16,), activation="tanh", solver="lbfgs", alpha=1.0,
                  max_iter=5000, random_state=0),
).fit(X_train, y_train)
print(f"test accuracy: {pipeline.score(X_test, y_test):.3f} ({len(X_test)} wines)")

# %%
# Import and differentiate
# ------------------------
#
# ``from_sklearn`` folds the scaler exactly into the first layer, so the network
# takes raw features and reproduces ``predict_proba``. One call gives the
# Jacobians of the whole test set, shape ``(n_test, 3 classes, 13 features)``;
# one sample is checked against central differences of ``predict_proba``
# itself.

net = from_sklearn(pipeline)
print(net)
print("forward == predict_proba:", np.allclose(net.forward(X_test), pipeline.predict_proba(X_test)))
J = net.jacobian(X_test)
print("J:", J.shape)
x = X_test[0]
J_fd = numerical_jacobian(lambda x: pipeline.predict_proba(x[None])[0], x)
print("J[0] == central differences of predict_proba:", np.allclose(J[0], J_fd, rtol=1e-5, atol=1e-9))

# %%
# The preprocessing trap
# ----------------------
#
# The MLP inside the pipeline never sees the raw ``x``; it sees
# ``z = (x - mean_) / scale_``. Importing ``pipeline[-1]`` alone would give the
# Jacobian with respect to ``z``, which by the chain rule is
# ``J_raw * scale_`` (column ``k`` multiplied by ``scale_[k]``): for ``proline``
# a factor of about 300 from the derivative with respect to the measured
# quantity. Importing the whole pipeline, as above, avoids that mistake.
#
# The second half of the trap is comparing raw derivatives across features.
# ``J_raw[i, c, k]`` is a change of probability *per unit of feature k*: per
# mg/L of proline, per unit of hue. A small derivative for proline does not
# mean proline does not matter; its unit is just small compared with its spread.
# Multiplying each column by the feature's standard deviation gives the change
# of probability per standard deviation, comparable across features. (It
# equals the Jacobian with respect to ``z``: the same numbers as the mistaken
# import, but now you know what they mean and could choose another scale, such
# as each instrument's precision.)

scaler = pipeline[0]
std = X_train.std(axis=0)
J_scaled = from_sklearn(pipeline[-1]).jacobian(scaler.transform(X_test))
print("J wrt standardized inputs == J_raw * scale_:", np.allclose(J_scaled, J * scaler.scale_))
print("scale_ == training std:", np.allclose(scaler.scale_, std))
k = names.index("proline")
print(f"proline: std {std[k]:.0f} mg/L, so the two Jacobians differ {std[k]:.0f}-fold in that column")

raw = np.abs(J).mean(axis=0)                   # (3, 13): mean |dp_c / dx_k|, per raw unit
per_std = np.abs(J * std).mean(axis=0)         # (3, 13): per standard deviation
print("largest raw sensitivity:    ", names[int(np.argmax(raw.max(axis=0)))])
print("largest per-std sensitivity:", names[int(np.argmax(per_std.max(axis=0)))])
print(f"raw mean |J| spans a factor {raw.max() / raw.min():.0f}, per-std {per_std.max() / per_std.min():.0f}")

# %%
# Classes x features
# ------------------
#
# Top: mean ``|J|`` per raw unit, on a logarithmic scale; it spans about four
# orders of magnitude and mostly ranks the units. Bottom: mean ``|J|`` times the
# feature's standard deviation, the sensitivity that can be compared.

short = [name.replace("od280/od315_of_diluted_wines", "od280/od315") for name in names]
fig, (ax_raw, ax_std) = plt.subplots(2, 1, figsize=(9, 6.5), layout="constrained")
image = ax_raw.imshow(raw, aspect="auto", cmap="magma", norm=LogNorm())
fig.colorbar(image, ax=ax_raw, label="mean |dp/dx| per raw unit")
ax_raw.set_title("raw derivatives: not comparable across features")
image = ax_std.imshow(per_std, aspect="auto", cmap="magma")
fig.colorbar(image, ax=ax_std, label="mean |dp/dx| · std(x)")
ax_std.set_title("derivatives times feature std: change of probability per std")
for ax in (ax_raw, ax_std):
    ax.set_xticks(np.arange(len(short)), short, rotation=40, ha="right")
    ax.set_yticks(np.arange(3), list(data.target_names))
plt.show()

# %%
# Samples x features
# ------------------
#
# Per sample, the signed sensitivity of the probability of the class the model
# predicts, per standard deviation of each feature, with the test wines grouped
# by predicted class. Wines predicted with near certainty have small
# derivatives everywhere: the softmax is saturated there.

predicted = np.argmax(net.forward(X_test), axis=1)
order = np.argsort(predicted, kind="stable")
S = (J[np.arange(len(X_test)), predicted] * std)[order]   # (n_test, 13)
limit = np.abs(S).max()
fig, ax = plt.subplots(figsize=(9, 6), layout="constrained")
image = ax.imshow(S, aspect="auto", cmap="RdBu_r", vmin=-limit, vmax=limit)
fig.colorbar(image, ax=ax, label="d p[predicted] / dx · std(x)")
ax.set_xticks(np.arange(len(short)), short, rotation=40, ha="right")
counts = np.bincount(predicted, minlength=3)
for boundary in np.cumsum(counts)[:-1]:
    ax.axhline(boundary - 0.5, color="k", lw=0.8)
ax.set_yticks(np.cumsum(counts) - counts / 2 - 0.5, [f"predicted\n{name}" for name in data.target_names])
ax.set_title("sensitivity of the predicted class, per test wine")
plt.show()
