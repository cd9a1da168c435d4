"""Cross-attention maps: which image regions a prompt's words attend to during denoising."""
from __future__ import annotations

import numpy as np

# Attention maps are averaged over every this-many-th step (and the last): those steps run the UNet's
# own modules (or the attention graph), the others can run the faster plain graph.
ATTENTION_EVERY = 4


class AttnStore:
    """Collects cross-attention probabilities of chosen tokens (conditional half of the batch)."""

    def __init__(self, token_index: dict[str, list[int]]):
        self.token_index = token_index
        self.maps: dict[str, list] = {w: [] for w in token_index}
        self.enabled = True


def wrap_cross_attention(unet, wrap) -> dict:
    """Replace each cross-attention layer's processor with ``wrap(its processor)``. Returns the UNet's
    own processors, to put back with ``unet.set_attn_processor``."""
    saved = dict(unet.attn_processors)
    unet.set_attn_processor({name: (wrap(proc) if name.endswith("attn2.processor") else proc)
                             for name, proc in saved.items()})
    return saved


def cross_attention_probs(attn, hidden_states, encoder_hidden_states):
    """A cross-attention layer's attention probabilities for the conditional sample of the batch
    (the last, with and without guidance at this step), averaged over heads: (image positions,
    tokens)."""
    q = attn.head_to_batch_dim(attn.to_q(hidden_states[-1:]))
    k = attn.head_to_batch_dim(attn.to_k(encoder_hidden_states[-1:]))
    return attn.get_attention_scores(q, k, None).mean(dim=0)


def record_probs(store: AttnStore, probs) -> None:
    """Add one layer's (positions, tokens) probabilities to the store's per-word maps."""
    side = int(round(probs.shape[0] ** 0.5))
    for word, idx in store.token_index.items():
        store.maps[word].append(probs[:, idx].sum(-1).reshape(side, side).float().cpu().numpy())


class RecordingAttnProcessor:
    """Runs the layer's own processor (so the image is unchanged) and records cross-attention."""

    def __init__(self, store: AttnStore, inner):
        self.store = store
        self.inner = inner

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kw):
        out = self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, temb, **kw)
        if encoder_hidden_states is not None and self.store.enabled:
            record_probs(self.store, cross_attention_probs(attn, hidden_states, encoder_hidden_states))
        return out


class ProbsOutProcessor:
    """Runs the layer's own processor and appends its cross-attention probabilities (conditional
    sample, mean over heads) to a list: the attention graph returns them as outputs."""

    def __init__(self, sink: list, inner):
        self.sink = sink
        self.inner = inner

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kw):
        out = self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, temb, **kw)
        if encoder_hidden_states is not None:
            self.sink.append(cross_attention_probs(attn, hidden_states, encoder_hidden_states))
        return out


def attention_unet(unet, guidance_input: bool = False):
    """``unet(sample, t, context)`` returning (output, probabilities of each cross-attention layer
    for the conditional sample), for export as the attention graph; with ``guidance_input`` (a
    distilled student) ``unet(sample, t, context, w)``, w its guidance embedding. The UNet's own
    processors are back in place after every call."""
    import torch

    class AttentionUNet(torch.nn.Module):
        def __init__(self, u):
            super().__init__()
            self.u = u

        def run(self, sample, t, context, w=None):
            sink: list = []
            saved = wrap_cross_attention(self.u, lambda inner: ProbsOutProcessor(sink, inner))
            try:
                out = self.u(sample, t, encoder_hidden_states=context, timestep_cond=w, return_dict=False)[0]
            finally:
                self.u.set_attn_processor(saved)
            return (out, *sink)

        def forward(self, sample, t, context):
            return self.run(sample, t, context)

    class AttentionStudent(AttentionUNet):
        def forward(self, sample, t, context, w):
            return self.run(sample, t, context, w)

    return (AttentionStudent if guidance_input else AttentionUNet)(unet).eval()


def token_index(tokenizer, tokens: list[str], words: list[str]) -> dict[str, list[int]]:
    """For each word found in the prompt's ``tokens``, the positions of its sub-word tokens."""
    out = {}
    pieces = [t.lower().replace("##", "").replace("</w>", "") for t in tokens]
    for w in words:
        sub = [t.lower().replace("##", "").replace("</w>", "") for t in tokenizer.tokenize(w)]
        idx = []
        for i in range(len(pieces) - len(sub) + 1):
            if sub and pieces[i:i + len(sub)] == sub:
                idx += list(range(i, i + len(sub)))
        if idx:
            out[w] = idx
    return out


def attention_maps(store: AttnStore, width: int, height: int) -> dict[str, np.ndarray]:
    """The store's maps per word: layers of each resolution averaged, resized to the film, summed and
    scaled to [0, 1]."""
    import cv2

    maps = {}
    for word, layers in store.maps.items():
        by_size: dict[int, list] = {}
        for m in layers:
            by_size.setdefault(m.shape[0], []).append(m)
        acc = np.zeros((width, height), np.float32)
        for ms in by_size.values():
            mean = np.mean(ms, axis=0)
            acc += cv2.resize(mean, (width, height), interpolation=cv2.INTER_CUBIC)
        acc -= acc.min()
        if acc.max() > 0:
            acc /= acc.max()
        maps[word] = acc
    return maps
