"""Classification transfer data: one layout reader per dataset, each returning a `layout.Listing`.

LAYOUTS = {name: Layout}: one record per dataset; `fastload compile cls LAYOUT ROOT OUT` compiles any of them.
"""
from .aircraft import AIRCRAFT
from .birdsnap import BIRDSNAP
from .caltech101 import CALTECH101
from .cars import CARS
from .cifar import CIFAR10, CIFAR100
from .dtd import DTD
from .flowers102 import FLOWERS102
from .food101 import FOOD101
from .pets import PETS
from .voc07 import VOC07

LAYOUTS = {layout.name: layout for layout in (
    FOOD101, CIFAR10, CIFAR100, BIRDSNAP, CARS, AIRCRAFT, VOC07, DTD, PETS, CALTECH101, FLOWERS102)}
