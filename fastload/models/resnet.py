"""ResNet-18 / ResNet-50 as torchvision defines them, with FFCV's optional BlurPool.

`build_resnet` returns `torchvision.models.resnet18/50(num_classes=...)` itself (torchvision's own He init), so a
fastload checkpoint's `model` state dict loads into those classes with strict=True, and into mmdet's `ResNet`
backbone (same key names; its `fc` keys are the classifier mmdet drops).

BlurPool (FFCV's ffcv-imagenet `use_blurpool`, after Zhang 2019 "Making convolutional networks shift-invariant
again"): every convolution with stride > 1 and >= 16 input channels first blurs its input with the 3x3 binomial
filter [1 2 1]^T [1 2 1] / 16 (stride 1, zero padding 1, per channel). Here the blurring conv is a subclass of
nn.Conv2d whose filter is a non-persistent buffer, so the state dict (keys and shapes) is torchvision's; the blur
itself is not in the state dict: rebuild with blurpool=True (load_checkpoint_model does, from the recipe) to get
the trained network back. A plain torchvision ResNet (or mmdet's) loaded from a blurpool checkpoint runs the same
weights without the blur.

The analyses take a ResNet's features by torchvision graph node (fastload.analysis.features: 'flatten', the pooled
penultimate layer, just before fc).
"""
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from ..errors import UsageError
from .networks import archs_of

BLUR_KERNEL = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]) / 16.0


class BlurPoolConv2d(nn.Conv2d):
    """A Conv2d that low-pass filters its input first (FFCV's BlurPoolConv2d, without renaming the conv's keys)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.register_buffer("blur_filter", BLUR_KERNEL.repeat(self.in_channels, 1, 1, 1), persistent=False)

    def forward(self, x):
        blurred = F.conv2d(x, self.blur_filter.to(x.dtype), stride=1, padding=1, groups=self.in_channels)
        return super().forward(blurred)


def blurred_copy(conv: nn.Conv2d) -> BlurPoolConv2d:
    """`conv` with the same weights (so the seeded init is the one without blur), blurring its input."""
    new = BlurPoolConv2d(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                         padding=conv.padding, dilation=conv.dilation, groups=conv.groups,
                         bias=conv.bias is not None, padding_mode=conv.padding_mode)
    new.load_state_dict(conv.state_dict())
    return new.to(conv.weight.device, conv.weight.dtype)


def apply_blurpool(module: nn.Module) -> list:
    """Replace, in place, every strided conv with >= 16 input channels (FFCV's rule); returns their names."""
    names = []
    for parent_name, parent in list(module.named_modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Conv2d and max(child.stride) > 1 and child.in_channels >= 16:
                setattr(parent, name, blurred_copy(child))
                names.append(f"{parent_name}.{name}" if parent_name else name)
    return names


def build_resnet(arch: str, num_classes: int, blurpool: bool = False) -> nn.Module:
    """torchvision's `arch` ('resnet18' or 'resnet50') with `num_classes` outputs and its own initialisation."""
    if arch not in archs_of("resnet"):
        raise UsageError(f"unknown ResNet '{arch}': choose one of {', '.join(archs_of('resnet'))}")
    model = getattr(torchvision.models, arch)(weights=None, num_classes=int(num_classes))
    if blurpool:
        apply_blurpool(model)
    return model

