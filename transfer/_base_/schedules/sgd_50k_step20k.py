# The paper's SUN-CLS fine-tuning schedule (Huh et al. 2016, Sec. 3): 50k iterations of SGD, lr 0.001 divided by 10
# every 20k (at 20k and 40k), as the solver of Caffe's fine-tuning example (models/finetune_flickr_style/solver.prototxt:
# base_lr 0.001, stepsize 20000); momentum 0.9, weight decay 5e-4, biases at 2x lr without decay (its prototxt).
max_iters = 50000
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

param_scheduler = [
    dict(type='MultiStepLR', begin=0, end=max_iters, by_epoch=False, milestones=[20000, 40000], gamma=0.1)
]
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.001, momentum=0.9, weight_decay=0.0005),
    paramwise_cfg=dict(bias_lr_mult=2.0, bias_decay_mult=0.0))
auto_scale_lr = dict(enable=False, base_batch_size=50)
