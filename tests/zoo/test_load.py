"""Tests for zoo/__init__.py (`zoo.load` and the bundled checkpoints).

- Every checkpoint bundled under zoo/checkpoints loads and re-evaluates on the
  manifest's fixed slice within 2 mm of the manifest's MPJPE.
- The mechanism, on a smoke checkpoint published into a temporary root
  (tests/trainers/publish_fixture.py): loading (bundled and a user's path),
  the sha256 check, the error for a model with no bundled checkpoint, the
  bundled default of zoo.predict / export.saved_model, and fine-tuning with
  a frozen backbone on TFRecords in the zoo's format.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

import publish_fixture  # noqa: E402

import zoo  # noqa: E402
from zoo import manifest as manifest_lib
from zoo import weights as weights_lib

SLICE_TOLERANCE_MM = 2.
BUNDLED = zoo.bundled_models()


@pytest.fixture(scope='module')
def published():
  return publish_fixture.published()


@pytest.fixture
def no_prior_fit(monkeypatch):
  """Fails the test if anything fits or reads a lifting_deep prior file."""
  from zoo.lifting_deep import prior

  def forbidden(*args, **kwargs):
    raise AssertionError('loading a bundled checkpoint fitted or read a '
                         'pose prior; its weights must carry it')

  monkeypatch.setattr(prior.PosePrior, 'fit', classmethod(forbidden))
  monkeypatch.setattr(prior.PosePrior, 'load', classmethod(forbidden))


def _slice_mpjpe(model, spec):
  """Re-evaluates on the manifest's slice spec, independently of publish."""
  from trainers import evaluation
  from zoo.data import synthetic
  assert spec['data'] == 'synthetic' and spec['split'] == 'test'
  if spec.get('generator_version') != synthetic.GENERATOR_VERSION:
    pytest.fail(
        f'the slice was measured on synthetic data generator version '
        f'{spec.get("generator_version")}, but zoo.data.synthetic is now '
        f'version {synthetic.GENERATOR_VERSION} (other images): re-publish '
        f'the checkpoint (`python -m trainers.publish`)')
  data_dir = synthetic.ensure_dataset(1, spec['num_examples'],
                                      seed=spec['seed'], num_workers=1,
                                      progress=False)
  metrics = evaluation.evaluate_model(
      model, data_dir, model.config, flip_test=spec['flip_test'],
      num_examples=spec['num_examples'], batch_size=spec['batch_size'],
      split='test', progress=False)
  assert metrics['num_eval_examples'] == spec['num_examples']
  return metrics['mpjpe_mm']


# ----------------------------------------------------------------------------
# The real bundled checkpoints
# ----------------------------------------------------------------------------

# Fine-tuned from its bundled checkpoint: one model of each paper. Every
# bundle loads and reproduces its slice; the other c2f variants' backbone
# splits are checked at the smoke preset (tests/zoo/c2f_volumetric).
FINE_TUNED = ('c2f_volumetric', 'lifting_deep', 'metrabs')


@pytest.mark.skipif(not BUNDLED, reason=(
    f'no bundled checkpoint under {zoo.checkpoints_root()} yet (create them '
    'with `python -m trainers.publish --model=all`)'))
@pytest.mark.parametrize('name', BUNDLED)
def test_bundled_checkpoint_matches_its_manifest_and_fine_tunes(
    name, no_prior_fit, user_data):
  """Loaded once: re-evaluated on the manifest's slice, then (one model of
  each paper) fine-tuned with a frozen backbone (the README's example)."""
  manifest = zoo.bundled_manifest(name)
  assert manifest['model'] == name and manifest['preset'] == 'cpu'
  assert manifest['data']['name'] == 'synthetic'
  assert manifest['metrics']['mpjpe_mm'] > 0
  model = zoo.load(name)
  assert model.backbone
  spec = manifest['slice_eval']
  assert abs(_slice_mpjpe(model, spec) - spec['mpjpe_mm']) <= (
      SLICE_TOLERANCE_MM)
  if name in FINE_TUNED:
    _finetune_frozen_backbone(model, user_data)


@pytest.mark.skipif(not BUNDLED, reason='no bundled checkpoint yet')
def test_bundled_checkpoints_fit_the_size_limit():
  from trainers import publish_lib
  sizes = publish_lib.bundled_sizes(zoo.checkpoints_root())
  assert sum(sizes.values()) < publish_lib.MAX_TOTAL_BYTES, sizes
  readme = open(os.path.join(zoo.checkpoints_root(), 'README.md')).read()
  assert 'not Human3.6M' in readme
  for name in BUNDLED:
    assert f'`{name}`' in readme


# ----------------------------------------------------------------------------
# The mechanism, on a smoke checkpoint in a temporary root
# ----------------------------------------------------------------------------

def test_import_zoo_does_not_import_tensorflow():
  code = ('import sys, zoo; zoo.bundled_models(); '
          'sys.exit("tensorflow" in sys.modules)')
  repo = os.path.dirname(os.path.dirname(os.path.dirname(
      os.path.abspath(__file__))))
  assert subprocess.run([sys.executable, '-c', code], cwd=repo).returncode == 0


def test_load_bundled_reproduces_the_slice_without_a_prior_fit(
    published, no_prior_fit, monkeypatch):
  monkeypatch.setenv(zoo.CHECKPOINTS_ENV, published.root)
  assert zoo.bundled_models() == [published.name]
  model = zoo.load(published.name)
  assert model.config.prior_path is None  # built from the portable config
  assert getattr(model, 'optimizer', None) is None  # ready to compile
  spec = published.manifest['slice_eval']
  assert abs(_slice_mpjpe(model, spec) - spec['mpjpe_mm']) <= (
      SLICE_TOLERANCE_MM)


def test_load_user_checkpoint_gives_the_same_weights(published):
  bundled = zoo.load(published.name, root=published.root)
  from_workdir = zoo.load(published.name, checkpoint=published.workdir)
  from_file = zoo.load(published.name, checkpoint=published.weights)
  for model in (from_workdir, from_file):
    assert len(model.weights) == len(bundled.weights)
    for a, b in zip(model.weights, bundled.weights):
      np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)


def test_missing_bundled_checkpoint_names_the_available_ones(published):
  with pytest.raises(zoo.BundledCheckpointError,
                     match=r"no bundled checkpoint for model 'metrabs'.*"
                     r'bundled models: lifting_deep'):
    zoo.load('metrabs', root=published.root)
  with pytest.raises(KeyError, match='registered models'):
    zoo.load('no_such_model', root=published.root)


def test_sha256_mismatch_is_a_clear_error(published, tmp_path):
  root = publish_fixture.copy_root(published, str(tmp_path))
  weights = os.path.join(root, published.name,
                         f'{published.name}.weights.h5')
  data = bytearray(open(weights, 'rb').read())
  data[len(data) // 2] ^= 0xFF
  open(weights, 'wb').write(bytes(data))
  with pytest.raises(manifest_lib.ChecksumError,
                     match=r'sha256 mismatch.*trainers\.publish'):
    zoo.load(published.name, root=root)
  with pytest.raises(manifest_lib.ChecksumError, match='sha256 mismatch'):
    zoo.load(published.name, checkpoint=os.path.join(root, published.name))


def test_predict_and_export_default_to_the_bundled_checkpoint(
    published, tmp_path, monkeypatch, capsys):
  import cv2
  from export import saved_model
  from zoo import predict
  from zoo.data import synthetic
  fields, _ = synthetic.render_example(0, 'test', 0)
  image = os.path.join(tmp_path, 'person.jpg')
  open(image, 'wb').write(fields['image/encoded'])
  assert cv2.imread(image) is not None
  monkeypatch.setenv(zoo.CHECKPOINTS_ENV, published.root)
  doc = predict.predict_file(model=published.name, image_path=image,
                             out_dir=str(tmp_path / 'out'))
  assert doc['checkpoint'] == published.directory
  assert np.isfinite(doc['poses3d_cam_mm']).all()
  assert os.path.exists(doc['png_path'])
  # No bundled checkpoint: both commands say so and list what is bundled.
  assert predict.main(['--model=metrabs', f'--image={image}',
                       f'--out={tmp_path / "out2"}']) == 2
  assert saved_model.main(['--model=metrabs',
                           f'--export_dir={tmp_path / "exports"}']) == 2
  err = capsys.readouterr().err
  assert err.count('bundled models: lifting_deep') == 2


@pytest.fixture(scope='module')
def user_data(tmp_path_factory):
  """A user's zoo-format TFRecords (8 train, 8 test examples), written once
  for every fine-tuning test."""
  from zoo.data import synthetic
  path = str(tmp_path_factory.mktemp('user_tfrecords'))
  for split in ('train', 'test'):
    synthetic.generate(path, split, 8, seed=7, num_workers=1,
                       progress=False)
  return path


def _finetune_frozen_backbone(model, user_data):
  """The README's fine-tuning example, on a user's zoo-format TFRecords:
  freeze the backbone, fit a few steps, check what moved, evaluate."""
  from trainers import evaluation
  from zoo import optimizers
  from zoo.data import pipeline
  for layer in model.backbone:
    layer.trainable = False
  frozen = {v.path: v.numpy().copy()
            for layer in model.backbone for v in layer.weights}
  trainable = {v.path: v.numpy().copy() for v in model.trainable_weights}
  assert frozen and trainable and not set(frozen) & set(trainable)
  model.compile(optimizer=optimizers.Adam(1e-2))
  dataset = pipeline.make_dataset(
      user_data, 'train', input_size=model.config.input_size, batch_size=2,
      training=True, augment=model.config.augment, map_fn=model.targets,
      seed=0)
  history = model.fit(dataset, steps_per_epoch=3, epochs=1, verbose=0,
                      shuffle=False)
  assert np.isfinite(history.history['loss']).all()

  after = {v.path: v.numpy() for v in model.weights}
  for path, value in frozen.items():
    np.testing.assert_array_equal(after[path], value, err_msg=path)
  unchanged = [path for path, value in trainable.items()
               if np.array_equal(after[path], value)]
  assert not unchanged, f'trainable weights did not move: {unchanged}'

  metrics = evaluation.evaluate_model(model, user_data, model.config,
                                      num_examples=8, batch_size=4,
                                      progress=False)
  assert metrics['num_eval_examples'] == 8
  assert np.isfinite(metrics['mpjpe_mm'])


def test_finetune_with_frozen_backbone(published, user_data):
  _finetune_frozen_backbone(zoo.load(published.name, root=published.root),
                            user_data)


def test_run_init_from_accepts_a_bundled_directory(published):
  """--init_from=zoo/checkpoints/NAME resolves the bundled layout."""
  source = weights_lib.resolve(published.directory)
  assert source.kind == 'h5' and source.path == published.weights
  assert source.model_name == published.name
  weights_lib.verify_sha256(source)
