"""The networks fastload pre-trains, one record each, without torch: the recipe schema (fastload.recipe) offers them
as choices and `fastload --help` must not wait for torch.

Everything the rest of fastload knows about a network is read from its `Network` record: the report's name, the
smallest input, the analyses' feature layer, where its classifier sits, the settings it takes, the plan it can
replace AlexNet in (`fastload reproduce --arch`), its transfer configs and its pre-training rate estimate. Code that
genuinely differs between families (model definitions, mmdet pieces) dispatches on `family`:
fastload.models.build builds every network, fastload.models.checkpoint reads and writes their checkpoints.
"""
from dataclasses import dataclass, field

from ..errors import FastloadError

INITS = ("caffe", "kaiming", "default")
FAMILIES = ("alexnet", "resnet")
# 16 epochs of the ILSVRC-2012 train set (1,281,167 images): FFCV's ResNet recipes, the rate estimates below
FFCV_16_EPOCH_IMAGES = 16 * 1_281_167


@dataclass(frozen=True)
class PlanVariant:
    """A plan's study with this network in place of the AlexNet its recipes train: applied to the plan's own
    entries by fastload.plan.with_arch (no second copy of a plan)."""
    recipe: str         # the pre-training recipe (train/NAME.yaml) of every run
    gpus: int           # GPUs of each pre-training run: the setup the recipe's batch and lr come from
    configs: dict       # transfer config of the AlexNet plan -> this network's counterpart (both in transfer/)


@dataclass(frozen=True)
class Network:
    name: str               # the recipe's `arch`, the checkpoint's 'arch'
    label: str              # its name in the report
    family: str             # FAMILIES: which model code builds it and which mmdet pieces take it
    min_input: int          # smallest input side it accepts
    val_res: int            # the validation crop it was designed for (when a checkpoint's recipe names none)
    feature_layer: str      # the analyses' default feature layer (AlexNet layer name or torchvision graph node)
    classifier: str         # the classifier's module in the built network (the layer a new "fc8" replaces)
    classifier_name: str    # what the transfer configs call that layer (their lr multipliers' custom_keys)
    inits: tuple            # the `init` settings it takes (INITS)
    dropout: float          # its default dropout; 0: it has none, and refuses one
    blurpool: bool          # whether it takes BlurPool
    config_tag: str         # how the transfer configs' file names name it
    plan: PlanVariant = None            # None: it cannot stand in for AlexNet in a plan
    pretrain_estimate: dict = field(default=None, compare=False)  # images/s per GPU at `px`, and its source

    def transfer_configs(self) -> str:
        """The transfer config files for this network, as a glob for error messages."""
        if self.family == "resnet":
            return f"transfer/*_{self.config_tag}_*.py, transfer/{self.name}_*.py"
        return f"transfer/*{self.config_tag}*.py"


ALEXNET_FACTS = dict(family="alexnet", feature_layer="fc7", classifier_name="fc8", dropout=0.5, blurpool=False)
# torchvision's ResNets as defined: their own He init, no dropout; FFCV's optional BlurPool. They downsample by 32
# before their adaptive average pool: 32 pixels leave layer4 one 1x1 map (below it their stride-2 layers only see
# padding). Their feature layer is the penultimate, pooled features (graph node 'flatten', just before fc).
RESNET_FACTS = dict(family="resnet", min_input=32, val_res=224, feature_layer="flatten", classifier="fc",
                    classifier_name="fc", inits=("default",), dropout=0.0, blurpool=True)

# The ResNet plans' recipes are FFCV's 16-epoch ones (libffcv/ffcv-imagenet rn50_configs/rn50_16_epochs.yaml: 8 GPUs
# x 512; rn18_configs/rn18_16_epochs.yaml: 1 GPU x 1024); the transfer configs are the ResNet files in transfer/ (one
# per AlexNet config). Induction, coarse/fine and ImageNet-CLS need no entry: they read the network from the
# checkpoint and take its feature layer from here and its crop from the recipe's val_res.
# The ResNet rate estimates: FFCV's README table (libffcv/ffcv-imagenet, "Configurations": rn50_16_epochs 14.9
# minutes on 8 x A100, rn18_16_epochs 35.0 minutes on 1 x A100, 16 epochs of ImageNet-1k each, evaluation
# included) as images/s per GPU at 176 px, the side fastload.reproduce prices their 160 -> 192 px recipes at, so
# that the recipe as written is priced at FFCV's own time. A100s, not this project's H200; not measured here.
NETWORKS = {network.name: network for network in (
    # BVLC AlexNet (fastload.models.alexnet): 35 pixels -> conv5 1x1, which its max-pools need
    Network("alexnet_caffe", "AlexNet", min_input=35, val_res=227, classifier="fc8", inits=INITS,
            config_tag="alexnet-caffe", **ALEXNET_FACTS, pretrain_estimate={
                "images_per_s": 41_600, "px": 224,
                "source": "the H200 AlexNet train step alone (bf16, channels_last, batch 512): 41,600 img/s at 224 "
                          "px, 68,300 at 160 (a figure given to this project, not measured by it), scaled by pixels; "
                          "the loader and fp32 (the paper recipe) are not in it: a lower bound"}),
    # torchvision's AlexNet max-pools after conv5 too, so it needs conv5 at 3x3; BVLC's Gaussian init is not its
    Network("alexnet_tv", "AlexNet (torchvision)", min_input=63, val_res=224, classifier="classifier.6",
            inits=("kaiming", "default"), config_tag="alexnet-tv", **ALEXNET_FACTS),
    Network("resnet18", "ResNet-18", config_tag="r18", **RESNET_FACTS, plan=PlanVariant("resnet18_16", 1, {
        "faster-rcnn_alexnet-caffe_70k_voc07.py": "faster-rcnn_r18_fpn_1x_voc07.py",
        "rstarcnn_alexnet-caffe_70k_voc12-action.py": "rstarcnn_r18-c4_70k_voc12-action.py",
        "alexnet-caffe_50k_sun397.py": "resnet18_50k_sun397.py",
        "alexnet-caffe_50k_sun397-beton.py": "resnet18_50k_sun397-beton.py"}), pretrain_estimate={
            "images_per_s": FFCV_16_EPOCH_IMAGES / (35.0 * 60), "px": 176,
            "source": "FFCV's README (libffcv/ffcv-imagenet): ResNet-18, 16 epochs in 35.0 min on 1 A100 = "
                      f"{FFCV_16_EPOCH_IMAGES / (35.0 * 60):,.0f} img/s at its 160-192 px, scaled by pixels; an "
                      "estimate (an A100, not measured here)"}),
    Network("resnet50", "ResNet-50", config_tag="r50", **RESNET_FACTS, plan=PlanVariant("resnet50_16", 8, {
        "faster-rcnn_alexnet-caffe_70k_voc07.py": "faster-rcnn_r50_fpn_1x_voc07.py",
        "rstarcnn_alexnet-caffe_70k_voc12-action.py": "rstarcnn_r50-c4_70k_voc12-action.py",
        "alexnet-caffe_50k_sun397.py": "resnet50_50k_sun397.py",
        "alexnet-caffe_50k_sun397-beton.py": "resnet50_50k_sun397-beton.py"}), pretrain_estimate={
            "images_per_s": FFCV_16_EPOCH_IMAGES / (14.9 * 60 * 8), "px": 176,
            "source": "FFCV's README (libffcv/ffcv-imagenet): ResNet-50, 16 epochs in 14.9 min on 8 A100s = "
                      f"{FFCV_16_EPOCH_IMAGES / (14.9 * 60 * 8):,.0f} img/s per A100 at its 160-192 px, scaled by "
                      "pixels; an estimate (A100s, not measured here)"}),
)}
ARCHS = tuple(NETWORKS)


def archs_of(family: str) -> tuple:
    """The networks of one family, in table order."""
    return tuple(name for name, network in NETWORKS.items() if network.family == family)


def network(arch: str, error=FastloadError) -> Network:
    """The record of `arch`; an unknown name is an `error` listing the known ones."""
    if arch not in NETWORKS:
        raise error(f"unknown arch '{arch}': choose one of {', '.join(ARCHS)}")
    return NETWORKS[arch]


def settings_problem(arch: str, init: str, dropout: float, blurpool: bool):
    """Why these settings do not fit `arch` (one line), or None. Settings a network does not have are refused,
    not ignored: the ResNets are torchvision's as defined (its He init, no dropout); BlurPool is ResNets' only."""
    net = NETWORKS[arch]
    if init not in net.inits:
        if net.inits == ("default",):
            return f"{arch} uses torchvision's own initialisation: set init 'default', not '{init}'"
        takers = [name for name, other in NETWORKS.items() if init in other.inits]
        return (f"init '{init}' is defined for arch {', '.join(map(repr, takers))} only; use "
                f"{' or '.join(map(repr, net.inits))}")
    if dropout and not net.dropout:
        return f"{arch} has no dropout: set dropout 0, not {dropout}"
    if blurpool and not net.blurpool:
        return f"blurpool is defined for the ResNets ({', '.join(n for n, o in NETWORKS.items() if o.blurpool)}) " \
               f"only, not {arch}"
    return None
