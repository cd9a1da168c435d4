"""What each autoencoder keeps of real films: the judge's view of real films after encode/decode.

    .venv/bin/python bench/bench_autoencoder.py --vae shipped=models/cxrdesk-cxr256 --vae new=RUN/vae/ckpt.pt
        --data ../shared/data/cxr256 --run-dir RUN [--classifier RUN/classifier] [--split tune] [--n 300]
        [--out ae_sheet.png] [--json ae.json] [--threads 2]

Every film a model draws passes through its VAE's decoder, so the autoencoder's round trip of real
films is a reference for what a generator on it can show `cxrdesk evaluate`'s judge (not a strict
bound). Use this to choose between VAEs or decoders before training a UNet on one: it scores each
candidate on the same films under the same judge.

A VAE is a model folder, a VAE folder, a run folder (its vae/final) or a vae/decoder checkpoint
(ckpt.pt). On N held-out films (``--split tune``: a fixed tenth of the training films, as in
`cxrdesk evaluate --split tune`; ``val``: the validation films, best kept for a release) against N
reference films, it prints, for the real films and then for each VAE after its round trip:
- FD: Frechet distance of the judge's features to the reference films (real films: the baseline);
- L1: mean absolute grey difference to the originals (grey 0-1);
- the judge's accuracy (normal / COVID-19 / other finding) and its recall per class;
- sharpness (variance of the Laplacian) and contrast (standard deviation of grey), each as a
  fraction of the real films'; the latent shape and the VAE's parameter count.
It writes a sheet: a row of real films, then a row per VAE, and magnified crops of the right lung base.
Prints figures; asserts nothing. The judge is trained by `cxrdesk train classifier`; it moves when
retrained, so compare figures only under one judge.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from _args import labelled

SHOW = 6
CROP = (slice(150, 214), slice(40, 104))  # 64x64 of the right lung base on a 256x256 film


def sharpness(images: np.ndarray) -> float:
    import cv2

    return float(np.mean([cv2.Laplacian(np.ascontiguousarray(im, np.float32), cv2.CV_32F).var() for im in images]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vae", action="append", type=labelled, required=True, metavar="LABEL=PATH", help="a VAE to score (repeat)")
    ap.add_argument("--data", required=True, help="dataset folder")
    ap.add_argument("--run-dir", required=True, help="run folder holding the image cache (and the classifier)")
    ap.add_argument("--classifier", help="judge folder (default RUN/classifier)")
    ap.add_argument("--split", default="tune", choices=("tune", "val"))
    ap.add_argument("--n", type=int, default=300, help="held-out and reference films (default 300)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--threads", type=int, help="CPU threads")
    ap.add_argument("--out", default="ae_sheet.png", help="sheet PNG")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    specs = args.vae

    import cv2
    import torch

    from cxrdesk.core.evaluate import (CLASSES, autoencoded, features, frechet_distance, held_out_split,
                                       load_classifier, predict, record_class)
    from cxrdesk.core.generation.models import n_params
    from cxrdesk.core.training.common import load_image_cache
    from cxrdesk.core.training.vae import load_vae

    if args.threads:
        torch.set_num_threads(args.threads)
    run = Path(args.run_dir)
    records, images = load_image_cache(args.data, run)
    clf = load_classifier(Path(args.classifier) if args.classifier else run / "classifier")
    held, ref = held_out_split(records, args.split)
    rng = np.random.default_rng(args.seed)
    held = np.sort(rng.choice(held, min(args.n, len(held)), replace=False))
    ref = np.sort(rng.choice(ref, min(args.n, len(ref)), replace=False))
    y = np.array([CLASSES.index(record_class(records[i].labels)) for i in held])
    real = images[held].astype(np.float32) / 255
    f_ref = features(clf, images[ref].astype(np.float32) / 255)
    lap_real, sd_real = sharpness(real), float(real.std())

    def score(films: np.ndarray) -> dict:
        pred = predict(clf, films)
        return {"fd": frechet_distance(features(clf, films), f_ref), "l1": float(np.abs(films - real).mean()),
                "accuracy": float((pred == y).mean()),
                "recall": {c: float((pred[y == k] == k).mean()) if (y == k).any() else None
                           for k, c in enumerate(CLASSES)},
                "sharpness_ratio": sharpness(films) / lap_real, "contrast_ratio": float(films.std()) / sd_real}

    def line(label: str, r: dict, extra: str = "") -> None:
        recall = " ".join(f"{c} {100 * v:3.0f}%" for c, v in r["recall"].items() if v is not None)
        print(f"{label:14s} {r['fd']:7.2f} {r['l1']:7.4f} {100 * r['accuracy']:5.1f}%  {recall:30s} "
              f"{r['sharpness_ratio']:5.2f} {r['contrast_ratio']:5.2f}  {extra}", flush=True)

    print(f"{len(held)} {args.split} films vs {len(ref)} reference films; judge {args.classifier or run / 'classifier'}")
    print(f"{'':14s} {'FD':>7s} {'L1':>7s} {'acc':>6s}  {'recall':30s} {'sharp':>5s} {'contr':>5s}  latents")
    results = {"split": args.split, "n": len(held), "real": score(real)}
    line("real", results["real"])
    rows, crops = [real[:SHOW]], [real[:SHOW, CROP[0], CROP[1]]]
    for label, path in specs:
        vae = load_vae(path)
        rec = autoencoded(vae, real)
        with torch.no_grad():
            shape = list(vae.encode(torch.zeros(1, 1, *real.shape[1:])).latent_dist.mode().shape[1:])
        r = {**score(rec), "path": path, "latent_shape": shape, "params": n_params(vae)}
        results[label] = r
        line(label, r, f"{'x'.join(map(str, shape))}, {r['params'] / 1e6:.1f} M params")
        rows.append(rec[:SHOW])
        crops.append(rec[:SHOW, CROP[0], CROP[1]])
    sheet = np.concatenate([np.concatenate(list(r), axis=1) for r in rows], axis=0)
    zoom = np.concatenate([np.concatenate(list(c), axis=1) for c in crops], axis=0)
    k = max(1, sheet.shape[1] // zoom.shape[1])  # as wide as the sheet (4x for 256-px films)
    zoom = cv2.resize(zoom, None, fx=k, fy=k, interpolation=cv2.INTER_NEAREST)
    zoom = np.pad(zoom, ((0, 0), (0, max(0, sheet.shape[1] - zoom.shape[1]))))[:, :sheet.shape[1]]
    out = np.concatenate([sheet, np.zeros((8, sheet.shape[1]), np.float32), zoom], axis=0)
    cv2.imwrite(args.out, (np.clip(out, 0, 1) * 255).astype(np.uint8))
    print(f"wrote {args.out}: rows real, " + ", ".join(label for label, _ in specs) + f"; then {k}x crops of the lung base")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
