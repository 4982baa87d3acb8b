"""The labelling-tool formats (COCO JSON, YOLO text, Pascal VOC XML): readers on small files the
tests write, malformed input named by file and position, format detection and ``data convert``."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from mtcnn_train.datasets.coco import read_coco
from mtcnn_train.datasets.convert import convert_dataset
from mtcnn_train.datasets.formats import ReadOptions, detect_format, read_dataset
from mtcnn_train.datasets.labels import LabelFilter, keypoint_order
from mtcnn_train.datasets.voc import read_voc
from mtcnn_train.datasets.wider import read_wider, write_wider
from mtcnn_train.datasets.yolo import read_yolo
from mtcnn_train.errors import AnnotationError, UserError


def image(path: Path, width: int, height: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.zeros((height, width, 3), np.uint8))
    return path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# --------------------------------------------------------------------------------------------
# COCO

FIVE = ["left_eye", "right_eye", "nose", "mouth_left", "mouth_right"]


def coco_doc(**changes) -> dict:
    doc = {
        "images": [{"id": 1, "file_name": "ev/a.jpg", "width": 100, "height": 80},
                   {"id": 2, "file_name": "ev/b.jpg", "width": 100, "height": 80}],
        "categories": [{"id": 1, "name": "face", "keypoints": FIVE}, {"id": 2, "name": "person"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 20, 30.5, 40], "iscrowd": 0,
             "keypoints": [20, 30, 2, 30, 30, 2, 25, 40, 1, 21, 50, 2, 29, 50, 0]},
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [50, 5, 10, 10], "iscrowd": 1},
            {"id": 3, "image_id": 1, "category_id": 2, "bbox": [0, 0, 90, 70]},
            {"id": 4, "image_id": 1, "category_id": 1, "bbox": [60, 40, 12, 12], "ignore": 1,
             "attributes": {"blur": 2, "occluded": True}},
        ],
    }
    doc.update(changes)
    return doc


def test_coco_boxes_flags_and_keypoints(tmp_path):
    path = write(tmp_path / "ann.json", json.dumps(coco_doc()))
    records = read_coco(path, tmp_path, labels=LabelFilter.of(["face"]))
    assert [r.name for r in records] == ["ev/a.jpg", "ev/b.jpg"]   # b has no faces: still a record
    a = records[0]
    np.testing.assert_array_equal(a.boxes, [[10, 20, 40.5, 60], [50, 5, 60, 15], [60, 40, 72, 52]])
    assert a.flags["invalid"].tolist() == [0, 1, 1]      # iscrowd and ignore
    assert a.flags["blur"].tolist() == [0, 0, 2]         # WIDER-named attributes kept
    np.testing.assert_array_equal(a.landmarks[0, :4], [[20, 30], [30, 30], [25, 40], [21, 50]])
    assert np.isnan(a.landmarks[0, 4]).all()              # visibility 0: absent
    assert np.isnan(a.landmarks[1:]).all()                # faces without keypoints
    assert records[1].num_faces == 0 and records[1].landmarks.shape == (0, 5, 2)
    # Without a class filter the person box is a face too.
    assert read_coco(path, tmp_path)[0].num_faces == 4


def test_coco_keypoints_by_other_names_need_a_mapping(tmp_path):
    odd = ["eyeA", "eyeB", "tip", "mA", "mB"]
    doc = coco_doc(categories=[{"id": 1, "name": "face", "keypoints": odd}, {"id": 2, "name": "person"}])
    path = write(tmp_path / "ann.json", json.dumps(doc))
    with pytest.raises(AnnotationError, match=r"categories\[0\].*keypoint_names"):
        read_coco(path, tmp_path)
    records = read_coco(path, tmp_path, labels=LabelFilter.of(["face"]), keypoint_names=odd)
    assert records[0].landmarks[0, 2].tolist() == [25, 40]
    # The usual spellings of labelling tools map by name, in any order.
    assert keypoint_order(["Nose", "Right Eye", "left-eye", "right_mouth_corner", "mouth left"]) == [2, 1, 0, 4, 3]
    assert keypoint_order(["nose", "left_eye", "right_eye"]) is None   # a person's head: not ours


COCO_ERRORS = {
    "bad JSON": ('{"images": [\n  {"id": 1,}\n]}', "ann.json:2: invalid JSON"),
    "no images": ('{"annotations": []}', "no 'images' list"),
    "short bbox": (coco_doc(annotations=[{"id": 9, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3]}]),
                   r"annotations\[0\] \(id 9\): bbox: expected"),
    "negative size": (coco_doc(annotations=[{"id": 9, "image_id": 1, "category_id": 1, "bbox": [1, 2, -3, 4]}]),
                      "negative size"),
    "text in bbox": (coco_doc(annotations=[{"id": 9, "image_id": 1, "category_id": 1, "bbox": [1, "x", 3, 4]}]),
                     r"bbox\[1\]: expected a number"),
    "NaN in bbox": (coco_doc(annotations=[{"id": 9, "image_id": 1, "category_id": 1, "bbox": [1, float("nan"), 3, 4]}]),
                    "not a finite number"),
    "unknown image": (coco_doc(annotations=[{"id": 9, "image_id": 7, "category_id": 1, "bbox": [1, 2, 3, 4]}]),
                      "image_id 7 is not in 'images'"),
    "unknown category": (coco_doc(annotations=[{"id": 9, "image_id": 1, "category_id": 5, "bbox": [1, 2, 3, 4]}]),
                         "category_id 5 is not in 'categories'"),
    "image twice": (coco_doc(images=[{"id": 1, "file_name": "a.jpg"}, {"id": 1, "file_name": "b.jpg"}]),
                    r"images\[1\]: image id 1 appears twice"),
    "keypoint count": (coco_doc(annotations=[{"id": 9, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4],
                                              "keypoints": [1, 2, 2]}]), "expected 15 numbers"),
    "iscrowd not a flag": (coco_doc(annotations=[{"id": 9, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4],
                                                  "iscrowd": 5}]), "iscrowd: expected 0 or 1"),
    "path escaping": (coco_doc(images=[{"id": 1, "file_name": "../../x.jpg"}], annotations=[]), r"images\[0\]: .*escapes"),
    "attribute too large": (coco_doc(annotations=[{"id": 9, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4],
                                                   "attributes": {"occlusion": 2**31}}]),
                            r"annotations\[0\] \(id 9\): attributes.occlusion: 2147483648 is out of range"),
    "file listed twice": (coco_doc(images=[{"id": 1, "file_name": "ev/a.jpg"}, {"id": 2, "file_name": "./ev/a.jpg"}],
                                   annotations=[]), "image './ev/a.jpg' is listed twice"),
}


@pytest.mark.parametrize("case", sorted(COCO_ERRORS))
def test_coco_errors_name_the_file_and_entry(tmp_path, case):
    content, message = COCO_ERRORS[case]
    path = write(tmp_path / "ann.json", content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(AnnotationError, match=message) as caught:
        read_coco(path, tmp_path)
    assert str(caught.value).startswith(str(path))
    assert "\n" not in str(caught.value)


def test_coco_images_folder_is_guessed_beside_or_above_the_json(tmp_path):
    image(tmp_path / "images" / "ev" / "a.jpg", 20, 20)
    path = write(tmp_path / "annotations" / "instances.json",
                 json.dumps({"images": [{"id": 1, "file_name": "ev/a.jpg"}], "annotations": []}))
    assert read_coco(path)[0].image_path == (tmp_path / "images" / "ev" / "a.jpg").resolve()


# --------------------------------------------------------------------------------------------
# YOLO


def yolo_set(root: Path) -> Path:
    image(root / "images" / "train" / "a.jpg", 200, 100)
    image(root / "images" / "train" / "b.png", 50, 50)
    image(root / "images" / "train" / "c.jpg", 40, 40)   # no label file: a picture without faces
    write(root / "labels" / "train" / "a.txt",
          "0 0.5 0.5 0.2 0.4\n"
          "1 0.25 0.25 0.1 0.1\n"
          "\n"
          "0 0.75 0.5 0.1 0.2 0.7 0.45 0.8 0.45 0.75 0.5 -1 -1 0.78 0.55\n")
    write(root / "labels" / "train" / "b.txt", "0 0.5 0.5 0.5 0.5 0.4 0.4 2 0.6 0.4 2 0.5 0.5 0 0.4 0.6 1 0.6 0.6 2\n")
    return root


def test_yolo_folder_boxes_landmarks_and_classes(tmp_path):
    root = yolo_set(tmp_path / "set")
    records = read_yolo(root)
    assert [r.name for r in records] == ["train/a.jpg", "train/b.png", "train/c.jpg"]
    a, b, c = records
    np.testing.assert_allclose(a.boxes, [[80, 30, 120, 70], [40, 20, 60, 30], [140, 40, 160, 60]], atol=1e-4)
    assert a.flags["invalid"].tolist() == [0, 0, 0]
    assert np.isnan(a.landmarks[:2]).all()                          # 5-field lines: no landmarks
    np.testing.assert_allclose(a.landmarks[2, [0, 1, 2, 4]], [[140, 45], [160, 45], [150, 50], [156, 55]], atol=1e-4)
    assert np.isnan(a.landmarks[2, 3]).all()                        # -1 -1: absent
    np.testing.assert_allclose(b.landmarks[0, [0, 1, 3, 4]], [[20, 20], [30, 20], [20, 30], [30, 30]], atol=1e-4)
    assert np.isnan(b.landmarks[0, 2]).all()                        # visibility 0: absent
    assert c.num_faces == 0
    # A class filter and an ignore class.
    only = read_yolo(root, labels=LabelFilter.of(["0"]))[0]
    assert only.num_faces == 2
    ignored = read_yolo(root, labels=LabelFilter.of(None, ["1"]))[0]
    assert ignored.flags["invalid"].tolist() == [0, 1, 0]


def test_yolo_list_file_and_dataset_yaml_keep_the_order_and_the_class_names(tmp_path):
    root = yolo_set(tmp_path / "set")
    write(root / "train.txt", "./images/train/b.png\n./images/train/a.jpg\n")
    write(root / "data.yaml", "train: train.txt\nnames: {0: face, 1: ignore}\n")
    listed = read_yolo(root / "train.txt")
    assert [r.name for r in listed] == ["train/b.png", "train/a.jpg"]
    from_yaml = read_yolo(root / "data.yaml")
    assert from_yaml[1].flags["invalid"].tolist() == [0, 1, 0]     # the class named "ignore"
    # A class filter never drops the ignore regions: they keep negatives off those faces.
    assert read_yolo(root / "data.yaml", labels=LabelFilter.of(["face"]))[1].flags["invalid"].tolist() == [0, 1, 0]
    assert read_yolo(root / "data.yaml", labels=LabelFilter.of(["face"], ["none"]))[1].num_faces == 2


YOLO_ERRORS = {
    "field count": ("0 0.5 0.5 0.2\n", 1, "expected 5, 15 or 20 fields"),
    "polygon": ("0 0.1 0.1 0.2 0.1 0.2 0.2\n", 1, "a polygon"),
    "not a number": ("0 0.5 0.5 0.2 0.2\n0 0.5 x 0.2 0.2\n", 2, "cy: 'x' is not a number"),
    "negative size": ("\n0 0.5 0.5 -0.2 0.2\n", 2, "negative box size"),
    "class not whole": ("0.5 0.5 0.5 0.2 0.2\n", 1, "class: expected a whole number"),
    "infinite": ("0 0.5 0.5 inf 0.2\n", 1, "not a finite number"),
    "underscore in a number": ("0 0.5 0.5 0.2 0_2\n", 1, "h: '0_2' is not a number"),
}


@pytest.mark.parametrize("case", sorted(YOLO_ERRORS))
def test_yolo_errors_name_the_label_file_and_line(tmp_path, case):
    content, line, message = YOLO_ERRORS[case]
    image(tmp_path / "images" / "a.jpg", 10, 10)
    label = write(tmp_path / "labels" / "a.txt", content)
    with pytest.raises(AnnotationError, match=message) as caught:
        read_yolo(tmp_path)
    assert str(caught.value).startswith(f"{label}:{line}: ")


def test_yolo_list_naming_a_missing_image_names_the_list_line(tmp_path):
    image(tmp_path / "images" / "a.jpg", 10, 10)
    write(tmp_path / "labels" / "b.txt", "0 0.5 0.5 0.2 0.2\n")
    listed = write(tmp_path / "list.txt", "images/a.jpg\nimages/b.jpg\n")
    with pytest.raises(AnnotationError, match="image not found") as caught:
        read_yolo(listed)
    assert str(caught.value).startswith(f"{tmp_path / 'labels' / 'b.txt'}:1: ")
    with pytest.raises(AnnotationError, match="escapes") as caught:
        read_yolo(write(tmp_path / "bad.txt", "images/a.jpg\n../../etc/x.jpg\n"))
    assert str(caught.value).startswith(f"{tmp_path / 'bad.txt'}:2: ")


def test_yolo_refuses_a_folder_for_a_label_file_a_scalar_names_entry_and_an_image_listed_twice(tmp_path):
    root = yolo_set(tmp_path / "set")
    (root / "labels" / "train" / "c.txt").mkdir()  # where c.jpg's labels would be: not "no faces"
    with pytest.raises(AnnotationError, match="not a label file") as caught:
        read_yolo(root)
    assert str(caught.value).startswith(str(root / "labels" / "train" / "c.txt"))
    (root / "labels" / "train" / "c.txt").rmdir()
    for names in ("5", "face"):
        write(root / "data.yaml", f"train: images/train\nnames: {names}\n")
        with pytest.raises(AnnotationError, match="names: expected a list of class names"):
            read_yolo(root / "data.yaml")
    listed = write(root / "train.txt", "images/train/a.jpg\nimages/train/b.png\n./images/train/a.jpg\n")
    with pytest.raises(AnnotationError, match="listed twice") as caught:
        read_yolo(listed)
    assert str(caught.value).startswith(f"{listed}:3: ")


# --------------------------------------------------------------------------------------------
# Pascal VOC

VOC = """<annotation>
  <folder>JPEGImages</folder>
  <filename>{name}</filename>
  <size><width>100</width><height>80</height><depth>3</depth></size>
  <object>
    <name>face</name><difficult>0</difficult><truncated>1</truncated>
    <bndbox><xmin>11</xmin><ymin>21</ymin><xmax>40</xmax><ymax>60</ymax></bndbox>
  </object>
  <object>
    <name>face</name><difficult>1</difficult>
    <bndbox><xmin>51.5</xmin><ymin>6</ymin><xmax>60</xmax><ymax>15</ymax></bndbox>
  </object>
  <object>
    <name>hand</name>
    <bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox>
  </object>
</annotation>
"""


def test_voc_boxes_difficult_and_classes(tmp_path):
    write(tmp_path / "Annotations" / "b.xml", VOC.format(name="b.jpg"))
    write(tmp_path / "Annotations" / "a.xml", VOC.format(name="a.jpg"))
    records = read_voc(tmp_path, labels=LabelFilter.of(["face"]))
    assert [r.name for r in records] == ["a.jpg", "b.jpg"]
    assert records[0].image_path == (tmp_path / "Annotations" / "a.jpg").resolve()  # no JPEGImages/ here
    np.testing.assert_array_equal(records[0].boxes, [[10, 20, 40, 60], [50.5, 5, 60, 15]])  # 1-based, inclusive
    assert records[0].flags["invalid"].tolist() == [0, 1]
    assert records[0].flags["truncated"].tolist() == [1, 0]
    (tmp_path / "JPEGImages").mkdir()
    assert read_voc(tmp_path)[0].image_path == (tmp_path / "JPEGImages" / "a.jpg").resolve()
    assert read_voc(tmp_path)[0].num_faces == 3


VOC_ERRORS = {
    "broken XML": ("<annotation>\n<filename>a.jpg</filename>\n<object>\n</annotation>\n", 4, "invalid XML"),
    "no bndbox": ("<annotation>\n<filename>a.jpg</filename>\n<object>\n<name>face</name>\n</object>\n"
                  "</annotation>\n", 3, "missing <bndbox>"),
    "text in xmin": ("<annotation><filename>a.jpg</filename>\n<object><name>face</name><bndbox>\n<xmin>ten</xmin>"
                     "<ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object></annotation>", 3,
                     "xmin: 'ten' is not a number"),
    "reversed box": ("<annotation><filename>a.jpg</filename><object><name>face</name>\n<bndbox><xmin>9</xmin>"
                     "<ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object></annotation>", 2, "before xmin"),
    "no filename": ("<annotation>\n<object/>\n</annotation>", 1, "missing <filename>"),
    "doctype": ('<?xml version="1.0"?>\n<!DOCTYPE a [<!ENTITY x "y">]>\n<annotation/>', 2, "document type"),
    "not VOC": ("<svg>\n</svg>", 1, "expected an <annotation>"),
}


@pytest.mark.parametrize("case", sorted(VOC_ERRORS))
def test_voc_errors_name_the_file_and_line(tmp_path, case):
    content, line, message = VOC_ERRORS[case]
    path = write(tmp_path / "a.xml", content)
    with pytest.raises(AnnotationError, match=message) as caught:
        read_voc(tmp_path)
    assert str(caught.value).startswith(f"{path}:{line}: ")


def test_voc_reads_the_encoding_its_declaration_names(tmp_path):
    """Older labelling tools on Windows declare ISO-8859-1; the declaration says how to read the bytes."""
    text = '<?xml version="1.0" encoding="ISO-8859-1"?>\n' + VOC.format(name="caf\u00e9.jpg")
    (tmp_path / "a.xml").write_bytes(text.encode("latin-1"))
    assert read_voc(tmp_path)[0].name == "caf\u00e9.jpg"
    (tmp_path / "a.xml").write_bytes(text.replace("ISO-8859-1", "x-unknown").encode("latin-1"))
    with pytest.raises(AnnotationError, match=r"a\.xml:1: unknown encoding 'x-unknown'"):
        read_voc(tmp_path)
    # The same bytes declared UTF-8: refused, naming the line of the bad byte.
    (tmp_path / "a.xml").write_bytes(text.replace("ISO-8859-1", "UTF-8").encode("latin-1"))
    with pytest.raises(AnnotationError, match=r"a\.xml:4: not UTF-8"):
        read_voc(tmp_path)


def test_voc_refuses_two_files_for_one_image(tmp_path):
    write(tmp_path / "Annotations" / "a.xml", VOC.format(name="a.jpg"))
    copy = write(tmp_path / "Annotations" / "a-copy.xml", VOC.format(name="a.jpg"))
    with pytest.raises(AnnotationError, match="image 'a.jpg' is listed twice") as caught:
        read_voc(tmp_path)
    assert str(caught.value).startswith(str(tmp_path / "Annotations" / "a.xml")) and str(copy) in str(caught.value)


# --------------------------------------------------------------------------------------------
# Detection from the path, the CLI, data convert


def test_format_is_told_from_the_path(tmp_path):
    assert detect_format(write(tmp_path / "x.json", "{}")) == "coco"
    assert detect_format(write(tmp_path / "d.yaml", "train: a")) == "yolo"
    assert detect_format(write(tmp_path / "gt.txt", "ev/a.jpg\n1\n1 2 3 4 0 0 0 0 0 0\n")) == "wider"
    assert detect_format(write(tmp_path / "list.txt", "images/a.jpg\nimages/b.png\n")) == "yolo"
    assert detect_format(yolo_set(tmp_path / "y")) == "yolo"
    write(tmp_path / "voc" / "Annotations" / "a.xml", VOC.format(name="a.jpg"))
    assert detect_format(tmp_path / "voc") == "voc"
    (tmp_path / "fddb" / "FDDB-folds").mkdir(parents=True)
    assert detect_format(tmp_path / "fddb") == "fddb"
    with pytest.raises(UserError, match="pass --format"):
        detect_format(write(tmp_path / "odd.txt", "hello world\n"))
    # A landmark list one field short: the error names the line and what it held.
    short = write(tmp_path / "short.txt", "\n" + "a.jpg " + " ".join(["1"] * 13) + "\n")
    with pytest.raises(AnnotationError, match=r"short\.txt:2: cannot tell the dataset format from 14 fields: "
                                              r"not the layout of .*LFW\+Net or MTFL; pass --format"):
        detect_format(short)
    with pytest.raises(AnnotationError, match=r"empty\.txt: cannot tell the dataset format \(empty landmark list\): not the layout"):
        detect_format(write(tmp_path / "empty.txt", ""))


def test_data_check_reads_each_format_and_reports_errors_on_one_line(cli_runner, tmp_path):
    root = yolo_set(tmp_path / "y")
    result = cli_runner("data", "check", root, "--classes", "0")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("yolo ") and "3 images" in result.stdout and "3 faces" in result.stdout
    assert "box height/width median 1.00." in result.stdout   # 0.2 x 0.4 of 200 x 100, 0.1 x 0.2, 0.5 x 0.5
    bad = write(tmp_path / "ann.json", json.dumps(coco_doc(annotations=[{"id": 3, "image_id": 1, "bbox": [1]}])))
    result = cli_runner("data", "check", bad)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [f"error: {bad}: annotations[0] (id 3): category_id: expected a whole "
                                          "number or text, got None"]


def wider_set(root: Path, seed: int = 0) -> tuple[Path, Path]:
    """A small WIDER-format set with real image files, integer boxes and an invalid face."""
    rng = np.random.default_rng(seed)
    lines = []
    for k in range(4):
        name = f"{k % 2}--Ev/img_{k}.jpg"
        image(root / "images" / name, int(rng.integers(50, 400)), int(rng.integers(50, 400)))
        lines += [name, str(k)] + [f"{rng.integers(0, 300)} {rng.integers(0, 300)} {rng.integers(0, 90)} "
                                   f"{rng.integers(0, 90)} 0 0 0 {int(j == 1)} 0 0 " for j in range(k)]
        if k == 0:
            lines.append("0 0 0 0 0 0 0 0 0 0 ")
    return write(root / "gt.txt", "\n".join(lines) + "\n"), root / "images"


@pytest.mark.parametrize("target", ["coco", "yolo"])
def test_convert_round_trip_keeps_boxes_and_invalid_flags(tmp_path, target):
    gt, images = wider_set(tmp_path / "w")
    middle = tmp_path / ("set.json" if target == "coco" else "yolo")
    report = convert_dataset("wider", gt, target, middle, images)
    assert (report.images, report.faces, report.invalid_faces) == (4, 6, 2)
    back = tmp_path / "back.txt"
    convert_dataset("auto", middle / "data.yaml" if target == "yolo" else middle, "wider", back)
    original, again = read_wider(gt, images), read_wider(back, images)
    assert [r.name for r in again] == [r.name for r in original]
    for a, b in zip(original, again):
        np.testing.assert_array_equal(a.boxes, b.boxes)
        assert a.flags["invalid"].tolist() == b.flags["invalid"].tolist()
    if target == "coco":
        assert back.read_text() == gt.read_text()    # every WIDER flag rides along in COCO attributes


def test_convert_never_overwrites_and_names_missing_images(tmp_path):
    gt, images = wider_set(tmp_path / "w")
    with pytest.raises(UserError, match="is the input"):
        convert_dataset("wider", gt, "wider", gt, images)
    taken = write(tmp_path / "taken.json", "{}")
    with pytest.raises(UserError, match="never overwrites"):
        convert_dataset("wider", gt, "coco", taken, images)
    assert taken.read_text() == "{}"
    write(tmp_path / "y" / "keep.txt", "x")
    with pytest.raises(UserError, match="not an empty folder"):
        convert_dataset("wider", gt, "yolo", tmp_path / "y", images)
    (images / "1--Ev" / "img_3.jpg").unlink()
    with pytest.raises(AnnotationError, match="image not found") as caught:
        convert_dataset("wider", gt, "coco", tmp_path / "out.json", images)
    assert str(caught.value).startswith(f"{gt}:")
    report = convert_dataset("wider", gt, "coco", tmp_path / "out.json", images, skip_missing=True)
    assert report.images == 3 and len(report.missing_images) == 1
    assert not list(tmp_path.glob(".tmp-*"))


def test_fddb_to_coco_keeps_the_ellipse_boxes(tmp_path):
    from mtcnn_train.datasets.fddb import read_fddb

    from mtcnn_train.synthetic import make_synthetic

    make_synthetic(tmp_path / "syn", num_images=8, seed=3)
    fddb_root = tmp_path / "syn" / "fddb"
    report = convert_dataset("fddb", fddb_root, "coco", tmp_path / "fddb.json",
                             options=ReadOptions(folds=(1,)))
    original = read_fddb(fddb_root, [1])
    converted = read_dataset("auto", tmp_path / "fddb.json")
    assert report.images == len(original) == len(converted)
    assert [r.image_path for r in converted] == [r.image_path for r in original]
    for a, b in zip(original, converted):
        np.testing.assert_array_equal(a.boxes, b.boxes)   # geometry.ellipse_to_box, bit for bit
    # A landmark list becomes COCO keypoints and comes back as the same points.
    celeba = next((tmp_path / "syn" / "celeba").rglob("list_landmarks_celeba.txt"))
    convert_dataset("auto", celeba, "coco", tmp_path / "celeba.json")
    points = read_dataset("auto", celeba)
    back = read_dataset("coco", tmp_path / "celeba.json")
    np.testing.assert_array_equal(np.concatenate([r.landmarks for r in back]),
                                  np.concatenate([r.landmarks for r in points]))


def test_write_wider_of_the_reader_output_is_stable(tmp_path):
    gt, images = wider_set(tmp_path / "w")
    write_wider(read_wider(gt, images), tmp_path / "again.txt")
    assert (tmp_path / "again.txt").read_text() == gt.read_text()


# --------------------------------------------------------------------------------------------
# Property: WIDER -> FORMAT -> WIDER returns the same boxes

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

SIZES = [(640, 480), (37, 1000), (1919, 1079)]


@pytest.fixture(scope="module")
def sized_images(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sized")
    for k, (width, height) in enumerate(SIZES):
        image(root / "ev" / f"{k}.png", width, height)
    return root


_whole = st.integers(0, 4000)
_face = st.tuples(_whole, _whole, st.integers(0, 2000), st.integers(0, 2000), st.integers(0, 1))
_float = st.floats(0, 4000, width=32)
_float_face = st.tuples(_float, _float, st.floats(0, 2000, width=32), st.floats(0, 2000, width=32), st.integers(0, 1))


def _round_trip(folder: Path, images: Path, faces: list[list[tuple]], target: str):
    from mtcnn_train.datasets.records import FaceRecord

    records = [FaceRecord(images / "ev" / f"{k}.png", boxes=[(x, y, x + w, y + h) for x, y, w, h, _ in fs],
                          flags={"invalid": [bad for *_, bad in fs]}, name=f"ev/{k}.png")
               for k, fs in enumerate(faces)]
    write_wider(records, folder / "gt.txt")
    middle = folder / ("mid.json" if target == "coco" else "mid")
    convert_dataset("wider", folder / "gt.txt", target, middle, images)
    convert_dataset(target, middle if target == "coco" else middle / "data.yaml", "wider", folder / "back.txt")
    return read_wider(folder / "gt.txt", images), read_wider(folder / "back.txt", images)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(faces=st.lists(st.lists(_face, max_size=5), min_size=1, max_size=len(SIZES)),
       target=st.sampled_from(["coco", "yolo"]))
def test_wider_to_format_to_wider_returns_the_same_boxes(sized_images, tmp_path_factory, faces, target):
    original, back = _round_trip(tmp_path_factory.mktemp("trip"), sized_images, faces, target)
    assert [r.name for r in back] == [r.name for r in original]
    for a, b in zip(original, back):
        np.testing.assert_array_equal(a.boxes, b.boxes)
        assert a.flags["invalid"].tolist() == b.flags["invalid"].tolist()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(faces=st.lists(st.lists(_float_face, max_size=5), min_size=1, max_size=len(SIZES)))
def test_fractional_boxes_survive_coco_bit_for_bit(sized_images, tmp_path_factory, faces):
    # (WIDER's own text, x y w h, rounds fractional widths to float32; COCO keeps the boxes exact.)
    from mtcnn_train.datasets.coco import write_coco
    from mtcnn_train.datasets.records import FaceRecord

    records = [FaceRecord(sized_images / "ev" / f"{k}.png", boxes=[(x, y, x + w, y + h) for x, y, w, h, _ in fs],
                          flags={"invalid": [bad for *_, bad in fs]}, name=f"ev/{k}.png")
               for k, fs in enumerate(faces)]
    path = tmp_path_factory.mktemp("coco") / "set.json"
    write_coco(records, path, [r.name for r in records], [SIZES[k] for k in range(len(records))], sized_images)
    for a, b in zip(records, read_coco(path)):
        np.testing.assert_array_equal(a.boxes, b.boxes)
        assert a.flags["invalid"].tolist() == b.flags["invalid"].tolist()
