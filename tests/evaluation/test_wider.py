"""WIDER FACE average precision: the official eval_tools protocol on hand-computed cases."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.io import savemat

from mtcnn_train.errors import AnnotationError
from mtcnn_train.evaluation import wider

FACES = np.array([[10, 10, 20, 20], [50, 50, 30, 30]], float)  # x y w h


def _ap(gt, kept, preds):
    return wider.average_precision(gt, kept, preds).ap


def test_perfect_predictions_have_ap_one():
    preds = [np.concatenate([FACES, [[0.9], [0.8]]], 1)]
    assert _ap([FACES], [np.array([0, 1])], preds) == 1.0


def test_no_predictions_have_ap_zero():
    assert _ap([FACES], [np.array([0, 1])], [None]) == 0.0
    assert _ap([FACES], [np.array([0, 1])], [np.zeros((0, 5))]) == 0.0


def test_hand_computed_case():
    # Scores 0.9 (hits face 0), 0.6 (miss), 0.3 (hits face 1) normalise to 1, 0.5, 0.
    # Thresholds above 0.5: P 1, R 0.5; down to 0.5: P 1/2, R 0.5; at 0: P 2/3, R 1.
    # Envelope: precision 1 up to recall 0.5, then 2/3: AP = 0.5 * 1 + 0.5 * 2/3.
    preds = [np.array([[10, 10, 20, 20, 0.9], [100, 100, 10, 10, 0.6], [50, 50, 30, 30, 0.3]])]
    res = wider.average_precision([FACES], [np.array([0, 1])], preds)
    assert res.ap == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert res.faces == 2
    assert res.precision[0] == 1.0 and res.recall[0] == 0.5  # threshold 0.999
    assert res.precision[-1] == pytest.approx(2 / 3) and res.recall[-1] == 1.0  # threshold 0


def test_predictions_are_sorted_by_score_first():
    preds = [np.array([[50, 50, 30, 30, 0.3], [100, 100, 10, 10, 0.6], [10, 10, 20, 20, 0.9]])]
    assert _ap([FACES], [np.array([0, 1])], preds) == pytest.approx(0.5 + 0.5 * 2 / 3)


def test_ignored_faces_neither_count_nor_penalise():
    # Face 1 is ignored: the prediction on it (top score) is no proposal, and only face 0 counts.
    preds = [np.array([[50, 50, 30, 30, 0.95], [10, 10, 20, 20, 0.5], [200, 200, 5, 5, 0.1]])]
    res = wider.average_precision([FACES], [np.array([0])], preds)
    assert res.faces == 1
    assert res.ap == 1.0  # recall 1 reached with precision 1 before the miss at 0.1
    assert res.precision[-1] == 0.5  # at threshold 0 the miss is a proposal; the ignored hit is not


def test_a_second_hit_on_a_found_face_is_a_false_positive():
    preds = [np.array([[10, 10, 20, 20, 0.9], [11, 10, 20, 20, 0.8]])]
    res = wider.average_precision([FACES[:1]], [np.array([0])], preds)
    assert res.precision[-1] == 0.5 and res.recall[-1] == 1.0


def test_images_without_faces_add_no_false_positives_but_kept_faces_always_count():
    gt = [FACES, np.zeros((0, 4))]
    preds = [np.concatenate([FACES, [[0.9], [0.8]]], 1), np.array([[0, 0, 10, 10, 1.0]])]
    assert _ap(gt, [np.array([0, 1]), np.zeros(0, int)], preds) == 1.0
    # Faces of an image without predictions still count: recall stops at 2 of 4.
    res = wider.average_precision([FACES, FACES], [np.array([0, 1])] * 2, [preds[0], None])
    assert res.faces == 4 and res.recall.max() == 0.5


def test_box_overlap_uses_the_plus_one_pixel_rule():
    # gt x=0..9 (w=9 means 10 pixels with +1), pred rows 0..4 of it: 50 / 100.
    assert wider.box_overlaps(np.array([[0, 0, 9, 9]]), np.array([[0, 0, 9, 4]]))[0, 0] == 0.5
    assert wider.box_overlaps(np.array([[0, 0, 9, 9]]), np.array([[20, 0, 5, 5]]))[0, 0] == 0.0


def test_scores_are_normalised_over_the_whole_set():
    preds = wider.normalize_scores([np.array([[0, 0, 1, 1, 2.0]]), None, np.array([[0, 0, 1, 1, 4.0], [0, 0, 1, 1, 3.0]])])
    assert preds[0][:, 4].tolist() == [0.0] and preds[1] is None and preds[2][:, 4].tolist() == [1.0, 0.5]
    same = wider.normalize_scores([np.array([[0, 0, 1, 1, 0.7]])])
    assert same[0][:, 4].tolist() == [1.0]


def test_prediction_folder_round_trip(tmp_path):
    preds = {"0--Parade/0_Parade_1": np.array([[1.5, 2, 30, 40, 0.987654321]]), "1--Handshaking/x": np.zeros((0, 5))}
    wider.write_predictions(tmp_path, preds)
    assert (tmp_path / "0--Parade" / "0_Parade_1.txt").read_text() == "0_Parade_1\n1\n1.50 2.00 30.00 40.00 0.987654321\n"
    back = wider.read_predictions(tmp_path)
    assert sorted(back) == sorted(preds) and np.allclose(back["0--Parade/0_Parade_1"], preds["0--Parade/0_Parade_1"])


def test_bad_prediction_file_names_the_line(tmp_path):
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "img.txt").write_text("img\n2\n1 2 3 4 0.5\n1 2 3\n")
    with pytest.raises(AnnotationError) as err:
        wider.read_predictions(tmp_path)
    assert err.value.line == 4
    # A corrupt count is refused before anything is allocated for it.
    (tmp_path / "e" / "img.txt").write_text("img\n1000000000000000000\n1 2 3 4 0.5\n")
    with pytest.raises(AnnotationError, match="expected 1000000000000000000 boxes"):
        wider.read_predictions(tmp_path)


def _cell(items):
    out = np.empty((len(items), 1), dtype=object)
    for i, item in enumerate(items):
        out[i, 0] = item
    return out


def write_official_mats(folder, events):
    """Tiny copies of wider_face_val.mat and wider_{easy,medium,hard}_val.mat (nested cells)."""
    names = list(events)
    savemat(folder / "wider_face_val.mat", {
        "event_list": _cell(names),
        "file_list": _cell([_cell([f for f, _ in events[e]["files"]]) for e in names]),
        "face_bbx_list": _cell([_cell([b for _, b in events[e]["files"]]) for e in names]),
    })
    for setting in ("easy", "medium", "hard"):
        savemat(folder / f"wider_{setting}_val.mat", {
            "gt_list": _cell([_cell([np.array(k, dtype=np.float64).reshape(-1, 1) for k in events[e][setting]])
                              for e in names])})


def test_official_mat_files_give_easy_medium_hard(tmp_path):
    events = {
        "0--Parade": {"files": [("0_Parade_a", FACES), ("0_Parade_b", FACES[:1])],
                      "easy": [[1], []], "medium": [[1, 2], [1]], "hard": [[1, 2], [1]]},
        "1--Handshaking": {"files": [("1_Hand_c", FACES[1:])], "easy": [[]], "medium": [[1]], "hard": [[1]]},
    }
    write_official_mats(tmp_path, events)
    gt = wider.load_wider_mat(tmp_path, images_root=tmp_path / "images")
    assert gt.keys == ["0--Parade/0_Parade_a", "0--Parade/0_Parade_b", "1--Handshaking/1_Hand_c"]
    assert [k.tolist() for k in gt.settings["medium"]] == [[0, 1], [0], [0]]
    assert gt.image_paths[2] == tmp_path / "images" / "1--Handshaking" / "1_Hand_c.jpg"
    preds = {"0--Parade/0_Parade_a": np.array([[10, 10, 20, 20, 0.9], [50, 50, 30, 30, 0.2]]),
             "1--Handshaking/1_Hand_c": np.array([[50, 50, 30, 30, 0.5]])}
    results, missing = wider.evaluate_predictions(gt, preds)
    assert missing == 1
    assert results["easy"].faces == 1 and results["easy"].ap == 1.0
    # medium/hard: 4 faces; found at normalised scores 1 (a/0), 3/7 (c) and 0 (a/1); b is never found.
    assert results["hard"].faces == 4 and results["hard"].ap == pytest.approx(0.75)
    # easy: the hits on faces outside the easy set are dropped, not counted as false positives.
    assert np.nanmin(results["easy"].precision) == 1.0
