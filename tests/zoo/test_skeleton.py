"""Tests for zoo/skeleton.py against joint tables spelled out here by hand."""
import numpy as np
import pytest

from zoo import skeleton as skel

# H36M-17, the usual 17-joint subset of Human3.6M (idx: joint, parent).
H36M_TABLE = [
    ('pelvis', -1), ('right_hip', 0), ('right_knee', 1), ('right_ankle', 2),
    ('left_hip', 0), ('left_knee', 4), ('left_ankle', 5), ('spine', 0),
    ('thorax', 7), ('neck', 8), ('head_top', 9), ('left_shoulder', 8),
    ('left_elbow', 11), ('left_wrist', 12), ('right_shoulder', 8),
    ('right_elbow', 14), ('right_wrist', 15)]
FLIP_PAIRS = {(1, 4), (2, 5), (3, 6), (11, 14), (12, 15), (13, 16)}
MPII_NAMES = ['right_ankle', 'right_knee', 'right_hip', 'left_hip', 'left_knee',
              'left_ankle', 'pelvis', 'thorax', 'upper_neck', 'head_top',
              'right_wrist', 'right_elbow', 'right_shoulder', 'left_shoulder',
              'left_elbow', 'left_wrist']
CPM_NAMES = ['head_top', 'neck', 'right_shoulder', 'right_elbow',
             'right_wrist', 'left_shoulder', 'left_elbow', 'left_wrist',
             'right_hip', 'right_knee', 'right_ankle', 'left_hip', 'left_knee',
             'left_ankle']
# Joints that are the same body point under another name, per codebase.
ALIASES = {('mpii16', 'upper_neck'): 'neck',   # MPII upper neck = H36M 9
           ('cpm14', 'neck'): 'thorax'}        # CPM neck base = H36M 8
# Lifting from the Deep, released code: h36m[W_POS] = cpm[H36M_ORDER].
LIFTING_ORDER = [8, 9, 10, 11, 12, 13, 1, 0, 5, 6, 7, 2, 3, 4]
LIFTING_W_POS = [1, 2, 3, 4, 5, 6, 8, 10, 11, 12, 13, 14, 15, 16]
H36M32 = [0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25, 26, 27]
MEAN_BONES = {('pelvis', 'right_hip'): 133, ('right_hip', 'right_knee'): 454,
              ('right_knee', 'right_ankle'): 445, ('pelvis', 'spine'): 233,
              ('spine', 'thorax'): 257, ('thorax', 'neck'): 121,
              ('neck', 'head_top'): 115, ('thorax', 'right_shoulder'): 151,
              ('right_shoulder', 'right_elbow'): 278,
              ('right_elbow', 'right_wrist'): 251}


def test_h36m17_table():
  h = skel.H36M17
  assert list(h.joint_names) == [n for n, _ in H36M_TABLE]
  assert list(h.parents) == [p for _, p in H36M_TABLE]
  assert h.num_joints == skel.NUM_JOINTS == 17
  assert h.root == skel.ROOT == 0
  assert set(h.limbs) == {(p, c) for c, (_, p) in enumerate(H36M_TABLE)
                          if p >= 0}
  assert len(h.limbs) == 16
  assert {tuple(sorted(p)) for p in h.left_right_pairs} == FLIP_PAIRS


def test_flip_permutation_swaps_pairs():
  perm = skel.FLIP_PERMUTATION
  assert sorted(perm) == list(range(17))
  np.testing.assert_array_equal(perm[perm], np.arange(17))  # an involution
  for i, j in enumerate(perm):
    a, b = skel.H36M17.joint_names[i], skel.H36M17.joint_names[j]
    if i == j:
      assert not a.startswith(('left', 'right'))
    else:
      assert {tuple(sorted((i, j)))} <= FLIP_PAIRS
      assert a.replace('left', 'X').replace('right', 'left').replace(
          'X', 'right') == b


@pytest.mark.parametrize('s', [skel.H36M17, skel.MPII16, skel.CPM14])
def test_every_skeleton_is_a_tree_and_flips_by_name(s):
  for j in range(s.num_joints):
    seen, k = set(), j
    while s.parents[k] >= 0:
      assert k not in seen, f'cycle at {s.joint_names[k]}'
      seen.add(k)
      k = s.parents[k]
    assert k == s.root
  for i, j in enumerate(s.flip_permutation):
    swapped = s.joint_names[i].replace('left', 'X').replace(
        'right', 'left').replace('X', 'right')
    assert s.joint_names[j] == swapped


def test_mean_bone_lengths():
  lengths = skel.mean_bone_lengths_mm()
  assert lengths.shape == (16,)
  names = skel.H36M17.joint_names
  for (p, c), length in zip(skel.H36M17.limbs, lengths):
    # Left bones have the right bones' lengths.
    key = (names[p].replace('left', 'right'), names[c].replace('left', 'right'))
    assert length == MEAN_BONES[key], key


def _by_name(source_skeleton):
  """Index map source -> H36M-17 computed from joint names (and aliases)."""
  out = []
  for name in source_skeleton.joint_names:
    target = ALIASES.get((source_skeleton.name, name), name)
    out.append(skel.H36M17.joint_names.index(target)
               if target in skel.H36M17.joint_names else -1)
  return np.array(out)


def test_mpii16_map_by_names():
  assert list(skel.MPII16.joint_names) == MPII_NAMES
  np.testing.assert_array_equal(skel.MPII16_TO_H36M17, _by_name(skel.MPII16))
  assert skel.MPII16.root == MPII_NAMES.index('pelvis')


def test_cpm14_map_by_names_and_lifting_order():
  assert list(skel.CPM14.joint_names) == CPM_NAMES
  np.testing.assert_array_equal(skel.CPM14_TO_H36M17, _by_name(skel.CPM14))
  assert skel.CPM14_TO_H36M17[CPM_NAMES.index('neck')] == 8  # thorax
  np.testing.assert_array_equal(skel.LIFTING_H36M_ORDER, LIFTING_ORDER)
  np.testing.assert_array_equal(skel.LIFTING_W_POS, LIFTING_W_POS)
  # to_h36m17 equals the released code's gather.
  cpm = np.random.default_rng(0).normal(size=(3, 14, 2))
  released = np.zeros((3, 17, 2))
  released[:, LIFTING_W_POS] = cpm[:, LIFTING_ORDER]
  got, valid = skel.to_h36m17(cpm, 'cpm14')
  np.testing.assert_array_equal(got, released)
  np.testing.assert_array_equal(np.flatnonzero(valid[0] == 0), [0, 7, 9])


def test_h36m32_map():
  np.testing.assert_array_equal(skel.H36M32_TO_H36M17, H36M32)
  poses32 = np.random.default_rng(1).normal(size=(2, 5, 32, 3))
  out, valid = skel.to_h36m17(poses32, 'h36m32')
  assert out.shape == (2, 5, 17, 3)
  np.testing.assert_array_equal(out, poses32[..., H36M32, :])
  assert valid.shape == (2, 5, 17) and valid.min() == 1
  mask32 = np.zeros((2, 5, 32))
  mask32[..., 27] = 1
  _, valid = skel.to_h36m17(poses32, 'h36m32', valid=mask32)
  np.testing.assert_array_equal(np.flatnonzero(valid[0, 0]), [16])
  with pytest.raises(ValueError, match='32 joints'):
    skel.to_h36m17(poses32[..., :17, :], 'h36m32')


@pytest.mark.parametrize('name,num', [('mpii16', 16), ('cpm14', 14)])
def test_round_trips(name, num):
  rng = np.random.default_rng(2)
  src = rng.normal(size=(4, num, 2)).astype(np.float32)
  h36m, valid = skel.to_h36m17(src, name)
  assert h36m.shape == (4, 17, 2) and h36m.dtype == np.float32
  assert valid.shape == (4, 17) and valid.sum() == 4 * num
  np.testing.assert_array_equal(skel.from_h36m17(h36m, name), src)
  # Joints the source lacks are zero and invalid.
  np.testing.assert_array_equal(h36m[valid == 0], 0.)
  # H36M -> source -> H36M keeps exactly the joints the source has.
  full = rng.normal(size=(4, 17, 3))
  back, valid = skel.to_h36m17(skel.from_h36m17(full, name), name)
  np.testing.assert_array_equal(back[valid > 0], full[valid > 0])
  # A per-joint source mask travels with its joints.
  mask = np.ones((4, num))
  mask[:, 0] = 0
  _, valid = skel.to_h36m17(src, name, valid=mask)
  assert valid.sum() == 4 * (num - 1)


def test_error_messages():
  with pytest.raises(KeyError, match='unknown skeleton'):
    skel.to_h36m17(np.zeros((16, 2)), 'coco')
  with pytest.raises(KeyError, match='unknown skeleton'):
    skel.from_h36m17(np.zeros((17, 2)), 'coco')
  with pytest.raises(ValueError, match=r'mpii16 joints must have 16 joints'):
    skel.to_h36m17(np.zeros((2, 14, 2)), 'mpii16')
  with pytest.raises(KeyError, match="no joint 'nose'"):
    skel.H36M17.index('nose')
  assert skel.H36M17.index('thorax') == 8


def test_bone_lengths_loop():
  joints = np.random.default_rng(3).normal(size=(2, 17, 3))
  got = skel.bone_lengths(joints)
  assert got.shape == (2, 16)
  want = [[np.linalg.norm(joints[n, c] - joints[n, p])
           for c, p in enumerate(skel.H36M17.parents) if p >= 0]
          for n in range(2)]
  np.testing.assert_allclose(got, want)
  assert skel.bone_lengths(joints[..., :2], skel.H36M17).shape == (2, 16)
