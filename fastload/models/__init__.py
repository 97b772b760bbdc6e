"""Networks fastload pre-trains: the BVLC AlexNet the paper used, torchvision's AlexNet and ResNets.

`networks` holds one record per network (no torch); `build` builds any of them from its family's module
(`alexnet`, `resnet`); `checkpoint` reads checkpoints and the facts they record. This package imports none of
them, so the recipe schema can read `networks` without loading torch.
"""
