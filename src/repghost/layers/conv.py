"""Conv → BatchNorm → activation, the unit every model here is built from."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from .fuse import conv_bn_to_kernel_bias, conv_with


class ConvNormAct(nn.Module):
    """``act(bn(conv(x)))`` in train form; ``act(conv(x))`` with the BN folded in deploy form.

    Both forms keep the attribute names ``conv``, ``bn`` and ``act`` so that state-dict keys only
    differ by the BN entries and the conv bias. ``act_layer`` (ReLU by default) is the activation
    when ``act``; ``bn_eps`` / ``bn_momentum`` are PyTorch's BatchNorm settings.
    """

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int = 1, stride: int = 1,
                 groups: int = 1, act: bool = True, deploy: bool = False,
                 act_layer: Callable[..., nn.Module] = nn.ReLU, bn_eps: float = 1e-5, bn_momentum: float = 0.1):
        super().__init__()
        self.conv = nn.Conv2d(in_chs, out_chs, kernel_size, stride, kernel_size // 2,
                              groups=groups, bias=deploy)
        self.bn = nn.Identity() if deploy else nn.BatchNorm2d(out_chs, eps=bn_eps, momentum=bn_momentum)
        self.act = act_layer(inplace=True) if act else nn.Identity()

    @property
    def deploy(self) -> bool:
        return isinstance(self.bn, nn.Identity)

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))

    def kernel_bias(self):
        """The ``(kernel, bias)`` of ``bn(conv(x))``, whichever form the module is in."""
        return conv_bn_to_kernel_bias(self.conv, self.bn)

    def reparameterize(self) -> None:
        if self.deploy:
            return
        self.conv = conv_with(self.conv, *self.kernel_bias())
        self.bn = nn.Identity()


def conv_bn(in_chs: int, out_chs: int, kernel_size: int = 1, stride: int = 1, groups: int = 1,
            deploy: bool = False) -> ConvNormAct:
    """A :class:`ConvNormAct` without activation."""
    return ConvNormAct(in_chs, out_chs, kernel_size, stride, groups, act=False, deploy=deploy)
