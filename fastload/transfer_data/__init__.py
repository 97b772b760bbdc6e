"""Classification transfer datasets: one Layout record per dataset (fastload.transfer_data.layout), read by
`fastload compile cls LAYOUT ROOT OUT` and by the plan's compile_cls steps.

Adding a dataset is one module with its reader and one entry here.
"""
from .layout import Layout, Listing, Sample
from .sun397 import SUN397

LAYOUTS = {layout.name: layout for layout in (SUN397,)}

__all__ = ["LAYOUTS", "Layout", "Listing", "Sample"]
