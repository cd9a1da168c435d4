import dataclasses
import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from cxrdesk.core.data import captions as cap
from cxrdesk.core.data import findings as fnd
from cxrdesk.core.data.datasets import read_dataset
from cxrdesk.core.generation.pipeline import Pipeline
from cxrdesk.core.training.encode import encode_dataset
from cxrdesk.core.training.export import export_from_checkpoint
from cxrdesk.core.training.unet import UNetConfig, train_unet
from cxrdesk.core.training.vae import VAEConfig, train_vae

from .fixtures import make_dataset


def test_captions_vary_include_negations_and_notes():
    import random

    rng = random.Random(0)
    normal = {cap.make_caption(["No Finding"], "", rng) for _ in range(50)}
    assert len(normal) > 5
    eff = [cap.make_caption(["Effusion", "Pneumonia"], "", rng) for _ in range(200)]
    assert all("effusion" in c.lower() and "pneumonia" in c.lower() for c in eff)
    assert any("no pneumothorax" in c for c in eff)  # pertinent negatives appear
    assert not any("no pleural effusion" in c for c in eff)  # never negate a present finding
    notes = {cap.make_caption(["COVID-19"], "Diffuse opacities in a 45-year-old man.", rng) for _ in range(50)}
    assert any(c.startswith("Diffuse opacities") and "year-old" not in c for c in notes)
    # COVID-19 films (six to one against pneumonia films here) are always named, never "pneumonia":
    # otherwise a prompt saying "pneumonia" draws the COVID-19 pattern
    covid = {cap.make_caption(["COVID-19"], "", rng) for _ in range(100)}
    assert all("covid-19" in c.lower() and "pneumonia" not in c.lower() for c in covid)
    pool = cap.caption_pool(["Cardiomegaly"], n=6)
    assert len(pool) == len(set(pool)) == 6 and pool == cap.caption_pool(["Cardiomegaly"], n=6)


def test_prompt_findings_respect_negation_and_rare_ones_are_named():
    m = fnd.mentioned_findings
    assert m("Cardiomegaly. No pleural effusion.") == ["Cardiomegaly"]
    assert m("No focal consolidation, effusion or pneumothorax. Normal heart size.") == []
    assert m("Right lower lobe pneumonia with small right pleural effusion") == ["Pneumonia", "Effusion"]
    assert m("no effusion, but a large left pneumothorax") == ["Pneumothorax"]  # 'but' ends the negation
    assert m("Enlarged cardiac silhouette with pulmonary oedema") == ["Cardiomegaly", "Edema"]
    assert m("Massive effusion") == ["Effusion"]  # 'massive' is not a mass
    assert m("normal chest radiograph") == []
    counts = {"No Finding": 8715, "Pneumonia": 555, "Effusion": 75, "Cardiomegaly": 13}
    assert fnd.rare_findings("Cardiomegaly and pneumonia; small effusion", counts) == [
        ("Cardiomegaly", 13), ("Effusion", 75)]
    assert fnd.rare_findings("Hiatal hernia", counts) == [("Hernia", 0)]  # never seen: 0 films
    assert fnd.rare_findings("Cardiomegaly", {}) == []  # a model folder without counts: no claim
    assert fnd.rare_note([("Cardiomegaly", 13)]).startswith("Few training films show cardiomegaly (13)")
    assert "draw them" in fnd.rare_note([("COVID-19", 5), ("Effusion", 7)])


def test_findings_drawn_poorly_are_named_from_the_findings_check():
    from .fixtures import FINDINGS_CHECK

    weak = fnd.weak_findings("Right lower lobe pneumonia with a small pleural effusion", FINDINGS_CHECK)
    assert [f["label"] for f in weak] == ["Pneumonia"]  # effusion: 75% vs 100% of real films, not poor
    note = fnd.weak_note(weak[0])
    assert note.startswith("Asked for pneumonia, this model mostly draws COVID-19-like films")
    assert "16 of the 16 films" in note and "1 of 39 real pneumonia films" in note
    assert fnd.weak_findings("No pneumonia. Normal chest.", FINDINGS_CHECK) == []  # negated
    # pneumonia films read as COVID-19, which is what a COVID-19 pneumonia prompt asks for
    assert fnd.weak_findings("Bilateral ground-glass opacities, COVID-19 pneumonia", FINDINGS_CHECK) == []
    assert fnd.weak_findings("Pneumonia with no COVID-19 features", FINDINGS_CHECK)[0]["label"] == "Pneumonia"
    assert fnd.weak_findings("right lower lobe pneumonia", None) == []  # no check in the folder
    assert fnd.weak_findings("pneumonia", {"findings": [{"label": "Pneumonia", "generated": 1}]}) == []  # malformed
    assert fnd.weak_findings("pneumonia", {"findings": "nonsense"}) == []
    # the finding's own class is the largest share, but far below the real films': said so
    faint = {**FINDINGS_CHECK["findings"][1], "generated": {"normal": 0.3, "covid": 0.3, "other": 0.4}}
    assert fnd.drawn_poorly(faint)
    assert fnd.weak_note(faint).startswith("This model draws effusion less clearly than real films")
    assert "6 of the 16 films" in fnd.weak_note(faint) and "8 of 8 real effusion films" in fnd.weak_note(faint)


def test_iu_layout_is_read(tmp_path):
    import cv2

    from .fixtures import phantom

    (tmp_path / "images").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "1_IM-0001-4001.dcm.png"), phantom(1))
    cv2.imwrite(str(tmp_path / "images" / "1_IM-0001-3001.dcm.png"), phantom(2))
    with open(tmp_path / "indiana_reports.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["uid", "MeSH", "Problems", "image", "indication", "comparison", "findings", "impression"])
        w.writerow(["1", "x", "Cardiomegaly;Pleural Effusion", "x", "", "", "Enlarged heart. XXXX effusion.", "Cardiomegaly."])
    with open(tmp_path / "indiana_projections.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["uid", "filename", "projection"])
        w.writerow(["1", "1_IM-0001-4001.dcm.png", "Frontal"])
        w.writerow(["1", "1_IM-0001-3001.dcm.png", "Lateral"])
    recs = read_dataset(tmp_path)
    assert len(recs) == 1
    assert recs[0].labels == ["Cardiomegaly", "Effusion"]
    assert "XXXX" not in recs[0].text and "Enlarged heart" in recs[0].text


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The stages run once on a tiny dataset (one corrupt file): VAE 3 steps then resumed to 5,
    encoding, UNet 4 steps (its export) then resumed to 6. Tests copy ``run`` before changing it."""
    tmp = tmp_path_factory.mktemp("stages")
    data = make_dataset(tmp / "data", n=12, corrupt=True)
    run = tmp / "run"
    facts = {"data": data, "run": run, "tmp": tmp}
    cfg = VAEConfig(steps=3, batch=2, crop=64, preset="tiny", ckpt_every=2, sample_every=3)
    facts["vae_final"] = train_vae(str(data), run, cfg, threads=1, progress=False)
    facts["vae_steps_first"] = [r["step"] for r in csv.DictReader(open(run / "vae" / "loss.csv"))]
    cfg.steps = 5
    train_vae(str(data), run, cfg, threads=1, progress=False)
    facts["cache"] = encode_dataset(str(data), run, threads=1, progress=False)
    ucfg = UNetConfig(steps=4, batch=4, preset="tiny", ckpt_every=2, export_every=4, sample_every=4)
    facts["model"] = train_unet(run, ucfg, threads=1, progress=False)
    facts["model_steps_first"] = json.loads((facts["model"] / "cxrdesk.json").read_text())["training"]["unet_steps"]
    ucfg.steps = 6
    train_unet(run, ucfg, threads=1, progress=False)
    return facts


def test_vae_skips_a_corrupt_file_and_resumes_from_its_checkpoint(trained):
    run = trained["run"]
    assert (trained["vae_final"] / "config.json").is_file()
    index = json.loads((run / "images_256.json").read_text())
    assert index["skipped"] == 1 and len(index["uids"]) == 12  # corrupt file skipped, not fatal
    assert trained["vae_steps_first"][-1] == "3"
    # resumed: the steps continue from the checkpoint, not from zero
    steps = [r["step"] for r in csv.DictReader(open(run / "vae" / "loss.csv"))]
    assert steps[-1] == "5" and steps[:len(trained["vae_steps_first"])] == trained["vae_steps_first"]
    assert list((run / "vae").glob("recon_*.png"))


def test_encode_caches_latents_their_scaling_and_an_unconditional_caption(trained):
    cache = trained["cache"]
    assert np.load(cache / "latents.npy").shape == (12, 4, 32, 32)
    assert json.loads((cache / "done.json").read_text())["scaling_factor"] > 0
    assert json.loads((cache / "captions.json").read_text())[0] == ""


def test_unet_exports_a_model_folder_that_generates_and_records_its_training(trained, tmp_path):
    run = trained["run"]
    assert list((run / "unet").glob("samples_*.png"))
    assert trained["model_steps_first"] == 4  # exported at step 4 (export_every), again when resumed
    pipe = Pipeline.load(trained["model"])
    scaling = json.loads((trained["cache"] / "done.json").read_text())["scaling_factor"]
    assert pipe.vae.config.scaling_factor == pytest.approx(scaling)
    assert pipe.generate("normal chest radiograph", steps=2, seed=0).image.shape == (256, 256)
    p2 = Pipeline.load(export_from_checkpoint(run, tmp_path / "exported", name="my-model"))
    assert p2.info["name"] == "my-model" and p2.info["training"]["unet_steps"] == 6  # the resumed run's
    assert p2.info["guidance"] == 4.0  # no recommendation given: the default
    assert p2.info["guidance_interval"] == (0.0, 1.0) and p2.info["noise_offset"] == 0.0
    # training-film counts per finding (validation films left out: 9 of the 12 fixture films)
    assert p2.info["training"]["label_counts"] == {"No Finding": 3, "COVID-19": 3, "Effusion": 3, "Pneumonia": 3}
    tuned = Pipeline.load(export_from_checkpoint(run, tmp_path / "tuned", guidance=5.5, guidance_interval=(0.25, 1)))
    assert tuned.info["guidance"] == 5.5 and tuned.info["guidance_interval"] == (0.25, 1.0)


def test_a_run_initialised_from_a_model_starts_from_its_weights(trained, tmp_path):
    import shutil

    import torch

    out = export_from_checkpoint(trained["run"], tmp_path / "exported")
    run2 = tmp_path / "run2"
    shutil.copytree(trained["run"] / "cache", run2 / "cache")
    shutil.copytree(trained["run"] / "vae", run2 / "vae")
    m2 = train_unet(run2, UNetConfig(steps=1, batch=2, preset="tiny", lr=0.0, init_from=str(out),
                                     export_every=1, sample_every=10), threads=1, progress=False)
    a = Pipeline.load(out).unet.state_dict()
    b = Pipeline.load(m2).unet.state_dict()
    assert all(torch.allclose(a[k], b[k]) for k in a)


def test_resuming_with_a_new_offset_or_balance_records_where_it_started(trained, tmp_path):
    """Offset noise as a fine-tune: resuming with a new offset records where it started, resuming
    without one keeps it, and the exported folder makes generation use it; asking for the finding
    balance turns the class balance off, from that step."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained["run"], run, symlinks=True)
    more = dict(batch=4, preset="tiny", sample_every=100, export_every=100)

    def params():
        return json.loads((run / "unet" / "params.json").read_text())

    train_unet(run, UNetConfig(steps=7, noise_offset=0.1, **more), threads=1, progress=False)
    assert params()["noise_offset"] == 0.1 and params()["noise_offset_since"] == 6
    train_unet(run, UNetConfig(steps=8, **more), threads=1, progress=False)
    assert params()["noise_offset"] == 0.1 and params()["noise_offset_since"] == 6
    train_unet(run, UNetConfig(steps=9, class_balance=0.5, **more), threads=1, progress=False)
    assert params()["class_balance"] == 0.5 and params()["class_balance_since"] == 8
    assert params()["noise_offset"] == 0.1 and params()["noise_offset_since"] == 6
    p3 = Pipeline.load(export_from_checkpoint(run, tmp_path / "offset"))
    assert p3.info["training"]["unet"]["class_balance"] == 0.5
    train_unet(run, UNetConfig(steps=10, finding_balance=0.5, **more), threads=1, progress=False)
    assert params()["finding_balance"] == 0.5 and params()["finding_balance_since"] == 9
    assert params()["class_balance"] == 0.0 and params()["class_balance_since"] == 9
    assert p3.info["noise_offset"] == 0.1
    with_offset = p3.generate("normal chest radiograph", steps=2, seed=3).image
    assert np.array_equal(with_offset, p3.generate("normal chest radiograph", steps=2, seed=3).image)
    p3.model = dataclasses.replace(p3.model, noise_offset=0.0)
    assert not np.array_equal(with_offset, p3.generate("normal chest radiograph", steps=2, seed=3).image)


def _run_group(cmd, env, timeout=300):
    """Run a command in its own process group; on time-out kill the whole group (no orphans)."""
    import signal

    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        pytest.fail(f"torchrun timed out: {err[-2000:]}")
    return subprocess.CompletedProcess(cmd, p.returncode, out, err)


def test_torchrun_two_process_gloo_unet_training(tmp_path):
    """DistributedDataParallel on CPU with the gloo backend, launched by torchrun."""
    data = make_dataset(tmp_path / "data", n=8)
    run = tmp_path / "run"
    train_vae(str(data), run, VAEConfig(steps=1, batch=2, crop=64, preset="tiny"), threads=1, progress=False)
    encode_dataset(str(data), run, threads=1, progress=False)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "cxrdesk", "train", "unet", "--run-dir", str(run), "--steps", "3", "--batch", "4",
           "--preset", "tiny", "--threads", "1", "--device", "cpu", "--quiet", "--sample-every", "3"]
    r = _run_group(cmd, env)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = list(csv.DictReader(open(run / "unet" / "loss.csv")))
    assert rows[-1]["step"] == "3"
    assert Pipeline.load(run / "model").info["training"]["unet_steps"] == 3
    # also the VAE stage with two processes
    cmd_vae = cmd[:cmd.index("train")] + ["train", "vae", "--data", str(data), "--run-dir", str(run), "--steps", "2",
                                          "--batch", "2", "--preset", "tiny", "--threads", "1", "--device", "cpu",
                                          "--quiet"]
    r = _run_group(cmd_vae, env)
    assert r.returncode == 0, r.stderr[-2000:]


def test_decoder_finetune_keeps_encoder_and_latents(tmp_path):
    import torch
    from diffusers import AutoencoderKL

    data = make_dataset(tmp_path / "data", n=6)
    run = tmp_path / "run"
    train_vae(str(data), run, VAEConfig(steps=2, batch=2, crop=64, preset="tiny"), threads=1, progress=False)
    before = AutoencoderKL.from_pretrained(run / "vae" / "final").state_dict()
    # with the adversarial term on, interrupted after 2 steps and resumed (discriminator included)
    cfg = VAEConfig(steps=2, batch=2, crop=64, preset="tiny", decoder_only=True, lr=1e-2, adv_weight=0.5,
                    adv_start=0, ckpt_every=1)
    train_vae(str(data), run, cfg, threads=1, progress=False)
    assert "disc" in torch.load(run / "decoder" / "ckpt.pt", weights_only=True)
    cfg.steps = 3
    train_vae(str(data), run, cfg, threads=1, progress=False)
    after = AutoencoderKL.from_pretrained(run / "vae" / "final").state_dict()
    enc = [k for k in before if k.startswith(("encoder.", "quant_conv."))]
    dec = [k for k in before if k.startswith(("decoder.", "post_quant_conv."))]
    assert enc and dec
    assert all(torch.equal(before[k], after[k]) for k in enc)
    assert any(not torch.equal(before[k], after[k]) for k in dec)
    rows = list(csv.DictReader(open(run / "decoder" / "loss.csv")))
    assert rows[-1]["step"] == "3"
    assert float(rows[-1]["d"]) >= 0 and float(rows[-1]["adv_w"]) >= 0


def test_captions_only_reencodes_text_and_keeps_latents(tmp_path, monkeypatch):
    data = make_dataset(tmp_path / "data", n=6)
    run = tmp_path / "run"
    train_vae(str(data), run, VAEConfig(steps=1, batch=2, crop=64, preset="tiny"), threads=1, progress=False)
    cache = encode_dataset(str(data), run, threads=1, progress=False)
    latents, done = (cache / "latents.npy").read_bytes(), (cache / "done.json").read_text()
    assert "a re-worded covid caption" not in (cache / "captions.json").read_text()
    monkeypatch.setitem(cap.PHRASES, "COVID-19", ["a re-worded covid caption"])
    assert encode_dataset(str(data), run, threads=1, progress=False) == cache  # done: nothing re-encoded
    assert "a re-worded covid caption" not in (cache / "captions.json").read_text()
    encode_dataset(str(data), run, threads=1, progress=False, captions_only=True)
    texts = json.loads((cache / "captions.json").read_text())
    assert "a re-worded covid caption" in texts and texts[0] == ""
    ids = np.load(cache / "caption_ids.npy")
    assert ids.shape[0] == 6 and ids.max() < len(np.load(cache / "text_emb.npy")) == len(texts)
    records = json.loads((cache / "records.json").read_text())
    covid = [i for i, r in enumerate(records) if "COVID-19" in r["labels"] and i != 1]  # film 1 has a note
    assert covid and all("a re-worded covid caption" in texts[j] for i in covid for j in ids[i])
    assert (cache / "latents.npy").read_bytes() == latents and (cache / "done.json").read_text() == done
    assert not list(cache.glob("*.tmp"))
    other = make_dataset(tmp_path / "other", n=5)
    with pytest.raises(ValueError, match="was encoded from"):
        encode_dataset(str(other), run, threads=1, progress=False, captions_only=True)
    r = subprocess.run([sys.executable, "-m", "cxrdesk", "train", "encode", "--captions-only", "--data", str(data),
                        "--run-dir", str(tmp_path / "empty-run")], capture_output=True, text=True)
    assert r.returncode != 0 and "no encoded dataset" in r.stderr and "Traceback" not in r.stderr


def test_csv_log_resume_keeps_existing_columns(tmp_path):
    from cxrdesk.core.training.common import CsvLog

    path = tmp_path / "loss.csv"
    CsvLog(path, ["step", "loss"]).write({"step": 1, "loss": 0.5})
    # a newer version logs more columns; an old run's file keeps its own header and stays rectangular
    CsvLog(path, ["step", "loss", "d"]).write({"step": 2, "loss": 0.4, "d": 0.9})
    rows = list(csv.reader(open(path)))
    assert rows == [["step", "loss"], ["1", "0.5"], ["2", "0.4"]]
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    CsvLog(empty, ["step"]).write({"step": 3})
    assert list(csv.reader(open(empty))) == [["step"], ["3"]]


def test_vae_config_defaults_depend_on_the_stage():
    full, dec = VAEConfig(), VAEConfig(decoder_only=True)
    assert (full.lr, full.adv_weight, full.adv_start) == (2e-4, 0.0, 0)
    assert (dec.lr, dec.adv_weight, dec.adv_start) == (1e-4, 0.1, 500)
    assert VAEConfig(decoder_only=True, adv_weight=0.0, lr=3e-4).adv_weight == 0.0


def test_class_balance_weights_even_out_the_classes():
    from cxrdesk.core.training.unet import class_balance_weights

    labels = [["No Finding"]] * 80 + [["COVID-19"]] * 15 + [["Effusion", "Pneumonia"]] * 5
    assert class_balance_weights(labels, 0) is None  # 0: the data as it is

    def shares(b):
        w = class_balance_weights(labels, b)
        return [float(w[a:z].sum() / w.sum()) for a, z in ((0, 80), (80, 95), (95, 100))]

    assert shares(1) == pytest.approx([1 / 3] * 3)
    half = shares(0.5)  # between the data's 80/15/5 and even thirds, in the same order
    assert 1 / 3 < half[0] < 0.8 and 0.05 < half[2] < 1 / 3 and half[0] > half[1] > half[2]


def test_finding_balance_weights_lift_the_rare_findings_within_other():
    from cxrdesk.core.training.unet import UNetConfig, draw_weights_for, finding_balance_weights

    labels = ([["No Finding"]] * 60 + [["COVID-19"]] * 24 + [["Infiltration"]] * 12
              + [["Infiltration", "Pneumonia"]] * 4)
    assert finding_balance_weights(labels, 0) is None

    def shares(w):
        return [float(w[a:z].sum() / w.sum()) for a, z in ((0, 60), (60, 84), (84, 96), (96, 100))]

    # 1: every rarest-finding group the same share; a film counts by its rarest finding, so the four
    # pneumonia films (also infiltration) form a group of their own
    assert shares(finding_balance_weights(labels, 1)) == pytest.approx([1 / 4] * 4)
    half = shares(finding_balance_weights(labels, 0.5))
    assert half[0] < 0.6 and half[3] > 0.04 and half[0] > half[1] > half[2] > half[3]
    # the class balance cannot tell pneumonia from infiltration: both get the same per-film weight
    cls = draw_weights_for(labels, UNetConfig(class_balance=1.0))
    assert cls[84] == cls[99]
    assert draw_weights_for(labels, UNetConfig()) is None
    with pytest.raises(ValueError):
        draw_weights_for(labels, UNetConfig(class_balance=0.5, finding_balance=0.5))


def test_unet_learning_rate_warms_up_holds_then_anneals():
    from cxrdesk.core.training.unet import LR_DECAY_END, UNetConfig, unet_lr

    flat = UNetConfig(steps=1000, lr=1e-4, warmup=100)
    assert unet_lr(flat, 0) == pytest.approx(1e-6)  # warm-up
    assert unet_lr(flat, 99) == unet_lr(flat, 999) == pytest.approx(1e-4)  # constant to the end
    ann = UNetConfig(steps=1000, lr=1e-4, warmup=100, lr_decay_steps=400)
    assert unet_lr(ann, 599) == pytest.approx(1e-4)  # before the anneal
    assert unet_lr(ann, 799) == pytest.approx(1e-4 * (1 + LR_DECAY_END) / 2)  # half-way down
    assert unet_lr(ann, 999) == pytest.approx(1e-4 * LR_DECAY_END)  # the last step
    assert unet_lr(ann, 1500) == pytest.approx(1e-4 * LR_DECAY_END)  # never below the floor
    assert all(unet_lr(ann, s) >= unet_lr(ann, s + 1) for s in range(100, 999))


def test_cli_rejects_an_anneal_longer_than_the_run(tmp_path):
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "done.json").write_text("{}")
    r = subprocess.run([sys.executable, "-m", "cxrdesk", "train", "unet", "--run-dir", str(tmp_path),
                        "--steps", "10", "--lr-decay-steps", "20"], capture_output=True, text=True)
    assert r.returncode != 0 and "--lr-decay-steps must be between 0 and --steps" in r.stderr


def test_cli_rejects_both_balances(tmp_path):
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "done.json").write_text("{}")
    r = subprocess.run([sys.executable, "-m", "cxrdesk", "train", "unet", "--run-dir", str(tmp_path),
                        "--steps", "10", "--class-balance", "0.5", "--finding-balance", "0.5"],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "not both" in r.stderr


def test_decoder_from_a_model_folder_exports_with_that_models_unet(tmp_path, tiny_model_dir):
    """Sharpen a shipped model's decoder: `train decoder --init-from M`, then `train export --init-from M`
    pairs the new decoder with M's UNet and sampling settings; a VAE with another encoder is refused."""
    import shutil

    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from .fixtures import model_copy_recommending

    from cxrdesk.core.training.distill import build_student, export_student

    model = model_copy_recommending(tiny_model_dir, tmp_path / "model", guidance=5.5, interval=[0.2, 1.0])
    meta = json.loads((model / "cxrdesk.json").read_text())
    meta["noise_offset"] = 0.1
    (model / "cxrdesk.json").write_text(json.dumps(meta))
    export_student(model, build_student(UNet2DConditionModel.from_pretrained(model / "unet")), model, step=3)
    teacher_hash = json.loads((model / "cxrdesk.json").read_text())["student"]["teacher_hash"]
    data = make_dataset(tmp_path / "data", n=6)
    run = tmp_path / "run"
    cli = [sys.executable, "-m", "cxrdesk", "train"]
    r = subprocess.run(cli + ["decoder", "--run-dir", str(run), "--data", str(data), "--steps", "2", "--batch", "2",
                              "--threads", "1", "--quiet"], capture_output=True, text=True)
    assert r.returncode != 0 and "--init-from" in r.stderr  # no VAE in the run: says how to start from a model
    r = subprocess.run(cli + ["decoder", "--run-dir", str(run), "--data", str(data), "--steps", "2", "--batch", "2",
                              "--threads", "1", "--init-from", str(model), "--adv-weight", "0", "--quiet"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    out = tmp_path / "sharper"
    r = subprocess.run(cli + ["export", "--run-dir", str(run), "--init-from", str(model), "--out", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]

    base, new = (AutoencoderKL.from_pretrained(d).state_dict() for d in (model / "vae", out / "vae"))
    enc = [k for k in base if k.startswith(("encoder.", "quant_conv."))]
    assert all(torch.equal(base[k], new[k]) for k in enc)
    assert any(not torch.equal(base[k], new[k]) for k in base if k.startswith("decoder."))
    unets = [UNet2DConditionModel.from_pretrained(d).state_dict() for d in (model / "unet", out / "unet")]
    assert all(torch.equal(unets[0][k], unets[1][k]) for k in unets[0])
    written = json.loads((out / "cxrdesk.json").read_text())
    assert written["sampling"] == {"guidance": 5.5, "guidance_interval": [0.2, 1.0]}
    assert written["noise_offset"] == 0.1
    assert written["training"]["decoder"]["steps"] == 2 and written["training"]["decoder"]["adv_weight"] == 0.0
    pipe = Pipeline.load(out)
    assert pipe.info["guidance"] == 5.5
    assert pipe.generate("normal chest radiograph", steps=2, seed=1).image.shape == (256, 256)
    # the model's student draws the same latents, so it comes along, tied to the new weights
    student = written["student"]
    assert student["distilled_against"] == teacher_hash and student["teacher_hash"] != teacher_hash
    assert student["distill_steps"] == 3 and pipe.model.student is not None
    assert pipe.generate("normal chest radiograph", seed=1, fast=True).image.shape == (256, 256)
    olds, news = (UNet2DConditionModel.from_pretrained(d / "student").state_dict() for d in (model, out))
    assert all(torch.equal(olds[k], news[k]) for k in olds)

    # a run whose VAE encodes differently (here: another random tiny VAE) cannot borrow that UNet
    other = tmp_path / "other-run"
    from .fixtures import make_tiny_model

    make_tiny_model(tmp_path / "other-model", seed=3)
    (other / "vae").mkdir(parents=True)
    shutil.copytree(tmp_path / "other-model" / "vae", other / "vae" / "final")
    r = subprocess.run(cli + ["export", "--run-dir", str(other), "--init-from", str(model), "--out", str(tmp_path / "x")],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "encodes differently" in r.stderr
    assert not (tmp_path / "x").exists()


def test_deepen_vae_starts_as_the_same_autoencoder_and_keeps_one_encoder(tiny_model_dir):
    """`deepen_vae`: more residual blocks per resolution, the added ones the identity, so the deeper VAE
    encodes and decodes exactly as the original; `same_encoder` sees one encoder until an added encoder
    block computes something; a VAE is never made shallower."""
    import torch
    from diffusers import AutoencoderKL

    from cxrdesk.core.training.vae import deepen_vae, same_encoder

    vae = AutoencoderKL.from_pretrained(tiny_model_dir / "vae").float().eval()
    deep = deepen_vae(vae, 3).eval()
    assert deep.config.layers_per_block == 3 and len(deep.decoder.up_blocks[0].resnets) == 4
    assert sum(p.numel() for p in deep.decoder.parameters()) > sum(p.numel() for p in vae.decoder.parameters())
    x = torch.rand(2, vae.config.in_channels, 64, 64) * 2 - 1
    with torch.no_grad():
        z, zd = vae.encode(x).latent_dist.mode(), deep.encode(x).latent_dist.mode()
        assert torch.allclose(z, zd, atol=1e-6)
        assert torch.allclose(vae.decode(z).sample, deep.decode(z).sample, atol=1e-6)
    assert same_encoder(deep, vae) and same_encoder(vae, deep)
    assert deepen_vae(vae, 1) is vae
    with pytest.raises(ValueError, match="shallower"):
        deepen_vae(deep, 2)
    with torch.no_grad():
        deep.encoder.down_blocks[0].resnets[2].conv2.bias[0] = 0.01  # an added encoder block now computes
    assert not same_encoder(deep, vae)


def test_a_deeper_decoder_trains_from_a_model_and_exports_with_its_unet(tmp_path, tiny_model_dir):
    """`train decoder --init-from M --decoder-layers 2`: the run's VAE is M's, deepened; it trains,
    resumes only at that depth, and `export --init-from M` pairs it with M's UNet (the encoder is M's)."""
    from diffusers import AutoencoderKL

    data = make_dataset(tmp_path / "data", n=6)
    run, out = tmp_path / "run", tmp_path / "deeper"
    cli = [sys.executable, "-m", "cxrdesk", "train"]
    common = ["--run-dir", str(run), "--data", str(data), "--batch", "2", "--threads", "1", "--quiet"]
    r = subprocess.run(cli + ["vae"] + common + ["--decoder-layers", "2"], capture_output=True, text=True)
    assert r.returncode != 0 and "--decoder-layers applies to 'train decoder' only" in r.stderr
    r = subprocess.run(cli + ["decoder"] + common + ["--steps", "2", "--init-from", str(tiny_model_dir),
                                                     "--decoder-layers", "2", "--adv-weight", "0"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert AutoencoderKL.load_config(run / "vae" / "final")["layers_per_block"] == 2
    r = subprocess.run(cli + ["decoder"] + common + ["--steps", "3", "--decoder-layers", "3"], capture_output=True,
                       text=True)
    assert r.returncode != 0 and "new run folder" in r.stderr
    r = subprocess.run(cli + ["export", "--run-dir", str(run), "--init-from", str(tiny_model_dir), "--out", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert AutoencoderKL.load_config(out / "vae")["layers_per_block"] == 2
    assert Pipeline.load(out).generate("normal chest radiograph", steps=2, seed=1).image.shape == (256, 256)


def test_a_vae_with_more_latent_channels_trains_resumes_and_feeds_the_unet(tmp_path, tiny_model_dir):
    """`train vae --latent-channels 8`: the VAE keeps 8 channels through a resume, refuses another
    count, its latents are cached with 8 channels, and a UNet trained on them draws a film; a UNet
    can start from a 4-channel model's weights (all but its input and output layers)."""
    import torch
    from safetensors.torch import load_file

    from cxrdesk.core.training.vae import load_vae

    data = make_dataset(tmp_path / "data", n=6)
    run = tmp_path / "run"
    cli = [sys.executable, "-m", "cxrdesk", "train", "vae", "--run-dir", str(run), "--data", str(data),
           "--preset", "tiny", "--batch", "2", "--threads", "1", "--quiet"]
    r = subprocess.run(cli + ["--steps", "2", "--latent-channels", "8"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    r = subprocess.run(cli + ["--steps", "3", "--latent-channels", "4"], capture_output=True, text=True)
    assert r.returncode != 0 and "8 latent channels, not 4" in r.stderr
    r = subprocess.run(cli + ["--steps", "3"], capture_output=True, text=True)  # resumes with its own 8
    assert r.returncode == 0, r.stderr[-2000:]
    assert list(csv.DictReader(open(run / "vae" / "loss.csv")))[-1]["step"] == "3"
    for where in (run, run / "vae" / "ckpt.pt"):  # the run folder's final VAE and the checkpoint alike
        assert load_vae(where).config.latent_channels == 8
    r = subprocess.run(cli[:4] + ["decoder"] + cli[5:] + ["--steps", "1", "--latent-channels", "8"],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "'train vae' only" in r.stderr

    cache = encode_dataset(str(data), run, threads=1, progress=False)
    assert np.load(cache / "latents.npy").shape == (6, 8, 32, 32)
    cfg = UNetConfig(steps=1, batch=2, preset="tiny", export_every=1, sample_every=1, lr=1e-12,
                     init_from=str(tiny_model_dir))
    model = train_unet(run, cfg, threads=1, progress=False)
    pipe = Pipeline.load(model)
    assert pipe.unet.config.in_channels == pipe.unet.config.out_channels == 8
    assert pipe.generate("normal chest radiograph", steps=2, seed=0).image.shape == (256, 256)
    source = load_file(str(next((tiny_model_dir / "unet").glob("*.safetensors"))))
    now = pipe.unet.state_dict()
    carried = [k for k in source if not k.startswith(("conv_in.", "conv_out."))]
    assert carried and all(torch.allclose(now[k].float(), source[k].float(), atol=1e-3) for k in carried)
    assert now["conv_in.weight"].shape[1] == 8 and source["conv_in.weight"].shape[1] == 4

    with pytest.raises(ValueError, match="another size"):  # another preset's UNet does not fit
        from cxrdesk.core.generation.models import build_unet
        from cxrdesk.core.training.unet import init_across_latent_channels

        init_across_latent_channels(build_unet("tiny", 32, 8), build_unet("default", 32, 4).state_dict())


def test_channel_norm_trains_each_latent_channel_at_unit_variance_and_the_model_decodes_with_it(tmp_path):
    """`train unet --channel-norm`: the UNet sees each latent channel at zero mean and unit variance;
    the statistics travel in the checkpoint and the exported VAE config (diffusers' latents_mean /
    latents_std), the pipeline decodes through them, and a resume keeps the run's choice."""
    import torch

    from cxrdesk.core.generation.models import latent_scaling, unet_to_vae_latents, vae_to_unet_latents
    from cxrdesk.core.training.common import load_ckpt
    from cxrdesk.core.training.unet import channel_stats

    data = make_dataset(tmp_path / "data", n=6)
    run = tmp_path / "run"
    train_vae(str(data), run, VAEConfig(steps=1, batch=2, crop=64, preset="tiny"), threads=1, progress=False)
    cache = encode_dataset(str(data), run, threads=1, progress=False)
    raw = torch.from_numpy(np.load(cache / "latents.npy")).float()
    meta = json.loads((cache / "done.json").read_text())
    stats = channel_stats(raw)
    z = vae_to_unet_latents(raw, latent_scaling(meta["scaling_factor"], stats))
    assert torch.allclose(z.mean(dim=(0, 2, 3)), torch.zeros(4), atol=1e-4)
    assert torch.allclose(z.std(dim=(0, 2, 3)), torch.ones(4), atol=1e-4)
    assert torch.allclose(vae_to_unet_latents(raw, latent_scaling(meta["scaling_factor"])), raw * meta["scaling_factor"])

    cfg = UNetConfig(steps=2, batch=2, preset="tiny", ckpt_every=1, export_every=2, sample_every=2, channel_norm=True)
    pipe = Pipeline.load(train_unet(run, cfg, threads=1, progress=False))
    vc = pipe.vae.config
    train_films = [i for i, r in enumerate(json.loads((cache / "records.json").read_text())) if r["split"] != "val"]
    assert vc.scaling_factor == 1.0 and len(vc.latents_mean) == len(vc.latents_std) == 4
    assert np.allclose(vc.latents_mean, channel_stats(raw[train_films])["mean"], atol=1e-5)
    assert pipe.info["training"]["latent_norm"] == "per channel"
    assert load_ckpt(run / "unet" / "ckpt.pt")["latent_norm"]["std"] == vc.latents_std
    # the conversions invert each other, and the pipeline decodes a normalised latent to the VAE's film
    assert torch.allclose(unet_to_vae_latents(vae_to_unet_latents(raw[:2], vc), vc), raw[:2], atol=1e-5)
    direct = ((pipe.vae.decode(raw[:1]).sample.float().clamp(-1, 1) + 1) / 2)[0, 0].detach().numpy()
    assert np.allclose(pipe.decode(vae_to_unet_latents(raw[:1], vc)), direct, atol=1e-4)
    assert pipe.generate("normal chest radiograph", steps=2, seed=0).image.shape == (256, 256)

    with pytest.raises(ValueError, match="per-channel latent normalisation"):
        train_unet(run, UNetConfig(steps=3, batch=2, preset="tiny", channel_norm=False), threads=1, progress=False)
    train_unet(run, UNetConfig(steps=3, batch=2, preset="tiny", ckpt_every=1), threads=1, progress=False)  # keeps it
    out = Pipeline.load(export_from_checkpoint(run, tmp_path / "exported"))
    assert out.info["training"]["unet_steps"] == 3 and out.vae.config.latents_std == vc.latents_std
    # a run that started with one scaling factor refuses to switch
    plain = tmp_path / "plain"
    plain.mkdir()
    for f in ("vae", "cache", "images_256.npy", "images_256.json"):
        os.symlink(run / f, plain / f)
    train_unet(plain, UNetConfig(steps=1, batch=2, preset="tiny", ckpt_every=1), threads=1, progress=False)
    assert load_ckpt(plain / "unet" / "ckpt.pt")["latent_norm"] is None
    with pytest.raises(ValueError, match="without per-channel"):
        train_unet(plain, UNetConfig(steps=2, batch=2, preset="tiny", channel_norm=True), threads=1, progress=False)


def test_diffusion_loss_targets_the_noise_or_the_velocity_with_the_same_min_snr_weight_on_the_film():
    """Both targets weigh a given error in the recovered clean latent alike (min-SNR-gamma)."""
    import torch
    from diffusers import DDPMScheduler

    from cxrdesk.core.generation.models import scheduler_config
    from cxrdesk.core.training.unet import diffusion_loss

    sched = DDPMScheduler(**scheduler_config("v_prediction"))
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(4, 3, 8, 8, generator=g), torch.randn(4, 3, 8, 8, generator=g)
    t = torch.tensor([5, 300, 700, 990])
    a = sched.alphas_cumprod[t]
    velocity = sched.get_velocity(x0, noise, t)
    assert float(diffusion_loss(velocity, x0, noise, a, "v_prediction", 5.0)) < 1e-10
    assert float(diffusion_loss(noise, x0, noise, a, "epsilon", 5.0)) < 1e-10
    assert float(diffusion_loss(noise, x0, noise, a, "v_prediction", 5.0)) > 0.01
    # the same clean-latent error, expressed as each model's output, costs the same
    err = 0.1 * torch.randn(x0.shape, generator=g)
    ar = a.view(-1, 1, 1, 1)
    xt = ar.sqrt() * x0 + (1 - ar).sqrt() * noise
    eps_out = (xt - ar.sqrt() * (x0 + err)) / (1 - ar).sqrt()  # an epsilon UNet whose film is off by err
    v_out = (ar.sqrt() * xt - (x0 + err)) / (1 - ar).sqrt()    # a v UNet with the same film
    for k in range(4):
        one = slice(k, k + 1)
        assert torch.allclose(diffusion_loss(eps_out[one], x0[one], noise[one], a[one], "epsilon", 5.0),
                              diffusion_loss(v_out[one], x0[one], noise[one], a[one], "v_prediction", 5.0), rtol=1e-3)


def test_v_prediction_is_recorded_exported_kept_on_resume_and_generates(tmp_path, tiny_model_dir):
    """`train unet --prediction v`: the checkpoint and the model folder's scheduler record it, the
    pipeline samples with it, a resume keeps it, a switch is refused, and a new run can start from an
    epsilon model's weights as a v fine-tune."""
    from cxrdesk.cli import main as cli
    from cxrdesk.core.training.common import load_ckpt

    data = make_dataset(tmp_path / "data", n=6)
    run = tmp_path / "run"
    train_vae(str(data), run, VAEConfig(steps=1, batch=2, crop=64, preset="tiny"), threads=1, progress=False)
    encode_dataset(str(data), run, threads=1, progress=False)
    assert cli(["train", "unet", "--run-dir", str(run), "--steps", "2", "--batch", "2", "--preset", "tiny",
                "--threads", "1", "--quiet", "--prediction", "v", "--init-from", str(tiny_model_dir)]) == 0
    pipe = Pipeline.load(run / "model")
    assert pipe.info["prediction_type"] == "v_prediction"
    assert load_ckpt(run / "unet" / "ckpt.pt")["prediction"] == "v_prediction"
    assert pipe.generate("normal chest radiograph", steps=2, seed=0, sampler="ddim").image.shape == (256, 256)
    train_unet(run, UNetConfig(steps=3, batch=2, preset="tiny", ckpt_every=1), threads=1, progress=False)
    assert Pipeline.load(export_from_checkpoint(run, tmp_path / "out")).info["prediction_type"] == "v_prediction"
    with pytest.raises(ValueError, match="v_prediction prediction"):
        train_unet(run, UNetConfig(steps=4, batch=2, preset="tiny", prediction="epsilon"), threads=1, progress=False)
    assert Pipeline.load(tiny_model_dir).info["prediction_type"] == "epsilon"


def test_zero_terminal_snr_trains_on_pure_noise_is_kept_and_samples_from_the_last_step(tmp_path, tiny_model_dir):
    """`train unet --prediction v --zero-snr`: the schedule's last step is pure noise and still
    carries loss weight; the model folder's scheduler records it, the pipeline samples it with DPM++
    on trailing timesteps (starting at the last training step), a resume keeps it, a switch is
    refused, and an epsilon model cannot use it."""
    import torch
    from diffusers import DDPMScheduler

    from cxrdesk.cli import main as cli
    from cxrdesk.core.generation.models import scheduler_config
    from cxrdesk.core.training.common import load_ckpt
    from cxrdesk.core.training.unet import diffusion_loss

    sched = DDPMScheduler(**scheduler_config("v_prediction", zero_snr=True))
    assert float(sched.alphas_cumprod[-1]) == 0.0
    assert float(DDPMScheduler(**scheduler_config("v_prediction")).alphas_cumprod[-1]) ** 0.5 > 0.06  # 6.8% of the signal left
    with pytest.raises(ValueError, match="needs v prediction"):
        scheduler_config("epsilon", zero_snr=True)
    x0, noise = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    a = sched.alphas_cumprod[torch.tensor([999, 999])]
    wrong = torch.zeros_like(x0)  # at pure noise the velocity target is -x0: predicting 0 is wrong
    assert float(diffusion_loss(wrong, x0, noise, a, "v_prediction", 5.0)) == 0.0  # min-SNR alone: no weight
    assert float(diffusion_loss(wrong, x0, noise, a, "v_prediction", 5.0, snr_floor=1.0)) > 0.5

    data = make_dataset(tmp_path / "data", n=6)
    run = tmp_path / "run"
    train_vae(str(data), run, VAEConfig(steps=1, batch=2, crop=64, preset="tiny"), threads=1, progress=False)
    encode_dataset(str(data), run, threads=1, progress=False)
    r = subprocess.run([sys.executable, "-m", "cxrdesk", "train", "unet", "--run-dir", str(run), "--steps", "1",
                        "--preset", "tiny", "--zero-snr", "--quiet"], capture_output=True, text=True)
    assert r.returncode == 2 and "--zero-snr needs v prediction" in r.stderr
    assert cli(["train", "unet", "--run-dir", str(run), "--steps", "2", "--batch", "2", "--preset", "tiny",
                "--threads", "1", "--quiet", "--prediction", "v", "--zero-snr",
                "--init-from", str(tiny_model_dir)]) == 0
    assert load_ckpt(run / "unet" / "ckpt.pt")["zero_snr"] is True
    pipe = Pipeline.load(run / "model")
    assert pipe.scheduler_config["rescale_betas_zero_snr"] is True
    assert pipe.info["sampler"] == "dpm++"
    res = pipe.generate("normal chest radiograph", steps=3, seed=0)
    assert res.params["sampler"] == "dpm++" and res.image.shape == (256, 256)
    s = pipe.make_scheduler("auto")
    s.set_timesteps(4)
    assert int(s.timesteps[0]) == 999  # the first step is the pure-noise one
    train_unet(run, UNetConfig(steps=3, batch=2, preset="tiny"), threads=1, progress=False)  # resume keeps it
    assert Pipeline.load(export_from_checkpoint(run, tmp_path / "out")).scheduler_config["rescale_betas_zero_snr"]
    with pytest.raises(ValueError, match="zero terminal SNR"):
        train_unet(run, UNetConfig(steps=4, batch=2, preset="tiny", zero_snr=False), threads=1, progress=False)
    tiny = Pipeline.load(tiny_model_dir)  # a model without the schedule keeps DPM++ 2M Karras
    assert tiny.info["sampler"] == "dpm++-karras"
    assert tiny.generate("normal chest radiograph", steps=2, seed=0).params["sampler"] == "dpm++-karras"


def test_decoder_latent_noise_decodes_perturbed_latents_and_only_for_a_decoder(tmp_path):
    """`train decoder --latent-noise S`: the decoder is trained on its encoder's latents plus white
    noise of up to S times each channel's spread; without it, on the latents as they are."""
    import torch

    from cxrdesk.core.generation.models import build_vae
    from cxrdesk.core.training.vae import vae_loss

    vae = build_vae("tiny", 64)
    x = torch.rand(4, 1, 64, 64) * 2 - 1
    with torch.no_grad():
        clean = vae.encode(x).latent_dist.mode()
    seen = []
    decode = vae.decode
    vae.decode = lambda z: (seen.append(z.detach().clone()), decode(z))[1]
    torch.manual_seed(0)
    vae_loss(vae, x, VAEConfig(preset="tiny", decoder_only=True, adv_weight=0))
    vae_loss(vae, x, VAEConfig(preset="tiny", decoder_only=True, adv_weight=0, latent_noise=0.5))
    assert torch.equal(seen[0], clean)
    added = seen[1] - clean
    assert float(added.abs().max()) > 0
    spread = clean.std(dim=(0, 2, 3), keepdim=True)
    assert float((added / spread).std()) < 0.5  # at most 0.5 of the spread, uniform strength: below it
    with pytest.raises(ValueError, match="decoder-only"):
        VAEConfig(latent_noise=0.3)
    r = subprocess.run([sys.executable, "-m", "cxrdesk", "train", "vae", "--data", str(tmp_path), "--run-dir",
                        str(tmp_path / "run"), "--latent-noise", "0.3"], capture_output=True, text=True)
    assert r.returncode != 0 and "--latent-noise applies to 'train decoder' only" in r.stderr


def test_spectral_term_compares_band_power_not_position_and_adds_to_the_decoders_loss(tmp_path):
    """`--spectral-weight W`: per film, L1 between the log power of the film and of its reconstruction
    in radial frequency bands. It is blind to where detail is (a shifted film costs nothing), sees how
    much detail there is at each scale (a blurred film costs most in the fine bands), and is added to
    the decoder's loss at its weight; off by default."""
    import torch
    import torch.nn.functional as F

    from cxrdesk.core.generation.models import build_vae
    from cxrdesk.core.training.vae import SPECTRAL_BANDS, band_log_power, spectral_loss, vae_loss

    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 1, 64, 64, generator=g)
    assert band_log_power(x).shape == (2, len(SPECTRAL_BANDS) - 1)
    assert float(spectral_loss(torch.roll(x, (7, 11), (2, 3)), x)) < 1e-4  # position: free
    blurred = F.avg_pool2d(x, 3, 1, 1)
    drop = band_log_power(x)[0] - band_log_power(blurred)[0]
    assert float(spectral_loss(blurred, x)) > 1.0 and float(drop[-1]) > float(drop[0]) > 0
    vae = build_vae("tiny", 64)
    cfg = VAEConfig(preset="tiny", decoder_only=True, adv_weight=0)
    assert cfg.spectral_weight == 0
    _, parts, _ = vae_loss(vae, x.clamp(-1, 1), cfg)
    assert "spec" not in parts
    base = vae_loss(vae, x.clamp(-1, 1), cfg)[0]
    loss, parts, _ = vae_loss(vae, x.clamp(-1, 1), dataclasses.replace(cfg, spectral_weight=0.5))
    assert loss.item() == pytest.approx(base.item() + 0.5 * parts["spec"], rel=1e-5)
    with pytest.raises(ValueError, match="spectral"):
        VAEConfig(spectral_weight=-1)
    r = subprocess.run([sys.executable, "-m", "cxrdesk", "train", "decoder", "--data", str(tmp_path), "--run-dir",
                        str(tmp_path / "run"), "--spectral-weight", "-1"], capture_output=True, text=True)
    assert r.returncode != 0 and "--spectral-weight must be between 0 and 10" in r.stderr


def test_same_encoder_holds_across_a_model_folders_float16_weights(tmp_path, tiny_model_dir):
    """A run keeps its VAE in float32; the model folder it exports stores float16. The run's decoder
    stage and `export --init-from` must see them as one encoder; a real change is still seen."""
    import torch
    from diffusers import AutoencoderKL

    from cxrdesk.core.training.vae import same_encoder

    folder = AutoencoderKL.from_pretrained(tiny_model_dir / "vae")
    run = AutoencoderKL.from_pretrained(tiny_model_dir / "vae").float()
    with torch.no_grad():
        w = run.encoder.conv_in.weight
        # float32 detail below float16's precision, as training leaves it: the folder holds the rounding
        w.copy_(w.half().float() + w.abs().clamp(min=1e-3) * 1e-5 * torch.sign(torch.randn_like(w)))
        assert not torch.equal(w, folder.encoder.conv_in.weight.float())
    assert same_encoder(run, folder)
    with torch.no_grad():
        run.encoder.conv_in.weight.mul_(1.01)
    assert not same_encoder(run, folder)


def test_optimizer_step_syncs_before_clipping_and_ema_update_moves_toward_the_parameters():
    import torch

    from cxrdesk.core.training.common import ema_update, optimizer_step

    w = torch.nn.Parameter(torch.tensor([3.0, 4.0]))
    opt = torch.optim.SGD([w], lr=99.0)
    seen = []

    def sync():  # runs after backward, before clipping: sees the raw gradient
        seen.append(w.grad.clone())
        w.grad.mul_(10)  # e.g. a sum over processes

    optimizer_step(opt, (w * w).sum(), [w], lr=0.5, clip=1.0, sync=sync)
    assert torch.equal(seen[0], torch.tensor([6.0, 8.0]))
    assert opt.param_groups[0]["lr"] == 0.5
    # gradient (60, 80) clipped to norm 1 -> (0.6, 0.8); step 0.5 * that
    assert torch.allclose(w.detach(), torch.tensor([2.7, 3.6]), atol=1e-5)

    avg = [torch.tensor([0.0, 10.0])]
    ema_update(avg, [w], decay=0.75)
    assert torch.allclose(avg[0], 0.75 * torch.tensor([0.0, 10.0]) + 0.25 * w.detach())
