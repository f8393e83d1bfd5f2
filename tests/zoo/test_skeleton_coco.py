"""COCO-17 -> H36M-17 (zoo.skeleton.coco17_to_h36m17)."""
import numpy as np
import pytest

from zoo import skeleton as skel

H = skel.H36M17.index
C = skel.COCO17.index


def _coco_from_h36m(h36m2d: np.ndarray) -> np.ndarray:
  """COCO-17 keypoints consistent with an H36M-17 2D pose (by joint names):
  the face placed so that the documented head-top rule gives the H36M head
  top back."""
  coco = np.zeros((17, 2))
  for name in skel.COCO17.joint_names:
    if name in skel.H36M17.joint_names:
      coco[C(name)] = h36m2d[H(name)]
  thorax, top = h36m2d[H('thorax')], h36m2d[H('head_top')]
  head = thorax + (top - thorax) / skel.COCO17_HEAD_TOP_FACTOR
  coco[C('nose')] = h36m2d[H('neck')]
  for name, dx in (('left_eye', 3.), ('right_eye', -3.), ('left_ear', 8.),
                   ('right_ear', -8.)):
    coco[C(name)] = head + [dx, 0.]  # symmetric: the mean is `head`
  return coco


def test_consistent_pose_round_trips():
  rng = np.random.default_rng(0)
  h36m = rng.uniform(0, 500, (17, 2))
  # The documented derived joints of an H36M pose.
  h36m[H('pelvis')] = (h36m[H('left_hip')] + h36m[H('right_hip')]) / 2
  h36m[H('thorax')] = (h36m[H('left_shoulder')]
                       + h36m[H('right_shoulder')]) / 2
  h36m[H('spine')] = (h36m[H('pelvis')] + h36m[H('thorax')]) / 2
  joints, scores = skel.coco17_to_h36m17(_coco_from_h36m(h36m), np.ones(17))
  np.testing.assert_allclose(joints, h36m, atol=1e-9)
  np.testing.assert_array_equal(scores, np.ones(17))


def test_limb_joints_are_copied_by_name():
  rng = np.random.default_rng(1)
  coco = rng.uniform(0, 100, (2, 17, 2))
  scores = rng.uniform(0, 1, (2, 17))
  joints, out_scores = skel.coco17_to_h36m17(coco, scores)
  for name in ('left_wrist', 'right_knee', 'left_ankle', 'right_shoulder',
               'left_hip', 'right_elbow'):
    np.testing.assert_array_equal(joints[:, H(name)], coco[:, C(name)])
    np.testing.assert_array_equal(out_scores[:, H(name)], scores[:, C(name)])
  np.testing.assert_array_equal(joints[:, H('neck')], coco[:, C('nose')])


def test_derived_scores_are_the_weakest_source():
  scores = np.full(17, 0.9)
  scores[C('left_hip')] = 0.2
  scores[C('right_shoulder')] = 0.4
  scores[C('left_eye')] = scores[C('right_eye')] = 0.
  scores[C('left_ear')] = 0.
  scores[C('right_ear')] = 0.7
  _, out = skel.coco17_to_h36m17(np.zeros((17, 2)), scores)
  assert out[H('pelvis')] == pytest.approx(0.2)
  assert out[H('thorax')] == pytest.approx(0.4)
  assert out[H('spine')] == pytest.approx(0.2)
  # Head centre: the best face joint (0.7), then the thorax (0.4).
  assert out[H('head_top')] == pytest.approx(0.4)


def test_head_centre_ignores_zero_score_face_joints():
  coco = np.zeros((17, 2))
  scores = np.ones(17)
  coco[C('left_shoulder')] = [-10., 0.]
  coco[C('right_shoulder')] = [10., 0.]
  coco[C('right_ear')] = [4., -20.]
  coco[C('left_eye')] = [500., 500.]  # a garbage position with score 0
  scores[[C('left_eye'), C('right_eye'), C('left_ear')]] = 0.
  joints, _ = skel.coco17_to_h36m17(coco, scores)
  np.testing.assert_allclose(joints[H('head_top')],
                             np.array([4., -20.]) * skel.COCO17_HEAD_TOP_FACTOR)


def test_bad_shapes_are_rejected():
  with pytest.raises(ValueError, match='COCO-17'):
    skel.coco17_to_h36m17(np.zeros((16, 2)), np.ones(16))
  with pytest.raises(ValueError, match='COCO-17'):
    skel.coco17_to_h36m17(np.zeros((17, 2)), np.ones(16))


def test_coco17_skeleton_is_consistent():
  s = skel.COCO17
  assert s.num_joints == 17 and s.root == C('nose')
  for left, right in s.left_right_pairs:
    assert s.joint_names[left].replace('left_', 'right_') == \
        s.joint_names[right]
  assert skel.SKELETONS['coco17'] is s
