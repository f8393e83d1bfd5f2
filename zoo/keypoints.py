"""2D keypoints files from any 2D detector, read into H36M-17 persons; the
persons of one image; the checks that an image belongs to them.

Input files (`read_keypoints`), detected by their structure:
- COCO results: a JSON list of detections {"image_id", "keypoints": [x, y,
  score] * 17, "score", "bbox", "category_id"} (COCO-17 joints), as COCO
  results files, mmpose and Detectron2 write them.
- A full COCO annotation file: {"images": [...], "annotations": [...]}; the
  labels' visibility flag v gives score 1 (v > 0) or 0 (v = 0, unlabelled).
  Crowd annotations are skipped.
- The zoo's own H36M-17 JSON: {"joint_names": [H36M-17 names], "persons":
  [{"image_id", "keypoints2d_px": [[x, y]] * 17, "scores": [17]}]}; also
  zoo.predict's poses.json ("poses2d_px", "confidence") and zoo.lift_lib's
  lift.json (lifted persons' "poses2d_px" and "scores").
COCO-17 keypoints become H36M-17 by zoo.skeleton.coco17_to_h36m17.

Bad input raises KeypointsError (a ValueError) naming the file, the
detection and what was expected.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Sequence

import numpy as np

from zoo import skeleton as skel

# A joint counts as detected when its score is at least this.
DEFAULT_MIN_SCORE = 0.3
# A person needs at least this many detected H36M-17 joints to be lifted.
DEFAULT_MIN_JOINTS = 8
# Confident keypoints may lie this far (fraction of the image side) outside
# the image before the image is judged not to belong to the keypoints.
EXTENT_MARGIN = 0.1


class KeypointsError(ValueError):
  """A keypoints file (or an image given with it) is not usable."""


@dataclasses.dataclass
class Person:
  """One detected person, in H36M-17 order."""
  index: int                       # position in the file
  image_id: Any                    # the file's image id, or None
  keypoints2d_px: np.ndarray       # [17, 2] image px
  scores: np.ndarray               # [17] >= 0
  bbox_xywh: list[float] | None = None
  detection_score: float | None = None


@dataclasses.dataclass
class KeypointsFile:
  path: str
  format: str                      # 'coco_results' | 'coco_annotations' | 'h36m17'
  persons: list[Person]
  # image id -> {'file_name', 'width', 'height'} (COCO annotation files).
  images: dict[Any, dict[str, Any]] = dataclasses.field(default_factory=dict)


# ----------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------

def _finite_array(values, shape, what: str) -> np.ndarray:
  try:
    array = np.asarray(values, np.float64)
  except (TypeError, ValueError):
    raise KeypointsError(f'{what} must be numbers, got {values!r:.80}') from None
  if array.shape != shape:
    raise KeypointsError(f'{what} must have shape {list(shape)}, got '
                         f'{list(array.shape)}')
  return array


def _check_person(keypoints: np.ndarray, scores: np.ndarray, where: str):
  if not np.all(np.isfinite(scores)):
    raise KeypointsError(f'{where}: scores must be finite, got '
                         f'{scores.round(3).tolist()}')
  if np.any(scores < 0):
    raise KeypointsError(f'{where}: scores must be >= 0 (0 = not detected), '
                         f'got {scores.round(3).tolist()}')
  bad = ~np.all(np.isfinite(keypoints), -1) & (scores > 0)
  if np.any(bad):
    raise KeypointsError(f'{where}: keypoints {np.flatnonzero(bad).tolist()} '
                         'are NaN or infinite but have a positive score')


def _coco_person(entry: Any, index: int, where: str,
                 visibility_flags: bool) -> Person:
  if not isinstance(entry, dict) or 'keypoints' not in entry:
    raise KeypointsError(f'{where}: expected an object with "keypoints" '
                         f'([x, y, score] * 17), got {str(entry)[:80]}')
  flat = entry['keypoints']
  n = skel.COCO17.num_joints
  if not isinstance(flat, list) or len(flat) != 3 * n:
    length = len(flat) if isinstance(flat, list) else type(flat).__name__
    raise KeypointsError(f'{where}: "keypoints" must be a list of {3 * n} '
                         f'numbers ([x, y, score] for each of the {n} COCO '
                         f'joints), got {length}')
  values = _finite_array([np.nan if v is None else v for v in flat], (3 * n,),
                         f'{where}: "keypoints"').reshape(n, 3)
  scores = values[:, 2]
  if visibility_flags:  # ground truth: v = 0 unlabelled, 1 / 2 labelled
    scores = (scores > 0).astype(np.float64)
  _check_person(values[:, :2], scores, where)
  keypoints = np.where(np.isfinite(values[:, :2]), values[:, :2], 0.)
  joints, joint_scores = skel.coco17_to_h36m17(keypoints, scores)
  bbox = entry.get('bbox')
  score = entry.get('score')
  return Person(index, entry.get('image_id'), joints, joint_scores,
                [float(v) for v in bbox] if isinstance(bbox, list) and
                len(bbox) == 4 else None,
                float(score) if isinstance(score, (int, float)) else None)


def _h36m_person(entry: Any, index: int, where: str) -> Person:
  if not isinstance(entry, dict):
    raise KeypointsError(f'{where}: expected an object, got '
                         f'{str(entry)[:80]}')
  key = next((k for k in ('keypoints2d_px', 'poses2d_px') if k in entry), None)
  if key is None:
    raise KeypointsError(f'{where}: expected "keypoints2d_px" ([x, y] for '
                         f'each of the 17 H36M joints); keys are '
                         f'{sorted(entry)}')
  n = skel.NUM_JOINTS
  raw = entry[key]
  if not isinstance(raw, list) or len(raw) != n:
    raise KeypointsError(f'{where}: "{key}" must be {n} [x, y] pairs (H36M-17 '
                         f'order), got {len(raw) if isinstance(raw, list) else type(raw).__name__}')
  keypoints = _finite_array([[np.nan if v is None else v for v in p]
                             if isinstance(p, list) else p for p in raw],
                            (n, 2), f'{where}: "{key}"')
  skey = next((k for k in ('scores', 'confidence') if k in entry), None)
  scores = (np.ones(n) if skey is None else
            _finite_array([np.nan if v is None else v for v in entry[skey]]
                          if isinstance(entry[skey], list) else entry[skey],
                          (n,), f'{where}: "{skey}"'))
  _check_person(keypoints, scores, where)
  keypoints = np.where(np.isfinite(keypoints), keypoints, 0.)
  return Person(index, entry.get('image_id'), keypoints, scores,
                entry.get('bbox_xywh'), entry.get('detection_score'))


def parse_keypoints(obj: Any, path: str = '<keypoints>') -> KeypointsFile:
  """A parsed JSON value (see the module docstring) -> KeypointsFile."""
  if isinstance(obj, list):
    persons = [_coco_person(e, i, f'{path}: detection {i}', False)
               for i, e in enumerate(obj)]
    return KeypointsFile(path, 'coco_results', persons)
  if not isinstance(obj, dict):
    raise KeypointsError(f'{path}: expected a JSON list of COCO detections or '
                         f'an object, got {type(obj).__name__}')
  if 'annotations' in obj:
    anns = obj['annotations']
    if not isinstance(anns, list):
      raise KeypointsError(f'{path}: "annotations" must be a list')
    images = {}
    for image in obj.get('images') or []:
      if isinstance(image, dict) and 'id' in image:
        images[image['id']] = {k: image.get(k) for k in
                               ('file_name', 'width', 'height')}
    persons = [_coco_person(a, i, f'{path}: annotation {i}', True)
               for i, a in enumerate(anns)
               if not (isinstance(a, dict) and a.get('iscrowd'))]
    return KeypointsFile(path, 'coco_annotations', persons, images)
  names = obj.get('joint_names')
  if names is not None and list(names) != list(skel.H36M17.joint_names):
    raise KeypointsError(f'{path}: "joint_names" must be the H36M-17 joints '
                         f'{list(skel.H36M17.joint_names)}, got {names}')
  if 'persons' in obj:
    entries = obj['persons']
    if not isinstance(entries, list):
      raise KeypointsError(f'{path}: "persons" must be a list')
    persons = [_h36m_person(e, i, f'{path}: person {i}')
               for i, e in enumerate(entries)
               if not (isinstance(e, dict) and 'error' in e
                       and 'poses2d_px' not in e)]
    return KeypointsFile(path, 'h36m17', persons)
  if 'poses2d_px' in obj:  # zoo.predict's poses.json: one person
    return KeypointsFile(path, 'h36m17', [_h36m_person(obj, 0, path)])
  raise KeypointsError(
      f'{path}: not a keypoints file: expected a COCO results list, a COCO '
      'annotation file ("annotations"), or an H36M-17 file ("persons" or '
      f'"poses2d_px"); keys are {sorted(obj)}')


def read_keypoints(path: str) -> KeypointsFile:
  """Reads a keypoints JSON file (module docstring)."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f'keypoints file {path!r} does not exist')
  try:
    with open(path, encoding='utf-8') as f:
      obj = json.load(f)
  except json.JSONDecodeError as e:
    raise KeypointsError(f'{path} is not valid JSON: {e.msg} at line '
                         f'{e.lineno} column {e.colno}') from None
  except UnicodeDecodeError:
    raise KeypointsError(f'{path} is not a UTF-8 text (JSON) file') from None
  return parse_keypoints(obj, path)


# ----------------------------------------------------------------------------
# The persons of one image; checks
# ----------------------------------------------------------------------------

def select_persons(kfile: KeypointsFile, image_path: str | None = None,
                   image_id: Any = None) -> list[Person]:
  """The persons of one image (or all of them when no image is named).

  With `image_id`, the persons with that id. With an image and several ids
  in the file: those of the COCO image whose file name matches, else
  KeypointsError asking for image_id.
  """
  persons = kfile.persons
  if not persons:
    raise KeypointsError(f'{kfile.path}: no persons (detections) in the file')
  ids = sorted({p.image_id for p in persons}, key=str)
  if image_id is not None:
    chosen = [p for p in persons if str(p.image_id) == str(image_id)]
    if not chosen:
      raise KeypointsError(f'{kfile.path}: no persons with image_id '
                           f'{image_id!r}; the file has image ids '
                           f'{ids[:20]}{" ..." if len(ids) > 20 else ""}')
    return chosen
  if image_path is None or len(ids) <= 1:
    return persons
  base = os.path.basename(image_path)
  match = [i for i, info in kfile.images.items()
           if os.path.basename(str(info.get('file_name'))) == base]
  if match:
    return [p for p in persons if p.image_id == match[0]]
  raise KeypointsError(f'{kfile.path} holds persons of {len(ids)} images '
                       f'(image ids {ids[:20]}{" ..." if len(ids) > 20 else ""}) '
                       f'and none is named {base!r}: pass image_id '
                       '(--image_id) to say which belong to the image')


def image_size_of(kfile: KeypointsFile, person: Person,
                  image_hw: tuple[int, int] | None) -> tuple[int, int] | None:
  """(height, width) for a person: the image's, else the COCO file's."""
  if image_hw is not None:
    return image_hw
  info = kfile.images.get(person.image_id) or {}
  if isinstance(info.get('height'), int) and isinstance(info.get('width'), int):
    return info['height'], info['width']
  return None


def check_image_matches(kfile: KeypointsFile, persons: Sequence[Person],
                        image_hw: tuple[int, int], image_path: str,
                        min_score: float) -> None:
  """KeypointsError when the image cannot be the keypoints' image.

  The COCO file's recorded size must equal the image's, and confident
  keypoints must lie within the image (EXTENT_MARGIN of its side around it).
  """
  height, width = image_hw
  for p in persons:
    info = kfile.images.get(p.image_id) or {}
    if info.get('width') and info.get('height') and \
        (info['height'], info['width']) != (height, width):
      raise KeypointsError(
          f'{image_path} is {width}x{height} px but {kfile.path} records '
          f'image {p.image_id!r} as {info["width"]}x{info["height"]}: a '
          'different or resized image?')
  pts = [p.keypoints2d_px[p.scores >= min_score] for p in persons]
  pts = np.concatenate(pts) if pts else np.zeros((0, 2))
  if not len(pts):
    return
  lo, hi = pts.min(0), pts.max(0)
  mx, my = EXTENT_MARGIN * width, EXTENT_MARGIN * height
  if lo[0] < -mx or lo[1] < -my or hi[0] > width - 1 + mx or \
      hi[1] > height - 1 + my:
    raise KeypointsError(
        f'the keypoints of {kfile.path} span x {lo[0]:.0f}..{hi[0]:.0f}, y '
        f'{lo[1]:.0f}..{hi[1]:.0f} px, beyond the {width}x{height} px image '
        f'{image_path}: the keypoints belong to another (or a resized) image')


def detected(scores: np.ndarray, min_score: float = DEFAULT_MIN_SCORE
             ) -> np.ndarray:
  """[..., 17] float32 1 where a joint's score is at least min_score."""
  return (np.asarray(scores) >= min_score).astype(np.float32)
