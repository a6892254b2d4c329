"""The search space the cost model times: :mod:`repghost.models.searched` owns it (architectures are
models); this name stays so that imports written against it keep working."""

from ..models.searched import (  # noqa: F401  (re-exported)
    ARCH_FORMAT,
    ARCH_NAME_PREFIX,
    SPACE_ID,
    Choice,
    Position,
    SearchSpace,
    SpaceError,
    default_choices,
    searched_model,
)
