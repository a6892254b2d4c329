"""The weight-sharing super-network: sliced ops equal the stand-alone blocks they stand for."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from repghost.layers import RepGhostBottleneck
from repghost.layers.mobiledet import FusedInvertedBottleneck, InvertedBottleneck, TuckerConv
from repghost.search.sliced import SlicedConvNormAct, centre_kernel, slice_inputs, slice_like, sliced_state_dict
from repghost.search.superops import BlockBounds, OpPath, SuperBlock

MAX_IN, MAX_OUT = 16, 24
MAX_MID = {"repghost": 40, "ibn": 48, "fused": 48, "tucker": (16, 24)}


def randomize(module: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights *and* BN statistics, so a wrong slice or a mixed-up statistic shows."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            values = torch.rand(tensor.shape, generator=generator)
            tensor.copy_(values + 0.5 if name.endswith(("running_var", "bn.weight", "fusion.weight"))
                         else values - 0.5)
    return module


def stand_alone(op: str, in_chs: int, out: int, k: int, stride: int, se: bool, mid: int, mid_out: int = 0):
    """The layers/ block a path stands for, and the OpPath that runs it (its widths read from it)."""
    residual = stride == 1 and in_chs == out
    if op == "repghost":
        block = RepGhostBottleneck(in_chs, mid, out, k, stride, se_ratio=0.25 if se else 0.0)
        return block, OpPath(op, out, mid, k, se)
    if op == "ibn":
        block = InvertedBottleneck(in_chs, out, k, stride, expansion=mid // in_chs, se=se, residual=residual)
        return block, OpPath(op, out, block.conv_pw.conv.out_channels, k, se)
    if op == "fused":
        block = FusedInvertedBottleneck(in_chs, out, k, stride, expansion=mid // in_chs, se=se, residual=residual)
        return block, OpPath(op, out, block.conv_kxk.conv.out_channels, k, se)
    block = TuckerConv(in_chs, out, k, stride, mid / in_chs, mid_out / out, residual=residual)
    return block, OpPath(op, out, block.conv_pw.conv.out_channels, k, False, block.conv_kxk.conv.out_channels)


CASES = [  # op, in, out, k, stride, se, mid[, mid_out]
    ("repghost", 16, 24, 5, 1, False, 40), ("repghost", 8, 8, 3, 1, True, 20), ("repghost", 12, 16, 3, 2, True, 36),
    ("repghost", 16, 24, 5, 2, True, 40), ("repghost", 16, 16, 5, 1, False, 24),
    ("ibn", 16, 24, 5, 1, True, 48), ("ibn", 8, 8, 3, 1, False, 24), ("ibn", 8, 16, 3, 2, True, 32),
    ("fused", 16, 24, 5, 2, True, 48), ("fused", 8, 8, 3, 1, True, 16), ("fused", 12, 16, 5, 1, False, 24),
    ("tucker", 16, 24, 5, 2, False, 16, 24), ("tucker", 8, 8, 3, 1, False, 8, 8),
    ("tucker", 16, 16, 3, 1, False, 8, 16),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c)))
def test_sliced_op_is_the_stand_alone_block_with_its_sliced_weights(case):
    op, in_chs, out, k, stride, se, *mids = case
    block, path = stand_alone(op, in_chs, out, k, stride, se, *mids)
    bounds = BlockBounds(MAX_IN, MAX_OUT, MAX_MID, stride=stride, max_k=5)
    super_block = randomize(SuperBlock(bounds), seed=len(CASES) + CASES.index(case))
    op_module = super_block.ops[op]
    block.load_state_dict(sliced_state_dict(op_module, block), strict=True)
    x = torch.randn(2, in_chs, 16, 16, generator=torch.Generator().manual_seed(1))
    for training in (True, False):
        super_block.train(training), block.train(training)
        with torch.no_grad():
            expected, got = block(x), super_block(x, path)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
        # The running statistics the path updated in training are the ones the block updated.
        for key, value in sliced_state_dict(op_module, block).items():
            torch.testing.assert_close(value, block.state_dict()[key], msg=key)


def test_a_path_uses_only_its_slice_of_the_max_tensors():
    """Everything outside the path's first-k channels and centre kernel gets no gradient."""
    super_block = SuperBlock(BlockBounds(MAX_IN, MAX_OUT, MAX_MID, stride=2))
    path = OpPath("ibn", out=16, mid=24, k=3, se=True)
    super_block(torch.randn(2, 8, 16, 16), path).square().mean().backward()
    ibn = super_block.ops["ibn"]
    grad_dw = ibn.conv_dw.conv.weight.grad
    assert grad_dw[:24, :, 1:4, 1:4].abs().sum() > 0
    assert grad_dw[24:].abs().sum() == 0 and grad_dw[:, :, 0].abs().sum() == 0 and grad_dw[:, :, :, 4].abs().sum() == 0
    assert ibn.conv_pw.conv.weight.grad[:, 8:].abs().sum() == 0
    assert ibn.conv_pwl.conv.weight.grad[16:].abs().sum() == 0
    assert all(p.grad is None for name, p in super_block.named_parameters() if not name.startswith("ops.ibn."))


def test_skip_is_the_identity_and_only_where_the_position_allows_it():
    x = torch.randn(1, 16, 8, 8)
    assert SuperBlock(BlockBounds(16, 16, MAX_MID, skippable=True))(x, OpPath("skip")) is x
    with pytest.raises(ValueError, match="cannot be skipped"):
        SuperBlock(BlockBounds(16, 16, MAX_MID, stride=2))(x, OpPath("skip"))


def test_slicing_refuses_what_the_max_tensor_does_not_hold():
    weight = torch.arange(25.0).reshape(1, 1, 5, 5)
    assert centre_kernel(weight, 3).flatten().tolist() == [6, 7, 8, 11, 12, 13, 16, 17, 18]
    with pytest.raises(ValueError, match="centre"):
        centre_kernel(weight, 4)
    with pytest.raises(ValueError, match="cannot slice"):
        slice_like(torch.zeros(8, 4, 3, 3), (16, 4, 3, 3))
    block = RepGhostBottleneck(8, 16, 16, 3, 2, se_ratio=0.25)
    with pytest.raises(KeyError, match="conv_dw"):  # a stride-1 super-op has no stride-2 depthwise conv
        sliced_state_dict(SuperBlock(BlockBounds(16, 24, MAX_MID)).ops["repghost"], block)



def test_super_ops_refuse_what_their_position_cannot_run():
    x = torch.randn(1, 8, 8, 8)
    with pytest.raises(ValueError, match="depthwise"):
        SlicedConvNormAct(8, 16, 3, depthwise=True)
    same_width = SuperBlock(BlockBounds(16, 16, MAX_MID, same_width=True, skippable=True))
    assert same_width.ops["repghost"].shortcut is None  # never needed where input and output widths agree
    with pytest.raises(ValueError, match="no conv shortcut"):
        same_width(x, OpPath("repghost", out=16, mid=16, k=3))
    with pytest.raises(ValueError, match="no SE gate"):
        SuperBlock(BlockBounds(16, 24, MAX_MID))(x, OpPath("tucker", out=16, mid=8, k=3, se=True, mid_out=8))
    with pytest.raises(ValueError, match="unknown op"):
        SuperBlock(BlockBounds(16, 24, {"conv": 8}))
    with pytest.raises(ValueError, match="groups"):
        slice_inputs(nn.Sequential(nn.Conv2d(8, 16, 3, groups=2)))[0](x)
