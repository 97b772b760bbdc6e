# PASCAL-DET (Huh, Agrawal, Efros 2016, Sec. 3): Faster R-CNN on a fastload-pre-trained BVLC AlexNet, VOC 2007
# trainval -> test, 11-point mAP; 70k iterations, lr 0.001 (/10 at 40k), 1 image per iteration.
#   fastload transfer transfer/faster-rcnn_alexnet-caffe_70k_voc07.py --checkpoint runs/NAME/last.pt \
#       --work-dir work/det_NAME --cfg-options data_root=/data/VOCdevkit/ --seeds 0 1 2
_base_ = [
    '_base_/models/faster-rcnn_alexnet.py',
    '_base_/datasets/voc07.py',
    '_base_/schedules/sgd_70k.py',
    '_base_/default_runtime.py',
]
# the result `fastload transfer` reports for this config
primary_metric = 'pascal_voc/mAP'
