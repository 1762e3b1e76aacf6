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
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812 - torch's convention
from torch import nn

__all__ = [
    "AttentionCore",
    "HeadAttention",
    "attention_counter_hook",
    "convert_attention",
    "HEAD_COUNT_NAMES",
    "HeadLayout",
    "head_layouts",
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
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[torch.Tensor, None]:
        """``(output, None)``, as ``nn.MultiheadAttention(..., need_weights=False)``: the
        attention weights are never returned (``need_weights`` and ``average_attn_weights``
        are accepted for the same call signature)."""
        if key_padding_mask is not None or attn_mask is not None or is_causal:
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


HEAD_COUNT_NAMES = ("num_heads", "heads", "n_heads", "num_attention_heads", "n_head")
"""Attributes by which a module says it is an attention (its head count)."""


@dataclass(frozen=True)
class HeadLayout:
    """Where the heads are in the output channels of an attention's projection layer."""

    module: str
    """Qualified name of the attention module."""
    attribute: str
    """Its head-count attribute, set to the heads left after pruning ("" when the module
    reads its head count from its widths, as :class:`HeadAttention` does)."""
    head_dim: int
    """Channels of one head in one of the layer's parts."""
    parts: int = 1
    """Parts the layer's output holds one after another: 3 for a fused ``qkv`` layer
    (queries, keys, values), 1 for a query, key or value layer of its own."""


def head_layouts(model: nn.Module) -> dict[str, HeadLayout]:
    """``{layer name: where its heads are}`` for the query/key/value layers of every
    attention rlprune knows: :class:`HeadAttention` (``q``, ``k``, ``v``) and a module with
    a head count (``num_heads`` or the like) and a ``qkv`` layer (timm's layout: queries,
    keys, values one after another, each head by head) or ``q``/``k``/``v`` layers of its own.
    Such a module's forward must split heads by its head count and ``head_dim`` (not by its
    input width); if it does not, pruning it fails its probe and its heads stay."""
    found: dict[str, HeadLayout] = {}
    for name, m in model.named_modules():
        prefix = f"{name}." if name else ""
        if isinstance(m, HeadAttention):
            for child in ("q", "k", "v"):
                found[prefix + child] = HeadLayout(name, "", m.head_dim)
            continue
        attribute = next((a for a in HEAD_COUNT_NAMES if _positive_int(getattr(m, a, None))), None)
        if attribute is None or isinstance(m, nn.MultiheadAttention):
            continue
        heads = int(getattr(m, attribute))
        children = dict(m.named_children())
        qkv = children.get("qkv")
        if isinstance(qkv, nn.Linear) and qkv.out_features % (3 * heads) == 0:
            found[prefix + "qkv"] = HeadLayout(name, attribute, qkv.out_features // 3 // heads, 3)
            continue
        for child in ("q", "k", "v"):
            layer = children.get(child)
            if isinstance(layer, nn.Linear) and layer.out_features % heads == 0:
                found[prefix + child] = HeadLayout(name, attribute, layer.out_features // heads)
    return found


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def attention_counter_hook(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
    """MACs of :class:`AttentionCore` for torch-pruning's op counter: ``q k^T`` and the
    weighted sum of ``v``, ``batch x heads x queries x keys x (d_qk + d_v)``."""
    q, k, v = inputs[:3]
    b, h, n, d = q.shape
    m, dv = k.shape[-2], v.shape[-1]
    flops = int(getattr(module, "__flops__", 0)) + int(b * h * n * m * (d + dv))
    module.__flops__ = flops  # type: ignore[assignment]
