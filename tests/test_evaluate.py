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


def test_evaluate_command_writes_json_and_grid(tmp_path, tiny_model_dir, capsys):
    data = make_dataset(tmp_path / "data", n=24)
    out = tmp_path / "eval"
    rc = main(["evaluate", "--model", str(tiny_model_dir), "--data", str(data), "--out", str(out),
               "--n", "6", "--steps", "2", "--quiet"])
    assert rc == 0
    res = json.loads((out / "eval.json").read_text())
    assert res["n"] == 6 and res["model_hash"]
    assert res["guidance_interval"] == [0.0, 1.0]  # the model's: the whole schedule
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
    assert "autoencoder ceiling" in printed


def test_evaluate_needs_a_validation_split(tmp_path, tiny_model_dir, capsys):
    data = make_dataset(tmp_path / "data", n=4)
    csv_path = data / "metadata.csv"
    csv_path.write_text(csv_path.read_text().replace(",val,", ",train,"))
    assert main(["evaluate", "--model", str(tiny_model_dir), "--data", str(data), "--out",
                 str(tmp_path / "e"), "--quiet"]) == 2
    assert "validation split" in capsys.readouterr().err


def test_tune_split_is_a_fixed_part_of_training_and_never_validation():
    from cxrdesk.core.datasets import Record
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
    from cxrdesk.core.pipeline import Pipeline

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
    from cxrdesk.core.pipeline import Pipeline

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
    from cxrdesk.core.datasets import read_dataset
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
    from cxrdesk.core.pipeline import Pipeline

    pipe = Pipeline.load(tiny_model_dir)
    films = np.random.default_rng(0).integers(0, 256, (3, 32, 32), dtype=np.uint8)
    rec = autoencoded(pipe, films)
    assert rec.shape == films.shape and rec.dtype == np.float32 and 0 <= rec.min() and rec.max() <= 1
    np.testing.assert_array_equal(rec, autoencoded(pipe, films.astype(np.float32) / 255))  # uint8 or [0, 1]
    np.testing.assert_array_equal(rec, autoencoded(pipe.vae, films))  # a pipeline or its VAE itself
