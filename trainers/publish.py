"""Publish bundled checkpoints: zoo/checkpoints/<model>/ from a training run.

  python -m trainers.publish --model=NAME|all [--from_workdir=DIR]
      [--steps=N] [--workdir_root=runs/publish] [--preset=cpu]
      [--checkpoints_root=zoo/checkpoints] [--noprogress]
  python -m trainers.publish --readme_only

Trains (or takes) a run per model and writes its bundled checkpoint with
trainers.publish_lib (what is written, why, and how atomically: there).
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from absl import logging

from trainers import publish_lib
from trainers.publish_lib import DEFAULT_PRESET
from trainers.publish_lib import DEFAULT_WORKDIR_ROOT


# ----------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------

def _parse_args(argv: Sequence[str]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
      prog='python -m trainers.publish',
      description='Train (or take) a run and write the bundled checkpoint '
      'zoo/checkpoints/<model>/.')
  parser.add_argument('--model', help='a registered model name, or all')
  parser.add_argument('--from_workdir', help='a finished training workdir '
                      'of the model at the preset (with --model=all: a '
                      'directory holding <model>_<preset> workdirs)')
  parser.add_argument('--steps', type=int, help='training steps (default: '
                      "the preset's)")
  parser.add_argument('--workdir_root', default=DEFAULT_WORKDIR_ROOT,
                      help='where training runs go (<model>_<preset>; an '
                      'existing run is resumed)')
  parser.add_argument('--preset', default=DEFAULT_PRESET,
                      help='preset to publish (bundled ones are cpu)')
  parser.add_argument('--checkpoints_root', help='bundled checkpoints root '
                      '(default: $POSE3D_ZOO_CHECKPOINTS or zoo/checkpoints)')
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--data_seed', type=int, default=0)
  parser.add_argument('--noprogress', dest='progress', action='store_false',
                      help='no progress bars')
  parser.add_argument('--readme_only', action='store_true',
                      help='only regenerate README.md')
  return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
  argv = sys.argv[1:] if argv is None else list(argv)
  args = _parse_args(argv)
  logging.set_verbosity(logging.INFO)
  if args.readme_only:
    print(publish_lib.write_readme(args.checkpoints_root))
    return 0
  if not args.model:
    print('error: --model=NAME|all is required', file=sys.stderr)
    return 2
  from zoo import registry
  names = registry.zoo_names() if args.model == 'all' else [args.model]
  command = [os.path.basename(sys.executable), '-m', 'trainers.publish',
             *argv]
  if not args.from_workdir:
    publish_lib.generate_data(names, args.preset, args.data_seed,
                              args.progress)
  failed = {}
  for name in names:
    from_workdir = args.from_workdir
    if from_workdir and args.model == 'all':
      from_workdir = os.path.join(from_workdir, f'{name}_{args.preset}')
    try:
      publish_lib.publish(
          name, preset=args.preset, from_workdir=from_workdir,
          steps=args.steps, workdir_root=args.workdir_root,
          checkpoints_root=args.checkpoints_root, seed=args.seed,
          data_seed=args.data_seed, progress=args.progress, command=command,
          write_readme_file=False)
    except (publish_lib.PublishError, ValueError, KeyError,
            FileNotFoundError) as e:
      failed[name] = str(e).strip('"\'')
      print(f'error: {name}: {failed[name]}', file=sys.stderr)
  readme = publish_lib.write_readme(args.checkpoints_root)
  print(f'Published {len(names) - len(failed)} of {len(names)}; {readme}')
  return 1 if failed else 0


if __name__ == '__main__':
  sys.exit(main())
