"""What every training stage shares: processes (torchrun/DDP), checkpoints, CSV logs, progress bars,
the run folder's paths and the decoded-image cache.

Each stage resumes from ``RUN/<stage>/ckpt.pt`` when present. Run under ``torchrun
--nproc_per_node N`` for several processes: each takes its own share of every batch, gradients are
averaged by DistributedDataParallel (gloo on CPU, nccl on CUDA), and only rank 0 writes checkpoints,
logs and samples.
"""
from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..data.datasets import Record, load_gray, read_dataset

ProgressFn = Callable[[int, int, dict], None]


@dataclass(frozen=True)
class RunFolder:
    """The paths of a training run folder (one spelling each)."""

    root: Path

    def images(self, size: int = 256) -> Path:
        """The decoded films, a uint8 (N, size, size) array."""
        return self.root / f"images_{size}.npy"

    def images_index(self, size: int = 256) -> Path:
        return self.root / f"images_{size}.json"

    def stage(self, name: str) -> Path:
        """A stage's folder: vae, decoder, unet, distill, classifier."""
        return self.root / name

    def ckpt(self, stage: str) -> Path:
        return self.root / stage / "ckpt.pt"

    @property
    def vae_final(self) -> Path:
        """The trained VAE the later stages use (diffusers folder)."""
        return self.root / "vae" / "final"

    @property
    def cache(self) -> Path:
        """Latents and caption embeddings (the encode stage)."""
        return self.root / "cache"

    def cached(self, name: str) -> Path:
        """A file of the cache: done.json, latents.npy, text_emb.npy, caption_ids.npy, records.json,
        captions.json."""
        return self.root / "cache" / name

    @property
    def model(self) -> Path:
        """The default export destination."""
        return self.root / "model"

    @property
    def model_fast(self) -> Path:
        """The distillation stage's default export: the teacher's folder with the student added."""
        return self.root / "model-fast"

    def read_cache(self):
        """The encoded dataset: (done.json's metadata, latents float32 (N, C, H, W) as the VAE encodes
        them, caption embeddings, caption ids per film, records), and the indices of the training
        (not validation) films."""
        meta = json.loads(self.cached("done.json").read_text())
        latents = torch.from_numpy(np.load(self.cached("latents.npy"))).float()
        text_emb = torch.from_numpy(np.load(self.cached("text_emb.npy")))
        cap_ids = torch.from_numpy(np.load(self.cached("caption_ids.npy"))).long()
        recs = json.loads(self.cached("records.json").read_text())
        train_idx = torch.tensor([i for i, r in enumerate(recs) if r["split"] != "val"] or list(range(len(recs))))
        return meta, latents, text_emb, cap_ids, recs, train_idx


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_dist(device: str = "auto") -> Dist:
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if device == "cuda" else "gloo"
        torch.distributed.init_process_group(backend)
    rank = torch.distributed.get_rank() if world > 1 else 0
    dev = torch.device(device)
    if device == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        dev = torch.device("cuda", local)
    return Dist(rank=rank, world=world, device=dev)


def _wrap(model: torch.nn.Module, dist: Dist) -> torch.nn.Module:
    if dist.world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        return DDP(model, device_ids=[dist.device.index] if dist.device.type == "cuda" else None)
    return model


def _barrier(dist: Dist) -> None:
    if dist.world > 1:
        torch.distributed.barrier()


def cpu_setup(threads: int | None) -> None:
    torch.set_flush_denormal(True)
    if threads:
        torch.set_num_threads(threads)


def atomic_save(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def optimizer_step(opt: torch.optim.Optimizer, loss: torch.Tensor, params, lr: float, clip: float = 1.0,
                   sync: Callable[[], None] | None = None) -> None:
    """One update: set the learning rate, backpropagate ``loss``, run ``sync`` (a hand-written
    gradient all-reduce, where the model is not DDP-wrapped), clip the gradient norm, step."""
    for g in opt.param_groups:
        g["lr"] = lr
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if sync is not None:
        sync()
    torch.nn.utils.clip_grad_norm_(params, clip)
    opt.step()


@torch.no_grad()
def ema_update(averaged, params, decay: float) -> None:
    """Move each averaged tensor toward its live parameter: ``a <- decay * a + (1 - decay) * p``."""
    for a, p in zip(averaged, params):
        a.lerp_(p.detach(), 1 - decay)


def load_ckpt(path: Path):
    # Our own resume files only; weights_only refuses arbitrary pickled objects.
    return torch.load(path, map_location="cpu", weights_only=True)


class CsvLog:
    def __init__(self, path: Path, fields: list[str], enabled: bool = True):
        self.path, self.fields, self.enabled = path, fields, enabled
        header = None
        if enabled and path.exists():  # resuming: keep the columns the file already has
            with open(path, newline="") as fh:
                header = next(csv.reader(fh), None)
        if header:
            self.fields = header
        elif enabled:
            with open(path, "w", newline="") as fh:
                csv.writer(fh).writerow(fields)

    def write(self, row: dict) -> None:
        if self.enabled:
            with open(self.path, "a", newline="") as fh:
                csv.writer(fh).writerow([row.get(k, "") for k in self.fields])


def _progress(total: int, start: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=start, desc=desc, dynamic_ncols=True, mininterval=2.0)


def load_image_cache(data_dir: str, run_dir: Path, size: int = 256,
                     dist: Dist | None = None) -> tuple[list[Record], np.ndarray]:
    """All readable images of a dataset as a uint8 (N, size, size) array, cached in the run folder."""
    records = read_dataset(data_dir)
    cache, index = RunFolder(run_dir).images(size), RunFolder(run_dir).images_index(size)
    if cache.exists() and index.exists():
        kept = json.loads(index.read_text())
        if kept["data_dir"] == str(Path(data_dir).resolve()) and kept["n_records"] == len(records):
            keep = set(kept["uids"])
            records = [r for r in records if r.uid in keep]
            return records, np.load(cache, mmap_mode="r")
    if dist is not None and not dist.main:
        _barrier(dist)
        return load_image_cache(data_dir, run_dir, size)
    arr = np.zeros((len(records), size, size), np.uint8)
    ok: list[Record] = []
    skipped = 0
    for r in records:
        try:
            img = load_gray(r.path, size)
        except Exception:  # unreadable files are skipped, not fatal
            skipped += 1
            continue
        arr[len(ok)] = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
        ok.append(r)
    arr = arr[: len(ok)]
    if not ok:
        raise RuntimeError(f"no readable images in {data_dir}")
    tmp = run_dir / f"images_{size}.tmp.npy"
    np.save(tmp, arr)
    os.replace(tmp, cache)
    index.write_text(json.dumps({"data_dir": str(Path(data_dir).resolve()), "n_records": len(records),
                                 "uids": [r.uid for r in ok], "skipped": skipped}))
    if dist is not None and dist.world > 1:
        _barrier(dist)
    return ok, np.load(cache, mmap_mode="r")

