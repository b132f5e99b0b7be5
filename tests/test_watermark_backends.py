"""Base watermarkers: dwtdct (classical), hidden (shipped HiDDeN models), rivagan (optional), the registry."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from protect.errors import ConfigError, MissingDependencyError, UnknownNameError
from protect.metrics import psnr
from watermark.backends import create_backend, list_backends
from watermark.backends.hidden import WEIGHTS_DIR, HiddenBackend
from watermark.hidden_model import HiddenConfig, HiddenModel


def _jpeg(a: np.ndarray, q: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "JPEG", quality=q)
    return np.asarray(Image.open(buf))


def _bits(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 2, n)


def test_registry_lists_backends_and_rejects_unknown_names():
    assert {"dwtdct", "hidden", "rivagan"} <= set(list_backends())
    with pytest.raises(UnknownNameError, match="choose one of"):
        create_backend("nope")


@pytest.mark.parametrize("shape", [(128, 128, 3), (96, 72, 1)])
def test_dwtdct_round_trip_soft_scores_and_jpeg(shape):
    img = data.astronaut()[: shape[0], : shape[1]]
    img = img if shape[2] == 3 else img.mean(axis=2, keepdims=True).astype(np.uint8)
    wm = create_backend("dwtdct")
    bits = _bits(30)
    marked = wm.embed(img, bits, 40.0)
    assert marked.shape == img.shape and marked.dtype == np.uint8
    assert psnr(img, marked) > 38
    scores = wm.extract(marked, 30, 40.0)
    assert np.all(np.abs(scores) <= 1) and ((scores > 0) == bits).all()
    if shape[2] == 3:
        assert ((wm.extract(_jpeg(marked, 75), 30, 40.0) > 0) == bits).mean() >= 0.95
    unmarked = wm.extract(img, 30, 40.0)
    assert np.abs(unmarked).mean() < 0.5  # no confident bits where nothing was embedded


def test_too_small_images_give_one_clear_line():
    wm = create_backend("dwtdct")
    tiny = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(
        ConfigError, match=r"a 16x16 image holds 8 dwtdct payload bits but 30 are needed"
    ) as e:
        wm.embed(tiny, _bits(30), 40.0)
    assert "\n" not in str(e.value)


def test_hidden_model_folder_round_trip(tmp_path):
    torch.manual_seed(0)
    model = HiddenModel(HiddenConfig(payload_bits=5, resolution=16, channels=4)).eval()
    model.save_pretrained(tmp_path / "hidden-5")
    loaded = HiddenModel.from_pretrained(tmp_path / "hidden-5")
    x = torch.rand(2, 3, 40, 24)
    bits = torch.ones(2, 5)
    with torch.no_grad():
        torch.testing.assert_close(model.embed(x, bits), loaded.embed(x, bits))
        assert loaded.extract(x).shape == (2, 5)
    backend = HiddenBackend(tmp_path)
    assert backend.payloads == [5]
    with pytest.raises(ConfigError, match="holds 5 hidden payload bits but 9"):
        backend.embed(np.zeros((32, 32, 3), np.uint8), _bits(9), 1.0)
    with pytest.raises(ConfigError, match="not a HiDDeN model folder"):
        HiddenModel.from_pretrained(tmp_path)


def test_shipped_hidden_models_carry_their_payloads():
    wm = create_backend("hidden")
    assert wm.payloads == [9, 16, 30]
    assert sum(f.stat().st_size for f in WEIGHTS_DIR.rglob("*")) < 5e6
    x = [data.astronaut()[i * 40 : i * 40 + 64, 100:164] for i in range(4)] + [data.chelsea()[:32, :32]]
    for n in (9, 16, 30, 12):  # 12 is padded up to the 16-bit model
        bits = _bits(n, seed=n)
        acc = np.mean([((wm.extract(wm.embed(img, bits, 1.0), n) > 0) == bits).mean() for img in x])
        assert acc >= 0.9, (n, acc)


def test_rivagan_adapter_or_a_clear_missing_dependency():
    try:
        wm = create_backend("rivagan")
    except MissingDependencyError as e:
        assert "pip install" in str(e)
        return
    img = data.astronaut()[:128, :128].copy()
    bits = _bits(20)
    marked = wm.embed(img, bits, 1.0)
    assert psnr(img, marked) > 35
    assert ((wm.extract(marked, 20) > 0) == bits).mean() >= 0.9
    with pytest.raises(ConfigError, match="holds 0 rivagan"):
        wm.embed(img[:32, :32], bits, 1.0)
