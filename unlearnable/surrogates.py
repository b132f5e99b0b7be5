"""Feature spaces in which the Bayes error is estimated (and the classifier EM minimises against).

- `scratch`: a small CIFAR ResNet trained from scratch on the *current perturbed* data and refit every K passes. The BEO
  authors retrain a ResNet-18 for 30 epochs at every step (hours per step on a CPU); we warm-start and refit for a few
  epochs every K passes, which keeps the feature space tracking the perturbation at a small fraction of the cost.
- `open_clip:MODEL:TAG` and `torchvision:resnet18`: frozen pretrained extractors (weights fetched and cached by those
  libraries on first use). They never refit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from protect.devices import autocast
from protect.errors import UnknownNameError
from protect.weights import open_clip_model, torchvision_state
from unlearnable.resnet import small_resnet
from unlearnable.victim import augment, normalize


@dataclass
class Surrogate:
    """A feature extractor on [0, 1] images of side `input_size`, with an optional classifier head."""

    name: str
    net: nn.Module
    input_size: int
    embed: Callable[[torch.Tensor], torch.Tensor]
    trainable: bool = False
    precision: str = "fp32"
    history: list[dict] = field(default_factory=list)

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def features(self, x: torch.Tensor) -> torch.Tensor:
        with autocast(self.device, self.precision):
            return self.embed(x).float()

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        if not self.trainable:
            raise ValueError(f"surrogate {self.name} has no classifier head")
        with autocast(self.device, self.precision):
            return self.net(normalize(x)).float()

    def fit(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        epochs: int,
        lr: float = 0.05,
        batch_size: int = 128,
        gen: torch.Generator | None = None,
    ) -> float:
        """Train (warm-started) on the current data; returns the last epoch's training accuracy."""
        if not self.trainable:
            return float("nan")
        gen = gen or torch.Generator().manual_seed(0)
        device = self.device
        opt = torch.optim.SGD(self.net.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
        acc = 0.0
        for _ in range(epochs):
            self.net.train()
            order = torch.randperm(len(x), generator=gen)
            correct = 0
            for i in range(0, len(x), batch_size):
                idx = order[i : i + batch_size]
                xb, yb = augment(x[idx], gen).to(device), y[idx].to(device)
                out = self.logits(xb)
                loss = F.cross_entropy(out, yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                correct += int((out.argmax(1) == yb).sum())
            acc = correct / len(x)
        self.net.eval()
        self.history.append({"epochs": epochs, "train_acc": round(acc, 4)})
        return acc


def create_surrogate(
    spec: str,
    *,
    num_classes: int,
    device: torch.device,
    size: int = 32,
    width: int = 32,
    precision: str = "fp32",
) -> Surrogate:
    """Build a surrogate from `scratch`, `open_clip:MODEL:TAG` or `torchvision:resnet18`."""
    check_surrogate(spec)
    if spec == "scratch":
        net = (
            small_resnet(width=width, num_classes=num_classes)
            .to(device, memory_format=torch.channels_last)
            .eval()
        )
        sur = Surrogate("scratch", net, size, lambda x: net.features(normalize(x)), trainable=True)
    else:
        kind, _, rest = spec.partition(":")
        sur = _open_clip(rest, device) if kind == "open_clip" else _torchvision(device)
    sur.precision = precision
    return sur


def check_surrogate(spec: str) -> None:
    """Validate a surrogate name without building it or touching the network (so errors come before any work)."""
    kind, _, rest = spec.partition(":")
    if spec == "scratch" or (kind == "torchvision" and rest == "resnet18"):
        return
    if kind == "open_clip":
        import open_clip

        model_name, _, tag = rest.partition(":")
        if model_name not in open_clip.list_models():
            raise UnknownNameError(f"open_clip has no model {model_name!r} (see open_clip.list_models())")
        tags = open_clip.list_pretrained_tags_by_model(model_name)
        if tag not in tags:
            raise UnknownNameError(
                f"open_clip {model_name} has no pretrained tag {tag!r}; known: {', '.join(tags)}"
            )
        return
    raise UnknownNameError(
        f"unknown surrogate {spec!r}; use scratch, open_clip:MODEL:TAG or torchvision:resnet18"
    )


def _open_clip(rest: str, device: torch.device) -> Surrogate:
    model_name, _, tag = rest.partition(":")
    model = open_clip_model(model_name, tag, device=device)
    model.eval().requires_grad_(False)
    size = model.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else int(size)
    mean = torch.tensor(model.visual.image_mean or (0.48145466, 0.4578275, 0.40821073), device=device).view(
        1, 3, 1, 1
    )
    std = torch.tensor(model.visual.image_std or (0.26862954, 0.26130258, 0.27577711), device=device).view(
        1, 3, 1, 1
    )
    return Surrogate(f"open_clip:{rest}", model, size, lambda x: model.encode_image((x - mean) / std))


def _torchvision(device: torch.device) -> Surrogate:
    import torchvision

    net = torchvision.models.resnet18(weights=None)
    net.load_state_dict(
        torchvision_state(torchvision.models.ResNet18_Weights.DEFAULT, "torchvision:resnet18")
    )
    net.fc = nn.Identity()
    net = net.to(device).eval().requires_grad_(False)
    mean = torch.tensor((0.485, 0.456, 0.406), device=device).view(1, 3, 1, 1)
    std = torch.tensor((0.229, 0.224, 0.225), device=device).view(1, 3, 1, 1)
    return Surrogate("torchvision:resnet18", net, 224, lambda x: net((x - mean) / std))
