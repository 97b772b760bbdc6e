"""Analyses of pre-trained networks (paper sec. 5.3 and 5.4, Fig. 4 to 6): nearest-neighbour induction accuracy,
coarse-versus-fine accuracy gaps, nearest-neighbour picture grids and ImageNet classification with a retrained fc8.

Modules: knn (exact chunked cosine search), features (fc7 extraction through the fastload loader), induction,
coarse_fine, pictures, imagenet_cls. Heavy imports (torch, ffcv) happen inside these modules, not here.
"""
