"""What every long run shares (repghost.run): the resume checks, reading a run's state, RNG capture, schedules."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch

from repghost.checkpoint import CheckpointError
from repghost.io import atomic_torch_save
from repghost.run import (
    capture_rng,
    check_resumable,
    read_run_state,
    restore_rng,
    settings_diff,
    step_decay,
    warmup_cosine,
)


def test_check_resumable_names_every_differing_setting_and_ignores_run_only_ones(tmp_path):
    saved = {"lr": 0.1, "steps": 10, "threads": 2, "old": 1}
    now = {"lr": 0.2, "steps": 10, "threads": 4}
    assert settings_diff(saved, now, ignore=("threads",)) == {"lr": (0.1, 0.2), "old": (1, None)}
    with pytest.raises(RuntimeError, match=r"cannot resume x\.pt: settings differ \(saved, now\): "
                                           r"\{'lr': \(0\.1, 0\.2\), 'old': \(1, None\)\}; same settings"):
        check_resumable("x.pt", saved, now, ignore=("threads",), hint="same settings", error=RuntimeError)
    check_resumable("x.pt", {"lr": 0.1, "threads": 2}, {"lr": 0.1, "threads": 4}, ignore=("threads",))


def test_read_run_state_refuses_a_file_without_the_run_tag(tmp_path):
    good, bad = tmp_path / "good.pt", tmp_path / "bad.pt"
    atomic_torch_save({"format": "repghost-x/1", "step": 3}, good)
    atomic_torch_save({"format": "other/1"}, bad)
    assert read_run_state(good, "format", "repghost-x/1", "is not ours")["step"] == 3
    with pytest.raises(CheckpointError, match="bad.pt is not ours"):
        read_run_state(bad, "format", "repghost-x/1", "is not ours")


def test_rng_capture_restores_every_generator():
    state = capture_rng()
    first = (random.random(), np.random.rand(), torch.rand(1).item())
    restore_rng(state)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == first


def test_schedules_warm_up_then_decay():
    # detection 1x: warm-up from 0.001x, x0.1 at each milestone
    assert step_decay(1.0, 0, (8, 11), 0.1, 0, 500, 0.001) == pytest.approx(0.001)
    assert step_decay(1.0, 0, (8, 11), 0.1, 250, 500, 0.001) == pytest.approx(0.5005)
    assert step_decay(1.0, 9, (8, 11), 0.1, 5000, 500, 0.001) == pytest.approx(0.1)
    assert step_decay(1.0, 11, (8, 11), 0.1, 5000, 500, 0.001) == pytest.approx(0.01)
    # search: step 0 already at lr / warm-up steps, cosine to 0 at the last step
    assert warmup_cosine(0.05, 0, 50, 1000) == pytest.approx(0.001)
    assert warmup_cosine(0.05, 50, 50, 1000) == pytest.approx(0.05)
    assert warmup_cosine(0.05, 525, 50, 1000) == pytest.approx(0.025)
    assert math.isclose(warmup_cosine(0.05, 1000, 50, 1000), 0.0, abs_tol=1e-12)
