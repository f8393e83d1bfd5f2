"""Skeleton definitions: the one module that names every joint.

The zoo's canonical skeleton is Human3.6M-17 (H36M community order, as in
VideoPose3D, mmpose and the Lifting-from-the-Deep prior). Other skeletons
(MPII-16, CPM-14, H36M-32 motion files, MPI-INF-3DHP's 17 test and 28
training joints) are defined by their names and an index map into H36M-17, so
conversion is a gather plus a validity mask. COCO-17 (2D detectors' keypoints)
lacks five H36M joints, which `coco17_to_h36m17` derives from the detected
ones (see COCO17_TO_H36M17).
"""
from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Skeleton:
  """A named joint set with a kinematic tree (parents[i] = -1 for the root)."""
  name: str
  joint_names: tuple[str, ...]
  parents: tuple[int, ...]
  # (left, right) joint index pairs that swap under a horizontal flip.
  left_right_pairs: tuple[tuple[int, int], ...]

  @property
  def num_joints(self) -> int:
    return len(self.joint_names)

  @property
  def limbs(self) -> tuple[tuple[int, int], ...]:
    """(parent, child) pairs, one per bone, in joint order."""
    return tuple((p, c) for c, p in enumerate(self.parents) if p >= 0)

  @property
  def root(self) -> int:
    return self.parents.index(-1)

  @property
  def flip_permutation(self) -> np.ndarray:
    """Index array that swaps left and right joints (apply after mirroring)."""
    perm = np.arange(self.num_joints)
    for left, right in self.left_right_pairs:
      perm[left], perm[right] = right, left
    return perm

  def index(self, joint_name: str) -> int:
    try:
      return self.joint_names.index(joint_name)
    except ValueError:
      raise KeyError(f'{self.name} has no joint {joint_name!r}; joints are '
                     f'{list(self.joint_names)}') from None


# Human3.6M-17. Index 9 is the neck/nose joint (called "nose" by VideoPose3D,
# "neck" by others); index 10 is the head top.
H36M17 = Skeleton(
    name='h36m17',
    joint_names=('pelvis', 'right_hip', 'right_knee', 'right_ankle',
                 'left_hip', 'left_knee', 'left_ankle', 'spine', 'thorax',
                 'neck', 'head_top', 'left_shoulder', 'left_elbow',
                 'left_wrist', 'right_shoulder', 'right_elbow', 'right_wrist'),
    parents=(-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 9, 8, 11, 12, 8, 14, 15),
    left_right_pairs=((4, 1), (5, 2), (6, 3), (11, 14), (12, 15), (13, 16)),
)

NUM_JOINTS = H36M17.num_joints
ROOT = H36M17.root
FLIP_PERMUTATION = H36M17.flip_permutation

# Approximate mean H36M bone lengths (mm) per child joint of H36M17.limbs.
H36M17_MEAN_BONE_MM = {
    'right_hip': 133., 'right_knee': 454., 'right_ankle': 445.,
    'left_hip': 133., 'left_knee': 454., 'left_ankle': 445.,
    'spine': 233., 'thorax': 257., 'neck': 121., 'head_top': 115.,
    'left_shoulder': 151., 'left_elbow': 278., 'left_wrist': 251.,
    'right_shoulder': 151., 'right_elbow': 278., 'right_wrist': 251.,
}


def mean_bone_lengths_mm() -> np.ndarray:
  """[num_limbs] mean H36M bone lengths in the order of H36M17.limbs."""
  return np.array([H36M17_MEAN_BONE_MM[H36M17.joint_names[c]]
                   for _, c in H36M17.limbs], np.float32)


MPII16 = Skeleton(
    name='mpii16',
    joint_names=('right_ankle', 'right_knee', 'right_hip', 'left_hip',
                 'left_knee', 'left_ankle', 'pelvis', 'thorax', 'upper_neck',
                 'head_top', 'right_wrist', 'right_elbow', 'right_shoulder',
                 'left_shoulder', 'left_elbow', 'left_wrist'),
    parents=(1, 2, 6, 6, 3, 4, -1, 6, 7, 8, 11, 12, 7, 7, 13, 14),
    left_right_pairs=((3, 2), (4, 1), (5, 0), (13, 12), (14, 11), (15, 10)),
)

CPM14 = Skeleton(
    name='cpm14',
    joint_names=('head_top', 'neck', 'right_shoulder', 'right_elbow',
                 'right_wrist', 'left_shoulder', 'left_elbow', 'left_wrist',
                 'right_hip', 'right_knee', 'right_ankle', 'left_hip',
                 'left_knee', 'left_ankle'),
    # CPM has no pelvis: the hips hang off the neck, as CPM's limb drawing does.
    parents=(1, -1, 1, 2, 3, 1, 5, 6, 1, 8, 9, 1, 11, 12),
    left_right_pairs=((5, 2), (6, 3), (7, 4), (11, 8), (12, 9), (13, 10)),
)

# For every joint of a skeleton, the H36M-17 joint it corresponds to, or -1.
# MPII's upper neck is H36M's neck joint (9); MPII has no spine.
MPII16_TO_H36M17 = np.array([3, 2, 1, 4, 5, 6, 0, 8, 9, 10, 16, 15, 14, 11,
                             12, 13], np.int64)
# Lifting from the Deep's released code gathers CPM joints into H36M-17 as
# h36m[LIFTING_W_POS] = cpm[LIFTING_H36M_ORDER]; pelvis, spine and neck (0, 7,
# 9) get zero weight. CPM's "neck" is the base of the neck, i.e. H36M's thorax.
LIFTING_H36M_ORDER = np.array([8, 9, 10, 11, 12, 13, 1, 0, 5, 6, 7, 2, 3, 4],
                              np.int64)
LIFTING_W_POS = np.array([1, 2, 3, 4, 5, 6, 8, 10, 11, 12, 13, 14, 15, 16],
                         np.int64)
# The same map per CPM joint: CPM-14 joint k lives at H36M-17 index
# CPM14_TO_H36M17[k].
CPM14_TO_H36M17 = np.empty(14, np.int64)
CPM14_TO_H36M17[LIFTING_H36M_ORDER] = LIFTING_W_POS
H36M32_TO_H36M17 = np.array(
    [0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25, 26, 27], np.int64)

# MPI-INF-3DHP. The test set (and MuPoTS-3D) label 17 joints in this order;
# the training set labels 28, of which the 17 test joints are
# MPI3DHP28_TO_MPI3DHP17. 3DHP's "neck" sits between the shoulders (H36M's
# thorax, 8) and its "head" between neck and head top (H36M's neck/nose, 9).
MPI3DHP17 = Skeleton(
    name='mpi_inf_3dhp17',
    joint_names=('head_top', 'neck', 'right_shoulder', 'right_elbow',
                 'right_wrist', 'left_shoulder', 'left_elbow', 'left_wrist',
                 'right_hip', 'right_knee', 'right_ankle', 'left_hip',
                 'left_knee', 'left_ankle', 'pelvis', 'spine', 'head'),
    parents=(16, 15, 1, 2, 3, 1, 5, 6, 14, 8, 9, 14, 11, 12, -1, 14, 1),
    left_right_pairs=((5, 2), (6, 3), (7, 4), (11, 8), (12, 9), (13, 10)),
)
MPI3DHP28_JOINT_NAMES = (
    'spine3', 'spine4', 'spine2', 'spine', 'pelvis', 'neck', 'head',
    'head_top', 'left_clavicle', 'left_shoulder', 'left_elbow', 'left_wrist',
    'left_hand', 'right_clavicle', 'right_shoulder', 'right_elbow',
    'right_wrist', 'right_hand', 'left_hip', 'left_knee', 'left_ankle',
    'left_foot', 'left_toe', 'right_hip', 'right_knee', 'right_ankle',
    'right_foot', 'right_toe')
MPI3DHP28_TO_MPI3DHP17 = np.array([7, 5, 14, 15, 16, 9, 10, 11, 23, 24, 25,
                                   18, 19, 20, 4, 3, 6], np.int64)
# Every 3DHP-17 joint has an H36M-17 counterpart (a permutation).
MPI3DHP17_TO_H36M17 = np.array([10, 8, 14, 15, 16, 11, 12, 13, 1, 2, 3, 4, 5,
                                6, 0, 7, 9], np.int64)

# COCO-17: the keypoints of COCO person annotations and of the 2D detectors
# that write COCO results (mmpose, OpenPose's COCO model, Detectron2,
# YOLO-pose, MediaPipe converted). Parents follow the COCO skeleton drawing
# rooted at the nose (COCO has no pelvis).
COCO17 = Skeleton(
    name='coco17',
    joint_names=('nose', 'left_eye', 'right_eye', 'left_ear', 'right_ear',
                 'left_shoulder', 'right_shoulder', 'left_elbow',
                 'right_elbow', 'left_wrist', 'right_wrist', 'left_hip',
                 'right_hip', 'left_knee', 'right_knee', 'left_ankle',
                 'right_ankle'),
    parents=(-1, 0, 0, 1, 2, 0, 0, 5, 6, 7, 8, 5, 6, 11, 12, 13, 14),
    left_right_pairs=((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12),
                      (13, 14), (15, 16)),
)

# COCO-17 -> H36M-17. The twelve limb joints (shoulders, elbows, wrists,
# hips, knees, ankles) are copied; the five joints COCO lacks are derived:
#   pelvis   = midpoint of the hips
#   thorax   = midpoint of the shoulders
#   spine    = midpoint of pelvis and thorax
#   neck     = the nose (H36M-17's joint 9 sits at the nose / chin; VideoPose3D
#              calls it "nose")
#   head_top = thorax + COCO17_HEAD_TOP_FACTOR * (head centre - thorax), the
#              head centre being the score-weighted mean of eyes and ears
#              (mean H36M proportions: eye level lies about 2/3 of the way
#              from the thorax to the head top).
# A derived joint's score is the smallest score of the joints it is made of
# (the head centre's is the largest score among eyes and ears, as one eye or
# ear locates it), so a derived joint is missing whenever one of its sources
# is. COCO17_TO_H36M17[j] is the COCO joint copied to H36M joint j, -1 where
# derived.
COCO17_TO_H36M17 = np.array([-1, 12, 14, 16, 11, 13, 15, -1, -1, 0, -1, 5, 7,
                             9, 6, 8, 10], np.int64)
COCO17_HEAD_TOP_FACTOR = 1.5


def coco17_to_h36m17(keypoints: np.ndarray, scores: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
  """COCO-17 keypoints [..., 17, D] and scores [..., 17] -> H36M-17.

  Returns (joints [..., 17, D] float64, scores [..., 17] float64) per the
  mapping documented at COCO17_TO_H36M17. Scores are passed through (not
  thresholded); a caller decides which scores count as detected.
  """
  k = np.asarray(keypoints, np.float64)
  s = np.asarray(scores, np.float64)
  if k.ndim < 2 or k.shape[-2] != COCO17.num_joints or \
      s.shape != k.shape[:-1]:
    raise ValueError(f'COCO-17 keypoints must be [..., 17, D] with scores '
                     f'[..., 17]; got shapes {k.shape} and {s.shape}')
  c = {name: i for i, name in enumerate(COCO17.joint_names)}
  out = np.zeros(k.shape[:-2] + (NUM_JOINTS, k.shape[-1]))
  out_s = np.zeros(s.shape[:-1] + (NUM_JOINTS,))
  copied = COCO17_TO_H36M17 >= 0
  out[..., copied, :] = k[..., COCO17_TO_H36M17[copied], :]
  out_s[..., copied] = s[..., COCO17_TO_H36M17[copied]]

  def mid(a, b):
    return (0.5 * (k[..., c[a], :] + k[..., c[b], :]),
            np.minimum(s[..., c[a]], s[..., c[b]]))

  pelvis, pelvis_s = mid('left_hip', 'right_hip')
  thorax, thorax_s = mid('left_shoulder', 'right_shoulder')
  face = [c[n] for n in ('left_eye', 'right_eye', 'left_ear', 'right_ear')]
  w = np.maximum(s[..., face], 0.)
  total = w.sum(-1, keepdims=True)
  even = np.full_like(w, 1. / len(face))
  w = np.where(total > 0, w / np.where(total > 0, total, 1.), even)
  head = np.einsum('...f,...fd->...d', w, k[..., face, :])
  head_s = np.max(s[..., face], -1)
  h = H36M17.index
  out[..., h('pelvis'), :], out_s[..., h('pelvis')] = pelvis, pelvis_s
  out[..., h('thorax'), :], out_s[..., h('thorax')] = thorax, thorax_s
  out[..., h('spine'), :] = 0.5 * (pelvis + thorax)
  out_s[..., h('spine')] = np.minimum(pelvis_s, thorax_s)
  out[..., h('neck'), :] = k[..., c['nose'], :]
  out_s[..., h('neck')] = s[..., c['nose']]
  out[..., h('head_top'), :] = thorax + COCO17_HEAD_TOP_FACTOR * (head - thorax)
  out_s[..., h('head_top')] = np.minimum(head_s, thorax_s)
  return out, out_s


_TO_H36M17 = {'mpii16': MPII16_TO_H36M17, 'cpm14': CPM14_TO_H36M17,
              'mpi_inf_3dhp17': MPI3DHP17_TO_H36M17}
SKELETONS = {s.name: s for s in (H36M17, MPII16, CPM14, MPI3DHP17, COCO17)}


def to_h36m17(joints: np.ndarray, source: str,
              valid: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
  """Scatters [..., J_src, D] joints of `source` into H36M-17 order.

  Returns (joints [..., 17, D], valid [..., 17] float32); joints the source
  skeleton lacks are zero with valid 0.
  """
  if source == 'h36m32':
    joints = np.asarray(joints)
    if joints.shape[-2] != 32:
      raise ValueError(f'h36m32 joints must have 32 joints on axis -2, got '
                       f'shape {joints.shape}')
    out = joints[..., H36M32_TO_H36M17, :]
    v = np.ones(out.shape[:-1], np.float32)
    if valid is not None:
      v = np.asarray(valid, np.float32)[..., H36M32_TO_H36M17]
    return out, v
  if source == 'mpi_inf_3dhp28':
    joints = np.asarray(joints)
    if joints.shape[-2] != 28:
      raise ValueError(f'mpi_inf_3dhp28 joints must have 28 joints on axis '
                       f'-2, got shape {joints.shape}')
    if valid is not None:
      valid = np.asarray(valid)[..., MPI3DHP28_TO_MPI3DHP17]
    return to_h36m17(joints[..., MPI3DHP28_TO_MPI3DHP17, :], 'mpi_inf_3dhp17',
                     valid)
  if source not in _TO_H36M17:
    raise KeyError(f'unknown skeleton {source!r}; expected one of '
                   f'{sorted(_TO_H36M17) + ["h36m32", "mpi_inf_3dhp28"]}')
  index = _TO_H36M17[source]
  joints = np.asarray(joints)
  if joints.shape[-2] != len(index):
    raise ValueError(f'{source} joints must have {len(index)} joints on axis '
                     f'-2, got shape {joints.shape}')
  out = np.zeros(joints.shape[:-2] + (NUM_JOINTS, joints.shape[-1]),
                 joints.dtype)
  out[..., index, :] = joints
  v = np.zeros(joints.shape[:-2] + (NUM_JOINTS,), np.float32)
  v[..., index] = 1. if valid is None else np.asarray(valid, np.float32)
  return out, v


def from_h36m17(joints: np.ndarray, target: str) -> np.ndarray:
  """Gathers [..., 17, D] H36M-17 joints into the `target` skeleton's order."""
  if target not in _TO_H36M17:
    raise KeyError(f'unknown skeleton {target!r}; expected one of '
                   f'{sorted(_TO_H36M17)}')
  return np.asarray(joints)[..., _TO_H36M17[target], :]


def bone_lengths(joints: np.ndarray, skeleton: Skeleton = H36M17) -> np.ndarray:
  """[..., num_limbs] Euclidean bone lengths of [..., J, D] joints."""
  limbs = np.array(skeleton.limbs)
  return np.linalg.norm(joints[..., limbs[:, 1], :] - joints[..., limbs[:, 0], :],
                        axis=-1)
