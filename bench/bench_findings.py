"""How each model draws each finding: the judge's reading and the films' exposure, next to real films.

    .venv/bin/python bench/bench_findings.py --model models/cxrdesk-cxr256 [--model OTHER ...]
        --data ../shared/data/cxr256 --run-dir RUN [--classifier RUN/classifier] [--n 12] [--out sheet.png]

`cxrdesk evaluate` scores three prompts; this goes through the findings check's fixed prompt per
common finding (normal, COVID-19, pneumonia, infiltration, fibrosis, effusion; `cxrdesk evaluate
--findings N` writes the same check for one model into a JSON) with the same seeds for every model,
and prints, for the generated films and for the real validation films with that label:
- the judge's reading (the classifier `cxrdesk evaluate` trains: normal / COVID-19 / other finding),
  also of the real films after the first model's autoencoder (encode, decode): a reference for
  what a generator on that autoencoder can show the judge;
- mean grey and contrast (standard deviation of grey) over the central chest, where a film that
  is "whited out" reads brighter and flatter than real films.
It writes a contact sheet: per finding, a row of real validation films, then a row per model.
Use it to compare two releases by eye and by number before shipping one. Prints figures; asserts
nothing. The real films' judge figures are the judge's accuracy on real films of that finding (small
samples for the rarer findings: the count is printed).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

SHOW = 8
TILE = 128


def chest_stats(images: np.ndarray) -> tuple[float, float]:
    """Mean grey and contrast (the app's RMS contrast) over the central chest (rows and columns
    15-85%), averaged over films; images (N, H, W) uint8 or float in [0, 1]."""
    from cxrdesk.core.imaging.metrics import image_metrics

    h, w = np.asarray(images).shape[1:]
    m = [image_metrics(im[int(0.15 * h):int(0.85 * h), int(0.15 * w):int(0.85 * w)]) for im in images]
    return float(np.mean([x["mean"] for x in m])), float(np.mean([x["contrast"] for x in m]))


def _row(images: np.ndarray) -> np.ndarray:
    import cv2

    from cxrdesk.core.imaging.imaging import from_unit, to_unit

    tiles = []
    for im in list(images[:SHOW]) + [np.zeros_like(images[0])] * (SHOW - min(SHOW, len(images))):
        tiles.append(cv2.resize(from_unit(to_unit(im), np.uint8), (TILE, TILE), interpolation=cv2.INTER_AREA))
    return np.concatenate(tiles, axis=1)


def _label(row: np.ndarray, text: str) -> np.ndarray:
    import cv2

    bar = np.zeros((18, row.shape[1]), np.uint8)
    cv2.putText(bar, text, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.42, 255, 1, cv2.LINE_AA)
    return np.concatenate([bar, row], axis=0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", action="append", required=True, help="model folder (repeat to compare)")
    ap.add_argument("--data", required=True)
    ap.add_argument("--run-dir", required=True, help="run folder holding the image cache (and the classifier)")
    ap.add_argument("--classifier", help="classifier folder (default RUN/classifier)")
    ap.add_argument("--n", type=int, default=12, help="films per prompt and model (seeds 100, 101, ...)")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--out", default="findings_sheet.png")
    args = ap.parse_args()

    import cv2

    from cxrdesk.core.evaluate import (FINDING_PROMPTS, FINDINGS_SEED, autoencoded, findings_check, judge_reading,
                                       load_classifier)
    from cxrdesk.core.generation.pipeline import Pipeline
    from cxrdesk.core.training.common import load_image_cache

    run = Path(args.run_dir)
    clf = load_classifier(Path(args.classifier) if args.classifier else run / "classifier")
    records, images = load_image_cache(args.data, run)

    def shown(share: dict[str, float]) -> str:
        return " ".join(f"{c} {100 * s:3.0f}%" for c, s in share.items())

    pipes = [Pipeline.load(m) for m in args.model]
    for p in pipes:
        p.warm_up()
    names = [Path(m).name + f" [{p.info['hash']}]" for m, p in zip(args.model, pipes)]
    checks = [findings_check(p, clf, records, images, n=args.n, steps=args.steps) for p in pipes]
    blocks = []
    print(f"{args.n} films per prompt and model, seeds {FINDINGS_SEED}-{FINDINGS_SEED + args.n - 1}, {args.steps} steps, "
          f"each model's recommended guidance and the default sampler; judge = the evaluate classifier")
    print(f"{'finding':13s} {'films':34s} {'n':>4s}  {'judge reads':34s} {'grey':>5s} {'contrast':>8s}")
    for label, prompt in FINDING_PROMPTS:
        real = np.stack([images[i] for i, r in enumerate(records) if r.split == "val" and label in r.labels]
                        or [np.zeros(images.shape[1:], np.uint8)])
        grey, sd = chest_stats(real)
        print(f"{label:13s} {'real validation films':34s} {len(real):4d}  {shown(judge_reading(clf, real)):34s} "
              f"{grey:5.3f} {sd:8.3f}")
        # what the judge reads in the same films after the (first) model's autoencoder
        rec = autoencoded(pipes[0], real)
        if rec is not None:
            grey, sd = chest_stats(rec)
            print(f"{'':13s} {'  after ' + names[0][:26]:34s} {len(rec):4d}  {shown(judge_reading(clf, rec)):34s} "
                  f"{grey:5.3f} {sd:8.3f}")
        rows = [_label(_row(real), f"{label}: real validation films")]
        for name, (result, films) in zip(names, checks):
            gen = films[label]
            read = next(f["generated"] for f in result["findings"] if f["label"] == label)
            grey, sd = chest_stats(gen)
            print(f"{'':13s} {name[:34]:34s} {len(gen):4d}  {shown(read):34s} {grey:5.3f} {sd:8.3f}")
            rows.append(_label(_row(gen), f"{name}: \"{prompt}\""))
        blocks.append(np.concatenate(rows, axis=0))
    sheet = np.concatenate(blocks, axis=0)
    cv2.imwrite(args.out, sheet)
    print(f"wrote {args.out} ({sheet.shape[1]}x{sheet.shape[0]})")


if __name__ == "__main__":
    main()
