# PASCAL-ACT-CLS (Huh et al. 2016): R*CNN (Gkioxari et al. 2015) on a fastload-pre-trained BVLC AlexNet. Each person
# box is the primary region; secondary regions are boxes overlapping it with IoU 0.2-0.75 (a fixed multi-scale grid
# plus context boxes, see fastload/mmdet/action.py), whose best score per action is added. VOC 2012 Action
# train -> val, mean devkit AP over the 10 actions. Schedule as for detection: 70k iterations, lr 0.001 (/10 at 40k).
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
    backbone=dict(type='FastloadAlexNet', arch=arch, checkpoint=None, frozen_stages=1),
    roi_extractor=dict(
        type='TorchvisionRoIExtractor',
        roi_layer=dict(type='RoIPool', output_size=6),
        out_channels=256,
        featmap_strides=[16]),
    arch=arch,
    checkpoint=None,
    num_actions=10,
    iou_range=(0.2, 0.75),
    num_secondary_train=16,
    max_secondary_test=256,
    dropout=0.5)
