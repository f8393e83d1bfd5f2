"""Tests for zoo/data/people.py: the subjects and their split."""
import numpy as np
import pytest

from zoo import skeleton as skel
from zoo.data import people


def test_splits_are_disjoint_and_subjects_differ():
  train, test = set(people.SPLITS['train']), set(people.SPLITS['test'])
  assert len(train) == 5 and len(test) == 2 and not train & test
  assert train | test == set(people.SUBJECT_BY_NAME)
  assert people.split_subjects('test') == people.SPLITS['test']
  with pytest.raises(ValueError, match="unknown split 'val'"):
    people.split_subjects('val')
  subjects = people.SUBJECTS
  assert len({s.height_factor for s in subjects}) == len(subjects)
  assert len({(s.top, s.bottom) for s in subjects}) == len(subjects)
  for s in subjects:
    assert 0.85 <= s.height_factor <= 1.15


def test_subject_bones_are_scaled_h36m_means_with_symmetric_jitter():
  means = skel.mean_bone_lengths_mm()
  names = [skel.H36M17.joint_names[c] for _, c in skel.H36M17.limbs]
  for s in people.SUBJECTS:
    ratio = s.bone_lengths_mm / (means * s.height_factor)
    assert np.all(np.abs(ratio - 1.) <= 0.0601), s.name
    assert np.std(ratio) > 0.005  # some jitter
    for left, right in ((n, 'right_' + n[5:]) for n in names
                        if n.startswith('left_')):
      assert (s.bone_lengths_mm[names.index(left)]
              == s.bone_lengths_mm[names.index(right)])
