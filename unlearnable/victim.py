"""The evaluation harness: train a victim on released data, report its accuracy on clean test data.

Every arm of a benchmark (clean, protected, mixed, JPEG, greyscale...) goes through the same `Recipe`, so differences come
from the data alone (the authors of several unlearnable-example papers trained their arms with different recipes; we
pin one and report it). Standard CIFAR recipe: ResNet-18, SGD 0.1 momentum 0.9, weight decay 5e-4, cosine schedule,
batch 128, random crop (pad 4) + horizontal flip. `precision="bf16"` trains under bfloat16 autocast (fp32 weights), the
usual mixed-precision recipe; about twice as fast on CPUs with AMX / AVX512-BF16.

`finetune=(x_p, y_p)` is the BEO authors' newest mixing protocol (`cifar10-ft.py`): train on the clean part, then the
last `finetune_epochs` epochs on the protected part, one cosine schedule over both.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from protect.devices import autocast
from unlearnable.resnet import resnet18

MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)


@dataclass(frozen=True)
class Recipe:
    """How every victim is trained; `width` 64 is the standard ResNet-18, smaller widths fit a CPU budget."""

    arch: str = "resnet18"
    width: int = 64
    epochs: int = 30
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    augment: bool = True
    precision: str = "fp32"
    finetune_epochs: int = 5  # of `epochs`, used only when train_victim is given `finetune` data


@dataclass
class VictimResult:
    test_acc: float
    train_acc: float
    seconds: float
    recipe: dict
    class_acc: dict[int, float] = field(default_factory=dict)  # test accuracy per test label

    def as_dict(self) -> dict:
        return asdict(self)


def to_tensor(x: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, C) -> float (N, C, H, W) in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).float().div_(255)


def normalize(x: torch.Tensor) -> torch.Tensor:
    c = x.shape[1]
    mean = torch.tensor(MEAN[:c], device=x.device).view(1, c, 1, 1)
    std = torch.tensor(STD[:c], device=x.device).view(1, c, 1, 1)
    return (x - mean) / std


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random crop with 4-pixel zero padding and a random horizontal flip, per sample."""
    n, _, h, w = x.shape
    padded = F.pad(x, (4, 4, 4, 4))
    dy = torch.randint(0, 9, (n,), generator=gen)
    dx = torch.randint(0, 9, (n,), generator=gen)
    flip = torch.rand(n, generator=gen) < 0.5
    out = torch.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(n)])
    out[flip] = out[flip].flip(-1)
    return out


@torch.no_grad()
def predict(model: torch.nn.Module, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    model.eval()
    out = [model(normalize(x[i : i + batch_size])).argmax(1) for i in range(0, len(x), batch_size)]
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long, device=x.device)


def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((predict(model, x) == y).sum()) / max(len(x), 1)


def train_victim(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    recipe: Recipe = Recipe(),
    seed: int = 0,
    device: str | torch.device = "cpu",
    finetune: tuple[np.ndarray, np.ndarray] | None = None,
) -> VictimResult:
    """Train a fresh victim on (x_train, y_train) with `recipe`; return its clean test accuracy.

    With `finetune`, the last `recipe.finetune_epochs` epochs train on that data instead (the schedule runs on).
    """
    if recipe.arch != "resnet18":
        raise ValueError(f"unknown victim arch {recipe.arch!r} (only resnet18)")
    if recipe.precision not in ("fp32", "bf16"):
        raise ValueError(f"unknown precision {recipe.precision!r} (fp32 or bf16)")
    start = time.perf_counter()
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    if finetune is None:
        phases = [(x_train, y_train, recipe.epochs)]
    elif 0 < recipe.finetune_epochs < recipe.epochs:
        phases = [
            (x_train, y_train, recipe.epochs - recipe.finetune_epochs),
            (*finetune, recipe.finetune_epochs),
        ]
    else:
        raise ValueError(f"finetune_epochs must lie in (0, {recipe.epochs}), got {recipe.finetune_epochs}")
    phases = [(to_tensor(xp), torch.as_tensor(yp, dtype=torch.long), epochs) for xp, yp, epochs in phases]
    num_classes = int(max(max(int(yp.max()) for _, yp, _ in phases), y_test.max())) + 1
    model = resnet18(width=recipe.width, num_classes=num_classes).to(
        device, memory_format=torch.channels_last
    )
    opt = torch.optim.SGD(
        model.parameters(),
        lr=recipe.lr,
        momentum=recipe.momentum,
        weight_decay=recipe.weight_decay,
        nesterov=False,
    )
    steps = sum(-(-len(xp) // recipe.batch_size) * epochs for xp, _, epochs in phases)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    for xt, yt, epochs in phases:
        for _ in range(epochs):
            _epoch(model, opt, sched, xt, yt, recipe, gen, device)
    y_test_t = torch.as_tensor(y_test).to(device)
    hit = predict(model, to_tensor(x_test).to(device)) == y_test_t
    class_acc = {int(c): float(hit[y_test_t == c].float().mean()) for c in torch.unique(y_test_t)}
    seen_x = torch.cat([xp for xp, _, _ in phases]).to(device)
    train_acc = accuracy(model, seen_x, torch.cat([yp for _, yp, _ in phases]).to(device))
    return VictimResult(
        test_acc=float(hit.float().mean()) if len(hit) else 0.0,
        train_acc=train_acc,
        seconds=time.perf_counter() - start,
        recipe=asdict(recipe),
        class_acc=class_acc,
    )


def _epoch(
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler,
    xt: torch.Tensor,
    yt: torch.Tensor,
    recipe: Recipe,
    gen: torch.Generator,
    device: str | torch.device,
) -> None:
    """One shuffled pass of SGD over (xt, yt), one scheduler step per batch."""
    model.train()
    order = torch.randperm(len(xt), generator=gen)
    for i in range(0, len(xt), recipe.batch_size):
        idx = order[i : i + recipe.batch_size]
        xb = augment(xt[idx], gen) if recipe.augment else xt[idx]
        xb = normalize(xb.to(device)).contiguous(memory_format=torch.channels_last)
        with autocast(torch.device(device), recipe.precision):
            out = model(xb)
        loss = F.cross_entropy(out.float(), yt[idx].to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
