import os
import pickle

import pytest
import timm
import torch
from safetensors.torch import save_file

import repghost
from repghost import (
    CheckpointError,
    create_model,
    load_checkpoint,
    load_model,
    reparameterize,
    save_checkpoint,
)

from conftest import randomize_bn

TOL = 1e-5


def _timm_model(name):
    return randomize_bn(timm.create_model(name, pretrained=False), seed=7).eval()


@pytest.mark.parametrize("name", ["repghostnet_100", "repghostnet_058", "ghostnet_100"])
def test_timm_state_dict_loads_strictly_with_same_logits(tmp_path, name):
    reference = _timm_model(name)
    path = tmp_path / "timm.pth"
    torch.save(reference.state_dict(), path)
    ours = load_checkpoint(create_model(name), path).eval()
    x = torch.randn(2, 3, 224, 224)
    assert torch.allclose(ours(x), reference(x), rtol=0, atol=1e-6)


def test_timm_deploy_state_dict_loads_into_our_deploy_model(tmp_path):
    # timm / the official release fold only the RepGhost branches; the other BNs are folded on load.
    from timm.utils import reparameterize_model

    reference = reparameterize_model(_timm_model("repghostnet_100"))
    path = tmp_path / "timm_deploy.pth"
    torch.save(reference.state_dict(), path)
    ours = load_checkpoint(create_model("repghostnet_100", deploy=True), path).eval()
    x = torch.randn(2, 3, 224, 224)
    out = reference(x)
    assert ((ours(x) - out).abs().max() / out.abs().max()).item() <= TOL


def test_wrapped_and_prefixed_checkpoints(tmp_path):
    reference = randomize_bn(create_model("repghostnet_050")).eval()
    ema = randomize_bn(create_model("repghostnet_050"), seed=1).eval()
    prefixed = {f"module.{k}": v for k, v in reference.state_dict().items()}
    path = tmp_path / "wrapped.pth.tar"
    torch.save({"epoch": 3, "state_dict": prefixed, "state_dict_ema": ema.state_dict(), "arch": "x"}, path)
    x = torch.randn(1, 3, 96, 96)
    plain = load_checkpoint(create_model("repghostnet_050"), path).eval()
    assert torch.equal(plain(x), reference(x))
    from_ema = load_checkpoint(create_model("repghostnet_050"), path, use_ema=True).eval()
    assert torch.equal(from_ema(x), ema(x))


def test_round_trip_train_reparameterize_save_load_model(tmp_path):
    model = randomize_bn(create_model("repghostnet_080", num_classes=10)).eval()
    deployed = reparameterize(model)
    path = save_checkpoint(deployed, tmp_path / "deploy.safetensors", metadata={"top1": 0.5})
    loaded = load_model(path)
    assert repghost.is_deploy(loaded) and loaded.num_classes == 10
    x = torch.randn(2, 3, 128, 128)
    assert torch.equal(loaded(x), deployed(x))
    assert repghost.check_equivalence(model, loaded, (2, 3, 128, 128))["max_rel"] <= TOL
    assert repghost.checkpoint.read_metadata(path)["extra"] == {"top1": 0.5}
    train_path = save_checkpoint(model, tmp_path / "train.safetensors")
    assert not repghost.is_deploy(load_model(train_path))


def test_deploy_checkpoint_into_train_model_names_both_layouts(tmp_path):
    path = save_checkpoint(reparameterize(create_model("repghostnet_050").eval()), tmp_path / "d.safetensors")
    with pytest.raises(CheckpointError, match="deploy-form state dict but the model is in train form"):
        load_checkpoint(create_model("repghostnet_050"), path)
    train_path = save_checkpoint(create_model("repghostnet_050"), tmp_path / "t.safetensors")
    with pytest.raises(CheckpointError, match="train-form state dict but the model is in deploy form"):
        load_checkpoint(create_model("repghostnet_050", deploy=True), train_path)


def test_num_classes_mismatch_and_fine_tuning(tmp_path):
    path = save_checkpoint(create_model("repghostnet_050"), tmp_path / "in1k.safetensors")
    with pytest.raises(CheckpointError, match="drop_classifier=True"):
        load_checkpoint(create_model("repghostnet_050", num_classes=10), path)
    model = create_model("repghostnet_050", num_classes=10)
    head = model.classifier.weight.clone()
    load_checkpoint(model, path, drop_classifier=True)
    assert torch.equal(model.classifier.weight, head)


def test_classifier_checkpoint_loads_into_backbone(tmp_path):
    full = randomize_bn(create_model("repghostnet_050")).eval()
    path = save_checkpoint(full, tmp_path / "cls.safetensors")
    backbone = load_checkpoint(create_model("repghostnet_050", features_only=True, out_indices=(2, 3)), path)
    x = torch.randn(1, 3, 128, 128)
    feats = backbone.eval()(x)
    ref = full.blocks[:5](full.stem(x))
    assert torch.equal(feats[0], ref)


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch pwned_by_checkpoint",))


def test_pickle_with_arbitrary_object_is_refused_and_not_executed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"state_dict": {"w": _Exploit()}}, f)
    with pytest.raises(CheckpointError, match="refusing to load"):
        load_checkpoint(create_model("repghostnet_050"), path)
    assert not (tmp_path / "pwned_by_checkpoint").exists()
    torch.save({"state_dict": {"w": _Exploit()}}, tmp_path / "evil2.pth")
    with pytest.raises(CheckpointError, match="refusing to load"):
        repghost.load_state_dict(tmp_path / "evil2.pth")
    assert not (tmp_path / "pwned_by_checkpoint").exists()


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(create_model("repghostnet_050"), tmp_path / "nope.pth")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="is not a checkpoint"):
        load_checkpoint(create_model("repghostnet_050"), bad)
    good = tmp_path / "good.safetensors"
    save_checkpoint(create_model("repghostnet_050"), good)
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(good.read_bytes()[:-1000])
    with pytest.raises(CheckpointError, match="damaged"):
        load_checkpoint(create_model("repghostnet_050"), cut)
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(1)}, str(plain))
    with pytest.raises(CheckpointError, match="does not name its model"):
        load_model(plain)


def test_save_is_safetensors_only(tmp_path):
    with pytest.raises(ValueError, match="safetensors"):
        save_checkpoint(create_model("repghostnet_050"), tmp_path / "m.pth")
