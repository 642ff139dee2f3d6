"""Models: any timm model by name, plus small models registered in timm's registry.

Importing this module registers, with ``timm.models.register_model``:

- ``taylorglo_smallcnn``: three 3x3 conv-BN-ReLU blocks (16-32-64 channels), global average pool,
  linear head. Built for 8x8 (``digits``) and 28x28 (MNIST) inputs on a CPU; any size >= 4 works.
- ``taylorglo_allcnn_c``: All-CNN-C (Springenberg et al. 2015), the paper's CIFAR model:
  96-96-96/2 - 192-192-192/2 - 192 (3x3) - 192 (1x1) - n (1x1), dropout 0.5 after each stride,
  global average pool. (as in the original TaylorGLO trainer.)
- ``taylorglo_resnet20`` / ``32`` / ``56``: the CIFAR ResNets of He et al. 2016 (3 stages of
  16/32/64 channels, n basic blocks each, 1x1 projection shortcuts when the shape changes).

so ``timm.create_model("taylorglo_resnet20", num_classes=10)`` works once taylorglo.train is imported.
``HF_HUB_OFFLINE`` is set (unless already set) before timm is imported: models are always built
with ``pretrained=False`` and nothing should reach for a hub.
"""

from __future__ import annotations

import difflib
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import timm  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from timm.models import register_model  # noqa: E402
from torch import nn  # noqa: E402

__all__ = ["AllCNNC", "CifarResNet", "SmallCNN", "create_model", "list_registered_models"]

_TIMM_ONLY = ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir")


def _conv_bn_relu(cin: int, cout: int, kernel: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class SmallCNN(nn.Module):
    """conv(w0)-conv(w1)-avgpool-conv(w2)-GAP-[dropout]-linear, 3x3 convs with ReLU (and BN if ``norm``).

    Input ``(N, in_chans, H, W)`` with H, W >= 2; output logits ``(N, num_classes)``. Inputs of 16
    pixels and more go through the first conv with stride 2 (28 -> 14 -> 7), so a 28x28 MNIST step
    costs only a few times an 8x8 ``digits`` step. BatchNorm makes training robust to odd losses
    and learning rates but roughly doubles the CPU time of this small net. Average pooling: on a
    single CPU thread max pooling cost more than a conv here, and trained no better (mnist-5k: 0.95
    against 0.96-0.97 for average pooling, 3 seeds).
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 1,
        widths=(16, 32, 64),
        norm: bool = True,
        drop_rate: float = 0.0,
    ):
        super().__init__()
        w0, w1, w2 = widths
        self.num_classes = num_classes
        self.conv1 = nn.Conv2d(in_chans, w0, 3, padding=1, bias=not norm)
        self.norm1 = nn.BatchNorm2d(w0) if norm else nn.Identity()
        self.block2 = (
            _conv_bn_relu(w0, w1)
            if norm
            else nn.Sequential(nn.Conv2d(w0, w1, 3, padding=1), nn.ReLU(inplace=True))
        )
        self.block3 = (
            _conv_bn_relu(w1, w2)
            if norm
            else nn.Sequential(nn.Conv2d(w1, w2, 3, padding=1), nn.ReLU(inplace=True))
        )
        self.drop_rate = drop_rate
        self.num_features = w2
        self.head = nn.Linear(w2, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        stride = 2 if x.shape[-1] >= 16 else 1
        x = F.conv2d(x, self.conv1.weight, self.conv1.bias, stride=stride, padding=1)
        x = F.relu(self.norm1(x), inplace=True)
        x = F.avg_pool2d(self.block2(x), 2)
        return self.block3(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_features(x).mean((2, 3))
        if self.drop_rate > 0:
            x = F.dropout(x, self.drop_rate, self.training)
        return self.head(x)


class AllCNNC(nn.Module):
    """All-CNN-C (Springenberg et al., "Striving for Simplicity", 2015) with BatchNorm.

    96-96-96/2 - 192-192-192/2 - 192 (3x3, no padding in the original; padded here so small inputs
    work) - 192 (1x1) - num_classes (1x1) - global average pool. Dropout ``drop_rate`` (0.5 in the
    paper) after each stride-2 layer, 0.2 on the input when ``input_drop``.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 3,
        drop_rate: float = 0.5,
        input_drop: float = 0.2,
        width: int = 96,
    ):
        super().__init__()
        w1, w2 = width, 2 * width
        self.num_classes = num_classes
        self.input_drop = nn.Dropout(input_drop) if input_drop > 0 else nn.Identity()
        self.stage1 = nn.Sequential(
            _conv_bn_relu(in_chans, w1),
            _conv_bn_relu(w1, w1),
            _conv_bn_relu(w1, w1, stride=2),
            nn.Dropout(drop_rate) if drop_rate > 0 else nn.Identity(),
        )
        self.stage2 = nn.Sequential(
            _conv_bn_relu(w1, w2),
            _conv_bn_relu(w2, w2),
            _conv_bn_relu(w2, w2, stride=2),
            nn.Dropout(drop_rate) if drop_rate > 0 else nn.Identity(),
        )
        self.stage3 = nn.Sequential(_conv_bn_relu(w2, w2), _conv_bn_relu(w2, w2, kernel=1))
        self.classifier = nn.Conv2d(w2, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stage3(self.stage2(self.stage1(self.input_drop(x))))
        return self.classifier(x).mean((2, 3))


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x), inplace=True)


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for 32x32 inputs (He et al. 2016, section 4.2): 16/32/64 channels, n blocks per stage."""

    def __init__(self, depth: int = 20, num_classes: int = 10, in_chans: int = 3, drop_rate: float = 0.0):
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"a CIFAR ResNet has depth 6n+2 (20, 32, 44, 56, 110), got {depth}")
        n = (depth - 2) // 6
        self.num_classes = num_classes
        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(inplace=True)
        )
        layers, cin = [], 16
        for i, cout in enumerate((16, 32, 64)):
            for j in range(n):
                layers.append(_BasicBlock(cin, cout, 2 if (i > 0 and j == 0) else 1))
                cin = cout
        self.layers = nn.Sequential(*layers)
        self.drop_rate = drop_rate
        self.num_features = 64
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(self.stem(x)).mean((2, 3))
        if self.drop_rate > 0:
            x = F.dropout(x, self.drop_rate, self.training)
        return self.fc(x)


def _strip(kwargs: dict) -> dict:
    if kwargs.pop("pretrained", False):
        raise ValueError("taylorglo's registered models have no pretrained weights")
    for k in _TIMM_ONLY:
        kwargs.pop(k, None)
    return kwargs


@register_model
def taylorglo_smallcnn(pretrained: bool = False, **kwargs) -> SmallCNN:
    """Small CNN for 8x8 and 28x28 inputs on a CPU (about 60k parameters)."""
    return SmallCNN(**_strip(dict(kwargs, pretrained=pretrained)))


@register_model
def taylorglo_allcnn_c(pretrained: bool = False, **kwargs) -> AllCNNC:
    """All-CNN-C, the paper's CIFAR-10 model (about 1.4M parameters)."""
    return AllCNNC(**_strip(dict(kwargs, pretrained=pretrained)))


@register_model
def taylorglo_resnet20(pretrained: bool = False, **kwargs) -> CifarResNet:
    """CIFAR ResNet-20 (about 0.27M parameters)."""
    return CifarResNet(20, **_strip(dict(kwargs, pretrained=pretrained)))


@register_model
def taylorglo_resnet32(pretrained: bool = False, **kwargs) -> CifarResNet:
    """CIFAR ResNet-32."""
    return CifarResNet(32, **_strip(dict(kwargs, pretrained=pretrained)))


@register_model
def taylorglo_resnet56(pretrained: bool = False, **kwargs) -> CifarResNet:
    """CIFAR ResNet-56."""
    return CifarResNet(56, **_strip(dict(kwargs, pretrained=pretrained)))


def list_registered_models() -> list[str]:
    """The model names this module adds to timm's registry."""
    return timm.list_models("taylorglo_*")


def create_model(name: str, num_classes: int, in_chans: int, **kwargs) -> nn.Module:
    """``timm.create_model(name, pretrained=False, num_classes=..., in_chans=..., **kwargs)``.

    Raises ValueError naming close matches when timm does not know ``name``.
    """
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=3)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(
            f"unknown model {name!r}: not in timm's registry{hint} (taylorglo adds {', '.join(list_registered_models())})"
        )
    return timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_chans, **kwargs)
