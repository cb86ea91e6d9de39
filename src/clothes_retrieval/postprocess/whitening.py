"""Whitening of embeddings: PCA whitening and whitening learned on matching pairs.

PCA whitening (Jégou & Chum 2012): centre with the training mean ``m`` and project with
``P = diag(1 / sqrt(lambda + eps)) E^T``, where ``E`` holds the eigenvectors of the
training covariance in decreasing order of eigenvalue ``lambda``. The projected training
data has identity covariance (up to ``eps``); keeping the first ``dim`` rows reduces the
dimension.

Learned whitening (Radenović, Tolias & Chum, "Fine-tuning CNN image retrieval with no
human annotation", TPAMI 2018, "Lw"): from matching pairs ``(q, p)``, ``S`` is the
covariance of the differences ``x_q - x_p``; ``L^{-1}`` with ``S = L L^T`` (Cholesky)
whitens the intra-class variation; then PCA of the training data rotated by ``L^{-1}``
(rotation only, no second scaling) orders the dimensions. ``P = E^T L^{-1}``, mean of the
query side of the pairs, as cnnimageretrieval-pytorch's ``whitenlearn`` does.

Rows are embeddings (N x D); :meth:`Whitening.apply` projects then L2-normalises.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clothes_retrieval.io import atomic_path

__all__ = ["Whitening", "fit_pca_whitening", "fit_learned_whitening"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Whitening:
    """A learned affine map ``x -> P (x - mean)`` (rows: ``(x - mean) @ P.T``)."""

    mean: np.ndarray  # (D,) float64
    projection: np.ndarray  # (d, D) float64, most important output dimension first

    @property
    def dim(self) -> int:
        return int(self.projection.shape[0])

    def apply(self, x: np.ndarray, dim: int | None = None, *, normalize: bool = True) -> np.ndarray:
        """Project (N, D) rows onto the first ``dim`` whitened dimensions, then L2-normalise.

        Returns float32 (N, dim). ``normalize=False`` keeps the raw whitened values (tests,
        diagnostics).
        """
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.mean.shape[0]:
            raise ValueError(
                f"expected (N, {self.mean.shape[0]}) embeddings, got shape {x.shape}; "
                "the whitening was fitted on another dimension"
            )
        dim = self.dim if dim is None else int(dim)
        if not 1 <= dim <= self.dim:
            raise ValueError(f"dim must be in [1, {self.dim}], got {dim}")
        y = (x.astype(np.float64) - self.mean) @ self.projection[:dim].T  # (N, dim)
        if normalize:
            y /= np.linalg.norm(y, axis=1, keepdims=True) + 1e-12
        return y.astype(np.float32)

    def save(self, path: str | Path) -> Path:
        """Write mean and projection to an ``.npz`` file atomically."""
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, mean=self.mean, projection=self.projection)
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> Whitening:
        """Read a whitening written by :meth:`save`."""
        with np.load(path) as data:
            return cls(mean=data["mean"], projection=data["projection"])


def _check_features(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"need (N, D) features with N >= 2, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("features contain NaN or infinite values")
    return x


def _check_dim(dim: int | None, d: int) -> int:
    dim = d if dim is None else int(dim)
    if not 1 <= dim <= d:
        raise ValueError(f"dim must be in [1, {d}] (the feature dimension), got {dim}")
    return dim


def _eigh_desc(cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (descending) and eigenvectors (columns) of a symmetric matrix."""
    val, vec = np.linalg.eigh((cov + cov.T) / 2)
    order = np.argsort(val)[::-1]
    return val[order], vec[:, order]


def fit_pca_whitening(
    x: np.ndarray,
    dim: int | None = None,
    eps: float = 1e-9,
    *,
    allow_rank_deficient: bool = False,
) -> Whitening:
    """Learn PCA whitening on (N, D) *training* features and keep ``dim`` dimensions.

    Fit it on embeddings of the training split, never on the gallery it will transform:
    ``N`` centred samples span at most ``N - 1`` directions, and whitening scales every
    direction to unit variance, so the directions the sample does not span (noise, or
    nothing at all) are blown up as much as the ones it does. Hence a fit that keeps more
    dimensions than ``N - 1`` is refused unless ``allow_rank_deficient``; ``eps`` is added
    to every eigenvalue before ``1 / sqrt`` so that such a fit, when asked for, is finite.
    """
    x = _check_features(x)
    n, d = x.shape
    dim = _check_dim(dim, d)
    if dim > n - 1 and not allow_rank_deficient:
        raise ValueError(
            f"PCA whitening to {dim} dimensions from {n} samples: {n} centred samples span "
            f"at most {n - 1} directions, the rest would be noise blown up to unit variance. "
            f"Fit on more training embeddings, keep at most {n - 1} dimensions "
            "(whitening.dim), or set whitening.allow_rank_deficient: true"
        )
    mean = x.mean(axis=0)
    xc = x - mean
    cov = xc.T @ xc / n  # (D, D)
    val, vec = _eigh_desc(cov)
    val, vec = val[:dim], vec[:, :dim]
    if np.any(val + eps <= 0):
        raise ValueError(
            f"covariance has {int(np.sum(val + eps <= 0))} non-positive eigenvalues among the "
            f"first {dim}; lower dim (rank is at most N-1 = {n - 1}) or raise eps"
        )
    projection = vec.T / np.sqrt(val + eps)[:, None]  # (dim, D)
    return Whitening(mean=mean, projection=projection)


def fit_learned_whitening(
    x: np.ndarray,
    pairs: np.ndarray,
    dim: int | None = None,
    eps: float = 1e-9,
) -> Whitening:
    """Learn Radenović's supervised whitening ("Lw") from matching pairs.

    ``x``: (N, D) training features. ``pairs``: (P, 2) row indices ``(q, p)`` of matching
    embeddings (e.g. a consumer crop and its shop crop). ``eps`` regularises the
    covariance of differences (``S + eps I``) so that its Cholesky factor exists.
    """
    x = _check_features(x)
    n, d = x.shape
    dim = _check_dim(dim, d)
    pairs = np.asarray(pairs)
    if pairs.ndim != 2 or pairs.shape[1] != 2 or len(pairs) == 0:
        raise ValueError(f"pairs must be a non-empty (P, 2) index array, got shape {pairs.shape}")
    if not np.issubdtype(pairs.dtype, np.integer) or pairs.min() < 0 or pairs.max() >= n:
        raise ValueError(f"pairs must hold integer row indices in [0, {n - 1}]")
    q, p = pairs[:, 0], pairs[:, 1]
    mean = x[q].mean(axis=0)
    diff = x[q] - x[p]  # (P, D)
    s = diff.T @ diff / len(diff) + eps * np.eye(d)  # (D, D) intra-class covariance
    try:
        chol = np.linalg.cholesky(s)
    except np.linalg.LinAlgError:
        raise ValueError(
            "the covariance of pair differences is not positive definite; use more pairs "
            f"than dimensions ({len(pairs)} pairs, {d} dims) or raise eps"
        ) from None
    lw = np.linalg.inv(chol)  # (D, D): whitens the pair differences
    rotated = (x - mean) @ lw.T  # (N, D)
    _, vec = _eigh_desc(rotated.T @ rotated)
    projection = (vec.T @ lw)[:dim]  # (dim, D)
    if len(pairs) < d:
        log.warning(
            "learned whitening from %d pairs for %d dimensions: poorly conditioned", len(pairs), d
        )
    return Whitening(mean=mean, projection=projection)
