"""The study: every zoo model at one preset and one training budget on the
embedded data, evaluated side by side, and the papers' comparative claims
checked against those numbers. Writes STUDY.md, study.json and study.png.

What it does, per model (every registered model plus the study-only
pseudo-models below, or those named by --models):
1. finds a finished run (a workdir with metrics.json) under --reuse_root
   (DIR/<model> or DIR/<model>_<preset>) or --workdir_root, or trains one
   into --workdir_root/<model> with trainers.train_lib.train for the budget:
   --steps (default: the c2f_volumetric preset's train.steps, 2500 at `cpu`)
   or --seconds of training after the first (tracing) step (stopping at
   --steps, else at the model's own preset steps, if that comes first);
2. loads the run's weights and evaluates the test split again with this
   code (MPJPE, PA-MPJPE, PCK3D@150, AUC, per action, 2D error): a reused
   run may predate a change of decoding, so its own metrics.json figure is
   shown beside it ("at training"); the training speed comes from the
   run's metrics.json;
3. loads the run's weights and evaluates again on deliberately truncated
   crops: the same test split cropped with augment.box_margin =
   --truncation_margin (default 0.8, vs 1.2 normally), so limbs leave the
   crop. MPJPE on the joints outside the crop is computed for every model
   from its poses and the pipeline's `joint_in_crop` (models that report
   their own `mpjpe_truncated_mm` through extra_metrics keep it too);
4. measures inference speed: examples/s of `predict_poses` at batch
   --speed_batch (32) on the CPU, on real test crops, after warm-up.

Pseudo-models are registered models trained with config overrides, so a
paper's ablation can be run at the same budget:
- lifting_deep_nofusion: lifting_deep with fusion=false (a plain CPM whose
  final maps are lifted once), for Tome et al.'s fusion claim;
- volumetric_single: c2f_volumetric with one hourglass predicting the full
  volume, the volumetric row of Pavlakos et al.'s Table 1 (one hourglass, as
  the coordinate_regression baseline).

Then, for each claim this data can test, STUDY.md puts the paper's numbers
(from the papers' tables, quoted in
PAPER_CLAIMS) next to ours and says whether
the claim held here: "held" when the model the paper favours is better by
more than --tie_fraction (2 %) of the other's value, "did not hold" when it
is worse by more, "inconclusive" in between, "not tested" when a run is
missing. Verdicts are computed from the numbers, never written by hand. The
data are synthetic and the budgets small: only the direction of each
comparison is meaningful, not the absolute numbers.

Usage:
  python -m benchmarks.study [--preset=cpu] [--steps=N] [--seconds=S]
      [--models=all|NAME,...] [--workdir_root=runs/study_cpu]
      [--reuse_root=DIR]... [--no_train] [--out_dir=.]
      [--truncation_margin=0.8] [--speed_batch=32] [--seed=0] [--data_seed=0]

Cost: at the cpu preset each model trains for about 15-25 minutes on 2 idle
cores (8 models: 2-3 hours); with finished runs reused, the evaluations and
speed measurements take a few minutes. Tests use --preset=smoke.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import os
import platform
import shlex
import sys
import time
import traceback
from typing import Any, Callable, Mapping, Sequence


import numpy as np  # noqa: E402

from zoo import config as config_lib  # noqa: E402
from zoo import fileio  # noqa: E402
from zoo import metrics as metrics_lib  # noqa: E402
from zoo import registry  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STUDY_FILE = 'STUDY.md'
JSON_FILE = 'study.json'
CHART_FILE = 'study.png'
METRICS_FILE = 'metrics.json'   # == trainers.train_lib.METRICS_FILE
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
  bundled checkpoint does: trainers.publish.portable_config)."""
  from trainers import publish
  return publish.differences_from_preset(
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


# ----------------------------------------------------------------------------
# Formatting
# ----------------------------------------------------------------------------

def fmt(value: Any, digits: int = 1, scale: float = 1.) -> str:
  if value is None:
    return 'n/a'
  try:
    value = float(value)
  except (TypeError, ValueError):
    return str(value)
  if not math.isfinite(value):
    return 'n/a'
  return f'{value * scale:.{digits}f}'


def _metric_text(value: float, key: str) -> str:
  unit = UNITS.get(key, '')
  return f'{fmt(value, DIGITS.get(key, 1))} {unit}'.strip()


def claim_line(v: Verdict) -> str:
  """One Markdown paragraph: verdict, our numbers, the paper's."""
  c = v.claim
  label = LABELS.get(c.metric, c.metric)
  head = f'**{v.status.upper()}** — {c.title} ({c.source}).'
  if v.ours is None:
    ours = 'Ours: ' + '; '.join(v.notes) + '.'
    return f'{head} {ours} Paper: {c.paper_text}.'
  b, w = v.ours
  ours = (f'Ours ({label}, lower is better): {v.better} '
          f'{_metric_text(b, c.metric)} vs {v.worse} '
          f'{_metric_text(w, c.metric)} '
          f'({fmt(100 * abs(v.relative))} % '
          f'{"better" if v.relative >= 0 else "worse"} for {v.better}).')
  paper = f'Paper: {c.paper_text}'
  if c.paper is not None:
    pb, pw = c.paper
    paper += f' ({fmt(100 * (pw - pb) / pw)} % better)'
  paper += '.'
  notes = (' Notes: ' + '; '.join(v.notes) + '.') if v.notes else ''
  return f'{head} {ours} {paper}{notes}'


def also_lines(v: Verdict, results: Mapping[str, Mapping[str, Any]]
               ) -> list[str]:
  if v.ours is None:
    return []
  lines = []
  for key in v.claim.also:
    b = get_value(results[v.better], key)
    w = get_value(results[v.worse], key)
    direction = 'higher' if key in HIGHER_IS_BETTER else 'lower'
    lines.append(f'  - {LABELS.get(key, key)} ({direction} is better): '
                 f'{v.better} {_metric_text(b, key)}, {v.worse} '
                 f'{_metric_text(w, key)}')
  return lines


def _table(header: Sequence[str], rows: Sequence[Sequence[str]],
           numeric: bool = True) -> list[str]:
  """A Markdown table; columns after the first right-aligned if numeric."""
  out = ['| ' + ' | '.join(header) + ' |',
         '|' + '|'.join('---' if i == 0 or not numeric else '---:'
                        for i in range(len(header))) + '|']
  out += ['| ' + ' | '.join(str(c) for c in row) + ' |' for row in rows]
  return out


def render_markdown(study: Mapping[str, Any], verdicts: Sequence[Verdict]
                    ) -> str:
  results = study['results']
  models = [m for m in study['models'] if m in results]
  setup = study['setup']
  lines = ['# Study: the zoo\'s models at one budget on the embedded data', '']
  lines += [
      f'Generated by `{setup["command"]}` on {setup["date"]}. Preset '
      f'`{setup["preset"]}`, budget {setup["budget"]}. Data: the embedded '
      'synthetic dataset (not Human3.6M): the papers\' numbers are on '
      'Human3.6M with full-size networks and long training, ours on small '
      'synthetic renders with CPU presets, so compare the direction of each '
      'comparison, not the absolute values.', '']
  lines += [f'Machine: {setup["machine"]}. Load average before / after: '
            f'{setup["load_before"]} / {setup["load_after"]} (speeds measured '
            'while other work ran are contended).', '']
  for key in ('data_warning', 'budget_warning'):
    if setup.get(key):
      lines += [f'**Warning:** {setup[key]}.', '']
  if study.get('missing'):
    lines += ['**Missing:** ' + '; '.join(
        f'`{m}` ({" ".join(str(why).split())})'
        for m, why in study['missing'].items()) + '.', '']

  # Main table.
  lines += ['## Accuracy on the test split', '',
            'Evaluated by this study\'s code from each run\'s weights; '
            '"MPJPE at training" is what the run\'s own evaluation wrote '
            'when it finished (it differs where decoding changed since).', '']
  header = ['model', 'steps', 'MPJPE (mm)', 'PA-MPJPE (mm)', 'PCK3D@150 (%)',
            'AUC (%)', '2D error (px)', 'PCKh@0.5 (%)',
            'MPJPE at training (mm)', 'paper MPJPE, H36M (mm)']
  rows = []
  for m in models:
    r = results[m]
    rows.append([f'`{m}`', r.get('steps', 'n/a'), fmt(r.get('mpjpe_mm')),
                 fmt(r.get('pa_mpjpe_mm')), fmt(r.get('pck3d_150'), 1, 100),
                 fmt(r.get('auc'), 1, 100), fmt(r.get('mean_error_2d_px')),
                 fmt(r.get('pckh'), 1, 100), fmt(r.get('run_mpjpe_mm')),
                 PAPER_MPJPE.get(m, 'n/a')])
  baseline = next((results[m].get('mean_pose_baseline') for m in models
                   if isinstance(results[m].get('mean_pose_baseline'),
                                 Mapping)), None)
  if baseline:
    rows.append(['mean pose (baseline)', '-', fmt(baseline.get('mpjpe_mm')),
                 fmt(baseline.get('pa_mpjpe_mm')), 'n/a', 'n/a', 'n/a', 'n/a',
                 'n/a', 'n/a'])
  lines += _table(header, rows) + ['']
  lines += [f'![main table]({CHART_FILE})', '']

  # Per action.
  actions = sorted({a for m in models
                    for a in (results[m].get('per_action') or {})})
  lines += ['## MPJPE per action (mm)', '']
  if actions:
    rows = [[f'`{m}`'] + [fmt((results[m].get('per_action') or {}).get(a))
                          for a in actions] for m in models]
    lines += _table(['model'] + actions, rows) + ['']
  else:
    lines += ['No per-action results.', '']

  # Truncation.
  margin = setup['truncation_margin']
  lines += ['## Truncated crops', '',
            f'The test split cropped with box margin {margin} instead of the '
            'models\' own (1.2): the crop is smaller than the person, so '
            'joints leave it. "Outside" / "inside" are the joints whose true '
            '2D position lies outside / inside the crop; each error is the '
            'mean over crops of the per-crop mean over those joints.', '']
  header = ['model', 'MPJPE, full crops (mm)', 'MPJPE, truncated (mm)',
            'outside joints (mm)', 'inside joints (mm)', 'outside / inside',
            'joints outside (%)', 'model\'s own mpjpe_truncated_mm']
  rows = []
  for m in models:
    t = results[m].get('truncated') or {}
    rows.append([f'`{m}`', fmt(results[m].get('mpjpe_mm')),
                 fmt(t.get('mpjpe_mm')),
                 fmt(t.get('mpjpe_truncated_joints_mm')),
                 fmt(t.get('mpjpe_in_crop_joints_mm')),
                 fmt(t.get('outside_inside_ratio'), 2),
                 fmt(t.get('truncated_joint_fraction'), 1, 100),
                 fmt(t.get('mpjpe_truncated_mm'))])
  lines += _table(header, rows) + ['']

  # Speed.
  speed_batch = setup['speed_batch']
  lines += ['## Speed', '',
            'Training: from each run\'s metrics.json (steady state, first step '
            f'excluded). Inference: `predict_poses` at batch {speed_batch} on '
            'the CPU, real test crops, after warm-up.', '']
  header = ['model', 'batch', 'train examples/s', 'train steps/s',
            'train time (min)', 'inference examples/s', 'parameters']
  rows = []
  for m in models:
    r = results[m]
    eps = get_value(r, 'train_examples_per_second')
    batch = r.get('batch_size')
    rows.append([f'`{m}`', batch if batch else 'n/a', fmt(eps),
                 fmt(eps / batch, 2) if batch and _finite(eps) else 'n/a',
                 fmt(get_value(r, 'train_seconds') / 60.),
                 fmt(get_value(r, 'inference.examples_per_second')),
                 f'{r["parameters"]:,}' if r.get('parameters') else 'n/a'])
  lines += _table(header, rows) + ['']

  # Claims.
  lines += ['## The papers\' claims on this data', '',
            f'Verdicts are computed from the numbers above: "held" when the '
            'model the paper favours is better by more than '
            f'{100 * setup["tie_fraction"]:.0f} % of the other\'s value, '
            '"did not hold" when it is worse by more, "inconclusive" in '
            'between.', '']
  for v in verdicts:
    lines.append(f'- {claim_line(v)}')
    lines += also_lines(v, results)
  lines += ['']

  # Runs.
  lines += ['## Runs', '']
  header = ['model', 'trained as', 'source', 'workdir',
            'config unlike the current preset']
  rows = []
  for m in study['models']:
    r = results.get(m)
    if r is None:
      rows.append([f'`{m}`', '', 'missing', '(see above)', ''])
      continue
    trained_as = r.get('base_model', m)
    if r.get('overrides'):
      trained_as += ' ' + ', '.join(f'{k}={v}' for k, v in
                                     r['overrides'].items())
    rows.append([f'`{m}`', trained_as, r['source'], f'`{r["workdir"]}`',
                 '; '.join(r.get('config_differences') or []) or 'none'])
  lines += _table(header, rows, numeric=False) + ['']
  lines += ['A reused run keeps the config it trained with; where the preset '
            'changed since, the last column says how (the comparisons above '
            'are fair when the runs they compare share those changes).', '']
  lines += ['Descriptions of the study-only models: ' + ' '.join(
      f'`{p.name}`: {p.description}' for p in PSEUDO_MODELS.values()), '']
  return '\n'.join(lines)


def write_chart(study: Mapping[str, Any], path: str) -> None:
  """Bar charts of MPJPE, PA-MPJPE, PCK3D and AUC per model (PNG), with
  the mean-pose baseline as a dashed line where the runs measured it."""
  import matplotlib
  matplotlib.use('Agg')
  from matplotlib import pyplot as plt

  results = study['results']
  models = [m for m in study['models'] if m in results]
  panels = (('mpjpe_mm', 'MPJPE (mm, lower is better)', 1.),
            ('pa_mpjpe_mm', 'PA-MPJPE (mm, lower is better)', 1.),
            ('pck3d_150', 'PCK3D@150 mm (%, higher is better)', 100.),
            ('auc', 'AUC 0-150 mm (%, higher is better)', 100.))
  fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
  colors = plt.get_cmap('tab10')(np.arange(max(len(models), 1)) % 10)
  for ax, (key, title, scale) in zip(axes.ravel(), panels):
    values = [get_value(results[m], key) * scale for m in models]
    shown = [v if math.isfinite(v) else 0. for v in values]
    bars = ax.bar(range(len(models)), shown, color=colors[:len(models)])
    for bar, v in zip(bars, values):
      ax.annotate(fmt(v), (bar.get_x() + bar.get_width() / 2,
                           bar.get_height()), ha='center', va='bottom',
                  fontsize=8)
    baseline = next((r['mean_pose_baseline'].get(key) for r in (
        results[m] for m in models)
                     if isinstance(r.get('mean_pose_baseline'), Mapping)
                     and _finite(get_value(r['mean_pose_baseline'], key))),
                    None)
    if baseline is not None:
      ax.axhline(baseline * scale, color='grey', linestyle='--', linewidth=1,
                 label='mean-pose baseline')
      ax.legend(fontsize=8, loc='lower right')
    ax.set_title(title, fontsize=10)
    ax.set_xticks(range(len(models)))
    ax.set_xticklabels(models, rotation=30, ha='right', fontsize=8)
    ax.grid(axis='y', alpha=0.3)
  fig.suptitle(f'pose3d-zoo study: preset {study["setup"]["preset"]}, '
               f'{study["setup"]["budget"]}, embedded synthetic test split',
               fontsize=11)
  fig.tight_layout()
  try:
    with fileio.atomic_path(path, suffix='.png') as tmp:
      fig.savefig(tmp, dpi=110, format='png')
  finally:
    plt.close(fig)


# ----------------------------------------------------------------------------
# Runs: find, train, evaluate
# ----------------------------------------------------------------------------

def _read_json(path: str) -> dict:
  with open(path, encoding='utf-8') as f:
    return json.load(f)


def _run_matches(name: str, preset: str, workdir: str) -> str | None:
  """None if `workdir` is a finished run of `name` at `preset`, else why not."""
  path = os.path.join(workdir, METRICS_FILE)
  if not os.path.exists(path):
    return f'no {METRICS_FILE}'
  metrics = _read_json(path)
  base = base_model(name)
  if metrics.get('model') not in (None, base):
    return f'it is a run of {metrics.get("model")!r}'
  if metrics.get('preset') not in (None, preset):
    return f'it used preset {metrics.get("preset")!r}'
  config_path = os.path.join(workdir, 'config.json')
  wanted = model_overrides(name, preset)
  if wanted:
    config = (_read_json(config_path).get('config') or {}) if os.path.exists(
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
    config = _read_json(config_path).get('config') or {}
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
  import keras

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
  from trainers import train_lib
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
  from trainers import checkpoints
  from trainers import train_lib
  entry = registry.get(base_model(name))
  source = checkpoints.resolve(workdir)
  checkpoints.verify_sha256(source)
  config = checkpoints.config_for(entry, source)
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
  model = checkpoints.build_model(entry, config)
  checkpoints.load_weights(model, source, verify=False)
  return model, config, data_dir, trained


def evaluate_truncated(model, config, data_dir: str, *, margin: float,
                       flip_test: bool, progress: bool) -> dict[str, float]:
  """Test-split metrics on crops with box margin `margin`."""
  from trainers import evaluation
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
  import tensorflow as tf
  from trainers import evaluation
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
                 args: argparse.Namespace) -> dict[str, Any]:
  """Metrics, truncated-crop metrics and speeds of one finished run."""
  metrics = _read_json(os.path.join(workdir, METRICS_FILE))
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
  result['data_dir'] = os.path.abspath(data_dir)
  flip_test = bool(metrics.get('flip_test', config.flip_test))
  from trainers import evaluation
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
# Main
# ----------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog='python -m benchmarks.study',
      description='Train and evaluate every zoo model at one budget; write '
                  'STUDY.md with the papers\' claims checked.')
  parser.add_argument('--preset', default='cpu',
                      help='Preset of every model (default cpu).')
  parser.add_argument('--models', default='all',
                      help='all, or a comma-separated list of registered '
                           'models and pseudo-models '
                           f'({", ".join(PSEUDO_MODELS)}).')
  parser.add_argument('--steps', type=int, default=None,
                      help='Training steps of every model (default: the '
                           f'{BUDGET_MODEL} preset\'s train.steps).')
  parser.add_argument('--seconds', type=float, default=None,
                      help='Train every model for this many seconds instead '
                           '(stopping earlier at --steps if given, else at '
                           'the model\'s preset steps).')
  parser.add_argument('--workdir_root', default=None,
                      help='Where runs are trained (DIR/<model>; default '
                           'runs/study_<preset>). Finished runs there are '
                           'reused.')
  parser.add_argument('--reuse_root', action='append', default=[],
                      help='A directory of finished runs (DIR/<model> or '
                           'DIR/<model>_<preset> with metrics.json) to use '
                           'instead of training; may be repeated.')
  parser.add_argument('--no_train', action='store_true',
                      help='Never train: models without a finished run are '
                           'reported as missing.')
  parser.add_argument('--out_dir', default=REPO_ROOT,
                      help='Where STUDY.md, study.json and study.png go '
                           '(default: the repository root).')
  parser.add_argument('--data', default='synthetic',
                      help='Training data of new runs: synthetic (embedded) '
                           'or a directory of zoo TFRecords.')
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--data_seed', type=int, default=0)
  parser.add_argument('--truncation_margin', type=float, default=0.8,
                      help='Box margin of the truncated test crops (models '
                           'train and test at 1.2).')
  parser.add_argument('--speed_batch', type=int, default=32)
  parser.add_argument('--speed_seconds', type=float, default=5.,
                      help='Minimum timed seconds of the inference speed.')
  parser.add_argument('--speed_iters', type=int, default=5,
                      help='Minimum timed batches of the inference speed.')
  parser.add_argument('--tie_fraction', type=float, default=0.02,
                      help='Relative difference below which a claim is '
                           'inconclusive.')
  parser.add_argument('--progress', action=argparse.BooleanOptionalAction,
                      default=True, help='tqdm progress bars.')
  return parser


def run_study(args: argparse.Namespace, argv: Sequence[str] = ()
              ) -> dict[str, Any]:
  """Runs the study described by parsed `args`; returns study.json's dict."""
  import tqdm
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
      elif args.no_train:
        missing[name] = '; '.join(skipped + [f'{own}: {reason}']) + \
            ' (--no_train)'
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
  metrics = _read_json(os.path.join(workdir, METRICS_FILE))
  if seconds:
    return float(metrics.get('train_seconds') or 0.) >= 0.95 * seconds or (
        steps is not None and int(metrics.get('steps') or 0) >= steps)
  return steps is None or int(metrics.get('steps') or 0) >= steps


def _versions() -> str:
  try:
    import tensorflow as tf
    import keras
    return f'TensorFlow {tf.__version__}, Keras {keras.__version__}'
  except ImportError:  # pragma: no cover
    return 'TensorFlow not importable'


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


def main(argv: Sequence[str] | None = None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  args = build_parser().parse_args(argv)
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  try:
    study = run_study(args, argv)
  except ValueError as e:
    print(f'study.py: error: {e}', file=sys.stderr)
    return 2
  out = os.path.join(args.out_dir, STUDY_FILE)
  print(f'Wrote {out}, {JSON_FILE} and {CHART_FILE} '
        f'({len(study["results"])} models, {len(study["missing"])} missing).')
  for claim in study['claims']:
    print(f'  {claim["status"]:>13}: {claim["title"]}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
