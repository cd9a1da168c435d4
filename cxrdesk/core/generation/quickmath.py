"""The numbers of a fast film in numpy, for a start without torch (quickstart): torch's starting noise,
bit for bit, and the DPM++ 2M sampler on trailing timesteps as diffusers runs it.

No torch, diffusers or transformers here.
"""
from __future__ import annotations

import math

import numpy as np

f32 = np.float32

# avx_mathfun.h's constants (Julien Pommier's cephes-based log and sincos, as torch's CPU normal
# kernel uses them on AVX2 and AVX-512 builds).
_LOG_P = (7.0376836292E-2, -1.1514610310E-1, 1.1676998740E-1, -1.2420140846E-1, 1.4249322787E-1,
          -1.6668057665E-1, 2.0000714765E-1, -2.4999993993E-1, 3.3333331174E-1)
_LOG_Q1, _LOG_Q2 = f32(-2.12194440e-4), f32(0.693359375)
_SQRTHF = f32(0.707106781186547524)
_DP = (f32(-0.78515625), f32(-2.4187564849853515625e-4), f32(-3.77489497744594108e-8))
_SIN_P = (f32(-1.9515295891E-4), f32(8.3321608736E-3), f32(-1.6666654611E-1))
_COS_P = (f32(2.443315711809948E-005), f32(-1.388731625493765E-003), f32(4.166664568298827E-002))
_FOPI = f32(1.27323954473516)  # 4 / pi
_TWO_PI = f32(2.0 * math.pi)


def _fma(a, b, c) -> np.ndarray:
    """float32 a * b + c rounded once (what the compiler's fused multiply-adds give): the product is
    exact in float64; a sum that lands exactly between two float32 values is resolved by its error."""
    p = np.asarray(a, np.float64) * np.asarray(b, np.float64)
    c = np.asarray(c, np.float64)
    s = p + c
    bb = s - p
    err = (p - (s - bb)) + (c - bb)
    r = s.astype(f32)
    lo = np.where(r.astype(np.float64) > s, np.nextafter(r, f32(-np.inf)), r)
    hi = np.nextafter(lo, f32(np.inf))
    tie = (s == (lo.astype(np.float64) + hi.astype(np.float64)) / 2) & (err != 0)
    return np.where(tie, np.where(err > 0, hi, lo), r).astype(f32)


def _log(x: np.ndarray) -> np.ndarray:
    """avx_mathfun's log256_ps for x in (0, 1], step for step."""
    bits = np.maximum(x, np.array([0x00800000], np.int32).view(f32)[0]).view(np.int32)
    e = ((bits.view(np.uint32) >> 23).astype(np.int32) - 0x7f).astype(f32) + f32(1)
    x = ((bits & ~0x7f800000) | np.array([0.5], f32).view(np.int32)[0]).view(f32)
    small = x < _SQRTHF
    tmp = np.where(small, x, f32(0))
    x = x - f32(1)
    e = e - np.where(small, f32(1), f32(0))
    x = x + tmp
    z = x * x
    y = np.full_like(x, f32(_LOG_P[0]))
    for p in _LOG_P[1:]:
        y = _fma(y, x, f32(p))
    y = y * x
    y = _fma(y, z, e * _LOG_Q1)
    y = y - z * f32(0.5)
    return _fma(e, _LOG_Q2, x + y)


def _sincos(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """avx_mathfun's sincos256_ps, step for step."""
    sign_sin = x < 0
    x = np.abs(x)
    j = ((x * _FOPI).astype(np.int32) + 1) & ~1
    y = j.astype(f32)
    sign_sin = sign_sin ^ ((j & 4) != 0)
    sign_cos = (~(j - 2) & 4) != 0
    first = (j & 2) == 0
    for dp in _DP:
        x = _fma(y, dp, x)
    z = x * x
    yc = _fma(np.full_like(z, _COS_P[0]), z, _COS_P[1])
    yc = _fma(yc, z, _COS_P[2]) * z
    yc = _fma(yc, z, -(z * f32(0.5))) + f32(1)
    ys = _fma(np.full_like(z, _SIN_P[0]), z, _SIN_P[1])
    ys = _fma(ys, z, _SIN_P[2]) * z
    ys = _fma(ys, x, x)
    s, c = np.where(first, ys, yc), np.where(first, yc, ys)
    return np.where(sign_sin, -s, s), np.where(sign_cos, -c, c)


def _uniforms(seed: int, n: int) -> np.ndarray:
    """torch.Generator("cpu").manual_seed(seed)'s next n float32 uniforms: mt19937 seeded with the seed's
    low 32 bits, 24 bits of each output."""
    bits = np.random.MT19937()
    bits._legacy_seeding(int(seed) & 0xFFFFFFFF)
    raw = bits.random_raw(n).astype(np.uint64)
    return ((raw & 0xFFFFFF).astype(np.float64) * 2.0 ** -24).astype(f32)


def torch_randn(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """``torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed), dtype=torch.float32)``
    bit for bit on torch's vectorised (AVX2 / AVX-512) CPU kernel: Box-Muller in blocks of 16. Only for
    16 or more values (fewer take another path in torch); ValueError otherwise."""
    n = int(np.prod(shape))
    if n < 16:
        raise ValueError("torch_randn reproduces tensors of 16 or more values")
    u = _uniforms(seed, n + (16 if n % 16 else 0))
    data = u[:n].copy()

    def fill(block):  # (k, 16) uniforms -> normals
        radius = np.sqrt(f32(-2) * _log(f32(1) - block[:, :8]))
        s, c = _sincos(_TWO_PI * block[:, 8:])
        return np.concatenate([radius * c, radius * s], axis=1)

    whole = n // 16 * 16
    data[:whole] = fill(data[:whole].reshape(-1, 16)).ravel()
    if n % 16:  # torch draws 16 more uniforms and recomputes the last 16 values from them
        data[n - 16:] = fill(u[n:n + 16].reshape(1, 16)).ravel()
    return data.reshape(shape)


# ---------------------------------------------------------------- DPM++ 2M (diffusers' DPMSolverMultistepScheduler)

# scheduler_config.json keys that this sampler reads, with the values it supports (None: any value).
_SUPPORTED = {
    "num_train_timesteps": None, "beta_start": None, "beta_end": None,
    "beta_schedule": ("linear", "scaled_linear"), "prediction_type": ("epsilon", "v_prediction"),
    "rescale_betas_zero_snr": (True, False), "trained_betas": (None,), "thresholding": (False,),
    "lambda_min_clipped": (-math.inf,), "final_sigmas_type": ("zero",), "lower_order_final": (True,),
    "euler_at_final": (False,), "use_karras_sigmas": (False,), "use_lu_lambdas": (False,),
    "use_exponential_sigmas": (False,), "use_beta_sigmas": (False,), "use_flow_sigmas": (False,),
    "solver_type": ("midpoint",), "variance_type": (None, "fixed_small", "fixed_large", "fixed_small_log"),
}
# keys the "dpm++" sampler overrides or does not read (DDPMScheduler's and others' settings)
_IGNORED = {"timestep_spacing", "steps_offset", "clip_sample", "clip_sample_range", "sample_max_value",
            "dynamic_thresholding_ratio", "algorithm_type", "solver_order", "set_alpha_to_one",
            "skip_prk_steps", "timestep_type"}


def dpm_supported(config: dict) -> bool:
    """Whether DpmSolver2M reproduces diffusers' "dpm++" sampler for this scheduler_config.json."""
    for key, value in config.items():
        if key.startswith("_") or key in _IGNORED:
            continue
        if key not in _SUPPORTED:
            return False
        allowed = _SUPPORTED[key]
        if allowed is not None and not any(value == a and type(value) is type(a) for a in allowed):
            if not (key == "lambda_min_clipped" and value in ("-inf", float("-inf"))):
                return False
    return True


class DpmSolver2M:
    """DPM++ 2M (dpmsolver++, order 2, midpoint) on trailing timesteps with a zero final sigma, as
    ``sampling.make_scheduler(config, "dpm++")`` runs it: ``timesteps`` after construction, then
    ``step(model_output, sample)`` once per timestep (float32 arrays)."""

    def __init__(self, config: dict, steps: int):
        n = int(config.get("num_train_timesteps", 1000))
        lo, hi = float(config.get("beta_start", 0.0001)), float(config.get("beta_end", 0.02))
        if config.get("beta_schedule", "linear") == "scaled_linear":
            betas = np.linspace(lo ** 0.5, hi ** 0.5, n, dtype=f32) ** 2
        else:
            betas = np.linspace(lo, hi, n, dtype=f32)
        if config.get("rescale_betas_zero_snr"):
            betas = _zero_snr(betas)
        acp = np.cumprod(f32(1) - betas, dtype=f32)
        if config.get("rescale_betas_zero_snr"):
            acp[-1] = f32(2 ** -24)
        all_sigmas = ((f32(1) - acp) / acp) ** f32(0.5)
        self.timesteps = (np.arange(n, 0, -n / steps).round().astype(np.int64) - 1)
        sig = np.interp(self.timesteps, np.arange(n), all_sigmas.astype(np.float64))
        self.sigmas = np.concatenate([sig, [0.0]]).astype(f32)
        self.prediction = config.get("prediction_type", "epsilon")
        self.index = 0
        self._last_x0 = None

    @staticmethod
    def _alpha_sigma(sigma):
        alpha = f32(1) / (sigma * sigma + f32(1)) ** f32(0.5)
        return alpha, sigma * alpha

    def step(self, out: np.ndarray, sample: np.ndarray) -> np.ndarray:
        """The sample at the next timestep from the model's output at this one."""
        i = self.index
        alpha_s, sigma_s = self._alpha_sigma(self.sigmas[i])
        if self.prediction == "v_prediction":
            x0 = alpha_s * sample - sigma_s * out
        else:
            x0 = (sample - sigma_s * out) / alpha_s
        alpha_t, sigma_t = self._alpha_sigma(self.sigmas[i + 1])
        with np.errstate(divide="ignore"):
            lam_t = np.log(alpha_t) - np.log(sigma_t)
        lam_s = np.log(alpha_s) - np.log(sigma_s)
        h = lam_t - lam_s
        last = i == len(self.timesteps) - 1
        if self._last_x0 is None or last:
            prev = (sigma_t / sigma_s) * sample - (alpha_t * (np.exp(-h) - f32(1))) * x0
        else:
            alpha_p, sigma_p = self._alpha_sigma(self.sigmas[i - 1])
            h0 = lam_s - (np.log(alpha_p) - np.log(sigma_p))
            d1 = (f32(1) / (h0 / h)) * (x0 - self._last_x0)
            prev = ((sigma_t / sigma_s) * sample - (alpha_t * (np.exp(-h) - f32(1))) * x0
                    - f32(0.5) * (alpha_t * (np.exp(-h) - f32(1))) * d1)
        self._last_x0 = x0
        self.index += 1
        return prev.astype(f32)


def _zero_snr(betas: np.ndarray) -> np.ndarray:
    """diffusers' rescale_zero_terminal_snr in float32."""
    acp_sqrt = np.sqrt(np.cumprod(f32(1) - betas, dtype=f32))
    first, last = acp_sqrt[0].copy(), acp_sqrt[-1].copy()
    acp_sqrt = (acp_sqrt - last) * (first / (first - last))
    acp = acp_sqrt ** 2
    alphas = np.concatenate([acp[:1], acp[1:] / acp[:-1]])
    return (f32(1) - alphas).astype(f32)
