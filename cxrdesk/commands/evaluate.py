"""`cxrdesk evaluate`: Frechet distance, prompt adherence and diversity against real images."""
from __future__ import annotations

import json
from pathlib import Path

from ..core.generation.sampling import DEFAULT_SAMPLER, SAMPLERS
from . import CONDITION_NOISE_HELP, INTERVAL_HELP, CliError, interval_arg


def register(sub) -> None:
    e = sub.add_parser("evaluate", help="measure a model against real images (FD, adherence, diversity)",
                       description=__doc__)
    e.add_argument("--model", help="model folder (default: the embedded model)")
    e.add_argument("--data", required=True, help="dataset folder with a metadata.csv and a val split")
    e.add_argument("--run-dir", dest="run", default=None, help="folder for caches and the classifier (default OUT/.eval)")
    e.add_argument("--classifier", help="classifier folder (default: the pinned judge, models/judge-v1 in a "
                                        "checkout; elsewhere one trained into RUN/classifier)")
    e.add_argument("--out", default="eval", help="where eval.json and eval_grid.png go")
    e.add_argument("--n", type=int, default=300, help="generated and real images per distance")
    e.add_argument("--steps", type=int, default=None, help="denoising steps (default 20; with --fast, the student's)")
    e.add_argument("--fast", action="store_true",
                   help="score the model folder's distilled student (fast mode) instead of full generation: "
                        "compare with a run without --fast on the same prompts and seeds")
    e.add_argument("--guidance", type=float, default=None,
                   help="guidance scale (default: the value the model recommends)")
    e.add_argument("--guidance-interval", type=interval_arg, default=None, metavar="LO,HI",
                   help=INTERVAL_HELP + " (default: the model's)")
    e.add_argument("--sampler", default=DEFAULT_SAMPLER, choices=SAMPLERS)
    e.add_argument("--condition-noise", type=float, default=None, metavar="S",
                   help=CONDITION_NOISE_HELP + " (default: the model's)")
    e.add_argument("--split", choices=("val", "tune"), default="val",
                   help="val: the dataset's validation films (for reporting). tune: a fixed tenth of the "
                        "training films, for choosing a checkpoint or sampling setting without looking at "
                        "the validation films (optimistic figures: compare settings with it, do not report it)")
    e.add_argument("--findings", type=int, metavar="N",
                   help="instead of the scores above, run the findings check: N films for each of six fixed "
                        "finding prompts (normal, COVID-19, pneumonia, infiltration, fibrosis, effusion), read by "
                        "the classifier next to real films with that finding; writes OUT/findings_check.json. "
                        "Copied into the model folder, it lets the app and generate warn when a prompt asks for a "
                        "finding the model draws poorly (16 is a good N)")
    e.add_argument("--diversity-sets", type=int, default=None, metavar="K",
                   help="more seed sets (24 films each) for a repeated diversity figure with its spread from set "
                        "to set (default 4; 0 = the single set only)")
    e.add_argument("--quiet", action="store_true")
    e.set_defaults(func=cmd_evaluate)


def cmd_evaluate(args) -> int:
    from ..core.evaluate import PINNED_JUDGE, EvalConfig, evaluate, held_out_split, load_classifier, train_classifier
    from ..core.errors import PipelineError
    from ..core.generation.pipeline import Pipeline
    from ..core.training.common import load_image_cache

    if not Path(args.data).is_dir():
        raise CliError(f"dataset folder not found: {args.data}")
    out = Path(args.out)
    run = Path(args.run) if args.run else out / ".eval"
    run.mkdir(parents=True, exist_ok=True)
    try:
        pipe = Pipeline.load(args.model)
    except PipelineError as exc:
        raise CliError(str(exc)) from None
    if args.fast and pipe.model.student is None:
        raise CliError(f"--fast: {pipe.model.student_note}")
    if args.steps is None:
        args.steps = pipe.model.student["steps"] if args.fast else 20
    records, images = load_image_cache(args.data, run)
    if args.split == "val" and not any(r.split == "val" for r in records):
        raise CliError("the dataset has no validation split (split column 'val')")
    if len(held_out_split(records, args.split)[0]) < 2:
        raise CliError(f"too few images in the '{args.split}' split to evaluate")
    if args.classifier:
        cls_dir = Path(args.classifier)
        if not (cls_dir / "classifier.safetensors").is_file():
            raise CliError(f"no classifier.safetensors in {cls_dir}")
    elif (PINNED_JUDGE / "classifier.safetensors").is_file():
        cls_dir = PINNED_JUDGE
    else:
        cls_dir = run / "classifier"
        if not (cls_dir / "classifier.safetensors").is_file():
            print(f"no pinned judge at {PINNED_JUDGE}: training one into {cls_dir} (figures compare only "
                  f"with others from the same judge)")
            train_classifier(images, records, cls_dir, progress=not args.quiet)
    clf = load_classifier(cls_dir)
    if args.findings is not None:
        return _findings(args, pipe, clf, records, images, out)
    res = evaluate(pipe, images, records, clf, out,
                   EvalConfig(n=args.n, steps=args.steps, guidance=args.guidance, sampler=args.sampler,
                              split=args.split, guidance_interval=args.guidance_interval, fast=args.fast,
                              condition_noise=args.condition_noise,
                              **({} if args.diversity_sets is None else {"diversity_sets": max(0, args.diversity_sets)})),
                   progress=not args.quiet)
    res["classifier"] = {"folder": str(cls_dir), **_json_or_empty(cls_dir / "classifier.json")}
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
    if d.get("repeated"):
        rep = d["repeated"]
        print(f"diversity over {rep['sets']} seed sets: ratio {rep['mean']:.3f} (sd {rep['sd']:.3f} from set to set; "
              f"sets {', '.join(f'{v:.2f}' for v in rep['ratios'])})")
    g, rv, ratio = res["films"]["generated"], res["films"]["real_val"], res["films"]["ratio"]
    for key, name, fmt in (("contrast", "contrast (std)", ".1f"), ("exposure_mean", "exposure (mean)", ".1f"),
                           ("exposure_spread", "exposure spread", ".1f"),
                           ("near_black_share", "near-black share", ".2%"),
                           ("near_white_share", "near-white share", ".2%")):
        print(f"{name + ':':18s} generated {g[key]:{fmt}} vs real {rv[key]:{fmt}}  (ratio {r(ratio[key])})")
    pg, pr = res["prdc"]["generated"], res["prdc"]["real_val"]
    print("precision / recall / density / coverage: generated "
          + " / ".join(f"{pg[k]:.2f}" for k in ("precision", "recall", "density", "coverage"))
          + ", real " + " / ".join(f"{pr[k]:.2f}" for k in ("precision", "recall", "density", "coverage"))
          + f"  (coverage ratio {r(res['prdc']['coverage_ratio'])})")
    cg, cr = res["nearest_training_film"]["generated"], res["nearest_training_film"]["real_val"]
    print(f"nearest training film (correlation): generated median {cg['median']:.3f}, near-copies "
          f"{cg['near_copy_share']:.1%}; real median {cr['median']:.3f}, near-copies {cr['near_copy_share']:.1%}")
    for label, v in res["adherence"]["per_finding"].items():
        rr = "n/a" if v["real_recall"] is None else f"{v['real_recall']:.0%}"
        print(f"  {label:18s} {v['n_prompts']:4d} prompts, judge reads the asked class {v['adherence']:.0%}"
              f" (real films: {rr} of {v['real_n']})")
    ceiling = res.get("reconstruction")
    if ceiling:
        print(f"autoencoder ceiling (real images encoded and decoded): Frechet {ceiling['frechet_vs_train']:.3f}, "
              f"classifier accuracy {ceiling['accuracy']:.1%}")
    if args.split == "tune":
        print("split 'tune': training films the model saw; compare settings with these figures, do not report them")
    print(f"wrote {out / 'eval.json'} and {out / 'eval_grid.png'}")
    return 0


def _json_or_empty(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _findings(args, pipe, clf, records, images, out: Path) -> int:
    from ..core.data.findings import drawn_poorly, weak_note
    from ..core.evaluate import FINDING_PROMPTS, findings_check
    from ..core.modelfolder import FINDINGS_CHECK_FILE

    if args.findings < 1:
        raise CliError("--findings needs at least 1 film per prompt")
    bar = None
    if not args.quiet:
        from tqdm import tqdm

        bar = tqdm(total=args.findings * len(FINDING_PROMPTS), desc="findings check", unit="film")
    pipe.warm_up()
    res, _ = findings_check(pipe, clf, records, images, n=args.findings, steps=args.steps, split=args.split,
                            on_progress=(lambda d, t: bar.update(1)) if bar else None)
    if bar:
        bar.close()
    out.mkdir(parents=True, exist_ok=True)
    (out / FINDINGS_CHECK_FILE).write_text(json.dumps(res, indent=2))
    print(f"judge reads (normal / COVID-19 / other finding), {args.findings} films per prompt, "
          f"guidance {res['guidance']:g}, seeds {res['seeds'][0]}-{res['seeds'][1]}")
    for f in res["findings"]:
        def pct(r):
            return "n/a" if r is None else " / ".join(f"{100 * r[c]:3.0f}" for c in res["classes"]) + "%"

        print(f"{f['label']:13s} generated {pct(f['generated'])}   real ({f['real_n']:4d}) {pct(f['real'])}"
              f"   real after the autoencoder {pct(f['real_autoencoded'])}")
    for f in filter(drawn_poorly, res["findings"]):
        print(f"drawn poorly: {weak_note(f)}")
    print(f"wrote {out / FINDINGS_CHECK_FILE} (copy it into the model folder to give users these hints)")
    return 0

