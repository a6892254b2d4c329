"""int8 recipe names, ``FORMAT[-nodw][-sSTRIDE]`` (what each part means: :mod:`.quantize`), parsed
without importing onnxruntime or torch, so ``repghost export --recipe`` is checked while parsing."""

from __future__ import annotations

import re
from dataclasses import dataclass

#: The recipes ``benchmarks/int8.py`` compares (any ``FORMAT[-nodw][-sSTRIDE]`` is accepted).
RECIPES = ("qdq", "qdq-nodw", "qop", "qop-nodw", "qdq-s8", "qdq-s16", "qop-s16", "qdq-nodw-s16", "qdq-s32")
#: The recipe ``repghost export --int8`` uses by default (fastest measured here; see benchmarks/README.md).
DEFAULT_RECIPE = "qdq-s16"
_RECIPE = re.compile(r"^(qdq|qop)(-nodw)?(?:-s(\d+))?$")


@dataclass(frozen=True)
class Recipe:
    fmt: str
    skip_depthwise: bool
    min_stride: int

    @classmethod
    def parse(cls, name: str) -> Recipe:
        match = _RECIPE.match(name)
        if not match:
            raise ValueError(f"int8 recipe must look like FORMAT[-nodw][-sSTRIDE] with FORMAT qdq or qop "
                             f"(e.g. {', '.join(RECIPES)}), got {name!r}")
        return cls(match.group(1), bool(match.group(2)), int(match.group(3) or 1))
