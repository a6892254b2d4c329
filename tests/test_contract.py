"""The file contract, both ways: every kind of file repghost writes reads back what was written, old
layouts still read, malformed contracts are refused, and the contract's keys live in one module."""

import ast
import json
from pathlib import Path

import pytest
import torch

from repghost import create_model, save_checkpoint
from repghost.checkpoint import (
    DETECTION_FORMAT,
    EXPORT_KEYS,
    SEARCH_FORMAT,
    TRAINING_KIND,
    CheckpointError,
    Recorded,
    export_props,
    open_model,
    other_file_message,
    props_record,
    read_safetensors_record,
    read_sidecar,
    read_torchscript_props,
    read_training_checkpoint,
    sidecar_path,
    training_checkpoint,
    training_record,
    write_sidecar,
)
from repghost.checkpoint import contract as contract_module
from repghost.io import atomic_torch_save
from repghost.preprocess import Preprocess

SRC = Path(__file__).resolve().parents[1] / "src" / "repghost"
PRE = Preprocess(input_size=32, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), crop_pct=1.0)
CLASSES = ["cat", "dog", "emu"]
#: A run's resolved config, as far as the contract reads it (train/config.py writes the full one).
CONFIG = {"model": "repghostnet_050", "img_size": 32, "mean": [0.5] * 3, "std": [0.5] * 3,
          "val_interpolation": "bilinear", "crop_pct": 1.0, "data": "digits", "drop_rate": 0.0, "model_kwargs": {}}


def _expected(form: str | None = "deploy") -> Recorded:
    return Recorded("repghostnet_050", PRE, CLASSES, "digits", form=form)


def test_exported_files_read_back_their_contract(tmp_path):
    """A safetensors source with the contract → TorchScript and ONNX exports and an edge runtime's
    sidecar: each reader gives back the model name, preprocessing, classes and data."""
    from repghost.deploy import onnx_metadata
    from repghost.deploy.pipeline import export
    from repghost.train import open_for_eval

    model = create_model("repghostnet_050", num_classes=3).eval()
    src = save_checkpoint(model, tmp_path / "m.safetensors", {"classes": CLASSES, "data": "digits"}, PRE)
    recorded = read_safetensors_record(src)
    assert (recorded.model_name, recorded.preprocess, recorded.classes, recorded.data, recorded.form) == \
        ("repghostnet_050", PRE, CLASSES, "digits", "train")

    export(str(src), tmp_path / "m.pt", log=lambda _: None)
    assert props_record(read_torchscript_props(tmp_path / "m.pt"), "m.pt") == _expected()
    export(str(src), tmp_path / "m.onnx", exporter="legacy", log=lambda _: None)
    assert props_record(onnx_metadata(tmp_path / "m.onnx"), "m.onnx") == _expected()
    opened = open_for_eval(tmp_path / "m.onnx")   # eval reads ONNX through the contract
    assert (opened.preprocess, opened.classes, opened.data) == (PRE, CLASSES, "digits")

    props = export_props("repghostnet_050", PRE, CLASSES, "digits")
    side = write_sidecar(tmp_path / "m.mnn", props)
    assert side == sidecar_path(tmp_path / "m.mnn") and side.name == "m.mnn.repghost.json"
    assert read_sidecar(tmp_path / "m.mnn") == props and props_record(props, side) == _expected()
    assert set(props) == set(EXPORT_KEYS)
    assert set(export_props("x", PRE)) == set(EXPORT_KEYS[:2])   # nothing unknown is written


def _training_file(tmp_path, name="last.pt", **changes) -> Path:
    model = create_model("repghostnet_050", num_classes=3)
    state = training_checkpoint(model.state_dict(), CONFIG, dict(model.model_kwargs), 3, CLASSES,
                                {"top1": 60.0, "epoch": 1, "source": "ema"}, model.state_dict(), epoch=2)
    state.update(changes)
    return atomic_torch_save({k: v for k, v in state.items() if v is not None}, tmp_path / name)


def test_training_checkpoint_layout_is_written_and_read_by_the_contract(tmp_path):
    path = _training_file(tmp_path)
    state = read_training_checkpoint(path)
    assert state["kind"] == TRAINING_KIND and state["epoch"] == 2   # the trainer's resumable rest travels
    assert training_record(state, path) == Recorded("repghostnet_050", PRE, CLASSES, "digits",
                                                    {"num_classes": 3}, "train",
                                                    {"best": {"top1": 60.0, "epoch": 1, "source": "ema"}})
    loaded = open_model(path)
    assert (loaded.preprocess, loaded.classes, loaded.data, loaded.model.num_classes) == (PRE, CLASSES, "digits", 3)
    assert "came from the EMA ones" in loaded.notes[0]
    # Files from before the model's kwargs were recorded rebuild from num_classes and the config.
    assert open_model(_training_file(tmp_path, "old.pt", model_kwargs=None)).model.num_classes == 3


@pytest.mark.parametrize("config, message", [
    ({k: v for k, v in CONFIG.items() if k != "model"}, "training checkpoint without its config"),
    ({**CONFIG, "mean": "grey"}, "malformed preprocessing settings in its config"),
    ({k: v for k, v in CONFIG.items() if k != "crop_pct"}, "malformed preprocessing settings in its config"),
])
def test_a_training_checkpoint_with_a_broken_config_is_refused(tmp_path, config, message):
    with pytest.raises(CheckpointError, match=message):
        open_model(_training_file(tmp_path, config=config))


def test_malformed_or_missing_contracts_are_refused(tmp_path):
    with pytest.raises(CheckpointError, match="malformed repghost metadata"):
        props_record({"repghost_preprocess": "{not json"}, "m.onnx")
    with pytest.raises(CheckpointError, match="malformed repghost metadata"):
        props_record({"repghost_classes": "[1,"}, "m.onnx")
    with pytest.raises(CheckpointError, match="no m.mnn.repghost.json beside it"):
        read_sidecar(tmp_path / "m.mnn")
    sidecar_path(tmp_path / "m.mnn").write_text(json.dumps(["not", "an", "object"]))
    with pytest.raises(CheckpointError, match="expected an object of strings"):
        read_sidecar(tmp_path / "m.mnn")
    (tmp_path / "x.pt").write_bytes(b"not torchscript")
    with pytest.raises(CheckpointError, match="cannot read .*x.pt as TorchScript"):
        read_torchscript_props(tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match="not a repghost training checkpoint"):
        read_training_checkpoint(atomic_torch_save({"state_dict": {}}, tmp_path / "plain.pt"))


def test_tagged_files_say_what_they_are():
    assert "det-eval" in other_file_message({"format": DETECTION_FORMAT}, "d.pt")
    assert "search --resume" in other_file_message({"format": SEARCH_FORMAT}, "s.pt")
    assert other_file_message({"format": "something else"}, "x.pt") is None
    assert other_file_message({"weight": torch.zeros(1)}, "x.pt") is None


def _contract_values() -> set[str]:
    c = contract_module
    return {c.TRAINING_KIND, c.DETECTION_FORMAT, c.SEARCH_FORMAT, c.SIDECAR_SUFFIX, *c.EXPORT_KEYS, *c.DETECTION_KEYS}


def test_the_contract_keys_are_written_in_one_module():
    """No module outside checkpoint/contract.py spells a format tag or a metadata key (preprocess.py
    owns the preprocessing key); every writer and reader goes through the contract's names."""
    owners = {SRC / "checkpoint" / "contract.py", SRC / "preprocess.py"}
    spelled = [f"{path.relative_to(SRC)}:{node.lineno} {node.value!r}"
               for path in sorted(SRC.rglob("*.py")) if path not in owners
               for node in ast.walk(ast.parse(path.read_text()))
               if isinstance(node, ast.Constant) and node.value in _contract_values()]
    assert spelled == []
