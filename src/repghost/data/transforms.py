"""Train / val transforms from timm's transform factory, configured by a training config."""

from __future__ import annotations

from timm.data import create_transform


def build_transform(cfg, is_training: bool):
    """timm's ImageNet-style pipeline at ``cfg.img_size``.

    Train: RandomResizedCrop (``scale``, ``ratio``, ``interpolation``, "random" picks per image),
    horizontal flip, colour jitter, optional RandAugment (``auto_augment``, e.g. ``rand-m9-mstd0.5``),
    normalize, random erasing. Val: resize to ``img_size / crop_pct``, centre crop, normalize.
    """
    common = dict(input_size=cfg.img_size, mean=tuple(cfg.mean), std=tuple(cfg.std))
    if not is_training:
        return create_transform(**common, is_training=False, interpolation=cfg.val_interpolation,
                                crop_pct=cfg.crop_pct)
    return create_transform(
        **common, is_training=True, scale=tuple(cfg.scale), ratio=tuple(cfg.ratio), hflip=cfg.hflip,
        color_jitter=cfg.color_jitter, auto_augment=cfg.auto_augment, interpolation=cfg.interpolation,
        re_prob=cfg.re_prob, re_mode=cfg.re_mode, re_count=1)
