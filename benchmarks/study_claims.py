"""What the study compares: its models (the registered ones and the
pseudo-models) and the papers' comparative claims, with their verdicts.

Each claim names the two models (or metrics) a paper compares and which it
favours; `judge` computes the verdict from the study's per-seed numbers
("held", "did not hold", "inconclusive", "inconclusive (one seed)", "not
tested"), never by hand, and `aggregate_runs` / `seed_stats` give the means
and sample standard deviations over seeds the report shows. See
benchmarks/study.py for what the study runs.
"""
from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from trainers import publish_lib
from zoo import config as config_lib
from zoo import registry


REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STUDY_FILE = 'STUDY.md'
JSON_FILE = 'study.json'
CHART_FILE = 'study.png'
BUDGET_MODEL = 'c2f_volumetric'  # its preset's steps are the default budget


# ----------------------------------------------------------------------------
# Models of the study
# ----------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class PseudoModel:
  """A registered model trained with config overrides (a paper ablation)."""
  name: str
  base: str
  overrides: Callable[[Any], dict[str, Any]]  # base preset config -> dotted
  description: str


PSEUDO_MODELS = {
    p.name: p for p in (
        PseudoModel(
            'lifting_deep_nofusion', 'lifting_deep',
            lambda config: {'fusion': False},
            'lifting_deep without the projected-pose fusion (a plain CPM '
            'whose final belief maps are lifted once).'),
        PseudoModel(
            'volumetric_single', 'c2f_volumetric',
            lambda config: {'num_stacks': 1,
                            'depth_schedule': (config.num_depth_bins,)},
            'One hourglass predicting the full-depth volume (Pavlakos '
            'Table 1\'s volumetric row).'),
    )}


def all_models() -> list[str]:
  """Registered models, then the pseudo-models whose base is registered."""
  names = registry.zoo_names()
  return names + [p for p, spec in PSEUDO_MODELS.items() if spec.base in names]


def base_model(name: str) -> str:
  return PSEUDO_MODELS[name].base if name in PSEUDO_MODELS else name


def model_overrides(name: str, preset: str) -> dict[str, Any]:
  """Config overrides that turn the base model into `name` (pseudo-models)."""
  if name not in PSEUDO_MODELS:
    return {}
  spec = PSEUDO_MODELS[name]
  return spec.overrides(registry.get(spec.base).config(preset))


def model_config(name: str, preset: str) -> Any:
  """The config `name` trains with at `preset` (before the budget)."""
  entry = registry.get(base_model(name))
  return config_lib.replace(entry.config(preset),
                            **model_overrides(name, preset))


def config_differences(run_config: Any, preset_config: Any) -> list[str]:
  """How a run's config differs from `preset_config` (what its study model
  trains with now, model_config), leaving out the fields that name files
  of the training machine (as a bundled checkpoint does:
  trainers.publish_lib.portable_config)."""
  return publish_lib.differences_from_preset(
      config_lib.to_dict(run_config), type(run_config), preset_config)


# Config fields a run may differ in from the preset and still be reused:
# the budget sets the steps; the others change no result.
REUSABLE_DIFFERENCES = ('train.steps', 'train.checkpoint_every',
                        'train.log_every')


def preset_changes(name: str, preset: str, config: Mapping[str, Any]
                   ) -> list[str]:
  """How a run's recorded config (config.json's 'config') differs from
  what study model `name` trains with at `preset` now, apart from
  REUSABLE_DIFFERENCES: a run from before a preset change measures the
  old preset, so it is not reused for the new one."""
  wanted = model_config(name, preset)
  try:
    return publish_lib.differences_from_preset(
        config, type(wanted), wanted, ignore=REUSABLE_DIFFERENCES)
  except (KeyError, TypeError) as e:
    return [f'it records a config the current code cannot read ({e})']


def parse_models(text: str) -> list[str]:
  valid = all_models()
  if text.strip() == 'all':
    return valid
  names = [n.strip() for n in text.split(',') if n.strip()]
  unknown = [n for n in names if n not in valid]
  if unknown or not names:
    raise ValueError(f'--models: unknown model(s) {unknown}; valid choices '
                     f'are all or a comma-separated list of {", ".join(valid)}')
  return names


# ----------------------------------------------------------------------------
# The papers' claims
# ----------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Claim:
  """One comparison a paper makes, and how to test it on our numbers.

  `better` / `worse`: candidate models, first present one used (the paper
  claims `better` beats `worse`). `metric`: a key of a model's result
  ('mpjpe_mm', 'mean_error_2d_px', 'truncated.mpjpe_truncated_joints_mm',
  ...), lower is better. `paper`: the paper's values for (better, worse) or
  None where the paper gives no comparable number; `paper_text` says what
  they are. `also`: more metrics shown next to the verdict.
  """
  key: str
  title: str
  source: str
  better: tuple[str, ...]
  worse: tuple[str, ...]
  metric: str
  paper: tuple[float, float] | None
  paper_text: str
  also: tuple[str, ...] = ()


PAPER_CLAIMS = (
    Claim('volumetric_vs_regression',
          'Volumetric heatmaps beat direct coordinate regression',
          'Pavlakos et al. 2017, Table 1 (one hourglass)',
          better=('volumetric_single', 'volumetric_stacked',
                  'c2f_volumetric'),
          worse=('coordinate_regression',), metric='mpjpe_mm',
          paper=(92.2, 112.4),
          paper_text='volume d=32 92.2 mm vs coordinate regression 112.4 mm '
                     '(d=64: 85.8 mm); H36M protocol #1 MPJPE',
          also=('pa_mpjpe_mm',)),
    Claim('c2f_vs_naive',
          'Coarse-to-fine depth supervision beats naive stacking',
          'Pavlakos et al. 2017, Table 2 (two hourglasses)',
          better=('c2f_volumetric',), worse=('volumetric_stacked',),
          metric='mpjpe_mm', paper=(69.8, 80.1),
          paper_text='two hourglasses: coarse-to-fine 69.8 mm vs naive 80.1 '
                     'mm (four: 64.8 vs 75.1); H36M protocol #1 MPJPE',
          also=('pa_mpjpe_mm',)),
    Claim('end_to_end_vs_decoupled',
          'End-to-end coarse-to-fine beats the decoupled 2D -> 3D network',
          'Pavlakos et al. 2017, Table 3',
          better=('c2f_volumetric',), worse=('decoupled_volumetric',),
          metric='mpjpe_mm', paper=(69.8, 78.1),
          paper_text='coarse-to-fine (two hourglasses) 69.8 mm vs decoupled '
                     '78.1 mm; H36M protocol #1 MPJPE',
          also=('pa_mpjpe_mm',)),
    Claim('fusion_vs_none',
          'Fusing projected 3D-pose belief maps improves the 2D landmarks',
          'Tome et al. 2017, Sec. 6 and Table 2 (bottom)',
          better=('lifting_deep',), worse=('lifting_deep_nofusion',),
          metric='mean_error_2d_px', paper=None,
          paper_text='the full model reduces the mean 2D landmark error of '
                     'its base CPM by 0.59 px on H36M (absolute values in '
                     'the paper\'s Table 2); 3D: 88.4 mm MPJPE',
          also=('mpjpe_mm', 'pckh')),
    Claim('truncation_robustness',
          'Metric-space heatmaps localise joints outside the crop; '
          'image-space 2.5D volumes cannot',
          'Sarandi et al. 2020 (MeTRAbs), abstract and method',
          better=('metrabs',), worse=('c2f_volumetric',),
          metric='truncated.outside_inside_ratio', paper=None,
          paper_text='qualitative: "2.5D methods ... cannot localize body '
                     'joints outside the image boundaries"; MeTRo heatmaps '
                     'are a metric cube around the person',
          also=('truncated.mpjpe_truncated_joints_mm',
                'truncated.mpjpe_in_crop_joints_mm', 'truncated.mpjpe_mm')),
)

# Paper MPJPE (mm, Human3.6M protocol #1) for the main table, as text.
PAPER_MPJPE = {
    'c2f_volumetric': '69.8 (2 stacks); 64.8 (4); 71.9 full table',
    'volumetric_stacked': '80.1 (2 stacks); 75.1 (4)',
    'coordinate_regression': '112.4',
    'decoupled_volumetric': '78.1',
    'volumetric_single': '92.2 (d=32); 85.8 (d=64)',
    'lifting_deep': '88.4 (PA ~70.7)',
    'lifting_deep_nofusion': 'n/a',
    'metrabs': '~49 (ResNet-50)',
}

UNITS = {'mpjpe_mm': 'mm', 'pa_mpjpe_mm': 'mm', 'mean_error_2d_px': 'px',
         'pckh': '', 'truncated.mpjpe_truncated_joints_mm': 'mm',
         'truncated.mpjpe_in_crop_joints_mm': 'mm', 'truncated.mpjpe_mm': 'mm',
         'truncated.outside_inside_ratio': ''}
DIGITS = {'truncated.outside_inside_ratio': 2, 'pckh': 3}
LABELS = {
    'mpjpe_mm': 'MPJPE', 'pa_mpjpe_mm': 'PA-MPJPE',
    'mean_error_2d_px': 'mean 2D error', 'pckh': 'PCKh@0.5',
    'truncated.mpjpe_truncated_joints_mm': 'MPJPE on joints outside the crop',
    'truncated.mpjpe_in_crop_joints_mm': 'MPJPE on joints inside the crop '
                                         '(truncated crops)',
    'truncated.mpjpe_mm': 'MPJPE on truncated crops',
    'truncated.outside_inside_ratio': 'error on joints outside the crop / '
                                      'error on joints inside it, truncated '
                                      'crops'}
HIGHER_IS_BETTER = ('pckh', 'pck3d_150', 'auc')


def get_value(result: Mapping[str, Any] | None, key: str) -> float:
  """A (dotted) numeric value of a model's result; NaN when absent."""
  value: Any = result
  for part in key.split('.'):
    if not isinstance(value, Mapping) or part not in value:
      return float('nan')
    value = value[part]
  try:
    return float(value)
  except (TypeError, ValueError):
    return float('nan')


def _finite(x: float) -> bool:
  return isinstance(x, (int, float)) and math.isfinite(x)


# ----------------------------------------------------------------------------
# Seeds: mean and spread
# ----------------------------------------------------------------------------

# A claim is decided only when the two models' means differ by more than
# SPREAD_FACTOR times the larger of their seed standard deviations.
SPREAD_FACTOR = 2.
# How the standard deviation over seeds is taken: the sample one.
STD_DDOF = 1


def seed_stats(values: Sequence[float]) -> tuple[float, float, int]:
  """(mean, sample standard deviation (ddof=1), count) of the finite values
  among `values` (one per seed); the std is NaN below two values, the mean
  NaN with none."""
  finite = np.asarray([v for v in values if _finite(v)], np.float64)
  if finite.size == 0:
    return float('nan'), float('nan'), 0
  std = float(finite.std(ddof=STD_DDOF)) if finite.size > STD_DDOF else \
      float('nan')
  return float(finite.mean()), std, int(finite.size)


def _is_number(value: Any) -> bool:
  return isinstance(value, (int, float, np.integer, np.floating)) and \
      not isinstance(value, (bool, np.bool_))


def aggregate_runs(runs: Sequence[Mapping[str, Any]]
                   ) -> tuple[dict[str, Any], dict[str, Any]]:
  """(mean, std) over the per-seed results `runs`: every numeric field, at
  any depth of nested dicts, becomes its seed_stats mean and std (NaN std
  with one seed); other fields are left out."""
  mean, std = {}, {}
  keys = list(dict.fromkeys(k for run in runs for k in run))
  for key in keys:
    values = [run[key] for run in runs if key in run]
    if values and all(isinstance(v, Mapping) for v in values):
      nested_mean, nested_std = aggregate_runs(values)
      if nested_mean:  # left out too when nothing in it is numeric
        mean[key], std[key] = nested_mean, nested_std
    elif values and all(_is_number(v) or v is None for v in values) and \
        any(_is_number(v) for v in values):
      m, s, _ = seed_stats([float(v) if v is not None else float('nan')
                            for v in values])
      mean[key], std[key] = m, s
  return mean, std


def seed_values(entry: Mapping[str, Any] | None, key: str) -> list[float]:
  """The finite per-seed values of (dotted) `key` of a model's study entry
  (its 'runs': one result per seed)."""
  if not entry:
    return []
  values = [get_value(run, key) for run in entry.get('runs') or ()]
  return [v for v in values if _finite(v)]


# ----------------------------------------------------------------------------
# Verdicts
# ----------------------------------------------------------------------------

HELD = 'held'
NOT_HELD = 'did not hold'
INCONCLUSIVE = 'inconclusive'
ONE_SEED = 'inconclusive (one seed)'
NOT_TESTED = 'not tested'
STATUSES = (HELD, NOT_HELD, INCONCLUSIVE, ONE_SEED, NOT_TESTED)


@dataclasses.dataclass
class Verdict:
  claim: Claim
  status: str                 # one of STATUSES
  better: str | None
  worse: str | None
  ours: tuple[float, float] | None   # the means over seeds
  relative: float | None      # (worse - better) / worse, for lower-is-better
  notes: list[str]
  stds: tuple[float, float] | None = None   # sample std over seeds (NaN: 1)
  seeds: tuple[int, int] | None = None      # seeds with a value, per model
  # SPREAD_FACTOR x the larger std: what the means' difference must exceed.
  threshold: float | None = None


def judge(claim: Claim, results: Mapping[str, Mapping[str, Any]]) -> Verdict:
  """Whether `claim` held on `results` (model -> study entry whose 'runs'
  are its per-seed results).

  "held" / "did not hold" when the means over seeds differ, in the paper's
  / the other direction, by more than SPREAD_FACTOR times the larger of the
  two models' seed standard deviations; "inconclusive" otherwise;
  "inconclusive (one seed)" when either model has fewer than two seeds
  (the spread is unknown); "not tested" when either has no value.
  """
  def pick(candidates):
    for name in candidates:
      if seed_values(results.get(name), claim.metric):
        return name
    return None

  label = LABELS.get(claim.metric, claim.metric)
  better, worse = pick(claim.better), pick(claim.worse)
  notes = []
  if better is None or worse is None:
    missing = [c[0] if len(c) == 1 else ' or '.join(c)
               for c, m in ((claim.better, better), (claim.worse, worse))
               if m is None]
    return Verdict(claim, NOT_TESTED, better, worse, None, None,
                   [f'no finished run with {label} for {"; ".join(missing)}'])
  b, b_std, b_n = seed_stats(seed_values(results[better], claim.metric))
  w, w_std, w_n = seed_stats(seed_values(results[worse], claim.metric))
  relative = (w - b) / abs(w) if w else 0.
  difference = w - b  # lower is better: > 0 favours `better`
  threshold = None
  if b_n < 2 or w_n < 2:
    status = ONE_SEED
    one = [m for m, n in ((better, b_n), (worse, w_n)) if n < 2]
    notes.append(f'{" and ".join(one)} {"has" if len(one) == 1 else "have"} '
                 'one seed, so the spread over seeds is unknown')
  else:
    threshold = SPREAD_FACTOR * max(b_std, w_std)
    if difference > threshold:
      status = HELD
    elif difference < -threshold:
      status = NOT_HELD
    else:
      status = INCONCLUSIVE
  if better != claim.better[0]:
    notes.append(f'{claim.better[0]} has no run; {better} stands in for it')
  steps = [sorted({run.get('steps') for run in results[m].get('runs') or ()},
                  key=str) for m in (better, worse)]
  if steps[0] != steps[1]:
    notes.append('unequal training budgets: '
                 f'{better} {"/".join(map(str, steps[0]))} steps, '
                 f'{worse} {"/".join(map(str, steps[1]))} steps')
  seeds = [sorted(run.get('seed') for run in results[m].get('runs') or ()
                  if _finite(get_value(run, claim.metric))
                  and run.get('seed') is not None) for m in (better, worse)]
  if seeds[0] != seeds[1]:
    notes.append(f'different seeds: {better} {seeds[0]}, {worse} {seeds[1]}')
  return Verdict(claim, status, better, worse, (b, w), relative, notes,
                 stds=(b_std, w_std), seeds=(b_n, w_n), threshold=threshold)
