"""One rule for the numbers every reader takes in (annotation_text.parse_number / check_number)."""
from __future__ import annotations

import json

import pytest

from mtcnn_train.datasets.annotation_text import (MAX_COORDINATE, MAX_DRAWN_COORDINATE, check_number, is_number,
                                                  parse_count, parse_flag, parse_number)
from mtcnn_train.datasets.coco import read_coco
from mtcnn_train.errors import AnnotationError


def test_text_numbers():
    assert parse_number("12.5", "f.txt", 3, "x") == 12.5
    assert parse_number("1e9", "f.txt", 3, "score", limit=None) == 1e9
    with pytest.raises(AnnotationError, match=r"f\.txt:3: x: '1e9' is out of range \(limit 1e\+06\)"):
        parse_number("1e9", "f.txt", 3, "x")
    with pytest.raises(AnnotationError, match="'x1' is not a number"):
        parse_number("x1", "f.txt", 3, "x")
    assert MAX_COORDINATE < MAX_DRAWN_COORDINATE
    # Python's own readers take "1_0" for 10; in an annotation file it is a typo, not a number.
    with pytest.raises(AnnotationError, match="'1_0' is not a number"):
        parse_number("1_0", "f.txt", 3, "x")
    with pytest.raises(AnnotationError, match="face count: expected a whole number, got '1_0'"):
        parse_count("1_0", "f.txt", 3)
    assert not is_number("1_0") and is_number("10") and parse_count("10", "f.txt", 3) == 10
    with pytest.raises(AnnotationError, match="blur: '2147483648' is out of range"):
        parse_flag("2147483648", "f.txt", 3, "blur")  # flags are kept as int32


def test_json_numbers_follow_the_same_rule(tmp_path):
    assert check_number(3.0, 3, "a.json", None, "bbox[0]") == 3.0
    doc = {"images": [{"id": 1, "file_name": "a.jpg", "width": 10, "height": 10}],
           "categories": [{"id": 1, "name": "face"}],
           "annotations": [{"id": 9, "image_id": 1, "category_id": 1, "bbox": [1, 2e7, 3, 4]}]}
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(AnnotationError, match=r"bbox\[1\]: 20000000.0 is out of range \(limit 1e\+06\)"):
        read_coco(path)
