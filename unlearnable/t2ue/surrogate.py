"""The CLIP surrogate of T2UE (Ma, Huang et al., arXiv 2508.03091, §3.2): build, save, load, encode, train.

The paper freezes a pretrained OpenAI CLIP (ViT-B/32 or ViT-B/16). `protect` can use any open_clip model for that
(`load_open_clip(name, tag)`, fetched once into `$PROTECT_HOME/weights`), but never downloads by default: the offline
default is a tiny open_clip `CLIP` built from `TINY_CLIP` and trained here on the user's own image-caption pairs.
The same `train_clip` also trains the contrastive *victims* of the benchmark, so surrogate and victims share one
recipe. Protection strength depends on the surrogate: a tiny CLIP trained on a few thousand pairs is a much weaker
stand-in for "any CLIP a scraper might train" than a web-scale one.
"""

from __future__ import annotations

import copy
import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from protect.errors import ConfigError, IntegrityError, one_line
from protect.paths import atomic_path, atomic_write_text
from protect.weights import open_clip_model

log = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"

#: Tiny configs; open_clip's BPE tokenizer ships in the wheel, so both work offline.
MICRO_CLIP: dict[str, Any] = {  # for tests and smoke runs: 16x16 images, one layer per tower
    "embed_dim": 32,
    "vision_cfg": {
        "image_size": 16,
        "patch_size": 8,
        "width": 32,
        "layers": 1,
        "head_width": 16,
        "mlp_ratio": 2.0,
    },
    "text_cfg": {
        "context_length": 16,
        "vocab_size": 49408,
        "width": 32,
        "heads": 2,
        "layers": 1,
        "mlp_ratio": 2.0,
    },
}

#: The offline default surrogate and the benchmark's victims (the 49408-token BPE embedding is most of its 3.3M).
TINY_CLIP: dict[str, Any] = {
    "embed_dim": 64,
    "vision_cfg": {
        "image_size": 32,
        "patch_size": 8,
        "width": 64,
        "layers": 2,
        "head_width": 32,
        "mlp_ratio": 2.0,
    },
    "text_cfg": {
        "context_length": 24,
        "vocab_size": 49408,
        "width": 64,
        "heads": 2,
        "layers": 2,
        "mlp_ratio": 2.0,
    },
}


@dataclass
class Surrogate:
    """A frozen-or-trainable open_clip model plus what is needed to feed it: tokenizer, pixel normalisation.

    `spec` says where it came from: `{"source": "local"}` (saved beside the generator) or
    `{"source": "open_clip", "model": NAME, "pretrained": TAG}`.
    """

    model: torch.nn.Module
    tokenizer: Callable[[Sequence[str]], torch.Tensor]
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    spec: dict[str, Any]
    config: dict[str, Any] | None = None

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def normalize(self, x01: torch.Tensor) -> torch.Tensor:
        """[0, 1] NCHW pixels -> the model's input (resized to its image size, then mean/std normalised)."""
        if x01.shape[-1] != self.image_size or x01.shape[-2] != self.image_size:
            x01 = F.interpolate(
                x01, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False
            )
        mean = torch.tensor(self.mean, device=x01.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x01.device).view(1, 3, 1, 1)
        return (x01 - mean) / std

    def encode_image(self, x01: torch.Tensor) -> torch.Tensor:
        """L2-normalised image embeddings of [0, 1] NCHW pixels."""
        return F.normalize(self.model.encode_image(self.normalize(x01)), dim=-1)

    def tokenize(self, captions: Sequence[str]) -> torch.Tensor:
        return self.tokenizer(list(captions)).to(self.device)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """Pooled, L2-normalised text embeddings: the paper's emb_t, which conditions the SSA-GAN generator."""
        return F.normalize(self.model.encode_text(tokens), dim=-1)

    def token_states(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(per-token states after the final LayerNorm, padding mask): the UNet ablation's cross-attention input.

        Written out from open_clip's `CLIP.encode_text`, stopping before pooling and projection.
        """
        tower = getattr(self.model, "text", self.model)  # CustomTextCLIP keeps the tower in `.text`
        if not hasattr(tower, "token_embedding"):
            raise ConfigError(
                "this surrogate's text tower is not an open_clip TextTransformer; use a CLIP model"
            )
        x = tower.token_embedding(tokens) + tower.positional_embedding
        x = tower.transformer(x, attn_mask=tower.attn_mask)
        return tower.ln_final(x), tokens != 0

    def logit_scale(self) -> torch.Tensor:
        return self.model.logit_scale.exp().clamp(max=100.0)

    def freeze(self) -> Surrogate:
        """Eval mode and no gradients: the paper's surrogate is frozen (only the generator is trained)."""
        self.model.eval().requires_grad_(False)
        return self


# -- building, saving, loading -------------------------------------------------------------------------------------
def create_clip(
    config: dict[str, Any] | None = None, *, seed: int = 0, device: str | torch.device = "cpu"
) -> Surrogate:
    """A randomly initialised open_clip `CLIP` from a config dict (`TINY_CLIP` by default); never downloads."""
    config = copy.deepcopy(config or TINY_CLIP)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = open_clip.CLIP(**config)
    except TypeError as e:
        raise ConfigError(f"bad CLIP config: {e}") from e
    ctx = int(config["text_cfg"]["context_length"])
    image_size = int(config["vision_cfg"]["image_size"])
    return Surrogate(
        model=model.to(device),
        tokenizer=lambda texts: open_clip.tokenize(list(texts), context_length=ctx),
        image_size=image_size,
        mean=tuple(OPENAI_DATASET_MEAN),
        std=tuple(OPENAI_DATASET_STD),
        spec={"source": "local"},
        config=config,
    )


def save_clip(surrogate: Surrogate, directory: str | Path) -> None:
    """Write a locally built CLIP as `config.json` + `model.safetensors` (atomic)."""
    if surrogate.config is None:
        raise ConfigError(
            "only a CLIP built from a config can be saved; pretrained ones are referenced by name"
        )
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in surrogate.model.state_dict().items()}
    with atomic_path(directory / WEIGHTS_NAME) as tmp:
        save_file(state, str(tmp))
    atomic_write_text(directory / CONFIG_NAME, json.dumps({"clip": surrogate.config}, indent=2))


def load_clip(directory: str | Path, *, device: str | torch.device = "cpu") -> Surrogate:
    """Read a folder written by `save_clip`; returns the model in eval mode."""
    directory = Path(directory)
    cfg_path, w_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
    if not cfg_path.exists() or not w_path.exists():
        raise ConfigError(f"{directory} is not a saved CLIP (needs {CONFIG_NAME} and {WEIGHTS_NAME})")
    try:
        config = json.loads(cfg_path.read_text(encoding="utf-8"))["clip"]
        state = load_file(str(w_path))
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, OSError, RuntimeError) as e:
        raise IntegrityError(f"cannot read the CLIP in {directory}: {one_line(e)}") from e
    except SafetensorError as e:
        raise IntegrityError(f"cannot read {w_path} (truncated?): {one_line(e)}") from e
    try:
        surrogate = create_clip(config, device="cpu")
    except (TypeError, ValueError, KeyError, AttributeError) as e:
        raise IntegrityError(f"{cfg_path} has no valid 'clip' entry: {one_line(e)}") from e
    try:
        surrogate.model.load_state_dict(state)
    except RuntimeError as e:
        raise IntegrityError(f"{w_path} does not match {cfg_path}: {one_line(e)}") from e
    surrogate.model.to(device).eval()
    return surrogate


def load_open_clip(name: str, pretrained: str | None, *, device: str | torch.device = "cpu") -> Surrogate:
    """A pretrained open_clip model (e.g. `ViT-B-32`, `openai`): fetched once into `$PROTECT_HOME/weights`, then offline."""
    if name not in open_clip.list_models():
        raise ConfigError(f"unknown open_clip model {name!r}; see open_clip.list_models()")
    model = open_clip_model(name, pretrained, device=device)
    size = model.visual.image_size
    size = int(size[0] if isinstance(size, (tuple, list)) else size)
    mean = tuple(getattr(model.visual, "image_mean", None) or OPENAI_DATASET_MEAN)
    std = tuple(getattr(model.visual, "image_std", None) or OPENAI_DATASET_STD)
    return Surrogate(
        model=model.eval(),
        tokenizer=open_clip.get_tokenizer(name),
        image_size=size,
        mean=mean,
        std=std,
        spec={"source": "open_clip", "model": name, "pretrained": pretrained},
    )


# -- the contrastive objective and its training loop ---------------------------------------------------------------
def clip_loss(
    image_emb: torch.Tensor, text_emb: torch.Tensor, scale: torch.Tensor, keys: torch.Tensor
) -> torch.Tensor:
    """Symmetric InfoNCE (CLIP's loss, the paper's Eq. 4) with every pair of equal `keys` counted as a positive.

    Change from the paper: plain InfoNCE takes only the diagonal as positive, so a batch holding the same caption twice
    (class-wise prompts, repeated descriptions) would push an image *away* from its own caption's duplicates. Equal
    captions share the target mass instead; with distinct captions this is exactly the paper's loss.
    """
    logits = scale * image_emb @ text_emb.T
    same = (keys[:, None] == keys[None, :]).float()
    target = same / same.sum(dim=1, keepdim=True)
    return 0.5 * (
        -(target * F.log_softmax(logits, dim=1)).sum(1).mean()
        - (target * F.log_softmax(logits.T, dim=1)).sum(1).mean()
    )


def caption_keys(captions: Sequence[str]) -> torch.Tensor:
    """One integer per caption, equal for equal captions (after whitespace/case normalisation)."""
    index: dict[str, int] = {}
    return torch.tensor([index.setdefault(" ".join(c.lower().split()), len(index)) for c in captions])


def to_tensor01(x_uint8: np.ndarray) -> torch.Tensor:
    """uint8 NHWC -> float [0, 1] NCHW (3 channels; greyscale repeated)."""
    x = torch.from_numpy(np.ascontiguousarray(x_uint8)).permute(0, 3, 1, 2).float() / 255.0
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


def train_clip(
    surrogate: Surrogate,
    x_uint8: np.ndarray,
    captions: Sequence[str],
    *,
    epochs: int = 15,
    batch_size: int = 128,
    lr: float = 1e-3,
    weight_decay: float = 0.1,
    warmup_steps: int = 50,
    seed: int = 0,
    callback: Callable[[int, float], None] | None = None,
) -> list[float]:
    """Train a CLIP from its current weights on (image, caption) pairs; returns the mean loss of each epoch.

    AdamW with linear warm-up then cosine decay, as in open_clip's trainer, scaled down for CPU. Used for the offline
    surrogate and, with identical arguments for every arm, for the benchmark's contrastive victims.
    """
    if len(x_uint8) != len(captions) or len(captions) == 0:
        raise ConfigError(f"need as many captions as images, got {len(captions)} for {len(x_uint8)}")
    device = surrogate.device
    model = surrogate.model.train().requires_grad_(True)
    gen = torch.Generator().manual_seed(seed)
    x_all = to_tensor01(x_uint8)
    tokens = surrogate.tokenize(captions).cpu()
    keys = caption_keys(captions)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}], lr=lr
    )
    steps_per_epoch = max(1, len(captions) // batch_size)
    total = epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _warmup_cosine(s, warmup_steps, total))

    def step(idx: torch.Tensor) -> torch.Tensor:
        img = surrogate.encode_image(x_all[idx].to(device))
        txt = surrogate.encode_text(tokens[idx].to(device))
        return clip_loss(img, txt, surrogate.logit_scale(), keys[idx].to(device))

    history = run_epochs(
        step,
        opt,
        sched,
        n=len(captions),
        batch_size=batch_size,
        epochs=epochs,
        gen=gen,
        name="clip",
        callback=callback,
    )
    model.eval()
    return history


def run_epochs(
    step: Callable[[torch.Tensor], torch.Tensor],
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler,
    *,
    n: int,
    batch_size: int,
    epochs: int,
    gen: torch.Generator,
    name: str,
    callback: Callable[[int, float], None] | None = None,
) -> list[float]:
    """The shared minibatch loop: shuffled full batches, one optimiser and scheduler step each; mean loss per epoch."""
    history: list[float] = []
    for epoch in range(epochs):
        order = torch.randperm(n, generator=gen)
        losses = []
        for b in range(max(1, n // batch_size)):
            loss = step(order[b * batch_size : (b + 1) * batch_size])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
        history.append(float(np.mean(losses)))
        log.info("%s epoch %d/%d loss %.4f", name, epoch + 1, epochs, history[-1])
        if callback is not None:
            callback(epoch, history[-1])
    return history


def _warmup_cosine(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))


@torch.no_grad()
def embed_pairs(
    surrogate: Surrogate, x_uint8: np.ndarray, captions: Sequence[str], *, batch_size: int = 256
) -> tuple[torch.Tensor, torch.Tensor]:
    """L2-normalised (image, text) embeddings of a pair set, for retrieval evaluation."""
    surrogate.model.eval()
    device = surrogate.device
    imgs, txts = [], []
    for i in range(0, len(captions), batch_size):
        imgs.append(surrogate.encode_image(to_tensor01(x_uint8[i : i + batch_size]).to(device)).cpu())
        txts.append(surrogate.encode_text(surrogate.tokenize(captions[i : i + batch_size])).cpu())
    return torch.cat(imgs), torch.cat(txts)
