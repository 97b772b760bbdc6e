"""Pre-training recipes: every setting declared once (type, default, help, allowed values), read from flat YAML
files in train/ and the command line, and checked before anything is trained. No torch here: the settings build
`fastload pretrain`'s flags, and `fastload --help` must not wait for torch. The trainer is fastload.pretrain.

A recipe is one of RECIPES (train/NAME.yaml: AlexNet's `paper`, `fast`, `smoke`; ResNets after FFCV's ImageNet
recipes `resnet18_16`, `resnet18_88`, `resnet50_16`, `resnet50_88`, and `smoke_resnet18`) or a path to a .yaml
file; every key is one of SETTINGS (unknown keys are an error) and every setting can be overridden (`--lr 0.02` or `--set lr=0.02`).

Words: `recipe_name` is what `--recipe` and a plan's `recipe` hold (a name in RECIPES or a .yaml path); `cfg` is the
resolved settings dict (defaults, then the file, then the overrides) the trainer reads. The key "recipe" of a
pre-training checkpoint holds that dict (a file format, so it keeps its name); a manifest's "recipe"
(fastload.manifest) is how its images were selected, unrelated to these.
"""
import math
from dataclasses import dataclass
from pathlib import Path

import yaml

from .errors import UsageError
from .files import yaml_error_text, yaml_error_where
from .models.networks import ARCHS, INITS, NETWORKS, settings_problem
from .resources import TRAIN_RECIPES_DIR


@dataclass(frozen=True)
class Setting:
    """One recipe key. `at_least` / `above` / `below` bound a number (inclusive, exclusive, exclusive)."""
    name: str
    type: type
    default: object
    help: str
    choices: tuple = None
    at_least: float = None
    above: float = None
    below: float = None

    def allowed(self) -> str:
        """The allowed values in words, for help texts and error messages ('' when any value of the type is)."""
        if self.choices:
            return "one of " + ", ".join(self.choices)
        bounds = [f"{sign} {bound:g}" for sign, bound in ((">=", self.at_least), (">", self.above), ("<", self.below))
                  if bound is not None]
        return " and ".join(bounds)


S = Setting
# Every recipe key, declared once with its allowed values. Units are in the help text.
SETTINGS = [
    S("arch", str, "alexnet_caffe", "network", choices=ARCHS),
    S("init", str, "caffe", "weight init: BVLC Gaussians, He, or PyTorch defaults (torchvision's He init for "
      "the ResNets, their only one)", choices=INITS),
    S("dropout", float, 0.5, "dropout probability after fc6 and fc7 (AlexNet; the ResNets need 0)", at_least=0,
      below=1),
    S("blurpool", bool, False, "ResNets: blur the input of every strided conv with >= 16 input channels (FFCV's "
      "use_blurpool; state-dict keys stay torchvision's)"),
    S("epochs", int, 90, "training length in epochs of the manifest (0: save and evaluate the seeded initial "
      "weights, a random-init control)", at_least=0),
    S("batch_size", int, 256, "global batch (images per step over all processes; split evenly)", at_least=1),
    S("lr", float, 0.01, "peak learning rate for the global batch", above=0),
    S("lr_schedule", str, "step", "'step': x lr_gamma every lr_step_epochs; 'linear': to 0 at the end",
      choices=("step", "linear")),
    S("lr_step_epochs", float, 20.0, "step schedule: epochs between decays", above=0),
    S("lr_gamma", float, 0.1, "step schedule: decay factor", above=0),
    S("warmup_epochs", float, 0.0, "linear warm-up from lr*warmup_start_factor to lr over this many epochs",
      at_least=0),
    S("warmup_start_factor", float, 0.1, "first warm-up learning rate as a fraction of lr", at_least=0),
    # momentum 1 never forgets a gradient (the step grows without bound): refused with the negative values
    S("momentum", float, 0.9, "SGD momentum", at_least=0, below=1),
    S("nesterov", bool, False, "Nesterov momentum"),
    S("weight_decay", float, 5e-4, "L2 weight decay on weights", at_least=0),
    S("bias_decay", bool, False, "also decay biases (Caffe's AlexNet does not: decay_mult 0)"),
    S("norm_decay", bool, False, "also decay BatchNorm scales and shifts (FFCV's ResNet recipes do not: bn_wd 0)"),
    S("bias_lr_mult", float, 2.0, "learning-rate multiplier for biases (Caffe's AlexNet: 2)", at_least=0),
    S("label_smoothing", float, 0.0, "cross-entropy label smoothing", at_least=0, below=1),
    S("min_res", int, 227, "train crop size at the start of progressive resizing (pixels)", at_least=1),
    S("max_res", int, 227, "train crop size at the end of progressive resizing (pixels)", at_least=1),
    S("start_ramp", float, 0.0, "epoch where the resolution starts growing from min_res", at_least=0),
    S("end_ramp", float, 0.0, "epoch where it reaches max_res", at_least=0),
    S("res_step", int, 32, "resolutions between min_res and max_res are rounded down to multiples of this",
      at_least=1),
    S("val_res", int, 227, "validation center-crop size (pixels)", at_least=1),
    S("val_flip", bool, False, "validate on the mean logits of each image and its mirror image (FFCV's lr_tta)"),
    S("augment", str, "cpu", "train crops: 'cpu' = the loader's random-resized crop + flip (any beton); "
      "'device' = a beton stored raw at one size is copied as bytes, cropped/flipped/normalised on the device",
      choices=("cpu", "device")),
    S("crop", str, "rrc", "augment 'cpu' crops: 'rrc' = random-resized crop (scale 0.08-1) + flip, val centre "
      "224/256; 'caffe' = BVLC's data layer: image resized to 256x256 (aspect ignored), random 227 window + "
      "mirror, val centre 227 (sides scale with the resolution)", choices=("rrc", "caffe")),
    S("amp", str, "none", "mixed precision on CUDA (the CPU always runs float32)", choices=("none", "bf16", "fp16")),
    S("channels_last", bool, False, "NHWC memory format for the model and its inputs"),
    S("compile", bool, False, "torch.compile the model"),
    S("num_workers", int, 8, "loader threads per process", at_least=1),
    S("seed", int, 0, "seed of weights, data order (epoch e uses seed + e) and augmentation (per batch)",
      at_least=0),
    S("eval_every", int, 1, "validate every N epochs (and always after the last)", at_least=1),
    S("checkpoint_minutes", float, 30.0, "also checkpoint inside an epoch every N minutes (0: only per epoch)",
      at_least=0),
    S("keep_every", int, 0, "keep OUT/checkpoint_epochN.pt every N epochs (0: only last.pt)", at_least=0),
    S("log_every", int, 50, "steps between metrics.jsonl / TensorBoard train entries", at_least=1),
    S("device", str, "auto", "'auto': CUDA when available, else CPU", choices=("auto", "cpu", "cuda")),
]
del S
SETTINGS_BY_NAME = {s.name: s for s in SETTINGS}
# settings that may change between a run and its --resume without changing what is trained
RESUMABLE_CHANGES = {"num_workers", "checkpoint_minutes", "log_every", "device", "compile", "keep_every"}
RECIPES = ("paper", "fast", "smoke", "resnet18_16", "resnet18_88", "resnet50_16", "resnet50_88", "smoke_resnet18")


def parse_value(setting: Setting, value, source: str):
    """`value` (YAML scalar or command-line string) as the setting's type, checked against its allowed values."""
    try:
        if setting.type is bool:
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(value)
                value = value.lower() in ("true", "1", "yes")
            elif not isinstance(value, bool):
                raise ValueError(value)
        elif setting.type is int and isinstance(value, float) and not value.is_integer():
            raise ValueError(value)
        else:
            value = setting.type(value)
    except (TypeError, ValueError):
        raise UsageError(f"{source}: {setting.name}={value!r} is not a {setting.type.__name__}") from None
    if setting.choices and value not in setting.choices:
        raise UsageError(f"{source}: {setting.name}={value!r}; allowed: {', '.join(setting.choices)}")
    if setting.type in (int, float) and not in_range(setting, value):
        raise UsageError(f"{source}: {setting.name}={value!r}; allowed: {setting.allowed()}")
    return value


def in_range(setting: Setting, value) -> bool:
    if not math.isfinite(value):
        return False
    return ((setting.at_least is None or value >= setting.at_least)
            and (setting.above is None or value > setting.above)
            and (setting.below is None or value < setting.below))


def recipe_path(recipe_name: str) -> Path:
    """The file of a recipe name in train/ or of a path to a YAML file."""
    if recipe_name in RECIPES or not recipe_name.endswith((".yaml", ".yml")):
        path = TRAIN_RECIPES_DIR / f"{recipe_name}.yaml"
        if not path.is_file():
            raise UsageError(f"unknown recipe '{recipe_name}': use one of {', '.join(RECIPES)} or a .yaml path")
        return path
    path = Path(recipe_name)
    if not path.is_file():
        raise UsageError(f"recipe file {path} does not exist")
    return path


def load_recipe(recipe_name: str) -> dict:
    """The recipe's settings (a cfg), every key declared and typed; missing keys take their defaults."""
    path = recipe_path(recipe_name)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:  # one line: where, and what (a Python tag is refused here: nothing is executed)
        raise UsageError(f"recipe {path} is not valid YAML{yaml_error_where(e)}: {yaml_error_text(e)}") from None
    if not isinstance(raw, dict):
        raise UsageError(f"recipe {path} must be a flat mapping of settings")
    unknown = sorted(set(raw) - set(SETTINGS_BY_NAME))
    if unknown:
        raise UsageError(f"recipe {path}: unknown key(s) {', '.join(unknown)}; "
                         f"allowed: {', '.join(SETTINGS_BY_NAME)}")
    cfg = {s.name: s.default for s in SETTINGS}
    cfg.update({k: parse_value(SETTINGS_BY_NAME[k], v, str(path)) for k, v in raw.items()})
    return cfg


def apply_overrides(cfg: dict, pairs) -> dict:
    """cfg updated with (name, value) pairs from `--set name=value` or the per-setting flags."""
    cfg = dict(cfg)
    for name, value in pairs:
        name = name.replace("-", "_")
        if name not in SETTINGS_BY_NAME:
            raise UsageError(f"--set {name}: unknown setting; allowed: {', '.join(SETTINGS_BY_NAME)}")
        cfg[name] = parse_value(SETTINGS_BY_NAME[name], value, f"--{name.replace('_', '-')}")
    return cfg


def check_config(cfg: dict, world_size: int) -> None:
    """Reject combinations of settings that cannot train, before any data is read (single values are checked
    against their declaration when they are read)."""
    min_input = NETWORKS[cfg["arch"]].min_input
    for name in ("min_res", "max_res", "val_res"):
        if cfg[name] < min_input:
            raise UsageError(f"{name} must be >= {min_input} for {cfg['arch']} (its pools need it), got {cfg[name]}")
    if cfg["batch_size"] % world_size:
        raise UsageError(f"batch_size {cfg['batch_size']} is not divisible by the {world_size} processes")
    if cfg["min_res"] > cfg["max_res"] or cfg["start_ramp"] > cfg["end_ramp"]:
        raise UsageError("need min_res <= max_res and start_ramp <= end_ramp")
    if cfg["crop"] == "caffe" and cfg["augment"] == "device":
        raise UsageError("crop 'caffe' is done by the CPU loader: use augment 'cpu' with it (augment 'device' draws "
                         "random-resized crops on the device)")
    problem = settings_problem(cfg["arch"], cfg["init"], cfg["dropout"], cfg["blurpool"])
    if problem:
        raise UsageError(problem)

