# alexnet-tv_50k_sun397.py reading compiled betons: alexnet-caffe_50k_sun397-beton.py with torchvision's AlexNet.
#   fastload transfer transfer/alexnet-tv_50k_sun397-beton.py --checkpoint runs/NAME/last.pt \
#       --work-dir work/sun_NAME --cfg-options data_root=/data/sun397_beton/ --seeds 0 1 2
_base_ = ['./alexnet-caffe_50k_sun397-beton.py']
model = dict(arch='alexnet_tv')
