"""A small LoRA for packed attention projections (no peft needed).

The paper (arXiv 2509.15230, official code) uses peft LoRA with r=4, alpha=4 on the query and value
projections. Every backbone here (our tiny ViT, open_clip's and torchvision's ViTs) uses
`nn.MultiheadAttention`, whose q, k, v weights are packed in one `in_proj_weight` of shape (3D, D); we add
`scale * B @ A` to the q and v thirds through `torch.nn.utils.parametrize`, so the attention code is
untouched.
Difference from the paper: no LoRA dropout (a weight-space delta has no input to drop).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils import parametrize


class QVLoRA(nn.Module):
    """`W + scale * [B_q A_q; 0; B_v A_v]` for a packed (3D, D) q/k/v weight; B starts at zero (identity)."""

    def __init__(self, dim: int, *, rank: int, alpha: float) -> None:
        super().__init__()
        self.scale = alpha / rank
        self.a_q = nn.Parameter(torch.empty(rank, dim))
        self.a_v = nn.Parameter(torch.empty(rank, dim))
        self.b_q = nn.Parameter(torch.zeros(dim, rank))
        self.b_v = nn.Parameter(torch.zeros(dim, rank))
        for a in (self.a_q, self.a_v):
            nn.init.kaiming_uniform_(a, a=math.sqrt(5))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        dq = self.b_q @ self.a_q
        dv = self.b_v @ self.a_v
        return weight + self.scale * torch.cat([dq, torch.zeros_like(dq), dv], dim=0)


def add_lora(attentions: list[nn.MultiheadAttention], *, rank: int, alpha: float) -> list[nn.Parameter]:
    """Attach q/v LoRA to every attention module and return the new trainable parameters."""
    params: list[nn.Parameter] = []
    for attn in attentions:
        dim = attn.embed_dim
        lora = QVLoRA(dim, rank=rank, alpha=alpha).to(attn.in_proj_weight.device, attn.in_proj_weight.dtype)
        parametrize.register_parametrization(attn, "in_proj_weight", lora)
        params.extend(lora.parameters())
    return params
