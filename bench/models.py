"""The three model families, side by side: an RNN with a pooling switch, and a Transformer.

`rnn` and `attn_rnn` are the same `RNNClassifier`; only `pooling` differs ("last" vs
"attention"), so the ablation is one switch and attention adds only `hidden*attn_dim + 2*attn_dim`
parameters. Padded batches are handled without packing: the forward direction reads the
state at each text's real last token, and the backward direction runs on each text reversed
within its own length, so padding never reaches a real position's state.

So that each arm can be trained as practitioners train it, `embed_dropout` and `embed_init` (both
families), `norm_first`, `positions` and `attention_dropout` (Transformer) are options; off by default,
where the models are the ones the committed results were made with, bit for bit.
"""
from __future__ import annotations

import math
import random

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from bench.config import Config, ModelConfig, TrainConfig
from bench.data import PAD_ID, EncodedData


def padding_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """[B, T] bool, True at real tokens."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def reverse_within_length(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each sequence's first `length` steps, leaving padding in place ([B, T, ...])."""
    t = torch.arange(x.size(1), device=x.device)[None, :]
    idx = torch.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)
    return x.gather(1, idx[:, :, None].expand_as(x))


class AdditivePooling(nn.Module):
    """Masked additive attention (Bahdanau-style): softmax(vᵀ tanh(W h)) over real tokens only."""

    def __init__(self, dim: int, attn_dim: int):
        super().__init__()
        self.proj = nn.Linear(dim, attn_dim)
        self.score = nn.Linear(attn_dim, 1, bias=False)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scores = self.score(torch.tanh(self.proj(h))).squeeze(-1)
        weights = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=1)
        return torch.bmm(weights.unsqueeze(1), h).squeeze(1), weights


def masked_mean(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(h.dtype)
    return (h * m).sum(1) / m.sum(1).clamp_min(1.0)


def masked_max(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return h.masked_fill(~mask.unsqueeze(-1), float("-inf")).max(1).values


def pool_tokens(kind: str, h: torch.Tensor, mask: torch.Tensor,
                attention: AdditivePooling | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Mean, max or additive-attention pooling over the real tokens, as both families pool:
    (pooled [B, D], attention weights [B, T] or None)."""
    if kind == "mean":
        return masked_mean(h, mask), None
    if kind == "max":
        return masked_max(h, mask), None
    return attention(h, mask)


def embedding_dropout(embed: nn.Embedding, ids: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Look up `ids`, in training with whole word types dropped (Merity et al. 2017, AWD-LSTM): each
    row of the embedding matrix is zeroed with probability p for the whole batch and the survivors
    are scaled by 1/(1-p), so every occurrence of a dropped word vanishes together. A plain lookup
    in eval or at p = 0, drawing no random numbers (the dropout stream stays as it was)."""
    if not training or p == 0:
        return embed(ids)
    w = embed.weight
    keep = w.new_empty(w.size(0), 1).bernoulli_(1 - p) / (1 - p)
    return F.embedding(ids, w * keep, embed.padding_idx)


@torch.no_grad()
def scale_embeddings(std: float, *tables: nn.Embedding | None) -> None:
    """Turn nn.Embedding's N(0, 1) draw into N(0, std²) in place. At std 1 (the default) token vectors are
    as long as every hidden state's, and Adam's steps of about lr a coordinate move them slowly; BERT and
    GPT draw theirs at 0.02. Scaling the draw takes no random numbers, so every other weight is as before."""
    if std != 1.0:
        for table in tables:
            if table is not None:
                table.weight.mul_(std)


def sinusoidal_positions(n: int, dim: int) -> torch.Tensor:
    """[n, dim] fixed positions of Vaswani et al. (2017): PE[t, 2i] = sin(t / 10000^(2i/dim)),
    PE[t, 2i+1] = cos(t / 10000^(2i/dim))."""
    t = torch.arange(n, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(n, dim)
    table[:, 0::2] = torch.sin(t * freq)
    table[:, 1::2] = torch.cos(t * freq[: dim // 2])
    return table


class RNNClassifier(nn.Module):
    """Embedding → (bi)GRU/LSTM stack → pooling (last | mean | max | attention) → linear."""

    def __init__(self, vocab_size: int, num_classes: int, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        rnn_cls = nn.GRU if cfg.cell == "gru" else nn.LSTM
        dirs = 2 if cfg.bidirectional else 1
        self.embed = nn.Embedding(vocab_size, cfg.embed_dim, padding_idx=PAD_ID)
        self.drop = nn.Dropout(cfg.dropout)
        self.layers = nn.ModuleList()
        for i in range(cfg.layers):
            in_dim = cfg.embed_dim if i == 0 else cfg.hidden_dim * dirs
            self.layers.append(nn.ModuleList(rnn_cls(in_dim, cfg.hidden_dim, batch_first=True)
                                             for _ in range(dirs)))
        out_dim = cfg.hidden_dim * dirs
        self.attention = AdditivePooling(out_dim, cfg.attn_dim) if cfg.pooling == "attention" else None
        self.head = nn.Linear(out_dim, num_classes)
        scale_embeddings(cfg.embed_init, self.embed)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor, return_attention: bool = False):
        """Logits [B, classes]; with `return_attention`, also the pooling weights [B, T]
        (attention pooling only)."""
        mask = padding_mask(lengths, ids.size(1))
        h = self.drop(embedding_dropout(self.embed, ids, self.cfg.embed_dropout, self.training))
        for i, directions in enumerate(self.layers):
            outs = [directions[0](h)[0]]
            if len(directions) == 2:  # backward direction on each text reversed in place
                rev = directions[1](reverse_within_length(h, lengths))[0]
                outs.append(reverse_within_length(rev, lengths))
            h = torch.cat(outs, dim=-1) if len(outs) == 2 else outs[0]
            if i < len(self.layers) - 1:
                h = self.drop(h)
        pooled, weights = self.pool(h, lengths, mask)
        logits = self.head(self.drop(pooled))
        if return_attention:
            if weights is None:
                raise ValueError(f"pooling '{self.cfg.pooling}' has no attention weights")
            return logits, weights
        return logits

    def pool(self, h: torch.Tensor, lengths: torch.Tensor,
             mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(pooled [B, D], attention weights [B, T] or None)."""
        kind = self.cfg.pooling
        if kind == "last":
            hid = self.cfg.hidden_dim
            last = h[torch.arange(h.size(0), device=h.device), lengths - 1]
            if self.cfg.bidirectional:  # backward state is complete at position 0
                return torch.cat([last[:, :hid], h[:, 0, hid:]], dim=-1), None
            return last, None
        return pool_tokens(kind, h, mask, self.attention)


class TransformerClassifier(nn.Module):
    """Embedding + learned or sinusoidal positions → nn.TransformerEncoder (post- or pre-LN,
    key-padding mask) → mean / CLS / max / additive-attention pooling → linear. The attention pooling
    is attn_rnn's, so the two attention arms pool alike. The encoder's final LayerNorm is what a pre-LN stack
    needs (its residual stream is never normalised otherwise)."""

    def __init__(self, vocab_size: int, num_classes: int, cfg: ModelConfig, max_length: int):
        super().__init__()
        self.cfg = cfg
        d = cfg.embed_dim
        self.embed = nn.Embedding(vocab_size, d, padding_idx=PAD_ID)
        self.cls = nn.Parameter(torch.zeros(1, 1, d)) if cfg.pooling == "cls" else None
        if cfg.positions == "sinusoidal":  # a buffer: no parameters, and no draw from the init stream
            self.pos = None
            self.register_buffer("pos_table", sinusoidal_positions(max_length + 1, d), persistent=False)
        else:
            self.pos = nn.Embedding(max_length + 1, d)
        layer = nn.TransformerEncoderLayer(d, cfg.heads, cfg.hidden_dim, cfg.dropout, batch_first=True,
                                           norm_first=cfg.norm_first)
        if cfg.attention_dropout >= 0:  # dropout on the [B, heads, T, T] weights is most of a CPU step's time
            layer.self_attn.dropout = cfg.attention_dropout
        self.encoder = nn.TransformerEncoder(layer, cfg.layers, norm=nn.LayerNorm(d),
                                             enable_nested_tensor=False)
        self.drop = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(d, num_classes)
        # built last, so the other modules draw the same initial weights whatever the pooling
        self.attention = AdditivePooling(d, cfg.attn_dim) if cfg.pooling == "attention" else None
        scale_embeddings(cfg.embed_init, self.embed, self.pos)

    def positions(self, n: int, device: torch.device) -> torch.Tensor:
        """[n, d] position vectors for the first n positions."""
        if self.pos is None:
            return self.pos_table[:n]
        return self.pos(torch.arange(n, device=device))

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        h = embedding_dropout(self.embed, ids, self.cfg.embed_dropout, self.training)
        if self.cls is not None:
            h = torch.cat([self.cls.expand(h.size(0), -1, -1), h], dim=1)
            lengths = lengths + 1
        h = self.drop(h + self.positions(h.size(1), h.device)[None])
        mask = padding_mask(lengths, h.size(1))
        h = self.encoder(h, src_key_padding_mask=~mask)
        pooled = h[:, 0] if self.cls is not None else pool_tokens(self.cfg.pooling, h, mask, self.attention)[0]
        return self.head(self.drop(pooled))


def build_model(cfg: ModelConfig, vocab_size: int, num_classes: int, max_length: int) -> nn.Module:
    if cfg.kind == "rnn":
        return RNNClassifier(vocab_size, num_classes, cfg)
    if cfg.kind == "transformer":
        return TransformerClassifier(vocab_size, num_classes, cfg, max_length)
    raise ValueError(f"build_model builds neural models only, not kind '{cfg.kind}'")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch: the same seed gives every model the same initialisation
    stream, dropout stream and data order, which is what pairs results across models."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_for_unit(cfg: Config, model_name: str, data: EncodedData,
                   seed: int) -> tuple[nn.Module, TrainConfig]:
    """A unit's model, seeded, and its training settings (train with the model's own lr, schedule
    and warm-up applied): the one construction used by run, tune and speed, so a model is
    initialised and trained identically wherever it is trained."""
    mcfg = cfg.model[model_name]
    seed_everything(seed)
    model = build_model(mcfg, data.vocab_size, data.num_classes, data.max_length)
    return model, mcfg.train_config(cfg.train)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
