# PASCAL-ACT-CLS (Huh et al. 2016): R*CNN (Gkioxari et al. 2015) on a fastload-pre-trained BVLC AlexNet, as R*CNN's
# release trains it (github.com/gkioxari/RstarCNN, lib/fast_rcnn/config.py, lib/roi_data_layer/minibatch.py):
# 2 images per update, up to 15 primary regions per image (person boxes and candidates with IoU >= 0.5 to a
# person, labelled with that person's action), 10 secondary regions per primary region (IoU 0.2-0.75 with it,
# drawn with replacement when fewer), an 11-way softmax (10 actions + other) plus an auxiliary class-specific box
# regressor; at test, each person scored by the softmax probability with all its secondary regions. Region
# candidates: a fixed multi-scale grid plus context boxes (fastload/mmdet/action.py) in place of selective search;
# with them an image has fewer than 15 candidates at IoU >= 0.5 (median 4 on synthetic data: docs/protocol.md).
# VOC 2012 Action train -> val, mean devkit AP over the 10 actions. Schedule as for detection: 70k updates, lr 0.001
# (/10 at 40k). Settings and sources: docs/protocol.md.
_base_ = [
    '_base_/datasets/voc12_action.py',
    '_base_/schedules/sgd_70k.py',
    '_base_/default_runtime.py',
]
# the result `fastload transfer` reports for this config
primary_metric = 'voc_action/mAP'
arch = 'alexnet_caffe'
model = dict(
    type='RStarCNN',
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_size_divisor=16),
    # conv1 frozen, Fast R-CNN's rule for small nets (R*CNN's VGG16 prototxt freezes conv1_1..conv2_2)
    backbone=dict(type='FastloadAlexNet', arch=arch, checkpoint=None, frozen_stages=1),
    roi_extractor=dict(
        type='TorchvisionRoIExtractor',
        roi_layer=dict(type='RoIPool', output_size=6),
        out_channels=256,
        featmap_strides=[16]),
    arch=arch,
    checkpoint=None,
    num_classes=11,             # the 10 actions + 'other' (lib/datasets/pascal_voc.py)
    fg_iou=0.5,                 # cfg.TRAIN.FG_THRESH
    primary_per_image=15,       # cfg.TRAIN.BATCH_SIZE 30 / IMS_PER_BATCH 2, FG_FRACTION 1
    iou_range=(0.2, 0.75),      # cfg.TRAIN/TEST.IOU_LB, IOU_UB
    num_secondary_train=10,     # cfg.TRAIN.CONTEXT_NUM_ROIS
    max_secondary_test=None,    # test.py: every candidate in the band
    bbox_stds=(0.1, 0.1, 0.2, 0.2),
    loss_bbox_weight=1.0,       # train.prototxt loss_bbox loss_weight 1
    dropout=0.5)
