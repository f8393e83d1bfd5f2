"""Running the study: finding or training the models' runs, evaluating them
(again, on truncated crops, and for speed), and writing study.json, STUDY.md
and study.png. The command line is benchmarks/study.py, which says what the
study does.
"""
from __future__ import annotations

import datetime
import json
import math
import os
import platform
import shlex
import sys
import time
import traceback
from typing import Any, Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf
import tqdm

from benchmarks.study_claims import BUDGET_MODEL
from benchmarks.study_claims import CHART_FILE
from benchmarks.study_claims import JSON_FILE
from benchmarks.study_claims import PAPER_CLAIMS
from benchmarks.study_claims import PSEUDO_MODELS
from benchmarks.study_claims import STUDY_FILE
from benchmarks.study_claims import base_model
from benchmarks.study_claims import config_differences
from benchmarks.study_claims import judge
from benchmarks.study_claims import model_config
from benchmarks.study_claims import model_overrides
from benchmarks.study_claims import parse_models
from benchmarks.study_report import render_markdown
from benchmarks.study_report import write_chart
from trainers import evaluation
from trainers import train_lib
from zoo import config as config_lib
from zoo import fileio
from zoo import metrics as metrics_lib
from zoo import registry
from zoo import weights as weights_lib
from zoo.manifest import METRICS_FILE
from zoo.manifest import RUN_CONFIG_FILE


# ----------------------------------------------------------------------------
# Runs: find, train, evaluate
# ----------------------------------------------------------------------------

def _run_matches(name: str, preset: str, workdir: str) -> str | None:
  """None if `workdir` is a finished run of `name` at `preset`, else why not."""
  path = os.path.join(workdir, METRICS_FILE)
  if not os.path.exists(path):
    return f'no {METRICS_FILE}'
  metrics = fileio.read_json(path)
  base = base_model(name)
  if metrics.get('model') not in (None, base):
    return f'it is a run of {metrics.get("model")!r}'
  if metrics.get('preset') not in (None, preset):
    return f'it used preset {metrics.get("preset")!r}'
  config_path = os.path.join(workdir, RUN_CONFIG_FILE)
  wanted = model_overrides(name, preset)
  if wanted:
    config = (fileio.read_json(config_path).get('config') or {}) if os.path.exists(
        config_path) else {}
    for key, value in wanted.items():
      have: Any = config
      for part in key.split('.'):
        have = have.get(part) if isinstance(have, dict) else None
      if have is None or (list(have) if isinstance(have, (list, tuple))
                          else have) != (list(value) if isinstance(
                              value, (list, tuple)) else value):
        return f'its config has {key}={have!r}, not {value!r}'
  elif os.path.exists(config_path):
    # A registered model's run must not be one of its ablations.
    config = fileio.read_json(config_path).get('config') or {}
    for pseudo in PSEUDO_MODELS.values():
      if pseudo.base != name:
        continue
      ablation = pseudo.overrides(registry.get(name).config(preset))
      if all(config.get(k) == (list(v) if isinstance(v, tuple) else v)
             for k, v in ablation.items() if '.' not in k):
        return f'its config is that of {pseudo.name}'
  return None


def find_run(name: str, preset: str, reuse_roots: Sequence[str]
             ) -> tuple[str | None, list[str]]:
  """A finished workdir of `name` under the reuse roots, and why others
  were passed over."""
  skipped = []
  for root in reuse_roots:
    for sub in (name, f'{name}_{preset}'):
      workdir = os.path.join(root, sub)
      if not os.path.isdir(workdir):
        continue
      reason = _run_matches(name, preset, workdir)
      if reason is None:
        return workdir, skipped
      skipped.append(f'{workdir}: {reason}')
  return None, skipped


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
              progress: bool) -> None:
  """Trains `name` into `workdir` (resuming an unfinished run there)."""
  overrides = model_overrides(name, preset)
  callbacks = [time_budget_callback(seconds)] if seconds else []
  command = [os.path.basename(sys.executable), '-m', 'benchmarks.study',
             f'--preset={preset}', f'--models={name}']
  train_lib.train(base_model(name), preset=preset, workdir=workdir,
                  data=data, steps=steps, seed=seed, data_seed=data_seed,
                  overrides=overrides or None, progress=progress,
                  command=command, extra_callbacks=callbacks)


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
  if data.get('name', train_lib.DATA_SYNTHETIC) == train_lib.DATA_SYNTHETIC:
    data_dir = train_lib.resolve_data(train_lib.DATA_SYNTHETIC, config,
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


def _shown_path(path: str) -> str:
  """A path as the report shows it: under the home directory as `~/...`, so
  study.json names no directory of the machine it ran on."""
  path = os.path.abspath(path)
  home = os.path.expanduser('~')
  if home not in ('', '/') and (path == home or path.startswith(home + os.sep)):
    return '~' + path[len(home):]
  return path


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


def study_result(name: str, preset: str, workdir: str, source: str,
                 args: Any) -> dict[str, Any]:
  """Metrics, truncated-crop metrics and speeds of one finished run."""
  metrics = fileio.read_json(os.path.join(workdir, METRICS_FILE))
  result = dict(metrics)
  result.update({'model': name, 'base_model': base_model(name),
                 'overrides': {k: list(v) if isinstance(v, tuple) else v
                               for k, v in model_overrides(name,
                                                           preset).items()},
                 'workdir': os.path.abspath(workdir), 'source': source})
  model, config, data_dir, trained = load_run(name, workdir)
  result['parameters'] = int(model.count_params())
  result['config_differences'] = config_differences(
      trained, model_config(name, preset))
  result['data_dir'] = _shown_path(data_dir)
  flip_test = bool(metrics.get('flip_test', config.flip_test))
  result['run_mpjpe_mm'] = metrics.get('mpjpe_mm')
  result.update(evaluation.evaluate_model(
      model, data_dir, config, flip_test=flip_test, progress=args.progress))
  result['truncated'] = evaluate_truncated(
      model, config, data_dir, margin=args.truncation_margin,
      flip_test=flip_test, progress=args.progress)
  result['inference'] = inference_speed(
      model, config, data_dir, batch=args.speed_batch, flip_test=flip_test,
      min_seconds=args.speed_seconds, min_iters=args.speed_iters)
  return result


# ----------------------------------------------------------------------------
# The whole study
# ----------------------------------------------------------------------------

def run_study(args: Any, argv: Sequence[str] = ()
              ) -> dict[str, Any]:
  """Runs the study described by `args` (attributes named as the flags of
  benchmarks/study.py); returns study.json's dict."""
  models = parse_models(args.models)
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
    steps, budget = args.steps, f'{args.seconds:g} s of training per model'
  else:
    steps = args.steps
    if steps is None:
      budget_model = BUDGET_MODEL if BUDGET_MODEL in registry.names() else \
          base_model(models[0])
      steps = registry.get(budget_model).config(preset).train.steps
    budget = f'{steps} training steps per model'
  workdir_root = args.workdir_root or os.path.join('runs', f'study_{preset}')
  load_before = ', '.join(f'{x:.1f}' for x in os.getloadavg())

  results, missing = {}, {}
  bar = tqdm.tqdm(models, desc='study', unit='model', disable=not args.progress)
  for name in bar:
    bar.set_postfix_str(name)
    workdir, skipped = find_run(name, preset, args.reuse_root)
    source = 'reused'
    if workdir is None:
      own = os.path.join(workdir_root, name)
      reason = _run_matches(name, preset, own) if os.path.isdir(own) else \
          'no workdir'
      if reason is None and _budget_met(own, steps, args.seconds):
        workdir, source = own, 'reused'
      elif not args.train:
        missing[name] = '; '.join(skipped + [f'{own}: {reason}']) + \
            ' (--notrain)'
        continue
      else:
        try:
          train_run(name, preset, own, steps=steps, seconds=args.seconds,
                    seed=args.seed, data=args.data, data_seed=args.data_seed,
                    progress=args.progress)
        except Exception as e:  # pylint: disable=broad-except
          # One failed model must not lose hours of others' results.
          traceback.print_exc()
          missing[name] = f'training failed: {type(e).__name__}: {e}'
          continue
        workdir, source = own, 'trained'
    try:
      results[name] = study_result(name, preset, workdir, source, args)
    except Exception as e:  # pylint: disable=broad-except
      traceback.print_exc()
      missing[name] = f'{workdir}: evaluation failed: {type(e).__name__}: {e}'
  bar.close()

  data_dirs = sorted({r['data_dir'] for r in results.values()})
  off_budget = [f'{m} ({r.get("steps")} steps)' for m, r in results.items()
                if steps is not None and not args.seconds
                and r.get('steps') != steps]
  setup = {
      'command': shlex.join(['python', '-m', 'benchmarks.study', *argv]),
      'date': datetime.datetime.now().astimezone().isoformat(
          timespec='seconds'),
      'preset': preset, 'budget': budget, 'steps': steps,
      'seconds': args.seconds, 'truncation_margin': args.truncation_margin,
      'speed_batch': args.speed_batch, 'tie_fraction': args.tie_fraction,
      'machine': f'{platform.machine()}, {os.cpu_count()} CPUs, Python '
                 f'{platform.python_version()}, {_versions()}',
      'load_before': load_before,
      'load_after': ', '.join(f'{x:.1f}' for x in os.getloadavg()),
      'data_dirs': data_dirs,
      'data_warning': None if len(data_dirs) <= 1 else (
          'the runs were evaluated on different test sets: '
          + ', '.join(data_dirs)),
      'budget_warning': None if not off_budget else (
          f'reused runs not trained for the budget of {steps} steps: '
          + ', '.join(off_budget) + '; comparisons involving them are '
          'flagged below'),
  }
  study = {'setup': setup, 'models': models, 'results': results,
           'missing': missing}
  verdicts = [judge(c, results, args.tie_fraction) for c in PAPER_CLAIMS]
  study['claims'] = [{
      'key': v.claim.key, 'title': v.claim.title, 'status': v.status,
      'better': v.better, 'worse': v.worse, 'metric': v.claim.metric,
      'ours': list(v.ours) if v.ours else None, 'relative': v.relative,
      'paper': list(v.claim.paper) if v.claim.paper else None,
      'notes': v.notes} for v in verdicts]

  os.makedirs(args.out_dir, exist_ok=True)
  fileio.atomic_write_text(os.path.join(args.out_dir, JSON_FILE),
                     json.dumps(_jsonable(study), indent=1, sort_keys=False)
                     + '\n')
  write_chart(study, os.path.join(args.out_dir, CHART_FILE))
  fileio.atomic_write_text(os.path.join(args.out_dir, STUDY_FILE),
                     render_markdown(study, verdicts))
  return study


def _budget_met(workdir: str, steps: int | None,
                seconds: float | None) -> bool:
  metrics = fileio.read_json(os.path.join(workdir, METRICS_FILE))
  if seconds:
    return float(metrics.get('train_seconds') or 0.) >= 0.95 * seconds or (
        steps is not None and int(metrics.get('steps') or 0) >= steps)
  return steps is None or int(metrics.get('steps') or 0) >= steps


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
