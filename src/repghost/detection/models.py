"""The detectors' old module path, kept importable: they live in :mod:`.detectors` (``models`` is the
classification families' package, one floor down)."""

from .detectors import (
    DEFAULT_SIZES,
    DETECTORS,
    OUT_INDICES,
    DetectorConfig,
    build_detector,
    build_ssdlite,
    detector_body,
    reparameterize_detector,
    retinanet_anchors,
)

__all__ = ["DEFAULT_SIZES", "DETECTORS", "OUT_INDICES", "DetectorConfig", "build_detector", "build_ssdlite",
           "detector_body", "reparameterize_detector", "retinanet_anchors"]
