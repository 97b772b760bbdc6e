"""Classification transfer datasets: one Layout record per dataset (fastload.transfer_data.layout), read by
`fastload compile cls LAYOUT ROOT OUT` and by the plan's compile_cls steps.

Adding a dataset is one module with its reader and one entry here.
"""
from .aircraft import AIRCRAFT
from .birdsnap import BIRDSNAP
from .caltech101 import CALTECH101
from .cars import CARS
from .cifar import CIFAR10, CIFAR100
from .dtd import DTD
from .flowers102 import FLOWERS102
from .food101 import FOOD101
from .layout import Layout, Listing, Sample
from .pets import PETS
from .sun397 import SUN397
from .voc07 import VOC07

LAYOUTS = {layout.name: layout for layout in (
    SUN397, FOOD101, CIFAR10, CIFAR100, BIRDSNAP, CARS, AIRCRAFT, VOC07, DTD, PETS, CALTECH101, FLOWERS102)}

__all__ = ["LAYOUTS", "Layout", "Listing", "Sample"]
