"""Networks fastload pre-trains: the BVLC AlexNet the paper used and torchvision's AlexNet.

`fastload.models.archs` holds their names and input limits (no torch); `fastload.models.alexnet` builds them and
reads checkpoints. This package imports neither, so the recipe schema can read `archs` without loading torch.
"""
