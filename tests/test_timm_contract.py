"""Our models are drop-in where timm models go: the checks of timm's own ``tests/test_models.py``
(forward, default cfg + ``reset_classifier``, ``features_only``, ``forward_intermediates``,
``feature_cls="getter"``, FX tracing, TorchScript) on the models of our registry.

Every registered model gets the cheap checks; the compile-heavy ones (FX trace + script, TorchScript,
timm's feature wrappers) run on one representative per family — the first name of each group of
names that differ only in their width suffix (``repghostnet_*``, ``ghostnet_*``, ``ghostnet_add_*``,
and any family added later). Inputs are 64² (96² for feature maps, as timm), batch 1, eval mode.
"""

import inspect
import math
import re
import warnings

import pytest
import torch
from timm.layers import create_feature_extractor, get_graph_node_names
from timm.models._features import FeatureInfo
from torch import nn

import repghost
from repghost import create_model, list_models

from conftest import randomize_bn

ALL = list_models()
FWD_SIZE = (3, 64, 64)
FEAT_SIZE = (3, 96, 96)


def _family(name: str) -> str:
    return re.sub(r"_?\d+$", "", name)


REPRESENTATIVES = sorted({_family(n): n for n in reversed(ALL)}.values())


@pytest.fixture(autouse=True)
def _quiet_and_one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.jit.*deprecated", category=FutureWarning)
        warnings.filterwarnings("ignore", message=".*instance-level annotations", category=UserWarning)
        yield
    torch.set_num_threads(threads)


def _random_model(name: str, **kwargs) -> nn.Module:
    return randomize_bn(create_model(name, **kwargs)).eval()


def _assert_close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    torch.testing.assert_close(actual, expected, rtol=0, atol=1e-5 * max(1.0, expected.abs().max().item()))


def test_representatives_cover_every_family():
    assert {"repghostnet_050", "ghostnet_050", "ghostnet_add_050"} <= set(REPRESENTATIVES)
    assert {_family(n) for n in ALL} == {_family(n) for n in REPRESENTATIVES}


# -- timm's test_model_forward / test_model_default_cfgs --------------------------------------------
@pytest.mark.parametrize("name", ALL)
def test_forward_default_cfg_and_reset_classifier(name):
    model = create_model(name).eval()
    x = torch.randn(1, *FWD_SIZE)
    with torch.no_grad():
        out = model(x)
        assert out.shape == (1, 1000) and not out.isnan().any()
        cfg = model.pretrained_cfg
        feats = model.forward_features(x)
        assert feats.shape[1] == model.num_features
        assert feats.shape[-2:] == tuple(s * FWD_SIZE[-1] // cfg["input_size"][-1] for s in cfg["pool_size"])

        model.reset_classifier(0)  # pooled pre-logits
        assert model(x).shape == (1, model.head_hidden_size)
        model.reset_classifier(0, "")  # no pooling either: maps
        assert model(x).ndim == 4
        model.reset_classifier(7, "max")
        assert model(x).shape == (1, 7) and isinstance(model.get_classifier(), nn.Linear)
        assert create_model(name, num_classes=0, global_pool="").eval()(x).ndim == 4

    state = create_model(name).state_dict()
    assert f"{cfg['classifier']}.weight" in state and f"{cfg['first_conv']}.weight" in state


def test_reset_classifier_has_timms_signature_and_errors():
    import timm

    ours = inspect.signature(create_model("repghostnet_050").reset_classifier)
    theirs = inspect.signature(timm.create_model("repghostnet_050").reset_classifier)
    assert list(ours.parameters) == list(theirs.parameters) == ["num_classes", "global_pool"]
    assert ours.parameters["global_pool"].default is None is theirs.parameters["global_pool"].default

    model = create_model("repghostnet_050")
    with pytest.raises(ValueError, match="changes the pooled width"):
        model.reset_classifier(10, "catavgmax")
    with pytest.raises(ValueError, match="unknown global_pool 'median'"):
        model.reset_classifier(10, "median")
    with pytest.raises(RuntimeError, match="no classifier"):
        create_model("repghostnet_050", features_only=True).reset_classifier(10)


def test_reset_classifier_keeps_device_dtype_and_mode():
    model = create_model("repghostnet_050").double().train()
    model.reset_classifier(3, "avg")
    assert model.classifier.weight.dtype == torch.float64 and model.global_pool.training


# -- timm's test_model_forward_features ------------------------------------------------------------
@pytest.mark.parametrize("name", ALL)
def test_features_only_feature_info(name):
    model = create_model(name, features_only=True).eval()
    info = model.feature_info
    assert isinstance(info, FeatureInfo)
    channels, reductions = info.channels(), info.reduction()
    assert len(channels) >= 4
    with torch.no_grad():
        outs = model(torch.randn(1, *FEAT_SIZE))
    assert len(outs) == len(channels)
    for c, r, o in zip(channels, reductions, outs, strict=True):
        assert o.shape[1] == c and o.shape[0] == 1 and not o.isnan().any()
        assert o.shape[-1] == math.ceil(FEAT_SIZE[-1] / r)
    modules = dict(model.named_modules())
    assert all(m in modules for m in info.module_name())
    # indexable / iterable like timm's: over every level, whatever out_indices picks
    assert len(info) == len(list(info)) and info[0]["num_chs"] == info.channels(0)


def test_features_only_out_indices_select_levels():
    model = create_model("ghostnet_050", features_only=True, out_indices=(1, 3)).eval()
    info = model.feature_info
    assert info.out_indices == (1, 3) and info.reduction() == [4, 16] and len(info) == 5
    assert [o.shape[1] for o in model(torch.randn(1, *FEAT_SIZE))] == info.channels()


# -- timm's test_model_forward_intermediates ---------------------------------------------------------
@pytest.mark.parametrize("name", ALL)
def test_forward_intermediates(name):
    model = _random_model(name)
    info = FeatureInfo(model.feature_info, len(model.feature_info))
    x = torch.randn(1, *FEAT_SIZE)
    with torch.no_grad():
        final, inters = model.forward_intermediates(x)
        assert len(inters) == len(info.channels())
        for c, r, o in zip(info.channels(), info.reduction(), inters, strict=True):
            assert o.shape[1] == c and o.shape[-1] == math.ceil(FEAT_SIZE[-1] / r)
        torch.testing.assert_close(final, model.forward_features(x), rtol=0, atol=0)

        model.set_grad_checkpointing()  # timm checks that checkpointed stages give the same result
        torch.testing.assert_close(model.forward_intermediates(x)[0], final, rtol=1e-4, atol=1e-5)
        model.set_grad_checkpointing(False)

        # the same maps as the features_only model with the same weights
        features = create_model(name, features_only=True).eval()
        features.load_state_dict({k: v for k, v in model.state_dict().items() if k in features.state_dict()})
        for a, b in zip(features(x), inters, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_forward_intermediates_indices_stop_early_and_errors():
    model = _random_model("repghostnet_050")
    x = torch.randn(1, *FEAT_SIZE)
    with torch.no_grad():
        _, every = model.forward_intermediates(x)
        last_two = model.forward_intermediates(x, indices=2, intermediates_only=True)  # int: the last n
        picked = model.forward_intermediates(x, indices=[0, -2], intermediates_only=True)  # negative from the end
        final, early = model.forward_intermediates(x, indices=[1], stop_early=True)
    for got, want in ((last_two, every[3:]), (picked, [every[0], every[3]]), (early, [every[1]])):
        assert len(got) == len(want) and all(torch.equal(a, b) for a, b in zip(got, want, strict=True))
    assert torch.equal(final, every[1])  # stopped at the deepest level taken
    with pytest.raises(ValueError, match="output_fmt"):
        model.forward_intermediates(x, output_fmt="NHWC")
    with pytest.raises(AssertionError, match="out of range"):
        model.forward_intermediates(x, indices=[5])


def test_grad_checkpointing_gives_the_same_gradients():
    x = torch.randn(2, *FWD_SIZE)
    grads = []
    for enable in (False, True):
        torch.manual_seed(0)
        model = create_model("repghostnet_050", drop_rate=0.0).train()
        model.set_grad_checkpointing(enable)
        model(x).square().mean().backward()
        grads.append({n: p.grad for n, p in model.named_parameters()})
    assert grads[0].keys() == grads[1].keys()
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_prune_intermediate_layers():
    model = _random_model("repghostnet_050")
    x = torch.randn(1, *FEAT_SIZE)
    with torch.no_grad():
        _, every = model.forward_intermediates(x)
        assert model.prune_intermediate_layers([1, 2]) == [1, 2]
        assert len(model.blocks) == 5 and model.num_features == model.feature_info[2]["num_chs"]
        pruned = model.forward_intermediates(x, indices=[1, 2], intermediates_only=True)
        assert all(torch.equal(a, b) for a, b in zip(pruned, every[1:3], strict=True))
        assert torch.equal(model(x), every[2])  # head gone: forward gives the deepest kept map
        with pytest.raises(ValueError, match="pruned"):
            model.forward_intermediates(x, indices=[4])


# -- timm's features_only with feature_cls="getter" (test_model_forward_intermediates_features) ------
@pytest.mark.parametrize("name", REPRESENTATIVES)
@pytest.mark.parametrize("feature_cls", ["getter", "fx"])
def test_timm_feature_classes_match_ours(name, feature_cls):
    ours = _random_model(name, features_only=True, out_indices=(1, 2, 4))
    theirs = create_model(name, features_only=True, feature_cls=feature_cls, out_indices=(1, 2, 4)).eval()
    own_state = ours.state_dict()
    theirs.load_state_dict({k: own_state[k.split(".", 1)[1]] for k in theirs.state_dict()})  # "model." prefix
    assert theirs.feature_info.channels() == ours.feature_info.channels()
    assert theirs.feature_info.reduction() == ours.feature_info.reduction() == [4, 8, 32]
    x = torch.randn(1, *FEAT_SIZE)
    with torch.no_grad():
        for a, b in zip(theirs(x), ours(x), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    if feature_cls == "getter":
        assert len(theirs.model.blocks) == len(ours.blocks)  # pruned like ours
        assert not hasattr(theirs.model.get_classifier(), "weight")


def test_feature_cls_errors():
    with pytest.raises(ValueError, match="feature_cls must be one of"):
        create_model("repghostnet_050", features_only=True, feature_cls="hook")
    with pytest.raises(ValueError, match="needs features_only=True"):
        create_model("repghostnet_050", feature_cls="getter")


# -- timm's test_model_forward_torchscript / _fx / _fx_torchscript ------------------------------------
def _forms(name: str, **kwargs) -> dict[str, nn.Module]:
    model = _random_model(name, **kwargs)
    return {"train": model, "deploy": repghost.reparameterize(model)}


@pytest.mark.parametrize("name", REPRESENTATIVES)
def test_fx_trace_then_script_train_and_deploy(name):
    x = torch.randn(1, *FWD_SIZE)
    for form, model in _forms(name).items():
        traced = torch.fx.symbolic_trace(model)
        scripted = torch.jit.script(traced)
        with torch.no_grad():
            want = model(x)
            _assert_close(traced(x), want)
            _assert_close(scripted(x), want)
        assert isinstance(scripted, torch.jit.ScriptModule), form


@pytest.mark.parametrize("name", REPRESENTATIVES)
def test_fx_trace_then_script_features_only(name):
    x = torch.randn(1, *FEAT_SIZE)
    model = _random_model(name, features_only=True, out_indices=(0, 2, 3))
    scripted = torch.jit.script(torch.fx.symbolic_trace(model))
    with torch.no_grad():
        for a, b in zip(scripted(x), model(x), strict=True):
            _assert_close(a, b)


@pytest.mark.parametrize("name", REPRESENTATIVES)
def test_timm_fx_feature_extractor_and_torchscript(name):
    """timm's ``_create_fx_model``: the last graph node through timm's FX feature extractor, then scripted."""
    x = torch.randn(1, *FWD_SIZE)
    model = _random_model(name)
    _, eval_nodes = get_graph_node_names(model)
    fx_model = create_feature_extractor(model, return_nodes=[eval_nodes[-1]]).eval()
    with torch.no_grad():
        want = model(x)
        torch.testing.assert_close(next(iter(fx_model(x).values())), want, rtol=0, atol=0)
        scripted = torch.jit.script(fx_model)
        _assert_close(next(iter(scripted(x).values())), want)


@pytest.mark.parametrize("name", REPRESENTATIVES)
def test_torchscript(name):
    """timm's test_model_forward_torchscript (the deploy form's is in test_reparam)."""
    model = _random_model(name)
    x = torch.randn(1, *FWD_SIZE)
    with torch.no_grad():
        _assert_close(torch.jit.script(model)(x), model(x))


def test_torchscript_of_timms_feature_getter():
    getter = create_model("repghostnet_050", features_only=True, feature_cls="getter", out_indices=(1, 3)).eval()
    x = torch.randn(1, *FEAT_SIZE)
    with torch.no_grad():
        for a, b in zip(torch.jit.script(getter)(x), getter(x), strict=True):
            _assert_close(a, b)
