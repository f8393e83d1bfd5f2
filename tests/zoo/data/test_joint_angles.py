"""Tests for zoo/data/joint_angles.py: limits, mirroring, the actions."""
import numpy as np

from zoo.data import joint_angles


def test_sampled_angles_respect_limits():
  rng = np.random.default_rng(1)
  n = 4000
  ang = joint_angles.sample_angles(
      rng, rng.integers(0, len(joint_angles.ACTIONS), n), rng.random(n))
  lo = np.array([joint_angles.LIMITS_DEG[d][0] for d in joint_angles.DOFS])
  hi = np.array([joint_angles.LIMITS_DEG[d][1] for d in joint_angles.DOFS])
  assert np.all(ang >= lo) and np.all(ang <= hi)
  # Both sides are used (mirroring) for one-armed actions.
  phoning = joint_angles.ACTIONS.index('phoning')
  ang = joint_angles.sample_angles(rng, np.full(n, phoning), rng.random(n))
  left = ang[:, joint_angles.DOFS.index('l_elbow')] > 130.
  right = ang[:, joint_angles.DOFS.index('r_elbow')] > 130.
  assert 0.3 < left.mean() < 0.7 and 0.3 < right.mean() < 0.7


def test_dof_index_names_every_column():
  assert len(joint_angles.DOF_INDEX) == len(joint_angles.DOFS)
  for name, column in joint_angles.DOF_INDEX.items():
    assert joint_angles.DOFS[column] == name
  for lo, hi in joint_angles.LIMITS_DEG.values():
    assert lo < hi


def test_seated_actions_are_actions():
  assert set(joint_angles.SEATED_ACTIONS) < set(joint_angles.ACTIONS)
