# SUN397 scene classification (Xiao et al. 2010), one official partition: Training_XX.txt (50 images per class) ->
# Testing_XX.txt (50 per class). `data_root` holds SUN397/ and Partitions/ (`fastload synth sun OUT` writes the same
# layout). The FastloadRunner (`fastload transfer`, mmdet's tools) applies `data_root` and `img_scale` to the dataloaders, so
# `--cfg-options data_root=/data/sun/` is enough. The partition is a dataset argument (default 1): change it with
# `--cfg-options train_dataloader.dataset.partition=2 val_dataloader.dataset.partition=2
#  test_dataloader.dataset.partition=2`.
# Images are warped to 256 x 256 (as Caffe's data layers did) and cropped to the network's input: random crop and
# flip for training, the centre crop for testing, as Caffe's fine-tuning example (models/finetune_flickr_style/
# train_val.prototxt: new_height/new_width 256, crop_size 227, mirror), and its batch size, 50 (the paper states none).
dataset_type = 'SUN397Dataset'
data_root = 'data/sun/'
img_scale = (256, 256)
crop_size = 227
partition = 1
backend_args = None

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=img_scale, keep_ratio=False),
    dict(type='ClsRandomCrop', crop_size=crop_size),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackClsInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=img_scale, keep_ratio=False),
    dict(type='ClsCenterCrop', crop_size=crop_size),
    dict(type='PackClsInputs'),
]
train_dataloader = dict(
    batch_size=50,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(type=dataset_type, data_root=data_root, split='train', partition=partition,
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=50,
    num_workers=4,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, data_root=data_root, split='test', partition=partition, test_mode=True,
                 pipeline=test_pipeline))
test_dataloader = val_dataloader

val_evaluator = dict(type='MeanPerClassAccuracy', prefix='sun397')
test_evaluator = val_evaluator
