"""`cxrdesk evaluate`: Frechet distance, prompt adherence and diversity against real images."""
from __future__ import annotations

import json
from pathlib import Path

from ..core.pipeline import DEFAULT_SAMPLER, SAMPLERS
from . import INTERVAL_HELP, CliError, interval_arg


def register(sub) -> None:
    e = sub.add_parser("evaluate", help="measure a model against real images (FD, adherence, diversity)",
                       description=__doc__)
    e.add_argument("--model", help="model folder (default: the embedded model)")
    e.add_argument("--data", required=True, help="dataset folder with a metadata.csv and a val split")
    e.add_argument("--run-dir", dest="run", default=None, help="folder for caches and the classifier (default OUT/.eval)")
    e.add_argument("--classifier", help="classifier folder (default: train one into RUN/classifier)")
    e.add_argument("--out", default="eval", help="where eval.json and eval_grid.png go")
    e.add_argument("--n", type=int, default=300, help="generated and real images per distance")
    e.add_argument("--steps", type=int, default=20)
    e.add_argument("--guidance", type=float, default=None,
                   help="guidance scale (default: the value the model recommends)")
    e.add_argument("--guidance-interval", type=interval_arg, default=None, metavar="LO,HI",
                   help=INTERVAL_HELP + " (default: the model's)")
    e.add_argument("--sampler", default=DEFAULT_SAMPLER, choices=SAMPLERS)
    e.add_argument("--split", choices=("val", "tune"), default="val",
                   help="val: the dataset's validation films (for reporting). tune: a fixed tenth of the "
                        "training films, for choosing a checkpoint or sampling setting without looking at "
                        "the validation films (optimistic figures: compare settings with it, do not report it)")
    e.add_argument("--quiet", action="store_true")
    e.set_defaults(func=cmd_evaluate)


def cmd_evaluate(args) -> int:
    from ..core.evaluate import EvalConfig, evaluate, held_out_split, load_classifier, train_classifier
    from ..core.pipeline import Pipeline, PipelineError
    from ..core.train import load_image_cache

    if not Path(args.data).is_dir():
        raise CliError(f"dataset folder not found: {args.data}")
    out = Path(args.out)
    run = Path(args.run) if args.run else out / ".eval"
    run.mkdir(parents=True, exist_ok=True)
    try:
        pipe = Pipeline.load(args.model)
    except PipelineError as exc:
        raise CliError(str(exc)) from None
    records, images = load_image_cache(args.data, run)
    if args.split == "val" and not any(r.split == "val" for r in records):
        raise CliError("the dataset has no validation split (split column 'val')")
    if len(held_out_split(records, args.split)[0]) < 2:
        raise CliError(f"too few images in the '{args.split}' split to evaluate")
    cls_dir = Path(args.classifier) if args.classifier else run / "classifier"
    if not (cls_dir / "classifier.safetensors").is_file():
        train_classifier(images, records, cls_dir, progress=not args.quiet)
    clf = load_classifier(cls_dir)
    res = evaluate(pipe, images, records, clf, out,
                   EvalConfig(n=args.n, steps=args.steps, guidance=args.guidance, sampler=args.sampler,
                              split=args.split, guidance_interval=args.guidance_interval),
                   progress=not args.quiet)
    res["classifier"] = json.loads((cls_dir / "classifier.json").read_text())
    (out / "eval.json").write_text(json.dumps(res, indent=2))
    f, a, d = res["frechet"], res["adherence"], res["diversity"]
    def r(v):
        return "n/a" if v is None else f"{v:.2f}"

    print(f"Frechet distance: generated {f['generated_vs_train']:.3f} vs real baseline "
          f"{f['real_val_vs_train']:.3f}  (ratio {r(f['ratio'])}, target <= 2.0); "
          f"real images blurred by 1 px: {f['real_val_blurred_1px_vs_train']:.3f}")
    print(f"adherence: {a['generated']:.1%} vs classifier accuracy on real {a['classifier_real_accuracy']:.1%}  "
          f"(ratio {r(a['ratio'])}, target >= 0.8)")
    print(f"diversity (mean pairwise SSIM): generated {d['generated_ssim']:.3f} vs real {d['real_ssim']:.3f}  "
          f"(ratio {r(d['ratio'])}, target <= 1.2)")
    ceiling = res.get("reconstruction")
    if ceiling:
        print(f"autoencoder ceiling (real images encoded and decoded): Frechet {ceiling['frechet_vs_train']:.3f}, "
              f"classifier accuracy {ceiling['accuracy']:.1%}")
    if args.split == "tune":
        print("split 'tune': training films the model saw; compare settings with these figures, do not report them")
    print(f"wrote {out / 'eval.json'} and {out / 'eval_grid.png'}")
    return 0
