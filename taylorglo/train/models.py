"""Models: any timm model by name, plus small models registered in timm's registry.

Importing this module registers, with ``timm.models.register_model``:

- ``taylorglo_smallcnn``: three 3x3 conv-BN-ReLU blocks (16-32-64 channels), global average pool,
  linear head. Built for 8x8 (``digits``) and 28x28 (MNIST) inputs on a CPU; any size >= 4 works.
- ``taylorglo_allcnn_c``: All-CNN-C (Springenberg et al. 2015), the paper's CIFAR model:
  96-96-96/2 - 192-192-192/2 - 192 (3x3) - 192 (1x1) - n (1x1), dropout 0.5 after each stride,
  global average pool. (as in the original TaylorGLO trainer.)
- ``taylorglo_resnet20`` / ``32`` / ``56``: the CIFAR ResNets of He et al. 2016 (3 stages of
  16/32/64 channels, n basic blocks each, 1x1 projection shortcuts when the shape changes).
- ``taylorglo_cnn1d``: the MNIST-1D paper's CNN (Greydanus 2020) for sequences of length 40: three
  stride-2 1-D convs of 25 channels, then a linear layer over the flattened features.

Every model here and in timm takes images except those in :data:`SEQUENCE_MODELS`, which take 1-D
sequences; :func:`model_spatial_dims` tells them apart (the trainer checks it against the dataset).

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

__all__ = [
    "SEQUENCE_MODELS",
    "AllCNNC",
    "CNN1d",
    "CifarResNet",
    "SmallCNN",
    "create_model",
    "list_registered_models",
    "model_spatial_dims",
]

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


class CNN1d(nn.Module):
    """The MNIST-1D paper's CNN (Greydanus 2020, ``ConvBase`` of the mnist1d repository).

    conv(kernel 5) - ReLU - conv(3) - ReLU - conv(3) - ReLU - flatten - linear: 1-D convolutions of
    ``channels`` (25) channels, each with stride 2 and padding 1, so a length-40 sequence becomes
    19 -> 10 -> 5 positions and the linear head sees 25 * 5 = 125 features (5,210 parameters for 10
    classes). No pooling and no normalization, as in the paper, which reports about 94% test
    accuracy with cross-entropy on MNIST-1D's 4,000 training sequences. Measured with this trainer's
    defaults (SGD 0.1, momentum 0.9, weight decay 5e-4, cosine, batch 128) for 100 epochs: 94.1-94.5%
    (3 seeds) on 3,999 of them, 92.3-93.4% on the 3,000 left by the default validation carve.

    Input ``(N, in_chans, seq_len)``, or ``(N, in_chans, 1, seq_len)``: the one-row-image layout in
    which the trainer stores 1-D datasets. Output logits ``(N, num_classes)``. The head covers every
    position, so the length must be ``seq_len``.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 1,
        channels: int = 25,
        seq_len: int = 40,
        drop_rate: float = 0.0,
    ):
        super().__init__()
        self.num_classes = num_classes
        self.seq_len = seq_len
        self.conv1 = nn.Conv1d(in_chans, channels, 5, stride=2, padding=1)
        self.conv2 = nn.Conv1d(channels, channels, 3, stride=2, padding=1)
        self.conv3 = nn.Conv1d(channels, channels, 3, stride=2, padding=1)
        length = seq_len
        for conv in (self.conv1, self.conv2, self.conv3):
            length = (length + 2 * conv.padding[0] - conv.kernel_size[0]) // conv.stride[0] + 1
        if length < 1:
            raise ValueError(f"CNN1d needs seq_len >= 4 (three stride-2 convs), got seq_len={seq_len}")
        self.drop_rate = drop_rate
        self.num_features = channels * length
        self.head = nn.Linear(self.num_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4 and x.shape[2] == 1:
            x = x.squeeze(2)
        if x.dim() != 3:
            raise ValueError(
                f"taylorglo_cnn1d takes 1-D sequences (N, C, L) or (N, C, 1, L), got a batch of shape "
                f"{tuple(x.shape)}; 2-D images need a 2-D model (e.g. taylorglo_smallcnn)"
            )
        if x.shape[-1] != self.seq_len:
            raise ValueError(
                f"taylorglo_cnn1d was built for sequences of length {self.seq_len}, got length "
                f"{x.shape[-1]}; build it with seq_len={x.shape[-1]} (model_kwargs)"
            )
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.relu(self.conv3(x)).flatten(1)
        if self.drop_rate > 0:
            x = F.dropout(x, self.drop_rate, self.training)
        return self.head(x)


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


@register_model
def taylorglo_cnn1d(pretrained: bool = False, **kwargs) -> CNN1d:
    """The MNIST-1D paper's CNN for length-40 sequences (about 5k parameters)."""
    return CNN1d(**_strip(dict(kwargs, pretrained=pretrained)))


# models that take 1-D sequences (N, C, L); every other model takes images (N, C, H, W)
SEQUENCE_MODELS: tuple[str, ...] = ("taylorglo_cnn1d",)


def model_spatial_dims(name: str) -> int:
    """1 for the sequence models of :data:`SEQUENCE_MODELS`, 2 for every other (image) model."""
    return 1 if name.strip() in SEQUENCE_MODELS else 2


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
