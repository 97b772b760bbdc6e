# SUN-CLS with torchvision's AlexNet (64-192-384-256-256 filters) as the pre-trained network, for checkpoints
# pre-trained with --arch alexnet_tv; otherwise identical to alexnet-caffe_50k_sun397.py (docs/protocol.md).
#   fastload transfer transfer/alexnet-tv_50k_sun397.py --checkpoint runs/NAME/last.pt \
#       --work-dir work/sun_NAME --cfg-options data_root=/data/sun/ --seeds 0 1 2
_base_ = ['./alexnet-caffe_50k_sun397.py']
model = dict(arch='alexnet_tv')
