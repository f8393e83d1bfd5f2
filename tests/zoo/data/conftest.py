"""Fixtures shared by the tests of zoo/data."""
import numpy as np
import pytest

from zoo.data import joint_angles
from zoo.data import motion
from zoo.data import people


@pytest.fixture
def rest_pose():
  """rest_pose(subject name, yaw in rad): a MotionBatch of one symmetric
  standing pose (every joint angle 0) of the subject, turned by yaw."""
  def make(subject: str, yaw_rad: float) -> motion.MotionBatch:
    return motion.forward_kinematics(
        np.zeros((1, len(joint_angles.DOFS))),
        np.array([people.SUBJECTS.index(people.SUBJECT_BY_NAME[subject])]),
        np.array([yaw_rad]), np.zeros((1, 2)), np.zeros((1, 2)))
  return make
