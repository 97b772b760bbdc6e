"""fastload imagenet-cls: freeze a label-set network below fc8, train a new fc8 on every class (paper Fig. 1, 2)."""
from ..analysis.imagenet_cls import configure, run  # noqa: F401  (arguments and run live beside the loop)
