"""Which runs count for the study: a model's finished run for a seed and
budget (a run directory, a published checkpoint, or the record the study
kept of it), checked against the model, preset, seed, budget and the config
the model trains with now, and why the others were passed over.
"""
from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

from benchmarks import study_records
from benchmarks.study_claims import PSEUDO_MODELS
from benchmarks.study_claims import base_model
from benchmarks.study_claims import model_overrides
from benchmarks.study_claims import preset_changes
from benchmarks.study_report import portable_text
from benchmarks.study_report import shown_path
from zoo import fileio
from zoo import manifest as manifest_lib
from zoo import registry
from zoo.manifest import METRICS_FILE
from zoo.manifest import RUN_CONFIG_FILE

SEED_DIR = 'seed{seed}'  # a model's run for one seed: ROOT/<model>/seed<N>


def seed_workdir(root: str, name: str, seed: int) -> str:
  """Where the study trains `name` with `seed` under `root`."""
  return os.path.join(root, name, SEED_DIR.format(seed=seed))


def _read_json(path: str) -> dict:
  return fileio.read_json(path) if os.path.exists(path) else {}


# A published checkpoint's manifest fields that stand for a run's config.json.
_MANIFEST_RUN_FIELDS = ('model', 'preset', 'seed', 'config', 'data',
                        'precision', 'command')


def run_records(workdir: str) -> tuple[dict, dict]:
  """(metrics, run config) of a run: its metrics.json and config.json. A
  published checkpoint (a manifest.json with the run's metrics, and no
  metrics.json or config.json beside it, as trainers.publish bundles under
  zoo/checkpoints/<model>) is a finished run too: the manifest's metrics and
  its model, preset, seed, config and data stand for the two files."""
  metrics = _read_json(os.path.join(workdir, METRICS_FILE))
  run_config = _read_json(os.path.join(workdir, RUN_CONFIG_FILE))
  if metrics or run_config:
    return metrics, run_config
  manifest = manifest_lib.read_manifest(workdir) or {}
  if not manifest.get('metrics'):
    return {}, {}
  return (dict(manifest['metrics']),
          {k: manifest[k] for k in _MANIFEST_RUN_FIELDS if k in manifest})


def recorded_seed(workdir: str) -> int | None:
  """The training seed a run recorded (its config.json, else its
  manifest.json); None if neither says."""
  for record in (_read_json(os.path.join(workdir, RUN_CONFIG_FILE)),
                 manifest_lib.read_manifest(workdir) or {}):
    if record.get('seed') is not None:
      return int(record['seed'])
  return None


def run_mismatch(name: str, preset: str, seed: int, workdir: str
                 ) -> str | None:
  """None if `workdir` holds a run (finished or not) of study model `name`
  at `preset` with `seed`, or nothing; else why not."""
  metrics, run_config = run_records(workdir)
  if not metrics and not run_config:
    return None  # nothing trained there yet
  return records_mismatch(name, preset, seed, metrics, run_config,
                          recorded_seed(workdir))


def records_mismatch(name: str, preset: str, seed: int,
                     metrics: Mapping[str, Any], run_config: Mapping[str, Any],
                     have_seed: int | None) -> str | None:
  """None if a run's metrics.json and config.json (`have_seed`: the seed
  it recorded) are those of study model `name` at `preset` with `seed`
  and the config it trains with now; else why not."""
  base = base_model(name)
  for record in (metrics, run_config):
    if record.get('model') not in (None, base):
      return f'it is a run of {record.get("model")!r}'
    if record.get('preset') not in (None, preset):
      return f'it used preset {record.get("preset")!r}'
  if have_seed is None:
    return 'it records no training seed'
  if have_seed != seed:
    return f'it was trained with seed {have_seed}'
  wanted = model_overrides(name, preset)
  config = run_config.get('config') or {}
  if wanted:
    for key, value in wanted.items():
      have: Any = config
      for part in key.split('.'):
        have = have.get(part) if isinstance(have, dict) else None
      if have is None or (list(have) if isinstance(have, (list, tuple))
                          else have) != (list(value) if isinstance(
                              value, (list, tuple)) else value):
        return f'its config has {key}={have!r}, not {value!r}'
  elif config:
    # A registered model's run must not be one of its ablations.
    for pseudo in PSEUDO_MODELS.values():
      if pseudo.base != name:
        continue
      ablation = pseudo.overrides(registry.get(name).config(preset))
      if all(config.get(k) == (list(v) if isinstance(v, tuple) else v)
             for k, v in ablation.items() if '.' not in k):
        return f'its config is that of {pseudo.name}'
  if config:
    changed = preset_changes(name, preset, config)
    if changed:
      return ('its config differs from the current preset: '
              + '; '.join(changed))
  return None


def budget_mismatch(metrics: Mapping[str, Any], steps: int | None,
                    seconds: float | None) -> str | None:
  """None if a finished run's metrics.json meets the budget: exactly
  `steps` training steps, or (with `seconds`) at least 95 % of `seconds` of
  training or `steps` steps; else why not."""
  have = metrics.get('steps')
  if seconds:
    if float(metrics.get('train_seconds') or 0.) >= 0.95 * seconds or (
        steps is not None and int(have or 0) >= steps):
      return None
    return (f'it trained {float(metrics.get("train_seconds") or 0.):.0f} s, '
            f'not {seconds:g} s')
  if steps is None or have == steps:
    return None
  return f'it was trained for {have} steps, not {steps}'


def finished_mismatch(name: str, preset: str, seed: int, workdir: str,
                      steps: int | None, seconds: float | None) -> str | None:
  """None if `workdir` is a finished run (metrics.json) of `name` at
  `preset` with `seed` for the budget; else why not."""
  metrics, _ = run_records(workdir)
  if not metrics:
    return f'no {METRICS_FILE}'
  return run_mismatch(name, preset, seed, workdir) or budget_mismatch(
      metrics, steps, seconds)


def find_run(name: str, preset: str, seed: int, reuse_roots: Sequence[str],
             steps: int | None = None, seconds: float | None = None
             ) -> tuple[str | None, list[str]]:
  """A finished workdir of `name` with `seed` for the budget under the
  reuse roots (ROOT/<model>/seed<N> or ROOT/<model>_<preset>/seed<N>; for
  seed 0 also the single-seed layout ROOT/<model> and ROOT/<model>_<preset>
  when the run recorded seed 0), and why others were passed over."""
  skipped = []
  for root in reuse_roots:
    candidates = [seed_workdir(root, sub, seed)
                  for sub in (name, f'{name}_{preset}')]
    if seed == 0:
      candidates += [os.path.join(root, sub)
                     for sub in (name, f'{name}_{preset}')]
    for workdir in candidates:
      if not any(run_records(workdir)):
        continue  # not a run (e.g. the seeds' parent directory)
      reason = finished_mismatch(name, preset, seed, workdir, steps, seconds)
      if reason is None:
        return workdir, skipped
      skipped.append(f'{shown_path(workdir)}: {reason}')
  return None, skipped


def find_record(name: str, preset: str, seed: int, results_dir: str | None,
                steps: int | None = None, seconds: float | None = None
                ) -> tuple[dict[str, Any] | None, str | None]:
  """(study.json entry, None) of the record of `name` with `seed` under
  `results_dir` when it matches the model, preset, seed, budget and the
  config the model trains with now; else (None, why a record there was
  not used, or None when there is none)."""
  if not results_dir:
    return None, None
  path = study_records.record_path(results_dir, preset, steps, seconds, name,
                                   seed)
  shown = shown_path(path)
  try:
    record = study_records.read_record(path)
  except ValueError as e:
    return None, portable_text(str(e))
  if record is None:
    return None, None
  metrics, run_config = record['metrics'], record['run_config']
  have_seed = run_config.get('seed')
  reason = records_mismatch(
      name, preset, seed, metrics, run_config,
      None if have_seed is None else int(have_seed)) or budget_mismatch(
          metrics, steps, seconds)
  if reason is not None:
    return None, f'{shown}: {reason}'
  result = dict(record['result'])
  result.update({'source': 'recorded', 'record': shown,
                 'evaluated': record.get('evaluated') or {}})
  return result, None
