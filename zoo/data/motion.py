"""The embedded dataset's motion: posed people in the world frame.

Poses are built by a kinematic chain on the H36M-17 skeleton (zoo.skeleton):
every example picks a subject (zoo.data.people: fixed identities with their
own bone lengths, proportions and clothing), an action and a phase, turns
them into joint angles (zoo.data.joint_angles: degrees with random variation,
clipped to anatomical limits) and runs forward kinematics (here).
Everything is vectorised over poses so that the motion-capture stream
(`poses`) runs at hundreds of thousands of poses per second.

World frame: x and y span the ground plane z = 0, z points up, millimetres.
The lowest point of the feet (the soles, modelled as capsules below the
ankles) touches the ground in every action. The person's own frame, before the
random yaw and small tilt, has x forward, y to the person's left, z up.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from zoo import skeleton as skel
from zoo.data import joint_angles
from zoo.data import people

# Global tilt of the whole body (degrees, both axes), on top of any yaw.
MAX_TILT_DEG = 5.


# ----------------------------------------------------------------------------
# Forward kinematics
# ----------------------------------------------------------------------------

# Rest directions of each bone in its segment's frame (x fwd, y left, z up).
def _unit(v):
  v = np.asarray(v, np.float64)
  return tuple(float(x) for x in v / np.linalg.norm(v))


_REST = {
    'right_hip': _unit([0., -1., -0.15]), 'left_hip': _unit([0., 1., -0.15]),
    'spine': _unit([0., 0., 1.]), 'thorax': _unit([0.05, 0., 1.]),
    'neck': _unit([0.25, 0., 1.]), 'head_top': _unit([-0.35, 0., 1.]),
    'left_shoulder': _unit([-0.05, 1., -0.1]),
    'right_shoulder': _unit([-0.05, -1., -0.1]),
}
# Child joint name -> index into a subject's bone_lengths_mm.
BONE_INDEX = {skel.H36M17.joint_names[c]: k
               for k, (_, c) in enumerate(skel.H36M17.limbs)}


# A frame is a tuple (x, y, z) of [3, n] column vectors (component-major): the
# segment's axes in world coordinates. Post-multiplying by a rotation about a
# local axis only mixes two columns, which is far cheaper than batched 3x3
# matrix products. Rotations take precomputed (cos, sin) pairs of [n] arrays.
def _post_x(f, cs):
  x, y, z = f
  c, s = cs
  return x, c * y + s * z, c * z - s * y


def _post_y(f, cs):
  x, y, z = f
  c, s = cs
  return c * x - s * z, y, s * x + c * z


def _post_z(f, cs):
  x, y, z = f
  c, s = cs
  return c * x + s * y, c * y - s * x, z


def _post_yxz(f, y, x, z):
  """f @ R_y(y) @ R_x(x) @ R_z(z), angles given as (cos, sin) pairs."""
  return _post_z(_post_x(_post_y(f, y), x), z)


def _local(f, v):
  """Local vector (3 Python floats) expressed in world coordinates ([3, n])."""
  return f[0] * v[0] + f[1] * v[1] + f[2] * v[2]


def _stack(f):
  """Frame -> [n, 3, 3] rotation matrices (columns = axes)."""
  return np.stack(f, 0).transpose(2, 1, 0)


@dataclasses.dataclass
class MotionBatch:
  """A batch of posed subjects in the world frame (z up, mm, ground z = 0).

  `frames` holds world orientations ([n, 3, 3], columns = the segment's x
  forward, y left, z up axes) and `points` extra surface points, both only
  what the renderer needs: feet (heel and toe capsule centres), hand tips,
  chair placement for seated actions.
  """
  joints_world_mm: np.ndarray      # [n, 17, 3]
  subject_index: np.ndarray        # [n] index into people.SUBJECTS
  action_index: np.ndarray         # [n] index into joint_angles.ACTIONS
  phase: np.ndarray                # [n] in [0, 1)
  angles_deg: np.ndarray           # [n, len(joint_angles.DOFS)]
  frames: dict[str, np.ndarray]
  points: dict[str, np.ndarray]

  @property
  def subjects(self) -> list[str]:
    return [people.SUBJECTS[i].name for i in self.subject_index]

  @property
  def actions(self) -> list[str]:
    return [joint_angles.ACTIONS[i] for i in self.action_index]


# Sole capsules below the ankle, in the foot frame (x toe-wards, z up), as
# fractions of (foot length, ankle height) and radius as fraction of ankle
# height. The capsule bottoms touch the ground when the ankle is at its height.
_HEEL = (-0.2, -0.5, 0.5)
_TOE = (0.72, -0.6, 0.4)


def forward_kinematics(angles_deg: np.ndarray, subject_index: np.ndarray,
                       yaw_rad: np.ndarray, tilt_rad: np.ndarray,
                       offset_xy_mm: np.ndarray,
                       render_info: bool = True) -> MotionBatch:
  """Joint angles -> grounded world-frame joints, plus renderer extras.

  Args:
    angles_deg: [n, len(joint_angles.DOFS)] joint angles (degrees, see
      joint_angles.LIMITS_DEG).
    subject_index: [n] indices into people.SUBJECTS (bone lengths, foot
      size).
    yaw_rad: [n] heading about the world z axis.
    tilt_rad: [n, 2] small whole-body tilt about the person's x and y axes.
    offset_xy_mm: [n, 2] ground position of the pelvis.
    render_info: also return segment frames and surface points.

  Computes in the dtype of `angles_deg` (float32 is about twice as fast).
  """
  n = len(angles_deg)
  dtype = angles_deg.dtype
  yaw_rad = yaw_rad.astype(dtype)
  tilt_rad = tilt_rad.astype(dtype)
  offset_xy_mm = offset_xy_mm.astype(dtype)
  rad = np.deg2rad(angles_deg).T  # [D, n]
  cos, sin = np.cos(rad), np.sin(rad)

  def cs(name, sign=1.):
    i = joint_angles.DOF_INDEX[name]
    return cos[i], sign * sin[i]

  def neg(pair):
    return pair[0], -pair[1]

  bones = np.stack([s.bone_lengths_mm for s in people.SUBJECTS],
                   1).astype(dtype)[:, subject_index]
  scale = np.array([s.height_factor for s in people.SUBJECTS],
                   dtype)[subject_index]

  def length(name):
    return bones[BONE_INDEX[name]]

  cy, sy = np.cos(yaw_rad), np.sin(yaw_rad)
  zero, one = np.zeros(n, dtype), np.ones(n, dtype)
  world = (np.stack([cy, sy, zero]), np.stack([-sy, cy, zero]),
           np.stack([zero, zero, one]))
  pitch = tilt_rad[:, 1] + rad[joint_angles.DOF_INDEX['pelvis_pitch']]
  roll = tilt_rad[:, 0] + rad[joint_angles.DOF_INDEX['pelvis_roll']]
  root = _post_x(_post_y(world, (np.cos(pitch), np.sin(pitch))),
                 (np.cos(roll), np.sin(roll)))
  half = [rad[joint_angles.DOF_INDEX[d]] / 2
          for d in ('spine_flex', 'spine_lat', 'spine_twist')]
  half = [(np.cos(a), np.sin(a)) for a in half]
  lumbar = _post_yxz(root, *half)
  thoracic = _post_yxz(lumbar, *half)
  head = _post_yxz(thoracic, cs('neck_flex'), cs('neck_lat'), cs('neck_rot'))
  j = np.zeros((17, 3, n), dtype)
  j[1] = _local(root, _REST['right_hip']) * length('right_hip')
  j[4] = _local(root, _REST['left_hip']) * length('left_hip')
  j[7] = _local(lumbar, _REST['spine']) * length('spine')
  j[8] = j[7] + _local(thoracic, _REST['thorax']) * length('thorax')
  j[9] = j[8] + _local(head, _REST['neck']) * length('neck')
  j[10] = j[9] + _local(head, _REST['head_top']) * length('head_top')
  frames = {'pelvis': root, 'lumbar': lumbar, 'thorax': thoracic,
            'head': head}
  points = {}
  flen = people.FOOT_LENGTH_MM * scale
  ah = people.ANKLE_HEIGHT_MM * scale
  for s, sign, hip, knee, ankle in (('l', 1., 4, 5, 6), ('r', -1., 1, 2, 3)):
    side = 'left' if s == 'l' else 'right'
    thigh = _post_yxz(root, neg(cs(s + '_hip_flex')), cs(s + '_hip_abd', sign),
                      cs(s + '_hip_rot', -sign))
    shank = _post_y(thigh, cs(s + '_knee'))
    j[knee] = j[hip] - thigh[2] * length(side + '_knee')
    j[ankle] = j[knee] - shank[2] * length(side + '_ankle')
    # Feet: flat on the ground by default (heading from the shank and the
    # pelvis), pitched toe-down by the ankle angle.
    fx = shank[0][0] + 0.25 * root[0][0]
    fy = shank[0][1] + 0.25 * root[0][1]
    norm = np.sqrt(fx * fx + fy * fy) + 1e-9
    fx, fy = fx / norm, fy / norm
    c, sn = cs(s + '_ankle')
    foot_x = np.stack([c * fx, c * fy, -sn])
    foot_z = np.stack([sn * fx, sn * fy, c])
    points[s + '_heel'] = (j[ankle] + _HEEL[0] * flen * foot_x
                           + _HEEL[1] * ah * foot_z)
    points[s + '_toe'] = (j[ankle] + _TOE[0] * flen * foot_x
                          + _TOE[1] * ah * foot_z)
    if render_info:
      frames[s + '_foot'] = (foot_x, np.stack([-fy, fx, zero]), foot_z)
  for s, sign, sh, el, wr in (('l', 1., 11, 12, 13), ('r', -1., 14, 15, 16)):
    side = 'left' if s == 'l' else 'right'
    clav = _post_x(thoracic, cs(s + '_shrug', sign))
    j[sh] = j[8] + _local(clav, _REST[side + '_shoulder']) * (
        length(side + '_shoulder'))
    upper = _post_yxz(thoracic, neg(cs(s + '_sh_flex')),
                      cs(s + '_sh_abd', sign), cs(s + '_sh_rot', -sign))
    fore = _post_y(upper, neg(cs(s + '_elbow')))
    j[el] = j[sh] - upper[2] * length(side + '_elbow')
    j[wr] = j[el] - fore[2] * length(side + '_wrist')
    if render_info:
      hand = _post_y(fore, neg(cs(s + '_wrist')))
      frames[s + '_hand'] = hand
      points[s + '_hand_tip'] = j[wr] - hand[2] * people.HAND_LENGTH_MM * scale
  # Ground the lowest sole point; place the pelvis at the offset.
  ground = np.minimum.reduce([
      points['l_heel'][2] - _HEEL[2] * ah, points['l_toe'][2] - _TOE[2] * ah,
      points['r_heel'][2] - _HEEL[2] * ah, points['r_toe'][2] - _TOE[2] * ah])
  shift = np.stack([offset_xy_mm[:, 0], offset_xy_mm[:, 1], -ground])
  j += shift
  joints = j.transpose(2, 0, 1)
  if render_info:
    frames = {k: _stack(f) for k, f in frames.items()}
    points = {k: (v + shift).T for k, v in points.items()}
  else:
    frames, points = {}, {}
  return MotionBatch(joints_world_mm=joints, subject_index=subject_index,
                     action_index=np.zeros(n, np.int64),
                     phase=np.zeros(n), angles_deg=angles_deg, frames=frames,
                     points=points)


def sole_radii_mm(subject_index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(heel, toe) sole capsule radii (mm) of the given subjects."""
  heights = np.array([s.height_factor for s in people.SUBJECTS])
  ah = people.ANKLE_HEIGHT_MM * heights[subject_index]
  return _HEEL[2] * ah, _TOE[2] * ah


def sample_motion(rng: np.random.Generator, num: int,
                  subjects: tuple[str, ...],
                  actions: tuple[str, ...] = joint_angles.ACTIONS,
                  render_info: bool = True, dtype=None) -> MotionBatch:
  """Draws `num` posed subjects (uniform over `subjects` and `actions`).

  Angles are drawn in float64; `dtype` (default float64) is the dtype of the
  kinematics and of the returned arrays.
  """
  subj_ids = np.array([people.SUBJECTS.index(people.SUBJECT_BY_NAME[s])
                       for s in subjects])
  act_ids = np.array([joint_angles.ACTIONS.index(a) for a in actions])
  subject_index = subj_ids[rng.integers(0, len(subj_ids), num)]
  action_index = act_ids[rng.integers(0, len(act_ids), num)]
  phase = rng.random(num)
  yaw = rng.uniform(0., 2 * np.pi, num)
  tilt = np.deg2rad(np.clip(rng.normal(0., 2., (num, 2)), -MAX_TILT_DEG,
                            MAX_TILT_DEG))
  offset = rng.uniform(-1000., 1000., (num, 2))
  angles = joint_angles.sample_angles(rng, action_index, phase)
  if dtype is not None:
    angles = angles.astype(dtype)
  batch = forward_kinematics(angles, subject_index, yaw, tilt, offset,
                             render_info)
  batch.action_index = action_index
  batch.phase = phase
  return batch


_SPLIT_CODE = {'train': 0, 'test': 1}


def poses(num: int, split: str = 'train', seed: int = 0,
          return_info: bool = False):
  """Motion-capture stream without rendering: float32 [num, 17, 3] world mm.

  World frame: z up, ground plane z = 0, millimetres (see module docstring).
  Deterministic for (num, split, seed). With `return_info`, also returns a
  dict of [num] arrays: 'subject' and 'action' (names), 'subject_index',
  'action_index', 'phase'.
  """
  if num < 0:
    raise ValueError(f'num must be >= 0, got {num}')
  subjects = people.split_subjects(split)
  rng = np.random.default_rng([int(seed), _SPLIT_CODE[split], 0x5EED])
  chunks, infos = [], []
  chunk = 1 << 15
  for start in range(0, num, chunk):
    b = sample_motion(rng, min(chunk, num - start), subjects,
                      render_info=False, dtype=np.float32)
    chunks.append(b.joints_world_mm.astype(np.float32))
    infos.append((b.subject_index, b.action_index, b.phase))
  out = (np.concatenate(chunks) if chunks
         else np.zeros((0, skel.NUM_JOINTS, 3), np.float32))
  if not return_info:
    return out
  if infos:
    si, ai, ph = (np.concatenate(x) for x in zip(*infos))
  else:
    si, ai, ph = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))
  names = np.array([s.name for s in people.SUBJECTS])
  return out, {'subject': names[si],
               'action': np.array(joint_angles.ACTIONS)[ai],
               'subject_index': si, 'action_index': ai, 'phase': ph}
