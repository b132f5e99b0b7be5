"""Training with the paper's two-pass loss (arXiv 2509.15230, official `train.py`).

Per batch: k ~ U{0..K-1} distractor prompts and an insert position are drawn once; each sample gets its own
shuffled distractors (never its own class). Loss = CE(f(x; distractors + own prompt), y)
+ kl_weight * KL(uniform || softmax f(x; distractors only)). With k = 0 the second pass has no prompt at all.
Adam, lr 1e-3, batch 32, constant lr, no augmentation as in the code's defaults. Added (off by default): a
warm-up + cosine schedule, random shifts/flips and weight decay (AdamW; 0 = Adam), because the tiny ViTs we train
from scratch on a few hundred images are under-trained or overfit with the paper's recipe (its ViT-B/16 starts
pretrained). The optimiser's moments are kept by parameter name so that forgetting can delete them (the paper's
checkpoints keep them for deleted prompts).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from forgettable.backbones import resolve_architecture
from forgettable.config import ForgettableConfig, is_number
from forgettable.data import LabeledImages, split_holdout
from forgettable.model import PreForgettableModel
from protect.devices import resolve_device, seeded_generator
from protect.errors import ConfigError, IntegrityError

log = logging.getLogger(__name__)

SCHEDULES = ("constant", "cosine")


@dataclass
class Recipe:
    """How a model was trained; stored in config.json so the audit can retrain the oracle the same way."""

    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    kl_weight: float = 1.0
    schedule: str = "constant"
    weight_decay: float = 0.0
    shift: int = 0
    hflip: bool = False
    seed: int = 0
    holdout_fraction: float = 0.2
    backbone_init: str = "random"
    data_fingerprint: str = ""

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if self.shift < 0:
            raise ConfigError(f"shift must be >= 0 pixels, got {self.shift}")

    @classmethod
    def stored(cls, data: dict[str, Any], where: str | Path = "config.json") -> Recipe:
        """The recipe a checkpoint's config.json records ({} for models saved without one), each value of its
        field's type: a hand edit there is one `IntegrityError`, not a failure deep inside the oracle's training."""
        known = {f.name: f.default for f in fields(cls)}
        for key, value in data.items():
            if key not in known:
                raise IntegrityError(f"{where}: unknown training recipe key {key!r}")
            default = known[key]
            if isinstance(default, bool | str):
                ok = type(value) is type(default)
            else:
                ok = is_number(value) and (isinstance(default, float) or isinstance(value, int))
            if not ok:
                raise IntegrityError(
                    f"{where}: training recipe {key} = {value!r} is not a {type(default).__name__}"
                )
        try:
            return cls(**data)
        except ConfigError as e:
            raise IntegrityError(f"{where}: training recipe: {e}") from e


def learning_rate(recipe: Recipe, step: int, total: int) -> float:
    """The lr at optimiser step `step` of `total`: constant (paper), or 5% linear warm-up then cosine to 0."""
    if recipe.schedule == "constant":
        return recipe.lr
    warm = max(1, total // 20)
    if step < warm:
        return recipe.lr * (step + 1) / warm
    return recipe.lr * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))


def augment(x: torch.Tensor, *, shift: int, hflip: bool, gen: torch.Generator) -> torch.Tensor:
    """Random translation by up to `shift` pixels (reflect padding) and optional horizontal flips, per sample.

    Not in the paper (MedMNIST at 224 px, no augmentation); the tiny ViTs here, trained from scratch on a few
    hundred images, overfit without it.
    """
    b, _, h, w = x.shape
    if shift:
        padded = F.pad(x, (shift, shift, shift, shift), mode="reflect")
        dy, dx = (torch.randint(0, 2 * shift + 1, (2, b), generator=gen)).to(x.device)
        rows = (dy[:, None] + torch.arange(h, device=x.device))[:, :, None]
        cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, :]
        x = padded.permute(0, 2, 3, 1)[torch.arange(b, device=x.device)[:, None, None], rows, cols]
        x = x.permute(0, 3, 1, 2)
    if hflip:
        flip = (torch.rand(b, generator=gen) < 0.5).to(x.device)
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    return x


def kl_to_uniform(logits: torch.Tensor) -> torch.Tensor:
    """KL(U || softmax(logits)), batch mean; -inf logits (deleted tied-head rows) are left out of U."""
    finite = torch.isfinite(logits)
    logp = F.log_softmax(logits, dim=-1)
    n = finite.sum(-1).clamp(min=1)
    return (-torch.log(n.float()) - torch.where(finite, logp, 0).sum(-1) / n).mean()


def prompt_sets(
    y: torch.Tensor, present: torch.Tensor, k: int, pos: int, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """(mixed, wrong) class-id sets (B, k+1) and (B, k): k distinct distractors, own class at `pos`."""
    scores = torch.rand(len(y), len(present), generator=gen)
    scores[present.unsqueeze(0) == y.unsqueeze(1)] = 2.0  # sort the own class last: never a distractor
    wrong = present[scores.argsort(dim=1)[:, :k]]
    mixed = torch.cat([wrong[:, :pos], y.unsqueeze(1), wrong[:, pos:]], dim=1)
    return mixed, wrong


def _adam_state(model: PreForgettableModel, optimizer: torch.optim.Adam) -> dict[str, torch.Tensor]:
    names = {id(p): n for n, p in model.named_parameters()}
    out: dict[str, torch.Tensor] = {}
    for p, state in optimizer.state.items():
        for key, value in state.items():
            out[f"{names[id(p)]}.{key}"] = torch.as_tensor(value).detach().cpu()
    return out


def train_model(
    model: PreForgettableModel,
    data: LabeledImages,
    *,
    recipe: Recipe,
    device: str = "cpu",
    prompts: bool = True,
    on_epoch: Callable[[int, float], None] | None = None,
) -> PreForgettableModel:
    """Train in place with the two-pass loss (`prompts=False`: plain CE, no prompts: backbone pretraining).

    `data.class_names` must equal the model's class names (ids are labels).
    """
    if list(data.class_names) != list(model.config.class_names):
        raise ConfigError(
            f"data classes {data.class_names} differ from the model's {model.config.class_names}"
        )
    dev = resolve_device(device)
    model.to(dev).train()
    gen = seeded_generator(recipe.seed)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    present = torch.tensor(model.config.present or [], dtype=torch.long)
    y_all = torch.as_tensor(data.y, dtype=torch.long)
    no_prompt = torch.zeros(0, dtype=torch.long)
    steps, step = recipe.epochs * math.ceil(len(data) / recipe.batch_size), 0
    for epoch in range(recipe.epochs):
        order = torch.randperm(len(data), generator=gen)
        total = 0.0
        for i in range(0, len(order), recipe.batch_size):
            idx = order[i : i + recipe.batch_size]
            x = augment(
                model.preprocess(data.x[idx.numpy()]), shift=recipe.shift, hflip=recipe.hflip, gen=gen
            )
            y = y_all[idx]
            if prompts:
                k = int(torch.randint(0, len(present), (1,), generator=gen))
                pos = int(torch.randint(0, k + 1, (1,), generator=gen))
                mixed, wrong = prompt_sets(y, present, k, pos, gen)
                loss = F.cross_entropy(model(x, mixed), y.to(dev))
                loss = loss + recipe.kl_weight * kl_to_uniform(model(x, wrong))
            else:
                loss = F.cross_entropy(model(x, no_prompt), y.to(dev))
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(recipe, step, steps)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            total += float(loss.detach()) * len(idx)
        if not math.isfinite(total):
            raise ConfigError(f"training diverged at epoch {epoch + 1}; lower the learning rate (--lr)")
        log.info("epoch %d/%d loss %.4f", epoch + 1, recipe.epochs, total / len(data))
        if on_epoch is not None:
            on_epoch(epoch + 1, total / len(data))
    model.optimizer_state = _adam_state(model, optimizer)
    model.recipe = asdict(recipe)
    return model.eval()


def fit(
    data: LabeledImages,
    *,
    backbone: str = "tiny-vit",
    tuning: str = "auto",
    head: str = "shared",
    recipe: Recipe | None = None,
    device: str = "cpu",
    backbone_state: dict[str, torch.Tensor] | None = None,
    arch: dict[str, Any] | None = None,
    on_epoch: Callable[[int, float], None] | None = None,
) -> PreForgettableModel:
    """Train a pre-forgettable model on DATA minus its held-out split (kept for the audit's non-members).

    Args:
        backbone: `tiny-vit` (from scratch), `open_clip:MODEL:TAG` or `torchvision:NAME` (pretrained, fetched
            on first use).
        tuning: `lora` (frozen backbone, paper), `full`, `prompts` (frozen backbone, prompts and head only), or
            `auto` (`full` from scratch, `lora` otherwise).
        backbone_state: start from these backbone weights (e.g. trained on other classes); recorded by hash.
        arch: overrides of the tiny-ViT sizes (dim, depth, ...).
    """
    recipe = recipe or Recipe()
    train, _ = split_holdout(data, fraction=recipe.holdout_fraction, seed=recipe.seed)
    channels = int(data.x.shape[-1])
    spec = resolve_architecture(backbone, image_size=int(data.x.shape[1]), channels=channels)
    spec.update(arch or {})
    from_scratch = spec["backbone"].startswith("tiny-vit")
    if tuning == "auto":
        tuning = "full" if from_scratch and backbone_state is None else "lora"
    if tuning != "full" and from_scratch and backbone_state is None:
        raise ConfigError(
            f"--tuning {tuning} freezes the backbone, but {spec['backbone']} starts untrained here (its features "
            "would stay random): use --tuning full, or a pretrained --backbone open_clip:... / torchvision:..."
        )
    config = ForgettableConfig(list(data.class_names), tuning=tuning, head=head, **spec)
    if backbone_state is not None:
        digest = _state_digest(backbone_state)
        recipe.backbone_init = f"state:{digest}"
    else:
        recipe.backbone_init = "random" if from_scratch else "pretrained"
    recipe.data_fingerprint = data.fingerprint()
    seeded_generator(recipe.seed)
    model = PreForgettableModel(config, pretrained=not from_scratch, backbone_state=backbone_state)
    return train_model(model, train, recipe=recipe, device=device, on_epoch=on_epoch)


def _state_digest(state: dict[str, torch.Tensor]) -> str:
    import hashlib

    digest = hashlib.sha256()
    for key in sorted(state):
        digest.update(key.encode())
        digest.update(np.ascontiguousarray(state[key].detach().cpu().float().numpy()).tobytes())
    return digest.hexdigest()[:16]


def train_oracle(
    model: PreForgettableModel,
    data: LabeledImages,
    forgotten: list[str],
    *,
    device: str = "cpu",
    backbone_state: dict[str, torch.Tensor] | None = None,
) -> PreForgettableModel:
    """The retrained oracle: `model`'s recipe and architecture on DATA without the classes `forgotten`."""
    recipe = Recipe.stored(model.recipe)
    if recipe.backbone_init.startswith("state:"):
        if backbone_state is None:
            raise ConfigError(
                "this model's backbone started from another model's: pass that model (--backbone-from) or an "
                "oracle you trained yourself (--oracle)"
            )
        if recipe.backbone_init != f"state:{_state_digest(backbone_state)}":
            raise ConfigError("--backbone-from is not the backbone this model started from")
    cfg = model.config
    return fit(
        data.without(forgotten),
        backbone=cfg.backbone,
        tuning=cfg.tuning,
        head=cfg.head,
        recipe=recipe,
        device=device,
        backbone_state=backbone_state,
        arch=cfg.architecture(),
    )
