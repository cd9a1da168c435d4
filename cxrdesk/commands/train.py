"""`cxrdesk train STAGE`: train a VAE, encode the dataset, train the UNet, export a model folder.

Every stage resumes from its checkpoint in the run folder. Under ``torchrun --nproc_per_node N``
the vae and unet stages run data-parallel (gloo on CPU, nccl on CUDA) with no other change.
"""
from __future__ import annotations

import os
from pathlib import Path

from . import INTERVAL_HELP, CliError, interval_arg

STAGES = ("vae", "encode", "unet", "decoder", "distill", "preview-decoder", "export", "classifier", "all")


def _guidance_range(value: str) -> tuple[float, float]:
    """argparse type for ``--guidance-range LO,HI``: 1 <= LO <= HI <= the largest guidance."""
    import argparse

    from ..core.generation.sampling import MAX_GUIDANCE

    try:
        lo, hi = (float(v) for v in value.replace(" ", "").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError("give two guidance scales, LO,HI (e.g. 2,8)") from None
    if not 1 <= lo <= hi <= MAX_GUIDANCE:
        raise argparse.ArgumentTypeError(f"the range must satisfy 1 <= LO <= HI <= {MAX_GUIDANCE:g}")
    return lo, hi


def register(sub) -> None:
    t = sub.add_parser("train", help="train a model on a local dataset folder (resumable)",
                       description=__doc__)
    t.add_argument("stage", choices=STAGES, help="vae, encode, unet, decoder (decoder-only fine-tune, latents unchanged), distill (a few-step "
                        "student of --teacher), preview-decoder (a tiny decoder for step previews, of --model's VAE), export, "
                        "classifier, or all")
    t.add_argument("--data", help="dataset folder (metadata.csv layout, Indiana layout, or images)")
    t.add_argument("--run-dir", dest="run", required=True, help="run folder for checkpoints, caches, logs and samples")
    t.add_argument("--out", help="model folder to write (default RUN/model)")
    t.add_argument("--steps", type=int, help="total optimisation steps for this stage")
    t.add_argument("--batch", type=int, help="batch size (split across torchrun processes)")
    t.add_argument("--lr", type=float, help="learning rate")
    t.add_argument("--preset", default="default", help="model size preset: default or tiny")
    t.add_argument("--threads", type=int, help="CPU threads per process (measure 1 vs 2)")
    t.add_argument("--device", default="auto", help="auto, cpu or cuda")
    t.add_argument("--ckpt-every", type=int, help="checkpoint every N steps")
    t.add_argument("--sample-every", type=int, help="sample grid every N steps")
    t.add_argument("--name", help="model name written into the folder")
    t.add_argument("--init-from", metavar="MODEL_DIR",
                   help="start from this model folder when the run has nothing of its own yet. unet: its UNet "
                        "(trained on the same VAE's latents; for a VAE with another --latent-channels, all but "
                        "its input and output layers); decoder: its VAE (to sharpen a shipped model's decoder); "
                        "export: its UNet, scheduler and sampling settings with the run's VAE (a run that "
                        "fine-tuned only a decoder; the encoder must be unchanged); distill: its student, moved "
                        "by how --teacher differs from its UNet (a teacher trained on from that folder's)")
    t.add_argument("--adv-weight", type=float,
                   help="vae/decoder: weight of the adversarial (PatchGAN) term that restores film grain and fine "
                        "texture; 0 turns it off (default 0.1 for decoder, 0 for vae)")
    t.add_argument("--latent-noise", type=float, metavar="S",
                   help="decoder: decode latents with white noise of up to S times each channel's spread, so the "
                        "decoder draws clean films from a UNet's slightly wrong latents instead of a blotchy "
                        "texture (e.g. 0.3; default 0, off)")
    t.add_argument("--spectral-weight", type=float, metavar="W",
                   help="vae/decoder: weight of the spectral term (per film, L1 between the log power of the film "
                        "and of its reconstruction in radial frequency bands): asks for real films' amount of "
                        "fine detail at each scale, not its exact position (e.g. 0.2; default 0, off)")
    t.add_argument("--decoder-layers", type=int, metavar="N",
                   help="decoder, with --init-from: give the decoder N residual blocks per resolution (the "
                        "default model has 1; 3 doubles the decoder's depth), the added ones starting as the "
                        "identity so training starts from the model's own round trip (the encoder, and so the "
                        "UNet's latents, are unchanged)")
    t.add_argument("--latent-channels", type=int, metavar="C",
                   help="vae: latent channels of a new VAE (default 4); more keep more fine texture through the "
                        "autoencoder (the UNet then denoises C channels; retrain it on the new latents)")
    t.add_argument("--noise-offset", type=float,
                   help="unet: offset noise (per-channel constant added to the training noise) so the model "
                        "learns each film's exposure; resuming with a new value fine-tunes from there (default: the "
                        "checkpoint's value, else 0)")
    t.add_argument("--class-balance", type=float,
                   help="unet: 0 draws films as the data has them; up to 1 draws the classes normal, COVID-19 "
                        "and other findings more evenly (weight n_class^-B), so that rare findings are learnt; "
                        "resuming with a new value fine-tunes from there (default: the checkpoint's value, else 0)")
    t.add_argument("--finding-balance", type=float,
                   help="unet: instead of --class-balance, draw films by their rarest finding (weight n^-B, "
                        "n = films with that finding), so pneumonia, infiltration, fibrosis and effusion are "
                        "each seen more often; turns --class-balance off; resuming with a new value fine-tunes "
                        "from there (default: the checkpoint's value, else 0)")
    t.add_argument("--channel-norm", action="store_true", default=None,
                   help="unet: denoise each latent channel at zero mean and unit variance (statistics of the "
                        "training latents, written to the model's VAE config) instead of one scale for all; for a "
                        "VAE with many latent channels (--latent-channels 16). A run keeps the choice it started with")
    t.add_argument("--prediction", choices=("epsilon", "v"),
                   help="unet: what the UNet predicts: the noise (epsilon, default) or the velocity (v), which "
                        "learns the high-noise steps faster on latents with many channels; the model folder "
                        "records it. A run keeps the choice it started with (a new run can switch from its "
                        "--init-from model's)")
    t.add_argument("--zero-snr", action="store_true", default=None,
                   help="unet: a noise schedule whose last step is pure noise, sampled from that step on (Lin et al. "
                        "2024), so the model sets each film's exposure and contrast itself instead of drifting to the "
                        "mean grey; needs --prediction v. A run keeps the choice it started with (a new run can "
                        "switch from its --init-from model's)")
    t.add_argument("--lr-decay-steps", type=int, metavar="N",
                   help="unet: over the last N steps before --steps, lower the learning rate linearly to a "
                        "tenth (an anneal before a release; default 0, constant)")
    t.add_argument("--guidance", type=float,
                   help="export: the guidance scale the model folder recommends to the app, generate and "
                        "evaluate (choose it with 'cxrdesk evaluate --split tune'; default 4)")
    t.add_argument("--guidance-interval", type=interval_arg, metavar="LO,HI",
                   help="export: where in the noise schedule the recommended guidance applies: " + INTERVAL_HELP
                        + " (default 0,1)")
    t.add_argument("--teacher", metavar="MODEL_DIR",
                   help="distill: the model folder whose UNet the student learns from (the run's latents must be "
                        "encoded by its VAE); the student is exported into a copy of it (--out, default RUN/model-fast). "
                        "export: export the run's distilled student (RUN/distill/ckpt.pt) beside this teacher's "
                        "weights instead of a UNet (--out, default RUN/model-fast; --out MODEL_DIR adds it in place)")
    t.add_argument("--method", choices=("lcd", "guidance", "trajectory"), default=None,
                   help="distill: lcd (latent consistency distillation, a 4-step student; the default), guidance "
                        "(guidance distillation: one UNet call per step of the model's own sampler, 8 steps) or "
                        "trajectory (step distillation of the --init-from folder's guidance-distilled student: its 4 "
                        "steps learn to land where its own 20 land; --batch counts films, 4 steps each)")
    t.add_argument("--trajectories", type=int, metavar="N",
                   help="distill --method trajectory: how many films the starting student draws in 20 steps to "
                        "learn from (default 2048; drawn first, resumable)")
    t.add_argument("--guidance-range", type=_guidance_range, metavar="LO,HI",
                   help="distill: the guidance scales the student learns to draw (default 2,8)")
    t.add_argument("--model", metavar="MODEL_DIR",
                   help="preview-decoder: the model folder whose VAE decoder the tiny preview decoder imitates (the "
                        "run's latents must be encoded by that VAE; --out MODEL_DIR writes it into a folder with that "
                        "VAE when done). export --preview-decoder: the folder it imitated")
    t.add_argument("--preview-decoder", action="store_true",
                   help="export: write the run's preview decoder (RUN/preview-decoder/ckpt.pt) into --out MODEL_DIR "
                        "(default --model): its preview_decoder/ folder and cxrdesk.json's record")
    t.add_argument("--captions-only", action="store_true",
                   help="encode: re-encode only the captions of an encoded run (after the caption rules change), "
                        "keeping its image latents; then resume 'train unet' to fine-tune on them")
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(func=cmd_train)


# VAE-stage options: (VAEConfig field and flag, lowest, highest, the one stage it applies to or None, why)
_VAE_OPTIONS = (
    ("latent_noise", 0, 2, "decoder", " (a full VAE trains on sampled latents)"),
    ("spectral_weight", 0, 10, None, ""),
    ("latent_channels", 1, 64, "vae", " (a decoder keeps its encoder's latents)"),
    ("decoder_layers", 1, 8, "decoder", ""),
)


def _vae_options(args, cfg, stage: str) -> None:
    """The VAE-stage options given on the command line, checked and set on ``cfg``."""
    for field, lo, hi, only, why in _VAE_OPTIONS:
        value = getattr(args, field)
        if value is None:
            continue
        flag = "--" + field.replace("_", "-")
        if only and stage != only:
            raise CliError(f"{flag} applies to 'train {only}' only{why}")
        if not lo <= value <= hi:
            raise CliError(f"{flag} must be between {lo} and {hi}")
        setattr(cfg, field, value)


def _need_data(args) -> str:
    if not args.data:
        raise CliError(f"train {args.stage} needs --data DIR")
    if not Path(args.data).is_dir():
        raise CliError(f"dataset folder not found: {args.data}")
    return args.data


def cmd_train(args) -> int:
    from ..core.training.common import load_image_cache
    from ..core.training.encode import encode_dataset
    from ..core.training.export import export_from_checkpoint, export_with_model_unet
    from ..core.training.unet import UNetConfig, train_unet
    from ..core.training.vae import VAEConfig, train_vae

    run = Path(args.run)
    run.mkdir(parents=True, exist_ok=True)
    progress = not args.quiet
    stages = ["vae", "encode", "unet"] if args.stage == "all" else [args.stage]
    for stage in stages:
        if stage in ("vae", "decoder"):
            if args.adv_weight is not None and args.adv_weight < 0:
                raise CliError("--adv-weight must be 0 or more")
            cfg = VAEConfig(preset=args.preset, decoder_only=stage == "decoder", adv_weight=args.adv_weight)
            _vae_options(args, cfg, stage)
            if stage == "decoder":
                if args.init_from:
                    _need_model(args.init_from)
                    cfg.init_from = args.init_from
                elif not (run / "vae" / "final").is_dir():
                    raise CliError(f"no trained VAE in {run}/vae/final: run 'cxrdesk train vae' first, "
                                   f"or start from a model folder's VAE with --init-from MODEL_DIR")
            _apply(cfg, args)
            try:
                train_vae(_need_data(args), run, cfg, threads=args.threads, device=args.device, progress=progress)
            except ValueError as e:
                raise CliError(str(e)) from None
        elif stage == "encode":
            if args.captions_only and not (run / "cache" / "done.json").is_file():
                raise CliError(f"no encoded dataset in {run}/cache to re-caption: run 'cxrdesk train encode' first")
            if not args.captions_only and not (run / "vae" / "final").is_dir():
                raise CliError(f"no trained VAE in {run}/vae/final: run 'cxrdesk train vae' first")
            try:
                encode_dataset(_need_data(args), run, threads=args.threads, progress=progress,
                                 captions_only=args.captions_only)
            except ValueError as e:
                raise CliError(str(e)) from None
        elif stage == "unet":
            if not (run / "cache" / "done.json").is_file():
                raise CliError(f"no encoded dataset in {run}/cache: run 'cxrdesk train encode' first")
            cfg = UNetConfig(preset=args.preset, init_from=args.init_from)
            _apply(cfg, args)
            if args.noise_offset is not None and not 0 <= args.noise_offset <= 1:
                raise CliError("--noise-offset must be between 0 and 1")
            cfg.noise_offset = args.noise_offset
            if args.class_balance is not None and not 0 <= args.class_balance <= 1:
                raise CliError("--class-balance must be between 0 and 1")
            cfg.class_balance = args.class_balance
            if args.finding_balance is not None and not 0 <= args.finding_balance <= 1:
                raise CliError("--finding-balance must be between 0 and 1")
            if args.finding_balance and args.class_balance:
                raise CliError("use --class-balance or --finding-balance, not both")
            cfg.finding_balance = args.finding_balance
            cfg.channel_norm = args.channel_norm
            if args.prediction:
                cfg.prediction = "v_prediction" if args.prediction == "v" else "epsilon"
            cfg.zero_snr = args.zero_snr
            if args.lr_decay_steps is not None:
                if not 0 <= args.lr_decay_steps <= cfg.steps:
                    raise CliError("--lr-decay-steps must be between 0 and --steps")
                cfg.lr_decay_steps = args.lr_decay_steps
            try:
                out = train_unet(run, cfg, threads=args.threads, device=args.device, progress=progress,
                                   export_to=args.out)
            except ValueError as e:
                raise CliError(str(e)) from None
            if os.environ.get("RANK", "0") == "0":
                print(f"model folder: {out}")
        elif stage == "distill":
            _distill(args, run, progress)
        elif stage == "preview-decoder":
            _preview_decoder(args, run, progress)
        elif stage == "export":
            from ..core.generation.sampling import MAX_GUIDANCE

            if args.guidance is not None and not 0 <= args.guidance <= MAX_GUIDANCE:
                raise CliError(f"--guidance must be between 0 and {MAX_GUIDANCE:g}")
            if args.preview_decoder:
                out = _export_preview_decoder(args, run)
            elif args.teacher:
                out = _export_student(args, run)
            elif args.init_from:
                _need_model(args.init_from)
                if (run / "unet" / "ckpt.pt").exists():
                    raise CliError(f"{run} has a UNet checkpoint of its own: export it without --init-from")
                if not (run / "vae" / "final").is_dir():
                    raise CliError(f"no VAE in {run}/vae/final: run 'cxrdesk train decoder --init-from' first")
                try:
                    out = export_with_model_unet(run, args.init_from, args.out or run / "model", name=args.name,
                                                   guidance=args.guidance, guidance_interval=args.guidance_interval)
                except ValueError as e:
                    raise CliError(str(e)) from None
            else:
                out = export_from_checkpoint(run, args.out or run / "model", name=args.name,
                                               guidance=args.guidance, guidance_interval=args.guidance_interval)
            print(f"model folder: {out}")
        elif stage == "classifier":
            from ..core.evaluate import train_classifier

            records, images = load_image_cache(_need_data(args), run)
            out = train_classifier(images, records, run / "classifier", progress=progress,
                                   epochs=args.steps or 4)
            print((out / "classifier.json").read_text())
    return 0


def _need_cache_of(run: Path, whose: str) -> None:
    """CliError unless ``run`` holds latents encoded (by ``whose`` VAE, which the stage needs)."""
    if not (run / "cache" / "done.json").is_file():
        raise CliError(f"no encoded dataset in {run}/cache: copy the {whose}'s VAE to {run}/vae/final and run "
                       f"'cxrdesk train encode' first")


def _distill(args, run: Path, progress: bool) -> None:
    from ..core.training import distill as D

    if not args.teacher:
        raise CliError("train distill needs --teacher MODEL_DIR (the model folder to distil)")
    _need_model(args.teacher)
    _need_cache_of(run, "teacher")
    cfg = D.DistillConfig()
    _apply(cfg, args)
    if args.guidance_range is not None:
        cfg.guidance_min, cfg.guidance_max = args.guidance_range
    if args.method is not None:
        cfg.method = args.method
    if args.trajectories is not None:
        if args.trajectories < 1:
            raise CliError("--trajectories must be 1 or more")
        cfg.trajectories = args.trajectories
    if args.init_from:
        _need_model(args.init_from)
        cfg.init_from = str(Path(args.init_from).resolve())
    try:
        out = D.train_distill(run, args.teacher, cfg, threads=args.threads, device=args.device, progress=progress,
                              export_to=args.out)
    except ValueError as e:
        raise CliError(str(e)) from None
    if os.environ.get("RANK", "0") == "0":
        print(f"model folder with the student: {out}")


def _preview_decoder(args, run: Path, progress: bool) -> None:
    from ..core.training import preview_decoder as P

    if not args.model:
        raise CliError("train preview-decoder needs --model MODEL_DIR (the model folder whose VAE decoder it imitates)")
    _need_model(args.model)
    _need_cache_of(run, "model")
    cfg = P.PreviewDecoderConfig()
    _apply(cfg, args)
    if cfg.steps < 1 or cfg.batch < 1:
        raise CliError("--steps and --batch must be 1 or more")
    try:
        out = P.train_preview_decoder(run, args.model, cfg, threads=args.threads, device=args.device,
                                      progress=progress, export_to=args.out)
    except (ValueError, FileNotFoundError) as e:
        raise CliError(str(e)) from None
    if os.environ.get("RANK", "0") == "0":
        print(f"preview decoder: {Path(args.out) / 'preview_decoder' if args.out else out / 'ckpt.pt'}")


def _export_preview_decoder(args, run: Path) -> Path:
    from ..core.training import preview_decoder as P

    dest = args.out or args.model
    if not dest:
        raise CliError("export --preview-decoder needs --out MODEL_DIR (or --model MODEL_DIR)")
    _need_model(dest)
    try:
        P.export_preview_decoder(run, args.model or dest, dest)
    except (FileNotFoundError, ValueError) as e:
        raise CliError(str(e)) from None
    return Path(dest)


def _export_student(args, run: Path) -> Path:
    from ..core.training import distill as D

    _need_model(args.teacher)
    try:
        return D.export_from_checkpoint(run, args.teacher, args.out)
    except (FileNotFoundError, ValueError) as e:
        raise CliError(str(e)) from None


def _need_model(folder: str) -> None:
    if not (Path(folder) / "vae" / "config.json").is_file() or not (Path(folder) / "unet" / "config.json").is_file():
        raise CliError(f"not a model folder (needs vae/ and unet/): {folder}")


def _apply(cfg, args) -> None:
    for name, attr in (("steps", "steps"), ("batch", "batch"), ("lr", "lr"), ("ckpt_every", "ckpt_every"),
                       ("sample_every", "sample_every")):
        v = getattr(args, name, None)
        if v is not None:
            if hasattr(cfg, attr):
                setattr(cfg, attr, v)
    if getattr(args, "sample_every", None) and hasattr(cfg, "export_every"):
        cfg.export_every = args.sample_every
