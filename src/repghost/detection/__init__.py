"""Detection with RepGhostNet backbones: torchvision RetinaNet, Mask R-CNN and SSDLite."""

from .backbone import BackboneWithFPN, SSDLiteBackbone, build_body, freeze_batchnorm, freeze_stages
from .detectors import DETECTORS, DetectorConfig, build_detector, detector_body, reparameterize_detector

__all__ = [
    "DETECTORS", "BackboneWithFPN", "DetectorConfig", "SSDLiteBackbone", "build_body", "build_detector",
    "detector_body", "freeze_batchnorm", "freeze_stages", "reparameterize_detector",
]
