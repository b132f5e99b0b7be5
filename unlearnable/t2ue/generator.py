"""Text-conditioned noise generators G(text, z) -> delta with ||delta||_inf <= eps by construction.

`SSAGenerator` is the paper's architecture (T2UE, arXiv 2508.03091, §3.1, Fig. 3), adapted from SSA-GAN (Liao et al.,
CVPR 2022): z -> FC -> 4x4 feature map -> residual blocks with x2 nearest upsampling in between, where every
normalisation is SSCBN (parameter-free BatchNorm whose scale and shift are predicted from the text embedding and
gated by a predicted spatial mask), then LeakyReLU -> Conv -> tanh. The output is eps * tanh(.), so the bound holds
for any weights. It is trained without a discriminator. `UNetGenerator` is an ablation built on diffusers'
`UNet2DConditionModel` (cross-attention on the CLIP token states, one forward pass from a z map; no diffusion).

Sizes are CPU-scaled: `ngf=16` and blocks up to `image_size` (16 px -> 3 blocks for 32 px images, upsampled by the
pipeline) instead of the co-author's ngf=64 and 7 blocks up to 256 px.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from protect.errors import ConfigError, IntegrityError, UnknownNameError, one_line
from protect.paths import atomic_path, atomic_write_text

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
DEFAULT_EPS = 8 / 255


@dataclass
class GeneratorConfig:
    """Everything needed to rebuild a generator (saved as the `generator` entry of `config.json`).

    `text_dim` is the pooled CLIP embedding size for `ssa` and the text tower width (token states) for `unet`.
    `pooled_dim` (unet only): the pooled embedding's size, fed to every ResNet block as a scale and shift through
    diffusers' class embedding, as SSCBN conditions every SSA block; 0 = cross-attention only (checkpoints saved
    before this field).
    """

    arch: str = "ssa"
    text_dim: int = 64
    image_size: int = 32
    eps: float = DEFAULT_EPS
    z_dim: int = 100
    ngf: int = 16
    cond_hidden: int = 64
    unet_channels: list[int] = field(default_factory=lambda: [32, 64, 64])
    z_channels: int = 4
    pooled_dim: int = 0

    def __post_init__(self) -> None:
        for f in fields(self):  # a hand-edited config.json must fail here, not deep inside torch
            value = getattr(self, f.name)
            if not _is_a(value, f.type):
                raise ConfigError(f"generator {f.name} must be {f.type}, got {value!r}")
        if (
            min(self.text_dim, self.z_dim, self.ngf, self.cond_hidden, self.z_channels, *self.unet_channels)
            < 1
        ):
            raise ConfigError(
                "generator sizes (text_dim, z_dim, ngf, cond_hidden, channels) must be positive"
            )
        if self.arch not in GENERATORS:
            raise UnknownNameError(
                f"unknown generator arch {self.arch!r}; choose one of {', '.join(GENERATORS)}"
            )
        if not 0 < self.eps <= 1:
            raise ConfigError(f"eps must lie in (0, 1], got {self.eps}")
        if self.image_size < 8 or self.image_size & (self.image_size - 1):
            raise ConfigError(f"generator image_size must be a power of two >= 8, got {self.image_size}")


def _is_a(value: Any, annotation: str) -> bool:
    """`value` fits a GeneratorConfig field's annotation (int, float, str, list[int]); a bool is no number."""
    if isinstance(value, bool):
        return False
    if annotation == "list[int]":
        return isinstance(value, list) and all(_is_a(v, "int") for v in value)
    return isinstance(value, {"int": int, "float": (int, float), "str": str}[annotation])


class SSCBN(nn.Module):
    """Semantic-spatial conditional BatchNorm (SSA-GAN Eq. 2): BN(h) * (1 + m * dgamma(e)) + m * beta(e).

    gamma/beta are two-layer MLPs of the text embedding e whose last layer starts at zero (identity at init, as in
    SSA-GAN's `affine`); m is the block's predicted spatial mask in [0, 1].
    """

    def __init__(self, channels: int, text_dim: int, hidden: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, affine=False)
        self.gamma = nn.Sequential(nn.Linear(text_dim, hidden), nn.ReLU(), nn.Linear(hidden, channels))
        self.beta = nn.Sequential(nn.Linear(text_dim, hidden), nn.ReLU(), nn.Linear(hidden, channels))
        for mlp in (self.gamma, self.beta):
            nn.init.zeros_(mlp[2].weight)
            nn.init.zeros_(mlp[2].bias)

    def forward(self, h: torch.Tensor, emb: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        gamma = self.gamma(emb)[:, :, None, None]
        beta = self.beta(emb)[:, :, None, None]
        return self.bn(h) * (1 + mask * gamma) + mask * beta


class SSACNBlock(nn.Module):
    """SSA-GAN's residual block: two (SSCBN, LeakyReLU) pairs before each of two 3x3 convs, mask from the input."""

    def __init__(self, c_in: int, c_out: int, text_dim: int, hidden: int) -> None:
        super().__init__()
        mid = max(8, c_in // 2)
        self.mask = nn.Sequential(
            nn.Conv2d(c_in, mid, 3, padding=1), nn.BatchNorm2d(mid), nn.ReLU(), nn.Conv2d(mid, 1, 1)
        )
        self.norms = nn.ModuleList(
            [
                SSCBN(c_in, text_dim, hidden),
                SSCBN(c_in, text_dim, hidden),
                SSCBN(c_out, text_dim, hidden),
                SSCBN(c_out, text_dim, hidden),
            ]
        )
        self.c1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.c2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.shortcut = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()
        # SSA-GAN's learnable residual gate. SSA-GAN starts it at 0 (hundreds of GAN epochs); at 0 the text-conditioned
        # branch gets no gradient, which stalls a CPU-length run, so it starts at 1 here.
        self.gain = nn.Parameter(torch.ones(1))

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        m = torch.sigmoid(self.mask(h))
        r = F.leaky_relu(self.norms[1](F.leaky_relu(self.norms[0](h, emb, m), 0.2), emb, m), 0.2)
        r = self.c1(r)
        r = F.leaky_relu(self.norms[3](F.leaky_relu(self.norms[2](r, emb, m), 0.2), emb, m), 0.2)
        return self.shortcut(h) + self.gain * self.c2(r)


class SSAGenerator(nn.Module):
    """The paper's NetG: FC(z) -> 4x4x(8 ngf) -> SSACN blocks (x2 upsampling between) -> conv -> eps * tanh."""

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        self.config = config
        n_blocks = int(math.log2(config.image_size // 4)) + 1
        chans = [config.ngf * max(1, 8 >> i) for i in range(n_blocks + 1)]
        self.fc = nn.Linear(config.z_dim, chans[0] * 16)
        self.blocks = nn.ModuleList(
            [SSACNBlock(chans[i], chans[i + 1], config.text_dim, config.cond_hidden) for i in range(n_blocks)]
        )
        self.out = nn.Conv2d(chans[-1], 3, 3, padding=1)

    @property
    def z_shape(self) -> tuple[int, ...]:
        return (self.config.z_dim,)

    def forward(
        self,
        emb: torch.Tensor,
        z: torch.Tensor,
        states: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        h = self.fc(z).view(z.shape[0], -1, 4, 4)
        for i, block in enumerate(self.blocks):
            if i:
                h = F.interpolate(h, scale_factor=2, mode="nearest")
            h = block(h, emb)
        return self.config.eps * torch.tanh(self.out(F.leaky_relu(h, 0.2)))


class UNetGenerator(nn.Module):
    """Ablation (not the paper's model): a tiny diffusers `UNet2DConditionModel` mapping a z map to delta in one pass,
    cross-attending to the CLIP text token states (the route of the co-author's abandoned `text-to-noise` prototype).

    With cross-attention alone (only at the coarsest level, for CPU cost) the text barely reached the output and,
    on the benchmark's mixed public pairs, the noise stayed caption-independent and the surrogate loss flat; the
    pooled embedding as a scale and shift in every ResNet block (`pooled_dim`) fixed that.
    """

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        from diffusers import UNet2DConditionModel

        self.config = config
        chans = tuple(config.unet_channels)
        self.unet = UNet2DConditionModel(
            sample_size=config.image_size,
            in_channels=config.z_channels,
            out_channels=3,
            block_out_channels=chans,
            layers_per_block=1,
            cross_attention_dim=config.text_dim,
            # cross-attention only at the coarsest level: self-attention over 32x32 positions is too slow on CPU
            down_block_types=("DownBlock2D",) * (len(chans) - 1) + ("CrossAttnDownBlock2D",),
            up_block_types=("CrossAttnUpBlock2D",) + ("UpBlock2D",) * (len(chans) - 1),
            norm_num_groups=8,
            attention_head_dim=8,
            **(
                dict(
                    class_embed_type="projection",
                    projection_class_embeddings_input_dim=config.pooled_dim,
                    resnet_time_scale_shift="scale_shift",
                )
                if config.pooled_dim
                else {}
            ),
        )

    @property
    def z_shape(self) -> tuple[int, ...]:
        return (self.config.z_channels, self.config.image_size, self.config.image_size)

    def forward(
        self,
        emb: torch.Tensor,
        z: torch.Tensor,
        states: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if states is None:
            raise ValueError("the unet generator needs the text token states")
        # diffusers turns the keep-mask (1 = token, 0 = padding) into the attention bias itself
        keep = None if mask is None else mask.to(z.dtype)
        pooled = emb if self.config.pooled_dim else None
        out = self.unet(
            z,
            0,
            encoder_hidden_states=states,
            encoder_attention_mask=keep,
            class_labels=pooled,
            return_dict=False,
        )[0]
        return self.config.eps * torch.tanh(out)


GENERATORS: dict[str, type[nn.Module]] = {"ssa": SSAGenerator, "unet": UNetGenerator}


def list_generators() -> list[str]:
    return list(GENERATORS)


def create_generator(config: GeneratorConfig, *, seed: int = 0) -> nn.Module:
    """A randomly initialised generator of `config.arch`."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return GENERATORS[config.arch](config)


def save_generator(
    generator: nn.Module, directory: str | Path, *, extra: dict[str, Any] | None = None
) -> None:
    """Write `config.json` (generator config + `extra`, e.g. the surrogate spec) and `model.safetensors`, atomically."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in generator.state_dict().items()}
    with atomic_path(directory / WEIGHTS_NAME) as tmp:
        save_file(state, str(tmp))
    payload = {"generator": asdict(generator.config), **(extra or {})}
    atomic_write_text(directory / CONFIG_NAME, json.dumps(payload, indent=2))


def read_config(directory: str | Path) -> dict[str, Any]:
    """The generator folder's `config.json` as a dict (missing, unreadable or not an object: one clear error)."""
    path = Path(directory) / CONFIG_NAME
    if not path.exists():
        raise ConfigError(
            f"{directory} is not a T2UE generator folder (no {CONFIG_NAME}); train one with "
            "`protect t2ue train`"
        )
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise IntegrityError(f"{path} is not valid JSON: {one_line(e)}") from e
    if not isinstance(config, dict):
        raise IntegrityError(f"{path} must hold a JSON object, got {type(config).__name__}")
    return config


def load_generator(directory: str | Path) -> nn.Module:
    """Rebuild a generator from a folder written by `save_generator`; eval mode (BatchNorm uses running stats)."""
    cfg = read_config(directory)
    try:
        config = GeneratorConfig(**cfg["generator"])
    except (KeyError, TypeError) as e:
        raise IntegrityError(f"{directory}/{CONFIG_NAME} has no valid 'generator' entry: {e}") from e
    generator = create_generator(config)
    try:
        generator.load_state_dict(load_file(str(Path(directory) / WEIGHTS_NAME)))
    except (OSError, RuntimeError, SafetensorError) as e:
        raise IntegrityError(f"cannot load {directory}/{WEIGHTS_NAME}: {one_line(e)}") from e
    return generator.eval()
