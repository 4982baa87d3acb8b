"""CelebA, CelebA aligned, LFW+Net and MTFL landmark lists on small hand-written files."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mtcnn_train.datasets.landmarks import (
    DETECTION_BOX_SCALE,
    HAND_DRAWN_BOX_SCALE,
    HAND_DRAWN_CENTRE_SHIFT,
    box_from_landmarks,
    detect_landmark_format,
    read_landmarks,
    write_celeba,
)
from mtcnn_train.datasets.records import FaceRecord
from mtcnn_train.errors import AnnotationError
from mtcnn_train.io import save_image

CELEBA_LANDMARKS = """\
2
lefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x leftmouth_y rightmouth_x rightmouth_y
000001.jpg 165  184  244  176  196  249  194  271  266  260
000002.jpg 140  204  220  204  168  254  146  289  226  289
"""
CELEBA_BBOX = """\
2
image_id x_1 y_1 width height
000002.jpg    72  94 221 306
000001.jpg    95  71 226 313
"""
# Eyes at (70, 110) and (110, 110), mouth corners at (75, 150) and (105, 150).
CELEBA_ALIGNED = """\
1
lefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x leftmouth_y rightmouth_x rightmouth_y
000001.jpg 70 110 110 110 90 130 75 150 105 150
"""
LFW_NET = ("lfw_5590\\Aaron_Eckhart_0001.jpg 84 161 92 169 106.250000 107.750000 146.750000 112.250000 "
           "125.250000 142.750000 105.250000 157.750000 139.750000 161.750000\r\n"
           "net_7876\\1_2_3.jpg 10 50 20 70.5 20 30 40 30 30 45 22 60 38 60\r\n")
# Official MTFL (training.txt): x1..x5 y1..y5, then gender smile glasses pose; whole photos.
MTFL_OFFICIAL = "lfw_5590\\Aaron_Eckhart_0001.jpg 70 110 90 75 105 110 110 130 150 150 1 2 2 3\r\n"
MTFL = ("lfw_5590/a.jpg 34.32 47.28 40.4 34.0 45.04 34.8 36.24 46.0 50.8 52.08\n"
        "AFLW/b.jpg 10 20 15 11 19 12 12 16 22 22\n")


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode())
    return path


def make_celeba(root: Path, folder: str = "Anno") -> Path:
    write(root / folder / "list_bbox_celeba.txt", CELEBA_BBOX)
    return write(root / folder / "list_landmarks_celeba.txt", CELEBA_LANDMARKS)


def test_celeba_joins_boxes_by_name_and_finds_img_celeba_beside_anno(tmp_path):
    (tmp_path / "img_celeba").mkdir()
    records = read_landmarks(make_celeba(tmp_path))
    assert [r.name for r in records] == ["000001.jpg", "000002.jpg"]
    np.testing.assert_array_equal(records[0].boxes, [[95, 71, 321, 384]])
    np.testing.assert_array_equal(records[1].boxes, [[72, 94, 293, 400]])
    np.testing.assert_array_equal(records[0].landmarks,
                                  [[[165, 184], [244, 176], [196, 249], [194, 271], [266, 260]]])
    assert records[0].landmarks.shape == (1, 5, 2) and records[0].landmarks.dtype == np.float32
    assert records[1].image_path == (tmp_path / "img_celeba" / "000002.jpg").resolve()
    assert records[1].source.endswith("list_landmarks_celeba.txt:4")
    assert records[0].flags["invalid"].tolist() == [0]


def test_celeba_image_folder_defaults(tmp_path):
    # Lists beside img_celeba/ (no Anno/ folder).
    flat = make_celeba(tmp_path / "flat", folder=".")
    (tmp_path / "flat" / "img_celeba").mkdir()
    assert read_landmarks(flat)[0].image_path.parent == (tmp_path / "flat" / "img_celeba").resolve()
    # Nothing on disk yet: Anno/ lists point at the parent's img_celeba.
    anno = make_celeba(tmp_path / "bare")
    assert read_landmarks(anno)[0].image_path.parent == (tmp_path / "bare" / "img_celeba").resolve()
    # The official download: Anno/ beside Img/img_celeba/.
    official = make_celeba(tmp_path / "official")
    (tmp_path / "official" / "Img" / "img_celeba").mkdir(parents=True)
    assert read_landmarks(official)[0].image_path.parent == (tmp_path / "official" / "Img" / "img_celeba").resolve()
    # An explicit folder wins.
    assert read_landmarks(anno, tmp_path / "x")[0].image_path == (tmp_path / "x" / "000001.jpg").resolve()


def test_celeba_aligned_derives_the_box_from_the_landmarks(tmp_path):
    path = write(tmp_path / "list_landmarks_align_celeba.txt", CELEBA_ALIGNED)
    (record,) = read_landmarks(path)
    # e = (90, 110), m = (90, 150), v = (0, 40): side 2.44 * 40 = 97.6, centre (90, 130 - 0.14 * 40).
    np.testing.assert_allclose(record.boxes, [[41.2, 75.6, 138.8, 173.2]], atol=1e-4)
    assert record.image_path == (tmp_path / "img_align_celeba" / "000001.jpg").resolve()


def test_box_from_landmarks_turns_with_the_face():
    upright = np.array([[70, 110], [110, 110], [90, 130], [75, 150], [105, 150]], dtype=float)
    # The same face turned 90 degrees (eyes on the right, mouth on the left) gives the same square.
    turned = np.stack([200 - upright[:, 1], upright[:, 0]], axis=1)
    a, b = box_from_landmarks(upright)[0], box_from_landmarks(turned)[0]
    assert a[2] - a[0] == pytest.approx(DETECTION_BOX_SCALE * 40) == b[2] - b[0]
    assert b[3] - b[1] == pytest.approx(a[3] - a[1])
    # The face is framed from above the eyes: the centre sits 0.14 |v| towards the eyes.
    assert (a[1] + a[3]) / 2 == pytest.approx(130 - 0.14 * 40)
    assert (b[0] + b[2]) / 2 == pytest.approx(200 - 130 + 0.14 * 40)
    hand_drawn = box_from_landmarks(upright, HAND_DRAWN_BOX_SCALE, HAND_DRAWN_CENTRE_SHIFT)[0]
    np.testing.assert_allclose(hand_drawn, [51, 90.2, 129, 168.2], atol=1e-4)
    assert box_from_landmarks(np.zeros((0, 5, 2))).shape == (0, 4)


def test_lfw_net_backslash_paths_and_left_right_top_bottom_boxes(tmp_path):
    path = write(tmp_path / "trainImageList.txt", LFW_NET)
    records = read_landmarks(path)
    assert records[0].name == "lfw_5590\\Aaron_Eckhart_0001.jpg"
    assert records[0].image_path == (tmp_path / "lfw_5590" / "Aaron_Eckhart_0001.jpg").resolve()
    np.testing.assert_array_equal(records[0].boxes, [[84, 92, 161, 169]])
    np.testing.assert_array_equal(records[1].boxes, [[10, 20, 50, 70.5]])
    np.testing.assert_array_equal(records[1].landmarks, [[[20, 30], [40, 30], [30, 45], [22, 60], [38, 60]]])
    np.testing.assert_allclose(records[0].landmarks[0, 4], [139.75, 161.75])


def test_mtfl_box_is_the_whole_image_from_its_header(tmp_path):
    save_image(tmp_path / "lfw_5590" / "a.jpg", np.zeros((80, 80, 3), np.uint8))
    save_image(tmp_path / "AFLW" / "b.jpg", np.zeros((48, 64, 3), np.uint8))
    records = read_landmarks(write(tmp_path / "new_training.txt", MTFL))
    np.testing.assert_array_equal(records[0].boxes, [[0, 0, 80, 80]])
    np.testing.assert_array_equal(records[1].boxes, [[0, 0, 64, 48]])
    # All five x values, then all five y values.
    np.testing.assert_allclose(records[0].landmarks[0],
                               [[34.32, 34.8], [47.28, 36.24], [40.4, 46.0], [34.0, 50.8], [45.04, 52.08]], rtol=1e-6)
    np.testing.assert_array_equal(records[1].landmarks[0], [[10, 12], [20, 12], [15, 16], [11, 22], [19, 22]])


def test_official_mtfl_boxes_come_from_the_landmarks_and_attributes_become_flags(tmp_path):
    path = write(tmp_path / "training.txt", MTFL_OFFICIAL)
    assert detect_landmark_format(path) == "mtfl"
    (record,) = read_landmarks(path)  # no image needed: the box does not depend on its size
    np.testing.assert_array_equal(record.landmarks[0], [[70, 110], [110, 110], [90, 130], [75, 150], [105, 150]])
    np.testing.assert_allclose(record.boxes, [[41.2, 75.6, 138.8, 173.2]], atol=1e-4)
    assert {k: v.tolist() for k, v in record.flags.items()} == {
        "gender": [1], "smile": [2], "glasses": [2], "pose": [3], "invalid": [0]}
    assert record.image_path == (tmp_path / "lfw_5590" / "Aaron_Eckhart_0001.jpg").resolve()


def test_mtfl_missing_image_names_the_line_unless_a_default_size_is_given(tmp_path):
    save_image(tmp_path / "lfw_5590" / "a.jpg", np.zeros((80, 80, 3), np.uint8))
    path = write(tmp_path / "new_training.txt", MTFL)
    with pytest.raises(AnnotationError, match="image not found") as info:
        read_landmarks(path)
    assert info.value.line == 2
    records = read_landmarks(path, default_size=(70, 60))
    np.testing.assert_array_equal(records[1].boxes, [[0, 0, 70, 60]])
    np.testing.assert_array_equal(records[0].boxes, [[0, 0, 80, 80]])


def test_mtfl_corrupt_image_is_an_error_even_with_a_default_size(tmp_path):
    write(tmp_path / "lfw_5590" / "a.jpg", "not a jpeg")
    with pytest.raises(AnnotationError, match="not a readable image") as info:
        read_landmarks(write(tmp_path / "list.txt", MTFL.splitlines()[0]), default_size=(80, 80))
    assert info.value.line == 1


def test_derive_boxes_replaces_the_file_boxes(tmp_path):
    records = read_landmarks(write(tmp_path / "trainImageList.txt", LFW_NET), derive_boxes=True)
    np.testing.assert_allclose(records[1].boxes, box_from_landmarks(records[1].landmarks), atol=1e-4)


def test_detect_format_by_name_and_by_content(tmp_path):
    celeba = make_celeba(tmp_path)
    assert detect_landmark_format(celeba) == "celeba"
    aligned = write(tmp_path / "list_landmarks_align_celeba.txt", CELEBA_ALIGNED)
    assert detect_landmark_format(aligned) == "celeba-aligned"
    renamed = write(tmp_path / "Anno" / "my_list.txt", CELEBA_LANDMARKS)  # bbox list beside it
    assert detect_landmark_format(renamed) == "celeba"
    assert detect_landmark_format(write(tmp_path / "other" / "my_list.txt", CELEBA_LANDMARKS)) == "celeba-aligned"
    assert detect_landmark_format(write(tmp_path / "a.txt", LFW_NET)) == "lfw-net"
    assert detect_landmark_format(write(tmp_path / "b.txt", MTFL)) == "mtfl"
    with pytest.raises(AnnotationError, match="cannot tell") as info:
        detect_landmark_format(write(tmp_path / "c.txt", "\nx.jpg 1 2 3\n"))
    assert info.value.line == 2
    with pytest.raises(AnnotationError, match="empty"):
        detect_landmark_format(write(tmp_path / "d.txt", ""))


def test_write_celeba_round_trip(tmp_path):
    points = np.array([[[10.5, 20], [30, 20.25], [20, 30], [12, 40], [28, 40]]], dtype=np.float32)
    records = [FaceRecord(image_path=tmp_path / "img_celeba" / f"{k:06d}.jpg", boxes=[[1 + k, 2, 41.5, 52]],
                          landmarks=points + k, name=f"{k:06d}.jpg") for k in range(3)]
    bbox, lms = write_celeba(records, tmp_path)
    assert bbox.read_text().splitlines()[:3] == ["3", "image_id x_1 y_1 width height", "000000.jpg 1 2 40.5 50"]
    assert lms.read_text().splitlines()[2] == "000000.jpg 10.5 20 30 20.25 20 30 12 40 28 40"
    back = read_landmarks(lms)
    for a, b in zip(records, back):
        assert a.name == b.name and a.image_path.resolve() == b.image_path
        np.testing.assert_array_equal(a.boxes, b.boxes)
        np.testing.assert_array_equal(a.landmarks, b.landmarks)


def test_write_celeba_refuses_records_it_cannot_represent(tmp_path):
    two_faces = FaceRecord(image_path=tmp_path / "a.jpg", boxes=np.zeros((2, 4)), landmarks=np.zeros((2, 5, 2)),
                           name="a.jpg")
    with pytest.raises(ValueError, match="exactly one face"):
        write_celeba([two_faces], tmp_path)
    no_landmarks = FaceRecord(image_path=tmp_path / "a.jpg", boxes=np.zeros((1, 4)), name="a.jpg")
    with pytest.raises(ValueError, match="exactly one face"):
        write_celeba([no_landmarks], tmp_path)


@pytest.mark.parametrize("fmt, files, bad, line, reason", [
    ("celeba", {"list_bbox_celeba.txt": CELEBA_BBOX},
     CELEBA_LANDMARKS.replace("2\n", "3\n", 1), 1, "count line says 3 images but the file lists 2"),
    ("celeba", {"list_bbox_celeba.txt": CELEBA_BBOX},
     CELEBA_LANDMARKS.replace("lefteye_x", "12"), 2, "expected a header line"),
    ("celeba", {"list_bbox_celeba.txt": CELEBA_BBOX.replace("000002.jpg", "000003.jpg")},
     CELEBA_LANDMARKS, 4, "has no box"),
    ("celeba", {"list_bbox_celeba.txt": CELEBA_BBOX}, CELEBA_LANDMARKS.replace(" 244 ", " 2x4 "), 3, "not a number"),
    ("celeba", {"list_bbox_celeba.txt": CELEBA_BBOX}, CELEBA_LANDMARKS.replace(" 260", ""), 3, "expected 11 fields"),
    ("celeba", {}, CELEBA_LANDMARKS, None, "needs list_bbox_celeba.txt"),
    ("lfw-net", {}, LFW_NET.replace(" 84 161 ", " 184 161 "), 1, "negative box size"),
    ("lfw-net", {}, LFW_NET.replace("106.250000", "nan"), 1, "not a finite number"),
    ("lfw-net", {}, LFW_NET.replace("net_7876\\", "..\\..\\"), 2, "escapes the dataset root"),
    ("lfw-net", {}, LFW_NET.replace(" 139.750000 161.750000", ""), 1, "expected 15 fields"),
    ("mtfl", {}, "C:\\img\\a.jpg 1 2 3 4 5 1 2 3 4 5\n", 1, "is absolute"),
    ("mtfl", {}, "a.jpg 1 2 3 4 5 1 2 3 4 -inf\n", 1, "not a finite number"),
])
def test_malformed_lists_name_the_file_and_line(tmp_path, fmt, files, bad, line, reason):
    for name, text in files.items():
        write(tmp_path / name, text)
    path = write(tmp_path / "list_landmarks_celeba.txt" if fmt == "celeba" else tmp_path / "list.txt", bad)
    with pytest.raises(AnnotationError, match=reason) as info:
        read_landmarks(path, fmt=fmt, default_size=(80, 80))
    assert info.value.line == line
    assert info.value.path in (path, tmp_path / "list_bbox_celeba.txt")


def test_negative_celeba_box_names_the_bbox_file(tmp_path):
    make_celeba(tmp_path)
    write(tmp_path / "Anno" / "list_bbox_celeba.txt", CELEBA_BBOX.replace(" 221 ", " -221 "))
    with pytest.raises(AnnotationError, match="negative box size") as info:
        read_landmarks(tmp_path / "Anno" / "list_landmarks_celeba.txt")
    assert info.value.path.name == "list_bbox_celeba.txt" and info.value.line == 3


def test_unknown_format_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown landmark format"):
        read_landmarks(write(tmp_path / "a.txt", MTFL), fmt="ibug")


# --------------------------------------------------------------------------------------------
# The list as arrays (what a sample run holds of CelebA's 202,599 faces)


def test_table_rows_are_the_records_read_landmarks_gives(tmp_path):
    from mtcnn_train.datasets.landmarks import LandmarkTable, read_landmark_table

    lists = [make_celeba(tmp_path / "celeba"), write(tmp_path / "lfw" / "trainImageList.txt", LFW_NET),
             write(tmp_path / "mtfl" / "training.txt", MTFL_OFFICIAL)]
    for list_file in lists:
        records = read_landmarks(list_file)
        table = read_landmark_table(list_file)
        assert len(table) == len(records)
        for row, record in enumerate(records):
            built = table.record(row)
            assert (built.image_path, built.name, built.source) == (record.image_path, record.name, record.source)
            assert table.key(row) == record.name
            np.testing.assert_array_equal(built.boxes, record.boxes)
            np.testing.assert_array_equal(built.landmarks, record.landmarks)
            assert built.flags.keys() == record.flags.keys()
            for flag in record.flags:
                np.testing.assert_array_equal(built.flags[flag], record.flags[flag])
        # from_records and concat give the same rows back; take picks rows in the order asked.
        again = LandmarkTable.from_records(records)
        both = LandmarkTable.concat([table, again])
        assert len(both) == 2 * len(table)
        for row in range(len(table)):
            for copy in (again.record(row), both.record(row), both.record(len(table) + row)):
                assert (copy.image_path, copy.name, copy.source) == (records[row].image_path, records[row].name,
                                                                     records[row].source)
                np.testing.assert_array_equal(copy.landmarks, records[row].landmarks)
        picked = table.take([len(table) - 1, 0])
        assert [r.name for r in picked] == [records[-1].name, records[0].name]
    flagged = read_landmark_table(lists[2])
    assert int(flagged.flags["pose"][0]) == 3 and int(flagged.flags["gender"][0]) == 1


def test_a_record_from_the_table_is_its_own_copy(tmp_path):
    from mtcnn_train.datasets.landmarks import read_landmark_table

    table = read_landmark_table(make_celeba(tmp_path))
    record = table.record(0)
    record.boxes[0, 0] = -5
    record.landmarks[0, 0, 0] = -5
    assert table.boxes[0, 0] != -5 and table.landmarks[0, 0, 0] != -5


def test_the_table_refuses_what_is_not_one_face_with_landmarks(tmp_path):
    from mtcnn_train.datasets.landmarks import LandmarkTable

    with pytest.raises(ValueError, match="one face with landmarks"):
        LandmarkTable.from_records([FaceRecord(image_path=tmp_path / "a.jpg", boxes=[[0, 0, 10, 10]], source="x:3")])
    two = FaceRecord(image_path=tmp_path / "a.jpg", boxes=np.zeros((2, 4)), landmarks=np.zeros((2, 5, 2)))
    with pytest.raises(ValueError, match="2 face"):
        LandmarkTable.from_records([two])


def test_a_large_list_costs_a_small_fraction_of_its_records(tmp_path):
    """The point of the table: CelebA's 202,599 faces as records hold about 450 MB (2.3 KB a
    face, docs/SCALING.md); as a table a face costs its numbers and two short strings."""
    import tracemalloc

    from mtcnn_train.datasets.landmarks import read_landmark_table

    faces = 20_000
    rows = [f"img_{k:06d}.jpg 70 110 110 110 90 130 75 150 105 150" for k in range(faces)]
    list_file = write(tmp_path / "list_landmarks_align_celeba.txt",
                      "\n".join([str(faces), CELEBA_ALIGNED.splitlines()[1], *rows]) + "\n")
    read_landmark_table(list_file)  # first-time imports and caches are not the table's
    tracemalloc.start()
    try:
        table = read_landmark_table(list_file)
        table_bytes = tracemalloc.get_traced_memory()[0]
        records = table.records()
        records_bytes = tracemalloc.get_traced_memory()[0] - table_bytes
    finally:
        tracemalloc.stop()
    assert len(table) == len(records) == faces
    assert table_bytes / faces < 300
    assert records_bytes > 4 * table_bytes
