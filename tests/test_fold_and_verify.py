"""The one fold-and-verify policy (``repghost.reparam.fold_and_verify``): a right fold passes with its
check, a wrong one and an incomplete one are refused with one error type, and every caller refuses."""

import copy

import pytest
import torch

import repghost
from repghost.reparam import FoldError, fold_and_verify

from conftest import randomize_bn

SIZE = (2, 3, 32, 32)


@pytest.fixture(scope="module")
def model():
    return randomize_bn(repghost.create_model("repghostnet_050", num_classes=10), seed=3).eval()


def _bias_off(model):
    """A fold with one bias of one conv off by 1e-3 of its scale."""
    deployed = repghost.reparameterize(model)
    with torch.no_grad():
        conv = [m for m in deployed.modules() if isinstance(m, torch.nn.Conv2d)][10]
        conv.bias[0] += 1e-3 * conv.bias.abs().max()
    return deployed


def test_a_right_fold_passes_with_its_check(model):
    deployed, check = fold_and_verify(model, SIZE)
    assert check.ok and check.max_rel_f64 < 1e-12 and repghost.is_deploy(deployed)
    assert not repghost.is_deploy(model)   # the input is left as it was


def test_a_wrong_fold_is_refused_with_its_check(model):
    with pytest.raises(FoldError, match="disagrees with the model it was folded from") as refused:
        fold_and_verify(model, SIZE, fold=_bias_off)
    assert refused.value.check is not None and not refused.value.check.ok
    # The error is what each replaced check raised: the CLI's handlers for both still catch it.
    assert isinstance(refused.value, ValueError) and isinstance(refused.value, RuntimeError)


def test_a_fold_that_left_batchnorm_is_refused(model):
    with pytest.raises(FoldError, match="still has unfolded BatchNorm"):
        fold_and_verify(model, SIZE, fold=lambda m: copy.deepcopy(m))


def test_the_check_runs_on_the_part_given(model):
    """``part`` picks the network checked (for a detector, its backbone body): a wrong bias outside it
    is not that check's concern."""
    _, check = fold_and_verify(model, SIZE, fold=_bias_off, part=lambda m: torch.nn.Sequential(m.stem))
    assert check.ok
