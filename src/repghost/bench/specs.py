"""What a benchmark measures: model specs, how to build them, and the paper's top-1 where known.

A spec is ``[SOURCE:]NAME[@FORM]``: SOURCE ``repghost`` (default), ``timm`` or ``torchvision``;
FORM ``train`` (default) or ``deploy`` (our :func:`repghost.reparameterize`, or timm's
``reparameterize_model`` for timm models). A repghost NAME is a registered name or a searched
architecture's file (``arch.json``) or inline name. Every model is built with random weights
(``pretrained=False`` / ``weights=None``): latency does not depend on the weights' values.
A spec can also be a model file repghost wrote (``PATH[@FORM]``): a checkpoint is loaded with its
weights, and its recorded preprocessing gives the default input size; an exported file (ONNX,
TorchScript, OpenVINO, LiteRT, MNN, ncnn) is timed as it is, on its own runtime, at its input size.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from torch import nn

from ..reparam import is_deploy

#: Where a spec's model comes from: a SOURCE: prefix names one of the first three; "file" is a checkpoint path.
SOURCES = ("repghost", "timm", "torchvision", "file")
LIBRARIES = SOURCES[:3]
FORMS = ("train", "deploy")

#: ImageNet-1k top-1 (%) from the paper (PAPER.md): its RepGhostNet table, GhostNet 1.0×, and the
#: competitor points of its accuracy–latency figure (MobileNetV3, MobileOne).
PAPER_TOP1 = {
    "repghostnet_050": 66.9, "repghostnet_058": 68.9, "repghostnet_080": 72.2, "repghostnet_100": 74.2,
    "repghostnet_111": 75.1, "repghostnet_130": 76.4, "repghostnet_150": 77.5, "repghostnet_200": 78.8,
    "ghostnet_100": 73.9,
    "mobilenetv3_small_075": 65.4, "mobilenetv3_small_100": 67.4,
    "mobilenetv3_large_075": 73.3, "mobilenetv3_large_100": 75.2, "mobilenet_v3_large": 75.2,
    "mobilenet_v3_small": 67.4,
    "mobileone_s0": 71.4, "mobileone_s1": 75.9,
}


def _recorded_form(path: str) -> str:
    from ..checkpoint import CheckpointError, read_metadata

    try:
        return read_metadata(path)["form"]
    except CheckpointError:  # a training checkpoint (or no metadata): the train form
        return "train"


def _is_export(path: str) -> bool:
    from ..deploy.runner import file_format

    return file_format(path) not in ("checkpoint", "safetensors")


@dataclass(frozen=True)
class ModelSpec:
    source: str
    name: str
    form: str

    @classmethod
    def parse(cls, text: str) -> ModelSpec:
        """The spec ``text`` names; a path is a checkpoint (``"file"``) unless it is an architecture file.
        The SOURCE and FORM are checked here, the NAME when the model is built."""
        from ..checkpoint import is_checkpoint_path
        from ..models import UnknownModelError, resolve_model_name

        body, _, form = text.rpartition("@") if "@" in text and not os.path.isfile(text) else (text, "", "")
        if form and form not in FORMS:
            raise ValueError(f"model spec {text!r}: form must be one of {FORMS}")
        source, sep, name = body.partition(":")
        if sep and source in LIBRARIES:
            return cls(source, name, form or "train")
        if is_checkpoint_path(body):
            if _is_export(body):
                if form == "train":
                    raise ValueError(f"model spec {text!r}: an exported file holds the deploy form only")
                return cls("file", body, "deploy")
            return cls("file", body, form or (_recorded_form(body) if os.path.isfile(body) else "train"))
        if sep:  # no source of ours: a searched architecture's inline name, or a mistake
            try:
                resolve_model_name(body)
            except UnknownModelError as err:
                raise ValueError(f"model spec {text!r}: source must be one of {', '.join(LIBRARIES)} ({err})") from None
        return cls("repghost", body, form or "train")

    @property
    def exported(self) -> bool:
        """An exported file (ONNX, TorchScript, an edge runtime's): timed as it is, on its own runtime."""
        return self.source == "file" and _is_export(self.name)

    @property
    def label(self) -> str:
        """How tables and file names show the spec (a searched architecture's inline name shortened)."""
        if self.exported:
            return f"{os.path.basename(self.name)}@deploy"
        if self.source == "repghost":
            from ..models import short_model_name

            return f"{short_model_name(self.name)}@{self.form}"
        return f"{self.source}:{self.name}@{self.form}"

    @property
    def paper_top1(self) -> float | None:
        return PAPER_TOP1.get(self.name)

    def input_size(self) -> int | None:
        """The input size a model file records (``None`` for models built by name)."""
        if self.source != "file":
            return None
        if self.exported:
            from ..deploy.runner import open_model as open_file

            return open_file(self.name, threads=1).input_size
        from ..checkpoint import open_model

        recorded = open_model(self.name).preprocess
        return recorded.input_size if recorded else None

    def build(self, num_classes: int = 1000) -> nn.Module:
        """The model in eval mode, in the spec's form."""
        if self.source == "file":
            from ..checkpoint import open_model
            from ..reparam import reparameterize

            model = open_model(self.name).model
            return reparameterize(model) if self.form == "deploy" and not is_deploy(model) else model
        if self.source == "repghost":
            from ..models import create_model
            from ..reparam import reparameterize

            model = create_model(self.name, num_classes=num_classes).eval()
            return reparameterize(model) if self.form == "deploy" else model
        if self.source == "timm":
            import timm
            from timm.utils.model import reparameterize_model

            model = timm.create_model(self.name, pretrained=False, num_classes=num_classes).eval()
            return reparameterize_model(model) if self.form == "deploy" else model
        import torchvision

        if self.form == "deploy":
            raise ValueError(f"{self.label}: torchvision models have no deploy form")
        return torchvision.models.get_model(self.name, weights=None, num_classes=num_classes).eval()
