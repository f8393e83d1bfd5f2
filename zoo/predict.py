"""Run a zoo model on a user's image: poses in the image's camera, a picture.

What. `predict_in_image` is the one end-to-end inference path on full images:
a perspective-correct crop around each person box (zoo.data.pipeline's
`perspective_crop`, the same crop the evaluator uses), the model's
`predict_poses`, and the mapping of the crop-frame poses back to the original
image pixels and camera (`crop_to_original`). The TF Serving export
(export.serving_module) traces exactly this function, so Python and served
predictions agree.

The command line

  python -m zoo.predict --model=NAME [--checkpoint=DIR | --saved_model=DIR]
      --image=PATH [--box=x,y,w,h] [--focal=PX] [--flip_test] --out=DIR

(with neither --checkpoint nor --saved_model, the model's bundled checkpoint,
zoo/checkpoints/NAME, trained on the zoo's synthetic data: zoo.load)

writes OUT/poses.json and OUT/poses.png (the 2D skeleton over the image and
the 3D skeleton from two viewpoints). Without --box the whole image is the
person box; without --focal the intrinsics are a default field of view
(zoo.data.records.default_intrinsics, DEFAULT_FOV_DEG on the longer image side,
principal point at the centre), which the log and poses.json state. Absolute
depth (poses3d_cam_mm) scales with the assumed focal length; root-relative
poses do not depend on it much.

Why a separate module: fine-tuned and exported models are used on images that
are not in the zoo's TFRecord format; this is the shortest correct path from
an image file to metric 3D poses.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from typing import Any, Sequence

import numpy as np
import tensorflow as tf

from zoo import fileio
from zoo import skeleton as skel
from zoo.data import pipeline
from zoo.data import records

OUTPUT_KEYS = ('poses3d_cam_mm', 'poses3d_rel_mm', 'poses2d_px', 'confidence')
DEFAULT_FOV_DEG = 55.  # records.default_intrinsics' default

_log = logging.getLogger('zoo.predict')


# ----------------------------------------------------------------------------
# Inference on full images (also traced by the exporter)
# ----------------------------------------------------------------------------

def crop_settings(model) -> tuple[int, float]:
  """(crop side S px, box margin) a model was trained and evaluated with."""
  config = model.config
  return int(config.input_size), float(config.augment.box_margin)


def crop_images(model, images, boxes_xywh, intrinsics) -> dict[str, tf.Tensor]:
  """The model's crop of every image: pipeline.perspective_crop's dict."""
  size, margin = crop_settings(model)
  return pipeline.perspective_crop(images, intrinsics, boxes_xywh, size,
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
  poses2d_px, poses3d_cam_mm = pipeline.crop_to_original(
      poses['poses2d_px'], poses['poses3d_cam_mm'], crops['homography'],
      crops['rotation'])
  # The root-relative pose turns with the camera too (same 3D map).
  _, poses3d_rel_mm = pipeline.crop_to_original(
      poses['poses2d_px'], poses['poses3d_rel_mm'], crops['homography'],
      crops['rotation'])
  return {'poses3d_cam_mm': tf.cast(poses3d_cam_mm, tf.float32),
          'poses3d_rel_mm': tf.cast(poses3d_rel_mm, tf.float32),
          'poses2d_px': tf.cast(poses2d_px, tf.float32),
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
# Command-line helpers: image, box, intrinsics
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
# Pictures
# ----------------------------------------------------------------------------

def _limb_colors() -> list[tuple[float, float, float]]:
  """Matplotlib colours of H36M17.limbs, zoo.visualize's left/right scheme."""
  from zoo import visualize  # here: OpenCV is only needed for pictures
  colors = {'left': visualize.LEFT_COLOR, 'right': visualize.RIGHT_COLOR,
            'center': (90, 90, 90)}  # visualize's white is invisible on white
  return [tuple(c / 255. for c in colors[visualize.limb_side(skel.H36M17,
                                                              child)])
          for _, child in skel.H36M17.limbs]


def plot_skeleton_3d(ax, poses3d_mm: np.ndarray, elev: float, azim: float,
                     title: str) -> None:
  """One 3D skeleton (camera frame mm) on a matplotlib 3D axis.

  Plotted as (x, z, -y): horizontal, depth and up, so the figure is upright
  for a camera whose y axis points down.
  """
  pts = np.asarray(poses3d_mm, np.float64)
  xs, ys, zs = pts[:, 0], pts[:, 2], -pts[:, 1]
  for (parent, child), color in zip(skel.H36M17.limbs, _limb_colors()):
    ax.plot([xs[parent], xs[child]], [ys[parent], ys[child]],
            [zs[parent], zs[child]], color=color, linewidth=2)
  ax.scatter(xs, ys, zs, s=8, color='k')
  centre = np.array([xs.mean(), ys.mean(), zs.mean()])
  half = max(np.ptp(xs), np.ptp(ys), np.ptp(zs), 1.) / 2 * 1.1
  ax.set_xlim(centre[0] - half, centre[0] + half)
  ax.set_ylim(centre[1] - half, centre[1] + half)
  ax.set_zlim(centre[2] - half, centre[2] + half)
  ax.set_box_aspect((1, 1, 1))
  ax.locator_params(nbins=4)
  ax.tick_params(labelsize=7)
  ax.set_xlabel('x (mm)', fontsize=8)
  ax.set_ylabel('z (mm)', fontsize=8)
  ax.set_zlabel('-y (mm)', fontsize=8)
  ax.view_init(elev=elev, azim=azim)
  ax.set_title(title)


def plot_skeleton_2d(ax, image: np.ndarray, poses2d_px: np.ndarray,
                     box_xywh: np.ndarray | None = None) -> None:
  """The image with the 2D skeleton (zoo.visualize) and the person box."""
  from zoo import visualize
  ax.imshow(visualize.draw_skeleton_2d(image, poses2d_px))
  if box_xywh is not None:
    import matplotlib.patches as patches
    x, y, w, h = box_xywh
    ax.add_patch(patches.Rectangle((x - 0.5, y - 0.5), w, h, fill=False,
                                   color='yellow', linestyle='--',
                                   linewidth=1))
  ax.set_xlim(-0.5, image.shape[1] - 0.5)
  ax.set_ylim(image.shape[0] - 0.5, -0.5)
  ax.set_axis_off()


def save_figure(path: str, image: np.ndarray, result: dict[str, np.ndarray],
                box_xywh: np.ndarray, title: str = '') -> str:
  """PNG: 2D skeleton over the image + the 3D skeleton from two viewpoints."""
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  fig = plt.figure(figsize=(15, 5), dpi=100)
  ax = fig.add_subplot(1, 3, 1)
  plot_skeleton_2d(ax, image, result['poses2d_px'], box_xywh)
  ax.set_title('2D (image px)')
  rel = result['poses3d_rel_mm']
  plot_skeleton_3d(fig.add_subplot(1, 3, 2, projection='3d'), rel, elev=10.,
                   azim=-90., title='3D, front (camera view)')
  plot_skeleton_3d(fig.add_subplot(1, 3, 3, projection='3d'), rel, elev=10.,
                   azim=0., title='3D, side')
  if title:
    fig.suptitle(title)
  fig.tight_layout(rect=(0, 0, 1, 0.94) if title else None)
  directory = os.path.dirname(os.path.abspath(path))
  fd, tmp = tempfile.mkstemp(dir=directory, prefix='.tmp-', suffix='.png')
  os.close(fd)
  try:
    fig.savefig(tmp, format='png')
    os.chmod(tmp, 0o644)  # mkstemp creates 0600
    os.replace(tmp, path)
  finally:
    plt.close(fig)
    if os.path.exists(tmp):
      os.remove(tmp)
  return path


# ----------------------------------------------------------------------------
# Running a checkpoint or a SavedModel
# ----------------------------------------------------------------------------

def load_checkpoint(name: str, checkpoint: str):
  """A zoo model with trained weights (trainers.checkpoints.load_model)."""
  from trainers import checkpoints
  return checkpoints.load_model(name, checkpoint)


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
  if 'serving_default' not in loaded.signatures:
    raise ValueError(f'{export_dir} has no serving_default signature; it has '
                     f'{sorted(loaded.signatures)}')
  out = loaded.signatures['serving_default'](
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


def write_json_atomic(path: str, obj: Any) -> None:
  fileio.atomic_write_text(path, json.dumps(obj, indent=2) + '\n')


def predict_file(*, model: str | None, image_path: str, out_dir: str,
                 checkpoint: str | None = None, saved_model: str | None = None,
                 box: str | None = None, focal_px: float | None = None,
                 flip_test: bool = False) -> dict[str, Any]:
  """Runs a model on an image file; writes poses.json and poses.png.

  Returns the poses.json content (lists), plus 'json_path' and 'png_path'.
  With neither `checkpoint` nor `saved_model`, the bundled checkpoint of
  `model` (zoo.bundled_checkpoint; BundledCheckpointError if there is none).
  """
  if checkpoint is None and saved_model is None and model:
    import zoo
    checkpoint = zoo.bundled_checkpoint(model)
    _log.info('No --checkpoint or --saved_model given: using the bundled '
              'checkpoint %s.', checkpoint)
  if (checkpoint is None) == (saved_model is None):
    raise ValueError('pass exactly one of --checkpoint=DIR (Keras weights) '
                     'and --saved_model=DIR (an exported version directory)')
  image = read_image(image_path)
  height, width = image.shape[:2]
  box_xywh = parse_box(box, height, width)
  intrinsics, intrinsics_note = make_intrinsics(height, width, focal_px)
  if focal_px is None:
    _log.warning('No --focal given: intrinsics %s.', intrinsics_note)
  if box is None:
    _log.info('No --box given: using the whole image %dx%d as the person '
              'box.', width, height)

  if checkpoint is not None:
    if not model:
      raise ValueError('--model=NAME is required with --checkpoint')
    keras_model = load_checkpoint(model, checkpoint)
    result = run_keras(keras_model, image, box_xywh, intrinsics, flip_test)
    source = {'checkpoint': os.path.abspath(checkpoint)}
  else:
    meta = export_metadata(saved_model)
    if model and meta.get('model') and meta['model'] != model:
      raise ValueError(f'{saved_model} holds model {meta["model"]!r}, not '
                       f'{model!r}')
    if flip_test:
      _log.warning('--flip_test is fixed at export time for a SavedModel '
                   '(this one: %s); ignored.', meta.get('flip_test'))
    model = model or meta.get('model', 'unknown')
    result = run_saved_model(saved_model, image, box_xywh, intrinsics)
    source = {'saved_model': os.path.abspath(saved_model)}

  os.makedirs(out_dir, exist_ok=True)
  doc = {
      'model': model,
      **source,
      'image': os.path.abspath(image_path),
      'image_size_hw': [int(height), int(width)],
      'box_xywh': box_xywh.tolist(),
      'box_source': 'given' if box is not None else 'whole image',
      'intrinsics': intrinsics.tolist(),
      'intrinsics_source': intrinsics_note,
      'default_fov_deg': DEFAULT_FOV_DEG if focal_px is None else None,
      'flip_test': bool(flip_test),
      'joint_names': list(skel.H36M17.joint_names),
      'units': {'poses3d_cam_mm': 'mm, camera frame (x right, y down, z '
                                  'forward)',
                'poses3d_rel_mm': 'mm, root (pelvis) relative, camera axes',
                'poses2d_px': 'pixels of the input image (x right, y down)',
                'confidence': 'per joint, 0..1'},
  }
  doc.update({k: np.asarray(result[k], np.float64).round(3).tolist()
              for k in OUTPUT_KEYS})
  json_path = os.path.join(out_dir, 'poses.json')
  write_json_atomic(json_path, doc)
  png_path = save_figure(os.path.join(out_dir, 'poses.png'), image, result,
                         box_xywh,
                         title=f'{model}: {os.path.basename(image_path)}')
  _log.info('Wrote %s and %s.', json_path, png_path)
  return dict(doc, json_path=json_path, png_path=png_path)


def _parse_args(argv: Sequence[str]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
      prog='python -m zoo.predict',
      description='Run a zoo model on an image; write poses.json and a PNG.')
  parser.add_argument('--model', help='registered model name (required with '
                      '--checkpoint; read from the export with --saved_model)')
  source = parser.add_mutually_exclusive_group()
  source.add_argument('--checkpoint', help='a training workdir, a directory '
                      'with model.weights.h5 + manifest.json, or the file '
                      '(default, without --saved_model: the bundled '
                      'checkpoint zoo/checkpoints/NAME)')
  source.add_argument('--saved_model', help='an exported SavedModel version '
                      'directory (BASE/NAME/N)')
  parser.add_argument('--image', required=True, help='JPEG/PNG image file')
  parser.add_argument('--box', help='person box x,y,w,h in pixels (default: '
                      'the whole image)')
  parser.add_argument('--focal', type=float, help='focal length in pixels '
                      f'(default: a {DEFAULT_FOV_DEG:g} deg field of view)')
  parser.add_argument('--flip_test', action='store_true',
                      help='average with the mirrored crop (Keras only)')
  parser.add_argument('--out', required=True, help='output directory')
  args = parser.parse_args(argv)
  if args.checkpoint is None and args.saved_model is None and not args.model:
    parser.error('one of --checkpoint, --saved_model or --model (for its '
                 'bundled checkpoint) is required')
  return args


def main(argv: Sequence[str] | None = None) -> int:
  args = _parse_args(sys.argv[1:] if argv is None else argv)
  logging.basicConfig(level=logging.INFO, format='%(levelname)s %(message)s')
  try:
    doc = predict_file(model=args.model, image_path=args.image,
                       out_dir=args.out, checkpoint=args.checkpoint,
                       saved_model=args.saved_model, box=args.box,
                       focal_px=args.focal, flip_test=args.flip_test)
  except (ValueError, FileNotFoundError, KeyError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  print(json.dumps({k: doc[k] for k in ('model', 'json_path', 'png_path',
                                        'intrinsics_source')}, indent=2))
  return 0


if __name__ == '__main__':
  sys.exit(main())
