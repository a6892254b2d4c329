import pytest
from torch import nn

from repghost import create_model, profile, reparameterize
from repghost.layers import RepGhostModule

# PAPER.md: params (every learnable parameter) and MACs (conv + linear) of the train form, 224².
PAPER = {
    "repghostnet_050": (2.314, 43.3), "repghostnet_058": (2.546, 59.8), "repghostnet_080": (3.279, 95.5),
    "repghostnet_100": (4.074, 142.4), "repghostnet_111": (4.540, 170.1), "repghostnet_130": (5.479, 231.1),
    "repghostnet_150": (6.575, 301.3), "repghostnet_200": (9.796, 515.9),
}
# The paper's rounded table (M params, M FLOPs) as a coarser cross-check.
PAPER_ROUNDED = {
    "repghostnet_050": (2.3, 43), "repghostnet_058": (2.5, 60), "repghostnet_080": (3.3, 96),
    "repghostnet_100": (4.1, 142), "repghostnet_111": (4.5, 170), "repghostnet_130": (5.5, 231),
    "repghostnet_150": (6.6, 301), "repghostnet_200": (9.8, 516),
}


def _folded_bias_counts(model):
    """(channels, output elements) that folding adds as biases: one per BN that follows a conv.
    The identity-branch BN of a RepGhost module folds into the cheap conv's bias, adding none."""
    channels = elements = 0
    sizes = {}
    hooks = [m.register_forward_hook(lambda m, i, o: sizes.__setitem__(m, o.shape[-2] * o.shape[-1]))
             for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    import torch
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, 224, 224))
    for h in hooks:
        h.remove()
    fusion = {m.fusion for m in model.modules() if isinstance(m, RepGhostModule)}
    for bn, hw in sizes.items():
        if bn not in fusion:
            channels += bn.num_features
            elements += bn.num_features * hw
    return channels, elements


@pytest.mark.parametrize("name", sorted(PAPER))
def test_train_form_matches_paper(name):
    p = profile(create_model(name))
    params, macs = PAPER[name]
    assert round(p.params / 1e6, 3) == params
    assert round(p.macs / 1e6, 1) == macs
    r_params, r_macs = PAPER_ROUNDED[name]
    assert round(p.params / 1e6, 1) == r_params and round(p.macs / 1e6) == r_macs


@pytest.mark.parametrize("name", sorted(PAPER))
def test_deploy_form_adds_exactly_the_folded_biases(name):
    model = create_model(name).eval()
    train, deploy = profile(model), profile(reparameterize(model))
    bn_params = sum(m.weight.numel() + m.bias.numel() for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    channels, elements = _folded_bias_counts(model)
    assert deploy.params == train.params - bn_params + channels
    assert deploy.macs == train.macs + elements


def test_official_partial_deploy_macs_at_1x():
    # The official release folds only the RepGhost branches: +cheap-conv biases = 144.1M MACs at 1.0×.
    model = create_model("repghostnet_100").eval()
    sizes = []
    hooks = [m.cheap_operation.conv.register_forward_hook(lambda m, i, o: sizes.append(o[0].numel()))
             for m in model.modules() if isinstance(m, RepGhostModule)]
    train = profile(model)
    for h in hooks:
        h.remove()
    assert round((train.macs + sum(sizes)) / 1e6, 1) == 144.1


def test_profile_accepts_chw_and_scales_with_batch():
    model = create_model("repghostnet_050")
    one, three = profile(model, (3, 224, 224)), profile(model, (3, 3, 224, 224))
    assert three.macs == 3 * one.macs and three.params == one.params
