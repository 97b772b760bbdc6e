# PASCAL-ACT-CLS with torchvision's AlexNet as the pre-trained network; otherwise identical to
# rstarcnn_alexnet-caffe_70k_voc12-action.py.
_base_ = ['./rstarcnn_alexnet-caffe_70k_voc12-action.py']
arch = 'alexnet_tv'
model = dict(backbone=dict(arch=arch), arch=arch)
