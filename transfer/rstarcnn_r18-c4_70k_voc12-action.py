# PASCAL-ACT-CLS on a fastload-pre-trained ResNet-18: rstarcnn_r50-c4_70k_voc12-action.py (and through it the same
# _base_ files as the AlexNet configs) with ResNet-18's trunk and head; its layer3 has 256 channels (BasicBlocks),
# its pooled layer4 512. The lr, decay and warm-up are the ResNet-50 C4 recipe's: mmdet and Detectron publish no
# ResNet-18 C4 recipe, and one schedule for both depths keeps the network the only difference between them.
_base_ = ['./rstarcnn_r50-c4_70k_voc12-action.py']
arch = 'resnet18'
model = dict(backbone=dict(arch=arch), roi_extractor=dict(out_channels=256), arch=arch)
