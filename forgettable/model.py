"""The pre-forgettable classifier: a ViT with one learned prompt token per class (arXiv 2509.15230).

Hendrix et al., "Pre-Forgettable Models: Prompt Learning as a Native Mechanism for Unlearning"
(ACM MM 2025; code perceivelab/PreForgettableModels). Each class c owns a prompt token P[c] fed to the
transformer next to the image tokens; training teaches the model to predict c only when P[c] is present and to
output the uniform distribution when it is absent, so deleting P[c] forgets c without a gradient step.

Faithful: prompts without positional embedding, LoRA r=4 on attention q/v (or full fine-tuning; or, our option,
prompt tuning alone, which keeps the class out of the shared LoRA weights), a shared
linear head producing all C logits, nothing masked. Changed: prompts sit right after CLS and we read index 0
(the released code read a prompt's output until 2025-12-17); the final LayerNorm is applied (the code skips
it); forgetting physically deletes the prompt and the optimiser state (the code only drops it at inference);
an optional `prompt_tied` head makes the class's head row a function of its prompt, so it is deleted too.
"""

from __future__ import annotations

import copy
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from forgettable.backbones import create_backbone_from_spec
from forgettable.checkpoint import read_checkpoint, write_checkpoint
from forgettable.config import ForgettableConfig
from forgettable.forget import plan_forgetting, remaining_ids
from forgettable.lora import add_lora
from protect.devices import resolve_device
from protect.errors import ConfigError, IntegrityError, one_line

log = logging.getLogger(__name__)


class PreForgettableModel(nn.Module):
    """ViT + per-class prompt bank + head. `forward(x)` uses the bank of classes still present.

    Example:
        >>> model = PreForgettableModel(ForgettableConfig(["cat", "dog"], backbone="tiny-vit-8", image_size=8,
        ...                                               channels=1, patch_size=2))
        >>> model.forget(["cat"]).config.present_names
        ['dog']
    """

    def __init__(
        self,
        config: ForgettableConfig,
        *,
        pretrained: bool = False,
        backbone_state: dict[str, torch.Tensor] | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.backbone = create_backbone_from_spec(
            config.backbone, arch=config.to_dict(), pretrained=pretrained
        )
        if backbone_state is not None:
            self.backbone.load_state_dict(backbone_state)
        dim = self.backbone.dim
        if config.tuning in ("lora", "prompts"):
            self.backbone.requires_grad_(False)
        if config.tuning == "lora":
            add_lora(self.backbone.attentions(), rank=config.lora_rank, alpha=config.lora_alpha)
        # Named tensors `prompts.<id>`: model.safetensors shows which classes are still there.
        self.prompts = nn.ParameterDict(
            {str(c): nn.Parameter(torch.randn(dim)) for c in config.present or []}
        )
        if config.head == "shared":
            self.head = nn.Linear(dim, len(config.class_names))
        else:
            self.head = nn.Linear(dim, dim)  # u(.): logit_c = <h, u(P_c)>
        self.recipe: dict[str, Any] = {}
        self.forgetting_log: list[dict[str, Any]] = []
        self.optimizer_state: dict[str, torch.Tensor] = {}

    # -- inference -------------------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.head.weight.device

    def preprocess(self, images: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 (N, H, W, C) images -> normalised float (N, C, S, S) on the model's device.

        Greyscale is repeated to three channels when the backbone wants colour; other sizes are resized
        (bilinear, antialiased) to the backbone's resolution.
        """
        x = torch.as_tensor(np.asarray(images)).to(self.device)
        if x.ndim != 4:
            raise ConfigError(f"images must be (N, H, W, C); got shape {tuple(x.shape)}")
        x = x.permute(0, 3, 1, 2).float() / 255.0
        c, want = x.shape[1], self.config.channels
        if c != want:
            if c == 1:
                x = x.expand(-1, want, -1, -1)
            elif want == 1:
                x = (x * torch.tensor([0.299, 0.587, 0.114], device=x.device).view(1, 3, 1, 1)).sum(1, True)
            else:
                raise ConfigError(f"images have {c} channels; this model expects {want}")
        size = self.config.image_size
        if x.shape[-2:] != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        mean = torch.tensor(self.config.mean, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.config.std, device=x.device).view(1, -1, 1, 1)
        return (x - mean) / std

    def bank(self) -> tuple[list[int], torch.Tensor]:
        """Class ids still present and their prompts stacked (K, D)."""
        ids = sorted(int(k) for k in self.prompts)
        if not ids:
            return [], self.head.weight.new_zeros(0, self.backbone.dim)
        return ids, torch.stack([self.prompts[str(c)] for c in ids])

    def _prompt_tokens(self, ids: torch.Tensor | None, batch: int) -> torch.Tensor:
        present, stacked = self.bank()
        if ids is None:
            return stacked.unsqueeze(0).expand(batch, -1, -1)
        lookup = torch.full((len(self.config.class_names),), -1, dtype=torch.long, device=stacked.device)
        lookup[present] = torch.arange(len(present), device=stacked.device)
        rows = lookup[ids.to(stacked.device)]
        if (rows < 0).any():
            raise ConfigError("asked for the prompt of a class that is not in the bank")
        if rows.ndim == 1:
            rows = rows.unsqueeze(0).expand(batch, -1)
        return stacked[rows]

    def features(self, x: torch.Tensor, ids: torch.Tensor | None = None) -> torch.Tensor:
        """CLS features (B, D) with the prompts of `ids` (None: whole bank; (k,) or (B, k) class ids)."""
        tokens = self.backbone.embed(x)
        prompts = self._prompt_tokens(ids, len(x)).to(tokens.dtype)
        seq = torch.cat([tokens[:, :1], prompts, tokens[:, 1:]], dim=1)
        return self.backbone.norm(self.backbone.encode(seq)[:, 0])

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """All C logits. A prompt-tied head has no row for a deleted class: its logit is -inf."""
        if self.config.head == "shared":
            return self.head(h)
        present, stacked = self.bank()
        out = h.new_full((len(h), len(self.config.class_names)), -math.inf)
        out[:, present] = h @ self.head(stacked).T
        return out

    def forward(self, x: torch.Tensor, ids: torch.Tensor | None = None) -> torch.Tensor:
        return self.logits(self.features(x, ids))

    @torch.no_grad()
    def predict_logits(self, images: np.ndarray, *, batch_size: int = 256) -> np.ndarray:
        """All C logits (N, C) for uint8 images with the remaining bank (-inf: a deleted prompt-tied row)."""
        was = self.training
        self.eval()
        out = [
            self(self.preprocess(images[i : i + batch_size])).cpu() for i in range(0, len(images), batch_size)
        ]
        self.train(was)
        return torch.cat(out).numpy() if out else np.zeros((0, len(self.config.class_names)), np.float32)

    def predict_proba(
        self, images: np.ndarray, *, batch_size: int = 256, mask_forgotten: bool = False
    ) -> np.ndarray:
        """Class probabilities (N, C) for uint8 images with the remaining bank.

        Unmasked by default (what the audit measures: a shared head keeps the forgotten class's logit);
        `mask_forgotten=True` renormalises over the classes still present, so a deleted class is never output.
        """
        logits = torch.from_numpy(self.predict_logits(images, batch_size=batch_size))
        if mask_forgotten:
            absent = torch.ones(len(self.config.class_names), dtype=torch.bool)
            absent[self.config.present or []] = False
            logits = logits.masked_fill(absent, -math.inf)
        return F.softmax(logits, -1).numpy()

    # -- forgetting ------------------------------------------------------------------------------------------
    def forget(self, class_names: list[str]) -> PreForgettableModel:
        """A copy without the prompts of `class_names` (see `forget_`)."""
        model = copy.deepcopy(self)
        model.forget_(class_names)
        return model

    def forget_(self, class_names: list[str]) -> list[dict[str, Any]]:
        """Delete the classes' prompts and the whole optimiser state in place and log it; returns the new entries.

        Validation and the log come from `forgettable.forget.plan_forgetting` (the on-disk path applies the same
        plan). Already-forgotten classes are skipped (idempotent); an unknown name changes nothing.
        """
        entries = plan_forgetting(self.config, class_names, self.optimizer_state)
        for entry in entries:
            del self.prompts[str(entry["id"])]
        if entries:
            self.optimizer_state.clear()
            self.config.present = remaining_ids(self.config, entries)
        self.forgetting_log.extend(entries)
        return entries

    def attach_prompt_(self, name: str, prompt: torch.Tensor | None = None) -> int:
        """Give class `name` a (new) prompt; new names get a new id (and a shared-head row).

        This is how an attacker re-attaches a forgotten class (the audit's re-learning attack).
        """
        if name in self.config.class_names:
            c = self.config.class_names.index(name)
        else:
            c = len(self.config.class_names)
            self.config.class_names.append(name)
            if self.config.head == "shared":
                old = self.head
                self.head = nn.Linear(old.in_features, c + 1).to(old.weight.device)
                with torch.no_grad():
                    self.head.weight[:c] = old.weight
                    self.head.weight[c] = 0
                    self.head.bias[:c] = old.bias
                    self.head.bias[c] = old.bias.mean()
        init = torch.randn(self.backbone.dim) if prompt is None else prompt.detach().clone()
        self.prompts[str(c)] = nn.Parameter(init.to(self.device))
        self.config.present = sorted(set(self.config.present or []) | {c})
        return c

    # -- saving ----------------------------------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path) -> None:
        """Write config.json + model.safetensors + optimizer.safetensors as one atomic folder swap."""
        meta = {
            "format": "protect.forgettable/1",
            "config": self.config.to_dict(),
            "recipe": self.recipe,
            "forgetting_log": self.forgetting_log,
        }
        write_checkpoint(directory, meta, self.state_dict(), self.optimizer_state)

    @classmethod
    def from_pretrained(
        cls, directory: str | Path, *, device: str | torch.device = "cpu"
    ) -> PreForgettableModel:
        """Load a saved model (no network), in eval mode."""
        from forgettable.train import Recipe  # train builds models: imported here, not at module level

        meta, weights, optimizer = read_checkpoint(directory)
        config = ForgettableConfig.from_meta(meta, directory)
        # the recipe is checked for every reader (info, predict, audit; `forget_checkpoint` checks its own)
        Recipe.stored(meta.get("recipe", {}), Path(directory) / "config.json")
        try:
            model = cls(config)
            model.load_state_dict(weights)
        except (TypeError, RuntimeError, ConfigError) as e:
            raise IntegrityError(
                f"{directory}: checkpoint does not match its config.json ({one_line(e)})"
            ) from e
        model.recipe = dict(meta.get("recipe", {}))
        model.forgetting_log = list(meta.get("forgetting_log", []))
        model.optimizer_state = optimizer
        return model.to(resolve_device(device) if isinstance(device, str) else device).eval()
