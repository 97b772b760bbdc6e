# resnet18_50k_sun397.py reading compiled betons: resnet50_50k_sun397-beton.py with torchvision's ResNet-18.
#   fastload transfer transfer/resnet18_50k_sun397-beton.py --checkpoint runs/NAME/last.pt \
#       --work-dir work/sun_NAME --cfg-options data_root=/data/sun397_beton/ --seeds 0 1 2
_base_ = ['./resnet50_50k_sun397-beton.py']
model = dict(arch='resnet18')
