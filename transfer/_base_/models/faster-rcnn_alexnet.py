# Faster R-CNN on AlexNet conv5 (stride 16), as py-faster-rcnn's end-to-end models for the 5-conv-layer nets (ZF and
# VGG_CNN_M_1024, models/pascal_voc/*/faster_rcnn_end2end/train.prototxt; py-faster-rcnn has no AlexNet/CaffeNet
# end-to-end model): RPN on conv5 (3 scales x 3 ratios), RoI pooling of conv5 to 6x6 (in place of pool5), fc6/fc7 of
# the pre-trained network as the box head, new 21-way classifier (20 classes + background) and class-wise box
# regression. Every setting, with its source, is in docs/protocol.md.
# arch and checkpoint: the backbone and the box head must name the same ones (the config's top-level `checkpoint`,
# transfer/_base_/default_runtime.py, fills every `checkpoint` below when the run is built).
arch = 'alexnet_caffe'
model = dict(
    type='FasterRCNN',
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        # the pre-training loader's normalisation: RGB, ImageNet mean/std (on 0-255 pixels)
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_size_divisor=16),
    # ZF's end-to-end prototxt fine-tunes every conv layer (VGG_CNN_M_1024's freezes conv1: frozen_stages=1)
    backbone=dict(type='FastloadAlexNet', arch=arch, checkpoint=None, frozen_stages=0),
    rpn_head=dict(
        type='PyFasterRCNNRPNHead',
        in_channels=256,
        feat_channels=256,
        # lib/rpn/generate_anchors.py: base 16, ratios 0.5/1/2, scales 8/16/32, centred at 7.5 + 16k
        anchor_generator=dict(
            type='PyFasterRCNNAnchorGenerator', scales=[8, 16, 32], ratios=[0.5, 1.0, 2.0], strides=[16],
            center_offset=0.5),
        # lib/fast_rcnn/bbox_transform.py measures boxes in inclusive pixels (w = x2 - x1 + 1): mmdet's legacy coder
        bbox_coder=dict(
            type='LegacyDeltaXYWHBBoxCoder', target_means=[.0, .0, .0, .0], target_stds=[1.0, 1.0, 1.0, 1.0]),
        loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0),
        loss_bbox=dict(type='SmoothL1Loss', beta=1.0 / 9.0, loss_weight=1.0)),
    roi_head=dict(
        type='StandardRoIHead',
        bbox_roi_extractor=dict(
            type='TorchvisionRoIExtractor',
            roi_layer=dict(type='RoIPool', output_size=6),
            out_channels=256,
            featmap_strides=[16]),
        bbox_head=dict(
            type='AlexNetBBoxHead',
            arch=arch,
            checkpoint=None,
            dropout=0.5,
            frozen=False,  # fc6/fc7 fine-tuned (True keeps them fixed: the CPU demo's linear transfer)
            in_channels=256,
            roi_feat_size=6,
            fc_out_channels=4096,
            num_classes=20,
            bbox_coder=dict(
                type='LegacyDeltaXYWHBBoxCoder',
                target_means=[0., 0., 0., 0.],
                target_stds=[0.1, 0.1, 0.2, 0.2]),
            reg_class_agnostic=False,
            loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
            loss_bbox=dict(type='SmoothL1Loss', beta=1.0, loss_weight=1.0))),
    # py-faster-rcnn's end-to-end settings (lib/fast_rcnn/config.py, experiments/cfgs/faster_rcnn_end2end.yml)
    train_cfg=dict(
        rpn=dict(
            # lib/rpn/anchor_target_layer.py: negatives below 0.3, then each gt's best anchor(s) positive at any
            # IoU (min_pos_iou=0), then anchors from 0.7 positive (RPN_CLOBBER_POSITIVES False)
            assigner=dict(
                type='MaxIoUAssigner', pos_iou_thr=0.7, neg_iou_thr=0.3, min_pos_iou=0.0,
                match_low_quality=True, gt_max_assign_all=True, ignore_iof_thr=-1),
            sampler=dict(
                type='RandomSampler', num=256, pos_fraction=0.5, neg_pos_ub=-1, add_gt_as_proposals=False),
            allowed_border=0,
            pos_weight=-1,
            debug=False),
        # RPN_PRE_NMS_TOP_N 12000, RPN_POST_NMS_TOP_N 2000, RPN_NMS_THRESH 0.7, RPN_MIN_SIZE 16 (original pixels)
        rpn_proposal=dict(
            nms_pre=12000, max_per_img=2000, nms=dict(type='nms', iou_threshold=0.7), min_bbox_size=0,
            min_size_original=16),
        rcnn=dict(
            assigner=dict(
                type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.5, min_pos_iou=0.5,
                match_low_quality=False, ignore_iof_thr=-1),
            sampler=dict(
                type='RandomSampler', num=128, pos_fraction=0.25, neg_pos_ub=-1, add_gt_as_proposals=True),
            pos_weight=-1,
            debug=False)),
    test_cfg=dict(
        rpn=dict(nms_pre=6000, max_per_img=300, nms=dict(type='nms', iou_threshold=0.7), min_bbox_size=0,
                 min_size_original=16),
        rcnn=dict(score_thr=0.05, nms=dict(type='nms', iou_threshold=0.3), max_per_img=100)))
