"""Publish bundled checkpoints: zoo/checkpoints/<model>/ from a training run.

  python -m trainers.publish --model=NAME|all [--from_workdir=DIR]
      [--steps=N] [--workdir_root=runs/publish] [--preset=cpu]
      [--checkpoints_root=zoo/checkpoints] [--noprogress]
  python -m trainers.publish --readme_only

Trains (or takes) a run per model and writes its bundled checkpoint with
trainers.publish_lib (what is written, why, and how atomically: there).
"""
from __future__ import annotations

import os
import sys
from typing import Sequence

from absl import flags
from absl import logging

from trainers import publish_lib
from trainers.publish_lib import DEFAULT_PRESET
from trainers.publish_lib import DEFAULT_WORKDIR_ROOT
from zoo import cli
from zoo import registry


# ----------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------

PROGRAM = 'python -m trainers.publish'


def define_flags(flag_values: flags.FlagValues) -> None:
  """The command line's flags (zoo.cli: defined only to run the program)."""
  fv = {'flag_values': flag_values}
  flags.DEFINE_string('model', None, 'a registered model name, or all', **fv)
  flags.DEFINE_string('from_workdir', None, 'a finished training workdir of '
                      'the model at the preset (with --model=all: a '
                      'directory holding <model>_<preset> workdirs)', **fv)
  flags.DEFINE_integer('steps', None, 'training steps (default: the '
                       'preset\'s)', **fv)
  flags.DEFINE_string('workdir_root', DEFAULT_WORKDIR_ROOT, 'where training '
                      'runs go (<model>_<preset>; an existing run is '
                      'resumed)', **fv)
  flags.DEFINE_string('preset', DEFAULT_PRESET, 'preset to publish (bundled '
                      'ones are cpu)', **fv)
  flags.DEFINE_string('checkpoints_root', None, 'bundled checkpoints root '
                      '(default: $POSE3D_ZOO_CHECKPOINTS or zoo/checkpoints)',
                      **fv)
  flags.DEFINE_integer('seed', 0, 'training seed', **fv)
  flags.DEFINE_integer('data_seed', 0, 'synthetic data seed', **fv)
  flags.DEFINE_boolean('progress', True, 'progress bars (--noprogress: '
                       'none)', **fv)
  flags.DEFINE_boolean('readme_only', False, 'only regenerate README.md',
                       **fv)


def run(args: flags.FlagValues, argv: Sequence[str] = ()) -> int:
  """Publishes as the flags say: 0, 1 if a model failed, 2 on bad input."""
  logging.set_verbosity(logging.INFO)
  if args.readme_only:
    print(publish_lib.write_readme(args.checkpoints_root))
    return 0
  if not args.model:
    print('error: --model=NAME|all is required', file=sys.stderr)
    return 2
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


def main(argv: Sequence[str]) -> int:
  """The program on `argv` (flags only), in this process."""
  return cli.call(define_flags, run, argv, PROGRAM)


if __name__ == '__main__':
  cli.run_program(define_flags, run)
