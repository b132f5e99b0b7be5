"""Backbone adapters (random init, no downloads), LoRA, and offline errors for pretrained weights."""

from __future__ import annotations

import json

import pytest
import torch

from forgettable.backbones import create_backbone_from_spec, list_backbones, resolve_architecture
from forgettable.config import ForgettableConfig
from forgettable.model import PreForgettableModel
from protect.errors import ConfigError, OfflineError, UnknownNameError


@pytest.fixture(scope="module")
def tiny_clip_name(tmp_path_factory):
    """A small open_clip architecture registered from a JSON config (random init)."""
    import open_clip

    cfg = {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8},
        "text_cfg": {"context_length": 16, "vocab_size": 100, "width": 32, "heads": 2, "layers": 1},
    }
    path = tmp_path_factory.mktemp("clip") / "protect-test-tiny-clip.json"
    path.write_text(json.dumps(cfg))
    open_clip.add_model_config(path)
    return "protect-test-tiny-clip"


@pytest.mark.parametrize("family", ["open_clip", "torchvision"])
def test_pretrained_families_build_from_config_and_carry_prompts(family, tiny_clip_name):
    torch.manual_seed(0)
    spec = f"open_clip:{tiny_clip_name}" if family == "open_clip" else "torchvision:vit_b_16"
    arch = resolve_architecture(spec, image_size=20, channels=1)
    assert arch["channels"] == 3 and arch["image_size"] == (32 if family == "open_clip" else 224)
    cfg = ForgettableConfig(["a", "b", "c"], tuning="lora", **arch)
    model = PreForgettableModel(cfg).eval()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(
        n.startswith(("prompts.", "head.")) or ".parametrizations." in n for n in trainable
    )
    x = model.preprocess(torch.randint(0, 255, (1, 20, 20, 1), dtype=torch.uint8).numpy())
    with torch.no_grad():
        full, fewer = model(x), model.forget(["b"])(x)
    assert full.shape == (1, 3) and torch.isfinite(full).all() and not torch.allclose(full, fewer)


def test_lora_starts_as_the_identity_and_only_touches_q_and_v():
    torch.manual_seed(0)
    base = dict(backbone="tiny-vit-8", image_size=8, channels=1, patch_size=2, dim=32, depth=2, heads=2)
    full = PreForgettableModel(ForgettableConfig(["a", "b"], tuning="full", **base)).eval()
    cfg = ForgettableConfig(["a", "b"], tuning="lora", **base)
    lora = PreForgettableModel(cfg, backbone_state=full.backbone.state_dict()).eval()
    lora.prompts.load_state_dict(full.prompts.state_dict())
    lora.head.load_state_dict(full.head.state_dict())
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(full(x), lora(x), atol=1e-6)
        attn = lora.backbone.attentions()[0]
        attn.parametrizations.in_proj_weight[0].b_q.fill_(0.1)
        delta = attn.in_proj_weight - attn.parametrizations.in_proj_weight.original
    assert delta[:32].abs().sum() > 0 and delta[32:64].abs().sum() == 0 and delta[64:].abs().sum() == 0


def test_pretrained_weights_without_network_raise_offline_error():
    with pytest.raises(OfflineError, match="cannot fetch pretrained weights for torchvision:vit_b_16"):
        create_backbone_from_spec("torchvision:vit_b_16", arch={}, pretrained=True)


def test_unusable_weights_cache_is_a_config_error(tmp_path, monkeypatch):
    (tmp_path / "weights").write_text("not a folder")
    monkeypatch.setenv("PROTECT_HOME", str(tmp_path))
    with pytest.raises(ConfigError, match="cannot use the weights cache for torchvision:vit_b_16"):
        create_backbone_from_spec("torchvision:vit_b_16", arch={}, pretrained=True)


def test_unknown_backbones_list_the_valid_names():
    with pytest.raises(UnknownNameError, match="tiny-vit-8"):
        resolve_architecture("resnet", image_size=32, channels=3)
    with pytest.raises(UnknownNameError, match="unknown open_clip model"):
        resolve_architecture("open_clip:NoSuchNet", image_size=32, channels=3)
    assert "tiny-vit-32" in list_backbones()
