"""Lift 2D keypoints from any 2D detector to 3D poses: lifting and output.

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

Input files: zoo.keypoints reads them (COCO results, COCO annotations, the
zoo's H36M-17 JSON, zoo.predict's poses.json, lift.json) into H36M-17
persons.

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

import json
import math
import os
from typing import Any

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
from zoo.keypoints import DEFAULT_MIN_JOINTS
from zoo.keypoints import DEFAULT_MIN_SCORE
from zoo.keypoints import KeypointsError
from zoo.keypoints import check_image_matches
from zoo.keypoints import detected
from zoo.keypoints import image_size_of
from zoo.keypoints import read_keypoints
from zoo.keypoints import select_persons
from zoo.lifting_deep.prior import PosePrior

MODELS = ('lifting_deep', 'decoupled_volumetric')
# The mocap-trained network 2 of decoupled_volumetric, under the bundled
# checkpoints' root (zoo.checkpoints_root()). Not a top-level bundled model:
# it lifts keypoints only and has no image network worth evaluating.
LIFT_CHECKPOINT_DIR = os.path.join('lift', 'decoupled_volumetric')
JSON_FILE = 'lift.json'


def intrinsics_for(height: int, width: int,
                   focal_px: float | None) -> tuple[np.ndarray, str]:
  """zoo.inference's rule: --focal or the default field of view."""
  return inference.make_intrinsics(height, width, focal_px)


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
