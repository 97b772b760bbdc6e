# PASCAL-DET with a fastload-pre-trained ResNet-18: faster-rcnn_r50_fpn_1x_voc07.py (mmdet 3.3's Faster R-CNN + FPN
# VOC recipe on VOC 2007, 3760 updates of 16 images at lr 0.01) with the backbone's depth and the FPN's inputs changed
# to ResNet-18's (BasicBlocks: stage outputs of 64, 128, 256, 512 channels), as mmdet's ResNet-18 FPN configs do
# (configs/retinanet/retinanet_r18_fpn_1x_coco.py: backbone depth=18, neck in_channels=[64, 128, 256, 512], the
# r50 recipe's lr and schedule); every other setting, and its source, is that config's.
#   fastload transfer transfer/faster-rcnn_r18_fpn_1x_voc07.py --checkpoint runs/NAME/last.pt \
#       --work-dir work/det_NAME --cfg-options data_root=/data/VOCdevkit/ --seeds 0 1 2
_base_ = ['./faster-rcnn_r50_fpn_1x_voc07.py']
model = dict(
    backbone=dict(depth=18),
    neck=dict(in_channels=[64, 128, 256, 512]))
