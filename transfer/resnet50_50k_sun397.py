# SUN-CLS with a fastload-pre-trained ResNet-50 (the study with ResNets): the protocol of
# alexnet-caffe_50k_sun397.py (Huh et al. 2016, Sec. 3, as that config and docs/protocol.md give it) with torchvision's
# ResNet-50 as the pre-trained network: its ImageNet classifier `fc` replaced by a new 397-way `fc` on the pooled
# layer4 features (N(0, 0.01) weights, zero bias, BVLC's fine-tuning init, as for AlexNet's new fc8), the whole
# network fine-tuned, SUN397 partition 1, mean per-class accuracy on the partition's test images.
# Where each setting comes from:
# - schedule: _base_/schedules/sgd_50k_step20k.py, the AlexNet SUN schedule unchanged (50k iterations of 50 images,
#   SGD lr 0.001 divided by 10 at 20k and 40k, momentum 0.9, weight decay 5e-4, biases without decay). Kept because
#   the study compares pre-training data, so every network gets the same transfer protocol; neither the paper nor
#   FFCV documents a ResNet SUN397 fine-tuning recipe. The ResNets' convs have no biases; mmengine's bias rule leaves
#   normalisation layers out of bias_lr_mult, so the BatchNorm weights and biases train at the base lr (weights with
#   the 5e-4 decay, biases without) and only the new fc's bias is a 'bias' in Caffe's sense.
# - the new layer at 10x lr (weights) and 20x (bias): Caffe's models/finetune_flickr_style (fc8_flickr), as the
#   AlexNet config;
# - data: _base_/datasets/sun397.py (images warped to 256 x 256, random crop + flip for training, centre crop for
#   testing, batch 50), with 224-pixel crops instead of 227: the ResNets' ImageNet input (torchvision's 224 x 224
#   evaluation crop, FFCV's 224/256 crop ratio);
# - BatchNorm: trained as the rest of the network (train mode, batch statistics over 50 images), as fine-tuning
#   the whole network means; torchvision's ResNet as pre-training built it, BlurPool included.
#   fastload transfer transfer/resnet50_50k_sun397.py --checkpoint runs/NAME/last.pt \
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
    arch='resnet50',
    num_classes=397,
    # BlurPool (train/resnet*.yaml pre-train with it, FFCV's use_blurpool 1) as the checkpoint records it
    checkpoint=None,  # filled from the top-level `checkpoint` ('random' trains from scratch)
    frozen_layers=(),  # the whole network fine-tuned
    data_preprocessor=dict(
        type='ImgDataPreprocessor',
        # the ImageNet mean/std of fastload's pre-training loader, in RGB order on 0..255 pixels
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True))
# the new last layer is `fc` (the ResNets' name for it); lr_mult/decay_mult as fc8_flickr's
optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys={
        'fc.weight': dict(lr_mult=10.0, decay_mult=1.0),
        'fc.bias': dict(lr_mult=20.0, decay_mult=0.0)}))

# _base_/datasets/sun397.py's pipelines with the ResNets' 224-pixel crop
crop_size = 224
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='Resize', scale={{_base_.img_scale}}, keep_ratio=False),
    dict(type='ClsRandomCrop', crop_size=crop_size),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackClsInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='Resize', scale={{_base_.img_scale}}, keep_ratio=False),
    dict(type='ClsCenterCrop', crop_size=crop_size),
    dict(type='PackClsInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
