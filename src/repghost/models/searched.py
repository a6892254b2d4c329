"""The cost model's and the search's first space, MobileDet-CPU's skeleton with a choice of layer per
searchable position (``mobiledet_cpu_skeleton/v1``). :func:`repghost.create_model` takes its
architectures' files and inline names through :mod:`repghost.models.space`'s resolver.

The skeleton (strides, filter counts, which layers are residual) is MobileDet-CPU's, read from its
table in :mod:`repghost.models.mobiledet`. The stem and the C1 layer are fixed; each of the 18
layers after them picks one of 20 layer types: IBN, Fused IBN or RepGhost bottleneck with kernel 3
or 5 and expansion 4 or 8, or a Tucker layer with kernel 3 or 5 and input / output rank ratios
0.25 or 0.75. Activations and SE are MobileDet-CPU's (hard-swish, SE on every IBN), so the all-IBN
architecture with CPU's choices *is* ``mobiledet_cpu``.

An architecture is a tuple of choice names (one per searchable layer: the space's decisions are its
layers, every one with the same 20 choices); on disk it is JSON with the space's id and fingerprint and
the list ``layers``, so files from another space are refused instead of misread. As a model name
(:meth:`SearchSpace.arch_name`) it is ``mobiledet_search:<fingerprint>:<layer>,<layer>,...``:
:func:`repghost.create_model` takes that name or the file, and the model records the name, so a
checkpoint rebuilds it without the file. The machinery shared with the other spaces (files, names,
fingerprint, the resolver) is :mod:`repghost.models.space`'s.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
from torch import nn

from ..layers.mobiledet import LayerCfg
from ..names import SEARCHED_MODEL_PREFIX
from .mobiledet import MOBILEDETS, mobiledet_builder
from .space import ARCH_FORMAT, ArchSpace, Decision, SpaceError, read_arch_json, register_space, searched_model

SPACE_ID = "mobiledet_cpu_skeleton/v1"
#: What a searched architecture's model name starts with (then ``:<fingerprint>:<layer>,<layer>,...``).
ARCH_NAME_PREFIX = SEARCHED_MODEL_PREFIX


@dataclass(frozen=True)
class Choice:
    """One layer type: ``op`` with kernel ``k`` and expansion ``e`` (IBN / Fused / RepGhost) or rank
    ratios ``r_in`` / ``r_out`` (Tucker)."""

    op: str
    k: int
    e: int = 0
    r_in: float = 0.0
    r_out: float = 0.0

    @property
    def name(self) -> str:
        if self.op == "tucker":
            return f"tucker_k{self.k}_r{round(self.r_in * 100)}_{round(self.r_out * 100)}"
        return f"{self.op}_k{self.k}_e{self.e}"

    def layer(self, out: int, stride: int, residual: bool) -> LayerCfg:
        if self.op == "tucker":
            return LayerCfg("tucker", out, k=self.k, stride=stride, residual=residual, r_in=self.r_in,
                            r_out=self.r_out)
        return LayerCfg(self.op, out, k=self.k, e=self.e, stride=stride, residual=residual)


def default_choices() -> tuple[Choice, ...]:
    kernels, expansions, ratios = (3, 5), (4, 8), (0.25, 0.75)
    choices = [Choice(op, k, e) for op in ("ibn", "fused") for k in kernels for e in expansions]
    choices += [Choice("tucker", k, r_in=a, r_out=b) for k in kernels for a in ratios for b in ratios]
    choices += [Choice("repghost", k, e) for k in kernels for e in expansions]
    return tuple(choices)


@dataclass(frozen=True)
class Position:
    """A searchable layer: its input and output channels, stride and residual flag."""

    in_chs: int
    out: int
    stride: int
    residual: bool


@register_space
class SearchSpace(ArchSpace):
    """MobileDet-CPU's skeleton with :func:`default_choices` at every layer after C1."""

    id = SPACE_ID
    name_prefix = ARCH_NAME_PREFIX
    payload_key = "layers"
    item = "layer"

    def __init__(self, base: str = "mobiledet_cpu", choices: Sequence[Choice] | None = None):
        stages, stem_chs, act, se = MOBILEDETS[base]
        self.base, self.stem_chs, self.act, self.se = base, stem_chs, act, se
        self.fixed = list(stages[0])  # the C1 stage
        self.stage_lengths = [len(s) for s in stages[1:]]
        self.choices = tuple(choices or default_choices())
        self.choice_names = [c.name for c in self.choices]
        self._by_name = dict(zip(self.choice_names, self.choices, strict=True))
        prev = self.fixed[-1].out
        self.positions: list[Position] = []
        for stage in stages[1:]:
            for cfg in stage:
                self.positions.append(Position(prev, cfg.out, cfg.stride, cfg.residual))
                prev = cfg.out

    # -- identity -------------------------------------------------------------------------
    def describe(self) -> dict:
        """Everything that defines the space; its hash is the fingerprint."""
        return dict(id=SPACE_ID, base=self.base, stem_chs=self.stem_chs, act=self.act, se=self.se,
                    fixed=[asdict(c) for c in self.fixed], positions=[asdict(p) for p in self.positions],
                    stage_lengths=self.stage_lengths, choices=self.choice_names)

    @cached_property
    def fingerprint(self) -> str:
        return super().fingerprint

    @cached_property
    def decisions(self) -> list[Decision]:
        """One decision per searchable layer (``L0`` …), each with every layer choice."""
        return [Decision(f"L{i}", tuple(self.choice_names)) for i in range(self.num_layers)]

    @property
    def num_layers(self) -> int:
        return len(self.positions)

    # -- architectures --------------------------------------------------------------------
    def sample(self, seed: int, index: int) -> tuple[str, ...]:
        """Architecture ``index`` of the random sequence ``seed``: each layer's choice uniform and
        independent. The same (seed, index) always gives the same architecture."""
        rng = np.random.default_rng([seed, index])
        return tuple(self.choice_names[i] for i in rng.integers(len(self.choices), size=self.num_layers))

    def validate(self, arch: Sequence[str], source: str = "") -> tuple[str, ...]:
        """``arch`` as a tuple, or :class:`SpaceError` saying what is wrong, after ``source`` (where it came from)."""
        arch, where = tuple(arch), f"{source}: " if source else ""
        if len(arch) != self.num_layers:
            raise SpaceError(f"{where}an architecture of {SPACE_ID} has {self.num_layers} layers, got {len(arch)}")
        if not all(isinstance(a, str) for a in arch):
            raise SpaceError(f"{where}layer choices are names (strings), got {arch!r}")
        unknown = sorted({a for a in arch if a not in self._by_name})
        if unknown:
            raise SpaceError(f"{where}unknown layer choice(s) {', '.join(map(repr, unknown))}; "
                             f"choose from {', '.join(self.choice_names)}")
        return arch

    def stages(self, arch: Sequence[str]) -> list[list[LayerCfg]]:
        """The MobileDet stage table of ``arch``."""
        layers = [self._by_name[name].layer(p.out, p.stride, p.residual)
                  for name, p in zip(self.validate(arch), self.positions, strict=True)]
        stages, start = [self.fixed], 0
        for length in self.stage_lengths:
            stages.append(layers[start:start + length])
            start += length
        return stages

    def builder(self, arch: Sequence[str]) -> Callable[..., nn.Module]:
        """``arch``'s builder, as a registered MobileDet's: what :func:`repghost.create_model` calls."""
        return mobiledet_builder(self.stages(arch), self.stem_chs, self.act, self.se)

    def build(self, arch: Sequence[str], deploy: bool = False, **kwargs) -> nn.Module:
        """``arch`` as a :class:`MobileDet` (``features_only``: :class:`MobileDetFeatures`); by default
        headless (``num_classes=0``: pooled C5)."""
        return super().build(arch, deploy=deploy, **kwargs)

    def named_archs(self) -> dict[str, tuple[str, ...]]:
        return {self.base: self.from_model_name(self.base)}

    def from_model_name(self, name: str) -> tuple[str, ...]:
        """A registered MobileDet as an architecture of this space, or :class:`SpaceError` saying why not."""
        if name not in MOBILEDETS:
            raise SpaceError(f"unknown MobileDet {name!r}; choose one of {', '.join(MOBILEDETS)}")
        stages, stem_chs, act, se = MOBILEDETS[name]
        if (stem_chs, act, se, list(stages[0])) != (self.stem_chs, self.act, self.se, self.fixed):
            raise SpaceError(f"{name} is not expressible in {SPACE_ID}: its stem, C1 layer or activation differ "
                             f"from {self.base}'s")
        layers = [cfg for stage in stages[1:] for cfg in stage]
        shape = [(c.out, c.stride, c.residual) for c in layers]
        if shape != [(p.out, p.stride, p.residual) for p in self.positions]:
            raise SpaceError(f"{name} is not expressible in {SPACE_ID}: its filters, strides or residuals differ "
                             f"from {self.base}'s skeleton")
        arch = []
        for cfg in layers:
            match = next((c.name for c in self.choices if c.layer(cfg.out, cfg.stride, cfg.residual) == cfg), None)
            if match is None:
                raise SpaceError(f"{name} is not expressible in {SPACE_ID}: layer {cfg} is not a choice")
            arch.append(match)
        return tuple(arch)

    # -- files ----------------------------------------------------------------------------
    def _payload(self, arch: tuple[str, ...]) -> list[str]:
        return list(arch)

    def _from_payload(self, payload: object, source: str) -> Sequence[str]:
        if not isinstance(payload, list):
            raise SpaceError(f"{source}: 'layers' must be a list of layer choices")
        return payload

    def load_arch(self, spec: str | os.PathLike) -> tuple[str, ...]:
        """An architecture from a JSON file, its :meth:`arch_name`, or a registered MobileDet's name."""
        if str(spec) in MOBILEDETS:
            return self.from_model_name(str(spec))
        if str(spec).startswith(f"{ARCH_NAME_PREFIX}:"):
            return self.from_arch_name(str(spec))
        path = Path(spec)
        if not path.is_file():
            raise SpaceError(f"{spec}: neither an architecture file nor one of {', '.join(MOBILEDETS)}")
        return self.arch_from_json(read_arch_json(path), str(path))


__all__ = ["ARCH_FORMAT", "ARCH_NAME_PREFIX", "SPACE_ID", "Choice", "Position", "SearchSpace", "SpaceError",
           "default_choices", "searched_model"]
