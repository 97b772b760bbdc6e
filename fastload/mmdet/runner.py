"""The Runner of every shipped transfer config (`runner_type = 'FastloadRunner'`, transfer/_base_/default_runtime.py),
so that MMDetection's own tools/train.py and tools/test.py run them as `fastload transfer` does.

mmengine resolves a config's variables (`data_root`, `img_scale`) while reading the file, so a `--cfg-options
data_root=...` on mmdet's command line changes only the top-level key, never the dataloaders that used it. mmdet's
tools build a config with `runner_type` through RUNNERS, i.e. `FastloadRunner.from_cfg(cfg)`, and that is where the
top-level keys are copied down (fastload.transfer.prepare_config), at build time, after every override:
- `data_root` to every dataloader's dataset (checked: a folder without what its dataset type reads is one error
  naming the folder, before any image is read);
- `img_scale` to every Resize;
- `checkpoint` (the fastload pre-training checkpoint, RUN/last.pt) to every `checkpoint` key of the model;
- every `type` in the config must name a registered class or function (fastload.transfer.check_types).
`fastload transfer` calls the same function, so both paths build the same run.

Checkpoints a run loads as a whole (tools/test.py's CHECKPOINT, `load_from`) are loaded strictly: a trained model
that lacks a key of the config's model is an error, not a silently random layer. With such a `load_from` (and no
resume), a config whose `checkpoint` is unset builds its model without pre-trained weights, since every weight comes
from `load_from`.
"""
import copy

from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from ..errors import FastloadError
from ..transfer import prepare_config


@RUNNERS.register_module()
class FastloadRunner(Runner):
    """mmengine's Runner, with the config's top-level variables copied down and checked before anything is built."""

    @classmethod
    def from_cfg(cls, cfg) -> "FastloadRunner":
        """Build the runner from `cfg` (a copy of it: the caller's config is left as it was)."""
        cfg = copy.deepcopy(cfg)
        prepare_config(cfg, getattr(cfg, "filename", None) or "the config")
        return super().from_cfg(cfg)

    def load_checkpoint(self, filename: str, map_location="cpu", strict: bool = True,
                        revise_keys: list = [("^module.", "")]):  # noqa: B006  (mmengine's own default)
        """mmengine's load_checkpoint, strict by default (mmengine's default only warns about missing keys); a
        checkpoint that does not fit the model is a FastloadError naming it and the keys."""
        try:
            return super().load_checkpoint(filename, map_location=map_location, strict=strict,
                                           revise_keys=revise_keys)
        except RuntimeError as e:
            if "state_dict" not in str(e):
                raise
            keys = " ".join(line.strip() for line in str(e).splitlines() if line.strip())
            raise FastloadError(f"{filename} does not fit the config's model: {keys}") from None
