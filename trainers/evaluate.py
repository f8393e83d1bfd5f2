"""Command line: re-evaluate a trained model's newest weights in a workdir.

  python -m trainers.evaluate --model=NAME --workdir=DIR [--data=...]
      [--flip_test] [--num_examples=N] [--out=PATH]

Loads the newest of WORKDIR/model.weights.h5 and the latest checkpoint in
WORKDIR/checkpoints (zoo.weights: resolve, sha256 verified, load), builds
the model with the config it was trained with, evaluates on the test split
(trainers.evaluation) and writes WORKDIR/metrics_eval.json (or --out)
atomically, then prints the table; the picture of the evaluation (loss
curve, error per action, test examples; trainers.run_figure) goes next to
it, WORKDIR/metrics_eval.png. --data defaults to the data the run was
trained on (its config.json / manifest), else the embedded synthetic data;
it may be any directory with a test split (a train split is not needed) or a
mixture (zoo.data.mixture: metrics per source as well).

The mean-pose baseline (--baseline, default on) takes its mean pose from the
train split of --data when it has one, else from the data the run was
trained on; when neither is at hand it is left out with a note in the table.
"""
from __future__ import annotations

import os
from typing import Any, Sequence

from absl import app
from absl import flags

from trainers import common_flags
from trainers import evaluation
from trainers import run_config
from trainers import run_figure
from trainers import train_lib
from trainers import training_data
from zoo import fileio
from zoo import registry
from zoo import weights as weights_lib
from zoo.manifest import EVAL_FILE

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


def evaluate_workdir(model: str, workdir: str, *, data: str | None = None,
                     data_seed: int | None = None, preset: str | None = None,
                     flip_test: bool | None = None,
                     num_examples: int | None = None,
                     batch_size: int | None = None, out: str | None = None,
                     progress: bool = True,
                     baseline: bool = True) -> dict[str, Any]:
  """Loads the newest weights in `workdir`, evaluates, writes `out`."""
  entry = run_config.get_entry(model)
  source = weights_lib.resolve(workdir)
  weights_lib.verify_sha256(source)
  config = weights_lib.config_for(entry, source, preset)
  model_obj = weights_lib.build_model(entry, config)
  weights_lib.load_weights(model_obj, source, verify=False)

  meta = source.run_config or source.manifest or {}
  trained_on = meta.get('data') or {}
  trained_spec = _trained_on_spec(trained_on)
  if data is None:
    data = trained_spec
  if data_seed is None:  # the seed of the data the run was trained on
    data_seed = (trained_on.get('seed') or 0) if data == trained_spec else 0
  data_info = training_data.resolve_data(data, config, data_seed,
                                         splits=('test',))
  metrics = {'model': model, 'preset': source.preset or preset,
             'steps': source.step, 'checkpoint': source.path,
             'checkpoint_kind': source.kind}
  train_data, note = (_baseline_train_data(data_info, trained_spec,
                                           trained_on, config)
                      if baseline else (None, None))
  keep = evaluation.ExampleKeeper(run_figure.NUM_EXAMPLES)
  metrics.update(evaluation.evaluate_model(
      model_obj, data_info.test_data, config, flip_test=flip_test,
      num_examples=num_examples, batch_size=batch_size, progress=progress,
      baseline_train_data=train_data,
      baseline_train_examples=train_lib.BASELINE_TRAIN_EXAMPLES, keep=keep))
  metrics['data'] = data_info.to_dict()
  if note:
    metrics['mean_pose_baseline'] = {'note': note}
  out = out or os.path.join(workdir, EVAL_FILE)
  fileio.atomic_write_json(out, metrics)
  print(evaluation.format_report(metrics), flush=True)
  print(f'Wrote {out}', flush=True)
  picture = run_figure.try_write_for_run(
      workdir, metrics, keep.arrays(), path=os.path.splitext(out)[0] + '.png',
      title=f'{model} ({metrics["preset"]}), step {metrics["steps"]}, '
      f'evaluated on {_data_label(data_info)}')
  if picture:
    print(f'Wrote {picture}', flush=True)
  return metrics


def _data_label(data_info) -> str:
  """'synthetic', 'mixture', or the name of a record directory."""
  if data_info.name == 'tfrecords' and data_info.directory:
    return os.path.basename(os.path.normpath(data_info.directory))
  return data_info.name


def _trained_on_spec(trained_on: dict) -> str:
  """The data spec of the data a run was trained on (synthetic if unknown)."""
  if trained_on.get('name') == 'mixture' and trained_on.get('spec'):
    return trained_on['spec']
  if trained_on.get('name') == 'tfrecords' and trained_on.get('dir'):
    return trained_on['dir']
  return training_data.DATA_SYNTHETIC


def _baseline_train_data(data_info, trained_spec: str, trained_on: dict,
                         config) -> tuple[Any, str | None]:
  """(the data whose mean pose is the baseline, None), or (None, a note why
  the baseline is left out)."""
  if 'train' in data_info.splits:
    return data_info.train_data, None
  try:
    trained = training_data.resolve_data(
        trained_spec, config, trained_on.get('seed') or 0, progress=False,
        splits=('train',))
  except (ValueError, FileNotFoundError) as e:
    return None, (f'left out: the evaluation data has no train split and the '
                  f'data the run was trained on is not at hand ({e})')
  return trained.train_data, None


def main(argv: Sequence[str]) -> int:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments {list(argv[1:])}')
  if not FLAGS.workdir:
    raise app.UsageError('--workdir is required')
  if not FLAGS.model:
    raise app.UsageError('--model is required; valid choices are '
                         + ', '.join(registry.names()))
  try:
    common_flags.import_modules(FLAGS.modules)
    run_config.get_entry(FLAGS.model)
  except ValueError as e:
    raise app.UsageError(str(e))
  data = None if FLAGS['data'].using_default_value else FLAGS.data
  data_seed = None if FLAGS['data_seed'].using_default_value else \
      FLAGS.data_seed
  evaluate_workdir(FLAGS.model, FLAGS.workdir, data=data, data_seed=data_seed,
                   preset=FLAGS.preset, flip_test=FLAGS.flip_test,
                   num_examples=FLAGS.num_examples,
                   batch_size=FLAGS.eval_batch_size, out=FLAGS.out,
                   progress=FLAGS.progress, baseline=FLAGS.baseline)
  return 0


if __name__ == '__main__':
  app.run(main)
