"""Allowed ranges of numeric settings, one definition used by the library and the command line.

A :class:`Number` both checks a value (``problem(value)``, for configs built in Python or read from
YAML) and parses a command-line string (``__call__``, as an argparse ``type``), so a flag and the
config key behind it can never disagree about what is valid.

Every config dataclass validates the same way: a field made with :func:`limited` carries its
:class:`Number`, and :func:`check_limits` (called from ``__post_init__``) reports every field outside
its range in one error.
"""

from __future__ import annotations

import argparse
import dataclasses
import math


class Number:
    """An argparse type for an int or float with a lower bound (and an optional upper one).

    ``minimum`` / ``maximum`` are public so tests can walk every numeric flag of every command."""

    def __init__(self, kind: type, minimum: float, maximum: float | None = None, exclusive: bool = False):
        self.kind, self.minimum, self.maximum, self.exclusive = kind, minimum, maximum, exclusive
        self.__name__ = kind.__name__  # argparse names the type in its messages

    def __call__(self, text: str):
        try:
            value = self.kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {self._describe()}, got {text!r}") from None
        problem = self.problem(value)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return value

    def problem(self, value) -> str | None:
        """``None`` when ``value`` is allowed, else what is wrong with it."""
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                self.kind is int and not isinstance(value, int)):
            return f"expected {self._describe()}, got {value!r}"
        if isinstance(value, float) and not math.isfinite(value):
            return f"expected {self._describe()}, got {value}"
        low_ok = value > self.minimum if self.exclusive else value >= self.minimum
        if not low_ok or (self.maximum is not None and value > self.maximum):
            return f"expected {self._describe()}, got {value}"
        return None

    def _describe(self) -> str:
        noun = "an integer" if self.kind is int else "a number"
        low = f"> {self.minimum:g}" if self.exclusive else f">= {self.minimum:g}"
        return f"{noun} {low}" + (f" and <= {self.maximum:g}" if self.maximum is not None else "")

    def __repr__(self) -> str:
        return f"Number({self._describe()})"


#: counts and sizes: 1, 2, ...
COUNT = Number(int, 1)
#: counts where 0 means "none" / "off": 0, 1, ...
COUNT0 = Number(int, 0)
#: rates, decays, weights: >= 0
RATE = Number(float, 0.0)
#: strictly positive amounts (a standard deviation, a scale)
POSITIVE = Number(float, 0.0, exclusive=True)
#: fractions in [0, 1]
FRACTION = Number(float, 0.0, 1.0)


class Negative(Number):
    """A strictly negative number (a penalty weight such as the search's τ)."""

    def __init__(self):
        super().__init__(float, -math.inf)

    def problem(self, value) -> str | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not -math.inf < value < 0:
            return f"expected {self._describe()}, got {value!r}"
        return None

    def _describe(self) -> str:
        return "a number < 0"


#: strictly negative weights
NEGATIVE = Negative()



#: counts and sizes: 1, 2, ...
COUNT = Number(int, 1)
#: counts where 0 means "none" / "off": 0, 1, ...
COUNT0 = Number(int, 0)
#: rates, decays, weights: >= 0
RATE = Number(float, 0.0)
#: strictly positive amounts (a standard deviation, a scale)
POSITIVE = Number(float, 0.0, exclusive=True)
#: fractions in [0, 1]
FRACTION = Number(float, 0.0, 1.0)


def limited(number: Number, **field_kwargs) -> dataclasses.Field:
    """A dataclass field whose values must satisfy ``number`` (``None`` always passes: "unset")."""
    metadata = {**field_kwargs.pop("metadata", {}), "limit": number}
    return dataclasses.field(metadata=metadata, **field_kwargs)


def value_problem(number: Number, value) -> str | None:
    """What is wrong with ``value`` (a number, or a list / tuple of them) under ``number``; an int is
    accepted where a float is asked (YAML and Python write ``1`` for ``1.0``)."""
    if isinstance(value, (list, tuple)):
        return next((p for p in (value_problem(number, v) for v in value) if p), None)
    if number.kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    return number.problem(value)


def limit_problems(config) -> list[str]:
    """``"<field> <problem>"`` for every limited field of the dataclass ``config`` outside its range."""
    return [f"{f.name} {problem}" for f in dataclasses.fields(config) if "limit" in f.metadata
            and getattr(config, f.name) is not None
            for problem in [value_problem(f.metadata["limit"], getattr(config, f.name))] if problem]


def check_limits(config, error: type[Exception] = ValueError) -> None:
    """Raise ``error`` listing every limited field of ``config`` outside its range."""
    problems = limit_problems(config)
    if problems:
        raise error("; ".join(problems))
