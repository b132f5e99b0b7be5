"""Checkpoint folders: integrity errors in one line, atomic swaps, hygiene after forgetting."""

from __future__ import annotations

import errno
import json
import os
import time

import pytest
import torch

from forgettable import checkpoint
from forgettable.audit import checkpoint_hygiene
from forgettable.config import ForgettableConfig
from forgettable.forget import forget_checkpoint
from forgettable.model import PreForgettableModel
from protect.errors import ConfigError, IntegrityError

TINY = {"dim": 32, "depth": 2, "heads": 2, "mlp_ratio": 2.0}


def tiny_model(**kw) -> PreForgettableModel:
    torch.manual_seed(0)
    cfg = ForgettableConfig(
        ["a", "b", "c"], backbone="tiny-vit-8", image_size=8, channels=1, patch_size=2, **TINY, **kw
    )
    model = PreForgettableModel(cfg)
    model.optimizer_state = {f"{n}.exp_avg": torch.randn_like(p) for n, p in model.named_parameters()}
    return model


def test_truncated_weights_give_a_clear_error(tmp_path):
    tiny_model().save_pretrained(tmp_path / "m")
    weights = tmp_path / "m" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(IntegrityError, match=r"model.safetensors is corrupt or truncated"):
        PreForgettableModel.from_pretrained(tmp_path / "m")


def test_corrupt_config_gives_a_clear_error(tmp_path):
    tiny_model().save_pretrained(tmp_path / "m")
    (tmp_path / "m" / "config.json").write_text("{not json")
    with pytest.raises(IntegrityError, match=r"config.json is corrupt"):
        PreForgettableModel.from_pretrained(tmp_path / "m")


def test_missing_or_foreign_folders_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="no model folder"):
        PreForgettableModel.from_pretrained(tmp_path / "nothing")
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "keep.txt").write_text("user data")
    with pytest.raises(ConfigError, match="not a model folder"):
        PreForgettableModel.from_pretrained(tmp_path / "photos")
    with pytest.raises(ConfigError, match="exists and is not a model folder"):
        tiny_model().save_pretrained(tmp_path / "photos")
    assert (tmp_path / "photos" / "keep.txt").read_text() == "user data"


def test_a_failed_save_leaves_the_old_checkpoint_whole(tmp_path, monkeypatch):
    model = tiny_model()
    model.save_pretrained(tmp_path / "m")
    old = {p.name: p.read_bytes() for p in (tmp_path / "m").iterdir()}
    calls = []

    def failing_write(path, data):
        calls.append(path)
        if len(calls) == 2:  # the optimiser file: the weights are already written
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # as os.write raises it: no file name
        return real_write(path, data)

    real_write = checkpoint._write
    monkeypatch.setattr(checkpoint, "_write", failing_write)
    with pytest.raises(OSError) as failed:
        model.forget(["a"]).save_pretrained(tmp_path / "m")
    assert failed.value.errno == errno.ENOSPC and failed.value.filename == str((tmp_path / "m").resolve())
    assert {p.name: p.read_bytes() for p in (tmp_path / "m").iterdir()} == old
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no temporary folder left behind
    assert "prompts.0" in PreForgettableModel.from_pretrained(tmp_path / "m").state_dict()


def test_interrupted_swap_points_to_the_previous_model(tmp_path):
    tiny_model().save_pretrained(tmp_path / "m")
    (tmp_path / "m").rename(tmp_path / ".m.old-1234abcd")
    with pytest.raises(
        IntegrityError, match=r"interrupted save left the previous model at .*\.m\.old-1234abcd"
    ):
        PreForgettableModel.from_pretrained(tmp_path / "m")


def test_a_save_killed_between_its_renames_names_the_complete_new_version(tmp_path, monkeypatch):
    """The kill lands after `NAME -> .NAME.old-*` and before `.NAME.tmp-* -> NAME`: the old copy still holds the
    forgotten class, so pointing the user at it would undo the forgetting."""
    tiny_model().save_pretrained(tmp_path / "m")
    renames = []

    def killed_on_second_rename(a, b):
        renames.append((a, b))
        if len(renames) == 2:
            raise KeyboardInterrupt
        return real_rename(a, b)

    real_rename = checkpoint.os.rename
    monkeypatch.setattr(checkpoint.os, "rename", killed_on_second_rename)
    monkeypatch.setattr(checkpoint.shutil, "rmtree", lambda path: None)  # the kill leaves the tmp folder
    with pytest.raises(KeyboardInterrupt):
        forget_checkpoint(tmp_path / "m", ["a"])
    monkeypatch.undo()
    assert not (tmp_path / "m").exists()
    new = renames[1][0]
    with pytest.raises(IntegrityError, match=rf"new version, complete, at .*{new.name}.*previous version at"):
        PreForgettableModel.from_pretrained(tmp_path / "m")
    new.rename(tmp_path / "m")
    assert PreForgettableModel.from_pretrained(tmp_path / "m").config.present_names == ["b", "c"]
    assert [p.name for p in checkpoint.stale_copies(tmp_path / "m")] == [renames[0][1].name]


def test_a_killed_saves_tmp_folder_is_a_stale_copy_and_the_next_save_removes_it(tmp_path):
    tiny_model().save_pretrained(tmp_path / "m")
    left = tmp_path / ".m.tmp-1234abcd"
    tiny_model().save_pretrained(left)  # as a save killed before its swap leaves it
    assert checkpoint.stale_copies(tmp_path / "m") == [left]
    tiny_model().save_pretrained(tmp_path / "m")
    assert left.exists()  # as young as a concurrent save's live folder: kept
    old = time.time() - checkpoint.ABANDONED_S - 60
    os.utime(left, (old, old))
    tiny_model().save_pretrained(tmp_path / "m")
    assert not left.exists() and checkpoint.stale_copies(tmp_path / "m") == []


def test_hygiene_finds_nothing_after_forgetting_and_flags_a_planted_copy(tmp_path):
    model = tiny_model()
    deleted = model.prompts["1"].detach().clone()
    after = model.forget(["b"])
    after.save_pretrained(tmp_path / "clean")
    clean = checkpoint_hygiene(tmp_path / "clean", 1, deleted)
    assert clean.passed and clean.max_cosine is not None and clean.max_cosine < 0.9
    after.optimizer_state["backup.ema"] = deleted * 3 + 0.01 * torch.randn_like(deleted)
    after.save_pretrained(tmp_path / "leaky")
    leaky = checkpoint_hygiene(tmp_path / "leaky", 1, deleted)
    assert not leaky.passed and leaky.similar_tensors == ["optimizer:backup.ema"]
    stale = checkpoint_hygiene(tmp_path / "clean", 0, None)  # class a still present: its key is reported
    assert stale.prompt_keys == ["prompts.0"] and stale.max_cosine is None


def test_config_json_is_readable_and_records_hashes(tmp_path):
    tiny_model(head="prompt_tied", tuning="lora").save_pretrained(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "config.json").read_text())
    assert meta["config"]["head"] == "prompt_tied" and set(meta["files"]) == {
        "model.safetensors",
        "optimizer.safetensors",
    }
    loaded = PreForgettableModel.from_pretrained(tmp_path / "m")
    assert loaded.config.tuning == "lora"


def test_forgetting_on_disk_refuses_a_config_that_disagrees_with_the_weights(tmp_path):
    tiny_model().save_pretrained(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "config.json").read_text())
    meta["config"]["present"] = [0, 1]  # hand-edited: prompts.2 is still in model.safetensors
    (tmp_path / "m" / "config.json").write_text(json.dumps(meta))
    before = (tmp_path / "m" / "model.safetensors").read_bytes()
    with pytest.raises(IntegrityError, match=r"prompts in model.safetensors \[0, 1, 2\] differ"):
        forget_checkpoint(tmp_path / "m", ["a"])
    assert (tmp_path / "m" / "model.safetensors").read_bytes() == before


def test_forgetting_on_disk_equals_forgetting_in_memory(tmp_path):
    model = tiny_model(head="prompt_tied")
    model.save_pretrained(tmp_path / "m")
    forget_checkpoint(tmp_path / "m", ["b", "b"], out=tmp_path / "disk")
    disk = PreForgettableModel.from_pretrained(tmp_path / "disk")
    memory = model.forget(["b"])
    assert disk.state_dict().keys() == memory.state_dict().keys()
    assert all(torch.equal(disk.state_dict()[k], memory.state_dict()[k]) for k in disk.state_dict())
    assert disk.config == memory.config and not disk.optimizer_state
    assert [e["deleted"] for e in disk.forgetting_log] == [e["deleted"] for e in memory.forgetting_log]


def test_in_place_forget_refuses_a_folder_with_other_files(tmp_path):
    tiny_model().save_pretrained(tmp_path / "m")
    (tmp_path / "m" / "NOTES.md").write_text("my notes")
    before = {p.name: p.read_bytes() for p in (tmp_path / "m").iterdir()}
    with pytest.raises(ConfigError, match=r"holds files besides the model \(NOTES.md\)"):
        forget_checkpoint(tmp_path / "m", ["b"])
    assert {p.name: p.read_bytes() for p in (tmp_path / "m").iterdir()} == before


def test_forget_through_a_symlink_updates_the_real_folder(tmp_path):
    tiny_model().save_pretrained(tmp_path / "real")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    forget_checkpoint(tmp_path / "link", ["b"])
    assert (tmp_path / "link").is_symlink()
    for where in ("real", "link"):
        assert PreForgettableModel.from_pretrained(tmp_path / where).config.present_names == ["a", "c"]


def test_forget_from_inside_the_folder_is_refused(tmp_path, monkeypatch):
    tiny_model().save_pretrained(tmp_path / "m")
    monkeypatch.chdir(tmp_path / "m")
    with pytest.raises(ConfigError, match="current folder"):
        forget_checkpoint(".", ["b"])
    assert PreForgettableModel.from_pretrained(tmp_path / "m").config.present_names == ["a", "b", "c"]


def test_forget_out_never_replaces_another_model(tmp_path):
    tiny_model().save_pretrained(tmp_path / "m")
    tiny_model().save_pretrained(tmp_path / "other")
    forget_checkpoint(tmp_path / "other", ["a"])
    with pytest.raises(ConfigError, match="exists; choose a new --out"):
        forget_checkpoint(tmp_path / "m", ["b"], out=tmp_path / "other")
    assert PreForgettableModel.from_pretrained(tmp_path / "other").config.present_names == ["b", "c"]
    res = forget_checkpoint(tmp_path / "m", ["b"], out=tmp_path / "m")  # the same folder: in place
    assert res.forgotten == ["b"]
    assert PreForgettableModel.from_pretrained(tmp_path / "m").config.present_names == ["a", "c"]


def test_stale_copies_are_flagged_then_removed_by_the_next_save(tmp_path):
    model = tiny_model()
    model.save_pretrained(tmp_path / "m")
    stale = tmp_path / ".m.old-1234abcd"  # what a save killed after its second rename leaves
    model.save_pretrained(stale)
    forget_checkpoint(tmp_path / "m", ["b"])
    assert not stale.exists()
    model.save_pretrained(stale)
    hygiene = checkpoint_hygiene(tmp_path / "m", 1, model.prompts["1"])
    assert hygiene.stale_copies == [str(stale)] and not hygiene.passed


def test_config_with_bad_contents_is_an_integrity_error(tmp_path):
    tiny_model().save_pretrained(tmp_path / "m")
    path = tmp_path / "m" / "config.json"
    meta = json.loads(path.read_text())
    for bad in ({k: v for k, v in meta.items() if k != "config"}, {**meta, "config": {"class_names": "abc"}}):
        path.write_text(json.dumps(bad))
        with pytest.raises(IntegrityError, match="config.json has no valid model config"):
            PreForgettableModel.from_pretrained(tmp_path / "m")


HAND_EDITS = [
    ("config", "image_size", -8),
    ("config", "patch_size", 0),
    ("config", "dim", 31),  # not a multiple of heads: only building the model finds it, so forget does not
    ("config", "heads", 0),
    ("config", "mlp_ratio", "2"),
    ("config", "mean", ["a"]),
    ("config", "std", [0.0]),
    ("config", "backbone", 5),
    ("config", "present", ["a"]),
    ("config", "mlp_ratio", float("inf")),  # JSON's Infinity
    ("config", "mean", [float("-inf")]),
    ("recipe", None, "x"),
    ("recipe", "bogus", 1),
    ("recipe", "epochs", "x"),
    ("forgetting_log", None, [{"class": "a", "at": "now", "deleted": [5], "kept": "x"}]),
    ("forgetting_log", None, 5),
    ("forgetting_log", None, [{"x": 1}]),
]


@pytest.mark.parametrize(("key", "field", "value"), HAND_EDITS)
def test_a_hand_edited_config_json_is_one_integrity_error(tmp_path, key, field, value):
    """Every reader (info, predict, forget, audit) loads through read_checkpoint + from_meta + the model."""
    tiny_model().save_pretrained(tmp_path / "m")
    path = tmp_path / "m" / "config.json"
    meta = json.loads(path.read_text())
    if field is None:
        meta[key] = value
    else:
        meta[key][field] = value
    path.write_text(json.dumps(meta))
    with pytest.raises(IntegrityError, match="config.json"):
        PreForgettableModel.from_pretrained(tmp_path / "m")
    if field != "dim":  # forgetting on disk edits tensors without building the model
        with pytest.raises(IntegrityError, match="config.json"):
            forget_checkpoint(tmp_path / "m", ["a"], out=tmp_path / "m2")
        assert not (tmp_path / "m2").exists()
