"""The commands give the same outputs as main before the reorganisation of issue 18 (see outputs.py)."""
from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pytest

from mtcnn_train.config import DetectionConfig
from tests.regression.outputs import EXPECTED, produce


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    return produce(tmp_path_factory.mktemp("same_outputs"))


@pytest.fixture(scope="module")
def expected():
    return json.loads(EXPECTED.read_text())


@pytest.mark.parametrize("part", ["synthetic_files", "pnet_samples", "rnet_samples", "onet_samples"])
def test_files_written_by_integer_code_are_byte_identical(outputs, expected, part):
    assert outputs[part] == expected[part]


@pytest.mark.parametrize("stage", ["rnet", "onet"])
def test_mined_boxes_match_to_float_rounding(outputs, expected, stage):
    """Crop boxes and targets come from the mining nets' float outputs (last bits vary by CPU)."""
    got, want = outputs["mined_floats"][stage], expected["mined_floats"][stage]
    assert got.keys() == want.keys()
    for name, values in want.items():
        np.testing.assert_allclose(got[name], values, rtol=1e-4, atol=1e-3, err_msg=name)


def test_trained_weights_match_to_float_rounding(outputs, expected):
    assert outputs["trained_pnet"].keys() == expected["trained_pnet"].keys()
    for name, sums in expected["trained_pnet"].items():
        np.testing.assert_allclose(outputs["trained_pnet"][name], sums, rtol=1e-4, atol=1e-5, err_msg=name)


def test_detections_match(outputs, expected):
    got, want = outputs["detections"], expected["detections"]
    # Options added since the expected outputs were recorded must sit at their defaults.
    defaults = asdict(DetectionConfig())
    assert {key: got["detection"][key] for key in want["detection"]} == want["detection"]
    assert {key: value for key, value in got["detection"].items() if key not in want["detection"]} == \
        {key: defaults[key] for key in got["detection"] if key not in want["detection"]}
    assert [image["file"].rsplit("/", 1)[-1] for image in got["images"]] == \
        [image["file"].rsplit("/", 1)[-1] for image in want["images"]]
    for got_image, want_image in zip(got["images"], want["images"]):
        assert len(got_image["faces"]) == len(want_image["faces"]), want_image["file"]
        for got_face, want_face in zip(got_image["faces"], want_image["faces"]):
            np.testing.assert_allclose(got_face["box"], want_face["box"], atol=0.02)
            np.testing.assert_allclose(got_face["landmarks"], want_face["landmarks"], atol=0.02)
            assert got_face["score"] == pytest.approx(want_face["score"], abs=1e-4)
