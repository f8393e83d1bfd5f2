"""benchmarks/study.py (and study_claims, study_report, study_runner,
study_runs): the report is produced, its means and spreads follow from the
per-seed numbers and its verdicts from the spread rule, and finished runs
and run records are reused.

One smoke-preset study of two models (lifting_deep and its ablation, the
pseudo-model lifting_deep_nofusion) with two seeds trains into a
temporary directory;
further invocations find and reuse those runs, with a stand-in for their
evaluation (the trained runs' evaluation is checked on the first). The
verdicts are checked on hand-made per-seed numbers, through the whole
study with stand-ins for training and evaluation, and the seed
statistics, the run matching, the truncation statistics and the
study-only models against independent computations.
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil

import numpy as np
import pytest

from benchmarks import study
from benchmarks import study_claims
from benchmarks import study_report
from benchmarks import study_runner
from benchmarks import study_runs
from zoo import config as config_lib
from zoo import metrics as metrics_lib
from zoo import registry

# The cheapest pair to train at smoke, and a claim's pair (Tome et al.'s
# fusion); lifting_deep_nofusion is a pseudo-model (a registered model
# trained with config overrides).
MODELS = ('lifting_deep', 'lifting_deep_nofusion')
SEEDS = (0, 1)
# --results_dir= : no run records (the repository's own must not be touched).
FAST = ['--preset=smoke', '--speed_seconds=0', '--speed_iters=1',
        '--speed_batch=4', '--noprogress', '--results_dir=']


def _study_argv(root):
  return FAST + [f'--models={",".join(MODELS)}',
                 f'--seeds={",".join(map(str, SEEDS))}',
                 f'--workdir_root={root / "runs"}',
                 f'--results_dir={root / "records"}',
                 f'--out_dir={root / "out"}']


@pytest.fixture(scope='module')
def smoke_study(tmp_path_factory):
  """(root, trainer calls) of a real smoke study run from `root`."""
  root = tmp_path_factory.mktemp('study')
  calls = []
  train_run, study_result = study_runner.train_run, study_runner.study_result

  def counting_train_run(name, preset, workdir, **kwargs):
    calls.append((name, kwargs['seed'], workdir, kwargs['baseline']))
    return train_run(name, preset, workdir, **kwargs)

  def checked_study_result(*args, evaluate=True):
    assert not evaluate  # trained now: its training evaluated it
    return study_result(*args, evaluate=evaluate)

  with pytest.MonkeyPatch.context() as patch:
    patch.chdir(root)  # as a user runs it: from the repository root
    patch.setattr(study_runner, 'train_run', counting_train_run)
    patch.setattr(study_runner, 'study_result', checked_study_result)
    assert study.main(_study_argv(root)) == 0
  return root, calls


def _expected_status(better, worse):
  """The spread rule, written out independently: lower is better."""
  better, worse = np.asarray(better, float), np.asarray(worse, float)
  if better.size == 0 or worse.size == 0:
    return 'not tested'
  if better.size < 2 or worse.size < 2:
    return 'inconclusive (one seed)'
  difference = worse.mean() - better.mean()
  spread = 2 * max(np.std(better, ddof=1), np.std(worse, ddof=1))
  if difference > spread:
    return 'held'
  if difference < -spread:
    return 'did not hold'
  return 'inconclusive'


def _pm(values, digits=1, scale=1.):
  values = scale * np.asarray(values, float)
  std = f'{np.std(values, ddof=1):.{digits}f}' if values.size > 1 else 'n/a'
  return f'{values.mean():.{digits}f} ± {std}'


def test_report_chart_and_json_are_written(smoke_study):
  root, calls = smoke_study
  runs, out = root / 'runs', root / 'out'
  # Every model trained once per seed, each into its own workdir; the
  # mean-pose baseline (the same for every seed) measured at the first.
  assert sorted(calls) == sorted(
      (n, s, os.path.join(str(runs), n, f'seed{s}'), s == SEEDS[0])
      for n in MODELS for s in SEEDS)
  with open(out / 'study.png', 'rb') as f:
    assert f.read(8) == b'\x89PNG\r\n\x1a\n'
  data = json.loads((out / 'study.json').read_text())
  text = (out / 'STUDY.md').read_text()
  assert data['setup']['budget'] == '3 training steps per run'  # smoke
  assert data['setup']['seeds'] == list(SEEDS)
  for name in MODELS:
    entry = data['results'][name]
    assert entry['seeds'] == list(SEEDS)
    metrics = []
    for seed, result in zip(SEEDS, entry['runs']):
      workdir = runs / name / f'seed{seed}'
      assert result['seed'] == seed
      assert result['source'] == 'trained'
      assert result['steps'] == 3
      assert result['workdir'] == f'runs/{name}/seed{seed}'
      assert json.loads((workdir / 'config.json').read_text())['seed'] == seed
      metrics.append(json.loads((workdir / 'metrics.json').read_text()))
      assert result['mpjpe_mm'] == pytest.approx(metrics[-1]['mpjpe_mm'])
      # Truncated crops: the smaller box margin really truncates.
      truncated = result['truncated']
      assert truncated['box_margin'] == 0.8
      assert truncated['truncated_joint_fraction'] > 0.05
      assert math.isfinite(truncated['mpjpe_truncated_joints_mm'])
      assert result['train_examples_per_second'] == pytest.approx(
          metrics[-1]['train_examples_per_second'])
      assert result['inference']['examples_per_second'] > 0
      assert result['inference']['batch'] == 4
      # Trained now at the preset: nothing differs from it.
      assert result['config_differences'] == []
    # The seeds are different runs.
    assert metrics[0]['mpjpe_mm'] != metrics[1]['mpjpe_mm']
    mpjpe = [m['mpjpe_mm'] for m in metrics]
    assert entry['mean']['mpjpe_mm'] == pytest.approx(np.mean(mpjpe))
    assert entry['std']['mpjpe_mm'] == pytest.approx(np.std(mpjpe, ddof=1))
    # Main table row: mean ± sample std of the runs' own numbers.
    row = next(l for l in text.splitlines()
               if l.startswith(f'| `{name}` | 2 | 3 |'))
    pa = [m['pa_mpjpe_mm'] for m in metrics]
    assert f'| {_pm(mpjpe)} | {_pm(pa)} |' in row
    assert f'| {_pm([m["pck3d_150"] for m in metrics], 1, 100)} | ' \
           f'{_pm([m["auc"] for m in metrics], 1, 100)} |' in row
    # Per-action row, in the header's action order.
    header = next(l for l in text.splitlines()
                  if l.startswith('| model | ') and 'discussion' in l)
    actions = [c.strip() for c in header.strip('|').split('|')][1:]
    assert actions == sorted(metrics[0]['per_action'])
    cells = [_pm([m['per_action'][a] for m in metrics]) for a in actions]
    assert f'| `{name}` | ' + ' | '.join(cells) + ' |' in text
    # The mean-pose baseline: measured by the first seed's run only.
    assert 'mean_pose_baseline' not in metrics[1]
  baseline = json.loads((runs / MODELS[0] / 'seed0' / 'metrics.json')
                        .read_text())['mean_pose_baseline']
  assert (f'| mean pose (baseline) | - | - | {baseline["mpjpe_mm"]:.1f} | '
          f'{baseline["pa_mpjpe_mm"]:.1f} |') in text
  # The fusion claim, from the per-seed 2D errors by the spread rule.
  error_2d = {m: [r['mean_error_2d_px'] for r in data['results'][m]['runs']]
              for m in MODELS}
  expected = _expected_status(error_2d['lifting_deep'],
                              error_2d['lifting_deep_nofusion'])
  claims = {c['key']: c for c in data['claims']}
  assert claims['fusion_vs_none']['status'] == expected
  line = next(l for l in text.splitlines() if 'belief maps improves' in l)
  assert line.startswith(f'- **{expected.upper()}**')
  assert (f'lifting_deep {_pm(error_2d["lifting_deep"])} px (2 seeds) vs '
          f'lifting_deep_nofusion {_pm(error_2d["lifting_deep_nofusion"])} '
          'px (2 seeds)') in line
  assert [c['status'] for k, c in claims.items() if k != 'fusion_vs_none'
          ] == ['not tested'] * (len(claims) - 1)
  assert '![main table](study.png)' in text
  assert 'ddof=1' in text
  # A command a user can run from the repository root, and no path of the
  # machine anywhere in the report.
  assert (f'`python -m benchmarks.study {" ".join(FAST)} '
          f'--models={",".join(MODELS)} --seeds=0,1 --workdir_root=runs '
          '--results_dir=records --out_dir=out`') in text
  for document in (text, (out / 'study.json').read_text()):
    assert str(root) not in document
    assert os.path.expanduser('~') + os.sep not in document


def _stand_in_result(calls):
  """study_result without loading or evaluating: the run's metrics.json."""
  def study_result(name, preset, seed, workdir, source, args, *,
                   evaluate=True):
    calls.append((name, seed, workdir, source, evaluate))
    with open(os.path.join(workdir, 'metrics.json')) as f:
      result = json.load(f)
    result.update({'model': name, 'seed': seed, 'source': source,
                   'workdir': study_report.shown_path(workdir),
                   'overrides': {}, 'data_dir': 'data'})
    return result
  return study_result


def _no_training(*args, **kwargs):
  raise AssertionError(f'trained again: {args} {kwargs}')


def test_same_command_again_reuses_every_run(smoke_study, monkeypatch):
  root, _ = smoke_study
  runs = root / 'runs'
  weights = sorted(runs.glob('*/seed*/model.weights.h5'))
  assert len(weights) == len(MODELS) * len(SEEDS)
  mtimes = [os.stat(w).st_mtime_ns for w in weights]
  evaluated = []
  monkeypatch.chdir(root)
  monkeypatch.setattr(study_runner, 'train_run', _no_training)
  monkeypatch.setattr(study_runner, 'study_result',
                      _stand_in_result(evaluated))
  argv = _study_argv(root)
  argv[argv.index(f'--out_dir={root / "out"}')] = f'--out_dir={root / "again"}'
  # The runs themselves, not their records.
  argv[argv.index(f'--results_dir={root / "records"}')] = '--results_dir='
  assert study.main(argv) == 0
  assert sorted(evaluated) == sorted(
      (n, s, os.path.join(str(runs), n, f'seed{s}'), 'reused', True)
      for n in MODELS for s in SEEDS)
  assert [os.stat(w).st_mtime_ns for w in weights] == mtimes
  data = json.loads((root / 'again' / 'study.json').read_text())
  assert data['missing'] == {}


def test_reuse_root_and_missing_runs(smoke_study, tmp_path, monkeypatch):
  root, _ = smoke_study
  runs = root / 'runs'
  weights = runs / 'lifting_deep' / 'seed0' / 'model.weights.h5'
  mtime = os.stat(weights).st_mtime_ns
  evaluated = []
  monkeypatch.setattr(study_runner, 'train_run', _no_training)
  monkeypatch.setattr(study_runner, 'study_result',
                      _stand_in_result(evaluated))
  out = tmp_path / 'reused'
  assert study.main(FAST + ['--models=lifting_deep,coordinate_regression',
                            '--seeds=0', f'--reuse_root={runs}', '--notrain',
                            f'--workdir_root={tmp_path / "none"}',
                            f'--out_dir={out}']) == 0
  # A run found under a reuse root is evaluated again (it may predate a
  # change of decoding).
  assert evaluated == [('lifting_deep', 0, str(weights.parent), 'reused', True)]
  assert os.stat(weights).st_mtime_ns == mtime  # not retrained
  data = json.loads((out / 'study.json').read_text())
  (result,) = data['results']['lifting_deep']['runs']
  assert result['workdir'] == study_report.shown_path(weights.parent)
  assert list(data['missing']) == ['coordinate_regression']
  assert '--notrain' in data['missing']['coordinate_regression']['0']
  assert not (tmp_path / 'none').exists()
  text = (out / 'STUDY.md').read_text()
  assert re.search(r'\| `coordinate_regression` \| 0 \| +\| missing \|', text)
  # One seed: the spread is unknown, shown as n/a.
  assert f'| `lifting_deep` | 1 | 3 | {result["mpjpe_mm"]:.1f} ± n/a |' in text


def test_published_checkpoint_is_a_seed0_run(smoke_study, tmp_path,
                                             monkeypatch):
  """A bundle as trainers.publish writes it (manifest.json and weights, no
  metrics.json or config.json) under a reuse root is the seed-0 run: it is
  loaded and evaluated from the bundle, with the manifest's figures."""
  root, _ = smoke_study
  run = root / 'runs' / 'lifting_deep' / 'seed0'
  bundles = tmp_path / 'checkpoints'
  bundle = bundles / 'lifting_deep'
  os.makedirs(bundle)
  manifest = json.loads((run / 'manifest.json').read_text())
  shutil.copy(run / manifest['weights_file'], bundle)
  shutil.copy(run / 'manifest.json', bundle)
  monkeypatch.setattr(study_runner, 'train_run', _no_training)
  out = tmp_path / 'out'
  assert study.main(FAST + ['--models=lifting_deep', '--seeds=0,1',
                            '--notrain', f'--reuse_root={bundles}',
                            f'--workdir_root={tmp_path / "none"}',
                            f'--out_dir={out}']) == 0
  data = json.loads((out / 'study.json').read_text())
  (result,) = data['results']['lifting_deep']['runs']
  assert result['source'] == 'reused'
  assert result['workdir'] == study_report.shown_path(bundle)
  assert result['run_mpjpe_mm'] == manifest['metrics']['mpjpe_mm']
  # Evaluated again from the bundle's weights: the run's own figures.
  assert result['mpjpe_mm'] == pytest.approx(manifest['metrics']['mpjpe_mm'],
                                             rel=1e-4)
  # The bundle is seed 0 only.
  assert list(data['missing']['lifting_deep']) == ['1']
  # A bundle of another seed, or without metrics, is not a seed-0 run.
  manifest['seed'] = 2
  (bundle / 'manifest.json').write_text(json.dumps(manifest))
  found, skipped = study_runs.find_run('lifting_deep', 'smoke', 0,
                                         [str(bundles)], manifest['steps'])
  assert found is None and 'trained with seed 2' in skipped[0]
  del manifest['metrics']
  (bundle / 'manifest.json').write_text(json.dumps(manifest))
  assert study_runs.find_run('lifting_deep', 'smoke', 0, [str(bundles)],
                               manifest['steps']) == (None, [])


def test_records_stand_for_runs_whose_weights_are_gone(smoke_study, tmp_path,
                                                       monkeypatch):
  """Every run the study evaluated left a record (its figures, metrics.json
  and config.json); with the runs gone, the records alone give the same
  study, and a record that no longer matches is not used."""
  root, _ = smoke_study
  first = json.loads((root / 'out' / 'study.json').read_text())
  for name in MODELS:
    for result in first['results'][name]['runs']:
      seed = result['seed']
      record = json.loads(
          (root / 'records' / 'smoke' / 'steps3' / name /
           f'seed{seed}.json').read_text())
      workdir = root / 'runs' / name / f'seed{seed}'
      assert record['result'] == result
      assert record['metrics'] == json.loads(
          (workdir / 'metrics.json').read_text())
      assert record['run_config'] == json.loads(
          (workdir / 'config.json').read_text())
      assert record['evaluated']['machine'] == first['setup']['machine']
  records = tmp_path / 'records'
  shutil.copytree(root / 'records', records)

  def no_evaluation(*args, **kwargs):
    raise AssertionError(f'evaluated again: {args}')

  monkeypatch.setattr(study_runner, 'train_run', _no_training)
  monkeypatch.setattr(study_runner, 'study_result', no_evaluation)
  monkeypatch.chdir(tmp_path)
  out = tmp_path / 'out'
  argv = FAST + [f'--models={",".join(MODELS)}', '--seeds=0,1', '--notrain',
                 f'--workdir_root={tmp_path / "none"}',
                 f'--results_dir={records}', f'--out_dir={out}']
  assert study.main(argv) == 0
  data = json.loads((out / 'study.json').read_text())
  assert data['missing'] == {}
  for name in MODELS:
    again = data['results'][name]
    assert again['seeds'] == list(SEEDS)
    assert again['mean'] == first['results'][name]['mean']
    for result, before in zip(again['runs'], first['results'][name]['runs']):
      assert result['source'] == 'recorded'
      assert result['record'] == (f'records/smoke/steps3/{name}/'
                                  f'seed{result["seed"]}.json')
      assert result['mpjpe_mm'] == before['mpjpe_mm']
      assert result['truncated'] == before['truncated']
  assert [c['status'] for c in data['claims']] == [
      c['status'] for c in first['claims']]
  text = (out / 'STUDY.md').read_text()
  # Where the recorded runs were evaluated and timed.
  assert (f'where the record says: {first["setup"]["machine"]} (4 runs).'
          in text)
  assert re.search(r'\| `lifting_deep` \| 0 \| lifting_deep \| recorded '
                   r'\(([0-9a-f]{7,}(\+changes)?, )?\d{4}-\d\d-\d\d\) \| '
                   r'`runs/lifting_deep/seed0` \|', text)

  # Records that no longer match are passed over, saying why.
  def edit(name, seed, change):
    path = records / 'smoke' / 'steps3' / name / f'seed{seed}.json'
    record = json.loads(path.read_text())
    change(record)
    path.write_text(json.dumps(record))

  def other_preset(record):
    record['run_config']['config']['train']['batch_size'] += 1

  def other_budget(record):
    record['metrics']['steps'] = 9

  def other_seed(record):
    record['run_config']['seed'] = 5

  edit('lifting_deep', 0, other_preset)
  edit('lifting_deep', 1, other_budget)
  edit('lifting_deep_nofusion', 0, other_seed)
  (records / 'smoke' / 'steps3' / 'lifting_deep_nofusion' /
   'seed1.json').write_text('{"result": {}}')
  assert study.main(argv) == 0
  data = json.loads((out / 'study.json').read_text())
  assert data['results'] == {}
  missing = data['missing']
  assert ('records/smoke/steps3/lifting_deep/seed0.json: its config '
          'differs from the current preset: train.batch_size=') in missing[
              'lifting_deep']['0']
  assert ('records/smoke/steps3/lifting_deep/seed1.json: it was trained for '
          '9 steps, not 3') in missing['lifting_deep']['1']
  assert 'trained with seed 5' in missing['lifting_deep_nofusion']['0']
  assert ('seed1.json: not a study record: it has no version, metrics, '
          'run_config') in missing['lifting_deep_nofusion']['1']
  assert '--notrain' in missing['lifting_deep']['0']


def test_runs_of_another_seed_or_budget_are_not_reused(smoke_study,
                                                       tmp_path):
  root, _ = smoke_study
  reuse = tmp_path / 'reuse'
  # A seed-0 run filed under seed 1.
  shutil.copytree(root / 'runs' / 'lifting_deep' / 'seed0',
                  reuse / 'lifting_deep' / 'seed1')
  out = tmp_path / 'out'
  assert study.main(FAST + ['--models=lifting_deep', '--seeds=1', '--notrain',
                            f'--reuse_root={reuse}',
                            f'--workdir_root={tmp_path / "none"}',
                            f'--out_dir={out}']) == 0
  data = json.loads((out / 'study.json').read_text())
  assert data['results'] == {}
  assert 'trained with seed 0' in data['missing']['lifting_deep']['1']
  # The right seed, but another budget.
  assert study.main(FAST + ['--models=lifting_deep', '--seeds=0', '--notrain',
                            '--steps=4', f'--reuse_root={root / "runs"}',
                            f'--workdir_root={tmp_path / "none"}',
                            f'--out_dir={out}']) == 0
  data = json.loads((out / 'study.json').read_text())
  assert data['results'] == {}
  assert 'trained for 3 steps, not 4' in data['missing']['lifting_deep']['0']
  assert data['claims'][-1]['status'] == 'not tested'


# ----------------------------------------------------------------------------
# The decisions, with stand-ins for training and evaluation
# ----------------------------------------------------------------------------

def _fake_run(workdir, model, preset='smoke', seed=0, steps=3, config=None,
              finished=True, checkpoint=False, mpjpe=None):
  """A run of registered `model` as training records it: its preset's
  whole config with `config`'s overrides and `steps`."""
  os.makedirs(workdir, exist_ok=True)
  recorded = config_lib.replace(registry.get(model).config(preset),
                                **{**(config or {}), 'train.steps': steps})
  with open(os.path.join(workdir, 'config.json'), 'w') as f:
    json.dump({'model': model, 'preset': preset, 'seed': seed,
               'config': config_lib.to_dict(recorded)}, f)
  if finished:
    with open(os.path.join(workdir, 'metrics.json'), 'w') as f:
      mpjpe = 100. + seed if mpjpe is None else mpjpe
      json.dump({'model': model, 'preset': preset, 'steps': steps,
                 'mpjpe_mm': mpjpe, 'pa_mpjpe_mm': mpjpe / 2}, f)
  if checkpoint:  # what tf.train.latest_checkpoint finds
    directory = os.path.join(workdir, 'checkpoints')
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, 'checkpoint'), 'w') as f:
      f.write('model_checkpoint_path: "ckpt-2"\n')
    open(os.path.join(directory, 'ckpt-2.index'), 'w').close()
  return str(workdir)


def test_own_workdir_finished_resumed_foreign_or_over_budget(tmp_path,
                                                             monkeypatch):
  runs = tmp_path / 'runs'
  trained, evaluated = [], []

  def fake_train_run(name, preset, workdir, *, steps, seconds, seed, data,
                     data_seed, progress, baseline):
    trained.append((name, seed, workdir))
    _fake_run(workdir, name, preset, seed, steps)

  monkeypatch.setattr(study_runner, 'train_run', fake_train_run)
  monkeypatch.setattr(study_runner, 'study_result',
                      _stand_in_result(evaluated))
  finished = _fake_run(runs / 'metrabs' / 'seed0', 'metrabs')
  unfinished = _fake_run(runs / 'metrabs' / 'seed1', 'metrabs', seed=1,
                         finished=False, checkpoint=True)
  foreign = _fake_run(runs / 'metrabs' / 'seed2', 'metrabs', seed=0)
  over = _fake_run(runs / 'metrabs' / 'seed3', 'metrabs', seed=3, steps=9)
  stale = _fake_run(runs / 'metrabs' / 'seed5', 'metrabs', seed=5,
                    config={'train.batch_size': 3})
  argv = FAST + ['--models=metrabs', '--seeds=0,1,2,3,4,5',
                 f'--workdir_root={runs}', f'--out_dir={tmp_path / "out"}']
  assert study.main(argv) == 0
  assert trained == [('metrabs', 1, unfinished),
                     ('metrabs', 4, str(runs / 'metrabs' / 'seed4'))]
  sources = {seed: (source, again) for _, seed, _, source, again in evaluated}
  # Runs trained now keep their training's evaluation.
  assert sources == {0: ('reused', True), 1: ('resumed', False),
                     4: ('trained', False)}
  assert evaluated[0][2] == finished
  data = json.loads((tmp_path / 'out' / 'study.json').read_text())
  assert data['results']['metrabs']['seeds'] == [0, 1, 4]
  missing = data['missing']['metrabs']
  assert 'holds another run (it was trained with seed 0)' in missing['2']
  assert 'trained for 9 steps, not 3, more than the budget' in missing['3']
  # A run of a former preset is neither reused nor overwritten.
  assert ('holds another run (its config differs from the current preset: '
          'train.batch_size=3 (preset: ') in missing['5']
  for kept in (foreign, over, stale):
    assert os.path.exists(os.path.join(kept, 'metrics.json'))
  # The per-seed values and their mean and sample std, as numpy has them.
  values = [100., 101., 104.]
  entry = data['results']['metrabs']
  assert [r['mpjpe_mm'] for r in entry['runs']] == values
  assert entry['mean']['mpjpe_mm'] == pytest.approx(np.mean(values))
  assert entry['std']['mpjpe_mm'] == pytest.approx(np.std(values, ddof=1))
  # Again: everything that could be reused is; nothing trains.
  trained.clear()
  monkeypatch.setattr(study_runner, 'train_run', _no_training)
  assert study.main(argv + ['--notrain']) == 0


def test_a_record_that_cannot_be_written_keeps_the_run(tmp_path, monkeypatch,
                                                       capsys):
  """An evaluated run whose record fails to be written stays in the report,
  is not listed as missing, and the failure is named on stderr."""
  runs = tmp_path / 'runs'
  _fake_run(runs / 'metrabs' / 'seed0', 'metrabs')
  monkeypatch.setattr(study_runner, 'train_run', _no_training)
  monkeypatch.setattr(study_runner, 'study_result', _stand_in_result([]))

  def failing_write(*args, **kwargs):
    raise OSError('disk full')

  monkeypatch.setattr(study_runner.study_records, 'write_record',
                      failing_write)
  out = tmp_path / 'out'
  argv = FAST + ['--models=metrabs', '--seeds=0', '--notrain',
                 f'--workdir_root={runs}',
                 f'--results_dir={tmp_path / "records"}', f'--out_dir={out}']
  assert study.main(argv) == 0
  data = json.loads((out / 'study.json').read_text())
  assert data['results']['metrabs']['seeds'] == [0]
  assert data['missing'] == {}
  assert ('could not write the record '
          f'{study_report.shown_path(tmp_path / "records")}'
          '/smoke/steps3/metrabs/seed0.json: OSError: disk full'
          ) in capsys.readouterr().err


def test_verdicts_through_the_study(tmp_path, monkeypatch):
  runs = tmp_path / 'runs'
  mpjpe = {'c2f_volumetric': [80., 82., 81.],
           'volumetric_stacked': [90., 91., 89.],      # held
           'decoupled_volumetric': [80.5, 83., 79.],   # inconclusive
           'volumetric_single': [120., 121.],          # one seed of ...
           'coordinate_regression': [150.]}            # ... this one
  for name, values in mpjpe.items():
    config = {k: list(v) if isinstance(v, tuple) else v for k, v in
              study_claims.model_overrides(name, 'smoke').items()}
    for seed, value in enumerate(values):
      _fake_run(runs / name / f'seed{seed}', study_claims.base_model(name),
                seed=seed, config=config, mpjpe=value)
  monkeypatch.setattr(study_runner, 'train_run', _no_training)
  monkeypatch.setattr(study_runner, 'study_result', _stand_in_result([]))
  out = tmp_path / 'out'
  assert study.main(FAST + [f'--models={",".join(mpjpe)}', '--seeds=0,1,2',
                            '--notrain', f'--workdir_root={runs}',
                            f'--out_dir={out}']) == 0
  data = json.loads((out / 'study.json').read_text())
  text = (out / 'STUDY.md').read_text()
  claims = {c['key']: c for c in data['claims']}
  for key, better, worse in (
      ('c2f_vs_naive', 'c2f_volumetric', 'volumetric_stacked'),
      ('end_to_end_vs_decoupled', 'c2f_volumetric', 'decoupled_volumetric'),
      ('volumetric_vs_regression', 'volumetric_single',
       'coordinate_regression')):
    b, w = mpjpe[better], mpjpe[worse]
    claim = claims[key]
    expected = _expected_status(b, w)
    assert claim['status'] == expected
    assert (claim['better'], claim['worse']) == (better, worse)
    assert claim['ours'] == pytest.approx([np.mean(b), np.mean(w)])
    assert claim['seeds'] == [len(b), len(w)]
    line = next(l for l in text.splitlines()
                if l.startswith('- **') and claim['title'] in l)
    assert line.startswith(f'- **{expected.upper()}**')
    assert (f'{better} {_pm(b)} mm ({len(b)} seed{"s" * (len(b) > 1)}) vs '
            f'{worse} {_pm(w)} mm ({len(w)} seed{"s" * (len(w) > 1)})') in line
    # The also-shown metric, mean ± std over the same seeds.
    assert (f'  - PA-MPJPE (lower is better): {better} '
            f'{_pm(np.divide(b, 2))} mm, {worse} {_pm(np.divide(w, 2))} mm'
            ) in text.splitlines()
  assert [claims[k]['status'] for k in (
      'c2f_vs_naive', 'end_to_end_vs_decoupled',
      'volumetric_vs_regression')] == [
          'held', 'inconclusive', 'inconclusive (one seed)']
  assert claims['fusion_vs_none']['status'] == 'not tested'
  assert claims['truncation_robustness']['status'] == 'not tested'
  # The per-seed values in study.json, and the seeds that are missing.
  assert [r['mpjpe_mm'] for r in data['results']['volumetric_stacked'][
      'runs']] == mpjpe['volumetric_stacked']
  assert {m: sorted(seeds) for m, seeds in data['missing'].items()} == {
      'volumetric_single': ['2'], 'coordinate_regression': ['1', '2']}


def test_find_run_checks_model_preset_seed_budget_and_ablation(tmp_path):
  def find(name, seed=0, steps=3, preset='smoke'):
    return study_runs.find_run(name, preset, seed, [str(tmp_path)], steps)

  _fake_run(tmp_path / 'lifting_deep_smoke' / 'seed0', 'lifting_deep',
            config={'fusion': False})
  # The registered model's run must not be its ablation ...
  found, skipped = find('lifting_deep')
  assert found is None and 'lifting_deep_nofusion' in skipped[0]
  # ... which is what the pseudo-model looks for.
  ablation = _fake_run(tmp_path / 'lifting_deep_nofusion' / 'seed0',
                       'lifting_deep', config={'fusion': False})
  assert find('lifting_deep_nofusion')[0] == ablation
  _fake_run(tmp_path / 'metrabs' / 'seed0', 'metrabs', preset='cpu')
  found, skipped = find('metrabs')
  assert found is None and "preset 'cpu'" in skipped[0]
  _fake_run(tmp_path / 'coordinate_regression' / 'seed0', 'c2f_volumetric')
  found, skipped = find('coordinate_regression')
  assert found is None and "run of 'c2f_volumetric'" in skipped[0]
  # Seeds and budgets.
  seed1 = _fake_run(tmp_path / 'c2f_volumetric' / 'seed1', 'c2f_volumetric',
                    seed=1)
  assert find('c2f_volumetric', seed=1)[0] == seed1
  found, skipped = find('c2f_volumetric', seed=1, steps=4)
  assert found is None and 'trained for 3 steps, not 4' in skipped[0]
  _fake_run(tmp_path / 'c2f_volumetric' / 'seed2', 'c2f_volumetric', seed=1)
  found, skipped = find('c2f_volumetric', seed=2)
  assert found is None and 'trained with seed 1' in skipped[0]
  # The single-seed layout counts as seed 0 when it recorded seed 0 ...
  old = _fake_run(tmp_path / 'volumetric_stacked', 'volumetric_stacked')
  assert find('volumetric_stacked')[0] == old
  assert find('volumetric_stacked', seed=1)[0] is None
  # ... and not otherwise.
  _fake_run(tmp_path / 'decoupled_volumetric_smoke', 'decoupled_volumetric',
            seed=1)
  found, skipped = find('decoupled_volumetric')
  assert found is None and 'trained with seed 1' in skipped[0]
  assert find('decoupled_volumetric', seed=1)[0] is None
  # A run from before a preset change measures the old preset: not reused.
  # Fields that change no result (and the steps, which the budget checks)
  # may differ.
  hue = registry.get('metrabs').config('smoke').augment.hue_delta
  _fake_run(tmp_path / 'metrabs' / 'seed1', 'metrabs', seed=1,
            config={'augment.hue_delta': hue + 0.1})
  found, skipped = find('metrabs', seed=1)
  assert found is None and skipped == [
      f'{study_report.shown_path(str(tmp_path / "metrabs" / "seed1"))}: '
      'its config differs from the current preset: augment.hue_delta='
      f'{hue + 0.1!r} (preset: {hue!r})']
  logged = _fake_run(tmp_path / 'metrabs' / 'seed2', 'metrabs', seed=2,
                     config={'train.checkpoint_every': 1,
                             'train.log_every': 1})
  assert find('metrabs', seed=2)[0] == logged
  # A run that records no seed is not assumed to be seed 0.
  path = _fake_run(tmp_path / 'lifting_deep' / 'seed0', 'lifting_deep')
  os.remove(os.path.join(path, 'config.json'))
  found, skipped = find('lifting_deep')
  assert found is None and 'records no training seed' in skipped[0]
  # Seconds budgets: at least 95 % of the seconds.
  assert study_runs.budget_mismatch({'train_seconds': 9.6}, None, 10.) is None
  assert 'not 10 s' in study_runs.budget_mismatch({'train_seconds': 9.},
                                                    None, 10.)


def test_seeds_flag():
  assert study_runner.parse_seeds(['3', ' 1', '0']) == [3, 1, 0]
  for bad, message in ((['a'], 'not an integer'), (['-1'], '>= 0'),
                       (['1', '1'], 'twice'), ([], 'at least one')):
    with pytest.raises(ValueError, match=message):
      study_runner.parse_seeds(bad)
  assert study.main(FAST + ['--models=metrabs', '--seeds=0,x']) == 2


# ----------------------------------------------------------------------------
# Seed statistics and verdicts on hand-made numbers
# ----------------------------------------------------------------------------

def test_seed_statistics_against_numpy():
  rng = np.random.default_rng(3)
  runs = []
  for seed in range(4):
    runs.append({'seed': seed, 'steps': 100, 'mpjpe_mm': rng.normal(120, 5),
                 'flip_test': True, 'model': 'x',
                 'per_action': {'walk': rng.normal(100, 3),
                                'sit': rng.normal(140, 3)},
                 'truncated': {'outside_inside_ratio': rng.normal(2, .2)}})
  runs[2]['truncated']['outside_inside_ratio'] = float('nan')
  mean, std = study_claims.aggregate_runs(runs)
  mpjpe = [r['mpjpe_mm'] for r in runs]
  assert mean['mpjpe_mm'] == pytest.approx(np.mean(mpjpe))
  assert std['mpjpe_mm'] == pytest.approx(np.std(mpjpe, ddof=1))
  walk = [r['per_action']['walk'] for r in runs]
  assert mean['per_action']['walk'] == pytest.approx(np.mean(walk))
  assert std['per_action']['walk'] == pytest.approx(np.std(walk, ddof=1))
  ratios = [r['truncated']['outside_inside_ratio'] for r in runs]
  assert mean['truncated']['outside_inside_ratio'] == pytest.approx(
      np.nanmean(ratios))
  assert std['truncated']['outside_inside_ratio'] == pytest.approx(
      np.nanstd(ratios, ddof=1))
  assert mean['steps'] == 100 and std['steps'] == 0.
  assert 'flip_test' not in mean and 'model' not in mean
  # One seed: a mean, no spread.
  one_mean, one_std = study_claims.aggregate_runs(runs[:1])
  assert one_mean['mpjpe_mm'] == pytest.approx(mpjpe[0])
  assert math.isnan(one_std['mpjpe_mm'])
  assert study_report.cell({'mean': one_mean, 'std': one_std},
                           'mpjpe_mm') == f'{mpjpe[0]:.1f} ± n/a'
  assert study_report.cell({'mean': mean, 'std': std}, 'mpjpe_mm') == \
      _pm(mpjpe)
  assert study_report.cell({'mean': mean, 'std': std}, 'nope') == 'n/a'


def _entry(values, key='mpjpe_mm', steps=100, seeds=None):
  runs = []
  for seed, value in zip(seeds or range(len(values)), values):
    run = {'seed': seed, 'steps': steps}
    node = run
    parts = key.split('.')
    for part in parts[:-1]:
      node = node.setdefault(part, {})
    node[parts[-1]] = value
    runs.append(run)
  return {'runs': runs}


@pytest.mark.parametrize('better,worse', [
    ([80., 81., 79.], [100., 101., 99.]),        # held
    ([100., 102., 101.], [80., 79., 81.]),       # did not hold
    ([90., 95., 92.], [93., 97., 91.]),          # inconclusive
    ([90., 91.], [93., 92.]),                    # held: 2.0 > 2 x 0.71
    ([90., 92.], [93., 94.]),                    # inconclusive: 2.5 < 2.83
    ([80.], [100., 101.]),                       # one seed
    ([80., 81.], [100.]),                        # one seed
    ([80., float('nan')], [100., 101.]),         # one finite seed
])
def test_judge_follows_the_spread_rule(better, worse):
  claim = next(c for c in study_claims.PAPER_CLAIMS if c.key == 'c2f_vs_naive')
  v = study_claims.judge(claim, {'c2f_volumetric': _entry(better),
                                 'volumetric_stacked': _entry(worse)})
  b = [x for x in better if math.isfinite(x)]
  assert v.status == _expected_status(b, worse)
  assert v.ours == pytest.approx((np.mean(b), np.mean(worse)))
  assert v.seeds == (len(b), len(worse))
  line = study_report.claim_line(v)
  assert line.startswith(f'**{v.status.upper()}**')
  assert f'c2f_volumetric {_pm(b)} mm ({len(b)} seed' in line
  if v.status == 'inconclusive (one seed)':
    assert v.threshold is None
    assert any('one seed' in n for n in v.notes)
  else:
    assert v.threshold == pytest.approx(
        2 * max(np.std(b, ddof=1), np.std(worse, ddof=1)))
  # The paper's relative gain, computed from its numbers (69.8 vs 80.1).
  assert f'({100 * (80.1 - 69.8) / 80.1:.1f} % better)' in line


def test_judge_not_tested_stand_ins_and_notes():
  claim = next(c for c in study_claims.PAPER_CLAIMS if c.key == 'c2f_vs_naive')
  missing = study_claims.judge(claim, {'c2f_volumetric': _entry([80., 81.])})
  assert missing.status == 'not tested'
  assert 'volumetric_stacked' in study_report.claim_line(missing)
  nan = study_claims.judge(claim, {
      'c2f_volumetric': _entry([80., 81.]),
      'volumetric_stacked': _entry([float('nan'), float('nan')])})
  assert nan.status == 'not tested'
  unequal = study_claims.judge(claim, {
      'c2f_volumetric': _entry([80., 81.], steps=10),
      'volumetric_stacked': _entry([100., 101.], seeds=[0, 2])})
  assert any('unequal training budgets' in n for n in unequal.notes)
  assert any('different seeds' in n for n in unequal.notes)
  claim = next(c for c in study_claims.PAPER_CLAIMS
               if c.key == 'volumetric_vs_regression')
  v = study_claims.judge(claim, {
      'volumetric_stacked': _entry([90., 90.5]),
      'coordinate_regression': _entry([95., 95.5])})
  assert v.better == 'volumetric_stacked' and v.status == 'held'
  assert any('stands in' in n for n in v.notes)
  claim = next(c for c in study_claims.PAPER_CLAIMS
               if c.key == 'truncation_robustness')
  key = 'truncated.outside_inside_ratio'
  v = study_claims.judge(claim, {'metrabs': _entry([1.5, 1.52], key),
                                 'c2f_volumetric': _entry([1.2, 1.21], key)})
  assert v.status == 'did not hold'


def test_paths_and_command_line_name_no_machine_directory(tmp_path,
                                                          monkeypatch):
  monkeypatch.chdir(tmp_path)
  assert study_report.shown_path(tmp_path / 'runs' / 'x') == 'runs/x'
  home = os.path.expanduser('~')
  if not str(tmp_path).startswith(home + os.sep):
    assert study_report.shown_path(os.path.join(home, '.cache', 'd')) == \
        '~/.cache/d'
  line = study_report.command_line(
      ['--preset=smoke', f'--workdir_root={tmp_path / "runs"}',
       '--reuse_root', str(tmp_path / 'old'), '--out_dir=.'])
  assert line == ('python -m benchmarks.study --preset=smoke '
                  '--workdir_root=runs --reuse_root old --out_dir=.')
  assert study_report.portable_text(
      f'cannot read {tmp_path / "runs" / "x"}') == 'cannot read runs/x'


# ----------------------------------------------------------------------------
# Truncation statistics, study-only models, config differences
# ----------------------------------------------------------------------------

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


def test_config_differences_name_what_changed_since_a_run():
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
