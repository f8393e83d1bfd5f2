"""benchmarks/study.py (and study_claims, study_report, study_runner): the
report is produced and its verdicts follow from the numbers.

One smoke-preset study of two models (c2f_volumetric and metrabs, the
truncation pair) trains into a temporary directory and is then re-run
reusing those runs; the rest checks the claim logic, the truncation
statistics and the study-only models against independent computations.
"""
from __future__ import annotations

import json
import math
import os
import re

import numpy as np
import pytest

from benchmarks import study
from benchmarks import study_claims
from benchmarks import study_report
from benchmarks import study_runner
from zoo import metrics as metrics_lib

MODELS = ('c2f_volumetric', 'metrabs')
FAST = ['--preset=smoke', '--speed_seconds=0', '--speed_iters=1',
        '--speed_batch=4', '--noprogress']


@pytest.fixture(scope='module')
def smoke_study(tmp_path_factory):
  root = tmp_path_factory.mktemp('study')
  runs, out = root / 'runs', root / 'out'
  argv = FAST + [f'--models={",".join(MODELS)}', f'--workdir_root={runs}',
                 f'--out_dir={out}']
  assert study.main(argv) == 0
  return runs, out


def _status(better: float, worse: float, tie: float = 0.02) -> str:
  relative = (worse - better) / abs(worse)
  if relative > tie:
    return 'held'
  if relative < -tie:
    return 'did not hold'
  return 'inconclusive'


def test_report_chart_and_json_are_written(smoke_study):
  runs, out = smoke_study
  with open(out / 'study.png', 'rb') as f:
    assert f.read(8) == b'\x89PNG\r\n\x1a\n'
  data = json.loads((out / 'study.json').read_text())
  text = (out / 'STUDY.md').read_text()
  assert data['setup']['budget'] == '3 training steps per model'  # smoke
  for name in MODELS:
    result = data['results'][name]
    assert result['source'] == 'trained'
    assert result['steps'] == 3
    metrics = json.loads((runs / name / 'metrics.json').read_text())
    assert result['mpjpe_mm'] == pytest.approx(metrics['mpjpe_mm'])
    # Main table row: the run's own numbers, formatted.
    row = next(l for l in text.splitlines() if l.startswith(f'| `{name}` | 3 |'))
    assert f'| {metrics["mpjpe_mm"]:.1f} | {metrics["pa_mpjpe_mm"]:.1f} |' \
        in row
    assert f'| {100 * metrics["pck3d_150"]:.1f} | {100 * metrics["auc"]:.1f}' \
        in row
    # Per-action row, in the header's action order.
    header = next(l for l in text.splitlines()
                  if l.startswith('| model | ') and 'discussion' in l)
    actions = [c.strip() for c in header.strip('|').split('|')][1:]
    assert actions == sorted(metrics['per_action'])
    cells = [f'{metrics["per_action"][a]:.1f}' for a in actions]
    assert f'| `{name}` | ' + ' | '.join(cells) + ' |' in text
    # Truncated crops: the smaller box margin really truncates.
    truncated = result['truncated']
    assert truncated['box_margin'] == 0.8
    assert truncated['truncated_joint_fraction'] > 0.05
    assert math.isfinite(truncated['mpjpe_truncated_joints_mm'])
    # Speeds: training from metrics.json, inference measured.
    assert result['train_examples_per_second'] == pytest.approx(
        metrics['train_examples_per_second'])
    assert result['inference']['examples_per_second'] > 0
    assert result['inference']['batch'] == 4
    # Trained now at the preset: nothing differs from it.
    assert result['config_differences'] == []
  # The metrabs model reports its own truncation metric too.
  assert 'mpjpe_truncated_mm' in data['results']['metrabs']['truncated']
  assert '![main table](study.png)' in text


def test_claim_lines_follow_the_numbers(smoke_study):
  _, out = smoke_study
  data = json.loads((out / 'study.json').read_text())
  text = (out / 'STUDY.md').read_text()
  claims = {c['key']: c for c in data['claims']}
  # Truncation: recomputed from the per-model truncated-crop errors.
  t = {m: data['results'][m]['truncated'] for m in MODELS}
  ratio = {m: t[m]['mpjpe_truncated_joints_mm'] / t[m][
      'mpjpe_in_crop_joints_mm'] for m in MODELS}
  expected = _status(ratio['metrabs'], ratio['c2f_volumetric'])
  claim = claims['truncation_robustness']
  assert claim['status'] == expected
  assert claim['ours'] == pytest.approx([ratio['metrabs'],
                                         ratio['c2f_volumetric']])
  line = next(l for l in text.splitlines() if 'localise joints outside' in l)
  assert line.startswith(f'- **{expected.upper()}**')
  assert f'metrabs {ratio["metrabs"]:.2f} vs c2f_volumetric ' \
         f'{ratio["c2f_volumetric"]:.2f}' in line
  # The other claims need models this study did not run.
  for key in ('volumetric_vs_regression', 'c2f_vs_naive',
              'end_to_end_vs_decoupled', 'fusion_vs_none'):
    assert claims[key]['status'] == 'not tested'
  assert text.count('- **NOT TESTED**') == 4


def test_reuses_finished_runs_and_reports_missing(smoke_study, tmp_path):
  runs, _ = smoke_study
  weights = runs / 'metrabs' / 'model.weights.h5'
  mtime = os.stat(weights).st_mtime_ns
  out = tmp_path / 'reused'
  assert study.main(FAST + ['--models=metrabs,coordinate_regression',
                            f'--reuse_root={runs}', '--notrain',
                            f'--workdir_root={tmp_path / "none"}',
                            f'--out_dir={out}']) == 0
  data = json.loads((out / 'study.json').read_text())
  assert data['results']['metrabs']['source'] == 'reused'
  assert data['results']['metrabs']['workdir'] == str(runs / 'metrabs')
  assert os.stat(weights).st_mtime_ns == mtime  # not retrained
  assert 'coordinate_regression' in data['missing']
  assert not (tmp_path / 'none').exists()
  text = (out / 'STUDY.md').read_text()
  assert re.search(r'\| `coordinate_regression` \| +\| missing \|', text)


def _result(value, steps=100, key='mpjpe_mm'):
  out = {'steps': steps}
  node = out
  parts = key.split('.')
  for part in parts[:-1]:
    node = node.setdefault(part, {})
  node[parts[-1]] = value
  return out


def test_judge_verdicts():
  claim = next(c for c in study_claims.PAPER_CLAIMS if c.key == 'c2f_vs_naive')
  held = study_claims.judge(claim, {'c2f_volumetric': _result(80.),
                             'volumetric_stacked': _result(100.)})
  assert held.status == 'held'
  assert held.relative == pytest.approx(0.2)
  assert held.ours == (80., 100.)
  line = study_report.claim_line(held)
  assert line.startswith('**HELD**')
  assert 'c2f_volumetric 80.0 mm vs volumetric_stacked 100.0 mm' in line
  assert '20.0 % better for c2f_volumetric' in line
  # The paper's relative gain, computed from its numbers (69.8 vs 80.1).
  assert f'({100 * (80.1 - 69.8) / 80.1:.1f} % better)' in line
  worse = study_claims.judge(claim, {'c2f_volumetric': _result(100.),
                              'volumetric_stacked': _result(80.)})
  assert worse.status == 'did not hold'
  assert '25.0 % worse for c2f_volumetric' in study_report.claim_line(worse)
  tie = study_claims.judge(claim, {'c2f_volumetric': _result(99.),
                            'volumetric_stacked': _result(100.)})
  assert tie.status == 'inconclusive'
  assert study_claims.judge(claim, {'c2f_volumetric': _result(99.),
                             'volumetric_stacked': _result(100.)},
                     tie_fraction=0.005).status == 'held'
  missing = study_claims.judge(claim, {'c2f_volumetric': _result(80.)})
  assert missing.status == 'not tested'
  assert 'volumetric_stacked' in study_report.claim_line(missing)
  nan = study_claims.judge(claim, {'c2f_volumetric': _result(80.),
                            'volumetric_stacked': _result(float('nan'))})
  assert nan.status == 'not tested'
  unequal = study_claims.judge(claim, {'c2f_volumetric': _result(80., steps=10),
                                'volumetric_stacked': _result(100.)})
  assert any('unequal training budgets' in n for n in unequal.notes)


def test_judge_stand_in_and_nested_metric():
  claim = next(c for c in study_claims.PAPER_CLAIMS
               if c.key == 'volumetric_vs_regression')
  v = study_claims.judge(claim, {'volumetric_stacked': _result(90.),
                          'coordinate_regression': _result(95.)})
  assert v.better == 'volumetric_stacked' and v.status == 'held'
  assert any('stands in' in n for n in v.notes)
  claim = next(c for c in study_claims.PAPER_CLAIMS
               if c.key == 'truncation_robustness')
  key = 'truncated.outside_inside_ratio'
  v = study_claims.judge(claim, {'metrabs': _result(1.5, key=key),
                          'c2f_volumetric': _result(1.2, key=key)})
  assert v.status == 'did not hold'


def test_truncation_stats_against_direct_computation():
  rng = np.random.default_rng(0)
  n, j = 6, 17
  gt = rng.normal(0., 300., (n, j, 3))
  gt -= gt[:, :1]
  pred = gt + rng.normal(0., 50., (n, j, 3))
  pred -= pred[:, :1]
  in_crop = (rng.uniform(size=(n, j)) > 0.3).astype(np.float32)
  in_crop[0] = 1.  # a crop with no truncated joint
  valid_3d = np.ones((n, j), np.float32)
  valid_3d[1, 5] = 0.
  truth = {'has_3d': np.array([1, 1, 1, 1, 1, 0], np.float32),
           'joint_valid_3d': valid_3d, 'joint_valid_2d': np.ones((n, j)),
           'joint_in_crop': in_crop, 'joints3d_rel_mm': gt}
  out = study_runner.truncation_stats({'poses3d_rel_mm': pred}, truth)
  errors = np.linalg.norm(pred - gt, axis=-1)
  outside_means, inside_means, n_out, n_all = [], [], 0, 0
  for i in range(5):  # example 5 has no 3D label
    use = valid_3d[i] > 0
    out_mask, in_mask = use & (in_crop[i] == 0), use & (in_crop[i] > 0)
    if out_mask.any():
      outside_means.append(errors[i][out_mask].mean())
    inside_means.append(errors[i][in_mask].mean())
    n_out += out_mask.sum()
    n_all += use.sum()
  assert out['mpjpe_truncated_joints_mm'] == pytest.approx(
      np.mean(outside_means))
  assert out['mpjpe_in_crop_joints_mm'] == pytest.approx(
      np.mean(inside_means))
  assert out['outside_inside_ratio'] == pytest.approx(
      np.mean(outside_means) / np.mean(inside_means))
  assert out['truncated_joint_fraction'] == pytest.approx(n_out / n_all)
  assert out['truncated_example_fraction'] == pytest.approx(4 / 5)
  # The same per-crop means as zoo.metrics.mpjpe restricted to those joints.
  assert np.nanmean(metrics_lib.mpjpe(pred[:5], gt[:5], (in_crop[:5] == 0) &
                                      (valid_3d[:5] > 0))) == pytest.approx(
                                          np.mean(outside_means))


def test_pseudo_models_and_model_list():
  from zoo.c2f_volumetric import config as c2f_config
  nofusion = study_claims.model_config('lifting_deep_nofusion', 'smoke')
  assert nofusion.fusion is False
  single = study_claims.model_config('volumetric_single', 'smoke')
  base = study_claims.model_config('c2f_volumetric', 'smoke')
  assert single.num_stacks == 1
  assert tuple(single.depth_schedule) == (base.num_depth_bins,)
  c2f_config.validate(single, 'volumetric')
  names = study_claims.all_models()
  assert {'c2f_volumetric', 'metrabs', 'lifting_deep_nofusion',
          'volumetric_single'} <= set(names)
  assert study_claims.parse_models('metrabs, lifting_deep_nofusion') == [
      'metrabs', 'lifting_deep_nofusion']
  with pytest.raises(ValueError, match='valid choices'):
    study_claims.parse_models('nope')
  assert study.main(FAST + ['--models=nope']) == 2


def test_find_run_checks_model_preset_and_ablation(tmp_path):
  def make(sub, model, preset, config=None):
    workdir = tmp_path / sub
    workdir.mkdir()
    (workdir / 'metrics.json').write_text(json.dumps(
        {'model': model, 'preset': preset}))
    (workdir / 'config.json').write_text(json.dumps(
        {'model': model, 'config': config or {}}))
    return str(workdir)

  make('lifting_deep_smoke', 'lifting_deep', 'smoke', {'fusion': False})
  # The registered model's run must not be its ablation ...
  found, skipped = study_runner.find_run('lifting_deep', 'smoke', [str(tmp_path)])
  assert found is None and 'lifting_deep_nofusion' in skipped[0]
  # ... which is what the pseudo-model looks for.
  make('lifting_deep_nofusion', 'lifting_deep', 'smoke', {'fusion': False})
  found, _ = study_runner.find_run('lifting_deep_nofusion', 'smoke', [str(tmp_path)])
  assert found == str(tmp_path / 'lifting_deep_nofusion')
  make('metrabs', 'metrabs', 'cpu')
  found, skipped = study_runner.find_run('metrabs', 'smoke', [str(tmp_path)])
  assert found is None and "preset 'cpu'" in skipped[0]
  make('coordinate_regression', 'c2f_volumetric', 'smoke')
  found, skipped = study_runner.find_run('coordinate_regression', 'smoke',
                                  [str(tmp_path)])
  assert found is None and "run of 'c2f_volumetric'" in skipped[0]


def test_config_differences_name_what_changed_since_a_run():
  from zoo import config as config_lib
  now = study_claims.model_config('c2f_volumetric', 'smoke')
  assert study_claims.config_differences(now, now) == []
  # A run from before a preset change (here: two augmentation fields and
  # the steps), written as the run's config.json and read back.
  old = config_lib.replace(now, **{'augment.hue_delta': 0.25,
                                   'augment.saturation_range': (0.5, 1.5),
                                   'train.steps': 7})
  old = config_lib.from_dict(type(now), json.loads(json.dumps(
      config_lib.to_dict(old))))
  diffs = study_claims.config_differences(old, now)
  assert diffs == [
      f'augment.hue_delta=0.25 (preset: {now.augment.hue_delta!r})',
      'augment.saturation_range=[0.5, 1.5] (preset: '
      f'{list(now.augment.saturation_range)!r})',
      f'train.steps=7 (preset: {now.train.steps!r})']
  # A path the run filled in (lifting_deep's prior) is not a difference.
  lifting = study_claims.model_config('lifting_deep', 'smoke')
  assert study_claims.config_differences(
      config_lib.replace(lifting, prior_path='/cache/prior.npz'),
      lifting) == []


def test_time_budget_callback_stops_training():
  callback = study_runner.time_budget_callback(0.)

  class FakeModel:
    stop_training = False

  callback.set_model(FakeModel())
  callback.on_train_batch_end(0)  # the first step (tracing) is not counted
  assert not callback.model.stop_training
  callback.on_train_batch_end(1)
  assert callback.model.stop_training
