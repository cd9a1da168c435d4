"""Editing as a teaching tool: does an edit change what the judge reads, and what does it cost?

    .venv/bin/python bench/bench_edit.py --data ../shared/data/cxr256 [--model DIR] [--n 50] [--steps 20]
        [--strength 0.85] [--classifier models/judge-v1] [--run-dir RUN] [--sheet edits.png]

Takes N real COVID-19 validation films and edits them to clear lungs inside the default lung-field
mask (core.generation.editing.lung_field_mask), and N real normal validation films edited to bilateral COVID-19
opacities, with fixed seeds (0..N-1). Prints how the pinned judge reads the films before and after
(share read as normal / COVID-19 / other), the share of pixels left exactly as they were, and the
time per edit next to the time per generated film at the same steps. Writes a contact sheet of the
first films (before | after) when --sheet is given. Prints figures; asserts nothing.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

CLEAR = "normal chest radiograph, clear lungs"
COVID = "bilateral peripheral ground-glass opacities consistent with COVID-19 pneumonia"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--model")
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--strength", type=float, default=None)
    ap.add_argument("--classifier")
    ap.add_argument("--run-dir", default="runs/bench_edit")
    ap.add_argument("--sheet")
    args = ap.parse_args()

    from cxrdesk.core.data.findings import record_class
    from cxrdesk.core.generation.editing import DEFAULT_STRENGTH, FEATHER_PX, feather_weights, lung_field_mask
    from cxrdesk.core.evaluate import PINNED_JUDGE, judge_reading, load_classifier
    from cxrdesk.core.generation.pipeline import Pipeline
    from cxrdesk.core.training.common import load_image_cache

    run = Path(args.run_dir)
    run.mkdir(parents=True, exist_ok=True)
    records, images = load_image_cache(args.data, run)
    clf = load_classifier(Path(args.classifier) if args.classifier else PINNED_JUDGE)
    pipe = Pipeline.load(args.model)
    pipe.warm_up()
    strength = DEFAULT_STRENGTH if args.strength is None else args.strength
    mask = lung_field_mask((256, 256))
    untouched = feather_weights(mask, FEATHER_PX) == 0
    val = [i for i, r in enumerate(records) if r.split == "val"]
    print(f"model {pipe.info['name']} [{pipe.info['hash']}], {args.steps} steps, strength {strength}, "
          f"guidance {pipe.info['guidance']:g}; lung mask {mask.mean():.0%} of the film")
    sheet_rows = []
    for source, prompt, label in (("covid", CLEAR, "COVID-19 films -> clear lungs"),
                                  ("normal", COVID, "normal films -> COVID-19 opacities")):
        idx = [i for i in val if record_class(records[i].labels) == source][:args.n]
        before = np.stack([images[i] for i in idx]).astype(np.float32) / 255.0
        after, secs, same = [], [], []
        for k, film in enumerate(before):
            t0 = time.perf_counter()
            res = pipe.edit(film, mask, prompt, steps=args.steps, seed=k, strength=strength)
            secs.append(time.perf_counter() - t0)
            after.append(res.image)
            same.append(float((res.image_u8[untouched] == np.round(film[untouched] * 255)).mean()))
        after = np.stack(after)
        rb, ra = judge_reading(clf, before), judge_reading(clf, after)
        fmt = lambda r: " / ".join(f"{100 * r[c]:3.0f}" for c in ("normal", "covid", "other")) + "%"  # noqa: E731
        print(f"{label} ({len(idx)} films): judge reads normal / COVID-19 / other  before {fmt(rb)}  after {fmt(ra)}; "
              f"pixels beyond the feather unchanged {np.mean(same):.1%}; {np.mean(secs):.2f} s per edit")
        sheet_rows.append(np.concatenate([np.concatenate([b, a], axis=0) for b, a in zip(before[:6], after[:6])], axis=1))
    t0 = time.perf_counter()
    for k in range(5):
        pipe.generate(COVID, steps=args.steps, seed=k, preview_every=0)
    print(f"generation at the same steps: {(time.perf_counter() - t0) / 5:.2f} s per film")
    if args.sheet:
        from PIL import Image

        Image.fromarray((np.clip(np.concatenate(sheet_rows, axis=0), 0, 1) * 255).astype(np.uint8)).save(args.sheet)
        print(f"wrote {args.sheet} (per block: top the real film, below the edit)")


if __name__ == "__main__":
    main()
