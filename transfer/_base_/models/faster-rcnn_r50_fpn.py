# Faster R-CNN with FPN on a fastload-pre-trained ResNet-50: MMDetection 3.3's configs/_base_/models/
# faster-rcnn_r50_fpn.py, setting for setting, except where a comment says otherwise:
# - backbone: mmdet's ResNet as `FastloadResNet` (fastload/mmdet/resnet.py: mmdet's ResNet, plus fastload's
#   BlurPool when the checkpoint was pre-trained with it), loaded from a fastload checkpoint through
#   init_cfg=dict(type='FastloadPretrained') in place of init_cfg=dict(type='Pretrained',
#   checkpoint='torchvision://resnet50'): the same torchvision key names, loaded strictly;
# - RoIAlign: torchvision's kernel (TorchvisionRoIExtractor; mmcv's, as setup.sh builds it, has no CUDA kernel),
#   with mmcv's defaults made explicit (aligned=True, sampling_ratio 0 = adaptive);
# - no test-time augmentation (tta_model / tta_pipeline dropped: VOC is tested at one scale);
# - 20 classes (configs/pascal_voc/faster-rcnn_r50_fpn_1x_voc0712.py sets bbox_head num_classes=20).
# BatchNorm: as mmdet's detection configs have it, every BN layer uses its ImageNet statistics (norm_eval=True:
# the BN layers stay in eval mode; batches of 2 images are too small to estimate them) while its affine weight and
# bias are fine-tuned (norm_cfg requires_grad=True); frozen_stages=1 keeps the stem and layer1 (convs and BNs) fixed.
# The checkpoint's BN running statistics are loaded with its weights.
model = dict(
    type='FasterRCNN',
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        # ImageNet mean/std in RGB on 0..255 pixels: mmdet's values, and those of fastload's pre-training loader
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_size_divisor=32),
    backbone=dict(
        type='FastloadResNet',
        depth=50,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        frozen_stages=1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=True,
        style='pytorch',
        # BlurPool (train/resnet*.yaml pre-train with it, FFCV's use_blurpool 1) as the checkpoint records it;
        # blurpool=True/False would set it, checked against the checkpoint
        # filled from the top-level `checkpoint` ('random': torchvision's initialisation)
        init_cfg=dict(type='FastloadPretrained', checkpoint=None)),
    neck=dict(
        type='FPN',
        in_channels=[256, 512, 1024, 2048],
        out_channels=256,
        num_outs=5),
    rpn_head=dict(
        type='RPNHead',
        in_channels=256,
        feat_channels=256,
        anchor_generator=dict(
            type='AnchorGenerator',
            scales=[8],
            ratios=[0.5, 1.0, 2.0],
            strides=[4, 8, 16, 32, 64]),
        bbox_coder=dict(
            type='DeltaXYWHBBoxCoder',
            target_means=[.0, .0, .0, .0],
            target_stds=[1.0, 1.0, 1.0, 1.0]),
        loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0),
        loss_bbox=dict(type='L1Loss', loss_weight=1.0)),
    roi_head=dict(
        type='StandardRoIHead',
        bbox_roi_extractor=dict(
            type='TorchvisionRoIExtractor',
            roi_layer=dict(type='RoIAlign', output_size=7, sampling_ratio=0, aligned=True),
            out_channels=256,
            featmap_strides=[4, 8, 16, 32]),
        bbox_head=dict(
            type='Shared2FCBBoxHead',
            in_channels=256,
            fc_out_channels=1024,
            roi_feat_size=7,
            num_classes=20,
            bbox_coder=dict(
                type='DeltaXYWHBBoxCoder',
                target_means=[0., 0., 0., 0.],
                target_stds=[0.1, 0.1, 0.2, 0.2]),
            reg_class_agnostic=False,
            loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
            loss_bbox=dict(type='L1Loss', loss_weight=1.0))),
    train_cfg=dict(
        rpn=dict(
            assigner=dict(
                type='MaxIoUAssigner',
                pos_iou_thr=0.7,
                neg_iou_thr=0.3,
                min_pos_iou=0.3,
                match_low_quality=True,
                ignore_iof_thr=-1),
            sampler=dict(
                type='RandomSampler',
                num=256,
                pos_fraction=0.5,
                neg_pos_ub=-1,
                add_gt_as_proposals=False),
            allowed_border=-1,
            pos_weight=-1,
            debug=False),
        rpn_proposal=dict(
            nms_pre=2000,
            max_per_img=1000,
            nms=dict(type='nms', iou_threshold=0.7),
            min_bbox_size=0),
        rcnn=dict(
            assigner=dict(
                type='MaxIoUAssigner',
                pos_iou_thr=0.5,
                neg_iou_thr=0.5,
                min_pos_iou=0.5,
                match_low_quality=False,
                ignore_iof_thr=-1),
            sampler=dict(
                type='RandomSampler',
                num=512,
                pos_fraction=0.25,
                neg_pos_ub=-1,
                add_gt_as_proposals=True),
            pos_weight=-1,
            debug=False)),
    test_cfg=dict(
        rpn=dict(
            nms_pre=1000,
            max_per_img=1000,
            nms=dict(type='nms', iou_threshold=0.7),
            min_bbox_size=0),
        rcnn=dict(
            score_thr=0.05,
            nms=dict(type='nms', iou_threshold=0.5),
            max_per_img=100)))
