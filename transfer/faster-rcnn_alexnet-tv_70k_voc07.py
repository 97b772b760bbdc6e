# PASCAL-DET with torchvision's AlexNet (64-192-384-256-256 filters) as the pre-trained network; otherwise
# identical to faster-rcnn_alexnet-caffe_70k_voc07.py.
_base_ = ['./faster-rcnn_alexnet-caffe_70k_voc07.py']
arch = 'alexnet_tv'
model = dict(
    backbone=dict(arch=arch),
    roi_head=dict(bbox_head=dict(arch=arch)))
