import pytest
import torch

import repghost
from repghost import create_model, list_models
from repghost.cli import main


def test_registry_lists_all_families():
    names = list_models()
    for width in ("050", "058", "080", "100", "111", "130", "150", "200"):
        assert f"repghostnet_{width}" in names
    for width in ("050", "100", "130"):
        assert f"ghostnet_{width}" in names and f"ghostnet_add_{width}" in names
    assert list_models("ghostnet_add_*") == ["ghostnet_add_050", "ghostnet_add_100", "ghostnet_add_130"]


def test_unknown_model_lists_valid_names():
    with pytest.raises(repghost.UnknownModelError, match="repghostnet_100"):
        create_model("repghostnet_999")


def test_kwargs_num_classes_in_chans_and_head():
    model = create_model("repghostnet_050", num_classes=7, in_chans=1, drop_rate=0.0).eval()
    x = torch.randn(2, 1, 64, 64)
    assert model(x).shape == (2, 7)
    feats = model.forward_features(x)
    assert feats.shape == (2, model.num_features, 2, 2)
    assert model.forward_head(feats, pre_logits=True).shape == (2, 1280)
    model.reset_classifier(3)
    assert model(x).shape == (2, 3)
    assert model.pretrained_cfg["input_size"] == (3, 224, 224) and model.pretrained_cfg["crop_pct"] == 0.875


@pytest.mark.parametrize("name", ["repghostnet_100", "ghostnet_130", "ghostnet_add_100"])
def test_features_only_strides_and_channels(name):
    model = create_model(name, features_only=True).eval()
    x = torch.randn(1, 3, 224, 224)
    feats = model(x)
    assert [224 // f.shape[-1] for f in feats] == [2, 4, 8, 16, 32]
    assert [f.shape[1] for f in feats] == model.feature_info.channels()
    assert model.feature_info.reduction() == [2, 4, 8, 16, 32]


def test_out_indices_select_levels_and_truncate():
    model = create_model("repghostnet_050", features_only=True, out_indices=(2, 3)).eval()
    feats = model(torch.randn(1, 3, 128, 128))
    assert [f.shape[-1] for f in feats] == [16, 8]
    assert len(model.blocks) == 7  # nothing past stride 16 is built
    with pytest.raises(ValueError, match="out of range"):
        create_model("repghostnet_050", features_only=True, out_indices=(5,))


def test_shortcut_ablation_drops_only_identity_shortcuts():
    with_sc, without = create_model("repghostnet_050"), create_model("repghostnet_050", shortcut=False)
    kinds = lambda m: [type(b.shortcut).__name__ for s in m.blocks[:-1] for b in s]  # noqa: E731
    assert kinds(without) == ["NoneType" if k == "Identity" else k for k in kinds(with_sc)]
    assert "Sequential" in kinds(without)


def test_ghostnet_add_is_narrower_than_concat():
    concat, add = create_model("ghostnet_100"), create_model("ghostnet_add_100")
    assert repghost.profile(add).macs < repghost.profile(concat).macs


def test_cli_models(capsys):
    assert main(["models", "repghostnet_05*", "--profile"]) == 0
    out = capsys.readouterr().out
    assert "repghostnet_050" in out and "2.314" in out and "43.3" in out
    assert main(["models", "ghostnet_*"]) == 0
    assert capsys.readouterr().out.split() == list_models("ghostnet_*")
    assert main(["models"]) == 0
    assert capsys.readouterr().out.split() == list_models()
    assert main(["models", "nothing*"]) == 2
