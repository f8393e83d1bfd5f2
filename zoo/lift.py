"""Lift a 2D detector's keypoints to 3D poses (zoo.lift_lib on the command line).

  python -m zoo.lift --model=lifting_deep|decoupled_volumetric
      --keypoints=FILE [--image=IMG | --image_size=W,H] [--image_id=ID]
      [--focal=PX] [--checkpoint=DIR | --prior=PRIOR.npz] [--min_score=0.3]
      [--min_joints=8]
      --out=DIR

FILE: COCO results (mmpose, Detectron2, ...), a COCO annotation file, or the
zoo's H36M-17 JSON (zoo.lift_lib). Writes OUT/lift.json (per person the
root-relative and camera-frame 3D pose in mm, the 2D pose, intrinsics and
where they came from, or why the person was not lifted) and
OUT/person_NNN.png (2D over the image, 3D from the front and the side).
Without --focal the intrinsics are zoo.predict's default field of view.
Exit status: 0 when at least one person was lifted, 1 when none could be,
2 on bad input (nothing written).
"""
from __future__ import annotations

import json
from typing import Sequence

from absl import flags
from absl import logging

from zoo import cli
from zoo import keypoints
from zoo import lift_lib
from zoo import manifest as manifest_lib

PROGRAM = 'python -m zoo.lift'


def define_flags(flag_values: flags.FlagValues) -> None:
  """The command line's flags (zoo.cli: defined only to run the program)."""
  fv = {'flag_values': flag_values}
  flags.DEFINE_enum('model', 'lifting_deep', list(lift_lib.MODELS),
                    'lifter: the pose prior or decoupled network 2', **fv)
  flags.DEFINE_string('keypoints', None, 'keypoints JSON file',
                      required=True, **fv)
  flags.DEFINE_string('image', None, 'the image the keypoints belong to '
                      '(for its size and the picture)', **fv)
  flags.DEFINE_string('image_size', None, 'W,H in pixels when no --image is '
                      'given and the file records no size', **fv)
  flags.DEFINE_string('image_id', None, 'lift only the persons of this image '
                      'id (files with several images)', **fv)
  flags.DEFINE_float('focal', None, 'focal length in pixels (default: '
                     "zoo.predict's default field of view)", **fv)
  flags.DEFINE_string('checkpoint', None, 'weights instead of the bundled '
                      'ones (lifting_deep: its prior; decoupled_volumetric: a '
                      'network-2 checkpoint)', **fv)
  flags.DEFINE_string('prior', None, 'lifting_deep: a pose prior .npz (e.g. '
                      'fitted on Human3.6M motion: python -m '
                      'trainers.lift_mocap --fit_prior=PATH --motion=FILE)',
                      **fv)
  flags.DEFINE_float('min_score', keypoints.DEFAULT_MIN_SCORE,
                     'joints scoring lower are missing', **fv)
  flags.DEFINE_integer('min_joints', keypoints.DEFAULT_MIN_JOINTS,
                       'persons with fewer detected H36M-17 joints are not '
                       'lifted', **fv)
  flags.DEFINE_boolean('pictures', True, 'write person_NNN.png', **fv)
  flags.DEFINE_string('out', None, 'output directory', required=True, **fv)


def parse_image_size(text: str | None) -> tuple[int, int] | None:
  if text is None:
    return None
  try:
    width, height = (int(v) for v in text.replace('x', ',').split(','))
  except ValueError:
    raise ValueError(f'--image_size must be W,H in pixels, got {text!r}') \
        from None
  return width, height


def run(args: flags.FlagValues, argv: Sequence[str] = ()) -> int:
  """Lifts as the flags say: 0 when a person was lifted, 1 when none could
  be, 2 on bad input."""
  logging.set_verbosity(logging.INFO)
  try:
    doc = lift_lib.lift_file(
        model=args.model, keypoints_path=args.keypoints, out_dir=args.out,
        image_path=args.image, image_id=args.image_id,
        focal_px=args.focal, image_size=parse_image_size(args.image_size),
        checkpoint=args.checkpoint, min_score=args.min_score,
        min_joints=args.min_joints, pictures=args.pictures,
        prior_path=args.prior)
  except (ValueError, FileNotFoundError, KeyError,
          manifest_lib.BundledCheckpointError) as e:
    return cli.bad_input(e)
  print(json.dumps({'json_path': doc['json_path'],
                    'num_lifted': doc['num_lifted'],
                    'num_failed': doc['num_failed']}, indent=1))
  return 0 if doc['num_lifted'] else 1


def main(argv: Sequence[str]) -> int:
  """The program on `argv` (flags only), in this process."""
  return cli.call(define_flags, run, argv, PROGRAM)


if __name__ == '__main__':
  cli.run_program(define_flags, run)
