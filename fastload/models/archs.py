"""The networks' names and input limits, without torch: the recipe schema (fastload.recipe) offers them as choices
and `fastload --help` must not wait for torch. fastload.models.alexnet builds them (the ResNets through
fastload.models.resnet)."""

ALEXNETS = ("alexnet_caffe", "alexnet_tv")
RESNETS = ("resnet18", "resnet50")  # torchvision's definitions (fastload.models.resnet)
ARCHS = ALEXNETS + RESNETS
INITS = ("caffe", "kaiming", "default")
# smallest input side each network accepts (its max-pools need a 3x3 input): 35 -> conv5 1x1 for alexnet_caffe;
# torchvision's variant max-pools after conv5 too, so it needs conv5 at 3x3. The ResNets downsample by 32 before
# their adaptive average pool: 32 pixels leave layer4 one 1x1 map (below it their stride-2 layers only see padding)
MIN_INPUT = {"alexnet_caffe": 35, "alexnet_tv": 63, "resnet18": 32, "resnet50": 32}


def arch_settings_problem(arch: str, init: str, dropout: float, blurpool: bool):
    """Why these settings do not fit `arch` (one line), or None. Settings a network does not have are refused,
    not ignored: the ResNets are torchvision's as defined (its He init, no dropout); BlurPool is ResNets' only."""
    if arch in RESNETS:
        if init != "default":
            return f"{arch} uses torchvision's own initialisation: set init 'default', not '{init}'"
        if dropout:
            return f"{arch} has no dropout: set dropout 0, not {dropout}"
    elif blurpool:
        return f"blurpool is defined for the ResNets ({', '.join(RESNETS)}) only, not {arch}"
    return None
