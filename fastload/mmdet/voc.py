"""Reading VOCdevkit folders with clear errors: image lists, annotation XML, boxes; and a checked VOCDataset.

Bad input policy (the README says the same):
- an image list (ImageSets/...) that is missing, an annotation XML that is missing or malformed (not XML, no
  <size>/<bndbox> numbers), an image listed but missing from JPEGImages: FastloadError naming the file. Each of these
  would silently change which images a benchmark number is computed on, so we stop before training starts.
- a box reaching outside its image: clipped to the image and reported (file, object, box) in the log;
  a box that is empty after clipping (or has xmax < xmin): the object is skipped and reported.
"""
import os.path as osp
import xml.etree.ElementTree as ET

from mmdet.datasets import VOCDataset
from mmdet.registry import DATASETS
from mmengine.logging import MMLogger

from ..errors import FastloadError


def read_image_list(path) -> list:
    """Lines of an ImageSets file as (image id, object index or None) pairs; blank lines ignored.

    Main/*.txt hold one image id per line; Action/*.txt may add a 1-based person index after the id.
    """
    if not osp.isfile(path):
        raise FastloadError(f"image list {path} does not exist (expected a VOCdevkit ImageSets file)")
    entries = []
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) > 1 and not parts[1].lstrip("-").isdigit():
                raise FastloadError(f"{path}:{lineno}: expected 'IMAGE_ID [OBJECT_INDEX]', got {line.strip()!r}")
            entries.append((parts[0], int(parts[1]) if len(parts) > 1 else None))
    return entries


def parse_xml(path) -> ET.Element:
    if not osp.isfile(path):
        raise FastloadError(f"annotation {path} does not exist")
    try:
        return ET.parse(path).getroot()
    except ET.ParseError as e:
        raise FastloadError(f"malformed annotation {path}: {e}") from e


def _number(node, tag, path):
    child = node.find(tag)
    try:
        return float(child.text)
    except (AttributeError, TypeError, ValueError):
        text = None if child is None else child.text
        raise FastloadError(f"malformed annotation {path}: <{tag}> is {text!r}, expected a number") from None


def read_size(root, path, img_path) -> tuple:
    """(width, height) from <size>, or from the image header when <size> is absent (as mmdet does)."""
    size = root.find("size")
    if size is not None:
        width, height = int(_number(size, "width", path)), int(_number(size, "height", path))
    else:
        from PIL import Image
        with Image.open(img_path) as im:
            width, height = im.size
    if width < 1 or height < 1:
        raise FastloadError(f"malformed annotation {path}: image size {width}x{height}")
    return width, height


def read_box(obj, path, width, height, index, problems) -> list:
    """The object's box as 0-based [x1, y1, x2, y2] (VOC's 1-based pixels minus one, mmdet's convention), clipped
    to the image; None when nothing of it is left. Clipping and skipping are appended to `problems`."""
    bnd = obj.find("bndbox")
    if bnd is None:
        raise FastloadError(f"malformed annotation {path}: object {index} has no <bndbox>")
    box = [int(_number(bnd, tag, path)) - 1 for tag in ("xmin", "ymin", "xmax", "ymax")]
    clipped = [min(max(box[0], 0), width - 1), min(max(box[1], 0), height - 1),
               min(max(box[2], 0), width - 1), min(max(box[3], 0), height - 1)]
    if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
        problems.append(f"{path}: object {index} box {box} is empty inside the {width}x{height} image: skipped")
        return None
    if clipped != box:
        problems.append(f"{path}: object {index} box {box} reaches outside the {width}x{height} image: "
                        f"clipped to {clipped}")
    return clipped


def check_image(img_path, list_file):
    if not osp.isfile(img_path):
        raise FastloadError(f"image {img_path} is listed in {list_file} but does not exist")


def report_problems(problems, what: str) -> None:
    if problems:
        logger = MMLogger.get_current_instance()
        logger.warning(f"{what}: {len(problems)} annotation problem(s) fixed or skipped:\n  " + "\n  ".join(problems))


def usable_objects(info: dict) -> int:
    """Objects of an image that training learns from: those not ignored (difficult, or below bbox_min_size)."""
    return sum(1 for inst in info["instances"] if not inst["ignore_flag"])


@DATASETS.register_module()
class CheckedVOCDataset(VOCDataset):
    """mmdet's VOCDataset with fastload's bad-input policy (module docstring): errors that name the file for a
    missing image, a missing or malformed XML; boxes outside the image clipped, empty ones skipped, both logged.

    With filter_cfg=dict(filter_empty_gt=True), a training image counts as empty when it has no object that is not
    ignored (e.g. only difficult ones), and is dropped, as py-faster-rcnn does (lib/datasets/pascal_voc.py
    `use_diff: False` removes difficult objects, then lib/fast_rcnn/train.py `filter_roidb` drops images with no
    RoI left). mmdet's own filter keeps such an image and trains on it as background only.
    """

    def filter_data(self) -> list:
        data_list = super().filter_data()
        if self.test_mode or not self.filter_cfg or not self.filter_cfg.get("filter_empty_gt", False):
            return data_list
        kept = [info for info in data_list if usable_objects(info) > 0]
        if len(kept) < len(data_list):
            MMLogger.get_current_instance().info(
                f"{self.ann_file}: {len(data_list) - len(kept)} training image(s) with only difficult (ignored) "
                f"objects dropped, {len(kept)} left")
        if not kept:
            raise FastloadError(f"{self.ann_file}: no training image has an object that is not difficult")
        return kept

    def load_data_list(self):
        self._problems = []
        entries = read_image_list(self.ann_file)
        data_list = super().load_data_list()
        report_problems(self._problems, f"{self.ann_file} ({len(entries)} images)")
        return data_list

    def parse_data_info(self, img_info: dict) -> dict:
        img_path = osp.join(self.sub_data_root, img_info["file_name"])
        check_image(img_path, self.ann_file)
        root = parse_xml(img_info["xml_path"])
        width, height = read_size(root, img_info["xml_path"], img_path)
        instances = []
        for index, obj in enumerate(root.findall("object"), 1):
            name_node = obj.find("name")
            if name_node is None or not (name_node.text or "").strip():
                raise FastloadError(f"malformed annotation {img_info['xml_path']}: object {index} has no <name>")
            name = name_node.text.strip()
            if name not in self._metainfo["classes"]:
                continue
            box = read_box(obj, img_info["xml_path"], width, height, index, self._problems)
            if box is None:
                continue
            difficult = obj.find("difficult")
            difficult = 0 if difficult is None else int(_number(obj, "difficult", img_info["xml_path"]))
            too_small = False
            if self.bbox_min_size is not None and not self.test_mode:
                too_small = min(box[2] - box[0], box[3] - box[1]) < self.bbox_min_size
            instances.append(dict(bbox=box, bbox_label=self.cat2label[name],
                                  ignore_flag=int(bool(difficult) or too_small)))
        return dict(img_path=img_path, img_id=img_info["img_id"], xml_path=img_info["xml_path"],
                    height=height, width=width, instances=instances)
