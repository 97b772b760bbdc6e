# py-faster-rcnn's ZF and VGG16 end-to-end solvers (models/pascal_voc/{ZF,VGG16}/faster_rcnn_end2end/solver.prototxt):
# `iter_size: 2`, i.e. each of the 70k SGD updates sums the gradients of 2 one-image iterations (Caffe averages
# them, as mmengine's accumulative_counts does): 140k images. mmengine counts data iterations, so the run is 140k
# iterations and the lr step (40k updates) is at iteration 80k. Weight decay on the biases too: the end-to-end
# prototxts give biases lr_mult 2 and no decay_mult (Caffe's default 1).
# VGG_CNN_M_1024's end-to-end solver has no iter_size (1 image per update): see sgd_70k.py and
# faster-rcnn_alexnet-caffe_70k-1img_voc07.py.
_base_ = ['./sgd_70k.py']
updates = 70000
images_per_update = 2
max_iters = updates * images_per_update
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
param_scheduler = [
    dict(type='MultiStepLR', begin=0, end=max_iters, by_epoch=False, milestones=[40000 * images_per_update],
         gamma=0.1)
]
optim_wrapper = dict(accumulative_counts=images_per_update, paramwise_cfg=dict(bias_lr_mult=2.0, bias_decay_mult=1.0))
# lr 0.001 is for 2 images per update in total. On 2 GPUs of 1 image each an iteration is one whole update: set
# accumulative_counts=1 AND count the schedule in updates again (accumulative_counts alone doubles it):
#   --cfg-options optim_wrapper.accumulative_counts=1 train_cfg.max_iters=70000 train_cfg.val_interval=70000 \
#       param_scheduler.0.end=70000 param_scheduler.0.milestones=[40000]
auto_scale_lr = dict(enable=False, base_batch_size=2)
