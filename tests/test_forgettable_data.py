"""DATA loading for `protect model`: class sub-folders or .npz, and the reproducible held-out split."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from forgettable.data import LabeledImages, load_labeled, split_holdout
from protect.errors import ConfigError


def test_folder_of_class_subfolders(tmp_path):
    for name, value in (("cats", 40), ("dogs", 200)):
        (tmp_path / name).mkdir()
        for i in range(3):
            Image.fromarray(np.full((10 + i, 12, 3), value, np.uint8)).save(tmp_path / name / f"{i}.png")
    data = load_labeled(tmp_path, image_size=8)
    assert data.class_names == ["cats", "dogs"] and data.x.shape == (6, 8, 8, 3)
    assert sorted(data.y.tolist()) == [0, 0, 0, 1, 1, 1]
    assert data.x[data.y == 1].mean() > 190 and data.x[data.y == 0].mean() < 50


def test_npz_names_and_bad_inputs(tmp_path):
    np.savez(
        tmp_path / "d.npz",
        x=np.zeros((4, 8, 8, 1), np.uint8),
        y=np.array([0, 1, 1, 0]),
        classes=np.array(["a", "b"]),
    )
    assert load_labeled(tmp_path / "d.npz").class_names == ["a", "b"]
    np.savez(
        tmp_path / "bad.npz",
        x=np.zeros((2, 8, 8, 1), np.uint8),
        y=np.array([0, 5]),
        classes=np.array(["a", "b"]),
    )
    with pytest.raises(ConfigError, match="labels must lie in 0..1"):
        load_labeled(tmp_path / "bad.npz")
    x = np.zeros((2, 8, 8, 1), np.uint8)
    for y in (np.array([0.5, 1.0]), np.array(["a", "b"]), np.array([b"1", b"0"]), np.array([True, False])):
        np.savez(tmp_path / "odd.npz", x=x, y=y, classes=np.array(["a", "b"]))
        with pytest.raises(ConfigError, match="labels 'y' must be integers"):
            load_labeled(tmp_path / "odd.npz")
    np.savez(tmp_path / "odd.npz", x=x, y=np.array([0, 1]), classes=np.array("ab"))
    with pytest.raises(ConfigError, match="'classes' must be a list of texts"):
        load_labeled(tmp_path / "odd.npz")
    np.savez(tmp_path / "bytes.npz", x=x, y=np.array([0, 1]), classes=np.array([b"left", b"right"]))
    assert load_labeled(tmp_path / "bytes.npz").class_names == ["left", "right"]  # not "b'left'"
    np.savez(
        tmp_path / "words.npz", x=x, y=np.array([0, 1]), classes=np.array(["no\xa0break", "می\u200cشود"])
    )
    assert load_labeled(tmp_path / "words.npz").class_names == [
        "no\xa0break",
        "می\u200cشود",
    ]  # text, not control
    for names, message in (
        (["a", " "], "class name ' ' is blank"),
        (["a", "b\nc"], r"class name 'b\\nc' is blank or holds a control character"),
        (["a", "a"], "class name 'a' appears more than once"),
    ):
        np.savez(tmp_path / "odd.npz", x=x, y=np.array([0, 1]), classes=np.array(names))
        with pytest.raises(ConfigError, match=message):
            load_labeled(tmp_path / "odd.npz")
    np.savez(tmp_path / "keras.npz", x=x, y=np.array([[0], [1]]), classes=np.array(["a", "b"]))
    assert load_labeled(tmp_path / "keras.npz").y.tolist() == [0, 1]
    (tmp_path / "flat").mkdir()
    with pytest.raises(ConfigError, match="one sub-folder per class"):
        load_labeled(tmp_path / "flat")


def test_holdout_split_is_stratified_and_stable_when_a_class_is_removed():
    y = np.repeat(np.arange(3), 20)
    data = LabeledImages(np.arange(60, dtype=np.uint8).reshape(60, 1, 1, 1), y, ["a", "b", "c"])
    train, held = split_holdout(data, fraction=0.25, seed=7)
    assert np.bincount(held.y).tolist() == [5, 5, 5] and len(train) == 45
    oracle_train, oracle_held = split_holdout(data.without(["b"]), fraction=0.25, seed=7)
    kept = train.x[train.y != 1].ravel().tolist()
    assert sorted(oracle_train.x.ravel().tolist()) == sorted(kept)  # same members for the retained classes
