"""Attention heads as prunable units: ``nn.MultiheadAttention`` in a form that can lose heads.

``nn.MultiheadAttention`` ties its heads' total width to its embedding width (queries,
keys and values are projected to ``embed_dim``), so torch-pruning can only prune it by
shrinking the embedding, that is the whole residual stream of a transformer. rlprune
keeps the embedding and prunes whole heads instead: :func:`convert_attention` replaces
every self-attention ``nn.MultiheadAttention`` by a :class:`HeadAttention` holding the
same weights as four ``nn.Linear`` layers (``q``, ``k``, ``v``, ``out_proj``) around a
weightless :class:`AttentionCore` (scaled dot-product attention). torch-pruning's
dependency graph then couples ``q``, ``k`` and ``v``'s outputs with ``out_proj``'s
input: one unit whose channels are the heads' dimensions, pruned in whole heads
(:attr:`HeadAttention.head_dim` channels at a time), while the embedding width stays.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812 - torch's convention
from torch import nn

__all__ = [
    "AttentionCore",
    "HeadAttention",
    "attention_counter_hook",
    "convert_attention",
    "head_layers",
    "output_projections",
    "unconvertible_attention",
]


class AttentionCore(nn.Module):
    """``softmax(q k^T / sqrt(d)) v`` over ``(batch, heads, tokens, head_dim)`` tensors.

    A module of its own, without weights, so that the MACs counter sees the attention's
    two token-by-token products (:func:`attention_counter_hook`).
    """

    def __init__(self, dropout: float = 0.0) -> None:
        super().__init__()
        self.dropout = dropout

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Attention of ``q`` over ``k`` and ``v`` (dropout on the weights in training)."""
        p = self.dropout if self.training else 0.0
        return F.scaled_dot_product_attention(q, k, v, dropout_p=p)


class HeadAttention(nn.Module):
    """Multi-head attention whose heads can be pruned while the embedding width stays.

    Equivalent to the ``nn.MultiheadAttention`` it is made from
    (:meth:`from_multihead`) for calls without masks. Its head count is not stored but
    read from ``q``'s width (``q.out_features // head_dim``), so it follows the pruned
    layers: a pruned model runs, scripts and exports as it is.
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        *,
        bias: bool = True,
        dropout: float = 0.0,
        batch_first: bool = True,
    ) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} does not split into {num_heads} heads")
        self.head_dim = embed_dim // num_heads
        self.batch_first = batch_first
        self.q = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.k = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.v = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.core = AttentionCore(dropout)

    @property
    def num_heads(self) -> int:
        """Heads left: the width of ``q`` over :attr:`head_dim`."""
        return self.q.out_features // self.head_dim

    @classmethod
    def from_multihead(cls, mha: nn.MultiheadAttention) -> HeadAttention:
        """The same attention, with a copy of ``mha``'s weights."""
        e = mha.embed_dim
        attention = cls(
            e,
            mha.num_heads,
            bias=mha.in_proj_bias is not None,
            dropout=float(mha.dropout),
            batch_first=bool(mha.batch_first),
        )
        weight, bias = mha.in_proj_weight, mha.in_proj_bias
        for i, layer in enumerate((attention.q, attention.k, attention.v)):
            layer.weight = nn.Parameter(weight.detach()[i * e : (i + 1) * e].clone())
            if bias is not None:
                layer.bias = nn.Parameter(bias.detach()[i * e : (i + 1) * e].clone())
        # a plain Linear: torch's NonDynamicallyQuantizableLinear subclass is invisible to
        # torch-pruning's op counter, which looks modules up by exact type
        attention.out_proj.weight = nn.Parameter(mha.out_proj.weight.detach().clone())
        if mha.out_proj.bias is not None:
            attention.out_proj.bias = nn.Parameter(mha.out_proj.bias.detach().clone())
        return attention

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
        need_weights: bool = False,
        attn_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, None]:
        """``(output, None)``, as ``nn.MultiheadAttention(..., need_weights=False)``."""
        if key_padding_mask is not None or attn_mask is not None:
            raise ValueError("rlprune's HeadAttention does not take attention masks")
        if not self.batch_first:
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        b, n, _ = query.shape
        m = key.shape[1]
        d = self.head_dim
        q = self.q(query).reshape(b, n, -1, d).transpose(1, 2)
        k = self.k(key).reshape(b, m, -1, d).transpose(1, 2)
        v = self.v(value).reshape(b, m, -1, d).transpose(1, 2)
        out = self.core(q, k, v).transpose(1, 2).reshape(b, n, -1)
        out = self.out_proj(out)
        if not self.batch_first:
            out = out.transpose(0, 1)
        return out, None


def unconvertible_attention(mha: nn.MultiheadAttention) -> str:
    """Why ``mha`` cannot become a :class:`HeadAttention` ("" when it can)."""
    if not mha._qkv_same_embed_dim:
        return "keys/values of another width than the queries (kdim/vdim)"
    if mha.bias_k is not None or mha.add_zero_attn:
        return "add_bias_kv or add_zero_attn"
    return ""


def convert_attention(model: nn.Module) -> nn.Module:
    """``model`` with every convertible ``nn.MultiheadAttention`` replaced by a
    :class:`HeadAttention`: a converted copy, or ``model`` itself when it holds none."""
    targets = [
        name
        for name, m in model.named_modules()
        if isinstance(m, nn.MultiheadAttention) and not unconvertible_attention(m)
    ]
    if not targets:
        return model
    converted = copy.deepcopy(model)
    modules = dict(converted.named_modules())
    for name in targets:
        parent_name, _, attr = name.rpartition(".")
        mha = modules[name]
        assert isinstance(mha, nn.MultiheadAttention)
        setattr(modules[parent_name], attr, HeadAttention.from_multihead(mha).train(mha.training))
    return converted


def head_layers(model: nn.Module) -> dict[str, int]:
    """``{name of a HeadAttention's q/k/v layer: head_dim}``: the layers whose output
    channels form a head unit, pruned ``head_dim`` channels at a time."""
    found: dict[str, int] = {}
    for name, m in model.named_modules():
        if isinstance(m, HeadAttention):
            for child in ("q", "k", "v"):
                found[f"{name}.{child}" if name else child] = m.head_dim
    return found


def output_projections(model: nn.Module) -> set[str]:
    """Names of every :class:`HeadAttention`'s ``out_proj`` (they write the embedding)."""
    return {
        f"{name}.out_proj" if name else "out_proj"
        for name, m in model.named_modules()
        if isinstance(m, HeadAttention)
    }


def attention_counter_hook(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
    """MACs of :class:`AttentionCore` for torch-pruning's op counter: ``q k^T`` and the
    weighted sum of ``v``, ``batch x heads x queries x keys x (d_qk + d_v)``."""
    q, k, v = inputs[:3]
    b, h, n, d = q.shape
    m, dv = k.shape[-2], v.shape[-1]
    flops = int(getattr(module, "__flops__", 0)) + int(b * h * n * m * (d + dv))
    module.__flops__ = flops  # type: ignore[assignment]
