# PASCAL-DET with py-faster-rcnn's VGG_CNN_M_1024 end-to-end recipe instead of ZF's
# (models/pascal_voc/VGG_CNN_M_1024/faster_rcnn_end2end/{solver,train}.prototxt): 70k updates of 1 image each
# (no iter_size), lr 0.001 (/10 at 40k), conv1 frozen (lr_mult 0), weight decay on the other biases.
# Otherwise identical to faster-rcnn_alexnet-caffe_70k_voc07.py (docs/protocol.md). For an alexnet_tv checkpoint
# add --cfg-options model.backbone.arch=alexnet_tv model.roi_head.bbox_head.arch=alexnet_tv.
_base_ = [
    '_base_/models/faster-rcnn_alexnet.py',
    '_base_/datasets/voc07.py',
    '_base_/schedules/sgd_70k.py',
    '_base_/default_runtime.py',
]
primary_metric = 'pascal_voc/mAP'
model = dict(backbone=dict(frozen_stages=1))
optim_wrapper = dict(accumulative_counts=1, paramwise_cfg=dict(bias_lr_mult=2.0, bias_decay_mult=1.0))
