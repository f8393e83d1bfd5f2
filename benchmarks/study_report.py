"""The study's report: STUDY.md (Markdown tables of the means ± sample
standard deviations over seeds, and the claims' verdicts) and study.png (a
chart of the main metrics' means with the standard deviations as error
bars).
"""
from __future__ import annotations

import math
import os
import shlex
from typing import Any, Mapping, Sequence

import numpy as np

from benchmarks.study_claims import CHART_FILE
from benchmarks.study_claims import DIGITS
from benchmarks.study_claims import HIGHER_IS_BETTER
from benchmarks.study_claims import LABELS
from benchmarks.study_claims import PAPER_MPJPE
from benchmarks.study_claims import PSEUDO_MODELS
from benchmarks.study_claims import SPREAD_FACTOR
from benchmarks.study_claims import UNITS
from benchmarks.study_claims import Verdict
from benchmarks.study_claims import _finite
from benchmarks.study_claims import get_value
from zoo import visualize


# ----------------------------------------------------------------------------
# Paths and command lines as the report shows them
# ----------------------------------------------------------------------------

def shown_path(path: str) -> str:
  """A path as the report shows it, naming no directory of the machine it
  ran on: relative to the working directory when under it, else under the
  home directory as `~/...`, else relative to the working directory."""
  path = os.path.abspath(path)
  cwd = os.getcwd()
  if path == cwd or path.startswith(cwd.rstrip(os.sep) + os.sep):
    return os.path.relpath(path, cwd)
  home = os.path.expanduser('~')
  if home not in ('', '/') and (path == home or path.startswith(home + os.sep)):
    return '~' + path[len(home):]
  return os.path.relpath(path, cwd)


def portable_text(text: str) -> str:
  """`text` (e.g. an error message) with the working and home directories
  written as shown_path writes them."""
  cwd = os.getcwd().rstrip(os.sep)
  home = os.path.expanduser('~')
  if cwd:
    text = text.replace(cwd + os.sep, '')
  if home not in ('', '/'):
    text = text.replace(home + os.sep, '~' + os.sep)
  return text


# Flags whose values are paths: the report's command line shows them
# relative to the working directory, so it runs from there.
PATH_FLAGS = ('workdir_root', 'results_dir', 'reuse_root', 'out_dir', 'data')


def command_line(argv: Sequence[str]) -> str:
  """The study's command line for the report: `argv` with absolute paths of
  PATH_FLAGS made relative to the working directory."""
  args, out = list(argv), []
  i = 0
  while i < len(args):
    arg = args[i]
    name = arg.lstrip('-').split('=', 1)[0]
    if arg.startswith('-') and name in PATH_FLAGS:
      if '=' in arg:
        value = arg.split('=', 1)[1]
        out.append(f'--{name}={_relative(value)}')
      elif i + 1 < len(args):  # --flag VALUE
        out += [f'--{name}', _relative(args[i + 1])]
        i += 1
      else:
        out.append(arg)
    else:
      out.append(arg)
    i += 1
  return shlex.join(['python', '-m', 'benchmarks.study', *out])


def _relative(value: str) -> str:
  return os.path.relpath(value) if os.path.isabs(value) else value


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


def fmt_spread(mean: Any, std: Any, digits: int = 1, scale: float = 1.
               ) -> str:
  """`mean ± std` (the std n/a with one seed); n/a without a mean."""
  text = fmt(mean, digits, scale)
  if text == 'n/a':
    return text
  return f'{text} ± {fmt(std, digits, scale)}'


def cell(entry: Mapping[str, Any], key: str, digits: int = 1,
         scale: float = 1.) -> str:
  """A model's (dotted) `key` over its seeds, as `mean ± std`."""
  return fmt_spread(get_value(entry.get('mean'), key),
                    get_value(entry.get('std'), key), digits, scale)


def _metric_text(mean: float, std: float | None, key: str) -> str:
  unit = UNITS.get(key, '')
  text = fmt_spread(mean, std, DIGITS.get(key, 1))
  return f'{text} {unit}'.strip()


def _value_text(value: float, key: str) -> str:
  return f'{fmt(value, DIGITS.get(key, 1))} {UNITS.get(key, "")}'.strip()


def _seeds_text(n: int) -> str:
  return f'{n} seed{"s" if n != 1 else ""}'


def claim_line(v: Verdict) -> str:
  """One Markdown paragraph: verdict, our numbers, the paper's."""
  c = v.claim
  label = LABELS.get(c.metric, c.metric)
  head = f'**{v.status.upper()}** — {c.title} ({c.source}).'
  if v.ours is None:
    ours = 'Ours: ' + '; '.join(v.notes) + '.'
    return f'{head} {ours} Paper: {c.paper_text}.'
  b, w = v.ours
  b_std, w_std = v.stds if v.stds else (None, None)
  b_n, w_n = v.seeds if v.seeds else (0, 0)
  ours = (f'Ours ({label}, lower is better, mean ± std over seeds): '
          f'{v.better} {_metric_text(b, b_std, c.metric)} '
          f'({_seeds_text(b_n)}) vs {v.worse} '
          f'{_metric_text(w, w_std, c.metric)} ({_seeds_text(w_n)}); the '
          f'means are {fmt(100 * abs(v.relative))} % '
          f'{"better" if v.relative >= 0 else "worse"} for {v.better}')
  if v.threshold is not None:
    ours += (f'; they differ by {_value_text(abs(b - w), c.metric)}, '
             f'{"more" if abs(b - w) > v.threshold else "not more"} than '
             f'{SPREAD_FACTOR:g} x the larger std '
             f'({_value_text(v.threshold, c.metric)})')
  ours += '.'
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
  def text(entry, key):
    return _metric_text(get_value(entry.get('mean'), key),
                        get_value(entry.get('std'), key), key)

  for key in v.claim.also:
    direction = 'higher' if key in HIGHER_IS_BETTER else 'lower'
    lines.append(f'  - {LABELS.get(key, key)} ({direction} is better): '
                 f'{v.better} {text(results[v.better], key)}, '
                 f'{v.worse} {text(results[v.worse], key)}')
  return lines


def _table(header: Sequence[str], rows: Sequence[Sequence[str]],
           numeric: bool = True) -> list[str]:
  """A Markdown table; columns after the first right-aligned if numeric."""
  out = ['| ' + ' | '.join(header) + ' |',
         '|' + '|'.join('---' if i == 0 or not numeric else '---:'
                        for i in range(len(header))) + '|']
  out += ['| ' + ' | '.join(str(c) for c in row) + ' |' for row in rows]
  return out


def _steps_text(entry: Mapping[str, Any]) -> str:
  steps = sorted({r.get('steps') for r in entry['runs']}, key=str)
  return '/'.join('n/a' if s is None else str(s) for s in steps)


def _spread_rule(setup: Mapping[str, Any]) -> str:
  return (f'a claim "held" when the mean of the model the paper favours is '
          f'better than the other\'s by more than '
          f'{setup.get("spread_factor", SPREAD_FACTOR):g} times the larger '
          'of their two seed standard deviations, and "did not hold" when '
          'it is worse by more than that; otherwise it is "inconclusive", '
          'and "inconclusive (one seed)" when either model has a single seed, '
          'whose spread is unknown')


def render_markdown(study: Mapping[str, Any], verdicts: Sequence[Verdict]
                    ) -> str:
  results = study['results']
  models = [m for m in study['models'] if m in results]
  setup = study['setup']
  seeds = setup.get('seeds') or []
  lines = ['# Study: the zoo\'s models at one budget on the embedded data', '']
  lines += [
      f'Generated by `{setup["command"]}` on {setup["date"]}. Preset '
      f'`{setup["preset"]}`, budget {setup["budget"]}, seeds '
      f'{", ".join(map(str, seeds))} (one run per model and seed). Data: the '
      'embedded synthetic dataset (not Human3.6M): the papers\' numbers are '
      'on Human3.6M with full-size networks and long training, ours on small '
      'synthetic renders with CPU presets, so compare the direction of each '
      'comparison, not the absolute values.', '']
  lines += [
      'Every figure is the mean ± the sample standard deviation (ddof=1) '
      'over the model\'s seeds (the `seeds` column; n/a with one seed); '
      'study.json holds each seed\'s values.', '']
  lines += [f'Machine: {setup["machine"]}. Load average before / after: '
            f'{setup["load_before"]} / {setup["load_after"]} (speeds measured '
            'while other work ran are contended).', '']
  recorded: dict[str, int] = {}
  for entry in results.values():
    for r in entry['runs']:
      if r.get('source') == 'recorded':
        where = (r.get('evaluated') or {}).get('machine') or 'unknown'
        recorded[where] = recorded.get(where, 0) + 1
  if recorded:
    lines += ['Runs taken from their records were evaluated, and their '
              'speeds measured, where the record says: ' + '; '.join(
                  f'{where} ({n} run{"s" if n > 1 else ""})'
                  for where, n in recorded.items()) + '.', '']
  if setup.get('data_warning'):
    lines += [f'**Warning:** {setup["data_warning"]}.', '']
  if study.get('missing'):
    lines += ['**Missing:** ' + '; '.join(
        f'`{m}` seed {seed} ({" ".join(str(why).split())})'
        for m, per_seed in study['missing'].items()
        for seed, why in per_seed.items()) + '.', '']

  # Main table.
  lines += ['## Accuracy on the test split', '',
            'Runs this study trained keep the figures their training '
            'evaluation wrote; reused runs are evaluated again by this '
            'study\'s code from their weights; recorded runs keep the '
            'figures of the evaluation that wrote their record. "MPJPE at '
            'training" is what each run\'s own evaluation wrote when it '
            'finished (it differs where decoding changed since).', '']
  header = ['model', 'seeds', 'steps', 'MPJPE (mm)', 'PA-MPJPE (mm)',
            'PCK3D@150 (%)', 'AUC (%)', '2D error (px)', 'PCKh@0.5 (%)',
            'MPJPE at training (mm)', 'paper MPJPE, H36M (mm)']
  rows = []
  for m in models:
    r = results[m]
    rows.append([f'`{m}`', len(r['runs']), _steps_text(r),
                 cell(r, 'mpjpe_mm'), cell(r, 'pa_mpjpe_mm'),
                 cell(r, 'pck3d_150', 1, 100), cell(r, 'auc', 1, 100),
                 cell(r, 'mean_error_2d_px'), cell(r, 'pckh', 1, 100),
                 cell(r, 'run_mpjpe_mm'), PAPER_MPJPE.get(m, 'n/a')])
  baseline = next((results[m]['mean'].get('mean_pose_baseline')
                   for m in models
                   if isinstance(results[m]['mean'].get('mean_pose_baseline'),
                                 Mapping)), None)
  if baseline:
    rows.append(['mean pose (baseline)', '-', '-',
                 fmt(baseline.get('mpjpe_mm')),
                 fmt(baseline.get('pa_mpjpe_mm')), 'n/a', 'n/a', 'n/a', 'n/a',
                 'n/a', 'n/a'])
  lines += _table(header, rows) + ['']
  lines += [f'![main table]({CHART_FILE})', '']

  # Per action.
  actions = sorted({a for m in models
                    for a in (results[m]['mean'].get('per_action') or {})})
  lines += ['## MPJPE per action (mm)', '']
  if actions:
    rows = [[f'`{m}`'] + [cell(results[m], f'per_action.{a}')
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
    r = results[m]
    rows.append([f'`{m}`', cell(r, 'mpjpe_mm'), cell(r, 'truncated.mpjpe_mm'),
                 cell(r, 'truncated.mpjpe_truncated_joints_mm'),
                 cell(r, 'truncated.mpjpe_in_crop_joints_mm'),
                 cell(r, 'truncated.outside_inside_ratio', 2),
                 cell(r, 'truncated.truncated_joint_fraction', 1, 100),
                 cell(r, 'truncated.mpjpe_truncated_mm')])
  lines += _table(header, rows) + ['']

  # Speed.
  speed_batch = setup['speed_batch']
  lines += ['## Speed', '',
            'Means over the seeds. Training: from each run\'s metrics.json '
            '(steady state, first step excluded; a resumed run\'s time is '
            'that of its last segment). Inference: '
            f'`predict_poses` at batch {speed_batch} on the CPU, real test '
            'crops, after warm-up.', '']
  header = ['model', 'batch', 'train examples/s', 'train steps/s',
            'train time (min)', 'inference examples/s', 'parameters']
  rows = []
  for m in models:
    mean = results[m]['mean']
    eps = get_value(mean, 'train_examples_per_second')
    batch = get_value(mean, 'batch_size')
    batch = int(batch) if _finite(batch) and batch > 0 else None
    parameters = get_value(mean, 'parameters')
    rows.append([f'`{m}`', batch if batch else 'n/a', fmt(eps),
                 fmt(eps / batch, 2) if batch and _finite(eps) else 'n/a',
                 fmt(get_value(mean, 'train_seconds') / 60.),
                 fmt(get_value(mean, 'inference.examples_per_second')),
                 f'{int(parameters):,}' if _finite(parameters) else 'n/a'])
  lines += _table(header, rows) + ['']

  # Claims.
  lines += ['## The papers\' claims on this data', '',
            f'Verdicts are computed from the per-seed numbers: '
            f'{_spread_rule(setup)}. The standard deviations are the sample '
            'ones (ddof=1) over each model\'s seeds.', '']
  for v in verdicts:
    lines.append(f'- {claim_line(v)}')
    lines += also_lines(v, results)
  lines += ['']

  # Runs.
  lines += ['## Runs', '']
  header = ['model', 'seed', 'trained as', 'source', 'workdir',
            'config unlike the current preset']
  rows = []
  for m in study['models']:
    entry = results.get(m)
    by_seed = {r['seed']: r for r in (entry or {}).get('runs', ())}
    missing = (study.get('missing') or {}).get(m, {})
    for seed in seeds:
      r = by_seed.get(seed)
      if r is None:
        rows.append([f'`{m}`', seed, '', 'missing' if str(seed) in missing
                     else 'n/a', '(see above)', ''])
        continue
      trained_as = r.get('base_model', m)
      if r.get('overrides'):
        trained_as += ' ' + ', '.join(f'{k}={v}' for k, v in
                                       r['overrides'].items())
      source = r['source']
      evaluated = r.get('evaluated') or {}
      when = ', '.join(filter(None, (evaluated.get('commit'),
                                     (evaluated.get('date') or '')[:10])))
      if source == 'recorded' and when:
        source += f' ({when})'
      rows.append([f'`{m}`', seed, trained_as, source,
                   f'`{r["workdir"]}`',
                   '; '.join(r.get('config_differences') or []) or 'none'])
  lines += _table(header, rows, numeric=False) + ['']
  lines += ['"trained": trained by the command above; "resumed": trained by '
            'it from an unfinished run\'s checkpoints; "reused": a finished '
            'run found for the same model, preset, seed, budget and config; '
            '"recorded": the figures the study kept for such a run when it '
            'evaluated it (its record under --results_dir, with the commit '
            'and date of that evaluation; the workdir is where it ran and '
            'need not exist here). '
            'The last column shows where a run\'s config differs from its '
            'preset in the fields a reused run may: the steps (set by the '
            'budget) and the checkpoint and log intervals.', '']
  lines += ['Descriptions of the study-only models: ' + ' '.join(
      f'`{p.name}`: {p.description}' for p in PSEUDO_MODELS.values()), '']
  return '\n'.join(lines)


def write_chart(study: Mapping[str, Any], path: str) -> None:
  """Bar charts of MPJPE, PA-MPJPE, PCK3D and AUC per model (PNG): the
  means over seeds, with the sample standard deviations as error bars
  (none with one seed), and the mean-pose baseline as a dashed line where
  the runs measured it."""
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
    values = [get_value(results[m]['mean'], key) * scale for m in models]
    stds = [get_value(results[m]['std'], key) * scale for m in models]
    shown = [v if math.isfinite(v) else 0. for v in values]
    errors = [s if math.isfinite(s) else 0. for s in stds]
    bars = ax.bar(range(len(models)), shown, color=colors[:len(models)],
                  yerr=errors, capsize=3, error_kw={'linewidth': 1})
    for bar, v, e in zip(bars, values, errors):
      ax.annotate(fmt(v), (bar.get_x() + bar.get_width() / 2,
                           bar.get_height() + e), ha='center', va='bottom',
                  fontsize=8)
    baseline = next((r['mean_pose_baseline'].get(key) for r in (
        results[m]['mean'] for m in models)
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
  seeds = study['setup'].get('seeds') or []
  fig.suptitle(f'pose3d-zoo study: preset {study["setup"]["preset"]}, '
               f'{study["setup"]["budget"]}, embedded synthetic test split\n'
               f'bars: mean; error bars: sample std (ddof=1) over '
               f'{len(seeds)} seed{"s" if len(seeds) != 1 else ""}',
               fontsize=11)
  fig.tight_layout()
  visualize.save_png(fig, path, dpi=110)
