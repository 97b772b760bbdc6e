# PASCAL-DET with a fastload-pre-trained ResNet-50 (the study with ResNets): MMDetection 3.3's Faster R-CNN
# + FPN recipe for PASCAL VOC (configs/pascal_voc/faster-rcnn_r50_fpn_1x_voc0712.py and its bases
# _base_/models/faster-rcnn_r50_fpn.py, _base_/datasets/voc0712.py), trained on VOC 2007 trainval only (mmdet's
# trains on 2007+2012 trainval) and tested on VOC 2007 test with the 11-point mAP, as the AlexNet configs are.
# Where each setting comes from:
# - model: _base_/models/faster-rcnn_r50_fpn.py (mmdet's, with the fastload checkpoint loaded strictly through
#   init_cfg, torchvision's RoIAlign kernel; BN as mmdet's base has it: statistics fixed, norm_eval=True, affine
#   weights trained, norm_cfg requires_grad=True; stem and layer1 frozen, frozen_stages=1);
# - schedule: _base_/schedules/sgd_1x_voc07.py (mmdet's 4 epochs x RepeatDataset(times=3) = 12 passes, SGD lr 0.01
#   FOR 16 IMAGES PER UPDATE, /10 after 9 passes, momentum 0.9, weight decay 1e-4), as 3760 updates of 16 images: 2
#   images per iteration, 8 iterations accumulated per update (30080 iterations), so one GPU runs mmdet's 8 x 2;
# - data: _base_/datasets/voc07.py (fastload's VOC 2007 reader, CheckedVOCDataset; the 1000 x 600 scale, flips and
#   the 11-point VOCMetric are mmdet's voc0712.py too), with mmdet's 2 images per GPU, its training filter
#   (min_size=32: images, bbox_min_size=32: boxes below 32 px are ignored, as difficult ones are) and its
#   aspect-ratio batching. fastload's filter also drops images left with ignored objects only (mmdet trains on them
#   as background): see CheckedVOCDataset.
# Departures, declared: VOC 2007 trainval alone (the paper's PASCAL-DET split); one validation at the end (mmdet
# validates after every epoch; only the final number is reported); iterations with an infinite sampler instead of
# epochs (the same number of images).
# Scaling: the lr is for 16 images per update. On N GPUs of 2 images each keep 16 per update: accumulative_counts
# 8/N, 3760 * 8/N iterations, the step at 2820 * 8/N; e.g. on 8 GPUs
#   torchrun --nproc-per-node 8 -m fastload.cli transfer transfer/faster-rcnn_r50_fpn_1x_voc07.py ... \
#     --launcher pytorch --cfg-options optim_wrapper.accumulative_counts=1 train_cfg.max_iters=3760 \
#     train_cfg.val_interval=3760 param_scheduler.0.end=3760 'param_scheduler.0.milestones=[2820]'
# For B images per update instead: lr 0.01 * B / 16 (mmdet's linear scaling rule) over 12 * 5011 / B updates.
#   fastload transfer transfer/faster-rcnn_r50_fpn_1x_voc07.py --checkpoint runs/NAME/last.pt \
#       --work-dir work/det_NAME --cfg-options data_root=/data/VOCdevkit/ --seeds 0 1 2
_base_ = [
    '_base_/models/faster-rcnn_r50_fpn.py',
    '_base_/datasets/voc07.py',
    '_base_/schedules/sgd_1x_voc07.py',
    '_base_/default_runtime.py',
]
# the result `fastload transfer` reports for this config
primary_metric = 'pascal_voc/mAP'
# mmdet's voc0712.py: 2 images per GPU (per iteration here) and its training filter
train_dataloader = dict(
    batch_size=2,
    dataset=dict(filter_cfg=dict(filter_empty_gt=True, min_size=32, bbox_min_size=32)))
