# PASCAL-ACT-CLS on a fastload-pre-trained ResNet-50: R*CNN exactly as the AlexNet config
# rstarcnn_alexnet-caffe_70k_voc12-action.py trains it (same _base_ dataset, schedule and runtime: VOC 2012 Action
# train -> val, 2 images per update, 15 primary and 10 secondary regions each, 11-way softmax + auxiliary box
# regression, 70k updates, lr /10 at 40k), on the network split as He et al. 2016 split ResNets for Faster R-CNN,
# the "C4" recipe ("Deep Residual Learning for Image Recognition", appendix A; mmdet
# configs/_base_/models/faster-rcnn_r50-caffe-c4.py). What differs from the AlexNet config, and why:
# - per-region features: the trunk conv1..layer3 (conv4_x, stride 16 as AlexNet's conv5) runs on the whole image,
#   RoI pooling to 14x14, then layer4 (conv5_x, stride 2 -> 7x7) + global average pooling per region, shared by the
#   primary and secondary terms as fc6/fc7 are ("RoI pooling is performed before conv5_1 ... all layers of conv5_x
#   and up are adopted for each region, playing the roles of VGG-16's fc layers", He et al.). RoIPool, as He et al.
#   and the AlexNet configs; mmdet's C4 uses RoIAlign 14x14 (Mask R-CNN's later change).
# - BatchNorm frozen at its pre-trained statistics, affine fixed (He et al.: "the BN layers are fixed during
#   fine-tuning"; mmdet: norm_eval=True, requires_grad=False). For 'random' (from scratch) this leaves every BN the
#   identity: a from-scratch ResNet baseline wants trained normalisation (He et al. 2019, "Rethinking ImageNet
#   pre-training", GN/SyncBN), which this config does not give; set model.backbone.norm_eval=False to train BN.
# - frozen: the stem and layer1 (mmdet's C4 frozen_stages=1, Detectron's FREEZE_AT 2), where AlexNet freezes conv1
#   and R*CNN's VGG16 conv1_1..conv2_2.
# - no dropout: ResNets have none (their pre-training had none).
# - lr 0.0025, weight decay 1e-4, linear warm-up over the first 500 updates from 0.001x: mmdet's C4 recipe
#   (configs/_base_/schedules/schedule_1x.py: SGD lr 0.02 for 16 images per update, weight_decay 1e-4, LinearLR
#   start_factor 0.001 for 500 iterations; Detectron's configs/12_2017_baselines/e2e_faster_rcnn_R-50-C4_1x.yaml:
#   0.01 for 8 GPUs x 1 image, the same per image) scaled linearly (Goyal et al. 2017) to R*CNN's 2 images per
#   update: 0.02 x 2/16. The AlexNet configs keep the paper's lr 0.001 with decay 5e-4 (R*CNN's own release
#   trains VGG16 at base_lr 0.0001, /10 every 30k: models/VGG16_RstarCNN/solver.prototxt). Length and step stay
#   the paper's (70k, 40k). Biases 2x lr without decay as before: here only the new layers have biases.
# Input normalisation as the AlexNet configs: fastload pre-trains every network on ImageNet mean/std RGB.
# Every R*CNN setting (regions, losses, classes, data, schedule) is the AlexNet config's, inherited; only the
# network and what the list above names are set here.
_base_ = ['./rstarcnn_alexnet-caffe_70k_voc12-action.py']
arch = 'resnet50'
model = dict(
    # BlurPool as the checkpoint records it (train/resnet*.yaml pre-train with it); the layer4 head takes the
    # backbone's
    backbone=dict(_delete_=True, type='FastloadResNetC4', arch=arch, checkpoint=None, frozen_stages=1,
                  norm_eval=True),
    roi_extractor=dict(
        roi_layer=dict(output_size=14),
        out_channels=1024),     # layer3 of ResNet-50
    arch=arch,                  # the region head: layer4 + global average pool (fastload/mmdet/action.py)
    dropout=0.0)
optim_wrapper = dict(optimizer=dict(lr=0.0025, weight_decay=0.0001))
# the first entry is sgd_70k's step schedule, kept first so that `param_scheduler.0.*` overrides (README, tests)
# still reach it; mmengine multiplies the two
param_scheduler = [
    dict(type='MultiStepLR', begin=0, end=70000, by_epoch=False, milestones=[40000], gamma=0.1),
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
]
