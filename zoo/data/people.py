"""The embedded dataset's people: fixed identities and the subject split.

Each subject has its own bone lengths (the H36M-17 mean bones scaled by a
height factor, with a few percent of jitter keyed by the subject's name),
proportions and clothing; the renderer (zoo.data.body) draws them. The train
subjects S1 S5 S6 S7 S8 and the test subjects S9 S11 are disjoint, like
Human3.6M's protocol split.
"""
from __future__ import annotations

import dataclasses
import functools
import zlib

import numpy as np

from zoo import skeleton as skel

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
  """The names of the subjects of `split` ('train' or 'test')."""
  if split not in SPLITS:
    raise ValueError(f'unknown split {split!r}; expected one of '
                     f'{sorted(SPLITS)}')
  return SPLITS[split]

