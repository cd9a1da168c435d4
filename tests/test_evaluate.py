import json

import numpy as np
import pytest

from cxrdesk.cli import main
from cxrdesk.core.evaluate import CLASSES, frechet_distance, record_class

from .fixtures import make_dataset


def test_frechet_distance_properties():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(400, 8))
    b = rng.normal(size=(400, 8))
    assert frechet_distance(a, a) == pytest.approx(0, abs=1e-6)
    near = frechet_distance(a, b)
    far = frechet_distance(a, b + 3.0)
    assert 0 < near < far
    assert far == pytest.approx(near + 8 * 9, rel=0.05)  # a mean shift of 3 in 8 dims adds 72
    assert frechet_distance(a, b * 2) > near  # a wider spread is farther too


def test_record_class():
    assert record_class(["No Finding"]) == "normal"
    assert record_class(["COVID-19", "ARDS"]) == "covid"
    assert record_class(["Effusion"]) == "other"
    assert CLASSES == ("normal", "covid", "other")


def test_film_stats_tell_a_foggy_set_from_a_real_one():
    from cxrdesk.core.quality import film_stats, relative

    rng = np.random.default_rng(0)
    real = np.clip(rng.normal(0.5, 0.25, (20, 32, 32)) + rng.normal(0, 0.1, (20, 1, 1)), 0, 1)
    foggy = 0.5 + 0.4 * (real - 0.5)  # pulled toward the mean grey
    fr, ff = film_stats(real), film_stats((foggy * 255).astype(np.uint8))
    assert ff["contrast"] == pytest.approx(0.4 * fr["contrast"], rel=0.05)
    assert ff["exposure_spread"] < 0.5 * fr["exposure_spread"]
    assert fr["near_black_share"] > 0.01 and ff["near_black_share"] == 0
    assert fr["exposure_mean"] == pytest.approx(ff["exposure_mean"], abs=1.5)
    assert relative(ff, fr)["contrast"] == pytest.approx(0.4, rel=0.05)
    with pytest.raises(ValueError):
        film_stats(np.zeros((0, 4, 4)))


def test_prdc_separates_matching_shifted_and_collapsed_sets():
    from cxrdesk.core.quality import prdc

    rng = np.random.default_rng(1)
    real, same = rng.normal(size=(200, 4)), rng.normal(size=(200, 4))
    m = prdc(real, same)
    assert m["precision"] > 0.8 and m["recall"] > 0.8 and m["coverage"] > 0.8 and 0.7 < m["density"] < 1.3
    far = prdc(real, same + 5)
    assert far["precision"] < 0.05 and far["coverage"] < 0.05
    collapsed = prdc(real, 0.1 * same)  # all in the middle: precise, but covers little of the real spread
    assert collapsed["precision"] > 0.9 and collapsed["coverage"] < m["coverage"] and collapsed["recall"] < 0.3
    assert prdc(real[:4], same[:3])["k"] == 2
    with pytest.raises(ValueError):
        prdc(real[:1], same)


def test_nearest_copies_flags_a_copied_film_and_not_a_new_one():
    from cxrdesk.core.quality import nearest_copies, thumbnails

    rng = np.random.default_rng(2)
    train = rng.random((30, 64, 64)).astype(np.float32)
    copy = np.clip(train[3] * 0.9 + 0.05, 0, 1)  # the same film at another exposure: still a copy
    new = rng.random((64, 64)).astype(np.float32)
    res = nearest_copies(np.stack([copy, new]), thumbnails(train))
    assert res["near_copy_share"] == 0.5 and res["n"] == 2
    assert nearest_copies(new[None], thumbnails(train))["median"] < 0.5


def test_evaluate_command_writes_json_and_grid(tmp_path, tiny_model_dir, capsys):
    data = make_dataset(tmp_path / "data", n=24)
    out = tmp_path / "eval"
    rc = main(["evaluate", "--model", str(tiny_model_dir), "--data", str(data), "--out", str(out),
               "--n", "6", "--steps", "2", "--diversity-sets", "1", "--quiet"])
    assert rc == 0
    res = json.loads((out / "eval.json").read_text())
    assert res["n"] == 6 and res["model_hash"]
    rep = res["diversity"]["repeated"]  # the single set above plus one more, with its spread
    assert rep["sets"] == 2 and len(rep["ratios"]) == 2 and rep["sd"] >= 0
    assert rep["mean"] == pytest.approx(sum(rep["ratios"]) / 2)
    assert res["guidance_interval"] == [0.0, 1.0]  # the model's: the whole schedule
    assert res["sampler"] == "dpm++-karras"  # what "auto" stood for, not "auto"
    for key in ("frechet", "adherence", "diversity"):
        assert res[key]["ratio"] is None or res[key]["ratio"] >= 0
    assert res["frechet"]["real_val_vs_train"] >= 0 and res["frechet"]["generated_vs_train"] > 0
    assert res["frechet"]["real_val_blurred_1px_vs_train"] >= 0
    assert 0 <= res["adherence"]["generated"] <= 1
    assert 0 <= res["classifier"]["val_accuracy"] <= 1
    rec = res["reconstruction"]  # the autoencoder's ceiling on the same real images
    assert rec["frechet_vs_train"] > 0 and 0 <= rec["accuracy"] <= 1
    assert (out / "eval_grid.png").stat().st_size > 0
    printed = capsys.readouterr().out
    assert "Frechet distance" in printed and "adherence" in printed and "diversity" in printed
    assert "autoencoder ceiling" in printed and "diversity over 2 seed sets" in printed
    films = res["films"]
    assert films["generated"]["n"] == films["real_val"]["n"] == 6 and films["ratio"]["contrast"] > 0
    assert 0 <= res["prdc"]["generated"]["coverage"] <= 1 and 0 <= res["prdc"]["real_val"]["recall"] <= 1
    near = res["nearest_training_film"]
    assert -1 <= near["generated"]["median"] <= 1 and 0 <= near["real_val"]["near_copy_share"] <= 1
    assert set(res["adherence"]["per_finding"]) <= {"No Finding", "COVID-19", "Pneumonia", "Effusion", "Fibrosis",
                                                   "Infiltration", "Atelectasis", "Edema", "Cardiomegaly"}
    assert sum(v["n_prompts"] for v in res["adherence"]["per_finding"].values()) >= 6
    assert "contrast (std)" in printed and "coverage" in printed and "nearest training film" in printed
    assert "films" in rec and "prdc" in rec


def test_evaluate_uses_the_pinned_judge_by_default_and_trains_one_only_without_it(tmp_path, tiny_model_dir,
                                                                                   monkeypatch, capsys):
    import cxrdesk.core.evaluate as ev

    data = make_dataset(tmp_path / "data", n=24)
    judge = tmp_path / "judge"
    images = np.stack([np.zeros((64, 64), np.uint8)] * 2)
    from cxrdesk.core.data.datasets import Record

    ev.train_classifier(images, [Record(path="a", labels=[], split="train", uid="a"),
                                 Record(path="b", labels=["COVID-19"], split="train", uid="b")],
                        judge, epochs=1, batch=2, progress=False)
    before = (judge / "classifier.safetensors").read_bytes()
    monkeypatch.setattr(ev, "PINNED_JUDGE", judge)
    args = ["evaluate", "--model", str(tiny_model_dir), "--data", str(data), "--n", "4", "--steps", "1", "--quiet"]
    assert main(args + ["--out", str(tmp_path / "e1")]) == 0
    res = json.loads((tmp_path / "e1" / "eval.json").read_text())
    assert res["classifier"]["folder"] == str(judge)
    assert not (tmp_path / "e1" / ".eval" / "classifier").exists()
    assert (judge / "classifier.safetensors").read_bytes() == before  # never retrained
    monkeypatch.setattr(ev, "PINNED_JUDGE", tmp_path / "missing")
    assert main(args + ["--out", str(tmp_path / "e2")]) == 0
    assert (tmp_path / "e2" / ".eval" / "classifier" / "classifier.safetensors").is_file()
    assert "no pinned judge" in capsys.readouterr().out
    assert main(args + ["--out", str(tmp_path / "e3"), "--classifier", str(tmp_path / "nowhere")]) == 2


def test_evaluate_needs_a_validation_split(tmp_path, tiny_model_dir, capsys):
    data = make_dataset(tmp_path / "data", n=4)
    csv_path = data / "metadata.csv"
    csv_path.write_text(csv_path.read_text().replace(",val,", ",train,"))
    assert main(["evaluate", "--model", str(tiny_model_dir), "--data", str(data), "--out",
                 str(tmp_path / "e"), "--quiet"]) == 2
    assert "validation split" in capsys.readouterr().err


def test_tune_split_is_a_fixed_part_of_training_and_never_validation():
    from cxrdesk.core.data.datasets import Record
    from cxrdesk.core.evaluate import held_out_split

    records = [Record(path=f"{i}.png", labels=[], split="val" if i % 7 == 0 else "train", uid=str(i))
               for i in range(700)]
    val, ref = held_out_split(records, "val")
    assert all(records[i].split == "val" for i in val) and all(records[i].split == "train" for i in ref)
    tune, rest = held_out_split(records, "tune")
    assert all(records[i].split == "train" for i in np.concatenate([tune, rest]))
    assert not set(tune) & set(rest) and len(tune) + len(rest) == len(ref)
    assert 0.05 < len(tune) / len(ref) < 0.15
    assert np.array_equal(tune, held_out_split(records, "tune")[0])  # the same films every time
    with pytest.raises(ValueError):
        held_out_split(records, "test")


def test_evaluate_on_the_tune_split(tmp_path, tiny_model_dir, capsys, monkeypatch):
    from cxrdesk.core.generation.pipeline import Pipeline

    data = make_dataset(tmp_path / "data", n=40)
    out = tmp_path / "eval"
    used = []
    real_generate = Pipeline.generate

    def spy(self, *a, **kw):
        r = real_generate(self, *a, **kw)
        used.append(r.params["guidance_interval"])
        return r

    monkeypatch.setattr(Pipeline, "generate", spy)
    assert main(["evaluate", "--model", str(tiny_model_dir), "--data", str(data), "--out", str(out),
                 "--n", "3", "--steps", "2", "--split", "tune", "--guidance-interval", "0.5,1", "--quiet"]) == 0
    res = json.loads((out / "eval.json").read_text())
    assert res["split"] == "tune" and 2 <= res["n"] <= 3
    assert res["guidance_interval"] == [0.5, 1.0] and res["guidance"] == 4.0  # the tiny model's default
    assert used and all(iv == [0.5, 1.0] for iv in used)  # every generated image used it
    assert "do not report" in capsys.readouterr().out


def test_findings_check_command_writes_what_the_app_reads(tmp_path, tiny_model_dir, capsys):
    import shutil

    from cxrdesk.core.evaluate import FINDING_PROMPTS
    from cxrdesk.core.generation.pipeline import Pipeline

    data = make_dataset(tmp_path / "data", n=24)
    out = tmp_path / "findings"
    assert main(["evaluate", "--model", str(tiny_model_dir), "--data", str(data), "--out", str(out),
                 "--findings", "2", "--steps", "2", "--quiet"]) == 0
    res = json.loads((out / "findings_check.json").read_text())
    assert [f["label"] for f in res["findings"]] == [label for label, _ in FINDING_PROMPTS]
    assert res["seeds"] == [100, 101] and res["steps"] == 2 and res["model_hash"]
    by = {f["label"]: f for f in res["findings"]}
    # fixture: 24 films, every 4th validation, labels cycle normal / COVID-19 / effusion + pneumonia
    assert by["No Finding"]["real_n"] == 2 and by["Pneumonia"]["real_n"] == 2 and by["Fibrosis"]["real_n"] == 0
    assert by["Fibrosis"]["real"] is None and by["Pneumonia"]["expected"] == "other"
    assert by["Fibrosis"]["real_autoencoded"] is None
    assert sum(by["Pneumonia"]["real_autoencoded"].values()) == pytest.approx(1)
    for f in res["findings"]:
        assert f["n"] == 2 and sum(f["generated"].values()) == pytest.approx(1)
    assert not (out / "eval.json").exists()  # the check only
    assert "judge reads" in capsys.readouterr().out
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    shutil.copy(out / "findings_check.json", model)
    assert Pipeline.load(model).info["findings_check"] == res
    assert Pipeline.load(tiny_model_dir).info["findings_check"] is None
    (model / "findings_check.json").write_text(json.dumps({**res, "model_hash": "0123456789ab"}))
    assert Pipeline.load(model).info["findings_check"] is None  # a check of other weights is ignored
    assert main(["evaluate", "--model", str(tiny_model_dir), "--data", str(data), "--out", str(out),
                 "--findings", "0", "--quiet"]) == 2
    # on the tune split the real films are the tune films (training films), not the validation ones
    from cxrdesk.core.data.datasets import read_dataset
    from cxrdesk.core.evaluate import held_out_split

    records = read_dataset(str(data))
    tune = held_out_split(records, "tune")[0]
    assert main(["evaluate", "--model", str(tiny_model_dir), "--data", str(data), "--out", str(out),
                 "--findings", "1", "--steps", "1", "--split", "tune", "--quiet"]) == 0
    res = json.loads((out / "findings_check.json").read_text())
    assert res["split"] == "tune"
    assert [f["real_n"] for f in res["findings"]] == [
        sum(label in records[i].labels for i in tune) for label, _ in FINDING_PROMPTS]


def test_autoencoded_films_keep_shape_and_range(tiny_model_dir):
    from cxrdesk.core.evaluate import autoencoded
    from cxrdesk.core.generation.pipeline import Pipeline

    pipe = Pipeline.load(tiny_model_dir)
    films = np.random.default_rng(0).integers(0, 256, (3, 32, 32), dtype=np.uint8)
    rec = autoencoded(pipe, films)
    assert rec.shape == films.shape and rec.dtype == np.float32 and 0 <= rec.min() and rec.max() <= 1
    np.testing.assert_array_equal(rec, autoencoded(pipe, films.astype(np.float32) / 255))  # uint8 or [0, 1]
    np.testing.assert_array_equal(rec, autoencoded(pipe.vae, films))  # a pipeline or its VAE itself


def test_repeated_diversity_draws_new_seeds_per_set_and_keeps_the_first_sets_figure():
    """Set 0 is the single-set figure (not drawn again); every later set draws other seeds of the same prompts."""
    from types import SimpleNamespace

    from cxrdesk.core.evaluate import CLASS_PROMPTS, CLASSES, EvalConfig, _repeated_diversity

    rng = np.random.default_rng(0)
    images = (rng.random((30, 32, 32)) * 255).astype(np.uint8)
    y = np.array([i % 3 for i in range(30)])
    train = np.arange(30)
    calls = []

    class Pipe:
        def generate(self, prompt, seed, **kw):
            calls.append((prompt, seed))
            flat = np.full((32, 32), 0.5, np.float32)
            # class "normal": films all alike; the others: each seed its own noise
            img = flat if prompt == CLASS_PROMPTS["normal"] else np.random.default_rng(seed).random((32, 32)).astype(np.float32)
            return SimpleNamespace(image=img)

    first = {c: {"k": 4, "generated_ssim": 0.5} for c in CLASSES}
    rep = _repeated_diversity(Pipe(), images, train, y, EvalConfig(diversity_sets=2, seed=3), first)
    assert rep["sets"] == 3 and len(calls) == 2 * 3 * 4
    seeds = [s for _, s in calls]
    assert len(set(seeds)) == 2 * 4 and all(3000 + 100 <= s < 3000 + 300 for s in seeds)  # none of set 0's
    assert rep["ratios"][0] == pytest.approx(0.5 / rep["real_ssim"])
    assert rep["mean"] == pytest.approx(np.mean(rep["ratios"])) and rep["sd"] > 0
