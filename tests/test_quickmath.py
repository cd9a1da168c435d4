"""The quick start's numbers without torch: torch's starting noise bit for bit, diffusers' DPM++ 2M
sampler, the packaged tokenizer without transformers (core.generation.quickmath, text.PlainTokenizer)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cxrdesk.core.generation.limits import MAX_SEED
from cxrdesk.core.generation.models import scheduler_config
from cxrdesk.core.generation.quickmath import DpmSolver2M, dpm_supported, torch_randn
from cxrdesk.core.generation.sampling import make_scheduler
from cxrdesk.core.modelfolder import default_model_path


def _vectorised_normal() -> bool:
    return torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512")


@pytest.mark.skipif(not _vectorised_normal(), reason="torch draws normals with its scalar kernel on this CPU")
@pytest.mark.parametrize("seed", [0, 1, 42, 2 ** 31 - 1, 2 ** 32 + 5, 123456789012345, MAX_SEED - 1, MAX_SEED])
@pytest.mark.parametrize("shape", [(1, 4, 32, 32), (1, 16, 64, 64), (1, 3, 5, 7), (16,)])
def test_torch_randn_is_torchs_noise_bit_for_bit(seed, shape):
    ref = torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed), dtype=torch.float32).numpy()
    got = torch_randn(shape, seed)
    assert got.dtype == np.float32 and got.shape == ref.shape
    assert np.array_equal(got.view(np.int32), ref.view(np.int32))


def test_torch_randn_refuses_what_torch_draws_another_way():
    with pytest.raises(ValueError):
        torch_randn((15,), 0)


def _configs():
    cfgs = [scheduler_config(), scheduler_config("v_prediction"), scheduler_config("v_prediction", zero_snr=True)]
    folder = default_model_path()
    if folder is not None and (folder / "scheduler" / "scheduler_config.json").is_file():
        cfgs.append(json.loads((folder / "scheduler" / "scheduler_config.json").read_text()))
    return cfgs


@pytest.mark.parametrize("steps", [1, 2, 6, 20])
def test_dpm_solver_walks_like_diffusers_dpm_plus_plus(steps):
    for cfg in _configs():
        assert dpm_supported(cfg)
        ref = make_scheduler(cfg, "dpm++")
        ref.set_timesteps(steps)
        mine = DpmSolver2M(cfg, steps)
        assert np.array_equal(ref.timesteps.numpy(), mine.timesteps)
        np.testing.assert_allclose(mine.sigmas, ref.sigmas.numpy(), rtol=2e-6)
        rng = np.random.default_rng(steps)
        x = torch_randn((1, 4, 8, 8), steps)
        xt = torch.from_numpy(x.copy())
        for t in ref.timesteps:
            out = rng.standard_normal(x.shape).astype(np.float32)
            xt = ref.step(torch.from_numpy(out), t, xt).prev_sample
            x = mine.step(out, x)
        scale = float(np.abs(xt.numpy()).max())
        assert np.abs(x - xt.numpy()).max() <= 1e-5 * scale


def test_dpm_solver_refuses_settings_it_does_not_reproduce():
    cfg = scheduler_config("v_prediction", zero_snr=True)
    assert dpm_supported(cfg)
    for bad in ({"thresholding": True}, {"beta_schedule": "squaredcos_cap_v2"}, {"use_karras_sigmas": True},
                {"final_sigmas_type": "sigma_min"}, {"some_new_setting": 1}, {"trained_betas": [0.1] * 1000}):
        assert not dpm_supported({**cfg, **bad}), bad


PROMPTS = ["", "Normal chest radiograph", "  Small RIGHT pleural effusion!!  ", "Café naïve résumé ÀÉÎ",
           "肺炎 pneumonia 中文", "word " * 100, "a-b/c_d 3.5cm x 4cm; no PTX.", "tab\tnew\nline\u200b zero width",
           "x" * 300, "Large left pleural effusion with meniscus sign and mediastinal shift " * 4]


def test_plain_tokenizer_gives_the_text_encoders_ids_mask_tokens_and_truncation():
    from transformers import AutoTokenizer

    from cxrdesk.core.generation.text import MAX_TOKENS, PlainTokenizer, packaged_encoder_path

    ref = AutoTokenizer.from_pretrained(packaged_encoder_path(), local_files_only=True)
    plain = PlainTokenizer()
    ids, mask, tokens, truncated = plain.encode(PROMPTS)
    batch = ref(PROMPTS, padding="max_length", truncation=True, max_length=MAX_TOKENS, return_tensors="np")
    assert np.array_equal(ids, batch["input_ids"]) and np.array_equal(mask, batch["attention_mask"])
    assert tokens == [ref.convert_ids_to_tokens(row) for row in batch["input_ids"].tolist()]
    full = ref(PROMPTS, truncation=False, padding=False)["input_ids"]
    assert truncated == [len(f) > MAX_TOKENS for f in full] and any(truncated) and not all(truncated)
    for word in ("effusion", "Pneumothorax", "ground-glass", "Café"):
        assert plain.tokenize(word) == ref.tokenize(word)
