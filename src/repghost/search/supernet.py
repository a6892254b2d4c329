"""The one-shot super-network: the search space's skeleton with every choice of every layer.

Each searchable position holds one block per layer choice (a :class:`ChoiceLayer`), and
:meth:`SuperNet.set_arch` picks which one runs, so one forward pass is exactly one architecture
of the space. The sharing is *across architectures*: every architecture that picks choice ``c`` at
position ``i`` trains and uses the same weights (single-path one-shot). Choices within a position
do not share weights with each other (TuNAS additionally slices kernels and expansions from one
tensor); separate blocks keep each choice identical to the layer the final architecture builds,
including its BN statistics, at the price of a larger super-network.

The stem and the C1 layer are fixed, as in the space. The body is a ``features_only``
:class:`~repghost.models.mobiledet.MobileDetFeatures`, so detection heads put on it (SSDLite) work
unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..layers.mobiledet import ACTIVATIONS, make_layer
from ..models.mobiledet import MobileDetFeatures
from ..models.searched import SearchSpace


class ChoiceLayer(nn.Module):
    """Every layer choice of one searchable position; ``active`` is the one ``forward`` runs."""

    def __init__(self, space: SearchSpace, index: int):
        super().__init__()
        position = space.positions[index]
        act_layer = ACTIVATIONS[space.act]
        self.names = list(space.choice_names)
        self.choices = nn.ModuleList(
            make_layer(choice.layer(position.out, position.stride, position.residual), position.in_chs, act_layer,
                       se=space.se) for choice in space.choices)
        self.active = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.choices[self.active](x)


class SuperNet(MobileDetFeatures):
    """The space's headless body (maps at ``out_indices``) with a :class:`ChoiceLayer` at every
    searchable position. ``set_arch`` selects the path."""

    def __init__(self, space: SearchSpace, out_indices: Sequence[int] = (3, 4)):
        # Built from any architecture of the space for its stem, C1 stage and feature_info;
        # every searchable block is then replaced by the position's choice layer.
        first = tuple(space.choice_names[0] for _ in range(space.num_layers))
        super().__init__(space.stages(first), space.stem_chs, space.act, space.se, out_indices=out_indices)
        self.space = space
        self.choice_layers: list[ChoiceLayer] = []
        index = 0
        for stage in list(self.blocks)[1:]:
            for j in range(len(stage)):
                layer = ChoiceLayer(space, index)
                stage[j] = layer
                self.choice_layers.append(layer)
                index += 1
        self.arch: tuple[str, ...] = first

    def set_arch(self, arch: Sequence[str]) -> None:
        """Run ``arch`` (choice names, one per searchable layer) from now on."""
        self.arch = self.space.validate(arch)
        for layer, name in zip(self.choice_layers, self.arch, strict=True):
            layer.active = layer.names.index(name)

    def set_arch_indices(self, indices: Sequence[int]) -> None:
        self.set_arch([self.space.choice_names[int(i)] for i in indices])

    def choice_state_keys(self) -> dict[tuple[int, int], list[str]]:
        """The state-dict keys of each choice's block, by (layer, choice index)."""
        names = {id(module): name for name, module in self.named_modules()}
        return {(i, c): [f"{names[id(block)]}.{key}" for key in block.state_dict()]
                for i, layer in enumerate(self.choice_layers) for c, block in enumerate(layer.choices)}

    def path_state_dict(self, arch: Sequence[str]) -> dict[str, torch.Tensor]:
        """The weights of ``arch`` alone, keyed as :meth:`SearchSpace.build` names them (``features_only``)."""
        arch = self.space.validate(arch)
        state = {}
        for key, value in self.state_dict().items():
            parts = key.split(".")
            if "choices" in parts:
                at = parts.index("choices")
                layer = self._layer_at(parts[:at])
                if layer.names[int(parts[at + 1])] != arch[self.choice_layers.index(layer)]:
                    continue
                key = ".".join(parts[:at] + parts[at + 2:])
            state[key] = value
        return state

    def _layer_at(self, parts: list[str]) -> ChoiceLayer:
        module: nn.Module = self
        for part in parts:
            module = getattr(module, part)
        assert isinstance(module, ChoiceLayer)
        return module
