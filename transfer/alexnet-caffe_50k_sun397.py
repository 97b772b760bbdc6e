# SUN-CLS (Huh, Agrawal, Efros 2016, Sec. 3): a fastload-pre-trained BVLC AlexNet with fc8 replaced by a random
# 397-way layer, the whole network fine-tuned on SUN397 partition 1 (50 train images per class), 50k iterations of
# SGD at lr 0.001 (/10 every 20k), the new fc8 at 10x (weights) and 20x (biases) that lr as in Caffe's fine-tuning
# example (models/finetune_flickr_style); metric: mean per-class accuracy on the partition's test images.
# Settings and sources: docs/protocol.md. data_root: the folder that holds SUN397/ and Partitions/.
#   fastload transfer transfer/alexnet-caffe_50k_sun397.py --checkpoint runs/NAME/last.pt \
#       --work-dir work/sun_NAME --cfg-options data_root=/data/sun/ --seeds 0 1 2
_base_ = [
    '_base_/datasets/sun397.py',
    '_base_/schedules/sgd_50k_step20k.py',
    '_base_/default_runtime.py',
]
# fastload.mmdet registers RecordMetricsHook (used by default_runtime); .classification the SUN397 pieces
custom_imports = dict(imports=['fastload.mmdet', 'fastload.mmdet.classification'], allow_failed_imports=False)
# the result `fastload transfer` reports for this config
primary_metric = 'sun397/mean_class_acc'

model = dict(
    type='FastloadImageClassifier',
    arch='alexnet_caffe',
    num_classes=397,
    checkpoint=None,  # filled from the top-level `checkpoint` ('random' trains from scratch)
    frozen_layers=(),  # the whole network fine-tuned (the CPU demo fixes conv1..fc7: a linear probe)
    data_preprocessor=dict(
        type='ImgDataPreprocessor',
        # the ImageNet mean/std of fastload's pre-training loader, in RGB order on 0..255 pixels
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True))
# models/finetune_flickr_style/train_val.prototxt, fc8_flickr: lr_mult 10 / decay_mult 1 (weights), lr_mult 20 /
# decay_mult 0 (biases): a layer learnt from scratch moves faster than the pre-trained ones
optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys={
        'fc8.weight': dict(lr_mult=10.0, decay_mult=1.0),
        'fc8.bias': dict(lr_mult=20.0, decay_mult=0.0)}))
