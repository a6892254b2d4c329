import math

import pytest
import torch
from torch import nn

from repghost.layers import GhostModule, RepGhostModule, fuse
from repghost.layers.conv import ConvNormAct

from conftest import randomize_bn

TOL = 1e-5  # max abs error / max abs output, float32


def rel_err(a, b):
    return ((a - b).abs().max() / a.abs().max()).item()


def test_fold_bn_matches_conv_then_bn():
    conv = nn.Conv2d(4, 6, 3, padding=1, bias=True)
    bn = randomize_bn(nn.Sequential(nn.BatchNorm2d(6)))[0].eval()
    kernel, bias = fuse.conv_bn_to_kernel_bias(conv, bn)
    x = torch.randn(2, 4, 9, 9)
    fused = nn.functional.conv2d(x, kernel, bias, padding=1)
    assert rel_err(bn(conv(x)), fused) <= TOL


@pytest.mark.parametrize("groups", [1, 4])
def test_identity_kernel_is_identity(groups):
    kernel = fuse.identity_kernel(8, 3, groups, torch.empty(0))
    x = torch.randn(1, 8, 5, 5)
    assert torch.equal(nn.functional.conv2d(x, kernel, padding=1, groups=groups), x)


def test_pad_kernel_keeps_centre():
    k = torch.randn(3, 1, 1, 1)
    padded = fuse.pad_kernel(k, 5)
    assert padded.shape == (3, 1, 5, 5) and torch.equal(padded[:, :, 2, 2], k[:, :, 0, 0])
    assert padded.abs().sum() == k.abs().sum()
    with pytest.raises(ValueError):
        fuse.pad_kernel(torch.randn(1, 1, 5, 5), 3)


def test_conv_norm_act_reparameterize():
    block = randomize_bn(ConvNormAct(4, 8, 3, stride=2)).eval()
    x = torch.randn(2, 4, 11, 11)
    ref = block(x)
    block.reparameterize()
    assert isinstance(block.bn, nn.Identity) and block.conv.bias is not None
    assert rel_err(ref, block(x)) <= TOL


@pytest.mark.parametrize("reparam", ["bn", "identity", "dw1x1", "none"])
@pytest.mark.parametrize("relu", [True, False])
def test_repghost_module_folds_to_one_depthwise_conv(reparam, relu):
    module = randomize_bn(RepGhostModule(6, 10, relu=relu, reparam=reparam), seed=3).eval()
    x = torch.randn(3, 6, 13, 13)
    ref = module(x)
    module.reparameterize()
    assert module.fusion is None
    assert not any(isinstance(m, nn.BatchNorm2d) for m in module.modules())
    depthwise = [m for m in module.modules() if isinstance(m, nn.Conv2d) and m.groups == m.in_channels > 1]
    assert len(depthwise) == 1 and depthwise[0].bias is not None
    assert rel_err(ref, module(x)) <= TOL


def test_repghost_module_rejects_unknown_branch():
    with pytest.raises(ValueError, match="reparam must be one of"):
        RepGhostModule(4, 4, reparam="conv")


@pytest.mark.parametrize("out_chs", [8, 9])
def test_ghost_module_concat_and_add_widths(out_chs):
    x = torch.randn(1, 4, 7, 7)
    concat = GhostModule(4, out_chs, merge="concat").eval()
    add = GhostModule(4, out_chs, merge="add").eval()
    assert concat(x).shape[1] == concat.out_chs == out_chs
    assert add(x).shape[1] == add.out_chs == math.ceil(out_chs / 2)
    # Add merges the same two tensors Concat stacks.
    add.load_state_dict(concat.state_dict())
    half = math.ceil(out_chs / 2)
    x1 = concat.primary_conv(x)
    assert torch.allclose(add(x), x1 + concat.cheap_operation(x1))
    assert torch.allclose(concat(x)[:, :half], x1)
