"""The embedded dataset's pose model: subjects, parametric actions, kinematics.

Poses are built by a kinematic chain on the H36M-17 skeleton (zoo.skeleton):
every example picks a subject (fixed identities with their own bone lengths,
proportions and clothing), an action and a phase, turns them into joint angles
(degrees) with random variation, clips the angles to anatomical limits
(`LIMITS_DEG`) and runs forward kinematics. Everything is vectorised over poses
so that the motion-capture stream (`poses`) runs at hundreds of thousands of
poses per second.

World frame: x and y span the ground plane z = 0, z points up, millimetres.
The lowest point of the feet (the soles, modelled as capsules below the
ankles) touches the ground in every action. The person's own frame, before the
random yaw and small tilt, has x forward, y to the person's left, z up.

Split: the train subjects S1 S5 S6 S7 S8 and the test subjects S9 S11 are
disjoint, like Human3.6M's protocol split.
"""
from __future__ import annotations

import dataclasses
import functools
import zlib

import numpy as np

from zoo import skeleton as skel

# ----------------------------------------------------------------------------
# Subjects
# ----------------------------------------------------------------------------

# Bones that share a jitter factor (a subject's left and right limbs match).
_BONE_PAIRS = {'left_hip': 'right_hip', 'left_knee': 'right_knee',
               'left_ankle': 'right_ankle', 'left_shoulder': 'right_shoulder',
               'left_elbow': 'right_elbow', 'left_wrist': 'right_wrist'}


@dataclasses.dataclass(frozen=True)
class Subject:
  """One fixed identity: body proportions and clothing.

  Colours are RGB 0-255. Left and right limbs share every colour, so colour is
  never a left/right cue.
  """
  name: str
  height_factor: float       # scales the H36M mean bone lengths
  girth: float               # limb and torso thickness multiplier
  shoulder_width: float      # chest breadth multiplier
  hip_width: float           # pelvis breadth multiplier
  skin: tuple[int, int, int]
  hair: tuple[int, int, int]
  top: tuple[int, int, int]
  bottom: tuple[int, int, int]
  shoes: tuple[int, int, int]
  sleeves: str               # 'long' | 'short'
  legwear: str               # 'long' | 'shorts'
  hair_style: str            # 'short' | 'long'
  # Front of the top (a front/back cue: drawn on the chest only): 'jacket'
  # (open jacket over an inner shirt of colour `accent`, from belt to neck)
  # or 'print' (T-shirt with a chest print of colour `accent`).
  front_style: str = 'print'
  accent: tuple[int, int, int] = (235, 230, 215)

  @property
  def bone_lengths_mm(self) -> np.ndarray:
    """[16] bone lengths (mm) in the order of skel.H36M17.limbs."""
    return _subject_bones(self.name, self.height_factor)

  @property
  def foot_length_mm(self) -> float:
    return FOOT_LENGTH_MM * self.height_factor

  @property
  def ankle_height_mm(self) -> float:
    return ANKLE_HEIGHT_MM * self.height_factor

  @property
  def hand_length_mm(self) -> float:
    return HAND_LENGTH_MM * self.height_factor


# Render-only body sizes at height factor 1 (mm).
FOOT_LENGTH_MM = 250.
ANKLE_HEIGHT_MM = 80.
HAND_LENGTH_MM = 185.


@functools.lru_cache(maxsize=None)
def _subject_bones(name: str, height_factor: float) -> np.ndarray:
  """Mean H36M bones x height factor x a few percent jitter per bone pair.

  The jitter comes from a generator keyed by the subject's name only, so a
  subject's skeleton is the same in every dataset and seed.
  """
  rng = np.random.default_rng(zlib.crc32(name.encode()))
  names = [skel.H36M17.joint_names[c] for _, c in skel.H36M17.limbs]
  jitter = {n: float(np.clip(rng.normal(0., 0.03), -0.06, 0.06))
            for n in names}
  for left, right in _BONE_PAIRS.items():
    jitter[right] = jitter[left]
  bones = np.array([skel.H36M17_MEAN_BONE_MM[n] * height_factor
                    * (1. + jitter[n]) for n in names], np.float64)
  bones.flags.writeable = False
  return bones


SUBJECTS: tuple[Subject, ...] = (
    Subject('S1', 0.87, 0.92, 0.90, 1.08, (233, 190, 160), (60, 40, 30),
            (178, 42, 52), (38, 40, 52), (225, 225, 225), 'short', 'long',
            'long', 'print', (240, 228, 196)),
    Subject('S5', 0.93, 1.00, 0.95, 1.05, (196, 148, 116), (22, 18, 18),
            (36, 128, 138), (104, 136, 178), (52, 42, 40), 'long', 'long',
            'long', 'jacket', (232, 232, 226)),
    Subject('S6', 1.13, 1.22, 1.08, 1.06, (158, 108, 78), (25, 22, 22),
            (128, 128, 134), (168, 148, 108), (92, 60, 38), 'short', 'long',
            'short', 'print', (28, 44, 96)),
    Subject('S7', 0.98, 0.95, 1.00, 0.98, (240, 202, 176), (204, 172, 112),
            (222, 188, 58), (40, 50, 92), (150, 40, 40), 'long', 'long',
            'short', 'jacket', (36, 36, 40)),
    Subject('S8', 1.06, 1.05, 1.06, 1.00, (112, 76, 56), (18, 16, 16),
            (226, 226, 222), (34, 34, 36), (120, 120, 124), 'short', 'shorts',
            'short', 'print', (200, 44, 40)),
    Subject('S9', 1.02, 1.10, 1.04, 1.02, (214, 168, 138), (98, 68, 44),
            (58, 118, 62), (58, 78, 128), (28, 28, 30), 'long', 'long',
            'short', 'jacket', (234, 232, 222)),
    Subject('S11', 1.09, 0.97, 1.02, 0.97, (184, 134, 100), (30, 24, 22),
            (122, 50, 88), (98, 98, 104), (230, 230, 230), 'short', 'long',
            'short', 'print', (244, 206, 70)),
)
SUBJECT_BY_NAME = {s.name: s for s in SUBJECTS}
SPLITS: dict[str, tuple[str, ...]] = {
    'train': ('S1', 'S5', 'S6', 'S7', 'S8'),
    'test': ('S9', 'S11'),
}


def split_subjects(split: str) -> tuple[str, ...]:
  if split not in SPLITS:
    raise ValueError(f'unknown split {split!r}; expected one of '
                     f'{sorted(SPLITS)}')
  return SPLITS[split]


# ----------------------------------------------------------------------------
# Joint angles: degrees of freedom, anatomical limits, actions
# ----------------------------------------------------------------------------

# Sign conventions (all degrees): flexion moves a segment forward (spine, neck,
# hip, shoulder; elbow brings the forearm forward, knee brings the shank
# back); abduction moves a limb away from the midline; *_rot is internal
# rotation about the limb's long axis; *_lat bends / *_twist and *_rot turn
# the trunk and head towards the person's right for positive values. Ankle and
# wrist angles only shape the rendered feet and hands (they move no joint).
LIMITS_DEG: dict[str, tuple[float, float]] = {
    'pelvis_pitch': (-20., 75.), 'pelvis_roll': (-15., 15.),
    'spine_flex': (-25., 70.), 'spine_lat': (-30., 30.),
    'spine_twist': (-40., 40.),
    'neck_flex': (-45., 60.), 'neck_lat': (-35., 35.), 'neck_rot': (-70., 70.),
    'l_hip_flex': (-30., 130.), 'l_hip_abd': (-25., 50.),
    'l_hip_rot': (-40., 40.), 'l_knee': (0., 150.), 'l_ankle': (-25., 45.),
    'r_hip_flex': (-30., 130.), 'r_hip_abd': (-25., 50.),
    'r_hip_rot': (-40., 40.), 'r_knee': (0., 150.), 'r_ankle': (-25., 45.),
    'l_sh_flex': (-50., 180.), 'l_sh_abd': (-20., 180.),
    'l_sh_rot': (-80., 90.), 'l_elbow': (0., 150.), 'l_wrist': (-60., 70.),
    'l_shrug': (-10., 25.),
    'r_sh_flex': (-50., 180.), 'r_sh_abd': (-20., 180.),
    'r_sh_rot': (-80., 90.), 'r_elbow': (0., 150.), 'r_wrist': (-60., 70.),
    'r_shrug': (-10., 25.),
}
DOFS: tuple[str, ...] = tuple(LIMITS_DEG)
_I = {name: i for i, name in enumerate(DOFS)}
_LOWER = np.array([LIMITS_DEG[d][0] for d in DOFS])
_UPPER = np.array([LIMITS_DEG[d][1] for d in DOFS])
# Mirroring a pose swaps left/right angles and negates sideways ones.
_MIRROR_PERM = np.array([_I[d.replace('l_', '#').replace('r_', 'l_')
                            .replace('#', 'r_')] if d[:2] in ('l_', 'r_')
                         else _I[d] for d in DOFS])
_MIRROR_SIGN = np.array([-1. if d in ('pelvis_roll', 'spine_lat', 'spine_twist',
                                      'neck_lat', 'neck_rot') else 1.
                         for d in DOFS])
# Global tilt of the whole body (degrees, both axes), on top of any yaw.
MAX_TILT_DEG = 5.

ACTIONS: tuple[str, ...] = (
    'walking', 'jogging', 'sitting', 'sitting_down', 'squatting', 'waving',
    'phoning', 'pointing', 'picking_up', 'kicking', 'discussion',
    'taking_photo')
# Actions whose person sits on a chair (the renderer draws one).
SEATED_ACTIONS = ('sitting', 'sitting_down')


class _Angles:
  """[n, len(DOFS)] degrees with named column access."""

  def __init__(self, n: int):
    self.a = np.zeros((n, len(DOFS)))
    self.n = n

  def __getitem__(self, name: str) -> np.ndarray:
    return self.a[:, _I[name]]

  def __setitem__(self, name: str, value):
    self.a[:, _I[name]] = value

  def both(self, name: str, value_l, value_r=None):
    self['l_' + name] = value_l
    self['r_' + name] = value_l if value_r is None else value_r


def _bump(phase, centre, width):
  """Periodic Gaussian bump on the unit circle of phases."""
  d = (phase - centre + 0.5) % 1. - 0.5
  return np.exp(-0.5 * (d / width) ** 2)


def _standing(rng: np.random.Generator, n: int) -> _Angles:
  """A relaxed standing pose with random variation (base of every action)."""
  a = _Angles(n)
  a['pelvis_pitch'] = rng.normal(2., 2., n)
  a['spine_flex'] = rng.normal(3., 3., n)
  a['spine_lat'] = rng.normal(0., 2., n)
  a['spine_twist'] = rng.normal(0., 4., n)
  a['neck_flex'] = rng.normal(5., 7., n)
  a['neck_lat'] = rng.normal(0., 4., n)
  a['neck_rot'] = rng.normal(0., 15., n)
  for s in 'lr':
    a[s + '_hip_flex'] = rng.normal(0., 3., n)
    a[s + '_hip_abd'] = rng.uniform(2., 8., n)
    a[s + '_hip_rot'] = rng.uniform(-15., 5., n)
    a[s + '_knee'] = 2. + np.abs(rng.normal(0., 3., n))
    a[s + '_ankle'] = rng.normal(0., 3., n)
    a[s + '_sh_flex'] = rng.normal(0., 6., n)
    a[s + '_sh_abd'] = rng.uniform(7., 15., n)
    a[s + '_sh_rot'] = rng.uniform(0., 30., n)
    a[s + '_elbow'] = rng.uniform(5., 25., n)
    a[s + '_wrist'] = rng.normal(0., 10., n)
    a[s + '_shrug'] = rng.normal(0., 2., n)
  # Weight on one leg for some.
  shift = rng.random(n) < 0.4
  a['r_knee'] += shift * rng.uniform(8., 20., n)
  a['r_hip_flex'] += shift * rng.uniform(3., 10., n)
  a['l_hip_abd'] += shift * rng.uniform(0., 5., n)
  return a


def _gesture_arm(a: _Angles, rng: np.random.Generator, side: str, n: int,
                 mask=None):
  """A conversational gesture of one arm (where mask is true)."""
  m = np.ones(n, bool) if mask is None else mask
  a[side + '_sh_flex'] = np.where(m, rng.uniform(-5., 70., n),
                                  a[side + '_sh_flex'])
  a[side + '_sh_abd'] = np.where(m, rng.uniform(5., 45., n),
                                 a[side + '_sh_abd'])
  a[side + '_sh_rot'] = np.where(m, rng.uniform(-10., 60., n),
                                 a[side + '_sh_rot'])
  a[side + '_elbow'] = np.where(m, rng.uniform(20., 120., n),
                                a[side + '_elbow'])


def _hands_on_hips(a: _Angles, rng: np.random.Generator, side: str, n: int,
                   mask):
  a[side + '_sh_flex'] = np.where(mask, rng.uniform(-25., -10., n),
                                  a[side + '_sh_flex'])
  a[side + '_sh_abd'] = np.where(mask, rng.uniform(35., 50., n),
                                 a[side + '_sh_abd'])
  a[side + '_sh_rot'] = np.where(mask, rng.uniform(55., 80., n),
                                 a[side + '_sh_rot'])
  a[side + '_elbow'] = np.where(mask, rng.uniform(95., 120., n),
                                a[side + '_elbow'])


def _gait(a: _Angles, rng: np.random.Generator, phase: np.ndarray,
          amplitude: np.ndarray, run: bool, arms: bool = True):
  """Walking / jogging gait angles for a leg cycle starting at heel strike."""
  n = len(phase)
  for s, ph in (('l', phase), ('r', (phase + 0.5) % 1.)):
    c = np.cos(2 * np.pi * ph)
    if run:
      a[s + '_hip_flex'] = 15. + amplitude * 30. * c
      a[s + '_knee'] = 12. + amplitude * (20. * _bump(ph, 0.12, 0.08)
                                          + 85. * _bump(ph, 0.68, 0.13))
      a[s + '_ankle'] = (-8. * _bump(ph, 0., 0.06)
                         + 30. * _bump(ph, 0.55, 0.1))
    else:
      a[s + '_hip_flex'] = 8. + amplitude * 20. * c
      a[s + '_knee'] = 5. + amplitude * (12. * _bump(ph, 0.12, 0.07)
                                         + 55. * _bump(ph, 0.72, 0.11))
      a[s + '_ankle'] = (-10. * _bump(ph, 0., 0.06)
                         + 22. * _bump(ph, 0.58, 0.07))
    a[s + '_hip_abd'] = rng.uniform(1., 5., n)
    if arms:
      # The arm swings opposite to the leg on the same side.
      swing = -amplitude * (30. if run else 18.) * c
      a[s + '_sh_flex'] = swing + (8. if run else 3.)
      a[s + '_sh_abd'] = rng.uniform(8., 16., n)
      if run:
        a[s + '_elbow'] = rng.uniform(75., 100., n) + 10. * c
        a[s + '_sh_rot'] = rng.uniform(10., 35., n)
      else:
        a[s + '_elbow'] = 10. + 0.6 * np.maximum(swing, 0.) + rng.uniform(
            0., 15., n)
  a['spine_twist'] = -amplitude * (10. if run else 6.) * np.cos(
      2 * np.pi * phase) + rng.normal(0., 2., n)
  a['pelvis_roll'] = 3. * np.sin(4 * np.pi * phase)
  a['pelvis_pitch'] = rng.uniform(8., 15., n) if run else rng.normal(3., 2., n)
  a['neck_rot'] = rng.normal(0., 8., n)


def _walking(rng, n, phase):
  a = _standing(rng, n)
  _gait(a, rng, phase, rng.uniform(0.75, 1.2, n), run=False)
  return a


def _jogging(rng, n, phase):
  a = _standing(rng, n)
  _gait(a, rng, phase, rng.uniform(0.8, 1.15, n), run=True)
  a['neck_flex'] = rng.normal(-2., 5., n)
  return a


def _seated_legs(a: _Angles, rng, n, progress):
  """Legs and trunk of a seated pose, scaled by progress in [0, 1]."""
  a['pelvis_pitch'] = rng.uniform(-10., 12., n) * progress + (
      1 - progress) * a['pelvis_pitch']
  for s in 'lr':
    a[s + '_hip_flex'] = progress * rng.uniform(80., 98., n) + a['pelvis_pitch']
    a[s + '_knee'] = progress * rng.uniform(75., 110., n)
    a[s + '_hip_abd'] = rng.uniform(0., 18., n)
    a[s + '_hip_rot'] = rng.uniform(-15., 15., n)
  # One leg stretched forward for some.
  stretch = rng.random(n) < 0.25
  a['l_knee'] = np.where(stretch, progress * rng.uniform(25., 60., n),
                         a['l_knee'])


def _sitting(rng, n, phase):
  a = _standing(rng, n)
  _seated_legs(a, rng, n, 1.)
  a['spine_flex'] = rng.uniform(-5., 25., n)
  # Hands on the thighs, or gesturing, or one at the head (phoning, eating).
  style = rng.integers(0, 3, n)
  for s in 'lr':
    on_lap = style == 0
    a[s + '_sh_flex'] = np.where(on_lap, rng.uniform(20., 45., n),
                                 a[s + '_sh_flex'])
    a[s + '_sh_rot'] = np.where(on_lap, rng.uniform(10., 40., n),
                                a[s + '_sh_rot'])
    a[s + '_elbow'] = np.where(on_lap, rng.uniform(45., 85., n),
                               a[s + '_elbow'])
  _gesture_arm(a, rng, 'r', n, style == 1)
  _gesture_arm(a, rng, 'l', n, (style == 1) & (rng.random(n) < 0.5))
  _hand_at_head(a, rng, 'r', n, style == 2)
  return a


def _sitting_down(rng, n, phase):
  """Standing up in front of a chair (phase 0) to seated (phase 1)."""
  a = _standing(rng, n)
  p = phase
  _seated_legs(a, rng, n, p)
  lean = np.sin(np.pi * p) * rng.uniform(25., 45., n)
  a['pelvis_pitch'] = a['pelvis_pitch'] + lean
  for s in 'lr':
    a[s + '_hip_flex'] = a[s + '_hip_flex'] + lean
    a[s + '_sh_flex'] = a[s + '_sh_flex'] + np.sin(np.pi * p) * rng.uniform(
        10., 50., n)
    a[s + '_elbow'] = a[s + '_elbow'] + np.sin(np.pi * p) * 20.
  return a


def _squatting(rng, n, phase):
  a = _standing(rng, n)
  depth = np.where(rng.random(n) < 0.3, rng.uniform(0.45, 0.8, n), 1.)
  a['pelvis_pitch'] = depth * rng.uniform(15., 45., n)
  a['spine_flex'] = rng.uniform(0., 25., n)
  a['neck_flex'] = rng.uniform(-30., 5., n)
  for s in 'lr':
    a[s + '_hip_flex'] = a['pelvis_pitch'] + depth * rng.uniform(70., 92., n)
    a[s + '_knee'] = depth * rng.uniform(105., 140., n)
    a[s + '_hip_abd'] = rng.uniform(10., 28., n)
    a[s + '_hip_rot'] = rng.uniform(-30., -5., n)
    a[s + '_ankle'] = 0.
  # Arms (shoulder flexion is relative to the leaning trunk): stretched
  # forward for balance, hands on the knees, or hanging between the knees.
  trunk = a['pelvis_pitch'] + a['spine_flex']
  style = rng.integers(0, 3, n)
  for s in 'lr':
    a[s + '_sh_flex'] = trunk + np.select(
        [style == 0, style == 1],
        [rng.uniform(60., 100., n), rng.uniform(25., 55., n)],
        rng.uniform(5., 25., n))
    a[s + '_elbow'] = np.select([style == 0, style == 1],
                                [rng.uniform(0., 40., n),
                                 rng.uniform(20., 60., n)],
                                rng.uniform(60., 110., n))
    a[s + '_sh_abd'] = np.where(style == 1, rng.uniform(5., 25., n),
                                a[s + '_sh_abd'])
  return a


def _waving(rng, n, phase):
  a = _standing(rng, n)
  wave = np.sin(2 * np.pi * phase)
  both = rng.random(n) < 0.35  # both arms raised
  for s, m in (('r', np.ones(n, bool)), ('l', both)):
    a[s + '_sh_abd'] = np.where(m, rng.uniform(95., 165., n) + 12. * wave,
                                a[s + '_sh_abd'])
    a[s + '_sh_flex'] = np.where(m, rng.uniform(0., 50., n), a[s + '_sh_flex'])
    a[s + '_sh_rot'] = np.where(m, rng.uniform(-40., 10., n),
                                a[s + '_sh_rot'])
    a[s + '_elbow'] = np.where(m, rng.uniform(10., 80., n) + 20. * wave,
                               a[s + '_elbow'])
    a[s + '_shrug'] = np.where(m, rng.uniform(8., 20., n), a[s + '_shrug'])
  a['neck_flex'] = rng.uniform(-20., 10., n)
  return a


def _hand_at_head(a: _Angles, rng, side: str, n: int, mask):
  """Hand at the ear (phone) or, for a third, at the mouth (eating, smoking).

  Ranges found by a grid search of the kinematics for the hand's midpoint at
  the ear / mouth with the elbow below the shoulder.
  """
  mouth = rng.random(n) < 0.33
  flex = np.where(mouth, rng.uniform(30., 50., n), rng.uniform(62., 78., n))
  abd = np.where(mouth, rng.uniform(-5., 15., n), rng.uniform(-10., 12., n))
  rot = np.where(mouth, rng.uniform(40., 60., n), rng.uniform(12., 28., n))
  wrist = np.where(mouth, rng.uniform(-10., 15., n), rng.uniform(25., 45., n))
  for name, value in (('_sh_flex', flex), ('_sh_abd', abd), ('_sh_rot', rot),
                      ('_elbow', rng.uniform(138., 150., n)),
                      ('_wrist', wrist)):
    a[side + name] = np.where(mask, value, a[side + name])


def _phoning(rng, n, phase):
  a = _standing(rng, n)
  walking = rng.random(n) < 0.4
  g = _standing(rng, n)
  _gait(g, rng, phase, rng.uniform(0.5, 0.8, n), run=False, arms=False)
  a.a = np.where(walking[:, None], g.a, a.a)
  _hand_at_head(a, rng, 'r', n, np.ones(n, bool))
  a['neck_lat'] = rng.uniform(0., 15., n)
  _hands_on_hips(a, rng, 'l', n, rng.random(n) < 0.3)
  return a


def _pointing(rng, n, phase):
  a = _standing(rng, n)
  a['r_sh_flex'] = rng.uniform(45., 135., n)
  a['r_sh_abd'] = rng.uniform(-10., 60., n)
  a['r_sh_rot'] = rng.uniform(-10., 20., n)
  a['r_elbow'] = rng.uniform(0., 25., n)
  a['r_wrist'] = rng.uniform(-20., 20., n)
  a['spine_twist'] = rng.uniform(-5., 20., n)
  a['neck_rot'] = rng.uniform(0., 35., n)
  # Reaching forward and down for some.
  reach = rng.random(n) < 0.3
  lean = reach * rng.uniform(10., 30., n)
  a['pelvis_pitch'] += lean
  a['l_hip_flex'] += lean
  a['r_hip_flex'] += lean
  a['r_sh_flex'] = np.where(reach, rng.uniform(30., 80., n), a['r_sh_flex'])
  return a


def _picking_up(rng, n, phase):
  """Bending down to pick something up; phase = how far down."""
  a = _standing(rng, n)
  p = 0.3 + 0.7 * phase
  knees = np.where(rng.random(n) < 0.3, rng.uniform(40., 80., n),
                   rng.uniform(0., 30., n))
  a['pelvis_pitch'] = p * rng.uniform(40., 70., n)
  a['spine_flex'] = p * rng.uniform(10., 40., n)
  a['neck_flex'] = rng.uniform(-35., 10., n)
  for s in 'lr':
    a[s + '_knee'] = p * knees
    a[s + '_hip_flex'] = a['pelvis_pitch'] + p * (0.5 * knees
                                                  + rng.uniform(0., 10., n))
    a[s + '_hip_abd'] = rng.uniform(3., 15., n)
  trunk = a['pelvis_pitch'] + a['spine_flex']
  both = rng.random(n) < 0.5
  for s, m in (('r', np.ones(n, bool)), ('l', both)):
    a[s + '_sh_flex'] = np.where(m, trunk * rng.uniform(0.7, 1.05, n),
                                 a[s + '_sh_flex'] + 0.5 * trunk)
    a[s + '_elbow'] = np.where(m, rng.uniform(0., 30., n), a[s + '_elbow'])
  return a


def _kicking(rng, n, phase):
  """Right leg: wind-up (phase 0) -> kick -> follow-through (phase 1).

  The support leg stays straight under the pelvis; the kicking leg's knee
  is bent while it swings under the body so its foot clears the ground.
  """
  a = _standing(rng, n)
  top = rng.uniform(45., 100., n)
  swing = 0.5 - 0.5 * np.cos(np.pi * phase)
  a['pelvis_pitch'] = rng.uniform(-12., 5., n)
  a['spine_flex'] = rng.uniform(-10., 15., n)
  a['r_hip_flex'] = -20. + (top + 20.) * swing
  t = np.clip((phase - 0.35) / 0.45, 0., 1.)
  a['r_knee'] = 8. + (1. - t * t * (3. - 2. * t)) * rng.uniform(70., 95., n)
  a['r_ankle'] = rng.uniform(10., 35., n)
  a['r_hip_abd'] = rng.uniform(0., 12., n)
  a['l_knee'] = rng.uniform(0., 10., n)
  a['l_hip_flex'] = a['pelvis_pitch'] + rng.uniform(-5., 5., n)
  a['l_ankle'] = 0.
  for s in 'lr':
    a[s + '_sh_abd'] = rng.uniform(20., 65., n)
    a[s + '_elbow'] = rng.uniform(10., 70., n)
  a['l_sh_flex'] = rng.uniform(10., 60., n) * swing
  a['r_sh_flex'] = -rng.uniform(0., 30., n) * swing
  return a


def _discussion(rng, n, phase):
  """Directions, discussion, greeting: standing with gestures."""
  a = _standing(rng, n)
  _gesture_arm(a, rng, 'r', n, rng.random(n) < 0.8)
  _gesture_arm(a, rng, 'l', n, rng.random(n) < 0.5)
  _hands_on_hips(a, rng, 'l', n, rng.random(n) < 0.2)
  a['neck_rot'] = rng.uniform(-40., 40., n)
  a['spine_twist'] = rng.uniform(-15., 15., n)
  return a


def _taking_photo(rng, n, phase):
  """Both hands in front of the face, holding a camera."""
  a = _standing(rng, n)
  for s in 'lr':
    a[s + '_sh_flex'] = rng.uniform(40., 65., n)
    a[s + '_sh_abd'] = rng.uniform(-15., 25., n)
    a[s + '_sh_rot'] = rng.uniform(5., 30., n)
    a[s + '_elbow'] = rng.uniform(120., 140., n)
    a[s + '_wrist'] = rng.uniform(-10., 20., n)
  a['neck_flex'] = rng.uniform(-5., 12., n)
  a['neck_rot'] = rng.normal(0., 5., n)
  a['spine_twist'] = rng.normal(0., 8., n)
  return a


_ACTION_FNS = {
    'walking': _walking, 'jogging': _jogging, 'sitting': _sitting,
    'sitting_down': _sitting_down, 'squatting': _squatting,
    'waving': _waving, 'phoning': _phoning, 'pointing': _pointing,
    'picking_up': _picking_up, 'kicking': _kicking,
    'discussion': _discussion, 'taking_photo': _taking_photo,
}
assert tuple(_ACTION_FNS) == ACTIONS


def sample_angles(rng: np.random.Generator, action_index: np.ndarray,
                  phase: np.ndarray) -> np.ndarray:
  """[n, len(DOFS)] joint angles (degrees) within LIMITS_DEG.

  Half the poses are mirrored left-right, so every action is done with
  either side.
  """
  n = len(action_index)
  angles = np.zeros((n, len(DOFS)))
  for k, name in enumerate(ACTIONS):
    idx = np.nonzero(action_index == k)[0]
    if len(idx):
      angles[idx] = _ACTION_FNS[name](rng, len(idx), phase[idx]).a
  mirror = rng.random(n) < 0.5
  angles = np.where(mirror[:, None], angles[:, _MIRROR_PERM] * _MIRROR_SIGN,
                    angles)
  return np.clip(angles, _LOWER, _UPPER)


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
  subject_index: np.ndarray        # [n] index into SUBJECTS
  action_index: np.ndarray         # [n] index into ACTIONS
  phase: np.ndarray                # [n] in [0, 1)
  angles_deg: np.ndarray           # [n, len(DOFS)]
  frames: dict[str, np.ndarray]
  points: dict[str, np.ndarray]

  @property
  def subjects(self) -> list[str]:
    return [SUBJECTS[i].name for i in self.subject_index]

  @property
  def actions(self) -> list[str]:
    return [ACTIONS[i] for i in self.action_index]


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
    angles_deg: [n, len(DOFS)] joint angles (degrees, see LIMITS_DEG).
    subject_index: [n] indices into SUBJECTS (bone lengths, foot size).
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
    i = _I[name]
    return cos[i], sign * sin[i]

  def neg(pair):
    return pair[0], -pair[1]

  bones = np.stack([s.bone_lengths_mm for s in SUBJECTS], 1).astype(dtype)[
      :, subject_index]
  scale = np.array([s.height_factor for s in SUBJECTS], dtype)[subject_index]

  def length(name):
    return bones[BONE_INDEX[name]]

  cy, sy = np.cos(yaw_rad), np.sin(yaw_rad)
  zero, one = np.zeros(n, dtype), np.ones(n, dtype)
  world = (np.stack([cy, sy, zero]), np.stack([-sy, cy, zero]),
           np.stack([zero, zero, one]))
  pitch = tilt_rad[:, 1] + rad[_I['pelvis_pitch']]
  roll = tilt_rad[:, 0] + rad[_I['pelvis_roll']]
  root = _post_x(_post_y(world, (np.cos(pitch), np.sin(pitch))),
                 (np.cos(roll), np.sin(roll)))
  half = [rad[_I[d]] / 2 for d in ('spine_flex', 'spine_lat', 'spine_twist')]
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
  flen = FOOT_LENGTH_MM * scale
  ah = ANKLE_HEIGHT_MM * scale
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
      points[s + '_hand_tip'] = j[wr] - hand[2] * HAND_LENGTH_MM * scale
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
  heights = np.array([s.height_factor for s in SUBJECTS])
  ah = ANKLE_HEIGHT_MM * heights[subject_index]
  return _HEEL[2] * ah, _TOE[2] * ah


def sample_motion(rng: np.random.Generator, num: int,
                  subjects: tuple[str, ...],
                  actions: tuple[str, ...] = ACTIONS,
                  render_info: bool = True, dtype=None) -> MotionBatch:
  """Draws `num` posed subjects (uniform over `subjects` and `actions`).

  Angles are drawn in float64; `dtype` (default float64) is the dtype of the
  kinematics and of the returned arrays.
  """
  subj_ids = np.array([SUBJECTS.index(SUBJECT_BY_NAME[s]) for s in subjects])
  act_ids = np.array([ACTIONS.index(a) for a in actions])
  subject_index = subj_ids[rng.integers(0, len(subj_ids), num)]
  action_index = act_ids[rng.integers(0, len(act_ids), num)]
  phase = rng.random(num)
  yaw = rng.uniform(0., 2 * np.pi, num)
  tilt = np.deg2rad(np.clip(rng.normal(0., 2., (num, 2)), -MAX_TILT_DEG,
                            MAX_TILT_DEG))
  offset = rng.uniform(-1000., 1000., (num, 2))
  angles = sample_angles(rng, action_index, phase)
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
  subjects = split_subjects(split)
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
  names = np.array([s.name for s in SUBJECTS])
  return out, {'subject': names[si], 'action': np.array(ACTIONS)[ai],
               'subject_index': si, 'action_index': ai, 'phase': ph}
