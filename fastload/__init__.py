"""fastload: compile ImageNet once, derive any pre-training set from WordNet, pre-train AlexNet fast,
and measure transfer (Huh, Agrawal, Efros 2016, "What makes ImageNet good for transfer learning?")."""

__version__ = "0.1.0"
