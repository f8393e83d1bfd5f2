"""Tests for zoo/data/motion.py: kinematics, sample_motion, poses()."""
import numpy as np
import pytest

from zoo import skeleton as skel
from zoo.data import joint_angles
from zoo.data import motion
from zoo.data import people


def _angle_deg(u, v):
  cos = np.sum(u * v, -1) / (np.linalg.norm(u, axis=-1)
                             * np.linalg.norm(v, axis=-1))
  return np.degrees(np.arccos(np.clip(cos, -1., 1.)))


@pytest.fixture(scope='module')
def batch():
  rng = np.random.default_rng(0)
  return motion.sample_motion(rng, 3000,
                              tuple(s.name for s in people.SUBJECTS))


def test_poses_shape_dtype_and_determinism():
  a, info = motion.poses(500, 'train', seed=3, return_info=True)
  assert a.shape == (500, 17, 3) and a.dtype == np.float32
  np.testing.assert_array_equal(a, motion.poses(500, 'train', seed=3))
  assert not np.allclose(a, motion.poses(500, 'train', seed=4))
  assert set(info) >= {'subject', 'action', 'subject_index', 'action_index',
                       'phase'}
  assert all(len(v) == 500 for v in info.values())
  assert set(info['subject']) <= set(people.SPLITS['train'])
  assert set(info['action']) <= set(joint_angles.ACTIONS)
  assert motion.poses(0).shape == (0, 17, 3)


def test_poses_of_a_split_use_its_subjects():
  _, info = motion.poses(400, 'test', seed=0, return_info=True)
  assert set(info['subject']) == set(people.SPLITS['test'])
  with pytest.raises(ValueError, match='split'):
    motion.poses(3, 'val')


def test_bone_lengths_match_the_subject(batch):
  got = skel.bone_lengths(batch.joints_world_mm)
  want = np.stack([people.SUBJECTS[i].bone_lengths_mm
                   for i in batch.subject_index])
  np.testing.assert_allclose(got, want, rtol=1e-9)
  # The float32 stream too.
  p, info = motion.poses(300, 'train', return_info=True)
  want = np.stack([people.SUBJECT_BY_NAME[s].bone_lengths_mm
                   for s in info['subject']])
  np.testing.assert_allclose(skel.bone_lengths(p.astype(np.float64)), want,
                             rtol=1e-5)


def test_hinge_angles_within_limits(batch):
  j = batch.joints_world_mm
  for hip, knee, ankle in ((1, 2, 3), (4, 5, 6)):
    thigh, shank = j[:, knee] - j[:, hip], j[:, ankle] - j[:, knee]
    flex = _angle_deg(thigh, shank)
    assert flex.max() <= 150. + 1e-6
    # The knee only bends backwards: the bend axis points to the body's left
    # (from the right hip to the left hip).
    bent = flex > 15.
    axis = np.cross(thigh, shank)
    lateral = j[:, 4] - j[:, 1]
    assert np.all(np.sum(axis * lateral, -1)[bent] > 0.)
  for sh, el, wr in ((11, 12, 13), (14, 15, 16)):
    flex = _angle_deg(j[:, el] - j[:, sh], j[:, wr] - j[:, el])
    assert flex.max() <= 150. + 1e-6
  # Head stays on the neck: angle between the trunk and the head segment.
  trunk = j[:, 8] - j[:, 7]
  head = j[:, 10] - j[:, 9]
  assert _angle_deg(trunk, head).max() < 110.


def test_feet_on_ground_and_upright(batch):
  j = batch.joints_world_mm
  ankle_h = np.array([people.SUBJECTS[i].ankle_height_mm
                      for i in batch.subject_index])
  lowest_ankle = np.minimum(j[:, 3, 2], j[:, 6, 2])
  assert np.all(j[..., 2] > 0.)
  assert np.all(lowest_ankle < 1.9 * ankle_h)  # on tiptoe at most
  assert np.all(lowest_ankle > 0.5 * ankle_h)
  act = np.array(batch.actions)
  upright = act != 'picking_up'  # touching the toes may bring the head low
  assert np.all(j[upright, 10, 2] > j[upright, 0, 2])
  for side in 'lr':  # hands never in the floor
    assert np.all(batch.points[side + '_hand_tip'][:, 2] > 0.)
  # Soles touch z = 0 exactly.
  heel_r, toe_r = motion.sole_radii_mm(batch.subject_index)
  sole = np.min([batch.points['l_heel'][:, 2] - heel_r,
                 batch.points['l_toe'][:, 2] - toe_r,
                 batch.points['r_heel'][:, 2] - heel_r,
                 batch.points['r_toe'][:, 2] - toe_r], 0)
  np.testing.assert_allclose(sole, 0., atol=1e-6)


def test_actions_have_their_character(batch):
  j = batch.joints_world_mm
  act = np.array(batch.actions)
  for a in joint_angles.ACTIONS:
    assert (act == a).sum() > 100, a
  pelvis_z = j[:, 0, 2]
  standing = np.median(pelvis_z[act == 'discussion'])
  assert np.median(pelvis_z[act == 'sitting']) < 0.7 * standing
  assert np.median(pelvis_z[act == 'squatting']) < 0.75 * standing
  # Hands at the head when phoning, above the head when waving.
  wrist_head = np.minimum(np.linalg.norm(j[:, 13] - j[:, 9], axis=-1),
                          np.linalg.norm(j[:, 16] - j[:, 9], axis=-1))
  assert np.median(wrist_head[act == 'phoning']) < 250.
  top_wrist = np.maximum(j[:, 13, 2], j[:, 16, 2])
  assert np.mean(top_wrist[act == 'waving'] > j[act == 'waving', 9, 2]) > 0.8
  # Bending forward to pick something up: head far in front of the pelvis.
  horiz = np.linalg.norm(j[:, 10, :2] - j[:, 0, :2], axis=-1)
  assert np.median(horiz[act == 'picking_up']) > 250.
  # Walking: the feet apart (along the gait) for much of the cycle.
  feet = np.linalg.norm(j[:, 3, :2] - j[:, 6, :2], axis=-1)
  assert (np.median(feet[act == 'walking'])
          > np.median(feet[act == 'discussion']))


def test_any_yaw_and_small_tilt(batch):
  fwd = batch.frames['pelvis'][:, :, 0]
  yaw = np.arctan2(fwd[:, 1], fwd[:, 0])
  hist, _ = np.histogram(yaw, bins=8, range=(-np.pi, np.pi))
  assert hist.min() > 0.08 * len(yaw)
  # Standing actions: pelvis up axis within a few degrees of vertical.
  act = np.array(batch.actions)
  up = batch.frames['pelvis'][act == 'discussion'][:, :, 2]
  assert np.degrees(np.arccos(up[:, 2])).max() < 25.


def test_frames_are_rotations(batch):
  for name, f in batch.frames.items():
    np.testing.assert_allclose(f @ np.swapaxes(f, -1, -2),
                               np.broadcast_to(np.eye(3), f.shape), atol=1e-9,
                               err_msg=name)
    np.testing.assert_allclose(np.linalg.det(f), 1., atol=1e-9, err_msg=name)


def test_post_rotations_match_matrix_products():
  rng = np.random.default_rng(2)
  n = 5
  y, x, z = rng.uniform(-3, 3, (3, n))
  frame = (np.tile([[1.], [0.], [0.]], n), np.tile([[0.], [1.], [0.]], n),
           np.tile([[0.], [0.], [1.]], n))
  got = motion._stack(motion._post_yxz(
      frame, (np.cos(y), np.sin(y)), (np.cos(x), np.sin(x)),
      (np.cos(z), np.sin(z))))

  def rot(axis, a):
    c, s = np.cos(a), np.sin(a)
    m = np.eye(3)
    i, k = [(1, 2), (2, 0), (0, 1)][axis]
    m[i, i], m[i, k], m[k, i], m[k, k] = c, -s, s, c
    return m

  for q in range(n):
    want = rot(1, y[q]) @ rot(0, x[q]) @ rot(2, z[q])
    np.testing.assert_allclose(got[q], want, atol=1e-12)
