"""How well each model's UNet denoises real films at each noise level, without sampling.

    .venv/bin/python bench/bench_denoise.py --model shipped=models/cxrdesk-cxr256 --model new=RUN/model
        --data ../shared/data/cxr256 --run-dir RUN [--split tune] [--n 16] [--t 20,100,300,600,900]
        [--out denoise_sheet.png] [--json denoise.json] [--threads 2]

A fine-tune or a new latent space (`train unet --init-from` across latent channel counts) can reach a
low training loss and still draw noise: the loss weighs every noise level alike (min-SNR), while the
high-noise steps lay out the chest and amplify errors the most. This check shows where a model
stands before any image is sampled. On N held-out films (``--split tune`` as in
`cxrdesk evaluate --split tune`), each model encodes the films with its own VAE, adds noise at each
timestep t (one fixed draw per film, the same for every model), and its UNet predicts the noise
(or the velocity, for a v-prediction model) from each film's caption (built from its labels as in
training, fixed seed). It prints, per t:
- eps: mean squared error of the predicted noise (what an epsilon model's training minimises,
  unweighted; for a v model, of the noise implied by its prediction);
- x0: squared error of the clean latent recovered from that prediction, as a fraction of the
  latents' mean square (above 1 the prediction is worse than predicting zeros).
Under each model, a "prior" row scores the best guess that knows only each latent channel's mean
and variance (over the same films) and no text: a UNet must do better than that to lay out a chest.
The sheet has a row per t and model: the decoded clean-latent predictions of the first films.
Each model is scored in its own latent space (as its UNet sees it: one scaling factor, or each channel
normalised), so compare the trend over t and the sheet, not small differences.
Prints figures; asserts nothing.
"""
from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import numpy as np

from _args import labelled

SHOW = 3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", type=labelled, required=True, metavar="LABEL=PATH",
                    help="a model folder to check (repeat)")
    ap.add_argument("--data", required=True, help="dataset folder")
    ap.add_argument("--run-dir", required=True, help="run folder holding (or receiving) the image cache")
    ap.add_argument("--split", default="tune", choices=("tune", "val"))
    ap.add_argument("--n", type=int, default=16, help="held-out films (default 16)")
    ap.add_argument("--t", default="20,100,300,600,900", help="timesteps, comma-separated (0-999)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--threads", type=int, help="CPU threads")
    ap.add_argument("--out", default="denoise_sheet.png", help="sheet PNG")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    specs = args.model
    try:
        steps = [int(x) for x in args.t.split(",")]
    except ValueError:
        ap.error(f"--t takes comma-separated integers, not {args.t!r}")
    if not steps or any(not 0 <= t < 1000 for t in steps):
        ap.error("--t: timesteps from 0 to 999")

    import cv2
    import torch
    from diffusers import DDPMScheduler

    from cxrdesk.core.data.captions import make_caption
    from cxrdesk.core.evaluate import held_out_split
    from cxrdesk.core.generation.models import clean_latents, unet_to_vae_latents, vae_to_unet_latents
    from cxrdesk.core.generation.pipeline import Pipeline
    from cxrdesk.core.training.common import load_image_cache

    if args.threads:
        torch.set_num_threads(args.threads)
    records, images = load_image_cache(args.data, Path(args.run_dir))
    held, _ = held_out_split(records, args.split)
    rng = np.random.default_rng(args.seed)
    held = np.sort(rng.choice(held, min(args.n, len(held)), replace=False))
    films = torch.from_numpy(images[held].astype(np.float32) / 127.5 - 1)[:, None]
    crng = random.Random(args.seed)
    captions = [make_caption(records[i].labels, records[i].text, crng) for i in held]
    print(f"{len(held)} {args.split} films; timesteps {steps}")
    print(f"{'model':14s} " + " ".join(f"{'t=' + str(t):>15s}" for t in steps))
    print(f"{'':14s} " + " ".join(f"{'eps':>7s} {'x0':>7s}" for _ in steps))
    results = {"split": args.split, "n": len(held), "timesteps": steps}
    rows = []
    for label, path in specs:
        pipe = Pipeline.load(path, device="cpu")
        vae, unet = pipe.vae.float(), pipe.unet.float()
        sched = DDPMScheduler.from_config(pipe.scheduler_config)
        with torch.no_grad():
            z = vae_to_unet_latents(vae.encode(films).latent_dist.mode(), vae.config)
            cond = pipe.text_encoder.encode(captions).embeddings.float()
            gen = torch.Generator().manual_seed(args.seed)
            noise = torch.randn((len(steps),) + tuple(z.shape), generator=gen)
            r = {"path": path, "latent_shape": list(z.shape[1:]), "eps": [], "x0": [], "prior_eps": [], "prior_x0": []}
            mu, var = z.mean(dim=(0, 2, 3), keepdim=True), z.var(dim=(0, 2, 3), keepdim=True)
            for k, t in enumerate(steps):
                tt = torch.full((len(z),), t, dtype=torch.long)
                xt = sched.add_noise(z, noise[k], tt)
                a = sched.alphas_cumprod[t]
                x0 = clean_latents(unet(xt, tt, encoder_hidden_states=cond).sample, xt, a,
                                   sched.config.prediction_type)
                # reference: the best guess knowing only each channel's mean and variance (Gaussian posterior mean)
                x0p = mu + a.sqrt() * var / (a * var + 1 - a) * (xt - a.sqrt() * mu)
                for key, guess in (("", x0), ("prior_", x0p)):
                    implied_noise = (xt - a.sqrt() * guess) / (1 - a).sqrt()
                    r[key + "eps"].append(float(((implied_noise - noise[k]) ** 2).mean()))
                    r[key + "x0"].append(float(((guess - z) ** 2).mean() / (z ** 2).mean()))
                dec = vae.decode(unet_to_vae_latents(x0[:SHOW], vae.config)).sample.clamp(-1, 1)[:, 0].numpy()
                rows.append(np.concatenate(list((dec + 1) / 2), axis=1))
        results[label] = r
        print(f"{label:14s} " + " ".join(f"{e:7.4f} {x:7.3f}" for e, x in zip(r["eps"], r["x0"])))
        print(f"{'  prior':14s} " + " ".join(f"{e:7.4f} {x:7.3f}" for e, x in zip(r["prior_eps"], r["prior_x0"])),
              flush=True)
    sheet = np.concatenate(rows, axis=0)
    cv2.imwrite(args.out, (np.clip(sheet, 0, 1) * 255).astype(np.uint8))
    print(f"wrote {args.out}: for each model ({', '.join(label for label, _ in specs)}), a row per t "
          f"({', '.join(map(str, steps))}): the clean films its UNet recovers from that noise level")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
