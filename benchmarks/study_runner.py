"""Running the study: training the models' runs that no record or finished
run stands for (study_runs finds those), evaluating them (again, on
truncated crops, and for speed), and writing study.json, STUDY.md and
study.png. The command line is benchmarks/study.py, which says what the
study does.
"""
from __future__ import annotations

import datetime
import json
import math
import os
import platform
import sys
import time
import traceback
from typing import Any, Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf
import tqdm

from benchmarks import study_records
from benchmarks.study_claims import BUDGET_MODEL
from benchmarks.study_claims import CHART_FILE
from benchmarks.study_claims import JSON_FILE
from benchmarks.study_claims import PAPER_CLAIMS
from benchmarks.study_claims import SPREAD_FACTOR
from benchmarks.study_claims import STD_DDOF
from benchmarks.study_claims import STUDY_FILE
from benchmarks.study_claims import aggregate_runs
from benchmarks.study_claims import base_model
from benchmarks.study_claims import config_differences
from benchmarks.study_claims import judge
from benchmarks.study_claims import model_config
from benchmarks.study_claims import model_overrides
from benchmarks.study_claims import parse_models
from benchmarks.study_report import command_line
from benchmarks.study_report import portable_text
from benchmarks.study_report import render_markdown
from benchmarks.study_report import shown_path
from benchmarks.study_report import write_chart
from benchmarks.study_runs import budget_mismatch
from benchmarks.study_runs import find_record
from benchmarks.study_runs import find_run
from benchmarks.study_runs import finished_mismatch
from benchmarks.study_runs import run_mismatch
from benchmarks.study_runs import run_records
from benchmarks.study_runs import seed_workdir
from trainers import evaluation
from trainers import train_lib
from trainers import training_data
from zoo import config as config_lib
from zoo import fileio
from zoo import metrics as metrics_lib
from zoo import registry
from zoo import weights as weights_lib
from zoo.manifest import METRICS_FILE


# ----------------------------------------------------------------------------
# Runs: train, evaluate
# ----------------------------------------------------------------------------

def time_budget_callback(seconds: float):
  """A Keras callback that stops training `seconds` after the first step
  (which traces and compiles the model, so it is not counted)."""

  class TimeBudget(keras.callbacks.Callback):

    def __init__(self):
      super().__init__()
      self.start = None

    def on_train_batch_end(self, batch, logs=None):
      now = time.perf_counter()
      if self.start is None:
        self.start = now
      elif now - self.start >= seconds:
        self.model.stop_training = True

  return TimeBudget()


def train_run(name: str, preset: str, workdir: str, *, steps: int | None,
              seconds: float | None, seed: int, data: str, data_seed: int,
              progress: bool, baseline: bool = True) -> train_lib.TrainResult:
  """Trains `name` into `workdir`; an unfinished run there (its training
  checkpoints) is resumed by trainers.train_lib.train. `baseline`: measure
  the mean-pose baseline too (it depends on the data, not on the seed)."""
  overrides = model_overrides(name, preset)
  callbacks = [time_budget_callback(seconds)] if seconds else []
  command = [os.path.basename(sys.executable), '-m', 'benchmarks.study',
             f'--preset={preset}', f'--models={name}', f'--seeds={seed}']
  return train_lib.train(base_model(name), preset=preset, workdir=workdir,
                  data=data, steps=steps, seed=seed, data_seed=data_seed,
                  overrides=overrides or None, progress=progress,
                  command=command, extra_callbacks=callbacks,
                  baseline=baseline)


def truncation_stats(poses: Mapping[str, np.ndarray],
                     truth: Mapping[str, np.ndarray]) -> dict[str, float]:
  """Errors on the joints outside / inside the crop (zoo.metrics.mpjpe).

  A joint counts when it has a 3D label and a 2D label (to know where it
  is); `joint_in_crop` (from the pipeline) says where. Each error is the
  mean over crops that have such joints of the per-crop mean over them;
  `outside_inside_ratio` divides the first by the second.
  """
  has_3d = truth['has_3d'].reshape(-1) > 0
  labelled = (truth['joint_valid_3d'][has_3d] > 0) & (
      truth['joint_valid_2d'][has_3d] > 0)
  inside = labelled & (truth['joint_in_crop'][has_3d] > 0)
  outside = labelled & ~inside
  pred = poses['poses3d_rel_mm'][has_3d]
  gt = truth['joints3d_rel_mm'][has_3d]

  def mean(values):
    values = np.asarray(values, np.float64)
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else float('nan')

  count = labelled.sum()
  outside_mm = mean(metrics_lib.mpjpe(pred, gt, outside))
  inside_mm = mean(metrics_lib.mpjpe(pred, gt, inside))
  return {
      'mpjpe_truncated_joints_mm': outside_mm,
      'mpjpe_in_crop_joints_mm': inside_mm,
      # How much worse a model is on the joints it cannot see than on those
      # it can, independent of its overall accuracy.
      'outside_inside_ratio': outside_mm / inside_mm
                              if inside_mm > 0 else float('nan'),
      'truncated_joint_fraction': float(outside.sum() / count) if count
                                  else float('nan'),
      'truncated_example_fraction': float(outside.any(-1).mean())
                                    if outside.shape[0] else float('nan'),
  }


def load_run(name: str, workdir: str):
  """(model with the run's newest weights, its config, data directory, the
  config as trained: before `prepare` fills run-time fields such as a
  prior's path)."""
  entry = registry.get(base_model(name))
  source = weights_lib.resolve(workdir)
  weights_lib.verify_sha256(source)
  config = weights_lib.config_for(entry, source)
  data = (source.run_config or source.manifest or {}).get('data') or {}
  synthetic = training_data.DATA_SYNTHETIC
  if data.get('name', synthetic) == synthetic:
    data_dir = training_data.resolve_data(synthetic, config,
                                          data.get('seed') or 0,
                                          progress=False).directory
  else:
    data_dir = data['dir']
  trained = config
  if entry.prepare is not None:  # e.g. re-fit a pose prior whose cache is gone
    config = entry.prepare(config, workdir, data_dir)
  model = weights_lib.build_model(entry, config)
  weights_lib.load_weights(model, source, verify=False)
  return model, config, data_dir, trained


def evaluate_truncated(model, config, data_dir: str, *, margin: float,
                       flip_test: bool, progress: bool) -> dict[str, float]:
  """Test-split metrics on crops with box margin `margin`."""
  truncated = config_lib.replace(config, **{'augment.box_margin': margin})
  num = config.train.num_eval_examples
  dataset = evaluation.eval_dataset(data_dir, truncated, num_examples=num)
  poses, truth, extras, _ = evaluation.predict(
      model, dataset, flip_test=flip_test, progress=progress, total=num)
  out = evaluation.compute_metrics(poses, truth, extras)
  keep = ('mpjpe_mm', 'pa_mpjpe_mm', 'pck3d_150', 'auc', 'mean_error_2d_px',
          'mpjpe_truncated_mm', 'mpjpe_in_crop_mm')
  result = {k: out[k] for k in keep if k in out}
  result.update(truncation_stats(poses, truth))
  result['box_margin'] = margin
  return result


def inference_speed(model, config, data_dir: str, *, batch: int,
                    flip_test: bool, min_seconds: float, min_iters: int
                    ) -> dict[str, float]:
  """Examples/s of predict_poses at `batch` on the CPU (after warm-up)."""
  features = next(iter(evaluation.eval_dataset(data_dir, config,
                                               batch_size=batch)))
  inputs = {}
  for key in ('image', 'intrinsics'):
    value = features[key]
    reps = -(-batch // int(value.shape[0]))  # a small split: repeat it
    inputs[key] = tf.concat([value] * reps, 0)[:batch]
  with tf.device('/CPU:0'):
    inputs = {k: tf.identity(v) for k, v in inputs.items()}
    fn = tf.function(lambda x: model.predict_poses(x, flip_test=flip_test))
    for _ in range(2):  # tracing, then one untimed call
      tf.nest.map_structure(lambda t: t.numpy(), fn(inputs))
    iters, start = 0, time.perf_counter()
    while iters < min_iters or time.perf_counter() - start < min_seconds:
      tf.nest.map_structure(lambda t: t.numpy(), fn(inputs))
      iters += 1
    elapsed = time.perf_counter() - start
  return {'examples_per_second': iters * batch / elapsed, 'batch': batch,
          'iterations': iters, 'seconds': elapsed, 'flip_test': flip_test}


def study_result(name: str, preset: str, seed: int, workdir: str,
                 source: str, args: Any, *, evaluate: bool = True
                 ) -> dict[str, Any]:
  """Metrics, truncated-crop metrics and speeds of one finished run.

  `evaluate`: evaluate the test split again from the run's weights (a
  reused run may predate a change of decoding); False keeps the figures of
  its metrics.json (a run this study has just trained evaluated itself with
  the same code).
  """
  metrics, _ = run_records(workdir)
  result = dict(metrics)
  result.update({'model': name, 'base_model': base_model(name), 'seed': seed,
                 'overrides': {k: list(v) if isinstance(v, tuple) else v
                               for k, v in model_overrides(name,
                                                           preset).items()},
                 'workdir': shown_path(workdir), 'source': source})
  model, config, data_dir, trained = load_run(name, workdir)
  result['parameters'] = int(model.count_params())
  result['config_differences'] = config_differences(
      trained, model_config(name, preset))
  result['data_dir'] = shown_path(data_dir)
  flip_test = bool(metrics.get('flip_test', config.flip_test))
  result['run_mpjpe_mm'] = metrics.get('mpjpe_mm')
  if evaluate:
    result.update(evaluation.evaluate_model(
        model, data_dir, config, flip_test=flip_test, progress=args.progress))
  result['truncated'] = evaluate_truncated(
      model, config, data_dir, margin=args.truncation_margin,
      flip_test=flip_test, progress=args.progress)
  result['inference'] = inference_speed(
      model, config, data_dir, batch=args.speed_batch, flip_test=flip_test,
      min_seconds=args.speed_seconds, min_iters=args.speed_iters)
  return result


def model_entry(name: str, preset: str, runs: Sequence[Mapping[str, Any]]
                ) -> dict[str, Any]:
  """A model's study.json entry: its per-seed results ('runs', by seed)
  and their mean and sample standard deviation ('mean', 'std': NaN, null in
  study.json, with one seed) for every numeric field."""
  runs = sorted(runs, key=lambda r: r['seed'])
  mean, std = aggregate_runs(runs)
  return {'model': name, 'base_model': base_model(name),
          'overrides': runs[0]['overrides'] if runs else {},
          'seeds': [r['seed'] for r in runs], 'mean': mean, 'std': std,
          'runs': list(runs)}


class StudyInterrupted(Exception):
  """Training was stopped by a signal; rerunning the command resumes it."""


def parse_seeds(values: Sequence[Any]) -> list[int]:
  """--seeds as distinct integers >= 0, in the order given."""
  seeds = []
  for value in values:
    try:
      seed = int(str(value).strip())
    except ValueError:
      raise ValueError(f'--seeds: {value!r} is not an integer; expected a '
                       'comma-separated list of seeds such as 0,1,2') from None
    if seed < 0:
      raise ValueError(f'--seeds: seeds must be >= 0, got {seed}')
    if seed in seeds:
      raise ValueError(f'--seeds: seed {seed} is given twice')
    seeds.append(seed)
  if not seeds:
    raise ValueError('--seeds: give at least one seed, e.g. --seeds=0,1,2')
  return seeds


def obtain_run(name: str, preset: str, seed: int, args: Any, steps: int | None,
               workdir_root: str, baseline: bool = True
               ) -> tuple[str | None, str, str | None]:
  """(workdir, source, why missing) of `name` with `seed`: a finished run
  under the reuse roots or the workdir root ('reused'), else one trained
  now ('trained', or 'resumed' from an unfinished run's checkpoints;
  `baseline`: it measures the mean-pose baseline too)."""
  workdir, skipped = find_run(name, preset, seed, args.reuse_root, steps,
                              args.seconds)
  if workdir is not None:
    return workdir, 'reused', None
  own = seed_workdir(workdir_root, name, seed)
  shown = shown_path(own)
  if os.path.isdir(own):
    other = run_mismatch(name, preset, seed, own)
    if other is not None:
      return None, '', '; '.join(skipped + [
          f'{shown} holds another run ({other}); choose another '
          '--workdir_root'])
    if os.path.exists(os.path.join(own, METRICS_FILE)):
      metrics = fileio.read_json(os.path.join(own, METRICS_FILE))
      over = budget_mismatch(metrics, steps, args.seconds)
      if over is None:
        return own, 'reused', None
      if not args.seconds and steps is not None and int(
          metrics.get('steps') or 0) > steps:
        return None, '', '; '.join(skipped + [
            f'{shown}: {over}, more than the budget; choose another '
            '--workdir_root or --steps'])
  if not args.train:
    reason = 'no finished run for the budget'
    return None, '', '; '.join(skipped + [f'{shown}: {reason}']) + \
        ' (--notrain)'
  resumed = os.path.isdir(own) and \
      weights_lib.latest_checkpoint_step(own)[0] is not None
  try:
    result = train_run(name, preset, own, steps=steps, seconds=args.seconds,
                       seed=seed, data=args.data, data_seed=args.data_seed,
                       progress=args.progress, baseline=baseline)
  except Exception as e:  # pylint: disable=broad-except
    # One failed run must not lose hours of others' results.
    traceback.print_exc()
    return None, '', portable_text(
        f'training failed: {type(e).__name__}: {e}')
  if getattr(result, 'interrupted_by', None) is not None:
    raise StudyInterrupted(
        f'training {name} (seed {seed}) was stopped by signal '
        f'{result.interrupted_by}; its checkpoint is in {shown}: run the same '
        'command again to resume')
  reason = finished_mismatch(name, preset, seed, own, steps, args.seconds)
  if reason is not None:
    return None, '', f'{shown}: after training: {reason}'
  return own, 'resumed' if resumed else 'trained', None


# ----------------------------------------------------------------------------
# The whole study
# ----------------------------------------------------------------------------

def run_study(args: Any, argv: Sequence[str] = ()
              ) -> dict[str, Any]:
  """Runs the study described by `args` (attributes named as the flags of
  benchmarks/study.py); returns study.json's dict."""
  models = parse_models(args.models)
  seeds = parse_seeds(args.seeds)
  preset = args.preset
  for name in models:
    entry = registry.get(base_model(name))
    if preset not in entry.presets:
      raise ValueError(f'--preset: model {base_model(name)!r} has no preset '
                       f'{preset!r}; valid presets are {sorted(entry.presets)}')
  if args.steps is not None and args.steps < 1:
    raise ValueError(f'--steps must be >= 1, got {args.steps}')
  if args.seconds is not None and args.seconds <= 0:
    raise ValueError(f'--seconds must be > 0, got {args.seconds}')
  if not 0 < args.truncation_margin:
    raise ValueError('--truncation_margin must be > 0')
  if args.seconds:
    steps, budget = args.steps, f'{args.seconds:g} s of training per run'
  else:
    steps = args.steps
    if steps is None:
      budget_model = BUDGET_MODEL if BUDGET_MODEL in registry.names() else \
          base_model(models[0])
      steps = registry.get(budget_model).config(preset).train.steps
    budget = f'{steps} training steps per run'
  workdir_root = args.workdir_root or os.path.join('runs', f'study_{preset}')
  load_before = ', '.join(f'{x:.1f}' for x in os.getloadavg())
  machine = (f'{study_records.machine_text()}, Python '
             f'{platform.python_version()}, {_versions()}')

  runs: dict[str, list[dict[str, Any]]] = {name: [] for name in models}
  missing: dict[str, dict[str, str]] = {}
  # Seed by seed, so an interrupted study has every model at the first seeds.
  pairs = [(seed, name) for seed in seeds for name in models]
  bar = tqdm.tqdm(pairs, desc='study', unit='run', disable=not args.progress)
  try:
    for seed, name in bar:
      bar.set_postfix_str(f'{name} seed {seed}')
      record, why_not_record = find_record(
          name, preset, seed, args.results_dir, steps, args.seconds)
      if record is not None:
        runs[name].append(record)
        continue
      # The mean-pose baseline is the same for every seed: measured once.
      workdir, source, why = obtain_run(name, preset, seed, args, steps,
                                        workdir_root,
                                        baseline=seed == seeds[0])
      if workdir is None:
        missing.setdefault(name, {})[str(seed)] = '; '.join(
            filter(None, (why_not_record, why)))
        continue
      try:
        result = study_result(name, preset, seed, workdir, source, args,
                              evaluate=source == 'reused')
      except Exception as e:  # pylint: disable=broad-except
        traceback.print_exc()
        missing.setdefault(name, {})[str(seed)] = portable_text(
            f'{shown_path(workdir)}: evaluation failed: '
            f'{type(e).__name__}: {e}')
        continue
      runs[name].append(result)
      if args.results_dir:
        path = study_records.record_path(args.results_dir, preset, steps,
                                         args.seconds, name, seed)
        try:
          metrics, run_config = run_records(workdir)
          study_records.write_record(path, _jsonable(result), metrics,
                                     run_config, machine)
        except Exception as e:  # pylint: disable=broad-except
          # The run is evaluated and stays in the report; only its record
          # is lacking (a later study evaluates the run again).
          print(portable_text(
              f'study.py: could not write the record {shown_path(path)}: '
              f'{type(e).__name__}: {e}'), file=sys.stderr)
  finally:
    bar.close()
  results = {name: model_entry(name, preset, runs[name]) for name in models
             if runs[name]}

  data_dirs = sorted({r['data_dir'] for entry in results.values()
                      for r in entry['runs']})
  setup = {
      'command': command_line(argv),
      'date': datetime.datetime.now().astimezone().isoformat(
          timespec='seconds'),
      'preset': preset, 'budget': budget, 'steps': steps,
      'seconds': args.seconds, 'seeds': seeds,
      'truncation_margin': args.truncation_margin,
      'speed_batch': args.speed_batch,
      'spread_factor': SPREAD_FACTOR, 'std_ddof': STD_DDOF,
      'machine': machine,
      'load_before': load_before,
      'load_after': ', '.join(f'{x:.1f}' for x in os.getloadavg()),
      'data_dirs': data_dirs,
      'data_warning': None if len(data_dirs) <= 1 else (
          'the runs were evaluated on different test sets: '
          + ', '.join(data_dirs)),
  }
  study = {'setup': setup, 'models': models, 'results': results,
           'missing': missing}
  verdicts = [judge(c, results) for c in PAPER_CLAIMS]
  study['claims'] = [{
      'key': v.claim.key, 'title': v.claim.title, 'status': v.status,
      'better': v.better, 'worse': v.worse, 'metric': v.claim.metric,
      'ours': list(v.ours) if v.ours else None,
      'std': list(v.stds) if v.stds else None,
      'seeds': list(v.seeds) if v.seeds else None,
      'threshold': v.threshold, 'relative': v.relative,
      'paper': list(v.claim.paper) if v.claim.paper else None,
      'notes': v.notes} for v in verdicts]

  os.makedirs(args.out_dir, exist_ok=True)
  fileio.atomic_write_text(os.path.join(args.out_dir, JSON_FILE),
                           json.dumps(_jsonable(study), indent=1,
                                      sort_keys=False) + '\n')
  write_chart(study, os.path.join(args.out_dir, CHART_FILE))
  fileio.atomic_write_text(os.path.join(args.out_dir, STUDY_FILE),
                           render_markdown(study, verdicts))
  return study


def _versions() -> str:
  return f'TensorFlow {tf.__version__}, Keras {keras.__version__}'


def _jsonable(value):
  if isinstance(value, Mapping):
    return {str(k): _jsonable(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_jsonable(v) for v in value]
  if isinstance(value, (np.floating, float)):
    value = float(value)
    return value if math.isfinite(value) else None
  if isinstance(value, np.integer):
    return int(value)
  return value
