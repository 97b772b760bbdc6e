"""The one builder every part of fastload calls (pre-training, checkpoints, analyses, transfer): any network of
fastload.models.networks, its settings checked against its record, built by its family's own code."""
from torch import nn

from ..errors import UsageError
from .networks import INITS, network, settings_problem


def build_model(arch: str, num_classes: int, init: str = "default", dropout: float = None,
                blurpool: bool = False) -> nn.Module:
    """Network `arch` (fastload.models.networks.NETWORKS) with `num_classes` outputs.

    arch: 'alexnet_caffe' (BVLC) or 'alexnet_tv' (torchvision), fastload.models.alexnet, or torchvision's
    'resnet18' / 'resnet50' (fastload.models.resnet). init: 'caffe' (BVLC Gaussians, alexnet_caffe only), 'kaiming',
    or 'default' (PyTorch's layer defaults, what torchvision uses; for the ResNets torchvision's own He init, the
    only one they take). dropout: None = the network's own (AlexNet's fc6/fc7 0.5; the ResNets have none: None or
    0). blurpool: ResNets only.
    """
    net = network(arch, error=UsageError)
    if dropout is None:
        dropout = net.dropout
    if init not in INITS:
        raise UsageError(f"unknown init '{init}': choose one of {', '.join(INITS)}")
    if int(num_classes) < 1:
        raise UsageError(f"num_classes must be >= 1, got {num_classes}")
    problem = settings_problem(arch, init, dropout, blurpool)
    if problem:
        raise UsageError(problem)
    if net.family == "resnet":
        from .resnet import build_resnet  # torchvision's: imported only when a ResNet is built
        return build_resnet(arch, num_classes, blurpool=blurpool)
    from .alexnet import build_alexnet
    return build_alexnet(arch, num_classes, init=init, dropout=dropout)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
