"""Generation speed on this machine: seconds per image and per step, and peak memory.

    .venv/bin/python bench/bench_generate.py [--model DIR] [--n 5] [--steps 20] [--precision fp32|bf16|both]
                                             [--guidance-interval LO,HI] [--app]

256x256, 20 steps, classifier-free guidance at the model's recommended scale and interval (or the
one given), the default sampler, CPU unless CUDA is present. Each precision is timed three ways:
with the eager UNet (a single image from `cxrdesk generate`), after Pipeline.warm_up(engine="trace")
(a TorchScript graph), and after Pipeline.warm_up(engine="onnx") (ONNX Runtime: what the app,
`evaluate`, and `generate --n 5` or more use); the ONNX warm-up is timed twice, exporting into an
empty cache folder (a model's first start) and loading from it (every later start). `--app` adds a
fourth kind, the ONNX UNet generating as the app's worker does (a sharp preview every 5 steps, a
fast one on the others, and attention maps recorded for one word, by the attention graph that the
app's warm-up also exports, which the warm-up figures then include). Runs alternate between the
kinds so that a machine whose speed drifts affects them alike. Prints figures; asserts nothing.
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model")
    ap.add_argument("--n", type=int, default=5)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int)
    ap.add_argument("--precision", default="both", choices=["fp32", "bf16", "both"])
    ap.add_argument("--guidance-interval", default=None, help="LO,HI (default: the model's)")
    ap.add_argument("--app", action="store_true", help="also time generation as the app does it")
    args = ap.parse_args()
    import torch

    from cxrdesk.core.generation.pipeline import Pipeline
    from cxrdesk.core.generation.sampling import check_interval

    if args.threads:
        torch.set_num_threads(args.threads)
    interval = check_interval(args.guidance_interval.split(",")) if args.guidance_interval else None
    for prec in (["fp32", "bf16"] if args.precision == "both" else [args.precision]):
        t0 = time.perf_counter()
        eager = Pipeline.load(args.model, device="auto", precision=prec)
        load = time.perf_counter() - t0
        batches = (1, 2) if interval else None
        traced = Pipeline.load(args.model, device="auto", precision=prec)
        warm = traced.warm_up(batches, engine="trace")
        with tempfile.TemporaryDirectory() as cache:
            os.environ["CXRDESK_CACHE_DIR"] = cache  # an empty cache: the first warm-up exports
            onnx = Pipeline.load(args.model, device="auto", precision=prec)
            export = onnx.warm_up(batches, engine="onnx", attention=args.app)
            onnx = Pipeline.load(args.model, device="auto", precision=prec)
            cached = onnx.warm_up(batches, engine="onnx", attention=args.app)
        bf16 = None
        if prec == "fp32":
            bf16 = Pipeline.load(args.model, device="auto", precision=prec)
            warm_bf16 = bf16.warm_up(batches, engine="bf16", attention=args.app)
        kinds = {"eager": eager}
        if warm > 0:
            kinds["traced"] = traced
        if onnx.info["unet_engine"] == "onnxruntime":
            kinds["onnx"] = onnx
        if args.app:
            kinds["app"] = onnx if "onnx" in kinds else traced
        if bf16 is not None and bf16.info["unet_engine"] == "torchscript-bf16":
            kinds["bf16"] = bf16
            if args.app:
                kinds["app-bf16"] = bf16
        times = {k: [] for k in kinds}
        per = {k: {"text": [], "denoise": [], "decode": []} for k in kinds}
        for pipe in kinds.values():
            pipe.generate("normal chest radiograph", steps=args.steps, seed=0)  # warm-up
        guided = None
        for i in range(args.n):
            for kind, pipe in kinds.items():
                t = time.perf_counter()
                app = kind.startswith("app")
                r = pipe.generate("right lower lobe pneumonia with small effusion", steps=args.steps,
                                  guidance_interval=interval, seed=i, on_step=lambda *a: None,
                                  preview_every=5 if app else 0, attention_words=["effusion"] if app else None)
                times[kind].append(time.perf_counter() - t)
                guided = r.params
                for k in per[kind]:
                    per[kind][k].append(r.timings[k])
        info = eager.info
        print(f"[{prec}] model {info['name']} [{info['hash']}] on {info['device']}, "
              f"{torch.get_num_threads()} threads, unet {info['params']['unet'] / 1e6:.1f}M, "
              f"vae {info['params']['vae'] / 1e6:.1f}M")
        print(f"[{prec}] load {load:.2f} s, warm-up: tracing {warm:.2f} s, ONNX export {export:.2f} s, "
              f"ONNX from the cache {cached:.2f} s ({onnx.info['unet_engine']})"
              + (f", bfloat16 graphs {warm_bf16:.2f} s" if "bf16" in kinds else ""))
        print(f"[{prec}] 256x256, {args.steps} steps, "
              f"guidance {guided['guidance_scale']:g} on {guided['guided_steps']} of them "
              f"(interval {guided['guidance_interval'][0]:g}-{guided['guidance_interval'][1]:g})")
        for kind in kinds:
            ts, pk = times[kind], per[kind]
            print(f"[{prec}] {kind:8s}: {statistics.median(ts):.3f} s/image (median of {args.n}, min {min(ts):.3f}), "
                  f"{statistics.median(pk['denoise']) / args.steps * 1000:.1f} ms/step, "
                  f"text {statistics.median(pk['text']) * 1000:.0f} ms, decode {statistics.median(pk['decode']) * 1000:.0f} ms")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB (four or five pipelines loaded)")


if __name__ == "__main__":
    main()
