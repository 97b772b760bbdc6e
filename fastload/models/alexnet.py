"""AlexNet, as the paper trained it (BVLC Caffe) and as torchvision ships it; checkpoints that load anywhere.

`alexnet_caffe` is the BVLC reference AlexNet (models/bvlc_alexnet/train_val.prototxt), layer for layer:

    name    module                                   output at 227x227
    conv1   Conv2d(3, 96, 11, stride 4)     + ReLU   96 x 55 x 55
    norm1   LocalResponseNorm(5, 1e-4, 0.75, k=1)
    pool1   MaxPool2d(3, 2)                          96 x 27 x 27
    conv2   Conv2d(96, 256, 5, pad 2, groups 2) + ReLU
    norm2   LocalResponseNorm(5, 1e-4, 0.75, k=1)
    pool2   MaxPool2d(3, 2)                          256 x 13 x 13
    conv3   Conv2d(256, 384, 3, pad 1)           + ReLU
    conv4   Conv2d(384, 384, 3, pad 1, groups 2) + ReLU
    conv5   Conv2d(384, 256, 3, pad 1, groups 2) + ReLU
    pool5   MaxPool2d(3, 2)                          256 x 6 x 6 (= 9216)
    fc6     Linear(9216, 4096) + ReLU + Dropout(0.5) (drop6)
    fc7     Linear(4096, 4096) + ReLU + Dropout(0.5) (drop7)
    fc8     Linear(4096, num_classes)

These names are stable: state-dict keys are `conv1.weight` ... `fc8.bias`, which the transfer configs load
(conv1..conv5, fc6, fc7). With 1000 outputs it has 60,965,224 parameters, as Caffe reports. Caffe's order is
conv -> ReLU -> LRN -> pool for conv1 and conv2 (CaffeNet swaps pool and LRN; this is AlexNet).
PyTorch's LocalResponseNorm divides alpha by the window size, as Caffe's ACROSS_CHANNELS LRN does.

Inputs other than ~227 pixels (tests at 64, progressive resizing at 160-192) work: when conv5's output is not
the 13x13 that max-pooling 3/2 turns into 6x6, pool5 becomes an adaptive max-pool to 6x6, so the parameters
(and fc6's 9216 inputs) stay the same. At 13x13 the adaptive pool and MaxPool2d(3, 2) pick the same windows.

`alexnet_tv` is torchvision's AlexNet (64-192-384-256-256 filters, no LRN, adaptive avg-pool), built by
torchvision itself so its state dict loads into `torchvision.models.alexnet`.
"""
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UsageError

# feature layers `extract_features` can stop at, in network order
CAFFE_LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5", "pool5", "fc6", "fc7", "fc8")


class AlexNetCaffe(nn.Module):
    """BVLC AlexNet; see the module docstring for the layer table. `num_classes` sizes fc8."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 96, 11, stride=4)
        self.relu1 = nn.ReLU(inplace=True)
        self.norm1 = nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)
        self.pool1 = nn.MaxPool2d(3, 2)
        self.conv2 = nn.Conv2d(96, 256, 5, padding=2, groups=2)
        self.relu2 = nn.ReLU(inplace=True)
        self.norm2 = nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)
        self.pool2 = nn.MaxPool2d(3, 2)
        self.conv3 = nn.Conv2d(256, 384, 3, padding=1)
        self.relu3 = nn.ReLU(inplace=True)
        self.conv4 = nn.Conv2d(384, 384, 3, padding=1, groups=2)
        self.relu4 = nn.ReLU(inplace=True)
        self.conv5 = nn.Conv2d(384, 256, 3, padding=1, groups=2)
        self.relu5 = nn.ReLU(inplace=True)
        self.pool5 = nn.MaxPool2d(3, 2)
        self.fc6 = nn.Linear(256 * 6 * 6, 4096)
        self.relu6 = nn.ReLU(inplace=True)
        self.drop6 = nn.Dropout(dropout)
        self.fc7 = nn.Linear(4096, 4096)
        self.relu7 = nn.ReLU(inplace=True)
        self.drop7 = nn.Dropout(dropout)
        self.fc8 = nn.Linear(4096, num_classes)

    def _pool5(self, x):
        if x.shape[-2:] == (13, 13):
            return self.pool5(x)
        return F.adaptive_max_pool2d(x, 6)  # other input sizes: keep fc6's 9216 inputs

    def features(self, x, upto: str = "fc7"):
        """Activations of layer `upto` (after its ReLU; pool5 and fc layers flattened), in eval-mode order."""
        if upto not in CAFFE_LAYERS:
            raise UsageError(f"unknown layer '{upto}': choose one of {', '.join(CAFFE_LAYERS)}")
        x = self.pool1(self.norm1(self.relu1(self.conv1(x))))
        if upto == "conv1":
            return x
        x = self.pool2(self.norm2(self.relu2(self.conv2(x))))
        if upto == "conv2":
            return x
        for name in ("conv3", "conv4", "conv5"):
            x = getattr(self, "relu" + name[-1])(getattr(self, name)(x))
            if upto == name:
                return x
        x = torch.flatten(self._pool5(x), 1)
        if upto == "pool5":
            return x
        x = self.drop6(self.relu6(self.fc6(x)))
        if upto == "fc6":
            return x
        x = self.drop7(self.relu7(self.fc7(x)))
        if upto == "fc7":
            return x
        return self.fc8(x)

    def forward(self, x):
        return self.features(x, upto="fc8")


def init_caffe_(model: AlexNetCaffe) -> None:
    """BVLC's initialisation: Gaussian weights (std 0.01; 0.005 for fc6/fc7); biases 0, or 0.1 for conv2, conv4, conv5,
    fc6, fc7 (so their ReLUs start active). It learns slowly for the first epochs; `kaiming` starts faster."""
    for name in ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"):
        layer = getattr(model, name)
        nn.init.normal_(layer.weight, 0.0, 0.005 if name in ("fc6", "fc7") else 0.01)
        nn.init.constant_(layer.bias, 0.1 if name in ("conv2", "conv4", "conv5", "fc6", "fc7") else 0.0)


def init_kaiming_(model: nn.Module) -> None:
    """He initialisation for every conv/linear (ReLU gain), zero biases; the last layer gets std 0.01."""
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    for m in layers:
        nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        nn.init.zeros_(m.bias)
    nn.init.normal_(layers[-1].weight, 0.0, 0.01)


def build_alexnet(arch: str, num_classes: int, init: str, dropout: float) -> nn.Module:
    """'alexnet_caffe' (BVLC) or 'alexnet_tv' (torchvision's own class) with `num_classes` outputs, initialised
    with `init` (settings already checked by fastload.models.build)."""
    if arch == "alexnet_caffe":
        model = AlexNetCaffe(int(num_classes), dropout=dropout)
    else:
        from torchvision.models import alexnet
        model = alexnet(weights=None, num_classes=int(num_classes), dropout=dropout)
    if init == "caffe":
        init_caffe_(model)
    elif init == "kaiming":
        init_kaiming_(model)
    return model


def extract_features(model: nn.Module, x, upto: str = "fc7"):
    """Layer `upto` of either architecture: conv1..conv5, pool5, fc6, fc7, fc8 (post-ReLU, flattened after pool5).

    For alexnet_tv the conv layers are torchvision's features[0, 3, 6, 8, 10] (conv1/conv2 after their max-pools, as
    in alexnet_caffe) and fc6/fc7 are classifier[1]/[4].
    """
    if isinstance(model, AlexNetCaffe):
        return model.features(x, upto)
    if upto not in CAFFE_LAYERS:
        raise UsageError(f"unknown layer '{upto}': choose one of {', '.join(CAFFE_LAYERS)}")
    # index of the last torchvision module belonging to each named layer
    stops = {"conv1": 2, "conv2": 5, "conv3": 7, "conv4": 9, "conv5": 11}
    if upto in stops:
        return model.features[:stops[upto] + 1](x)
    x = torch.flatten(model.avgpool(model.features(x)), 1)
    if upto == "pool5":
        return x
    stop = {"fc6": 3, "fc7": 6, "fc8": 7}[upto]
    return model.classifier[:stop](x)
