"""The bfloat16 engine (Pipeline.warm_up(engine="bf16")): TorchScript graphs of bfloat16 copies of
the UNet and the decoder, used only where the CPU has native bfloat16 arithmetic, checked against
the float32 modules, and falling back to ONNX Runtime elsewhere or when they cannot be made."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from cxrdesk.core.generation import engines as E
from cxrdesk.core.generation.pipeline import Pipeline

from .fixtures import make_tiny_model

KW = dict(steps=4, seed=5)
PROMPT = "left lower lobe consolidation"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("bf16") / "tiny")


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(4, 8, 3, padding=1)
        self.lin = torch.nn.Linear(8, 2)

    def forward(self, x, k):
        y = self.conv(x).mean(dim=(2, 3))
        return self.lin(y) * k.float().reshape(-1, 1), y


def test_bf16_graph_reproduces_the_module_in_float32_and_refuses_a_large_deviation():
    net = Net().eval()
    x, k = torch.randn(2, 4, 16, 16), torch.tensor([1, 2])
    graph = E.bf16_graph(net, (x, k))
    with torch.no_grad():
        want = net(x, k)
    got = graph(x, k)
    assert isinstance(got, tuple) and all(g.dtype == torch.float32 for g in got)
    for g, w in zip(got, want):
        assert g.shape == w.shape
        rel = float((g - w).abs().max() / w.abs().max().detach())
        assert 0 < rel < E.BF16_TOLERANCE  # rounded to bfloat16, but close
    # the module itself stays float32 (the graph runs a copy)
    assert all(p.dtype == torch.float32 for p in net.parameters())
    with pytest.raises(RuntimeError, match="differs from the module"):
        E.bf16_graph(net, (x, k), tolerance=1e-9)


def test_bf16_engine_draws_nearly_the_eager_images_where_the_cpu_has_bfloat16(tiny, cxrdesk_cache_dir, monkeypatch):
    monkeypatch.setattr(E, "_cpu_has_bf16", lambda: True)
    # the tiny model's random weights round less kindly than a trained model's (its decoder's graph
    # measured 2-3% of scale, the default model's ~0.5%); the limit itself is tested above
    monkeypatch.setattr(E, "BF16_TOLERANCE", 0.1)
    p = Pipeline.load(tiny)
    eager = p.generate(PROMPT, **KW)
    assert p.warm_up(engine="bf16", attention=True) > 0
    assert p.info["unet_engine"] == "torchscript-bf16"
    made = p.graphs()
    assert set(made) == {"unet", "unet-attention", "decoder"}
    assert {e for part in made.values() for e in part.values()} == {"torchscript-bf16"}
    assert not list(cxrdesk_cache_dir.glob("**/*.onnx"))  # nothing was exported
    r = p.generate(PROMPT, attention_words=["consolidation"], **KW)
    assert r.params["unet_engine"] == "torchscript-bf16"
    assert r.image.dtype == np.float32 and r.image.shape == eager.image.shape
    diff = np.abs(r.image - eager.image)
    assert 0 < diff.mean() < 0.02  # bfloat16 rounding moves grey levels a little, not the film
    assert set(r.attention) == {"consolidation"}


def test_bf16_engine_falls_back_to_onnx_without_bfloat16_or_when_the_graph_fails(tiny, cxrdesk_cache_dir, monkeypatch):
    monkeypatch.setattr(E, "_cpu_has_bf16", lambda: False)
    p = Pipeline.load(tiny)
    p.warm_up(engine="bf16")
    assert p.info["unet_engine"] == "onnxruntime"
    monkeypatch.setattr(E, "_cpu_has_bf16", lambda: True)

    def broken(*a, **k):
        raise RuntimeError("oneDNN broke")

    monkeypatch.setattr(E, "bf16_graph", broken)
    q = Pipeline.load(tiny)
    monkeypatch.setenv("CXRDESK_UNET_ENGINE", "bf16")
    q.warm_up()
    assert q.info["unet_engine"] == "onnxruntime"
    assert q.graphs()["decoder"] == {1: "onnxruntime"}
