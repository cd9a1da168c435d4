"""Step previews (issue 28): the tiny preview decoder against the VAE decoder and the linear latent map.

    .venv/bin/python bench/bench_preview_decoder.py [--model DIR] [--what time|quality|both]
        [--cache RUN/cache] [--n 48] [--prompts 3] [--steps 20] [--repeat 40] [--sheet preview_sheet.png]

time: milliseconds per 256x256 film of each way to draw a preview, as the pipeline calls them (UNet
latents in, a float32 film out), after warm_up (the VAE decoder in ONNX Runtime where it can be made):
the VAE decoder (Pipeline.decode), the tiny decoder (Pipeline.quick_preview) and the linear map
(Pipeline.fast_preview); median of --repeat calls each, interleaved. Pause other work on the machine.

quality: how far each preview is from the VAE decoder's film of the same latents, as mean absolute
error in grey levels (0-255) and PSNR (dB): on the clean estimates of every step of real generations
(--prompts prompts, --steps steps, the model's sampler and guidance), and, with --cache (a run's
cache encoded by this model's VAE), on held-out films' latents (its validation split) as encoded. With
--sheet, a PNG of steps of one generation: the VAE decoder's film (top), the tiny decoder's (middle)
and the linear map's (bottom).

Prints figures; asserts nothing.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

from _args import PROMPTS


def _edges(img: np.ndarray) -> float:
    img = img.astype(np.float64)
    return float(np.abs(np.diff(img, axis=0)).mean() + np.abs(np.diff(img, axis=1)).mean())


def errors(pred: np.ndarray, ref: np.ndarray) -> tuple[float, float, float]:
    """Mean absolute error in grey levels, PSNR (dB), and the preview's edge strength (mean absolute
    difference of neighbouring pixels) as a share of the VAE film's: below 1 is blurrier, above noisier."""
    err = pred.astype(np.float64) - ref.astype(np.float64)
    mse = float((err ** 2).mean())
    return float(np.abs(err).mean()) * 255, 10 * np.log10(1.0 / max(mse, 1e-12)), _edges(pred) / max(_edges(ref), 1e-9)


def summary(name: str, rows: list[tuple[float, float, float]]) -> str:
    mae = [r[0] for r in rows]
    psnr = [r[1] for r in rows]
    return (f"{name:>7}: mean abs error {statistics.mean(mae):5.2f} grey levels (worst {max(mae):5.2f}), "
            f"PSNR {statistics.mean(psnr):5.2f} dB (worst {min(psnr):5.2f}), "
            f"edge strength {statistics.mean(r[2] for r in rows):.2f}x the VAE film's")


def timing(pipe, repeat: int) -> None:
    import torch

    c, h, w = pipe.info["latent_shape"]
    z = torch.randn((1, c, h, w), generator=torch.Generator().manual_seed(0))
    t0 = time.perf_counter()
    pipe.quick_preview(z)  # after warm_up: loads (or first makes) the tiny decoder's ONNX Runtime graph
    print(f"first tiny preview after warm-up (its graph loaded or made): {(time.perf_counter() - t0) * 1000:.0f} ms")
    ways = {"VAE": pipe.decode, "tiny": pipe.quick_preview, "linear": pipe.fast_preview}
    for f in ways.values():
        for _ in range(3):
            f(z)
    times = {k: [] for k in ways}
    for _ in range(repeat):
        for k, f in ways.items():
            t0 = time.perf_counter()
            f(z)
            times[k].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) * 1000 for k, v in times.items()}
    print(f"torch threads {torch.get_num_threads()}, UNet engine {pipe.info['unet_engine']}, "
          f"decoder graphs {len(pipe._decoders)}")
    for k, v in med.items():
        print(f"{k:>7}: {v:7.2f} ms per film (median of {repeat}; min {min(times[k]) * 1000:.2f})")
    print(f"VAE / tiny: {med['VAE'] / med['tiny']:.1f}x")
    # the tiny decoder alone, in torch and as an ONNX Runtime graph (what one would gain by making one)
    from cxrdesk.core.generation import preview_decoder
    from cxrdesk.core.generation.engines import onnx_graph

    dec = getattr(preview_decoder.for_pipeline(pipe), "module", None) or preview_decoder.for_pipeline(pipe)
    zv = z * 2.5
    graph = onnx_graph(dec, ("latents",), (zv,), "preview_decoder", preview_decoder.vae_hash(pipe.folder))
    alone = {"torch": lambda: dec(zv)}
    if graph is not None:
        alone["onnxruntime"] = lambda: graph(zv)
    with torch.no_grad():
        for f in alone.values():
            f()
        for k, f in alone.items():
            ts = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                f()
                ts.append(time.perf_counter() - t0)
            print(f"tiny decoder alone, {k}: {statistics.median(ts) * 1000:.2f} ms (median of {repeat})")


def quality(pipe, args) -> None:
    import torch

    from cxrdesk.core.generation.models import vae_to_unet_latents

    # every step's clean estimate of real generations, through the VAE decoder (preview_every=1)
    seen = []
    decode = pipe.decode

    def recording(latents):
        img = decode(latents)
        seen.append((latents.detach().clone(), img))
        return img

    pipe.decode = recording
    steps_of = []
    for i in range(args.prompts):
        start = len(seen)
        pipe.generate(PROMPTS[i % len(PROMPTS)], steps=args.steps, seed=100 + i, preview_every=1,
                      on_step=lambda *a: None)
        steps_of.append(seen[start:-1])  # the last decode is the film itself
    pipe.decode = decode
    est = [s for run in steps_of for s in run]
    tiny = [errors(pipe.quick_preview(z), ref) for z, ref in est]
    linear = [errors(pipe.fast_preview(z), ref) for z, ref in est]
    print(f"clean estimates of {len(est)} steps ({args.prompts} generations x {args.steps - 1} steps), "
          f"preview against the VAE decoder's film of the same latents:")
    print(summary("tiny", tiny))
    print(summary("linear", linear))
    n = args.steps - 1
    for part, lo, hi in (("the first quarter", 0, n // 4), ("the rest", n // 4, n)):
        t = [tiny[r * n + j] for r in range(args.prompts) for j in range(lo, hi)]
        lin = [linear[r * n + j] for r in range(args.prompts) for j in range(lo, hi)]
        print(f"  steps of {part}: tiny {statistics.mean(x[0] for x in t):.2f} / linear "
              f"{statistics.mean(x[0] for x in lin):.2f} grey levels")
    if args.cache:
        cache = Path(args.cache)
        recs = json.loads((cache / "records.json").read_text())
        lat = np.load(cache / "latents.npy", mmap_mode="r")
        val = [i for i, r in enumerate(recs) if r.get("split") == "val"]
        pick = np.random.default_rng(0).choice(val, size=min(args.n, len(val)), replace=False)
        tiny, linear = [], []
        for i in sorted(pick):
            z = vae_to_unet_latents(torch.from_numpy(np.asarray(lat[i], np.float32))[None], pipe.vae.config)
            ref = pipe.decode(z)
            tiny.append(errors(pipe.quick_preview(z), ref))
            linear.append(errors(pipe.fast_preview(z), ref))
        print(f"{len(pick)} held-out films' latents as encoded (validation split of {cache}):")
        print(summary("tiny", tiny))
        print(summary("linear", linear))
    if args.sheet:
        run = steps_of[0]
        cols = sorted({0, 1, 3, len(run) // 2, len(run) - 1})
        rows = [[ref for _, ref in (run[j] for j in cols)],
                [pipe.quick_preview(run[j][0]) for j in cols],
                [pipe.fast_preview(run[j][0]) for j in cols]]
        sheet = np.concatenate([np.concatenate(r, axis=1) for r in rows])
        from PIL import Image

        Image.fromarray(np.round(np.clip(sheet, 0, 1) * 255).astype(np.uint8), mode="L").save(args.sheet)
        print(f"sheet: {args.sheet} (steps {[j + 1 for j in cols]} of '{PROMPTS[0]}'; rows VAE, tiny, linear)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model")
    ap.add_argument("--what", choices=("time", "quality", "both"), default="both")
    ap.add_argument("--cache", help="a run's cache folder encoded by this model's VAE (held-out latents)")
    ap.add_argument("--n", type=int, default=48, help="held-out films from --cache")
    ap.add_argument("--prompts", type=int, default=3, help="generations whose steps are compared")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=40)
    ap.add_argument("--sheet")
    args = ap.parse_args()

    from cxrdesk.core.generation import preview_decoder
    from cxrdesk.core.generation.pipeline import Pipeline

    pipe = Pipeline.load(args.model)
    if preview_decoder.for_pipeline(pipe) is None:
        raise SystemExit(f"{pipe.info['name']} has no usable preview decoder: {pipe.info['preview_decoder_note']}")
    rec = preview_decoder.record(pipe.folder)[0]
    print(f"model {pipe.info['name']}: preview decoder of {rec.get('params')} parameters, {rec.get('steps')} steps")
    pipe.warm_up()
    if args.what in ("time", "both"):
        timing(pipe, args.repeat)
    if args.what in ("quality", "both"):
        quality(pipe, args)


if __name__ == "__main__":
    main()
