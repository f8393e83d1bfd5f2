"""Run a zoo model on a user's image: poses in the image's camera, a picture.

The command line over zoo.inference (crop, predict, map back; the path the
TF Serving export traces too) and zoo.visualize (the picture):

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

import json
import os
from typing import Any, Sequence

from absl import app
from absl import flags
from absl import logging
import numpy as np

from zoo import cli
from zoo import fileio
from zoo import manifest as manifest_lib
from zoo import skeleton as skel
from zoo import visualize
from zoo import weights as weights_lib
from zoo.base import OUTPUT_KEYS
from zoo.base import OUTPUT_UNITS
from zoo.data.records import DEFAULT_FOV_DEG
from zoo.inference import export_metadata
from zoo.inference import make_intrinsics
from zoo.inference import parse_box
from zoo.inference import read_image
from zoo.inference import run_keras
from zoo.inference import run_saved_model


# ----------------------------------------------------------------------------
# Running a checkpoint or a SavedModel
# ----------------------------------------------------------------------------

def load_checkpoint(name: str, checkpoint: str):
  """A zoo model with trained weights (zoo.weights.load_model)."""
  return weights_lib.load_model(name, checkpoint)


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
    checkpoint = manifest_lib.bundled_checkpoint(model)
    logging.info('No --checkpoint or --saved_model given: using the bundled '
                 'checkpoint %s.', checkpoint)
  if (checkpoint is None) == (saved_model is None):
    raise ValueError('pass exactly one of --checkpoint=DIR (Keras weights) '
                     'and --saved_model=DIR (an exported version directory)')
  image = read_image(image_path)
  height, width = image.shape[:2]
  box_xywh = parse_box(box, height, width)
  intrinsics, intrinsics_note = make_intrinsics(height, width, focal_px)
  if focal_px is None:
    logging.warning('No --focal given: intrinsics %s.', intrinsics_note)
  if box is None:
    logging.info('No --box given: using the whole image %dx%d as the person '
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
      logging.warning('--flip_test is fixed at export time for a SavedModel '
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
      'units': dict(OUTPUT_UNITS),
  }
  doc.update({k: np.asarray(result[k], np.float64).round(3).tolist()
              for k in OUTPUT_KEYS})
  json_path = os.path.join(out_dir, 'poses.json')
  fileio.atomic_write_json(json_path, doc, sort_keys=False)
  png_path = visualize.save_figure(os.path.join(out_dir, 'poses.png'), image, result,
                                   box_xywh,
                                   title=f'{model}: {os.path.basename(image_path)}')
  logging.info('Wrote %s and %s.', json_path, png_path)
  return dict(doc, json_path=json_path, png_path=png_path)


PROGRAM = 'python -m zoo.predict'


def define_flags(flag_values: flags.FlagValues) -> None:
  """The command line's flags (zoo.cli: defined only to run the program)."""
  fv = {'flag_values': flag_values}
  flags.DEFINE_string('model', None, 'registered model name (required with '
                      '--checkpoint; read from the export with --saved_model)',
                      **fv)
  flags.DEFINE_string('checkpoint', None, 'a training workdir, a directory '
                      'with model.weights.h5 + manifest.json, or the file '
                      '(default, without --saved_model: the bundled '
                      'checkpoint zoo/checkpoints/NAME)', **fv)
  flags.DEFINE_string('saved_model', None, 'an exported SavedModel version '
                      'directory (BASE/NAME/N)', **fv)
  flags.DEFINE_string('image', None, 'JPEG/PNG image file', **fv)
  flags.DEFINE_string('box', None, 'person box x,y,w,h in pixels (default: '
                      'the whole image)', **fv)
  flags.DEFINE_float('focal', None, 'focal length in pixels (default: a '
                     f'{DEFAULT_FOV_DEG:g} deg field of view)', **fv)
  flags.DEFINE_boolean('flip_test', False, 'average with the mirrored crop '
                       '(Keras only)', **fv)
  flags.DEFINE_string('out', None, 'output directory', **fv)
  flags.mark_flags_as_required(['image', 'out'], flag_values=flag_values)
  flags.mark_flags_as_mutual_exclusive(['checkpoint', 'saved_model'],
                                       flag_values=flag_values)


def run(args: flags.FlagValues, argv: Sequence[str] = ()) -> int:
  """Predicts as the flags say; prints where the files went. 2 on bad
  input."""
  del argv  # unused
  if args.checkpoint is None and args.saved_model is None and not args.model:
    raise app.UsageError('one of --checkpoint, --saved_model or --model (for '
                         'its bundled checkpoint) is required')
  logging.set_verbosity(logging.INFO)
  try:
    doc = predict_file(model=args.model, image_path=args.image,
                       out_dir=args.out, checkpoint=args.checkpoint,
                       saved_model=args.saved_model, box=args.box,
                       focal_px=args.focal, flip_test=args.flip_test)
  except (ValueError, FileNotFoundError, KeyError) as e:
    return cli.bad_input(e)
  print(json.dumps({k: doc[k] for k in ('model', 'json_path', 'png_path',
                                        'intrinsics_source')}, indent=2))
  return 0


def main(argv: Sequence[str]) -> int:
  """The program on `argv` (flags only), in this process."""
  return cli.call(define_flags, run, argv, PROGRAM)


if __name__ == '__main__':
  cli.run_program(define_flags, run)
