import threading

import numpy as np
import pytest

from cxrdesk.core.errors import GenerationCancelled, ModelLoadError, PipelineError
from cxrdesk.core.generation.pipeline import Pipeline

from .fixtures import make_tiny_model


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    folder = make_tiny_model(tmp_path_factory.mktemp("m") / "tiny")
    return Pipeline.load(folder, device="cpu")


def test_folder_layout_is_diffusers_and_safetensors_only(tmp_path):
    f = make_tiny_model(tmp_path / "tiny")
    for sub in ("vae", "unet"):
        assert (f / sub / "config.json").is_file()
        assert list((f / sub).glob("*.safetensors"))
        assert not [p for p in (f / sub).iterdir() if p.suffix in {".bin", ".pt", ".ckpt"}]
    assert (f / "model_index.json").is_file()
    assert (f / "scheduler" / "scheduler_config.json").is_file()
    assert (f / "text_encoder" / "cxrdesk_text_encoder.json").is_file()


def test_generate_returns_image_and_exact_params(pipe):
    r = pipe.generate("small left pleural effusion", steps=3, seed=7, guidance_scale=3.0)
    assert r.image.shape == (256, 256) and r.image.dtype == np.float32
    assert 0.0 <= r.image.min() and r.image.max() <= 1.0
    assert r.image_u16.dtype == np.uint16 and r.image_u16.max() <= 4095
    assert r.pil.size == (256, 256)
    p = r.params
    assert (p["seed"], p["steps"], p["guidance_scale"], p["sampler"]) == (7, 3, 3.0, "dpm++-karras")
    assert p["model_hash"] == pipe.info["hash"] and p["upscale"] is None


def test_condition_noise_varies_the_noisiest_steps_only_and_reproduces(pipe, monkeypatch):
    """CADS: 0 (the tiny model's default) is the plain film; a scale changes the film, the same seed
    redraws it exactly, and the prompt's embedding is noised only where t/T > 0.6, with its mean and
    spread kept."""
    import torch

    from cxrdesk.core.generation import sampling

    kw = dict(steps=4, seed=5, guidance_scale=3.0, sampler="dpm++")
    plain = pipe.generate("left pleural effusion", **kw)
    assert plain.params["condition_noise"] == 0.0
    assert np.array_equal(plain.image, pipe.generate("left pleural effusion", condition_noise=0.0, **kw).image)
    noisy = pipe.generate("left pleural effusion", condition_noise=0.5, **kw)
    assert noisy.params["condition_noise"] == 0.5 and not np.array_equal(noisy.image, plain.image)
    assert np.array_equal(noisy.image, pipe.generate("left pleural effusion", condition_noise=0.5, **kw).image)
    cond = torch.randn(1, 8, 384, generator=torch.Generator().manual_seed(0)) * 0.3 + 0.1
    assert sampling.annealed_condition(cond, 0.5, 0.5, torch.Generator()) is cond
    mixed = sampling.annealed_condition(cond, 0.95, 0.5, torch.Generator().manual_seed(1))
    assert not torch.allclose(mixed, cond) and torch.isclose(mixed.std(), cond.std(), rtol=1e-4)
    assert torch.isclose(mixed.mean(), cond.mean(), atol=1e-5)
    with pytest.raises(PipelineError, match="condition noise"):
        pipe.generate("left pleural effusion", condition_noise=2.0, **kw)


def test_the_model_record_and_info_are_read_only(pipe):
    """What the folder says (model) and what runs it (runtime) are frozen; info is a view of them that
    follows the pipeline (warm-up's engine, the seconds) but cannot be written."""
    import dataclasses

    with pytest.raises(dataclasses.FrozenInstanceError):
        pipe.model.guidance = 9.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        pipe.runtime.native_size = 512
    with pytest.raises(TypeError):
        pipe.info["guidance"] = 9.0
    info = pipe.info
    assert (info["name"], info["hash"], info["guidance"]) == (pipe.model.name, pipe.model.hash, pipe.model.guidance)
    assert info["latent_shape"] == list(pipe.runtime.latent_shape) and info["native_size"] == 256
    assert info["unet_engine"] == pipe.unet_engine and info["load_seconds"] == pipe.load_seconds > 0


@pytest.mark.parametrize("sampler", ["dpm++-karras", "dpm++", "ddim", "euler"])
def test_same_seed_reproduces_pixels_and_other_seed_differs(pipe, sampler):
    a = pipe.generate("normal chest radiograph", steps=3, seed=11, sampler=sampler)
    b = pipe.generate("normal chest radiograph", steps=3, seed=11, sampler=sampler)
    c = pipe.generate("normal chest radiograph", steps=3, seed=12, sampler=sampler)
    assert np.array_equal(a.image, b.image)
    assert not np.array_equal(a.image, c.image)


def test_karras_sampler_spends_more_steps_at_low_noise(pipe):
    even, karras = pipe.make_scheduler("dpm++"), pipe.make_scheduler("dpm++-karras")
    even.set_timesteps(20)
    karras.set_timesteps(20)
    low = 250  # timesteps below this: the last quarter of the noise schedule
    assert sum(int(t) < low for t in karras.timesteps) > sum(int(t) < low for t in even.timesteps)
    a = pipe.generate("normal chest radiograph", steps=4, seed=3, sampler="dpm++")
    b = pipe.generate("normal chest radiograph", steps=4, seed=3, sampler="dpm++-karras")
    assert not np.array_equal(a.image, b.image)


def test_random_seed_is_reported_and_reproduces(pipe):
    a = pipe.generate("normal chest radiograph", steps=2, seed=None)
    assert isinstance(a.seed, int) and a.seed >= 0
    b = pipe.generate("normal chest radiograph", steps=2, seed=a.seed)
    assert np.array_equal(a.image, b.image)
    c = pipe.generate("normal chest radiograph", steps=2, seed=-1)
    assert c.seed >= 0


def test_on_step_previews_and_cancel_within_a_step(pipe):
    seen = []
    pipe.generate("pneumonia", steps=4, seed=1, on_step=lambda i, n, p: seen.append((i, n, p)))
    assert [s[0] for s in seen] == [1, 2, 3, 4] and all(s[1] == 4 for s in seen)
    assert all(p is not None and p.shape == (256, 256) for _, _, p in seen)
    cancel = threading.Event()
    steps = []

    def cb(i, n, p):
        steps.append(i)
        if i == 2:
            cancel.set()

    with pytest.raises(GenerationCancelled):
        pipe.generate("pneumonia", steps=10, seed=1, on_step=cb, cancel=cancel)
    assert steps == [1, 2]


def test_larger_sizes_are_upsampled_and_say_so(pipe):
    r = pipe.generate("normal", steps=2, seed=1, width=512, height=512)
    assert r.image.shape == (512, 512)
    assert "upsampled" in r.params["upscale"] and r.params["native_size"] == 256


def test_long_prompt_is_truncated_and_flagged(pipe):
    r = pipe.generate("opacity " * 200, steps=1, seed=1)
    assert r.params["prompt_truncated"] is True
    r = pipe.generate("opacity", steps=1, seed=1)
    assert r.params["prompt_truncated"] is False


def test_attention_maps_for_prompt_words_do_not_change_the_image(pipe):
    a = pipe.generate("right pleural effusion", steps=3, seed=5, attention_words=["effusion", "absent"])
    b = pipe.generate("right pleural effusion", steps=3, seed=5)
    assert np.array_equal(a.image, b.image)
    assert set(a.attention) == {"effusion"}
    m = a.attention["effusion"]
    assert m.shape == (256, 256) and m.min() >= 0 and m.max() == pytest.approx(1.0)


def test_step_metrics(pipe):
    r = pipe.generate("normal", steps=3, seed=1, step_metrics=True)
    assert [m["step"] for m in r.step_metrics] == [1, 2, 3]
    from cxrdesk.core.imaging import metrics
    assert {k: v for k, v in r.step_metrics[-1].items() if k != "step"} == metrics.image_metrics(r.image)
    assert {"contrast", "sharpness", "entropy"} <= set(r.step_metrics[0])


@pytest.mark.parametrize("kw,msg", [
    (dict(prompt="   "), "empty"),
    (dict(steps=0), "steps"),
    (dict(steps=1000), "steps"),
    (dict(guidance_scale=-1), "guidance"),
    (dict(guidance_scale="abc"), "guidance"),
    (dict(width=300, height=300), "size"),
    (dict(sampler="plms"), "sampler"),
])
def test_bad_requests_raise_readable_errors(pipe, kw, msg):
    args = dict(prompt="normal", steps=2)
    args.update(kw)
    with pytest.raises(PipelineError, match=msg):
        pipe.generate(**args)


def test_missing_corrupt_and_pickle_models_are_refused(tmp_path):
    with pytest.raises(ModelLoadError, match="not found"):
        Pipeline.load(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="model_index"):
        Pipeline.load(tmp_path / "empty")
    ck = tmp_path / "model.ckpt"
    ck.write_bytes(b"\x80\x04pickle")
    with pytest.raises(ModelLoadError, match="safetensors"):
        Pipeline.load(ck)
    f = make_tiny_model(tmp_path / "broken")
    w = next((f / "unet").glob("*.safetensors"))
    w.write_bytes(w.read_bytes()[:100])
    with pytest.raises(ModelLoadError, match="cannot load"):
        Pipeline.load(f)
    f2 = make_tiny_model(tmp_path / "pickled")
    w2 = next((f2 / "vae").glob("*.safetensors"))
    w2.rename(w2.with_suffix(".bin"))
    with pytest.raises(ModelLoadError, match="pickle"):
        Pipeline.load(f2)


def test_standard_rgb_stable_diffusion_folder_loads_as_grayscale(tmp_path):
    """A diffusers SD-style folder (3-channel VAE, CLIP text encoder) loads and gives grayscale."""
    import json

    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    d = tmp_path / "sd"
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=[8, 8, 16, 16],
                        down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
                        norm_num_groups=8, layers_per_block=1)
    unet = UNet2DConditionModel(sample_size=32, in_channels=4, out_channels=4, block_out_channels=[16, 32],
                                layers_per_block=1, down_block_types=["DownBlock2D", "CrossAttnDownBlock2D"],
                                up_block_types=["CrossAttnUpBlock2D", "UpBlock2D"], cross_attention_dim=32,
                                attention_head_dim=8, norm_num_groups=8)
    vae.save_pretrained(d / "vae")
    unet.save_pretrained(d / "unet")
    # A tiny CLIP tokenizer built locally (vocab + merges), as in diffusers' dummy components.
    (d / "tokenizer").mkdir(parents=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, "!": 2}
    for w in ["normal</w>", "chest</w>", "x</w>", "ray</w>", "n", "o", "r", "m", "a", "l</w>"]:
        vocab[w] = len(vocab)
    (d / "tokenizer" / "vocab.json").write_text(json.dumps(vocab))
    (d / "tokenizer" / "merges.txt").write_text("#version: 0.2\n")
    tok = CLIPTokenizer(str(d / "tokenizer" / "vocab.json"), str(d / "tokenizer" / "merges.txt"),
                        model_max_length=16)
    tok.save_pretrained(d / "tokenizer")
    te = CLIPTextModel(CLIPTextConfig(vocab_size=len(vocab) + 10, hidden_size=32, intermediate_size=37,
                                      num_attention_heads=4, num_hidden_layers=2, max_position_embeddings=16,
                                      bos_token_id=0, eos_token_id=1, pad_token_id=1))
    te.save_pretrained(d / "text_encoder", safe_serialization=True)
    (d / "scheduler").mkdir()
    (d / "scheduler" / "scheduler_config.json").write_text(json.dumps({
        "_class_name": "PNDMScheduler", "beta_start": 0.00085, "beta_end": 0.012,
        "beta_schedule": "scaled_linear", "num_train_timesteps": 1000, "skip_prk_steps": True}))
    (d / "model_index.json").write_text(json.dumps({
        "_class_name": "StableDiffusionPipeline", "vae": ["diffusers", "AutoencoderKL"],
        "unet": ["diffusers", "UNet2DConditionModel"], "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"], "scheduler": ["diffusers", "PNDMScheduler"]}))
    p = Pipeline.load(d, device="cpu")
    assert p.info["image_channels"] == 3 and "CLIP" in p.info["text_encoder"]
    r = p.generate("normal chest x ray", steps=2, seed=0)
    assert r.image.ndim == 2 and r.image.shape == (256, 256)


def test_previews_mix_fast_and_full_decodes(pipe):
    """Every step gets a preview; full decodes every `preview_every` steps; 0 turns them off."""
    got = []
    r = pipe.generate("normal", steps=6, seed=2, preview_every=3, on_step=lambda i, n, p: got.append(p))
    assert len(got) == 6 and all(p is not None and p.shape == (256, 256) for p in got)
    assert np.allclose(got[-1], got[-1].clip(0, 1))
    assert np.array_equal(got[-1], r.image)  # the last step's preview is the final image (one decode)
    off = []
    pipe.generate("normal", steps=3, seed=2, preview_every=0, on_step=lambda i, n, p: off.append(p))
    assert off == [None, None, None]
    # a fast preview is a real (linear) function of the latents: it changes with the seed
    a = pipe.fast_preview(__import__("torch").randn(1, 4, 32, 32))
    b = pipe.fast_preview(__import__("torch").randn(1, 4, 32, 32))
    assert a.shape == (256, 256) and not np.array_equal(a, b)


def test_atomic_write_leaves_no_partial_file_and_normal_permissions(tmp_path):
    import os
    import stat

    from cxrdesk.core.fsutil import atomic_write

    target = tmp_path / "out.bin"

    def boom(fh):
        fh.write(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, boom)
    assert not target.exists() and list(tmp_path.iterdir()) == []
    old = os.umask(0o022)
    try:
        atomic_write(target, lambda fh: fh.write(b"ok"))
    finally:
        os.umask(old)
    assert target.read_bytes() == b"ok"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644  # readable by others, unlike mkstemp's 0600


def test_model_folder_is_fp16_on_disk_readable_by_all_and_loads_as_fp32(tmp_path):
    import stat

    import torch
    from safetensors.torch import load_file

    f = make_tiny_model(tmp_path / "tiny")
    w = load_file(str(next((f / "unet").glob("*.safetensors"))))
    assert {t.dtype for t in w.values()} == {torch.float16}
    for p in f.rglob("*"):
        assert stat.S_IMODE(p.stat().st_mode) & 0o004, p  # other users can read it
    pipe = Pipeline.load(f, device="cpu")
    assert next(pipe.unet.parameters()).dtype == torch.float32


def test_the_model_folder_recommends_its_guidance(tmp_path):
    from cxrdesk.core.generation.sampling import DEFAULT_GUIDANCE
    from tests.fixtures import model_copy_recommending

    base = make_tiny_model(tmp_path / "tiny")
    assert Pipeline.load(base).info["guidance"] == DEFAULT_GUIDANCE  # written by write_model_folder
    p = Pipeline.load(model_copy_recommending(base, tmp_path / "g6", 6.5))
    assert p.info["guidance"] == 6.5
    r = p.generate("normal chest radiograph", steps=2, seed=1)
    assert r.params["guidance_scale"] == 6.5
    explicit = p.generate("normal chest radiograph", steps=2, seed=1, guidance_scale=2.0)
    assert explicit.params["guidance_scale"] == 2.0 and not np.array_equal(explicit.image, r.image)
    # a hand-edited, unusable value falls back to the default instead of stopping the model loading
    for k, bad in enumerate(["strong", -1, 1e9, None]):
        q = Pipeline.load(model_copy_recommending(base, tmp_path / f"bad{k}", bad))
        assert q.info["guidance"] == DEFAULT_GUIDANCE


def test_guidance_interval_guides_only_the_steps_inside_it(tmp_path):
    from cxrdesk.core.errors import PipelineError
    from cxrdesk.core.generation.sampling import FULL_INTERVAL
    from tests.fixtures import model_copy_recommending

    base = make_tiny_model(tmp_path / "tiny")
    p = Pipeline.load(base)
    assert p.info["guidance_interval"] == FULL_INTERVAL  # written by write_model_folder
    kw = dict(steps=6, seed=2, guidance_scale=5.0)
    full = p.generate("left pleural effusion", **kw)
    assert full.params["guided_steps"] == 6 and full.params["guidance_interval"] == [0.0, 1.0]
    # an interval no timestep falls in is exactly the unguided sampler (guidance 1: one UNet call per step)
    none = p.generate("left pleural effusion", guidance_interval=(0.5, 0.5), **kw)  # no t = 500 step
    unguided = p.generate("left pleural effusion", steps=6, seed=2, guidance_scale=1.0)
    assert none.params["guided_steps"] == 0 and np.array_equal(none.image, unguided.image)
    # a part of the schedule: the steps whose t / T lies inside are guided, the others not
    ts = p.make_scheduler("dpm++-karras")  # the default sampler
    ts.set_timesteps(6)
    want = sum(0.3 <= int(t) / 1000 <= 0.7 for t in ts.timesteps)
    assert 0 < want < 6
    part = p.generate("left pleural effusion", guidance_interval=(0.3, 0.7), **kw)
    assert part.params["guided_steps"] == want
    assert not np.array_equal(part.image, full.image) and not np.array_equal(part.image, none.image)
    # attention maps still come from the conditional sample on unguided steps
    att = p.generate("left pleural effusion", guidance_interval=(0.3, 0.7), attention_words=["effusion"], **kw)
    assert np.array_equal(att.image, part.image) and att.attention["effusion"].max() == 1.0
    for bad in [(0.8, 0.2), (-0.1, 0.5), (0.2, 1.5), ("a", "b"), (0.5,)]:
        with pytest.raises(PipelineError, match="guidance interval"):
            p.generate("x", guidance_interval=bad, **kw)
    # a model folder recommends its interval; a hand-edited, unusable one means the whole schedule
    q = Pipeline.load(model_copy_recommending(base, tmp_path / "iv", 5.0, [0.3, 0.7]))
    assert q.info["guidance_interval"] == (0.3, 0.7)
    assert np.array_equal(q.generate("left pleural effusion", steps=6, seed=2).image, part.image)
    for k, bad in enumerate([[0.9, 0.1], "middle", [0.1], {"lo": 0}]):
        r = Pipeline.load(model_copy_recommending(base, tmp_path / f"biv{k}", 5.0, bad))
        assert r.info["guidance_interval"] == FULL_INTERVAL


def test_traced_unet_draws_the_same_images_and_failures_fall_back(tmp_path, monkeypatch):
    p = Pipeline.load(make_tiny_model(tmp_path / "tiny"))
    kw = dict(steps=4, seed=5)
    eager = p.generate("right upper lobe mass", **kw)
    eager_part = p.generate("right upper lobe mass", guidance_interval=(0.3, 0.7), **kw)
    assert p.warm_up(engine="trace") > 0 and p.graphs() == {"unet": {2: "torchscript"}}  # guided every step: batch 2 only
    p.warm_up((1, 2), engine="trace")
    assert p.graphs()["unet"] == {1: "torchscript", 2: "torchscript"} and p.info["unet_engine"] == "torchscript"
    used = []
    for graph_key, graph in list(p._traced.items()):
        def spy(*a, _g=graph, _k=graph_key):
            used.append(_k[0][0])
            return _g(*a)
        p._traced[graph_key] = spy
    assert np.array_equal(p.generate("right upper lobe mass", **kw).image, eager.image)
    assert used == [2] * 4
    assert np.array_equal(p.generate("right upper lobe mass", guidance_interval=(0.3, 0.7), **kw).image,
                          eager_part.image)
    assert set(used) == {1, 2}
    # recording attention runs the UNet's own modules only on the steps it records (every
    # ATTENTION_EVERY-th and the last); the maps and the image match a pipeline that never traced
    from cxrdesk.core.generation.attention import ATTENTION_EVERY

    used.clear()
    kw8 = dict(steps=8, seed=5, attention_words=["mass"])
    att = p.generate("right upper lobe mass", **kw8)
    fresh = Pipeline.load(tmp_path / "tiny").generate("right upper lobe mass", **kw8)
    assert len(used) == 8 - 8 // ATTENTION_EVERY
    assert np.array_equal(att.image, fresh.image)
    np.testing.assert_allclose(att.attention["mass"], fresh.attention["mass"], atol=1e-6)
    # a UNet that cannot be traced leaves generation eager, with the same result
    import torch

    def broken(*a, **k):
        raise RuntimeError("no tracing here")

    q = Pipeline.load(tmp_path / "tiny")
    monkeypatch.setattr(torch.jit, "trace", broken)
    q.warm_up((1, 2), engine="trace")
    assert q.graphs() == {} and q.info["unet_engine"] == "eager" and np.array_equal(q.generate("right upper lobe mass", **kw).image, eager.image)


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("sampler", ["ddim", "euler"])
def test_preview_film_is_recovered_from_the_exact_model_output(prediction, sampler):
    """The previews' clean-latent estimate (Pipeline._x0) inverts an exact noise or velocity
    prediction, on the DDPM alphas (DDIM) and on sigma-scaled latents (Euler)."""
    from types import SimpleNamespace

    import torch

    from cxrdesk.core.generation.models import scheduler_config

    fake = SimpleNamespace(scheduler_config=scheduler_config(prediction))
    sched = Pipeline.make_scheduler(fake, sampler)
    sched.set_timesteps(20)
    t = sched.timesteps[3]
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(1, 4, 8, 8, generator=g), torch.randn(1, 4, 8, 8, generator=g)
    a = sched.alphas_cumprod[int(t)]
    if sampler == "euler":
        sigma = sched.sigmas[0]
        latents = x0 + sigma * eps
        a = 1 / (1 + sigma ** 2)
    else:
        latents = a.sqrt() * x0 + (1 - a).sqrt() * eps
    out = eps if prediction == "epsilon" else a ** 0.5 * eps - (1 - a) ** 0.5 * x0
    if sampler == "euler":
        t = sched.timesteps[0]
    assert torch.allclose(Pipeline._x0(fake, sched, latents, out, t), x0, atol=1e-4)
