"""Command line: re-evaluate a trained model's newest weights in a workdir.

  python -m trainers.evaluate --model=NAME --workdir=DIR [--data=...]
      [--flip_test] [--num_examples=N] [--out=PATH]

Loads the newest of WORKDIR/model.weights.h5 and the latest checkpoint in
WORKDIR/checkpoints (trainers.checkpoints.load_model, sha256 verified), builds
the model with the config it was trained with, evaluates on the test split
(trainers.evaluation) and writes WORKDIR/metrics_eval.json (or --out)
atomically, then prints the table. --data defaults to the data the run was
trained on (its config.json / manifest), else the embedded synthetic data.
"""
from __future__ import annotations

import os
from typing import Any, Sequence

from absl import app
from absl import flags

from trainers import common_flags

FLAGS = flags.FLAGS
flags.adopt_module_key_flags(common_flags)  # --help lists the shared flags

flags.DEFINE_boolean('flip_test', None, 'Flip test-time augmentation '
                     '(default: the config\'s flip_test, if any, else off).')
flags.DEFINE_integer('num_examples', None, 'Evaluate the first N test '
                     'examples (default: the config\'s train.num_eval_examples'
                     ').')
flags.DEFINE_string('out', None, 'Output JSON (default: '
                    'WORKDIR/metrics_eval.json).')
flags.DEFINE_integer('eval_batch_size', None, 'Batch size (default: the '
                     'config\'s train.batch_size).')

# Where a re-evaluation goes by default (trainers.publish reads it too).
EVAL_FILE = 'metrics_eval.json'


def evaluate_workdir(model: str, workdir: str, *, data: str | None = None,
                     data_seed: int | None = None, preset: str | None = None,
                     flip_test: bool | None = None,
                     num_examples: int | None = None,
                     batch_size: int | None = None, out: str | None = None,
                     progress: bool = True) -> dict[str, Any]:
  """Loads the newest weights in `workdir`, evaluates, writes `out`."""
  from trainers import checkpoints
  from trainers import evaluation
  from trainers import train_lib

  entry = train_lib.get_entry(model)
  source = checkpoints.resolve(workdir)
  checkpoints.verify_sha256(source)
  config = checkpoints.config_for(entry, source, preset)
  model_obj = checkpoints.build_model(entry, config)
  checkpoints.load_weights(model_obj, source, verify=False)

  meta = source.run_config or source.manifest or {}
  trained_on = meta.get('data') or {}
  if data is None:
    if trained_on.get('name') == 'tfrecords' and trained_on.get('dir'):
      data = trained_on['dir']
    else:
      data = train_lib.DATA_SYNTHETIC
  if data_seed is None:
    data_seed = (trained_on.get('seed') or 0) if data == \
        train_lib.DATA_SYNTHETIC else 0
  data_info = train_lib.resolve_data(data, config, data_seed)
  metrics = {'model': model, 'preset': source.preset or preset,
             'steps': source.step, 'checkpoint': source.path,
             'checkpoint_kind': source.kind}
  metrics.update(evaluation.evaluate_model(
      model_obj, data_info.directory, config, flip_test=flip_test,
      num_examples=num_examples, batch_size=batch_size, progress=progress))
  metrics['data'] = data_info.to_dict()
  out = out or os.path.join(workdir, EVAL_FILE)
  checkpoints.atomic_write_json(out, metrics)
  print(evaluation.format_report(metrics), flush=True)
  print(f'Wrote {out}', flush=True)
  return metrics


def main(argv: Sequence[str]) -> int:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments {list(argv[1:])}')
  if not FLAGS.workdir:
    raise app.UsageError('--workdir is required')
  from trainers import train_lib
  if not FLAGS.model:
    raise app.UsageError('--model is required; valid choices are '
                         + ', '.join(train_lib.registry.names()))
  try:
    common_flags.import_modules(FLAGS.modules)
    train_lib.get_entry(FLAGS.model)
  except ValueError as e:
    raise app.UsageError(str(e))
  data = None if FLAGS['data'].using_default_value else FLAGS.data
  data_seed = None if FLAGS['data_seed'].using_default_value else \
      FLAGS.data_seed
  evaluate_workdir(FLAGS.model, FLAGS.workdir, data=data, data_seed=data_seed,
                   preset=FLAGS.preset, flip_test=FLAGS.flip_test,
                   num_examples=FLAGS.num_examples,
                   batch_size=FLAGS.eval_batch_size, out=FLAGS.out,
                   progress=FLAGS.progress)
  return 0


if __name__ == '__main__':
  app.run(main)
