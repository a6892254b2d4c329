"""Search spaces: what every space of architectures shares, and the resolver that lets
:func:`repghost.create_model` take any space's architecture file or inline name.

Two spaces implement it: :class:`repghost.models.searched.SearchSpace` (``mobiledet_cpu_skeleton/v1``,
MobileDet-CPU's skeleton with a layer type per position) and
:class:`repghost.models.repghostnet_space.RepGhostNetSpace` (``repghostnet_skeleton/v1``, RepGhostNet's
skeleton with per-stage widths and per-block op, kernel, middle width, SE and skip).

**The interface** (:class:`ArchSpace`; what a super-network, a controller or a cost model programs against):

- ``space.id``, ``space.fingerprint`` (a hash of :meth:`~ArchSpace.describe`: everything that defines the
  space), ``space.decisions``: the ordered :class:`Decision` list, each with its ``name`` and its
  ``choices`` (names, strings; decisions may have different numbers of choices).
- An *architecture* is a tuple with one choice name per decision, in that order.
  :meth:`~ArchSpace.sample` draws architecture ``index`` of the seeded random sequence ``seed`` (each
  decision uniform and independent); :meth:`~ArchSpace.validate` checks one, :meth:`~ArchSpace.with_choice`
  changes one decision; :meth:`~ArchSpace.active`
  says which decisions matter for it (a skipped block's kernel does not), and :meth:`~ArchSpace.canonical`
  sets the others to fixed values, so that one model has one name.
- :meth:`~ArchSpace.build` gives the model (``features_only=True``: the headless backbone returning the
  maps at strides 2…32, as :func:`repghost.create_model` builds it), :meth:`~ArchSpace.builder` the
  ``create_model`` builder.
- :meth:`~ArchSpace.arch_name` / :meth:`~ArchSpace.from_arch_name`: the inline model name
  ``<prefix>:<fingerprint>:<choice>,<choice>,...``; :meth:`~ArchSpace.arch_to_json` /
  :meth:`~ArchSpace.arch_from_json` / :meth:`~ArchSpace.load_arch`: the JSON file
  ``{"format": "repghost-costmodel-arch/1", "space": <id>, "fingerprint": …, <payload>}``; a file or
  name of another space (or another version of this one) is refused, never misread.
- :meth:`~ArchSpace.named_archs`: the registered models the space expresses exactly (``mobiledet_cpu``;
  ``repghostnet_050`` / ``_080`` / ``_100``).

Spaces register with :func:`register_space`; :func:`searched_model` (the registry's resolver hook) picks
the space from a name's prefix or a file's ``space`` field.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch import nn

from .registry import register_resolver

#: The format tag of every space's architecture file.
ARCH_FORMAT = "repghost-costmodel-arch/1"


class SpaceError(ValueError):
    """An architecture, file or directory that does not belong to this search space."""


@dataclass(frozen=True)
class Decision:
    """One choice an architecture makes: its ``name`` and the names of its ``choices``."""

    name: str
    choices: tuple[str, ...]


class ArchSpace:
    """What every search space implements (see the module docstring). A subclass sets ``id``,
    ``name_prefix`` and ``payload_key`` (the architecture's key in its JSON file) and implements
    :attr:`decisions`, :meth:`describe`, :meth:`builder`, :meth:`named_archs`."""

    id: str = ""
    name_prefix: str = ""
    payload_key: str = "choices"
    #: What a decision is called in messages (``layer`` in a space whose decisions are layers).
    item: str = "decision"

    # -- to implement ---------------------------------------------------------------------
    @property
    def decisions(self) -> list[Decision]:
        raise NotImplementedError

    def describe(self) -> dict:
        """Everything that defines the space; its hash is the fingerprint."""
        raise NotImplementedError

    def builder(self, arch: Sequence[str]) -> Callable[..., nn.Module]:
        """``arch``'s ``create_model`` builder (keyword arguments as the registered models take them)."""
        raise NotImplementedError

    def named_archs(self) -> dict[str, tuple[str, ...]]:
        """Registered model name → its architecture in this space, for every model the space holds exactly."""
        raise NotImplementedError

    # -- identity -------------------------------------------------------------------------
    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.describe(), sort_keys=True).encode()).hexdigest()[:16]

    @property
    def decision_names(self) -> list[str]:
        return [d.name for d in self.decisions]

    @property
    def num_decisions(self) -> int:
        return len(self.decisions)

    # -- architectures --------------------------------------------------------------------
    def sample(self, seed: int, index: int) -> tuple[str, ...]:
        """Architecture ``index`` of the random sequence ``seed``: each decision uniform and independent
        (TuNAS's prior), canonical. The same (seed, index) always gives the same architecture."""
        rng = np.random.default_rng([seed, index])
        return self.canonical(tuple(d.choices[int(rng.integers(len(d.choices)))] for d in self.decisions))

    def active(self, arch: Sequence[str]) -> tuple[bool, ...]:
        """Which decisions change ``arch``'s model (all, unless a space says otherwise)."""
        return tuple(True for _ in self.validate(arch))

    def canonical(self, arch: Sequence[str]) -> tuple[str, ...]:
        """``arch`` with every inactive decision at a fixed value (the same model, one name)."""
        return self.validate(arch)

    def with_choice(self, arch: Sequence[str], decision: str, choice: str) -> tuple[str, ...]:
        """``arch`` with ``decision`` (a name) set to ``choice`` (checked by :meth:`validate`, not here)."""
        if decision not in self.decision_names:
            raise SpaceError(f"{self.id} has no {self.item} {decision!r}")
        arch = list(arch)
        arch[self.decision_names.index(decision)] = choice
        return tuple(arch)

    def validate(self, arch: Sequence[str], source: str = "") -> tuple[str, ...]:
        """``arch`` as a tuple, or :class:`SpaceError` saying what is wrong, after ``source`` (where it came from)."""
        arch, where = tuple(arch), f"{source}: " if source else ""
        if len(arch) != self.num_decisions:
            raise SpaceError(f"{where}an architecture of {self.id} has {self.num_decisions} {self.item}s, "
                             f"got {len(arch)}")
        if not all(isinstance(a, str) for a in arch):
            raise SpaceError(f"{where}{self.item} choices are names (strings), got {arch!r}")
        for decision, choice in zip(self.decisions, arch, strict=True):
            if choice not in decision.choices:
                raise SpaceError(f"{where}unknown choice {choice!r} for {self.item} {decision.name!r}; choose from "
                                 f"{', '.join(decision.choices)}")
        return arch

    def build(self, arch: Sequence[str], deploy: bool = False, **kwargs) -> nn.Module:
        """``arch``'s model (``features_only=True``: the headless backbone); by default headless
        (``num_classes=0``: pooled features)."""
        kwargs.setdefault("num_classes", 0)
        return self.builder(arch)(deploy=deploy, **kwargs)

    # -- names ----------------------------------------------------------------------------
    def arch_name(self, arch: Sequence[str]) -> str:
        """``arch`` as a self-describing model name for :func:`repghost.create_model`."""
        return f"{self.name_prefix}:{self.fingerprint}:{','.join(self.canonical(arch))}"

    def from_arch_name(self, name: str) -> tuple[str, ...]:
        """The architecture an :meth:`arch_name` names, or :class:`SpaceError` saying why it is not one of this
        space's (another fingerprint, unknown choices)."""
        prefix, _, rest = name.partition(":")
        fingerprint, sep, choices = rest.partition(":")
        if prefix != self.name_prefix or not sep:
            raise SpaceError(f"{name!r} is not a searched architecture's name "
                             f"({self.name_prefix}:<fingerprint>:<{self.item}>,<{self.item}>,...)")
        self.check_fingerprint(dict(space=self.id, fingerprint=fingerprint), f"model {name!r}")
        return self.canonical(self.validate(choices.split(","), f"model {name!r}"))

    def from_model_name(self, name: str) -> tuple[str, ...]:
        """A registered model as an architecture of this space, or :class:`SpaceError` saying why not."""
        named = self.named_archs()
        if name not in named:
            raise SpaceError(f"{name} is not expressible in {self.id}; the registered models it holds are "
                             f"{', '.join(named)}")
        return named[name]

    # -- files ----------------------------------------------------------------------------
    def arch_to_json(self, arch: Sequence[str]) -> dict:
        return dict(format=ARCH_FORMAT, space=self.id, fingerprint=self.fingerprint,
                    **{self.payload_key: self._payload(self.canonical(arch))})

    def arch_from_json(self, data: object, source: str = "architecture") -> tuple[str, ...]:
        if not isinstance(data, dict) or data.get("format") != ARCH_FORMAT:
            raise SpaceError(f"{source} is not a repghost architecture file (format {ARCH_FORMAT!r})")
        self.check_fingerprint(data, source)
        return self.canonical(self.validate(self._from_payload(data.get(self.payload_key), source), source))

    def _payload(self, arch: tuple[str, ...]):
        """The JSON value of ``arch`` under :attr:`payload_key`: by default ``{decision: choice}``."""
        return dict(zip(self.decision_names, arch, strict=True))

    def _from_payload(self, payload: object, source: str) -> Sequence[str]:
        if not isinstance(payload, dict):
            raise SpaceError(f"{source}: {self.payload_key!r} must be an object {{decision: choice}}")
        missing = [n for n in self.decision_names if n not in payload]
        extra = sorted(set(payload) - set(self.decision_names))
        if missing or extra:
            raise SpaceError(f"{source}: {self.payload_key!r} must name every decision of {self.id} once"
                             + (f"; missing {', '.join(missing[:5])}{', …' if len(missing) > 5 else ''}" if missing
                                else "")
                             + (f"; unknown {', '.join(extra[:5])}{', …' if len(extra) > 5 else ''}" if extra else ""))
        return [payload[n] for n in self.decision_names]

    def check_fingerprint(self, data: dict, source: str) -> None:
        if data.get("space") != self.id or data.get("fingerprint") != self.fingerprint:
            raise SpaceError(f"{source} belongs to search space {data.get('space')!r} (fingerprint "
                             f"{data.get('fingerprint')!r}), not {self.id!r} ({self.fingerprint})")

    def load_arch(self, spec: str | os.PathLike) -> tuple[str, ...]:
        """An architecture from a JSON file, its :meth:`arch_name`, or a registered model the space holds."""
        named = self.named_archs()
        if str(spec) in named:
            return named[str(spec)]
        if str(spec).startswith(f"{self.name_prefix}:"):
            return self.from_arch_name(str(spec))
        path = Path(spec)
        if not path.is_file():
            raise SpaceError(f"{spec}: neither an architecture file nor one of {', '.join(named)}")
        return self.arch_from_json(read_arch_json(path), str(path))


def read_arch_json(path: Path) -> object:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SpaceError(f"{path}: not valid JSON ({err})") from err


# -- the spaces and the resolver -------------------------------------------------------------
_SPACES: dict[str, type[ArchSpace]] = {}


def register_space(cls: type[ArchSpace]) -> type[ArchSpace]:
    """Make ``cls`` (an :class:`ArchSpace` with its default settings) known to :func:`get_space` and the resolver."""
    if cls.id in _SPACES and _SPACES[cls.id] is not cls:
        raise ValueError(f"search space {cls.id!r} is registered twice")
    _SPACES[cls.id] = cls
    return cls


def space_ids() -> list[str]:
    """The registered spaces' ids, sorted."""
    return sorted(_SPACES)


def get_space(space_id: str) -> ArchSpace:
    """The registered space ``space_id`` (:class:`SpaceError` naming the known ones otherwise)."""
    if space_id not in _SPACES:
        raise SpaceError(f"unknown search space {space_id!r}; choose one of {', '.join(space_ids())}")
    return _SPACES[space_id]()


def space_of_file(data: object, source: str) -> ArchSpace:
    """The space an architecture (or cost model, or sampling) file's ``space`` field names; a file of an
    unknown space is refused naming the known ones."""
    found = data.get("space") if isinstance(data, dict) else None
    if isinstance(found, str) and found in _SPACES:
        return _SPACES[found]()
    if not isinstance(data, dict) or data.get("format") != ARCH_FORMAT:
        raise SpaceError(f"{source} is not a repghost architecture file (format {ARCH_FORMAT!r})")
    raise SpaceError(f"{source} belongs to search space {found!r} (fingerprint {data.get('fingerprint')!r}), "
                     f"not one of {', '.join(space_ids())}")


def load_any_arch(spec: str | os.PathLike) -> tuple[ArchSpace, tuple[str, ...]]:
    """The space and architecture of a file or inline name of any registered space."""
    text = os.fspath(spec)
    for cls in _SPACES.values():
        if text.startswith(f"{cls.name_prefix}:"):
            space = cls()
            return space, space.from_arch_name(text)
    path = Path(text)
    data = read_arch_json(path)
    space = space_of_file(data, str(path))
    return space, space.arch_from_json(data, str(path))


def searched_model(spec: str) -> tuple[str, Callable[..., nn.Module]] | None:
    """The model name and builder of a searched architecture given as its file or its inline name, of any
    registered space (``None`` when ``spec`` is neither: not a file, no ``.json`` suffix, no known prefix);
    :class:`SpaceError` when it is one but unusable (another space or version, not an architecture)."""
    path = Path(spec)
    prefixed = any(spec.startswith(f"{cls.name_prefix}:") for cls in _SPACES.values())
    if not (prefixed or path.is_file()):
        if path.suffix == ".json":
            raise SpaceError(f"architecture file not found: {spec}")
        return None
    space, arch = load_any_arch(spec)
    return space.arch_name(arch), space.builder(arch)


register_resolver(searched_model)
