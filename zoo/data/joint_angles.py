"""The embedded dataset's actions as joint angles: degrees of freedom,
anatomical limits, and one vectorised generator per action.

`sample_angles` turns (action, phase) pairs into joint angles in degrees
within `LIMITS_DEG`; zoo.data.motion turns them into joints. A person's own
frame has x forward, y to the person's left, z up.
"""
from __future__ import annotations

import numpy as np

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
# Column of each degree of freedom in an angles array.
DOF_INDEX: dict[str, int] = {name: i for i, name in enumerate(DOFS)}
_LOWER = np.array([LIMITS_DEG[d][0] for d in DOFS])
_UPPER = np.array([LIMITS_DEG[d][1] for d in DOFS])
# Mirroring a pose swaps left/right angles and negates sideways ones.
_MIRROR_PERM = np.array([
    DOF_INDEX[d.replace('l_', '#').replace('r_', 'l_').replace('#', 'r_')]
    if d[:2] in ('l_', 'r_') else DOF_INDEX[d] for d in DOFS])
_MIRROR_SIGN = np.array([-1. if d in ('pelvis_roll', 'spine_lat', 'spine_twist',
                                      'neck_lat', 'neck_rot') else 1.
                         for d in DOFS])

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
    return self.a[:, DOF_INDEX[name]]

  def __setitem__(self, name: str, value):
    self.a[:, DOF_INDEX[name]] = value

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

