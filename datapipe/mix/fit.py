"""The search's regression from mixture weights to target loss, its cross-validated rank
correlation, and the choice of the predicted best mixture (NumPy only, no I/O).

The model is RegMix's linear variant: ridge regression of the loss on the achieved group shares
(with an intercept; the shares sum to one, so the ridge penalty picks one solution). With 16
candidates and a handful of groups a richer model (RegMix's LightGBM) would have more
parameters than points. The fit is judged by leave-one-out: each candidate's loss is predicted
by a model fitted without it, and the Spearman correlation of those predictions with the
measured losses is the number to trust (ranking mixtures is what the search needs).

The choice follows RegMix: draw many mixtures from the same Dirichlet the candidates came
from, predict each, and average the best ``top`` fraction. Averaging keeps the answer inside
the region the candidates explored instead of jumping to a corner of the simplex where a linear
model is extrapolating.
"""
from __future__ import annotations

import numpy as np


def fit_ridge(X: np.ndarray, y: np.ndarray, alpha: float = 1e-3) -> np.ndarray:
    """Coefficients ``[intercept, w_1..w_G]`` of ridge regression (intercept not penalised)."""
    X = np.asarray(X, float)
    y = np.asarray(y, float)
    xm, ym = X.mean(0), y.mean()
    Xc = X - xm
    coef = np.linalg.solve(Xc.T @ Xc + alpha * np.eye(X.shape[1]), Xc.T @ (y - ym))
    return np.concatenate([[ym - xm @ coef], coef])


def predict(coef: np.ndarray, X: np.ndarray) -> np.ndarray:
    return coef[0] + np.asarray(X, float) @ coef[1:]


def spearman(a, b) -> float:
    """Spearman's rank correlation (average ranks for ties); nan when either side is constant."""
    from scipy.stats import spearmanr
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def loo_predictions(X: np.ndarray, y: np.ndarray, alpha: float = 1e-3) -> np.ndarray:
    """Leave-one-out predictions: candidate i predicted by the fit on the others."""
    n = len(y)
    out = np.empty(n)
    for i in range(n):
        m = np.arange(n) != i
        out[i] = predict(fit_ridge(X[m], y[m], alpha), X[i:i + 1])[0]
    return out


def dirichlet_alpha(start: np.ndarray, concentration: float) -> np.ndarray:
    """The candidates' Dirichlet parameters: the start weights pulled halfway to uniform (so a
    group the start spec gives ~0 is still explored) times ``concentration``."""
    start = np.asarray(start, float)
    start = start / start.sum()
    return concentration * (0.5 * start + 0.5 / len(start))


def choose(coef: np.ndarray, alpha: np.ndarray, *, seed: int, samples: int = 100_000, top: float = 0.01,
           allowed: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """RegMix's choice: the mean of the best ``top`` fraction of ``samples`` mixtures drawn from
    Dirichlet(``alpha``) by predicted loss; returns ``(weights, predicted loss of them)``.
    ``allowed``: groups that may get weight (others are zeroed and the rest renormalised)."""
    rng = np.random.default_rng([seed, 0x5EA2C4])
    W = rng.dirichlet(alpha, size=samples)
    if allowed is not None:
        W = W * allowed
        W = W / W.sum(1, keepdims=True)
    pred = predict(coef, W)
    k = max(1, int(samples * top))
    best = W[np.argsort(pred, kind="stable")[:k]].mean(0)
    return best, float(predict(coef, best[None])[0])
