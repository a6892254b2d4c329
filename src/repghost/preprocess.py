"""The preprocessing contract: what an input image must go through before a model sees it.

A model's numbers mean something only with the preprocessing it was trained with: the digits
main job trains at 32² with mean / std 0.5, an ImageNet recipe at 224² with ImageNet statistics.
A training run records its :class:`Preprocess`, and every file the project writes carries it —
training checkpoints (in their config), the train and deploy safetensors, ONNX (metadata
properties) and TorchScript (an extra file) — so that ``eval``, ``export``, int8 calibration and
``bench`` read it instead of guessing. A file without it (an official or timm checkpoint) gets the
model's default and the consumer says so.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace

#: The key under which files carry the contract (safetensors / ONNX metadata, TorchScript extra file).
METADATA_KEY = "repghost_preprocess"
INTERPOLATIONS = ("bilinear", "bicubic", "nearest", "lanczos", "box", "hamming")
#: How an image becomes ``input_size``²: ``crop`` (classifiers: timm's evaluation transform, the short
#: side resized to ``input_size / crop_pct`` then centre-cropped) or ``stretch`` (detectors at a fixed
#: input: the whole image resized to ``input_size``², aspect ratio not kept, nothing cut off — what
#: torchvision's SSD does inside the model).
RESIZE_MODES = ("crop", "stretch")


class PreprocessError(ValueError):
    """A preprocessing description that is missing a field or holds a value of the wrong kind."""


@dataclass(frozen=True)
class Preprocess:
    """Evaluation preprocessing: resize the short side to ``input_size / crop_pct`` with
    ``interpolation``, centre-crop ``input_size``² (``resize="stretch"``: resize the whole image to
    ``input_size``² instead), scale to [0, 1] in ``channel_order``, then ``(x - mean) / std`` per
    channel."""

    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bilinear"
    crop_pct: float = 0.875
    channel_order: str = "RGB"
    resize: str = "crop"

    def __post_init__(self):
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        problems = []
        if not (isinstance(self.input_size, int) and not isinstance(self.input_size, bool) and self.input_size > 0):
            problems.append(f"input_size must be a positive integer, got {self.input_size!r}")
        if len(self.mean) != 3 or not all(0.0 <= v <= 1.0 for v in self.mean):
            problems.append(f"mean must be 3 values in [0, 1], got {list(self.mean)}")
        if len(self.std) != 3 or not all(v > 0 and math.isfinite(v) for v in self.std):
            problems.append(f"std must be 3 positive values, got {list(self.std)}")
        if self.interpolation not in INTERPOLATIONS:
            problems.append(f"interpolation must be one of {', '.join(INTERPOLATIONS)}, got {self.interpolation!r}")
        if not (isinstance(self.crop_pct, (int, float)) and 0 < self.crop_pct <= 1):
            problems.append(f"crop_pct must be in (0, 1], got {self.crop_pct!r}")
        if self.resize not in RESIZE_MODES:
            problems.append(f"resize must be one of {', '.join(RESIZE_MODES)}, got {self.resize!r}")
        if self.channel_order != "RGB":
            problems.append(f"channel_order must be 'RGB', got {self.channel_order!r}")
        if problems:
            raise PreprocessError("; ".join(problems))

    # -- (de)serialization ----------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        if self.resize == "crop":  # the default: files stay as they were before the field existed
            del d["resize"]
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, values: Mapping) -> Preprocess:
        if not isinstance(values, Mapping):
            raise PreprocessError(f"expected a mapping of preprocessing settings, got {type(values).__name__}")
        unknown = sorted(set(values) - set(cls.__dataclass_fields__))
        missing = sorted({"input_size", "mean", "std"} - set(values))
        if unknown or missing:
            raise PreprocessError(f"preprocessing settings: unknown keys {unknown}, missing keys {missing}")
        for key in ("mean", "std"):
            if not isinstance(values[key], Sequence) or isinstance(values[key], str):
                raise PreprocessError(f"preprocessing {key} must be a list of 3 numbers, got {values[key]!r}")
        try:
            return cls(**values)
        except (TypeError, ValueError) as err:
            raise PreprocessError(str(err)) from None

    @classmethod
    def from_json(cls, text: str) -> Preprocess:
        try:
            values = json.loads(text)
        except json.JSONDecodeError as err:
            raise PreprocessError(f"preprocessing metadata is not JSON: {err}") from None
        return cls.from_dict(values)

    # -- sources ---------------------------------------------------------------------------------
    @classmethod
    def from_train_config(cls, cfg) -> Preprocess:
        """What a training run (a :class:`repghost.train.TrainConfig`) evaluates with."""
        return cls(input_size=cfg.img_size, mean=cfg.mean, std=cfg.std, interpolation=cfg.val_interpolation,
                   crop_pct=cfg.crop_pct)

    @classmethod
    def model_default(cls, model) -> Preprocess:
        """The model family's default (its ``pretrained_cfg``: ImageNet statistics at 224²)."""
        cfg = getattr(model, "pretrained_cfg", None) or {}
        size = cfg.get("input_size", (3, 224, 224))
        return cls(input_size=int(size[-1]), mean=cfg.get("mean", (0.485, 0.456, 0.406)),
                   std=cfg.get("std", (0.229, 0.224, 0.225)), interpolation=cfg.get("interpolation", "bilinear"),
                   crop_pct=cfg.get("crop_pct", 0.875))

    def override(self, input_size: int | None = None, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None, interpolation: str | None = None,
                 crop_pct: float | None = None) -> Preprocess:
        """A copy with the given (not ``None``) fields replaced — the command-line flags."""
        given = dict(input_size=input_size, mean=mean, std=std, interpolation=interpolation, crop_pct=crop_pct)
        changes = {k: v for k, v in given.items() if v is not None}
        try:
            return replace(self, **changes) if changes else self
        except (TypeError, ValueError) as err:
            raise PreprocessError(str(err)) from None

    # -- use ---------------------------------------------------------------------------------------
    def transform(self):
        """The evaluation transform for this contract (PIL image → normalized tensor): timm's for
        ``crop``, torchvision's resize to the square for ``stretch``."""
        if self.resize == "stretch":
            from torchvision import transforms as T

            mode = T.InterpolationMode(self.interpolation)
            return T.Compose([T.Resize((self.input_size, self.input_size), interpolation=mode), T.ToTensor(),
                              T.Normalize(self.mean, self.std)])
        from timm.data import create_transform

        return create_transform(input_size=self.input_size, is_training=False, interpolation=self.interpolation,
                                crop_pct=self.crop_pct, mean=self.mean, std=self.std)

    def describe(self) -> str:
        fmt = lambda v: "[" + ", ".join(f"{x:g}" for x in v) + "]"  # noqa: E731
        return (f"{self.input_size}² {self.channel_order}, mean {fmt(self.mean)}, std {fmt(self.std)}, "
                f"{self.interpolation}, " + (f"crop {self.crop_pct:g}" if self.resize == "crop" else
                                             "whole image stretched to the square"))

    def to_image(self, boxes, width: int, height: int):
        """Boxes (``(N, 4)`` xyxy tensor) in the model's input pixels mapped back to the original
        ``width`` × ``height`` image, clipped to it (what a detector found, drawn on the photo)."""
        sx, sy, ox, oy = self._geometry(width, height)
        out = boxes.clone().float()
        out[:, 0::2] = (out[:, 0::2] / sx + ox).clamp(0, width)
        out[:, 1::2] = (out[:, 1::2] / sy + oy).clamp(0, height)
        return out

    def _geometry(self, width: int, height: int) -> tuple[float, float, float, float]:
        """(x scale, y scale, x offset, y offset): input = (image - offset) × scale."""
        if self.resize == "stretch":
            return self.input_size / width, self.input_size / height, 0.0, 0.0
        short = math.floor(self.input_size / self.crop_pct)  # timm: resize the short side to this
        scale = short / min(width, height)
        new_w, new_h = (short, int(short * height / width)) if width <= height else (int(short * width / height), short)
        ox, oy = (new_w - self.input_size) / 2 / scale, (new_h - self.input_size) / 2 / scale
        return new_w / width, new_h / height, ox, oy
