"""Detection with RepGhostNet backbones: torchvision RetinaNet, Mask R-CNN and SSDLite.

Names load on first use (:mod:`repghost.lazy`): the command line reads :mod:`.config` without torch.
"""

from ..lazy import lazy_exports

__all__ = lazy_exports(__name__, {
    "backbone": ("BackboneWithFPN", "SSDLiteBackbone", "build_body", "freeze_batchnorm", "freeze_stages"),
    "config": ("DETECTORS", "DetectorConfig"),
    "detectors": ("build_detector", "detector_body", "reparameterize_detector"),
})
