# MMDetection 3.3's Faster R-CNN schedule for PASCAL VOC (configs/pascal_voc/faster-rcnn_r50_fpn_1x_voc0712.py),
# on VOC 2007 trainval alone: "1x" = 12 passes over the training images (4 epochs of RepeatDataset(times=3)), SGD at
# lr 0.01 for 16 images per update (8 GPUs x 2 images: its auto_scale_lr base_batch_size=16), divided by 10 after
# epoch 3 (9 passes); momentum 0.9, weight decay 1e-4 on every parameter (no paramwise rule), no gradient clipping,
# no warmup (the VOC config does not inherit schedule_1x.py and its LinearLR warmup: this MultiStepLR is its only one).
# Counted in iterations, as fastload's other configs are (IterBasedTrainLoop, InfiniteSampler): one mmdet epoch of
# RepeatDataset(times=3) over the 5011 VOC 2007 trainval images is 3 * 5011 / 16 = 939.6 updates, 940 with the
# samplers' padding, so the 4 epochs are 3760 updates and the step comes after 2820.
# 16 images per update on one GPU: 2 images per iteration (mmdet's per-GPU batch; train_dataloader.batch_size in the
# experiment config) and the gradients of 8 iterations accumulated (mmengine averages them; the BN layers use fixed
# statistics, so this is the 16-image batch). On N GPUs of 2 images each: accumulative_counts 8/N and 3760 * 8/N
# iterations, the step at 2820 * 8/N (the experiment config's header has the --cfg-options). For B images per update
# instead of 16: updates = 12 passes * 5011 / B and lr = 0.01 * B / 16 (mmdet's linear scaling rule, the one its
# auto_scale_lr applies). Leave auto_scale_lr disabled: mmengine computes it from GPUs x batch_size, ignoring
# accumulative_counts, so it would divide this lr by 8.
updates = 3760
step_updates = 2820
iterations_per_update = 8
max_iters = updates * iterations_per_update
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

param_scheduler = [
    dict(type='MultiStepLR', begin=0, end=max_iters, by_epoch=False,
         milestones=[step_updates * iterations_per_update], gamma=0.1)
]
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0001),
    accumulative_counts=iterations_per_update)
auto_scale_lr = dict(enable=False, base_batch_size=16)
