"""TuNAS's controller and reward (Bender et al., 2020).

The controller is one independent categorical distribution per layer decision (logits, softmax).
Each step samples an architecture, gets its reward, and takes one REINFORCE step: the gradient of
``-(R - b) · Σ log p(choice)`` by Adam, where the baseline ``b`` is an exponential moving average of
past rewards (it lowers the variance without biasing the gradient).

The reward is TuNAS's *absolute* reward ``Q + τ·|c/T − 1|`` (τ < 0): any miss of the latency target
``T`` costs, in either direction, so the search lands *at* the target instead of as far below it as
quality allows.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def absolute_reward(quality: float, cost: float, target: float, tau: float) -> float:
    """``quality + tau · |cost / target − 1|`` (``tau < 0``)."""
    return quality + tau * abs(cost / target - 1.0)


class Controller:
    """``num_layers`` independent categoricals over ``num_choices`` each, trained by REINFORCE.

    Sampling draws from its own ``torch.Generator`` (seeded), so the architectures a search samples
    depend only on the seed and the rewards seen, and resume exactly from :meth:`state_dict`.
    """

    def __init__(self, num_layers: int, num_choices: int, lr: float = 0.05, baseline_momentum: float = 0.95,
                 seed: int = 0):
        self.logits = torch.zeros(num_layers, num_choices, dtype=torch.float64, requires_grad=True)
        # β1 = 0: the reward is a fresh noisy sample each step; momentum would keep chasing old ones.
        self.optimizer = torch.optim.Adam([self.logits], lr=lr, betas=(0.0, 0.999))
        self.baseline_momentum = baseline_momentum
        self.baseline: float | None = None
        self.generator = torch.Generator().manual_seed(seed)

    @property
    def probs(self) -> torch.Tensor:
        return torch.softmax(self.logits.detach(), dim=-1)

    def sample(self) -> list[int]:
        """One choice index per layer, drawn from the current distributions."""
        return torch.multinomial(self.probs, 1, generator=self.generator).squeeze(1).tolist()

    def most_likely(self) -> list[int]:
        return self.probs.argmax(dim=-1).tolist()

    def entropy(self) -> float:
        """Mean entropy per layer (nats); log(num_choices) when uniform, 0 when decided."""
        p = self.probs
        return float(-(p * torch.log(p.clamp_min(1e-30))).sum(-1).mean())

    def update(self, choices: Sequence[int], reward: float) -> float:
        """One REINFORCE step for the sampled ``choices`` and their ``reward``; returns the advantage.

        The first reward only initializes the baseline (its advantage would be 0 anyway).
        """
        if self.baseline is None:
            self.baseline = reward
            return 0.0
        advantage = reward - self.baseline
        log_p = torch.log_softmax(self.logits, dim=-1)
        chosen = log_p[torch.arange(len(choices)), torch.as_tensor(list(choices))]
        self.optimizer.zero_grad(set_to_none=True)
        (-advantage * chosen.sum()).backward()
        self.optimizer.step()
        self.baseline = self.baseline_momentum * self.baseline + (1 - self.baseline_momentum) * reward
        return advantage

    # -- checkpoints ----------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"logits": self.logits.detach().clone(), "optimizer": self.optimizer.state_dict(),
                "baseline": self.baseline, "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            self.logits.copy_(state["logits"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.baseline = state["baseline"]
        self.generator.set_state(state["generator"])


class LinearCost:
    """A fitted linear cost model as a ``(num_layers, num_choices)`` table: the cost of an
    architecture is ``bias + Σ table[layer, choice]`` — what :meth:`CostModel.predict` computes,
    without building feature vectors each step. Its extremes over the space are exact."""

    def __init__(self, model, space):
        from ..costmodel.fit import feature_names

        # A feature dropped in fitting was constant there: its weight is absorbed by the bias (0 here).
        weight = dict(zip(model.features, model.weights, strict=True))
        self.table = np.array([weight.get(name, 0.0) for name in feature_names(space)]).reshape(
            space.num_layers, len(space.choice_names))
        self.bias = model.bias

    def __call__(self, choices: Sequence[int]) -> float:
        return float(self.bias + self.table[np.arange(len(choices)), list(choices)].sum())

    @property
    def cheapest(self) -> tuple[float, list[int]]:
        return self.bias + float(self.table.min(1).sum()), self.table.argmin(1).tolist()

    @property
    def dearest(self) -> tuple[float, list[int]]:
        return self.bias + float(self.table.max(1).sum()), self.table.argmax(1).tolist()
