"""The encode stage: every film to latents once (the trained VAE), every caption to token embeddings
once, into the run's cache."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from ..data import captions as cap
from .common import RunFolder, _progress, cpu_setup, load_image_cache


def encode_dataset(data_dir: str, run_dir: str | Path, vae_dir: str | Path | None = None,
                   image_size: int = 256, threads: int | None = None, captions_per_image: int = 6,
                   progress: bool = True, batch: int = 16, captions_only: bool = False) -> Path:
    """Encode every image to latents and every caption to token embeddings, once.

    ``captions_only`` re-encodes just the captions of an encoded dataset (after a change to the
    caption rules) and keeps its latents and scaling factor, so a UNet can fine-tune on the new
    captions from its checkpoint."""
    from diffusers import AutoencoderKL

    cpu_setup(threads)
    run = Path(run_dir)
    out = RunFolder(run).cache
    out.mkdir(parents=True, exist_ok=True)
    done = out / "done.json"
    if captions_only:
        if not done.exists():
            raise FileNotFoundError(f"no encoded dataset in {out}: encode the images first")
        index = RunFolder(run).images_index(image_size)
        source = json.loads(index.read_text()).get("data_dir") if index.exists() else None
        if source != str(Path(data_dir).resolve()):
            raise ValueError(f"{run} was encoded from {source}, not {data_dir}: re-caption with the same "
                             f"--data, or encode into a new run folder")
        records, _ = load_image_cache(data_dir, run, image_size)
        known = [r["uid"] for r in json.loads((out / "records.json").read_text())]
        if known != [r.uid for r in records]:
            raise ValueError(f"the films in {data_dir} changed since {out} was encoded: encode into a new run folder")
        _encode_captions(out, records, captions_per_image)
        return out
    if done.exists():
        return out
    records, images = load_image_cache(data_dir, run, image_size)
    vae = AutoencoderKL.from_pretrained(vae_dir or RunFolder(run).vae_final, local_files_only=True).eval()
    lat = []
    bar = _progress(len(records), 0, "encode", progress)
    with torch.no_grad():
        for s in range(0, len(records), batch):
            x = torch.from_numpy(np.array(images[s:s + batch])).float().div(127.5).sub(1).unsqueeze(1)
            lat.append(vae.encode(x).latent_dist.mode().half().numpy())
            if bar:
                bar.update(len(x))
    if bar:
        bar.close()
    latents = np.concatenate(lat)
    scale = float(1.0 / latents.astype(np.float32).std())
    _encode_captions(out, records, captions_per_image)
    np.save(out / "latents.npy", latents)
    (out / "records.json").write_text(json.dumps([{"uid": r.uid, "labels": r.labels, "split": r.split}
                                                  for r in records]))
    done.write_text(json.dumps({"scaling_factor": scale, "n": len(records),
                                "latent_shape": list(latents.shape[1:])}))
    return out


def _encode_captions(out: Path, records, captions_per_image: int) -> None:
    """Draw each film's caption pool and encode every distinct caption once."""
    from ..generation.text import TextEncoder

    texts: list[str] = [""]
    lookup = {"": 0}
    per_image = []
    for r in records:
        pool = cap.caption_pool(r.labels, r.text, captions_per_image)
        ids = []
        for c in pool:
            if c not in lookup:
                lookup[c] = len(texts)
                texts.append(c)
            ids.append(lookup[c])
        per_image.append(ids + [ids[0]] * (captions_per_image - len(ids)))
    enc = TextEncoder()
    embs = [enc.encode(texts[s:s + 64]).embeddings.half().numpy() for s in range(0, len(texts), 64)]
    # Written whole or not at all: a crash here leaves the previous caption set in place.
    for name, arr in (("text_emb.npy", np.concatenate(embs)), ("caption_ids.npy", np.array(per_image, np.int32))):
        with open(out / (name + ".tmp"), "wb") as f:
            np.save(f, arr)
    (out / "captions.json.tmp").write_text(json.dumps(texts))
    for name in ("text_emb.npy", "caption_ids.npy", "captions.json"):
        os.replace(out / (name + ".tmp"), out / name)

