"""Backbone registry: every backbone turns images into tokens (CLS first) and runs a transformer over tokens.

The model prepends nothing itself: it asks `embed` for `[CLS, patches]` (positional embeddings added), inserts
the class prompts after CLS (no positional embedding, as in the paper, so their order does not matter), runs
`encode` and reads the CLS output through `norm` (the final LayerNorm, which the official code skips).

Names: `tiny-vit-32` / `tiny-vit-8` (our ViT, JSON configs in `model_configs/`, trained from scratch),
`open_clip:MODEL[:TAG]` (visual tower) and `torchvision:NAME` (e.g. `vit_b_16`). Pretrained weights are
fetched once by those libraries into `protect.weights.cache_dir`, only when a model is first trained;
loading a saved model never touches the network.
"""

from __future__ import annotations

import json
import logging
from importlib import resources
from typing import Any

import torch
from torch import nn

from protect.errors import ConfigError, UnknownNameError
from protect.weights import open_clip_model, torchvision_state

log = logging.getLogger(__name__)

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


class Backbone(nn.Module):
    """What the prompt model needs from a ViT."""

    dim: int

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) -> tokens (B, 1 + N, D): CLS first, positional embeddings added."""
        raise NotImplementedError

    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens (B, T, D) -> tokens (B, T, D) through every transformer block."""
        raise NotImplementedError

    def norm(self, h: torch.Tensor) -> torch.Tensor:
        """The final LayerNorm, applied to the CLS output."""
        raise NotImplementedError

    def attentions(self) -> list[nn.MultiheadAttention]:
        """The attention modules LoRA attaches to."""
        return [m for m in self.modules() if isinstance(m, nn.MultiheadAttention)]


class Block(nn.Module):
    """Pre-norm transformer block."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.ln_2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class TinyViT(Backbone):
    """A small ViT for CPU work (patch 4: 64 tokens on 32x32, 4 on 8x8), trained from scratch."""

    def __init__(
        self,
        *,
        image_size: int,
        channels: int,
        patch_size: int,
        dim: int,
        depth: int,
        heads: int,
        mlp_ratio: float,
    ) -> None:
        super().__init__()
        if image_size % patch_size:
            raise ConfigError(f"image_size {image_size} is not a multiple of patch_size {patch_size}")
        if dim % heads:
            raise ConfigError(f"dim {dim} is not a multiple of heads {heads}")
        self.dim = dim
        self.patch = nn.Conv2d(channels, dim, patch_size, stride=patch_size)
        n = (image_size // patch_size) ** 2
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, 1 + n, dim) * 0.02)
        self.blocks = nn.Sequential(*[Block(dim, heads, mlp_ratio) for _ in range(depth)])
        self.ln = nn.LayerNorm(dim)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        p = self.patch(x).flatten(2).transpose(1, 2)
        return torch.cat([self.cls.expand(len(x), -1, -1), p], dim=1) + self.pos

    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.blocks(tokens)

    def norm(self, h: torch.Tensor) -> torch.Tensor:
        return self.ln(h)


class OpenCLIPVisual(Backbone):
    """open_clip's `VisionTransformer` (a CLIP image tower), CLS readout before the projection."""

    def __init__(self, visual: nn.Module) -> None:
        super().__init__()
        if getattr(visual, "attn_pool", None) is not None or not hasattr(visual, "class_embedding"):
            raise ConfigError("only open_clip ViT towers with a CLS token are supported")
        self.visual = visual
        self.dim = int(visual.transformer.width)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.visual._embeds(x)

    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.visual.transformer(tokens)

    def norm(self, h: torch.Tensor) -> torch.Tensor:
        return self.visual.ln_post(h)


class TorchvisionViT(Backbone):
    """torchvision's `VisionTransformer` (vit_b_16, ...)."""

    def __init__(self, vit: nn.Module) -> None:
        super().__init__()
        self.vit = vit
        self.dim = int(vit.hidden_dim)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        p = self.vit._process_input(x)
        cls = self.vit.class_token.expand(len(x), -1, -1)
        return torch.cat([cls, p], dim=1) + self.vit.encoder.pos_embedding

    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.vit.encoder.layers(self.vit.encoder.dropout(tokens))

    def norm(self, h: torch.Tensor) -> torch.Tensor:
        return self.vit.encoder.ln(h)


def tiny_vit_names() -> list[str]:
    """The JSON architecture configs shipped in `forgettable/model_configs/`."""
    files = resources.files("forgettable").joinpath("model_configs").iterdir()
    return sorted(f.name.removesuffix(".json") for f in files if f.name.endswith(".json"))


def tiny_vit_config(name: str) -> dict[str, Any]:
    """The architecture keys of a shipped tiny-ViT config."""
    if name not in tiny_vit_names():
        raise UnknownNameError(f"unknown backbone {name!r}; choose one of {', '.join(list_backbones())}")
    text = resources.files("forgettable").joinpath("model_configs", f"{name}.json").read_text()
    return dict(json.loads(text))


def list_backbones() -> list[str]:
    """Backbone names and patterns accepted by `create_backbone`."""
    return ["tiny-vit", *tiny_vit_names(), "open_clip:MODEL[:TAG]", "torchvision:NAME"]


def _open_clip_config(name: str, tag: str) -> dict[str, Any]:
    """open_clip's architecture config for `name`, after checking the model name and weight tag."""
    import open_clip

    cfg = open_clip.get_model_config(name)
    if cfg is None:
        raise UnknownNameError(f"unknown open_clip model {name!r}; see open_clip.list_models()")
    tags = open_clip.list_pretrained_tags_by_model(name)
    if tag and tag not in tags:
        raise UnknownNameError(
            f"unknown weights {tag!r} for open_clip {name}; known: {', '.join(tags) or 'none'}"
        )
    return dict(cfg)


def _open_clip(name: str, tag: str, pretrained: bool) -> OpenCLIPVisual:
    import open_clip

    cfg = _open_clip_config(name, tag)
    if pretrained and tag:
        return OpenCLIPVisual(open_clip_model(name, tag, require=True).visual)
    # Rebuild the tower the tag would load (QuickGELU for OpenAI weights); weights come from the checkpoint.
    quick = cfg.get("quick_gelu", False) or bool(
        tag and open_clip.get_pretrained_cfg(name, tag).get("quick_gelu")
    )
    from open_clip.model import _build_vision_tower

    return OpenCLIPVisual(_build_vision_tower(cfg["embed_dim"], cfg["vision_cfg"], quick_gelu=quick))


def _torchvision(name: str, pretrained: bool) -> TorchvisionViT:
    import torchvision

    try:
        builder = torchvision.models.get_model_builder(name)
    except ValueError as e:
        raise UnknownNameError(f"unknown torchvision model {name!r}") from e
    vit = builder(weights=None)
    if not hasattr(vit, "class_token"):
        raise ConfigError(f"torchvision:{name} is not a VisionTransformer")
    if pretrained:
        vit.load_state_dict(
            torchvision_state(torchvision.models.get_model_weights(name).DEFAULT, f"torchvision:{name}")
        )
    return TorchvisionViT(vit)


def resolve_architecture(spec: str, *, image_size: int, channels: int) -> dict[str, Any]:
    """Config keys for backbone `spec` given the data's image size and channels.

    `tiny-vit` picks `tiny-vit-8` for images up to 16 px and `tiny-vit-32` otherwise; pretrained towers fix
    their own resolution, three channels and ImageNet/CLIP normalisation.
    """
    if spec == "tiny-vit":
        spec = "tiny-vit-8" if image_size <= 16 else "tiny-vit-32"
    if spec.startswith("tiny-vit"):
        arch = tiny_vit_config(spec)
        mean, std = [0.5] * channels, [0.25] * channels
        return {"backbone": spec, "channels": channels, "mean": mean, "std": std, **arch}
    if spec.startswith("open_clip:"):
        import open_clip
        from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

        name, _, tag = spec.split(":", 1)[1].partition(":")
        cfg = _open_clip_config(name, tag)
        size, dim = cfg["vision_cfg"]["image_size"], cfg["vision_cfg"]["width"]
        tag_cfg = open_clip.get_pretrained_cfg(name, tag) if tag else {}
        mean = list(tag_cfg.get("mean", OPENAI_DATASET_MEAN))
        std = list(tag_cfg.get("std", OPENAI_DATASET_STD))
    else:
        probe = create_backbone_from_spec(spec, arch={}, pretrained=False)
        size, dim, mean, std = probe.vit.image_size, probe.dim, IMAGENET_MEAN, IMAGENET_STD  # type: ignore
    size = size[0] if isinstance(size, tuple | list) else size
    return {
        "backbone": spec,
        "image_size": int(size),
        "channels": 3,
        "dim": int(dim),
        "mean": mean,
        "std": std,
    }


def create_backbone_from_spec(spec: str, *, arch: dict[str, Any], pretrained: bool) -> Backbone:
    """Build backbone `spec`; `arch` holds the tiny-ViT sizes; `pretrained` fetches library weights."""
    family, _, rest = spec.partition(":")
    if family == "open_clip" and rest:
        name, _, tag = rest.partition(":")
        return _open_clip(name, tag, pretrained)
    if family == "torchvision" and rest:
        return _torchvision(rest, pretrained)
    if spec in tiny_vit_names():
        keys = ("image_size", "channels", "patch_size", "dim", "depth", "heads", "mlp_ratio")
        return TinyViT(**{k: arch[k] for k in keys})
    raise UnknownNameError(f"unknown backbone {spec!r}; choose one of {', '.join(list_backbones())}")
