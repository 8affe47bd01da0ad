"""
The Jacobian of a surrogate inside a C program
==============================================

A finite-element code calls its material routine at every integration point:
given the strain ``ε`` it needs the stress ``σ(ε)`` *and* the tangent stiffness
``dσ/dε``, without which its Newton iterations lose their quadratic
convergence. Here a small network learns a nonlinear elastic law from values
and tangents, :func:`jacobian_np.to_c` writes it as dependency-free C99, and a
C program uses the exported Jacobian in a Newton solve for the strain that
produces a given stress. The C results match
:meth:`Network.forward_backward` to rounding; with the exact tangent Newton
converges in a handful of steps, with the initial stiffness (what a code
without the Jacobian falls back on) it crawls.
"""

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from scipy.optimize import minimize

from jacobian_np import Affine, Network, Tanh, to_c

rng = np.random.default_rng(0)

# %%
# A nonlinear elastic law
# -----------------------
#
# Plane strain in Voigt notation, ``ε = (ε11, ε22, γ12)``, with the stored energy
# ``W = λ/2 tr(ε)² + μ I + k/4 I²``, ``I = ε11² + ε22² + γ12²/2``: linear
# elasticity that stiffens with the strain. ``σ = dW/dε`` and the tangent
# ``C = dσ/dε`` are known in closed form, so the surrogate can be trained on both.

LAM, MU, K = 1.0, 0.5, 10.0


def law(E):
    """Stress (n, 3) and tangent (n, 3, 3) of the strains E (n, 3)."""
    e11, e22, g12 = E.T
    invariant, trace = e11**2 + e22**2 + g12**2 / 2, e11 + e22
    S = np.stack([LAM * trace + 2 * MU * e11 + K * invariant * e11,
                  LAM * trace + 2 * MU * e22 + K * invariant * e22,
                  MU * g12 + K * invariant * g12 / 2], axis=1)
    dI = np.stack([2 * e11, 2 * e22, g12], axis=1)                 # dI / dε
    C = np.zeros((len(E), 3, 3))
    C[:, :2, :2] = LAM
    C[:, [0, 1, 2], [0, 1, 2]] += [2 * MU, 2 * MU, MU]
    C += K * invariant[:, None, None] * np.diag([1.0, 1.0, 0.5])
    C += K * np.stack([e11, e22, g12 / 2], axis=1)[:, :, None] * dI[:, None, :]
    return S, C


E_train = rng.uniform(-0.2, 0.2, size=(200, 3))
S_train, C_train = law(E_train)

# %%
# Training on values and tangents
# -------------------------------
#
# A 3 -> 16 -> 16 -> 3 tanh network; the loss is the mean squared error of the
# stress plus that of the tangent (a Sobolev loss), whose weight gradient comes
# from :meth:`Network.jacobian_and_pullback`. Fitting the tangent too makes the
# surrogate's derivative, which the C code will use, as good as its value.

net = Network([Affine(rng.normal(size=(3, 16)) * 0.5, np.zeros(16)), Tanh(),
               Affine(rng.normal(size=(16, 16)) * 0.3, np.zeros(16)), Tanh(),
               Affine(rng.normal(size=(16, 3)) * 0.3, np.zeros(3))])


def objective(theta):
    net.set_flat_params(theta)
    S = net.forward(E_train)
    J, pullback = net.jacobian_and_pullback(E_train)
    n = len(E_train)
    loss = np.sum((S - S_train) ** 2) / n + np.sum((J - C_train) ** 2) / n
    value_grads = net.param_grad(E_train, 2 * (S - S_train) / n)
    tangent_grads = pullback(2 * (J - C_train) / n)
    return loss, np.concatenate([(a + b).ravel() for a, b in zip(value_grads, tangent_grads)])


result = minimize(objective, net.get_flat_params(), jac=True, method="L-BFGS-B", options={"maxiter": 400})
net.set_flat_params(result.x)
E_test = rng.uniform(-0.2, 0.2, size=(1000, 3))
S_test, C_test = law(E_test)
S_net, C_net = net.forward_backward(E_test)
print(f"trained {result.x.size} weights in {result.nit} L-BFGS-B iterations, loss {result.fun:.2e}")
print(f"test: max |stress error| {np.abs(S_net - S_test).max():.1e}, "
      f"max |tangent error| {np.abs(C_net - C_test).max():.1e} (stresses up to {np.abs(S_test).max():.2f})")

# %%
# Export to C
# -----------
#
# ``to_c`` writes ``material.h`` and ``material.c`` into a directory (a
# temporary one here). The header declares the widths and one function, which
# fills the stress and the tangent for ``n`` strain states:

folder = tempfile.mkdtemp(prefix="jacobian_np_material_")
header, source = to_c(net, folder, name="material")
print("".join(line for line in Path(header).read_text().splitlines(keepends=True)
              if "_D_" in line or "forward_jacobian(" in line))

# %%
# A C program: Newton's method for a prescribed stress
# -----------------------------------------------------
#
# The program solves ``σ(ε) = σ*`` for the strain, twice: with the exported
# tangent (Newton's method) and with the initial stiffness ``C(0)`` kept fixed
# (what a code without the derivative would do). It prints the residual norm of
# each iteration, then the strain it found and the surrogate's stress and
# tangent there, with 17 digits.

PROGRAM = r"""
#include <math.h>
#include <stdio.h>
#include "material.h"

/* solve the 3 x 3 system A d = r by Gaussian elimination with partial pivoting */
static void solve3(double A[3][3], double r[3], double d[3])
{
    int i, j, k;
    for (k = 0; k < 3; ++k) {
        int p = k;
        for (i = k + 1; i < 3; ++i) if (fabs(A[i][k]) > fabs(A[p][k])) p = i;
        for (j = 0; j < 3; ++j) { double t = A[k][j]; A[k][j] = A[p][j]; A[p][j] = t; }
        { double t = r[k]; r[k] = r[p]; r[p] = t; }
        for (i = k + 1; i < 3; ++i) {
            double f = A[i][k] / A[k][k];
            for (j = k; j < 3; ++j) A[i][j] -= f * A[k][j];
            r[i] -= f * r[k];
        }
    }
    for (i = 2; i >= 0; --i) {
        d[i] = r[i];
        for (j = i + 1; j < 3; ++j) d[i] -= A[i][j] * d[j];
        d[i] /= A[i][i];
    }
}

static void newton(const char *label, int exact_tangent, const double target[3], double e[3])
{
    double s[3], C[3][3], C0[3][3], r[3], d[3], zero[3] = {0.0, 0.0, 0.0};
    int it, i, j;
    material_forward_jacobian(1, zero, s, &C0[0][0]);
    for (i = 0; i < 3; ++i) e[i] = 0.0;
    for (it = 0; it < 40; ++it) {
        double norm = 0.0;
        material_forward_jacobian(1, e, s, &C[0][0]);
        for (i = 0; i < 3; ++i) { r[i] = target[i] - s[i]; norm += r[i] * r[i]; }
        printf("%s %d %.3e\n", label, it, sqrt(norm));
        if (sqrt(norm) < 1e-13) break;
        if (!exact_tangent) for (i = 0; i < 3; ++i) for (j = 0; j < 3; ++j) C[i][j] = C0[i][j];
        solve3(C, r, d);
        for (i = 0; i < 3; ++i) e[i] += d[i];
    }
}

int main(void)
{
    const double target[MATERIAL_D_OUT] = {0.25, -0.05, 0.08};
    double e[MATERIAL_D_IN], s[MATERIAL_D_OUT], J[MATERIAL_D_OUT][MATERIAL_D_IN];
    int i, j;
    newton("fixed", 0, target, e);
    newton("newton", 1, target, e);
    material_forward_jacobian(1, e, s, &J[0][0]);
    printf("strain");
    for (i = 0; i < 3; ++i) printf(" %.17g", e[i]);
    printf("\nstress");
    for (i = 0; i < 3; ++i) printf(" %.17g", s[i]);
    printf("\ntangent");
    for (i = 0; i < 3; ++i) for (j = 0; j < 3; ++j) printf(" %.17g", J[i][j]);
    printf("\n");
    return 0;
}
"""

compiler = shutil.which("cc")
if compiler is not None:
    program, executable = os.path.join(folder, "main.c"), os.path.join(folder, "newton")
    Path(program).write_text(PROGRAM)
    subprocess.run([compiler, "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-o", executable,
                    program, source, "-lm"], check=True)
    output = subprocess.run([executable], capture_output=True, text=True, check=True).stdout
    lines = [line.split() for line in output.splitlines()]
    history = {label: [float(r) for tag, _, r in (x for x in lines if len(x) == 3) if tag == label]
               for label in ("newton", "fixed")}
    rows = {line[0]: np.array([float(v) for v in line[1:]]) for line in lines if len(line) != 3}
    strain, stress_c, tangent_c = rows["strain"], rows["stress"], rows["tangent"].reshape(3, 3)
else:  # no C compiler here: the same iterations in Python, with forward_backward
    print("no C compiler (cc) found: running the Newton iterations in Python instead")
    target, history = np.array([0.25, -0.05, 0.08]), {}
    C0 = net.forward_backward(np.zeros(3))[1]
    for label in ("fixed", "newton"):
        strain, history[label] = np.zeros(3), []
        for _ in range(40):
            s, C = net.forward_backward(strain)
            history[label].append(np.linalg.norm(target - s))
            if history[label][-1] < 1e-13:
                break
            strain = strain + np.linalg.solve(C if label == "newton" else C0, target - s)
    stress_c, tangent_c = net.forward_backward(strain)
shutil.rmtree(folder)

stress_py, tangent_py = net.forward_backward(strain)
print(f"Newton with the exported tangent: {len(history['newton']) - 1} iterations; "
      f"with the initial stiffness: {len(history['fixed']) - 1}")
print("strain found:", np.array2string(strain, precision=5))
print(f"C vs forward_backward at that strain: stress differs by {np.abs(stress_c - stress_py).max():.1e}, "
      f"tangent by {np.abs(tangent_c - tangent_py).max() / np.abs(tangent_py).max():.1e} (relative)")
print(f"surrogate vs the true law there: tangent off by "
      f"{np.abs(tangent_py - law(strain[None])[1][0]).max():.1e}")

# %%
# The law, the surrogate and the two iterations
# ---------------------------------------------
#
# Left: uniaxial strain, ``ε = (ε11, 0, 0)``, the stress ``σ11`` and the tangent
# ``dσ11/dε11`` of the law and of the surrogate. Right: the residual norm of each
# iteration in the C program. With the exported Jacobian the error squares from
# one iteration to the next; with the fixed initial stiffness it shrinks by a
# constant factor.

e11 = np.linspace(-0.2, 0.2, 201)
E_line = np.stack([e11, 0 * e11, 0 * e11], axis=1)
S_law, C_law = law(E_line)
S_sur, C_sur = net.forward_backward(E_line)
fig, (ax_law, ax_newton) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
ax_law.plot(e11, S_law[:, 0], "k-", lw=3, alpha=0.3, label="σ11, law")
ax_law.plot(e11, S_sur[:, 0], "C0--", label="σ11, surrogate")
ax_law.plot(e11, C_law[:, 0, 0] / 10, "k-", lw=3, alpha=0.15, label="dσ11/dε11 / 10, law")
ax_law.plot(e11, C_sur[:, 0, 0] / 10, "C1--", label="dσ11/dε11 / 10, surrogate")
ax_law.set_xlabel("ε11 (ε22 = γ12 = 0)")
ax_law.legend(fontsize=8)
ax_law.set_title("the law and its surrogate")
ax_newton.semilogy(history["newton"], "o-", label="exported tangent (Newton)")
ax_newton.semilogy(history["fixed"], "s-", ms=3, label="initial stiffness kept")
ax_newton.set_xlabel("iteration")
ax_newton.set_ylabel("|σ* - σ(ε)|")
ax_newton.legend()
ax_newton.set_title("solving σ(ε) = σ* in C")
plt.show()
