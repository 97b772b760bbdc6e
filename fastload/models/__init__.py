"""Networks fastload pre-trains: the BVLC AlexNet the paper used and torchvision's AlexNet."""
from .alexnet import (ARCHS, AlexNetCaffe, build_model, count_parameters, extract_features, load_checkpoint,
                      load_checkpoint_model)

__all__ = ["ARCHS", "AlexNetCaffe", "build_model", "count_parameters", "extract_features", "load_checkpoint",
           "load_checkpoint_model"]
