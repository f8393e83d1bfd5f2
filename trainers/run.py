"""Command line of the trainer: train, checkpoint, evaluate one zoo model.

  python -m trainers.run --model=NAME [--preset=paper|cpu|smoke]
      [--workdir=DIR] [--data=synthetic|DIR|NAME=DIR:WEIGHT,...] [--steps=N]
      [--batch_size=B] [--precision=auto|float32|mixed_float16|mixed_bfloat16]
      [--strategy=auto|default|mirrored|multi_worker] [--seed=S]
      [--init_from=CKPT] [--override=key=value,...]
      [--on_bad_record=stop|skip]

Flags only select and override config dataclasses (`--override` takes dotted
keys such as train.learning_rate=1e-3 or augment.flip=false; it may be
repeated). Rerunning with the same --workdir resumes from the last checkpoint.
SIGINT / SIGTERM save a checkpoint and exit with status 128 + signal number.
Everything else lives in trainers.train_lib.train.
"""
from __future__ import annotations

import sys
from typing import Sequence

from absl import app
from absl import flags
from absl import logging

from trainers import common_flags
from trainers import distribute
from zoo import registry

FLAGS = flags.FLAGS
flags.adopt_module_key_flags(common_flags)  # --help lists the shared flags

flags.DEFINE_integer('steps', None, 'Training steps (default: the preset\'s '
                     'train.steps).')
flags.DEFINE_integer('batch_size', None, 'Global batch size, split over '
                     'replicas (default: the preset\'s train.batch_size).')
flags.DEFINE_string('precision', 'auto', 'auto | float32 | mixed_float16 | '
                    'mixed_bfloat16. auto: mixed_float16 on a GPU, '
                    'mixed_bfloat16 on a CPU with AMX-BF16 or AVX512-BF16, '
                    'else float32 (the log says which and why).')
flags.DEFINE_string('strategy', 'auto', 'auto | default | mirrored | '
                    'multi_worker (TF_CONFIG).')
flags.DEFINE_integer('seed', 0, 'Seed of weight initialisation, input order '
                     'and augmentation.')
flags.DEFINE_string('init_from', None, 'Start from these weights (fine-tuning)'
                    ': a .weights.h5 file, its directory or a workdir.')
flags.DEFINE_multi_string('override', [], 'Config overrides key=value[,...] '
                          'with dotted keys, e.g. train.learning_rate=1e-3.')
flags.DEFINE_boolean('evaluate', True, 'Evaluate on the test split at the end.')
flags.DEFINE_boolean('deterministic', False, 'Deterministic input order.')
flags.DEFINE_enum('on_bad_record', 'stop', ['stop', 'skip'], 'At a bad '
                  'training record or a corrupt record file: stop with an '
                  'error naming it, or skip it (logged and counted).')


def _usage(error: Exception) -> app.UsageError:
  return app.UsageError(str(error).strip('"\''))


def main(argv: Sequence[str]) -> int:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments {list(argv[1:])}; flags are '
                         'written --name=value')
  try:
    distribute.validate_choice('strategy', FLAGS.strategy,
                               distribute.STRATEGIES)
    distribute.validate_choice('precision', FLAGS.precision,
                               distribute.PRECISIONS)
  except ValueError as e:
    raise _usage(e)
  # Before any TensorFlow op: logical CPU devices for `mirrored` on CPU, and
  # one op at a time with every core inside it on a CPU-only machine.
  distribute.configure_devices(FLAGS.strategy)
  distribute.configure_cpu_threads()

  # After the device set-up:
  from trainers import run_config  # pylint: disable=g-import-not-at-top
  from trainers import train_lib  # pylint: disable=g-import-not-at-top
  if not FLAGS.model:
    raise app.UsageError('--model is required; valid choices are '
                         + ', '.join(registry.names()))
  preset = FLAGS.preset or 'cpu'
  try:
    common_flags.import_modules(FLAGS.modules)
    entry = run_config.get_entry(FLAGS.model)
    config = run_config.make_config(entry, preset, FLAGS.override,
                                    FLAGS.steps, FLAGS.batch_size)
    strategy = distribute.make_strategy(FLAGS.strategy)
    distribute.check_batch_size(config.train.batch_size, strategy)
  except (ValueError, KeyError) as e:
    raise _usage(e)

  result = train_lib.train(
      FLAGS.model, preset=preset, workdir=FLAGS.workdir,
      data=None if FLAGS['data'].using_default_value else FLAGS.data,
      steps=FLAGS.steps, batch_size=FLAGS.batch_size,
      precision=FLAGS.precision, strategy=strategy, seed=FLAGS.seed,
      data_seed=FLAGS.data_seed, init_from=FLAGS.init_from,
      overrides=FLAGS.override, run_evaluation=FLAGS.evaluate,
      baseline=FLAGS.baseline, deterministic=FLAGS.deterministic,
      on_bad_record=FLAGS.on_bad_record, progress=FLAGS.progress,
      command=[sys.executable, '-m', 'trainers.run', *sys.argv[1:]])
  if result.interrupted_by is not None:
    return 128 + result.interrupted_by
  logging.info('Done: %s (step %d).', result.workdir, result.step)
  return 0


if __name__ == '__main__':
  app.run(main)
