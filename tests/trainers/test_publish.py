"""Tests for trainers/publish.py: the bundled manifest, README, validation of
runs, the size limit and atomicity (a failed or killed publish never leaves a
half checkpoint)."""
import hashlib
import json
import os

import pytest

import publish_fixture
from trainers import publish
from trainers import publish_lib


@pytest.fixture(scope='module')
def published():
  return publish_fixture.published()


def _sha256(path):
  with open(path, 'rb') as f:
    return hashlib.sha256(f.read()).hexdigest()


def _snapshot(directory):
  """{file name: sha256} of a checkpoint directory."""
  return {name: _sha256(os.path.join(directory, name))
          for name in sorted(os.listdir(directory))}


def _hidden(root):
  return [name for name in os.listdir(root) if name.startswith('.')]


def test_manifest_records_what_the_issue_asks(published):
  m = json.load(open(os.path.join(published.directory, 'manifest.json')))
  assert m['model'] == published.name and m['preset'] == 'smoke'
  assert m['steps'] == m['config']['train']['steps'] == 3
  assert 'trainers.publish' in m['publish_command']
  assert m['command'] == 'pytest publish_fixture'
  assert m['data']['name'] == 'synthetic' and m['data']['seed'] == 0
  assert m['data']['format_version'] == 1
  assert 'Human3.6M' in m['data']['note']
  # The test metrics of the training run, measured after training.
  run = json.load(open(os.path.join(published.workdir, 'manifest.json')))
  assert m['metrics'] == run['metrics']
  assert m['metrics']['num_eval_examples'] == 16
  # The weights are the run's final weights, byte for byte.
  assert m['sha256'] == run['sha256'] == _sha256(published.weights)
  assert m['weights_file'] == f'{published.name}.weights.h5'
  assert m['size_bytes'] == os.path.getsize(published.weights)
  # The fixed slice.
  s = m['slice_eval']
  assert {k: s[k] for k in publish_lib.SLICE_EVAL} == publish_lib.SLICE_EVAL
  assert s['num_eval_examples'] == 64 and s['mpjpe_mm'] > 0
  from zoo.data import synthetic
  assert s['generator_version'] == synthetic.GENERATOR_VERSION
  assert m['data']['generator_version'] == synthetic.GENERATOR_VERSION
  # No path of the training machine: the prior lives in the weights.
  assert m['config']['prior_path'] is None
  assert m['config_fields_cleared'] == ['prior_path']
  assert run['config']['prior_path']  # the run had one
  # Trained at the preset: nothing differs (the prior's path is no setting).
  assert m['config_unlike_preset'] == []
  assert not _hidden(published.root)


def test_readme_lists_the_checkpoint(published):
  text = open(os.path.join(published.root, 'README.md')).read()
  assert f'`{published.name}`' in text
  assert 'not Human3.6M' in text
  assert published.manifest['sha256'][:12] in text
  assert published.manifest['publish_command'] in text
  # Regenerating gives the same table.
  assert publish.main(['--readme_only',
                       f'--checkpoints_root={published.root}']) == 0
  assert open(os.path.join(published.root, 'README.md')).read() == text


def test_portable_config_clears_machine_paths():
  config = {'prior_path': '/home/a/prior.npz', 'backbone_weights': '/w.h5',
            'input_size': 32, 'name_dir': None,
            'train': {'log_dir': '/tmp/x', 'steps': 3}}
  clean, cleared = publish_lib.portable_config(config)
  assert clean == {'prior_path': None, 'backbone_weights': None,
                   'input_size': 32, 'name_dir': None,
                   'train': {'log_dir': None, 'steps': 3}}
  assert sorted(cleared) == ['backbone_weights', 'prior_path', 'train.log_dir']


def test_publish_command_records_only_non_default_flags():
  assert publish_lib.publish_command('metrabs', 'cpu', 2500, 2500) == (
      'python -m trainers.publish --model=metrabs')
  assert publish_lib.publish_command('metrabs', 'smoke', 7, 3) == (
      'python -m trainers.publish --model=metrabs --preset=smoke --steps=7')


def test_rejects_runs_that_do_not_fit(published, tmp_path):
  root = str(tmp_path / 'root')
  with pytest.raises(publish_lib.PublishError, match="preset is 'smoke', not 'cpu'"):
    publish_lib.publish(published.name, preset='cpu',
                        from_workdir=published.workdir, checkpoints_root=root)
  with pytest.raises(publish_lib.PublishError, match="holds model 'lifting_deep'"):
    publish_lib.publish('metrabs', preset='smoke', from_workdir=published.workdir,
                        checkpoints_root=root)
  with pytest.raises(publish_lib.PublishError, match='--steps'):
    publish_lib.publish(published.name, preset='smoke', steps=5,
                        from_workdir=published.workdir, checkpoints_root=root)
  with pytest.raises(publish_lib.PublishError, match='not a directory'):
    publish_lib.publish(published.name, preset='smoke',
                        from_workdir=str(tmp_path / 'missing'),
                        checkpoints_root=root)
  with pytest.raises(ValueError, match='unknown model'):
    publish_lib.publish('no_such_model', checkpoints_root=root)
  assert not os.path.exists(os.path.join(root, published.name))


def test_a_run_unlike_the_preset_is_said_so(published, tmp_path):
  """A --from_workdir run whose config is not the current preset's (an
  older preset, an --override) is published, with the difference recorded
  in its manifest and the README (its publish_command trains the preset).
  """
  import shutil
  from zoo import registry
  workdir = str(tmp_path / 'run')
  shutil.copytree(published.workdir, workdir)
  path = os.path.join(workdir, 'manifest.json')
  run = json.load(open(path))
  preset_value = registry.get(published.name).config('smoke').lift_noise
  run['config']['lift_noise'] = preset_value + 0.5
  with open(path, 'w') as f:
    json.dump(run, f)
  root = str(tmp_path / 'root')
  m = publish_lib.publish(published.name, preset='smoke', from_workdir=workdir,
                          checkpoints_root=root, progress=False)
  expected = [f'lift_noise={preset_value + 0.5!r} (preset: {preset_value!r})']
  assert m['config_unlike_preset'] == expected
  saved = json.load(open(os.path.join(root, published.name,
                                      'manifest.json')))
  assert saved['config_unlike_preset'] == expected
  text = open(os.path.join(root, 'README.md')).read()
  assert f'- `{published.name}`: {expected[0]}' in text


def test_readme_flags_a_checkpoint_older_than_its_preset(published,
                                                         monkeypatch):
  """A preset changed after publishing: the README, written from the code's
  current presets, names the difference the manifest could not know of."""
  from zoo import config as config_lib
  from zoo import registry
  entry = registry.get(published.name)
  old = entry.config('smoke')
  changed = config_lib.replace(old, lift_noise=old.lift_noise + 0.25,
                               train=config_lib.replace(old.train, steps=7))
  assert publish_lib.readme_text(published.root).count('- `') == 0
  monkeypatch.setitem(entry.presets, 'smoke', changed)
  text = publish_lib.readme_text(published.root)
  assert (f'- `{published.name}`: lift_noise={old.lift_noise!r} (preset: '
          f'{changed.lift_noise!r}); train.steps=3 (preset: 7)') in text


def test_cli_requires_a_model(capsys):
  assert publish.main([]) == 2
  assert '--model' in capsys.readouterr().err


def test_failed_publish_keeps_the_previous_checkpoint(published, tmp_path,
                                                      monkeypatch):
  root = publish_fixture.copy_root(published, str(tmp_path))
  before = _snapshot(os.path.join(root, published.name))

  def fail(*args, **kwargs):
    raise RuntimeError('injected failure while evaluating the slice')

  monkeypatch.setattr(publish_lib, 'evaluate_slice', fail)
  with pytest.raises(RuntimeError, match='injected failure'):
    publish_lib.publish(published.name, preset='smoke',
                        from_workdir=published.workdir, checkpoints_root=root)
  assert _snapshot(os.path.join(root, published.name)) == before
  assert not _hidden(root)  # the staging directory is gone


def test_size_limit_fails_the_publish(published, tmp_path):
  root = publish_fixture.copy_root(published, str(tmp_path))
  before = _snapshot(os.path.join(root, published.name))
  with pytest.raises(publish_lib.PublishError, match='over the 0.001 MB limit'):
    publish_lib.publish(published.name, preset='smoke',
                        from_workdir=published.workdir, checkpoints_root=root,
                        max_total_bytes=1000)
  assert _snapshot(os.path.join(root, published.name)) == before
  assert not _hidden(root)


def test_republish_replaces_the_checkpoint_and_readme(published, tmp_path):
  root = publish_fixture.copy_root(published, str(tmp_path))
  # A stale file in the old directory must not survive the swap.
  stale = os.path.join(root, published.name, 'stale.txt')
  open(stale, 'w').write('old')
  os.remove(os.path.join(root, 'README.md'))
  manifest = publish_lib.publish(published.name, preset='smoke',
                                 from_workdir=published.workdir,
                                 checkpoints_root=root, progress=False)
  assert not os.path.exists(stale)
  assert manifest['sha256'] == published.manifest['sha256']
  assert abs(manifest['slice_eval']['mpjpe_mm'] -
             published.manifest['slice_eval']['mpjpe_mm']) < 1e-3
  assert os.path.exists(os.path.join(root, 'README.md'))
  assert not _hidden(root)


def test_recover_after_a_kill_between_the_renames(published, tmp_path):
  root = publish_fixture.copy_root(published, str(tmp_path))
  final = os.path.join(root, published.name)
  before = _snapshot(final)
  # Killed after moving the old checkpoint aside, before renaming the new
  # one in; a staging directory is left too.
  os.rename(final, os.path.join(root, f'.old-{published.name}-123'))
  os.makedirs(os.path.join(root, f'.tmp-{published.name}-abc'))
  import zoo
  assert zoo.bundled_models(root) == []
  publish_lib.recover(root, published.name)
  assert _snapshot(final) == before
  assert not _hidden(root)


def test_a_later_evaluation_of_the_same_weights_is_published(published,
                                                              tmp_path):
  """metrics_eval.json from `trainers.evaluate` of the final weights on the
  run's own test setting replaces the run's test metrics (a decoding fix
  after training); one measured differently is ignored."""
  import shutil
  from trainers import evaluate
  workdir = str(tmp_path / 'run')
  shutil.copytree(published.workdir, workdir)
  run = json.load(open(os.path.join(workdir, 'manifest.json')))['metrics']
  later = evaluate.evaluate_workdir(published.name, workdir, progress=False)
  assert later['num_eval_examples'] == run['num_eval_examples']
  # Make the later figures tell apart from the run's.
  path = os.path.join(workdir, evaluate.EVAL_FILE)
  later = dict(later, mpjpe_mm=run['mpjpe_mm'] + 1.)
  with open(path, 'w') as f:
    json.dump(later, f)
  root = str(tmp_path / 'root')
  m = publish_lib.publish(published.name, preset='smoke', from_workdir=workdir,
                          checkpoints_root=root, progress=False)
  assert m['metrics']['mpjpe_mm'] == run['mpjpe_mm'] + 1.
  assert m['metrics']['train_seconds'] == run['train_seconds']  # the run's
  assert 'trainers.evaluate' in m['metrics_source']
  # Measured on fewer examples: not the run's setting, so not used.
  with open(path, 'w') as f:
    json.dump(dict(later, num_eval_examples=4), f)
  m = publish_lib.publish(published.name, preset='smoke', from_workdir=workdir,
                          checkpoints_root=root, progress=False)
  assert m['metrics'] == run
  assert m['metrics_source'] == "the training run's own evaluation"


def test_portable_command_hides_absolute_paths_of_the_training_machine():
  command = ('/opt/venv/bin/python -m trainers.run --model=lifting_deep '
             '--workdir=/home/someone/runs/x --seed=1 --data=runs/rel '
             '--noprogress')
  assert publish_lib.portable_command(command) == (
      'python -m trainers.run --model=lifting_deep --workdir=WORKDIR '
      '--seed=1 --data=runs/rel --noprogress')
  assert publish_lib.portable_command(None) is None
