"""What synthetic film grain does to the judge's view of autoencoded films (a probe of the instrument).

    .venv/bin/python bench/bench_grain.py --model models/cxrdesk-cxr256 --data ../shared/data/cxr256 --run-dir RUN
        [--classifier models/judge-v1] [--split tune] [--n 300] [--levels 0.3,0.5,0.7,1.0] [--threads 2]

The autoencoder drops the fine texture of real films (film grain, quantum mottle, the finest vessel and
edge detail). As in AV1's film grain synthesis, that texture can be re-synthesised from fitted statistics
instead of carried: here, on 300 training films outside the held-out and reference sets, the residual
(film minus its round trip through the model's VAE) is high-passed (minus its 1-pixel Gaussian blur),
and its mean power spectrum and its spread at each of 16 grey levels of the round trip are fitted,
for all films together and per class. Grain is white noise shaped by that spectrum and scaled per pixel
by the spread at the pixel's grey level, times a level.

On N held-out films (`--split tune` as `cxrdesk evaluate --split tune`), against N reference films under
the judge, it prints for the round trip and for each level (one fit for all films, and one per class,
applied by each film's own class): FD, the judge's accuracy and recall per class, contrast as a
fraction of the real films'. Prints figures; asserts nothing. Same films and reference as
bench_autoencoder.py (same --seed), so the round-trip line matches its figure for the same VAE.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

BINS = np.linspace(0, 1, 17)


def high_pass(a: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    import cv2

    return a - np.stack([cv2.GaussianBlur(im, (0, 0), sigma) for im in a])


def fit(residual: np.ndarray, base: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The high-passed residual's mean power spectrum (mean 1) and its spread per grey level of ``base``."""
    h = high_pass(residual)
    spec = (np.abs(np.fft.fft2(h)) ** 2).mean(0)
    spec /= spec.mean()
    level = np.clip(np.digitize(base, BINS) - 1, 0, len(BINS) - 2)
    spread = np.array([h[level == b].std() if (level == b).sum() > 100 else 0.0 for b in range(len(BINS) - 1)])
    return spec, spread


def add_grain(films: np.ndarray, fits: list, level: float, seed: int = 0) -> np.ndarray:
    """Each film plus grain of its fit (``fits[i]``: (spectrum, spread per grey level)), times ``level``."""
    rng = np.random.default_rng(seed)
    out = []
    for im, (spec, spread) in zip(films, fits):
        n = np.real(np.fft.ifft2(np.fft.fft2(rng.standard_normal(im.shape)) * np.sqrt(spec)))
        n /= n.std()
        b = np.clip(np.digitize(im, BINS) - 1, 0, len(BINS) - 2)
        out.append(np.clip(im + level * n * spread[b], 0, 1))
    return np.asarray(out, np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="model folder (its VAE), or any VAE bench_autoencoder takes")
    ap.add_argument("--data", required=True, help="dataset folder")
    ap.add_argument("--run-dir", required=True, help="run folder holding the image cache")
    ap.add_argument("--classifier", default="models/judge-v1", help="judge folder (default models/judge-v1)")
    ap.add_argument("--split", default="tune", choices=("tune", "val"))
    ap.add_argument("--n", type=int, default=300, help="held-out, reference and fitting films (default 300)")
    ap.add_argument("--levels", default="0.3,0.5,0.7,1.0", help="grain levels (fractions of the fitted spread)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--threads", type=int, help="CPU threads")
    args = ap.parse_args()

    import torch

    from cxrdesk.core.evaluate import (CLASSES, autoencoded, features, frechet_distance, held_out_split,
                                       load_classifier, predict, record_class)
    from cxrdesk.core.training.common import load_image_cache
    from cxrdesk.core.training.vae import load_vae

    if args.threads:
        torch.set_num_threads(args.threads)
    records, images = load_image_cache(args.data, Path(args.run_dir))
    clf = load_classifier(Path(args.classifier))
    held, ref = held_out_split(records, args.split)
    rng = np.random.default_rng(args.seed)  # as bench_autoencoder: the same held-out and reference films
    held = np.sort(rng.choice(held, min(args.n, len(held)), replace=False))
    ref = np.sort(rng.choice(ref, min(args.n, len(ref)), replace=False))
    train = np.array([i for i, r in enumerate(records) if r.split != "val"])
    pool = np.setdiff1d(train, np.concatenate([held, ref]))
    fitting = np.sort(np.random.default_rng(args.seed + 4).choice(pool, min(args.n, len(pool)), replace=False))

    cls = lambda idx: np.array([CLASSES.index(record_class(records[i].labels)) for i in idx])
    y, y_fit = cls(held), cls(fitting)
    vae = load_vae(args.model)
    real = images[held].astype(np.float32) / 255
    f_ref = features(clf, images[ref].astype(np.float32) / 255)
    rt = autoencoded(vae, real)
    fit_real = images[fitting].astype(np.float32) / 255
    fit_rt = autoencoded(vae, fit_real)
    every = fit(fit_real - fit_rt, fit_rt)
    per_class = {k: fit(fit_real[y_fit == k] - fit_rt[y_fit == k], fit_rt[y_fit == k]) if (y_fit == k).any() else every
                 for k in range(len(CLASSES))}
    print(f"{len(held)} {args.split} films vs {len(ref)} reference films, grain fitted on {len(fitting)} other training "
          f"films ({', '.join(f'{c} {int((y_fit == k).sum())}' for k, c in enumerate(CLASSES))}); judge {args.classifier}")
    print(f"fitted grain spread (grey 0-1): all {high_pass(fit_real - fit_rt).std():.4f}; " + ", ".join(
        f"{c} {high_pass(fit_real[y_fit == k] - fit_rt[y_fit == k]).std():.4f}" for k, c in enumerate(CLASSES)
        if (y_fit == k).any()))
    print(f"{'':22s} {'FD':>7s} {'acc':>6s}  {'recall':32s} {'contr':>5s}")

    def line(label: str, films: np.ndarray) -> None:
        pred = predict(clf, films)
        recall = " ".join(f"{c} {100 * float((pred[y == k] == k).mean()):3.0f}%" for k, c in enumerate(CLASSES)
                          if (y == k).any())
        print(f"{label:22s} {frechet_distance(features(clf, films), f_ref):7.2f} {100 * float((pred == y).mean()):5.1f}%  "
              f"{recall:32s} {float(films.std()) / float(real.std()):5.3f}", flush=True)

    line("real", real)
    line("round trip", rt)
    for level in (float(v) for v in args.levels.split(",")):
        line(f"+ grain {level:g}, one fit", add_grain(rt, [every] * len(rt), level))
        line(f"+ grain {level:g}, per class", add_grain(rt, [per_class[k] for k in y], level))


if __name__ == "__main__":
    main()
