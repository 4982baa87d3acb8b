"""``samples inspect`` (:mod:`mtcnn_train.samples.inspect`): counts, and a contact sheet whose rows,
crops and drawn targets are where the stored set says."""
import numpy as np
import pytest

from mtcnn_train.errors import UserError
from mtcnn_train.io import load_image
from mtcnn_train.samples.inspect import contact_sheet, draw_targets, inspect_sample_set
from mtcnn_train.samples.labels import LABEL_LANDMARK, LABEL_NAMES, LABEL_NEGATIVE, LABEL_PART, LABEL_POSITIVE
from mtcnn_train.samples.shards import CONTACT_SHEET, SampleSet, empty_arrays, write_sample_set

SIZE, SCALE, GAP, LABEL_WIDTH = 12, 4, 4, 170
#: Each type's crops are one flat grey, so a cell shows which type it came from.
GREY = {LABEL_NEGATIVE: 10, LABEL_POSITIVE: 60, LABEL_PART: 110, LABEL_LANDMARK: 160}
RED, BLUE, YELLOW, GREEN = (255, 40, 40), (40, 120, 255), (255, 230, 0), (0, 255, 0)


def flat_set(directory, counts: dict[int, int], distinct: bool = False):
    """A finished set with ``counts[label]`` flat crops of each type, targets only where the type has them
    (``distinct``: crop i is grey i instead of its type's grey)."""
    labels = np.concatenate([np.full(n, label, np.int8) for label, n in counts.items()])
    n = len(labels)
    arrays = empty_arrays(SIZE)
    arrays["labels"] = labels
    arrays["images"] = np.stack([np.full((SIZE, SIZE, 3), i if distinct else GREY[label], np.uint8)
                                 for i, label in enumerate(labels)])
    arrays["boxes"] = np.full((n, 4), np.nan, np.float32)
    arrays["boxes"][np.isin(labels, [LABEL_POSITIVE, LABEL_PART])] = [0.0, 0.0, 0.0, 0.0]
    arrays["landmarks"] = np.full((n, 10), np.nan, np.float32)
    arrays["landmarks"][labels == LABEL_LANDMARK] = [0.25, 0.25, 0.75, 0.25, 0.5, 0.5, 0.25, 0.75, 0.75, 0.75]
    arrays["sources"] = np.zeros(n, np.int32)
    arrays["crops"] = np.zeros((n, 4), np.float32)
    write_sample_set(directory, arrays, {"images": ["x"]}, shard_size=5)
    return SampleSet.open(directory)


def cell_origin(row: int, column: int) -> tuple[int, int]:
    cell = SIZE * SCALE
    return row * (cell + 2 * GAP) + GAP, LABEL_WIDTH + GAP + column * (cell + GAP)


def test_draw_targets_enlarges_and_draws_the_box_and_the_points_in_their_colours():
    crop = np.full((SIZE, SIZE, 3), 50, np.uint8)
    plain = draw_targets(crop, np.full(4, np.nan), np.full(10, np.nan), SCALE)
    assert plain.shape == (SIZE * SCALE, SIZE * SCALE, 3) and np.all(plain == 50)  # nothing drawn without targets

    # A box target of zero offsets is the crop itself: the rectangle runs along the cell's edges.
    boxed = draw_targets(crop, np.zeros(4), np.full(10, np.nan), SCALE)
    assert tuple(boxed[0, SIZE * SCALE // 2]) == GREEN and tuple(boxed[SIZE * SCALE // 2, -1]) == GREEN
    assert tuple(boxed[SIZE * SCALE // 2, SIZE * SCALE // 2]) == (50, 50, 50)

    points = np.array([0.25, 0.25, 0.75, 0.25, 0.5, 0.5, 0.25, 0.75, 0.75, 0.75])
    dotted = draw_targets(crop, np.full(4, np.nan), points, SCALE)
    side = SIZE * SCALE
    at = {name: tuple(dotted[int(y * side), int(x * side)]) for name, (x, y) in
          zip(("left eye", "right eye", "nose", "left mouth", "right mouth"), points.reshape(5, 2))}
    assert at == {"left eye": RED, "right eye": BLUE, "nose": YELLOW, "left mouth": RED, "right mouth": BLUE}


def test_contact_sheet_has_one_row_per_type_with_that_types_crops(tmp_path):
    counts = {LABEL_NEGATIVE: 7, LABEL_POSITIVE: 3, LABEL_PART: 0, LABEL_LANDMARK: 9}
    sheet = contact_sheet(flat_set(tmp_path / "set", counts), per_type=5, scale=SCALE)
    cell = SIZE * SCALE
    assert sheet.shape == (len(LABEL_NAMES) * (cell + 2 * GAP), LABEL_WIDTH + 5 * (cell + GAP) + GAP, 3)
    for row, label in enumerate(LABEL_NAMES):
        shown = min(5, counts[label])
        for column in range(5):
            y, x = cell_origin(row, column)
            # Off the drawn targets (box edges, points): the crop's own grey, or the white page.
            centre = sheet[y + cell // 2 + 2, x + cell // 2 - 3]
            expected = GREY[label] if column < shown else 255
            assert np.all(centre == expected), (LABEL_NAMES[label], column)
    # The positives' box targets are drawn on their cells.
    y, x = cell_origin(1, 0)
    assert tuple(sheet[y, x + cell // 2]) == GREEN


def test_contact_sheet_picks_are_seeded(tmp_path):
    sample_set = flat_set(tmp_path / "set", {LABEL_NEGATIVE: 40, LABEL_POSITIVE: 2, LABEL_PART: 2, LABEL_LANDMARK: 2},
                          distinct=True)
    one = contact_sheet(sample_set, per_type=4, seed=1, scale=SCALE)
    assert np.array_equal(one, contact_sheet(sample_set, per_type=4, seed=1, scale=SCALE))
    assert any(not np.array_equal(one, contact_sheet(sample_set, per_type=4, seed=s, scale=SCALE)) for s in (2, 3, 4))
    # The negatives shown are 4 different crops, in the order they are stored.
    shown = [int(one[y + 2, x + 2, 0]) for y, x in (cell_origin(0, column) for column in range(4))]
    assert shown == sorted(set(shown)) and all(0 <= grey < 40 for grey in shown)


def test_inspect_writes_the_sheet_and_reports_the_counts(tmp_path):
    counts = {LABEL_NEGATIVE: 4, LABEL_POSITIVE: 3, LABEL_PART: 2, LABEL_LANDMARK: 1}
    sample_set = flat_set(tmp_path / "set", counts)
    report = inspect_sample_set(tmp_path / "set", per_type=3, scale=SCALE)
    assert report.sheet == tmp_path / "set" / CONTACT_SHEET
    assert report.counts == {LABEL_NAMES[label]: n for label, n in counts.items()} and report.crop_size == SIZE
    assert np.array_equal(load_image(report.sheet), contact_sheet(sample_set, per_type=3, scale=SCALE))
    assert "10 samples of 12x12 (negative 4, positive 3, part 2, landmark 1)" in report.summary()

    elsewhere = inspect_sample_set(tmp_path / "set", out=tmp_path / "sheet.png", per_type=3, scale=SCALE)
    assert elsewhere.sheet == tmp_path / "sheet.png" and elsewhere.sheet.is_file()


def test_inspect_refuses_an_unfinished_set(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="not a finished sample set"):
        inspect_sample_set(tmp_path / "empty")
    assert not (tmp_path / "empty" / CONTACT_SHEET).exists()
    # A pipeline run's samples/ folder holds one set per stage: it says so.
    for stage in ("rnet", "pnet"):
        (tmp_path / "samples" / stage).mkdir(parents=True)
        (tmp_path / "samples" / stage / "manifest.json").write_text("{}")
    with pytest.raises(UserError, match=r"samples: holds sample sets in its subfolders \(pnet, rnet\); give one"):
        inspect_sample_set(tmp_path / "samples")
