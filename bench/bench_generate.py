"""Generation speed on this machine: seconds per image and per step, and peak memory.

    .venv/bin/python bench/bench_generate.py [--model DIR] [--n 5] [--steps 20] [--precision fp32|bf16|both]

256x256, 20 steps, classifier-free guidance (guidance 4), dpm++ sampler, CPU unless CUDA is present.
Prints figures; asserts nothing.
"""
from __future__ import annotations

import argparse
import resource
import statistics
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model")
    ap.add_argument("--n", type=int, default=5)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int)
    ap.add_argument("--precision", default="both", choices=["fp32", "bf16", "both"])
    args = ap.parse_args()
    import torch

    from cxrdesk.core.pipeline import Pipeline

    if args.threads:
        torch.set_num_threads(args.threads)
    for prec in (["fp32", "bf16"] if args.precision == "both" else [args.precision]):
        t0 = time.perf_counter()
        pipe = Pipeline.load(args.model, device="auto", precision=prec)
        load = time.perf_counter() - t0
        pipe.generate("normal chest radiograph", steps=args.steps, seed=0)  # warm-up
        times, per = [], {"text": [], "denoise": [], "decode": []}
        for i in range(args.n):
            t = time.perf_counter()
            r = pipe.generate("right lower lobe pneumonia with small effusion", steps=args.steps,
                              guidance_scale=4.0, seed=i, on_step=lambda *a: None, preview_every=0)
            times.append(time.perf_counter() - t)
            for k in per:
                per[k].append(r.timings[k])
        med = statistics.median(times)
        print(f"[{prec}] model {pipe.info['name']} [{pipe.info['hash']}] on {pipe.info['device']}, "
              f"{torch.get_num_threads()} threads, unet {pipe.info['params']['unet'] / 1e6:.1f}M, "
              f"vae {pipe.info['params']['vae'] / 1e6:.1f}M")
        print(f"[{prec}] load {load:.2f} s; 256x256, {args.steps} steps, CFG: "
              f"{med:.3f} s/image (median of {args.n}, min {min(times):.3f}), "
              f"{statistics.median(per['denoise']) / args.steps * 1000:.1f} ms/step, "
              f"text {statistics.median(per['text']) * 1000:.0f} ms, decode {statistics.median(per['decode']) * 1000:.0f} ms")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
