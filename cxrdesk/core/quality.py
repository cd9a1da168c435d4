"""Image-set measurements that `cxrdesk evaluate` reports beside the Frechet distance, each computed
the same way for generated films and for real validation films at the same count:

- ``film_stats``: per-image contrast (standard deviation of grey levels), exposure (mean grey level)
  and its spread across films, near-black and near-white shares. A model pulled toward the mean
  draws foggy films: low contrast, few dark pixels, every film at one exposure.
- ``prdc``: precision, recall, density and coverage in a feature space (Kynkaanniemi et al. 2019;
  Naeem et al. 2020): do generated films fall where real ones do (precision, density), and do they
  reach all of the real films' variety (recall, coverage)?
- ``nearest_copies``: each film's highest correlation with any training film at thumbnail size, to
  flag near-copies of training films (memorisation).

Everything is numpy; images are (N, H, W) arrays in [0, 1] (floats) or uint8.
"""
from __future__ import annotations

import numpy as np

# Grey levels (as fractions of full scale) below / above which a pixel counts as near black / white.
NEAR_BLACK = 0.05
NEAR_WHITE = 0.95
# Thumbnail side for the nearest-training-film check, and the correlation above which a film
# counts as a near-copy: the threshold the dataset's own near-duplicate removal used.
COPY_SIZE = 32
NEAR_COPY = 0.985
PRDC_K = 5


def as_unit(images) -> np.ndarray:
    """(N, H, W) images as float32 in [0, 1]."""
    a = np.asarray(images)
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 255.0
    return np.clip(a.astype(np.float32), 0.0, 1.0)


def film_stats(images) -> dict:
    """Contrast, exposure and the near-black / near-white shares of a set of films, in 8-bit grey
    levels where they are levels: contrast is the mean over films of each film's standard deviation,
    exposure the mean of the films' mean levels and exposure spread the standard deviation of those
    means across films."""
    a = as_unit(images)
    if a.ndim != 3 or len(a) == 0:
        raise ValueError("film_stats needs a non-empty (N, H, W) stack of images")
    per_mean = a.reshape(len(a), -1).mean(axis=1)
    per_std = a.reshape(len(a), -1).std(axis=1)
    return {
        "contrast": float(per_std.mean() * 255),
        "exposure_mean": float(per_mean.mean() * 255),
        "exposure_spread": float(per_mean.std() * 255),
        "near_black_share": float((a < NEAR_BLACK).mean()),
        "near_white_share": float((a > NEAR_WHITE).mean()),
        "n": int(len(a)),
    }


def relative(generated: dict, real: dict) -> dict:
    """Each of film_stats' figures as generated / real (None where real is 0)."""
    return {k: (generated[k] / real[k] if real[k] else None)
            for k in ("contrast", "exposure_mean", "exposure_spread", "near_black_share", "near_white_share")}


def _sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.maximum(d, 0.0)


def prdc(real: np.ndarray, fake: np.ndarray, k: int = PRDC_K) -> dict:
    """Precision, recall, density and coverage of ``fake`` features against ``real`` ones, with
    k-nearest-neighbour balls (Naeem et al. 2020, whose reference code this follows).

    precision: share of fake samples inside some real sample's k-NN ball; recall: share of real
    samples inside some fake sample's ball; density: mean count of real balls holding each fake
    sample, over k (1 for matching sets, can exceed 1); coverage: share of real samples whose own
    ball holds at least one fake sample. Small sets use a smaller k (at most one less than either
    set's size; the result records it)."""
    real = np.asarray(real, np.float64)
    fake = np.asarray(fake, np.float64)
    k = min(k, len(real) - 1, len(fake) - 1)
    if k < 1:
        raise ValueError("prdc needs at least 2 samples on each side")
    rr = _sq_dists(real, real)
    ff = _sq_dists(fake, fake)
    rf = _sq_dists(real, fake)
    # the k-th nearest other sample (index 0 after sorting is the sample itself)
    r_rad = np.sort(rr, axis=1)[:, k]
    f_rad = np.sort(ff, axis=1)[:, k]
    inside = rf < r_rad[:, None]  # inside[i, j]: fake j in real i's ball
    return {
        "precision": float(inside.any(axis=0).mean()),
        "recall": float((rf < f_rad[None, :]).any(axis=1).mean()),
        "density": float(inside.sum(axis=0).mean() / k),
        "coverage": float((rf.min(axis=1) < r_rad).mean()),
        "k": k,
    }


def thumbnails(images, size: int = COPY_SIZE) -> np.ndarray:
    """Zero-mean, unit-norm flattened thumbnails (so a dot product is a Pearson correlation)."""
    import cv2

    # one film at a time: a whole training set as floats would take gigabytes
    rows = [cv2.resize(as_unit(np.asarray(im)[None])[0], (size, size), interpolation=cv2.INTER_AREA)
            for im in images]
    t = np.stack(rows).reshape(len(rows), -1)
    t = t - t.mean(axis=1, keepdims=True)
    return t / np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-8)


def nearest_copies(images, train_thumbs: np.ndarray, threshold: float = NEAR_COPY) -> dict:
    """Each film's highest correlation with any training film (``train_thumbs`` from thumbnails()):
    the median and 95th percentile over films, and the share above ``threshold`` (near-copies)."""
    best = (thumbnails(images) @ train_thumbs.T).max(axis=1)
    return {"median": float(np.median(best)), "p95": float(np.percentile(best, 95)),
            "near_copy_share": float((best > threshold).mean()), "threshold": threshold, "n": int(len(best))}
