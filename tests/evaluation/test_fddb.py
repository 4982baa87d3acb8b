"""FDDB scoring: the official program's conventions, each checked on a small hand-built case."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from mtcnn_train.errors import AnnotationError
from mtcnn_train.evaluation import fddb


def _filled_ellipse(h, w, centre, axes, angle_deg):
    mask = np.zeros((h, w), np.uint8)
    cv2.ellipse(mask, centre, axes, angle_deg, 0, 360, 1, -1)
    return mask.astype(bool)


# ---- formatting --------------------------------------------------------------------------------


@pytest.mark.parametrize("value, text", [
    (2 / 3, "0.666667"), (12.0, "12"), (0.0, "0"), (1.0, "1"), (0.123456789, "0.123457"),
    (1e-7, "1e-07"), (1234567.0, "1.23457e+06"), (0.5, "0.5"), (1.7976931348623157e308, "1.79769e+308"),
])
def test_numbers_print_like_cpp_ostream(value, text):
    assert fddb.format_cpp_double(value) == text


def test_roc_files_have_the_official_layout(tmp_path):
    disc = np.array([[2 / 3, 4, 0.25], [0.5, 1, 0.9], [0, 0, fddb.NO_DETECTION_THRESHOLD]])
    fddb.write_roc(tmp_path / "DiscROC.txt", disc)
    fddb.write_roc(tmp_path / "ContROC.txt", disc[:, :2])
    assert (tmp_path / "DiscROC.txt").read_text() == "0.666667 4 0.25\n0.5 1 0.9\n0 0 1.79769e+308\n"
    assert (tmp_path / "ContROC.txt").read_text() == "0.666667 4\n0.5 1\n0 0\n"
    assert np.allclose(fddb.read_roc(tmp_path / "DiscROC.txt")[:2], disc[:2], atol=1e-6)


# ---- rasterisation -----------------------------------------------------------------------------


def test_ellipse_parameters_are_rounded_like_the_official_calls():
    # centre: float32 then nearest, ties to even; axes truncated; angle 180 - (pi - t)*180/pi rounded
    e = np.array([[10.9, 5.99, math.pi / 2, 20.5, 31.5], [7.2, 3.7, 0.3, 10.49, 2.51]])
    cx, cy, a, b, angle = fddb.ellipse_draw_params(e).T
    assert cx.tolist() == [20, 10] and cy.tolist() == [32, 3]
    assert a.tolist() == [10, 7] and b.tolist() == [5, 3]
    assert angle.tolist() == [90, 17]  # 0.3 rad = 17.19 degrees


def test_rectangle_covers_both_corner_pixels():
    corners = fddb.rectangle_corners(np.array([[2.4, 3.6, 3.0, 4.0], [5.0, 5.0, -2.0, -2.0]]))
    assert corners.tolist() == [[2, 4, 5, 8], [3, 3, 5, 5]]  # x+w = 5.4 -> 5, y+h = 7.6 -> 8


def test_rectangle_regions_equal_opencv_filled_rectangles():
    rng = np.random.default_rng(3)
    h, w = 30, 40
    face = np.array([[12.0, 9.0, 0.4, 20.0, 15.0]])
    fmask = _filled_ellipse(h, w, (20, 15), (12, 9), 23)  # 180 - (pi - 0.4)*180/pi = 22.9 -> 23
    rects = np.concatenate([rng.uniform(-15, 45, (200, 2)), rng.uniform(-20, 30, (200, 2))], 1)
    got = fddb.region_overlaps(face, rects, h, w)[0]
    for rect, iou in zip(rects, got):
        p1 = tuple(int(v) for v in np.rint(np.float32(rect[:2])))
        p2 = tuple(int(v) for v in np.rint(np.float32(rect[:2] + rect[2:])))
        rmask = np.zeros((h, w), np.uint8)
        cv2.rectangle(rmask, p1, p2, 1, -1)
        rmask = rmask.astype(bool)
        union = (fmask | rmask).sum()
        assert iou == pytest.approx((fmask & rmask).sum() / union if union else 0.0, abs=0)


def test_rotated_ellipse_overlaps_itself_fully_and_its_quarter_turn_partly():
    face = np.array([[20.0, 8.0, 0.7, 40.0, 30.0]])
    same = np.array([[20.0, 8.0, 0.7, 40.0, 30.0, 1.0]])
    turned = np.array([[20.0, 8.0, 0.7 + math.pi / 2, 40.0, 30.0, 1.0]])
    assert fddb.region_overlaps(face, same, 60, 80, ellipse_detections=True)[0, 0] == 1.0
    a = _filled_ellipse(60, 80, (40, 30), (20, 8), 40)  # 0.7 rad = 40.1 degrees
    b = _filled_ellipse(60, 80, (40, 30), (20, 8), 130)
    expected = (a & b).sum() / (a | b).sum()
    assert fddb.region_overlaps(face, turned, 60, 80, ellipse_detections=True)[0, 0] == pytest.approx(expected, abs=0)
    assert expected < 0.5


def test_faces_and_detections_are_cut_to_the_image():
    # A circle half outside the left border, a huge box: only pixels inside the 40 x 40 image count.
    face = np.array([[10.0, 10.0, 0.0, 0.0, 20.0]])
    box = np.array([[-100.0, -100.0, 300.0, 300.0, 1.0]])
    inside = _filled_ellipse(40, 40, (0, 20), (10, 10), 180)
    expected = inside.sum() / (40 * 40)
    assert fddb.region_overlaps(face, box, 40, 40)[0, 0] == pytest.approx(expected, abs=0)
    # The visible half-disc and the box that holds it exactly: columns 0..10, rows 10..30.
    half = np.array([[0.0, 10.0, 10.0, 20.0, 1.0]])
    assert fddb.region_overlaps(face, half, 40, 40)[0, 0] == pytest.approx(inside.sum() / (11 * 21), abs=0)


def test_two_regions_wholly_outside_the_image_overlap_zero():
    face = np.array([[3.0, 2.0, 0.0, -50.0, -50.0]])
    box = np.array([[-90.0, -90.0, 10.0, 10.0, 1.0]])
    assert fddb.region_overlaps(face, box, 20, 20)[0, 0] == 0.0


# ---- matching and the ROC --------------------------------------------------------------------


def _score(faces_by_image, dets_by_image, size=(100, 100), ellipse=False):
    names = list(faces_by_image)
    return fddb.score_fddb([(n, np.array(faces_by_image[n], float).reshape(-1, 5)) for n in names],
                           {n: np.array(d, float).reshape(-1, 6 if ellipse else 5) for n, d in dets_by_image.items()},
                           {n: size for n in names}, ellipse_detections=ellipse)


def test_perfect_detections_reach_full_rate_without_false_positives():
    faces = {"a": [[20, 12, 1.2, 30, 40]], "b": [[15, 10, 0.3, 50, 50]]}
    dets = {"a": [[20, 12, 1.2, 30, 40, 0.9]], "b": [[15, 10, 0.3, 50, 50, 0.8]]}
    res = _score(faces, dets, ellipse=True)
    assert fddb.format_roc(res.disc) == "1 0 0.8\n0.5 0 0.9\n"
    assert fddb.format_roc(res.cont) == "1 0\n0.5 0\n"
    assert res.tpr_at([0, 100]) == {0: 1.0, 100: 1.0}


def test_no_detections_give_the_single_official_row():
    res = _score({"a": [[20, 12, 1.2, 30, 40]], "b": []}, {"a": [], "b": []})
    assert fddb.format_roc(res.disc) == "0 0 1.79769e+308\n"
    assert fddb.format_roc(res.cont) == "0 0\n"
    assert res.images_without_detections == 2 and res.num_faces == 1


def test_images_absent_from_the_detections_count_as_empty_and_are_reported():
    res = _score({"a": [[20, 12, 1.2, 30, 40]], "b": [[20, 12, 1.2, 30, 40]]},
                 {"a": [[20, 12, 1.2, 30, 40, 0.7]]}, ellipse=True)
    assert fddb.format_roc(res.disc) == "0.5 0 0.7\n0 0 1.79769e+308\n"
    assert res.missing_detections == ["b"]


def test_no_faces_at_all_writes_zero_rates():
    res = _score({"a": []}, {"a": [[10, 10, 20, 20, 0.4]]})
    assert fddb.format_roc(res.disc) == "0 0 0.4\n"  # the official "0 0 threshold" line
    assert fddb.format_roc(res.cont) == "0 0\n"


def test_duplicate_detections_make_one_true_positive_and_false_positives():
    faces = {"a": [[20, 12, 0.0, 50, 50]]}
    dup = [20, 12, 0.0, 50, 50]
    res = _score(faces, {"a": [dup + [0.9], dup + [0.8]]}, ellipse=True)
    assert fddb.format_roc(res.disc) == "1 1 0.8\n1 0 0.9\n"
    res = _score(faces, {"a": [dup + [0.9], dup + [0.9], dup + [0.9]]}, ellipse=True)
    assert fddb.format_roc(res.disc) == "1 2 0.9\n"


def test_tied_scores_across_images_make_one_row():
    faces = {"a": [[20, 12, 0.0, 50, 50]], "b": [[20, 12, 0.0, 50, 50]]}
    det = [20, 12, 0.0, 50, 50, 0.7]
    res = _score(faces, {"a": [det], "b": [det[:5] + [0.7], [10, 5, 0, 5, 5, 0.3]]}, ellipse=True)
    assert fddb.format_roc(res.disc) == "1 1 0.3\n1 0 0.7\n"


def test_overlap_must_exceed_one_half():
    # A 0.5 overlap exactly is not a true positive (official: score > 0.5); cont still adds it.
    overlaps = np.array([[0.5]])
    curve = fddb.image_curve(overlaps, np.array([0.9]))
    assert curve.tp_disc.tolist() == [0] and curve.fp.tolist() == [1] and curve.tp_cont.tolist() == [0.5]


@pytest.mark.parametrize("matching", ["official", "optimal"])
def test_matching_maximises_total_overlap_not_greedy(matching):
    # d1 (score 0.9) overlaps f1 0.60 and f2 0.52; d2 (0.8) overlaps f1 0.55.
    # Greedy (by score or by overlap) pairs d1-f1 and leaves f2: 1 true positive.
    # The one-to-one matching with the largest total pairs d1-f2, d2-f1: 2 true positives.
    # (The official solver finds the optimum on square matrices such as this one.)
    overlaps = np.array([[0.60, 0.55], [0.52, 0.0]])
    curve = fddb.image_curve(overlaps, np.array([0.9, 0.8]), matching=matching)
    assert curve.thresholds.tolist() == [0.8, 0.9]
    assert curve.tp_disc.tolist() == [2, 1] and curve.fp.tolist() == [0, 0]
    assert curve.tp_cont[0] == pytest.approx(0.52 + 0.55) and curve.tp_cont[1] == pytest.approx(0.60)


def test_a_case_the_official_solver_gets_wrong_is_matched_optimally_on_request():
    # Found by comparing with the official program: its Hungarian solver assigns d2->f0 (0.091)
    # here; the true optimum is d2->f2, d4->f1, d5->f3 = 1.5407.  The default reproduces the
    # official answer (tests/evaluation/test_fddb_matching.py); "optimal" finds the optimum.
    overlaps = np.array([[0.091, 0.0, 0.0043], [0.2768, 0.4947, 0.4697],
                         [0.3077, 0.0, 0.1535], [0.5701, 0.4051, 0.7383]])
    curve = fddb.image_curve(overlaps, np.array([0.5, 0.5, 0.5]), matching="optimal")
    assert curve.tp_cont[0] == pytest.approx(0.3077 + 0.4947 + 0.7383)
    assert curve.tp_disc[0] == 1  # only 0.7383 is above 0.5
    official = fddb.image_curve(overlaps, np.array([0.5, 0.5, 0.5]))
    assert official.tp_cont[0] == pytest.approx(0.091 + 0.4947 + 0.7383)


def test_tpr_at_fp_takes_the_best_rate_within_the_budget():
    roc = np.array([[0.9, 30, 0.1], [0.8, 10, 0.5], [0.85, 9, 0.6], [0.2, 0, 0.9]])
    assert fddb.tpr_at_fp(roc, 10) == 0.85
    assert fddb.tpr_at_fp(roc, 0) == 0.2
    assert fddb.tpr_at_fp(roc[:3], 5) == 0.0


# ---- detection files -----------------------------------------------------------------------


def test_detection_file_round_trip(tmp_path):
    dets = {"2002/08/11/big/img_591": np.array([[10.25, 20.5, 30.0, 40.0, 0.987654321]]),
            "2002/08/11/big/img_592": np.zeros((0, 5))}
    fddb.write_detections(tmp_path / "d.txt", dets)
    text = (tmp_path / "d.txt").read_text()
    assert text == "2002/08/11/big/img_591\n1\n10.25 20.50 30.00 40.00 0.987654321\n2002/08/11/big/img_592\n0\n"
    back = fddb.read_detections(tmp_path / "d.txt")
    assert list(back) == list(dets) and np.allclose(back["2002/08/11/big/img_591"], dets["2002/08/11/big/img_591"])


@pytest.mark.parametrize("text, line, words", [
    ("img\n2\n1 2 3 4 0.5\n", 3, "expected 2 detections"),
    ("img\nx\n", 2, "not a number"),
    ("img\n1\n1 2 3 0.5\n", 3, "expected 5 numbers"),
    ("img\n1\n1 2 nan 4 0.5\n", 3, "finite"),
    ("img\n0\nimg\n0\n", 3, "appears twice"),
    ("img\n-1\n", 2, "whole number"),
])
def test_bad_detection_files_name_the_line(tmp_path, text, line, words):
    path = tmp_path / "d.txt"
    path.write_text(text)
    with pytest.raises(AnnotationError) as err:
        fddb.read_detections(path)
    assert err.value.line == line and words in str(err.value)


def test_ellipse_detections_need_six_numbers_and_positive_radii(tmp_path):
    path = tmp_path / "d.txt"
    path.write_text("img\n1\n10 -5 0 3 4 0.5\n")
    with pytest.raises(AnnotationError, match="negative"):
        fddb.read_detections(path, ellipse=True)


def test_folds_spec():
    assert fddb.parse_folds("1-3,7") == [1, 2, 3, 7]
    assert fddb.parse_folds(None) == list(range(1, 11))
    with pytest.raises(Exception, match="1 to 10"):
        fddb.parse_folds("0-2")


def test_compared_curves_are_named_by_as_many_folders_as_tell_them_apart(tmp_path):
    from mtcnn_train.evaluation.fddb import curve_labels

    published = tmp_path / "test-published" / "fddb-chosen" / "DiscROC.txt"
    ours = tmp_path / "test-r9a" / "fddb-chosen" / "DiscROC.txt"
    named = tmp_path / "lenient-DiscROC.txt"
    # One folder suffices when the names differ; a clash (also with the main curve) adds parents.
    assert curve_labels("rectangles", [published]) == ["fddb-chosen"]
    assert curve_labels("rectangles", [published, ours, named]) == \
        ["test-published/fddb-chosen", "test-r9a/fddb-chosen", "lenient"]
    assert curve_labels("fddb-chosen", [published]) == ["test-published/fddb-chosen"]
    # The same file twice cannot be told apart: the labels stop growing at the root.
    same = curve_labels("rectangles", [published, published])
    assert same[0] == same[1] and same[0].endswith("test-published/fddb-chosen")
