"""PASCAL VOC's names, in the devkit's order: their one home, without torch or mmdet, for the readers
(fastload.mmdet.voc, fastload.mmdet.action, fastload.transfer_data.voc07) and the synthetic writers
(fastload.synth.voc, fastload.synth.suite)."""

# The 20 object categories of VOC 2007 (and 2012), as in VOCinit.m.
VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
               "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor")

# The VOC 2012 actions: the 10 that VOCevalaction.m scores, then 'other' (no scored action), R*CNN's 11th softmax
# class.
VOC_ACTIONS = ("jumping", "phoning", "playinginstrument", "reading", "ridingbike", "ridinghorse", "running",
               "takingphoto", "usingcomputer", "walking")
OTHER_ACTION = "other"
