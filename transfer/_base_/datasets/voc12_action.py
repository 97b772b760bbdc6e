# PASCAL VOC 2012 action classification (10 actions, person boxes given): train on ImageSets/Action/train.txt,
# evaluate on val.txt (the test server is not reachable), mean AP over actions as the VOC devkit computes it.
# `data_root` is the folder holding VOC2012/ (a VOCdevkit); `img_scale` as for detection (R*CNN's 600 short side,
# 1000 at most). Both are applied when the run is built (FastloadRunner: `fastload transfer` and mmdet's tools).
# Random horizontal flip: R*CNN's TRAIN.USE_FLIPPED.
dataset_type = 'VOCActionDataset'
data_root = 'data/VOCdevkit/'
img_scale = (1000, 600)
backend_args = None

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadActionAnnotations'),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackActionInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    # person boxes are inputs here (the primary regions), so they are loaded before Resize and resized with the image
    dict(type='LoadActionAnnotations'),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='PackActionInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
# 2 images per update, as R*CNN's cfg.TRAIN.IMS_PER_BATCH
train_dataloader = dict(
    batch_size=2,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='VOC2012/ImageSets/Action/train.txt',
        data_prefix=dict(sub_data_root='VOC2012/'),
        pipeline=train_pipeline,
        backend_args=backend_args))
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='VOC2012/ImageSets/Action/val.txt',
        data_prefix=dict(sub_data_root='VOC2012/'),
        test_mode=True,
        pipeline=test_pipeline,
        backend_args=backend_args))
test_dataloader = val_dataloader

val_evaluator = dict(type='VOCActionMetric')
test_evaluator = val_evaluator
