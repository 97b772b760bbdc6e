"""Synthetic datasets in the standard layouts, all drawn by one renderer (`fastload.synth.render`).

- `write_imagenet` (fastload.synth.imagenet): ILSVRC-2012 layout, real wnids chosen as whole WordNet groups,
  appearance following the WordNet tree (shape <- big ancestor, colours <- small ancestor, texture <- class).
- `write_voc` (fastload.synth.voc): VOCdevkit/VOC2007 detection and VOC2012 action data.
- `write_sun` (fastload.synth.sun): SUN397 folders and partition files.
Each writes into a staging folder next to OUT and publishes it at the end in one rename (fastload.files.staged_folder,
publish_folder); OUT must not exist or be empty.
"""
from .imagenet import write_imagenet
from .sun import write_sun
from .voc import write_voc

__all__ = ["write_imagenet", "write_voc", "write_sun"]
