"""What the study compares: its models (the registered ones and the
pseudo-models) and the papers' comparative claims, with their verdicts.

Each claim names the two models (or metrics) a paper compares and which it
favours; `judge` computes the verdict from the study's numbers ("held",
"did not hold", "inconclusive", "not tested"), never by hand. See
benchmarks/study.py for what the study runs.
"""
from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, Callable, Mapping

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
  """How a reused run's config differs from what `name` trains with now,
  leaving out the fields that name files of the training machine (as a
  bundled checkpoint does: trainers.publish_lib.portable_config)."""
  return publish_lib.differences_from_preset(
      config_lib.to_dict(run_config), type(run_config), preset_config)


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


@dataclasses.dataclass
class Verdict:
  claim: Claim
  status: str                 # held | did not hold | inconclusive | not tested
  better: str | None
  worse: str | None
  ours: tuple[float, float] | None
  relative: float | None      # (worse - better) / worse, for lower-is-better
  notes: list[str]


def judge(claim: Claim, results: Mapping[str, Mapping[str, Any]],
          tie_fraction: float = 0.02) -> Verdict:
  """Whether `claim` held on `results` (model -> result dict)."""
  def pick(candidates):
    for name in candidates:
      if name in results and _finite(get_value(results[name], claim.metric)):
        return name
    return None

  better, worse = pick(claim.better), pick(claim.worse)
  notes = []
  if better is None or worse is None:
    missing = [c[0] if len(c) == 1 else ' or '.join(c)
               for c, m in ((claim.better, better), (claim.worse, worse))
               if m is None]
    return Verdict(claim, 'not tested', better, worse, None, None,
                   [f'no finished run with {LABELS.get(claim.metric, claim.metric)}'
                    f' for {"; ".join(missing)}'])
  b = get_value(results[better], claim.metric)
  w = get_value(results[worse], claim.metric)
  relative = (w - b) / abs(w) if w else 0.
  if relative > tie_fraction:
    status = 'held'
  elif relative < -tie_fraction:
    status = 'did not hold'
  else:
    status = 'inconclusive'
    notes.append(f'the difference is within {100 * tie_fraction:.0f} % '
                 '(--tie_fraction)')
  if better != claim.better[0]:
    notes.append(f'{claim.better[0]} has no run; {better} stands in for it')
  steps = (results[better].get('steps'), results[worse].get('steps'))
  if steps[0] != steps[1]:
    notes.append(f'unequal training budgets: {better} {steps[0]} steps, '
                 f'{worse} {steps[1]} steps')
  return Verdict(claim, status, better, worse, (b, w), relative, notes)
