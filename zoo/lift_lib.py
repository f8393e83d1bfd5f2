"""Lift 2D keypoints from any 2D detector to 3D poses: reading, lifting, output.

What. A 2D detector (mmpose, OpenPose, Detectron2, YOLO-pose, MediaPipe, ...)
gives per person 2D keypoints with scores; this module turns them into 3D
poses with one of two lifters that never look at the image:

- 'lifting_deep': the mixture-of-PPCA pose prior of Lifting from the Deep
  (zoo.lifting_deep.prior.PosePrior.lift), taken from the bundled
  lifting_deep checkpoint (fitted on motion capture only). Low-score joints
  get visibility weight 0.
- 'decoupled_volumetric': network 2 of the coarse-to-fine decoupled model
  (DecoupledVolumetric.network2): Gaussian 2D heatmaps of the keypoints ->
  3D volume. Low-score joints get an all-zero heatmap channel. The bundled
  lifting checkpoint (LIFT_CHECKPOINT_DIR) was trained on motion capture
  projected by random cameras with 2D noise and missing joints
  (python -m trainers.lift_mocap).

Input files (`read_keypoints`), detected by their structure:
- COCO results: a JSON list of detections {"image_id", "keypoints": [x, y,
  score] * 17, "score", "bbox", "category_id"} (COCO-17 joints), as COCO
  results files, mmpose and Detectron2 write them.
- A full COCO annotation file: {"images": [...], "annotations": [...]}; the
  labels' visibility flag v gives score 1 (v > 0) or 0 (v = 0, unlabelled).
  Crowd annotations are skipped.
- The zoo's own H36M-17 JSON: {"joint_names": [H36M-17 names], "persons":
  [{"image_id", "keypoints2d_px": [[x, y]] * 17, "scores": [17]}]}; also
  zoo.predict's poses.json ("poses2d_px", "confidence") and this module's
  own lift.json (lifted persons' "poses2d_px" and "scores").
COCO-17 keypoints become H36M-17 by zoo.skeleton.coco17_to_h36m17.

Frames and units. Keypoints are image pixels (x right, y down). Outputs per
person (zoo.predict's keys): poses3d_rel_mm [17, 3] root (pelvis) relative
in the image camera's axes (x right, y down, z forward), poses3d_cam_mm
[17, 3] in the camera frame (root depth from limb lengths,
zoo.geometry.recover_root_depth; it scales with the focal length),
poses2d_px [17, 2] and confidence [17]. Intrinsics follow zoo.predict's rule
(make_intrinsics: --focal or its default field of view, principal point at
the image centre), so an image size must be known: from --image, the COCO
annotation file's "images", or image_size.

Bad input raises KeypointsError (a ValueError) naming the file, the
detection and what was expected; a person with too few confident joints is
not lifted and gets a per-person message, the others are lifted.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any, Sequence

from absl import logging
import numpy as np
import tensorflow as tf

from zoo import crop as crop_lib
from zoo import fileio
from zoo import geometry
from zoo import heatmaps
from zoo import inference
from zoo import manifest as manifest_lib
from zoo import metrics
from zoo import skeleton as skel
from zoo import visualize
from zoo import weights as weights_lib
from zoo.base import OUTPUT_KEYS
from zoo.c2f_volumetric import decode as decode_lib
from zoo.c2f_volumetric import targets as targets_lib
from zoo.data import mocap2d
from zoo.data import records
from zoo.lifting_deep.prior import PosePrior

MODELS = ('lifting_deep', 'decoupled_volumetric')
# A joint counts as detected when its score is at least this.
DEFAULT_MIN_SCORE = 0.3
# A person needs at least this many detected H36M-17 joints to be lifted.
DEFAULT_MIN_JOINTS = 8
# Confident keypoints may lie this far (fraction of the image side) outside
# the image before the image is judged not to belong to the keypoints.
EXTENT_MARGIN = 0.1
# The mocap-trained network 2 of decoupled_volumetric, under the bundled
# checkpoints' root (zoo.checkpoints_root()). Not a top-level bundled model:
# it lifts keypoints only and has no image network worth evaluating.
LIFT_CHECKPOINT_DIR = os.path.join('lift', 'decoupled_volumetric')
JSON_FILE = 'lift.json'


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
# Choosing the image, intrinsics, checks
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


def intrinsics_for(height: int, width: int,
                   focal_px: float | None) -> tuple[np.ndarray, str]:
  """zoo.inference's rule: --focal or the default field of view."""
  return inference.make_intrinsics(height, width, focal_px)


def detected(scores: np.ndarray, min_score: float = DEFAULT_MIN_SCORE
             ) -> np.ndarray:
  """[..., 17] float32 1 where a joint's score is at least min_score."""
  return (np.asarray(scores) >= min_score).astype(np.float32)


# ----------------------------------------------------------------------------
# Lifting: the prior (NumPy / TF eager)
# ----------------------------------------------------------------------------

def lift_with_prior(prior, keypoints2d_px: np.ndarray, valid: np.ndarray,
                    intrinsics: np.ndarray, refine_steps: int = 9
                    ) -> dict[str, np.ndarray]:
  """PosePrior.lift of [N, 17, 2] keypoints with [N, 17] visibility weights.

  poses3d_rel_mm is the prior's pose; poses3d_cam_mm back-projects the
  keypoints (the prior's fitted projection for missing joints) at the root
  depth that gives the pose's own bone lengths (as LiftingDeep.decode).
  """
  y = np.asarray(keypoints2d_px, np.float32)
  valid = np.asarray(valid, np.float32)
  out = prior.lift(y, visibility=valid, return_details=True,
                   refine_steps=refine_steps)
  rel = out['poses3d_mm'].astype(np.float64)
  poses2d = np.where(valid[..., None] > 0, y, out['projection_2d'])
  k = np.asarray(intrinsics, np.float64)
  bones = skel.bone_lengths(rel)
  depth = geometry.recover_root_depth(poses2d, rel, k, bones)
  cam = geometry.absolute_pose(poses2d, rel, k, depth)
  return {'poses3d_cam_mm': cam.astype(np.float32),
          'poses3d_rel_mm': rel.astype(np.float32),
          'poses2d_px': poses2d.astype(np.float32),
          'confidence': valid.astype(np.float32)}


# ----------------------------------------------------------------------------
# Lifting: decoupled network 2 (in-graph; also the `lift` serving signature)
# ----------------------------------------------------------------------------

LIFT_INPUT_SPECS = (
    tf.TensorSpec([None, skel.NUM_JOINTS, 2], tf.float32,
                  name='keypoints2d_px'),
    tf.TensorSpec([None, skel.NUM_JOINTS], tf.float32, name='scores'),
    tf.TensorSpec([None, 3, 3], tf.float32, name='intrinsics'))


def keypoint_boxes_tf(keypoints2d_px, valid) -> tf.Tensor:
  """[B, 4] x, y, w, h of the valid keypoints' extent (at least 1 px)."""
  k = tf.cast(keypoints2d_px, tf.float32)
  v = tf.cast(valid, tf.float32)[..., None] > 0
  big = tf.constant(1e9)
  lo = tf.reduce_min(tf.where(v, k, big), -2)
  hi = tf.reduce_max(tf.where(v, k, -big), -2)
  has_valid = tf.reduce_any(v, -2)  # [B, 1]: any valid joint
  lo = tf.where(has_valid, lo, 0.)
  hi = tf.where(has_valid, hi, 1.)
  return tf.concat([lo, tf.maximum(hi - lo, 1.)], -1)


def keypoint_crop_tf(keypoints2d_px, valid, intrinsics, input_size: int,
                     box_margin: float) -> dict[str, tf.Tensor]:
  """The perspective crop camera around the valid keypoints.

  The same virtual camera as zoo.crop.perspective_crop for a person box equal
  to the keypoints' extent (geometry.crop_camera_tf at zoom 1 / box_margin).
  Returns intrinsics, rotation, homography [B, 3, 3] and keypoints_crop_px
  [B, 17, 2].
  """
  box = keypoint_boxes_tf(keypoints2d_px, valid)
  new_k, rotation, homography = geometry.crop_camera_tf(
      tf.cast(intrinsics, tf.float32), box, input_size, 1. / box_margin)
  crop_px = geometry.apply_homography_tf(homography,
                                         tf.cast(keypoints2d_px, tf.float32))
  return {'intrinsics': new_k, 'rotation': rotation, 'homography': homography,
          'keypoints_crop_px': crop_px}


def keypoint_heatmaps_tf(keypoints_crop_px, valid, config) -> tf.Tensor:
  """[B, H, W, 17] Gaussian heatmaps (config.sigma cells) of crop keypoints;
  invalid joints (or outside the grid) get an all-zero channel."""
  h = config.heatmap_size
  xy = targets_lib.crop_px_to_heatmap(tf.cast(keypoints_crop_px, tf.float32),
                                      config.input_size, h)
  inside = tf.reduce_all((xy >= -0.5) & (xy <= h - 0.5), -1)
  v = tf.cast(valid, tf.float32) * tf.cast(inside, tf.float32)
  return heatmaps.render_heatmaps_2d(xy, h, h, config.sigma, v)


def _crop_settings(model) -> tuple[int, float]:
  return inference.crop_settings(model)


def lift_decoupled_tf(model, keypoints2d_px, scores, intrinsics,
                      min_score: float = DEFAULT_MIN_SCORE,
                      validate: bool = True) -> dict[str, tf.Tensor]:
  """Decoupled network 2 on keypoints: zoo.base's OUTPUT_KEYS, batched.

  keypoints2d_px [B, 17, 2] image px (H36M-17), scores [B, 17] (joints
  below min_score are missing: zero heatmap channel), intrinsics [B, 3, 3].
  Network 2 sees heatmaps of the keypoints in the perspective crop around
  them; its volume gives each joint's root-relative depth (and the image
  position of missing joints; detected joints keep their keypoint); the
  camera-frame pose then follows as in decoding (root depth from H36M mean
  limb lengths). confidence is the volume's peak per joint times the
  detection mask. Traceable (the exporter's `lift` signature).
  """
  keypoints2d_px = tf.cast(keypoints2d_px, tf.float32)
  scores = tf.cast(scores, tf.float32)
  intrinsics = tf.cast(intrinsics, tf.float32)
  if validate:
    n = tf.shape(keypoints2d_px)[0]
    checks = [
        tf.debugging.assert_equal(tf.shape(scores)[0], n, message=(
            "inputs 'scores' and 'keypoints2d_px' must have the same batch")),
        tf.debugging.assert_equal(tf.shape(intrinsics)[0], n, message=(
            "inputs 'intrinsics' and 'keypoints2d_px' must have the same "
            'batch')),
        tf.debugging.assert_all_finite(keypoints2d_px, message=(
            "input 'keypoints2d_px' must be finite pixels")),
        tf.debugging.assert_all_finite(scores, message=(
            "input 'scores' must be finite")),
        tf.debugging.Assert(tf.reduce_all(scores >= 0.), [
            "input 'scores' must be >= 0 (0 = joint not detected)"]),
        tf.debugging.assert_all_finite(intrinsics, message=(
            "input 'intrinsics' must be finite")),
        tf.debugging.Assert(tf.reduce_all(
            (intrinsics[:, 0, 0] > 0) & (intrinsics[:, 1, 1] > 0)), [
                "input 'intrinsics' must have positive focal lengths"])]
    with tf.control_dependencies(checks):
      keypoints2d_px = tf.identity(keypoints2d_px)
  config = model.config
  size, margin = _crop_settings(model)
  valid = tf.cast(scores >= min_score, tf.float32)
  crop = keypoint_crop_tf(keypoints2d_px, valid, intrinsics, size, margin)
  maps = keypoint_heatmaps_tf(crop['keypoints_crop_px'], valid, config)
  volume = model.network2(maps, training=False)[
      f'volume_{config.num_stacks - 1}']
  coords, peak = decode_lib.peak_voxels(volume, config)
  decoded_px = targets_lib.heatmap_to_crop_px(coords[..., :2], size,
                                              config.heatmap_size)
  joints_crop_px = tf.where(valid[..., None] > 0, crop['keypoints_crop_px'],
                            decoded_px)
  z_mm = targets_lib.depth_index_to_mm(coords[..., 2], config.num_depth_bins,
                                       config.depth_range_mm)
  poses = decode_lib.poses_from_joints(joints_crop_px, z_mm,
                                       crop['intrinsics'], config, peak)
  back = crop_lib.poses_to_original(poses, crop['homography'],
                                    crop['rotation'])
  return {'poses3d_cam_mm': back['poses3d_cam_mm'],
          'poses3d_rel_mm': back['poses3d_rel_mm'],
          'poses2d_px': back['poses2d_px'],
          'confidence': poses['confidence'] * valid}


# ----------------------------------------------------------------------------
# Lifters
# ----------------------------------------------------------------------------

def lift_checkpoint_dir(root: str | None = None) -> str:
  """The bundled mocap-trained decoupled network 2 (LIFT_CHECKPOINT_DIR)."""
  return os.path.join(manifest_lib.checkpoints_root(root), LIFT_CHECKPOINT_DIR)


class Lifter:
  """`lift(keypoints [N, 17, 2], scores [N, 17], intrinsics [N, 3, 3])`.

  model: 'lifting_deep' (the prior of the bundled lifting_deep checkpoint,
  of `checkpoint`, or a PosePrior .npz `prior_path`, e.g. fitted on real
  Human3.6M motion by trainers.lift_mocap --fit_prior) or
  'decoupled_volumetric' (the bundled lifting checkpoint, or `checkpoint`);
  or pass a built `keras_model`.
  """

  def __init__(self, model: str, checkpoint: str | None = None,
               keras_model=None, min_score: float = DEFAULT_MIN_SCORE,
               prior_path: str | None = None):
    if model not in MODELS:
      raise ValueError(f'--model must be one of {list(MODELS)}, got '
                       f'{model!r}')
    self.model_name = model
    self.min_score = float(min_score)
    self.checkpoint = checkpoint
    if prior_path is not None:
      if model != 'lifting_deep':
        raise ValueError('a prior file (--prior) is for --model=lifting_deep')
      if not os.path.isfile(prior_path):
        raise FileNotFoundError(f'prior file {prior_path!r} does not exist')
      self.prior = PosePrior.load(prior_path)
      self.refine_steps = 9
      self.keras_model = None
      self.checkpoint = prior_path
      self._fn = None
      return
    if keras_model is None:
      if model == 'decoupled_volumetric' and checkpoint is None:
        checkpoint = lift_checkpoint_dir()
        if not os.path.isdir(checkpoint):
          raise manifest_lib.BundledCheckpointError(
              f'no bundled lifting checkpoint for decoupled_volumetric at '
              f'{checkpoint}; train one with `python -m trainers.lift_mocap '
              f'--out=DIR` and pass --checkpoint=DIR')
      keras_model = weights_lib.load(model, checkpoint=checkpoint)
    self.keras_model = keras_model
    self.checkpoint = checkpoint
    if model == 'lifting_deep':
      layer = keras_model.lifting
      self.prior = layer.prior
      self.refine_steps = layer.refine_steps
      self._fn = None
    else:
      if not hasattr(keras_model, 'network2'):
        raise ValueError(f'{type(keras_model).__name__} has no network 2; '
                         'decoupled lifting needs a DecoupledVolumetric')
      self._fn = tf.function(
          lambda k, s, c: lift_decoupled_tf(keras_model, k, s, c,
                                            self.min_score),
          input_signature=list(LIFT_INPUT_SPECS))

  def lift(self, keypoints2d_px, scores, intrinsics) -> dict[str, np.ndarray]:
    keypoints2d_px = np.asarray(keypoints2d_px, np.float32)
    scores = np.asarray(scores, np.float32)
    intrinsics = np.asarray(intrinsics, np.float32)
    if self._fn is None:
      valid = detected(scores, self.min_score)
      out = lift_with_prior(self.prior, keypoints2d_px, valid, intrinsics,
                            self.refine_steps)
      out['confidence'] = np.clip(scores, 0., 1.) * valid
      return out
    out = self._fn(tf.constant(keypoints2d_px), tf.constant(scores),
                   tf.constant(intrinsics))
    return {k: out[k].numpy() for k in OUTPUT_KEYS}


def evaluate_on_mocap(lifter: Lifter, poses_world: np.ndarray, seed: int,
                      noise=None, pixel_noise_px: float = 0.,
                      batch_size: int = 256) -> dict[str, float]:
  """MPJPE / PA-MPJPE (mm, root-relative) of a lifter on [N, 17, 3] world
  poses seen by zoo.data.mocap2d's random cameras, with its DetectorNoise
  `noise` (default none) plus `pixel_noise_px`; the views depend on `seed`
  only, so every lifter sees the same ones."""
  noise = mocap2d.DetectorNoise.none() if noise is None else noise
  rng = np.random.default_rng([seed, 0xE7A1])
  views = mocap2d.sample_views(rng, poses_world, noise, pixel_noise_px)
  scores = views['valid']
  preds = []
  for start in range(0, len(poses_world), batch_size):
    part = slice(start, start + batch_size)
    preds.append(lifter.lift(views['keypoints2d_px'][part], scores[part],
                             views['intrinsics'][part])['poses3d_rel_mm'])
  pred = np.concatenate(preds)
  gt = geometry.root_relative(views['joints_cam_mm'])
  return {'mpjpe_mm': float(metrics.mpjpe(pred, gt).mean()),
          'pa_mpjpe_mm': float(metrics.pa_mpjpe(pred, gt).mean())}


# ----------------------------------------------------------------------------
# Files in, files out
# ----------------------------------------------------------------------------

def _blank_image(height: int, width: int) -> np.ndarray:
  return np.full((height, width, 3), 40, np.uint8)


def lift_file(*, model: str, keypoints_path: str, out_dir: str,
              image_path: str | None = None, image_id: Any = None,
              focal_px: float | None = None,
              image_size: tuple[int, int] | None = None,
              checkpoint: str | None = None,
              min_score: float = DEFAULT_MIN_SCORE,
              min_joints: int = DEFAULT_MIN_JOINTS,
              pictures: bool = True, lifter: Lifter | None = None,
              prior_path: str | None = None) -> dict[str, Any]:
  """Lifts every person of a keypoints file; writes OUT/lift.json + PNGs.

  image_size: (width, height) when no image is given and the file does not
  record sizes. Returns lift.json's content plus 'json_path'. Input errors
  raise before anything is written; the pictures are made in a temporary
  directory and moved in, lift.json (atomic) comes last.
  """
  kfile = read_keypoints(keypoints_path)
  image = None
  image_hw = None
  if image_path is not None:
    image = inference.read_image(image_path)
    image_hw = tuple(image.shape[:2])
  elif image_size is not None:
    width, height = (int(v) for v in image_size)
    if width <= 0 or height <= 0:
      raise KeypointsError(f'image size must be positive, got {image_size}')
    image_hw = (height, width)
  persons = select_persons(kfile, image_path, image_id)
  if image is not None:
    check_image_matches(kfile, persons, image_hw, image_path, min_score)
  if not min_score > 0 or not math.isfinite(min_score):
    raise ValueError(f'min_score must be a positive number, got {min_score}')

  rows, errors = [], {}
  for p in persons:
    count = int(detected(p.scores, min_score).sum())
    hw = image_size_of(kfile, p, image_hw)
    if count < min_joints:
      errors[p.index] = (f'only {count} of {skel.NUM_JOINTS} joints have a '
                         f'score >= {min_score:g} (need {min_joints}); not '
                         'lifted')
    elif hw is None:
      raise KeypointsError(
          f'the image size of person {p.index} (image_id {p.image_id!r}) is '
          'unknown, so are the intrinsics: pass --image=IMG or '
          '--image_size=W,H')
    else:
      rows.append((p, hw))
  for index, message in errors.items():
    logging.warning('person %d: %s', index, message)

  results: dict[int, dict[str, np.ndarray]] = {}
  notes = {}
  if rows:
    lifter = lifter or Lifter(model, checkpoint, min_score=min_score,
                              prior_path=prior_path)
    ks = []
    for p, (height, width) in rows:
      k, note = intrinsics_for(height, width, focal_px)
      ks.append(k)
      notes[p.index] = (k, note)
    out = lifter.lift(np.stack([p.keypoints2d_px for p, _ in rows]),
                      np.stack([p.scores for p, _ in rows]), np.stack(ks))
    for i, (p, _) in enumerate(rows):
      results[p.index] = {k: v[i] for k, v in out.items()}
    if focal_px is None:
      logging.warning('No --focal given: intrinsics %s.',
                      notes[rows[0][0].index][1])

  entries = []
  # Pictures are drawn into a staging directory and moved in once all are
  # drawn, so a failure leaves no partial set.
  with fileio.staging_directory(out_dir, 'lift') as staging:
    moves = []
    for p in persons:
      entry = {'index': p.index, 'image_id': p.image_id,
               'bbox_xywh': p.bbox_xywh, 'detection_score': p.detection_score,
               'scores': np.round(p.scores, 4).tolist(),
               'detected': detected(p.scores, min_score).astype(int).tolist()}
      if p.index in errors:
        entry['error'] = errors[p.index]
        entries.append(entry)
        continue
      result = results[p.index]
      k, note = notes[p.index]
      entry.update({'intrinsics': k.tolist(), 'intrinsics_source': note})
      entry.update({key: np.asarray(result[key], np.float64).round(3).tolist()
                    for key in OUTPUT_KEYS})
      if pictures:
        name = f'person_{p.index:03d}.png'
        hw = image_size_of(kfile, p, image_hw)
        canvas = image if image is not None else _blank_image(*hw)
        visualize.save_figure(
            os.path.join(staging, name), canvas, result, None,
            title=f'{model}: person {p.index} (image {p.image_id})')
        moves.append(name)
        entry['picture'] = name
      entries.append(entry)
    for name in moves:
      os.replace(os.path.join(staging, name), os.path.join(out_dir, name))

  doc = {
      'model': model,
      'checkpoint': (os.path.abspath(lifter.checkpoint) if lifter is not None
                     and lifter.checkpoint else 'bundled'),
      'keypoints': os.path.abspath(keypoints_path),
      'keypoints_format': kfile.format,
      'image': os.path.abspath(image_path) if image_path else None,
      'min_score': min_score,
      'min_joints': min_joints,
      'default_fov_deg': None,
      'joint_names': list(skel.H36M17.joint_names),
      'units': {'poses3d_cam_mm': 'mm, camera frame (x right, y down, z '
                                  'forward)',
                'poses3d_rel_mm': 'mm, root (pelvis) relative, camera axes',
                'poses2d_px': 'pixels of the image (x right, y down)',
                'confidence': 'per joint, 0..1 (0 for joints not detected)'},
      'num_lifted': len(results),
      'num_failed': len(errors),
      'persons': entries,
  }
  if focal_px is None:
    doc['default_fov_deg'] = records.DEFAULT_FOV_DEG
  json_path = os.path.join(out_dir, JSON_FILE)
  fileio.atomic_write_text(json_path, json.dumps(doc, indent=1) + '\n')
  logging.info('Lifted %d of %d persons; wrote %s.', len(results), len(persons),
               json_path)
  return dict(doc, json_path=json_path)
