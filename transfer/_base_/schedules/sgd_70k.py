# 70k SGD updates, lr 0.001 divided by 10 at 40k, momentum 0.9, weight decay 5e-4, biases at 2x lr without weight
# decay (bias lr_mult 2 / decay_mult 0, as R*CNN's models/VGG16_RstarCNN/train.prototxt has them). The length and the
# step are the paper's fine-tuning schedule as fastload's configs carry it (docs/protocol.md); py-faster-rcnn's
# end-to-end solvers step at 50k of 70k.
# One data iteration is one update here: the images per update are the dataloader's batch_size (R*CNN: 2). The
# detection configs accumulate 2 one-image iterations per update instead (py-faster-rcnn's iter_size: 2).
max_iters = 70000
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

param_scheduler = [
    dict(type='MultiStepLR', begin=0, end=max_iters, by_epoch=False, milestones=[40000], gamma=0.1)
]
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.001, momentum=0.9, weight_decay=0.0005),
    paramwise_cfg=dict(bias_lr_mult=2.0, bias_decay_mult=0.0))
# the lr is for the config's own images per update on 1 GPU; enable to scale it linearly with more GPUs
auto_scale_lr = dict(enable=False, base_batch_size=1)
