# SUN-CLS with a fastload-pre-trained ResNet-18: resnet50_50k_sun397.py (the AlexNet SUN-CLS protocol, a new 397-way
# fc on the pooled features, 224-pixel crops) with torchvision's ResNet-18 as the pre-trained network; every other
# setting, and its source, is that config's.
#   fastload transfer transfer/resnet18_50k_sun397.py --checkpoint runs/NAME/last.pt \
#       --work-dir work/sun_NAME --cfg-options data_root=/data/sun/ --seeds 0 1 2
_base_ = ['./resnet50_50k_sun397.py']
model = dict(arch='resnet18')
