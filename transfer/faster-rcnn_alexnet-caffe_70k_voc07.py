# PASCAL-DET (Huh, Agrawal, Efros 2016, Sec. 3): Faster R-CNN (end-to-end) on a fastload-pre-trained BVLC AlexNet,
# VOC 2007 trainval -> test, 11-point mAP. py-faster-rcnn's recipe for ZF, the AlexNet-like net closest to the
# paper's (the paper's own solver is not public): 70k SGD updates of 2 images each (iter_size 2, 140k one-image
# iterations), lr 0.001 (/10 at 40k updates), every conv layer fine-tuned, weight decay on biases too.
# The other py-faster-rcnn recipe (VGG_CNN_M_1024: 1 image per update, conv1 frozen) is
# faster-rcnn_alexnet-caffe_70k-1img_voc07.py. Settings and sources: docs/protocol.md.
#   fastload transfer transfer/faster-rcnn_alexnet-caffe_70k_voc07.py --checkpoint runs/NAME/last.pt \
#       --work-dir work/det_NAME --cfg-options data_root=/data/VOCdevkit/ --seeds 0 1 2
_base_ = [
    '_base_/models/faster-rcnn_alexnet.py',
    '_base_/datasets/voc07.py',
    '_base_/schedules/sgd_70k_iter-size2.py',
    '_base_/default_runtime.py',
]
# the result `fastload transfer` reports for this config
primary_metric = 'pascal_voc/mAP'
