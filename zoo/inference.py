"""Inference on full images: crop, predict, map back (a library; the command
line is zoo.predict).

`predict_in_image` is the one end-to-end inference path on full images: a
perspective-correct crop around each person box (zoo.crop's
`perspective_crop`, the same crop the training pipeline and the evaluator
use), the model's `predict_poses`, and the mapping of the crop-frame poses
back to the original image pixels and camera (`crop_to_original`). The TF
Serving export (export.serving_module) traces exactly this function, so
Python and served predictions agree.

Without a focal length, the intrinsics are a default field of view
(zoo.data.records.default_intrinsics, DEFAULT_FOV_DEG on the longer image
side, principal point at the centre). Absolute depth (poses3d_cam_mm) scales
with the assumed focal length; root-relative poses do not depend on it much.
"""
from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import tensorflow as tf

from zoo import crop as crop_lib
from zoo.base import OUTPUT_KEYS
from zoo.data import records
from zoo.data.records import DEFAULT_FOV_DEG
from zoo.signatures import DEFAULT_SIGNATURE

__all__ = ['crop_settings', 'crop_images',
           'predict_crops', 'predict_in_image', 'read_image', 'parse_box',
           'make_intrinsics', 'run_keras', 'run_saved_model',
           'export_metadata']


def crop_settings(model) -> tuple[int, float]:
  """(crop side S px, box margin) a model was trained and evaluated with."""
  config = model.config
  return int(config.input_size), float(config.augment.box_margin)


def crop_images(model, images, boxes_xywh, intrinsics) -> dict[str, tf.Tensor]:
  """The model's crop of every image: zoo.crop.perspective_crop's dict."""
  size, margin = crop_settings(model)
  return crop_lib.perspective_crop(images, intrinsics, boxes_xywh, size,
                                   box_margin=margin)


def predict_crops(model, crops: dict[str, tf.Tensor],
                  flip_test: bool = False) -> dict[str, tf.Tensor]:
  """Predicts on `crop_images` output and maps the poses to the source camera.

  Returns float32 tensors:
    poses3d_cam_mm [B, 17, 3] source camera frame, mm;
    poses3d_rel_mm [B, 17, 3] root-relative, axes of the source camera, mm;
    poses2d_px [B, 17, 2] source image pixels;
    confidence [B, 17] in [0, 1].
  """
  poses = model.predict_poses({'image': crops['image'],
                               'intrinsics': crops['intrinsics']},
                              flip_test=flip_test)
  back = crop_lib.poses_to_original(poses, crops['homography'],
                                    crops['rotation'])
  return {'poses3d_cam_mm': back['poses3d_cam_mm'],
          'poses3d_rel_mm': back['poses3d_rel_mm'],
          'poses2d_px': back['poses2d_px'],
          'confidence': tf.cast(poses['confidence'], tf.float32)}


def predict_in_image(model, images, boxes_xywh, intrinsics,
                     flip_test: bool = False) -> dict[str, tf.Tensor]:
  """Poses of one person per (image, box), in the images' own camera.

  Args:
    model: a zoo PoseModel (built, weights loaded).
    images: uint8 [B, H, W, 3] (or float in [0, 1]) RGB.
    boxes_xywh: float32 [B, 4] person boxes x, y, w, h (image px).
    intrinsics: float32 [B, 3, 3] pinhole K of the images (px).
    flip_test: also predict the mirrored crop and average.

  Returns:
    dict of OUTPUT_KEYS (see `predict_crops`). Traceable (tf.function).
  """
  return predict_crops(model, crop_images(model, images, boxes_xywh,
                                          intrinsics), flip_test=flip_test)


# ----------------------------------------------------------------------------
# Image files, boxes, intrinsics
# ----------------------------------------------------------------------------

def read_image(path: str) -> np.ndarray:
  """uint8 [H, W, 3] RGB of a JPEG/PNG/GIF/BMP file."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f'image {path!r} does not exist')
  data = tf.io.read_file(path)
  try:
    return records.decode_image(data).numpy()
  except tf.errors.InvalidArgumentError:
    raise ValueError(f'{path!r} is not a JPEG, PNG, GIF or BMP image') from None


def parse_box(text: str | None, height: int, width: int) -> np.ndarray:
  """'x,y,w,h' (px) -> float32 [4]; None -> the whole image."""
  if text is None:
    return np.array([0., 0., width, height], np.float32)
  try:
    box = np.array([float(v) for v in text.split(',')], np.float32)
  except ValueError:
    box = np.zeros([0], np.float32)
  if box.shape != (4,) or not np.all(np.isfinite(box)) or np.any(box[2:] <= 0):
    raise ValueError(f'--box must be x,y,w,h in pixels with w > 0 and h > 0, '
                     f'got {text!r}')
  return box


def make_intrinsics(height: int, width: int,
                    focal_px: float | None) -> tuple[np.ndarray, str]:
  """K for an image and a description of where it came from."""
  if focal_px is None:
    k = records.default_intrinsics(height, width, DEFAULT_FOV_DEG)
    return k, (f'assumed: default field of view {DEFAULT_FOV_DEG:g} deg on '
               f'the longer image side (focal {k[0, 0]:.1f} px), principal '
               'point at the image centre; pass --focal=PX for metric depth')
  if not np.isfinite(focal_px) or focal_px <= 0:
    raise ValueError(f'--focal must be a positive focal length in pixels, got '
                     f'{focal_px}')
  k = np.array([[focal_px, 0, (width - 1) / 2], [0, focal_px, (height - 1) / 2],
                [0, 0, 1]], np.float32)
  return k, f'given: focal {focal_px:g} px, principal point at the image centre'


# ----------------------------------------------------------------------------
# Running a Keras model or a SavedModel on one image
# ----------------------------------------------------------------------------

def run_keras(model, image: np.ndarray, box_xywh: np.ndarray,
              intrinsics: np.ndarray, flip_test: bool = False
              ) -> dict[str, np.ndarray]:
  """predict_in_image on one image; numpy outputs without the batch axis."""
  out = predict_in_image(model, tf.constant(image[None]),
                         tf.constant(box_xywh[None]),
                         tf.constant(intrinsics[None]), flip_test=flip_test)
  return {k: v.numpy()[0] for k, v in out.items()}


def run_saved_model(export_dir: str, image: np.ndarray, box_xywh: np.ndarray,
                    intrinsics: np.ndarray) -> dict[str, np.ndarray]:
  """The SavedModel's `serving_default` on one image."""
  if not os.path.exists(os.path.join(export_dir, 'saved_model.pb')):
    raise FileNotFoundError(
        f'{export_dir!r} is not a SavedModel directory (no saved_model.pb); '
        'pass a version directory such as BASE/NAME/1')
  loaded = tf.saved_model.load(export_dir)
  if DEFAULT_SIGNATURE not in loaded.signatures:
    raise ValueError(f'{export_dir} has no serving_default signature; it has '
                     f'{sorted(loaded.signatures)}')
  out = loaded.signatures[DEFAULT_SIGNATURE](
      images=tf.constant(image[None], tf.uint8),
      boxes=tf.constant(box_xywh[None], tf.float32),
      intrinsics=tf.constant(intrinsics[None], tf.float32))
  return {k: out[k].numpy()[0] for k in OUTPUT_KEYS}


def export_metadata(export_dir: str) -> dict[str, Any]:
  """The zoo metadata the exporter stores in assets.extra (or {})."""
  path = os.path.join(export_dir, 'assets.extra', 'pose3d_zoo.json')
  if os.path.exists(path):
    with open(path) as f:
      return json.load(f)
  return {}
