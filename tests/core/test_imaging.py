"""The tensor crop of :mod:`mtcnn_train.imaging` (its OpenCV cut is tested with the sampling, tests/samples)."""
import cv2
import numpy as np

from mtcnn_train.imaging import crop_resize_numpy


def test_crop_resize_matches_opencv_and_pads_with_zeros():
    rng = np.random.default_rng(0)
    image = cv2.GaussianBlur(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8), (0, 0), 2)
    crops = crop_resize_numpy(image, np.array([[20, 30, 44, 54], [40, 10, 88, 58]], np.float32), 24)
    np.testing.assert_array_equal(crops[0], image[30:54, 20:44])  # same size: an exact copy
    reference = cv2.resize(image[10:58, 40:88], (24, 24), interpolation=cv2.INTER_AREA)
    assert np.abs(crops[1].astype(int) - reference).mean() < 1.5
    outside = crop_resize_numpy(image, np.array([[-24, -24, 0, 0], [150, 100, 174, 124]], np.float32), 12)
    assert np.all(outside[0] == 0)
    assert np.all(outside[1][8:, 8:] == 0) and np.any(outside[1][:4, :4] > 0)
    assert crop_resize_numpy(image, np.zeros((0, 4), np.float32), 12).shape == (0, 12, 12, 3)
