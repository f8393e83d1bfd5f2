"""Tests for zoo/visualize.py: skeleton drawing and contact sheets."""
import numpy as np
import pytest

from zoo import skeleton as skel
from zoo import visualize


def _pose():
  joints = np.zeros((17, 2))
  joints[0] = (100, 100)
  joints[[1, 4]] = [(80, 100), (120, 100)]     # right hip left of image
  joints[[2, 5]] = [(80, 150), (120, 150)]
  joints[[3, 6]] = [(80, 190), (120, 190)]
  joints[7:11] = [(100, 70), (100, 40), (100, 30), (100, 15)]
  joints[[11, 14]] = [(125, 40), (75, 40)]
  joints[[12, 15]] = [(140, 60), (60, 60)]
  joints[[13, 16]] = [(150, 80), (50, 80)]
  return joints


def test_left_and_right_limbs_get_their_colours():
  image = np.zeros((200, 200, 3), np.uint8)
  out = visualize.draw_skeleton_2d(image, _pose(), thickness=3, radius=2)
  assert out is not image and not image.any()  # a copy; input untouched
  np.testing.assert_array_equal(out[125, 120], visualize.LEFT_COLOR)  # l thigh
  np.testing.assert_array_equal(out[125, 80], visualize.RIGHT_COLOR)  # r thigh
  np.testing.assert_array_equal(out[55, 100], visualize.CENTER_COLOR)  # spine


def test_invalid_joints_are_skipped():
  image = np.zeros((200, 200, 3), np.uint8)
  valid = np.ones(17, bool)
  valid[5] = False  # left knee: no thigh, no shin
  out = visualize.draw_skeleton_2d(image, _pose(), valid=valid, thickness=3)
  assert not out[125, 120].any() and not out[170, 120].any()
  assert out[125, 80].any()


def test_bad_shapes_raise():
  with pytest.raises(ValueError, match='joints2d_px'):
    visualize.draw_skeleton_2d(np.zeros((8, 8, 3), np.uint8), np.zeros((16, 2)))
  with pytest.raises(ValueError, match='image'):
    visualize.draw_skeleton_2d(np.zeros((8, 8), np.uint8), np.zeros((17, 2)))
  # Other skeletons work with their own joint count.
  visualize.draw_skeleton_2d(np.zeros((8, 8, 3), np.uint8), np.zeros((16, 2)),
                             skeleton=skel.MPII16)


def test_contact_sheet_layout():
  tiles = [np.full((10, 20, 3), v, np.uint8) for v in (50, 100, 150)]
  sheet = visualize.contact_sheet(tiles, columns=2, pad=2, captions=['a'] * 3)
  assert sheet.shape == (2 * 12 + 2, 2 * 22 + 2, 3)
  assert sheet[2 + 9, 2 + 19, 0] == 50 and sheet[14 + 9, 2 + 19, 0] == 150
  with pytest.raises(ValueError):
    visualize.contact_sheet([])
