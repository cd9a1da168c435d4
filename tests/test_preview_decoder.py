"""The tiny preview decoder (issue 28): its shapes, the resumable training stage, export into a model folder
and back, and the pipeline's previews with it, without it and with a damaged one."""
import csv
import json
import shutil
import stat

import numpy as np
import pytest
import torch

from cxrdesk.core.generation import preview_decoder as PD
from cxrdesk.core.generation.pipeline import Pipeline
from cxrdesk.core.training import preview_decoder as T

from .test_distill import _fake_run


def _cfg(**kw):
    base = {"steps": 4, "batch": 2, "fresh": 1, "buffer": 8, "n_val": 3, "ckpt_every": 2, "sample_every": 2,
            "warmup": 1, "onnx_targets": False}
    return T.PreviewDecoderConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def trained_run(tiny_model_dir, tmp_path_factory):
    run = _fake_run(tmp_path_factory.mktemp("pd") / "run", tiny_model_dir, n=8)
    T.train_preview_decoder(run, tiny_model_dir, _cfg(), threads=1, progress=False)
    return run


@pytest.fixture
def model_with_decoder(trained_run, tiny_model_dir, tmp_path):
    dest = tmp_path / "tiny-pd"
    shutil.copytree(tiny_model_dir, dest)
    T.export_preview_decoder(trained_run, tiny_model_dir, dest)
    return dest


def test_the_decoder_upsamples_8x_to_one_grey_channel():
    d = PD.build(4, latent_scale=0.4)
    n = sum(p.numel() for p in d.parameters())
    assert 50_000 < n < 300_000
    with torch.no_grad():
        assert d(torch.randn(2, 4, 32, 32)).shape == (2, 1, 256, 256)
        assert d(torch.randn(1, 4, 16, 16)).shape == (1, 1, 128, 128)
    img = PD.decode(d, torch.randn(1, 4, 32, 32) * 100)  # far out-of-range latents still give a film
    assert img.shape == (256, 256) and img.dtype == np.float32 and 0 <= img.min() and img.max() <= 1


def test_preview_like_latents_keep_their_shape_and_share_of_clean_ones():
    z = torch.randn(64, 4, 8, 8)
    mean, std = T.channel_stats(z)
    out = T.preview_like(z, mean, std, torch.Generator().manual_seed(0), clean_share=0.5)
    assert out.shape == z.shape and torch.isfinite(out).all()
    same = (out == z).flatten(1).all(1).float().mean().item()
    assert 0.25 < same < 0.75
    assert T.preview_like(z, mean, std, torch.Generator().manual_seed(0), clean_share=1.0).equal(z)


def test_the_loss_counts_edges():
    flat = torch.zeros(1, 1, 8, 8)
    edge = flat.clone()
    edge[..., 4:] = 1
    assert T.preview_loss(flat, edge, 0.0) == pytest.approx(0.5)
    assert T.preview_loss(flat, edge, 1.0) > T.preview_loss(flat, edge, 0.0)


def test_the_stage_trains_logs_and_resumes(trained_run, tiny_model_dir):
    stage = trained_run / T.STAGE
    state = torch.load(stage / "ckpt.pt", weights_only=True)
    assert state["step"] == 4 and state["vae_hash"] == PD.vae_hash(tiny_model_dir)
    rows = list(csv.DictReader((stage / "val.csv").read_text().splitlines()))
    assert [r["step"] for r in rows] == ["2", "4"] and all(np.isfinite(float(r["psnr"])) for r in rows)
    assert (stage / "val_000004.png").is_file()
    params = json.loads((stage / "params.json").read_text())
    assert params["params"] == sum(p.numel() for p in PD.build(4).parameters())
    # resuming goes on from step 4 (a copy of the run, so the module's run stays as it was)
    again = trained_run.parent / "again"
    shutil.copytree(trained_run, again)
    T.train_preview_decoder(again, tiny_model_dir, _cfg(steps=6), threads=1, progress=False)
    state2 = torch.load(again / T.STAGE / "ckpt.pt", weights_only=True)
    assert state2["step"] == 6
    assert [r["step"] for r in csv.DictReader((again / T.STAGE / "val.csv").read_text().splitlines())] == ["2", "4", "6"]


def test_a_run_of_another_vae_is_refused(trained_run, tmp_path):
    from .fixtures import make_tiny_model

    other = make_tiny_model(tmp_path / "other", seed=1)
    with pytest.raises(ValueError, match="another VAE"):
        T.train_preview_decoder(trained_run, other, _cfg(steps=5), threads=1, progress=False)
    with pytest.raises(ValueError, match="not the one"):
        T.export_preview_decoder(trained_run, other, other)


def test_export_and_load_round_trip(model_with_decoder, trained_run):
    d = model_with_decoder / PD.PREVIEW_DECODER_DIR
    for f in (d / PD.WEIGHTS_FILE, d / PD.CONFIG_FILE):
        assert stat.S_IMODE(f.stat().st_mode) == 0o644
    from safetensors.torch import load_file

    assert all(v.dtype == torch.float16 for v in load_file(str(d / PD.WEIGHTS_FILE)).values())
    rec, note = PD.record(model_with_decoder)
    assert note == "" and rec["steps"] == 4 and rec["use"] == "previews only" and rec["held_out"]["step"] == 4
    extra = json.loads((model_with_decoder / "cxrdesk.json").read_text())
    assert extra["name"] == "tiny-random"  # the rest of the record kept
    loaded = PD.load(model_with_decoder)
    state = torch.load(trained_run / T.STAGE / "ckpt.pt", weights_only=True)
    ema = PD.build(4, latent_scale=loaded.config["latent_scale"])
    with torch.no_grad():
        for p, e in zip(ema.parameters(), state["ema"]):
            p.copy_(e.half().float())  # what fp16 storage keeps
    z = torch.randn(1, 4, 32, 32)
    with torch.no_grad():
        assert torch.allclose(loaded(z), ema(z), atol=1e-5)


def _previews(pipe, **kw):
    seen = []
    pipe.generate("normal chest radiograph", steps=4, seed=3, preview_every=3,
                  on_step=lambda i, n, p: seen.append(p), **kw)
    return seen


def test_pipeline_previews_use_the_decoder_when_the_folder_has_one(model_with_decoder, monkeypatch):
    pipe = Pipeline.load(model_with_decoder)
    calls = []
    real = PD.decode
    monkeypatch.setattr(PD, "decode", lambda d, z: calls.append(z.shape) or real(d, z))
    monkeypatch.setattr(Pipeline, "fast_preview", lambda self, z: pytest.fail("the linear map was used"))
    seen = _previews(pipe)
    assert len(calls) == 2 and calls[0] == (1, 4, 32, 32)  # steps 1 and 2; 3 is a full decode, 4 the film
    assert pipe.info["preview_decoder_note"] == ""
    assert all(p.shape == (256, 256) and p.dtype == np.float32 for p in seen)


def test_after_warm_up_previews_run_an_onnx_runtime_graph_of_it(model_with_decoder, cxrdesk_cache_dir):
    pytest.importorskip("onnxruntime")
    pipe = Pipeline.load(model_with_decoder)
    plain = PD.for_pipeline(pipe)
    z = torch.randn(1, 4, 32, 32)
    want = pipe.quick_preview(z)
    pipe.warm_up(batches=(1,))
    # warm-up made its graph (the first preview does not wait for it)
    assert pipe.graphs()["preview_decoder"] == {1: "onnxruntime"}
    assert any("preview_decoder" in f.name for f in (cxrdesk_cache_dir / "onnx").glob("*.onnx"))
    graphed = PD.for_pipeline(pipe)
    assert graphed is not plain and graphed.module is plain
    assert np.abs(pipe.quick_preview(z) - want).max() < 1e-3
    _previews(pipe)


def test_pipeline_falls_back_to_the_linear_map_without_one(tiny_model_dir, monkeypatch):
    pipe = Pipeline.load(tiny_model_dir)
    calls = []
    real = Pipeline.fast_preview
    monkeypatch.setattr(Pipeline, "fast_preview", lambda self, z: calls.append(1) or real(self, z))
    _previews(pipe)
    assert len(calls) == 2 and "no preview decoder" in pipe.info["preview_decoder_note"]


def test_a_damaged_or_stale_decoder_falls_back_with_a_clear_note(model_with_decoder, tmp_path, caplog):
    weights = model_with_decoder / PD.PREVIEW_DECODER_DIR / PD.WEIGHTS_FILE
    good = weights.read_bytes()
    weights.write_bytes(b"not safetensors at all")
    with pytest.raises(Exception, match="cannot load the preview decoder"):
        PD.load(model_with_decoder)
    pipe = Pipeline.load(model_with_decoder)
    with caplog.at_level("WARNING"):
        seen = _previews(pipe)
    assert len(seen) == 4 and all(p is not None for p in seen)
    assert "cannot load the preview decoder" in pipe.info["preview_decoder_note"]
    assert "linear latent map" in caplog.text
    # weights of another VAE: not used either
    weights.write_bytes(good)
    extra = json.loads((model_with_decoder / "cxrdesk.json").read_text())
    extra["preview_decoder"]["vae_hash"] = "0" * 12
    (model_with_decoder / "cxrdesk.json").write_text(json.dumps(extra))
    assert PD.record(model_with_decoder)[0] is None
    pipe = Pipeline.load(model_with_decoder)
    _previews(pipe)
    assert "another VAE" in pipe.info["preview_decoder_note"]


def test_fast_mode_previews_go_through_the_same_helper(model_with_decoder, monkeypatch):
    from diffusers import UNet2DConditionModel

    from cxrdesk.core.training import distill as D

    teacher = UNet2DConditionModel.from_pretrained(model_with_decoder / "unet")
    D.export_student(model_with_decoder, D.build_student(teacher), model_with_decoder, step=1)
    pipe = Pipeline.load(model_with_decoder)
    calls = []
    real = PD.decode
    monkeypatch.setattr(PD, "decode", lambda d, z: calls.append(1) or real(d, z))
    seen = []
    pipe.generate("normal chest radiograph", steps=4, seed=3, fast=True, preview_every=3,
                  on_step=lambda i, n, p: seen.append(p))
    assert len(calls) == 2 and all(p is not None for p in seen)


def test_cli_stage_and_export(trained_run, tiny_model_dir, tmp_path, capsys):
    from cxrdesk.cli import main

    assert main(["train", "preview-decoder", "--run-dir", str(trained_run)]) != 0
    assert "--model" in capsys.readouterr().err
    dest = tmp_path / "tiny-cli"
    shutil.copytree(tiny_model_dir, dest)
    assert main(["train", "export", "--preview-decoder", "--run-dir", str(trained_run), "--model",
                 str(tiny_model_dir), "--out", str(dest)]) == 0
    assert PD.record(dest)[0]["steps"] == 4
    capsys.readouterr()
    assert main(["info", "--model", str(dest)]) == 0
    assert "a tiny preview decoder" in capsys.readouterr().out
    assert main(["info", "--model", str(tiny_model_dir)]) == 0
    assert "the linear latent map (this model folder has no preview decoder)" in capsys.readouterr().out
