"""Fast mode (a distilled student, issue 28) against full generation: time per film and a contact sheet.

    .venv/bin/python bench/bench_fast.py [--model DIR] [--n 8] [--fast-steps 4] [--sheet fast_sheet.png]

Draws the same prompts and seeds with the model's full sampling (its sampler, 20 steps, its guidance)
and with its student (--fast-steps steps, one UNet call each), both after a warm-up, alternating so
that other load on the machine falls on both alike. Prints the median seconds per film of each, their
ratio and the UNet calls per film; writes a contact sheet (top row full, bottom row fast) when --sheet
is given. Quality under the pinned judge: `cxrdesk evaluate --fast` beside `cxrdesk evaluate`.
Prints figures; asserts nothing.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from _args import PROMPTS


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model")
    ap.add_argument("--n", type=int, default=8, help="films of each kind")
    ap.add_argument("--steps", type=int, default=20, help="steps of full generation")
    ap.add_argument("--fast-steps", type=int, default=None, help="steps of the student (default: the folder's)")
    ap.add_argument("--sheet")
    args = ap.parse_args()

    from cxrdesk.core.generation.pipeline import Pipeline

    pipe = Pipeline.load(args.model)
    if not pipe.info.get("student"):
        raise SystemExit(f"{pipe.info['name']} has no usable student: {pipe.info.get('student_note')}")
    pipe.warm_up()
    fast_steps = args.fast_steps or pipe.info["student"]["steps"]
    for fast in (False, True):  # first calls (graph loading, the student's lazy load) are not timed
        pipe.generate(PROMPTS[0], steps=fast_steps if fast else args.steps, seed=0, fast=fast, preview_every=0)
    times = {False: [], True: []}
    films = {False: [], True: []}
    for i in range(args.n):
        prompt = PROMPTS[i % len(PROMPTS)]
        for fast in (False, True):
            t0 = time.perf_counter()
            r = pipe.generate(prompt, steps=fast_steps if fast else args.steps, seed=100 + i, fast=fast,
                              preview_every=0)
            times[fast].append(time.perf_counter() - t0)
            films[fast].append(r.image_u8)
    full, fast = statistics.median(times[False]), statistics.median(times[True])
    guided = pipe.info["guidance"] != 1.0
    print(f"model {pipe.info['name']} [{pipe.info['hash']}], student distilled {pipe.info['student']['distill_steps']} "
          f"steps; engine {pipe.info['unet_engine']}")
    print(f"full: {full:.3f} s per film ({args.steps} steps, {2 * args.steps if guided else args.steps} UNet calls)")
    print(f"fast: {fast:.3f} s per film ({fast_steps} steps, {fast_steps} UNet calls)")
    print(f"fast / full: {fast / full:.2f} (target <= 0.3)")
    if args.sheet:
        from PIL import Image

        sheet = np.concatenate([np.concatenate(films[False], axis=1), np.concatenate(films[True], axis=1)], axis=0)
        Image.fromarray(sheet).save(args.sheet)
        print(f"contact sheet (top: full, bottom: fast, same prompts and seeds): {args.sheet}")


if __name__ == "__main__":
    main()
