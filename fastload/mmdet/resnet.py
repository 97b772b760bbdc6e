"""fastload ResNet checkpoints in MMDetection: the checkpoint reader, a BlurPool-capable ResNet backbone, and the
init type that loads a checkpoint into it strictly.

A fastload ResNet checkpoint (fastload/pretrain.py) holds {'model': torchvision ResNet state dict, 'arch':
'resnet18' | 'resnet50', 'recipe': {... 'blurpool': bool}, ...}. mmdet's `ResNet` with style='pytorch' has
torchvision's module names and strides (the stride on the 3x3 conv), so the state dict loads key for key; only
`fc.*` (the ImageNet classifier) has no place in a backbone.

The configs load it through init_cfg:

    backbone=dict(type='FastloadResNet', depth=50, blurpool=True, ...,
                  init_cfg=dict(type='FastloadPretrained', checkpoint=None))

the config's top-level `checkpoint` fills `checkpoint` (fastload.transfer.apply_checkpoint); 'random' starts
from torchvision's initialisation, the one pre-training starts from. mmengine's own `Pretrained` init would not do:
it reads checkpoint['state_dict'] (a fastload checkpoint has 'model') and only warns about missing keys, so it would
silently load nothing. `FastloadPretrained` refuses, with a FastloadError naming the checkpoint, a non-ResNet or
other-depth checkpoint, any key of the module that the checkpoint lacks, any shape mismatch, and a BlurPool setting
other than the checkpoint's.

BlurPool (fastload.models.resnet): the shipped ResNet recipes pre-train with it (train/resnet*.yaml `blurpool:
true`). The blur is not in the state dict, so the network must be built with it: `FastloadResNet(blurpool=True)`
puts fastload's BlurPoolConv2d where torchvision's ResNet gets it (every strided conv with >= 16 input channels).
It has to happen when the module is built, before the optimizer collects its parameters: init_weights runs after.
"""
from mmdet.models.backbones import ResNet
from mmdet.registry import MODELS
from mmengine.logging import print_log
from mmengine.registry import WEIGHT_INITIALIZERS
from torch import nn

from ..errors import FastloadError, UsageError
from ..models.checkpoint import (blurpool_to_build, checkpoint_blurpool, checkpoint_meta, checkpoint_network,
                                 load_checkpoint)
from ..models.networks import archs_of
from ..models.resnet import BlurPoolConv2d, apply_blurpool, build_resnet
from ..transfer import RANDOM_INIT
from .backbone import _require_checkpoint, _strip_wrapper_prefixes

# the checkpoint keys a backbone has no place for: torchvision's ImageNet classifier
CLASSIFIER_PREFIX = "fc."


def resnet_state_dict(path, arch=None):
    """(state dict in torchvision / mmdet ResNet key names, meta) of the fastload ResNet checkpoint `path`.

    meta holds every other key of the checkpoint (arch, num_classes, recipe, label_wnids, ...) except the optimizer
    and scaler state. A checkpoint of another network, or of another ResNet than `arch` (when given), is a
    FastloadError naming the file and the configs to use. DDP's 'module.' and torch.compile's '_orig_mod.' key
    prefixes are removed.
    """
    ckpt = load_checkpoint(path)
    held = checkpoint_network(ckpt, path)
    if held.family != "resnet":
        raise FastloadError(
            f"checkpoint {path} holds an '{held.name}' model, not a ResNet ({', '.join(archs_of('resnet'))}): use "
            f"the {held.name} transfer configs ({held.transfer_configs()})")
    if arch is not None and held.name != arch:
        raise FastloadError(
            f"checkpoint {path} holds a '{held.name}' model but the config builds '{arch}': use the {held.name} "
            f"transfer configs ({held.transfer_configs()})")
    return _strip_wrapper_prefixes(ckpt["model"]), checkpoint_meta(ckpt)


def blurpool_convs(module: nn.Module) -> dict:
    """{name: blurred?} for every conv that fastload's BlurPool rule covers (stride > 1, >= 16 input channels)."""
    return {name: isinstance(m, BlurPoolConv2d) for name, m in module.named_modules()
            if isinstance(m, nn.Conv2d) and max(m.stride) > 1 and m.in_channels >= 16}


def check_blurpool(module: nn.Module, blurpool: bool, checkpoint, owner: str) -> None:
    """The module blurs where a network pre-trained with `blurpool` did, or a FastloadError says what to set."""
    convs = blurpool_convs(module)
    if all(blurred == blurpool for blurred in convs.values()):
        return
    built = "with" if any(convs.values()) else "without"
    raise FastloadError(
        f"checkpoint {checkpoint} was pre-trained {'with' if blurpool else 'without'} BlurPool (its recipe's "
        f"blurpool: {blurpool}) but the {owner} is built {built} it: leave blurpool unset to follow the checkpoint, "
        f"or build it with blurpool={blurpool} "
        f"(--cfg-options model.backbone.blurpool={blurpool} for the detection and R*CNN configs, "
        f"model.blurpool={blurpool} for SUN-CLS)")


def load_resnet_weights(module: nn.Module, checkpoint: str, arch: str, owner: str) -> list:
    """Copy the checkpoint's tensors into every entry of `module.state_dict()` (weights, BatchNorm statistics);
    returns the checkpoint keys left unused (the classifier `fc.*`, stages the module does not have).

    'random' copies a freshly initialised torchvision `arch` instead (the start of a pre-training run). Every
    problem is a FastloadError naming the checkpoint and all offending keys; nothing is copied then.
    """
    if arch not in archs_of("resnet"):
        raise UsageError(f"{owner}: '{arch}' is not a fastload ResNet ({', '.join(archs_of('resnet'))})")
    if checkpoint == RANDOM_INIT:
        state = build_resnet(arch, num_classes=1000).state_dict()
    else:
        state, meta = resnet_state_dict(checkpoint, arch)
        check_blurpool(module, checkpoint_blurpool(meta), checkpoint, owner)
    wanted = module.state_dict()
    missing = [k for k in wanted if k not in state]
    mismatched = [f"{k} {tuple(state[k].shape)} != expected {tuple(v.shape)}"
                  for k, v in wanted.items() if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing or mismatched:
        problems = ([f"missing keys: {', '.join(missing)}"] if missing else []) + \
                   ([f"shape mismatches: {'; '.join(mismatched)}"] if mismatched else [])
        raise FastloadError(f"cannot initialise the {owner} ({arch}) from {checkpoint}: " + " | ".join(problems))
    module.load_state_dict({k: state[k] for k in wanted}, strict=True)
    return sorted(k for k in state if k not in wanted)


def pretrained_checkpoint(init_cfg):
    """The checkpoint a FastloadPretrained entry of `init_cfg` (a dict or a list of them) loads, else None."""
    entries = init_cfg if isinstance(init_cfg, (list, tuple)) else [init_cfg]
    return next((entry.get("checkpoint") for entry in entries
                 if isinstance(entry, dict) and entry.get("type") == "FastloadPretrained"), None)


@MODELS.register_module()
class FastloadResNet(ResNet):
    """mmdet's ResNet, optionally with fastload's BlurPool (the convolutions a fastload ResNet pre-trained with
    `blurpool: true` blurs). Load a fastload checkpoint with init_cfg=dict(type='FastloadPretrained', checkpoint=...).

    Args:
        blurpool (bool | None): blur the input of every strided conv with >= 16 input channels, as fastload's
            pre-training does with BlurPool. None: as the checkpoint of init_cfg (FastloadPretrained) records it;
            True/False: as set, which must match the checkpoint (FastloadPretrained checks). Defaults to None.
        Other arguments as mmdet's ResNet; style must be 'pytorch' (torchvision's ResNets: the stride is on the
        3x3 conv).
    """

    def __init__(self, depth, blurpool=None, style: str = "pytorch", **kwargs):
        if style != "pytorch":
            raise UsageError(f"FastloadResNet: style '{style}': fastload's ResNets are torchvision's, style "
                             "'pytorch' (the stride on the 3x3 conv)")
        super().__init__(depth, style=style, **kwargs)
        self.blurpool = blurpool_to_build(blurpool, pretrained_checkpoint(kwargs.get("init_cfg")))
        if self.blurpool:
            apply_blurpool(self)
            self._freeze_stages()  # a blurred copy of a frozen conv starts with requires_grad=True


@WEIGHT_INITIALIZERS.register_module(name="FastloadPretrained")
class FastloadPretrainedInit:
    """init_cfg=dict(type='FastloadPretrained', checkpoint=PATH | 'random' | None, arch=None): load a fastload
    ResNet checkpoint into the module strictly (load_resnet_weights). checkpoint None (the shipped configs' value,
    filled by `fastload transfer --checkpoint`) is an error; arch None means 'resnet<module.depth>'.
    """

    def __init__(self, checkpoint=None, arch=None):
        self.checkpoint = checkpoint
        self.arch = arch

    def module_arch(self, module) -> str:
        if self.arch is not None:
            return self.arch
        depth = getattr(module, "depth", None)
        if depth is None:
            raise UsageError(f"FastloadPretrained: {type(module).__name__} has no `depth`: set arch= in its "
                             f"init_cfg ({', '.join(archs_of('resnet'))})")
        return f"resnet{depth}"

    def __call__(self, module) -> None:
        owner = f"{type(module).__name__} backbone"
        checkpoint = _require_checkpoint(self.checkpoint, owner)
        unused = load_resnet_weights(module, checkpoint or RANDOM_INIT, self.module_arch(module), owner)
        print_log(f"{owner}: loaded {checkpoint or 'a random torchvision initialisation'}"
                  + (f" (not used: {', '.join(unused)})" if unused else ""), logger="current")
        if hasattr(module, "_params_init_info"):
            from mmengine.model.weight_init import update_init_info
            update_init_info(module, init_info=self._get_init_info())

    def _get_init_info(self) -> str:
        return f"{self.__class__.__name__}: load from {self.checkpoint}"

