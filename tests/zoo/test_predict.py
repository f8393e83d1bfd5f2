"""Tests of zoo.inference (the full-image inference path) and zoo.predict (the
command line
(poses.json and the picture, from a checkpoint and from a SavedModel)."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from zoo import base
from zoo import inference
from zoo import predict
from zoo import registry
from zoo import skeleton as skel
from zoo import weights as weights_lib
from zoo.data import records

MODEL = 'metrabs'  # any registered model; the smallest smoke preset


@pytest.fixture(scope='module')
def workdir(tmp_path_factory):
  """A smoke model's weights + manifest, as the trainer writes them."""
  from trainers import checkpoints
  from zoo import config as config_lib
  entry = registry.get(MODEL)
  config = entry.config('smoke')
  tf.keras.utils.set_random_seed(3)
  model = weights_lib.build_model(entry, config)
  path = str(tmp_path_factory.mktemp('predict_workdir'))
  checkpoints.write_final(path, model, {
      'model': MODEL, 'preset': 'smoke', 'steps': 0,
      'config': config_lib.to_dict(config)})
  return path, model


@pytest.fixture(scope='module')
def image_path(tmp_path_factory):
  rng = np.random.RandomState(0)
  small = rng.randint(0, 256, (10, 8, 3)).astype(np.float32)
  image = tf.cast(tf.image.resize(small[None], [100, 80])[0], tf.uint8)
  path = str(tmp_path_factory.mktemp('predict_image') / 'person.png')
  tf.io.write_file(path, tf.io.encode_png(image))
  return path


def test_predict_in_image_maps_crop_poses_back(workdir):
  """Equals: crop, predict_poses on the crop, then (independently, in
  NumPy) inverse homography for 2D and rotation^T for 3D."""
  _, model = workdir
  rng = np.random.RandomState(1)
  images = rng.randint(0, 256, (2, 70, 90, 3)).astype(np.uint8)
  boxes = np.array([[10, 5, 40, 50], [30, 20, 25, 45]], np.float32)
  k = np.stack([records.default_intrinsics(70, 90)] * 2)
  k[1, 0, 2] += 7.  # an off-centre principal point
  out = inference.predict_in_image(model, images, boxes, k)
  size, margin = inference.crop_settings(model)
  assert size == model.config.input_size
  assert margin == model.config.augment.box_margin
  crops = inference.crop_images(model, images, boxes, k)
  crop_poses = model.predict_poses({'image': crops['image'],
                                    'intrinsics': crops['intrinsics']})
  h_inv = np.linalg.inv(crops['homography'].numpy().astype(np.float64))
  uv1 = np.concatenate([crop_poses['poses2d_px'].numpy(),
                        np.ones([2, skel.NUM_JOINTS, 1])], -1)
  back = np.einsum('bij,bnj->bni', h_inv, uv1)
  poses2d = back[..., :2] / back[..., 2:]
  rot = crops['rotation'].numpy()
  cam = np.einsum('bji,bnj->bni', rot, crop_poses['poses3d_cam_mm'].numpy())
  rel = np.einsum('bji,bnj->bni', rot, crop_poses['poses3d_rel_mm'].numpy())
  np.testing.assert_allclose(out['poses2d_px'], poses2d, rtol=1e-4, atol=1e-2)
  np.testing.assert_allclose(out['poses3d_cam_mm'], cam, rtol=1e-4, atol=1e-2)
  np.testing.assert_allclose(out['poses3d_rel_mm'], rel, rtol=1e-4, atol=1e-2)
  np.testing.assert_allclose(out['confidence'], crop_poses['confidence'])
  for key in base.OUTPUT_KEYS:
    assert out[key].dtype == tf.float32
  # Rotating by R^T keeps distances: the root-relative pose's bone lengths
  # are those of the crop-frame prediction.
  np.testing.assert_allclose(
      np.linalg.norm(out['poses3d_rel_mm'], axis=-1),
      np.linalg.norm(crop_poses['poses3d_rel_mm'], axis=-1), rtol=1e-4,
      atol=1e-2)


def test_parse_box_and_intrinsics():
  np.testing.assert_array_equal(inference.parse_box(None, 10, 20),
                                [0, 0, 20, 10])
  np.testing.assert_array_equal(inference.parse_box('1,2,3.5,4', 10, 20),
                                [1, 2, 3.5, 4])
  for bad in ('1,2,3', '1,2,0,4', 'a,b,c,d', '1,2,3,nan'):
    with pytest.raises(ValueError, match='--box'):
      inference.parse_box(bad, 10, 20)
  k, note = inference.make_intrinsics(100, 200, None)
  np.testing.assert_allclose(k, records.default_intrinsics(100, 200))
  # 55 deg field of view on the longer side.
  np.testing.assert_allclose(2 * np.degrees(np.arctan(100 / k[0, 0])), 55.,
                             rtol=1e-5)
  assert 'assumed' in note and '55' in note
  k, note = inference.make_intrinsics(100, 200, 321.)
  assert k[0, 0] == k[1, 1] == 321. and 'given' in note
  np.testing.assert_allclose(k[:2, 2], [99.5, 49.5])
  with pytest.raises(ValueError, match='--focal'):
    inference.make_intrinsics(100, 200, -1.)


def _check_outputs(out_dir: str, image_hw) -> dict:
  with open(os.path.join(out_dir, 'poses.json')) as f:
    doc = json.load(f)
  assert np.array(doc['poses3d_cam_mm']).shape == (17, 3)
  assert np.array(doc['poses3d_rel_mm']).shape == (17, 3)
  assert np.array(doc['poses2d_px']).shape == (17, 2)
  assert np.array(doc['confidence']).shape == (17,)
  assert doc['joint_names'] == list(skel.H36M17.joint_names)
  assert doc['image_size_hw'] == list(image_hw)
  png = tf.io.decode_png(tf.io.read_file(os.path.join(out_dir, 'poses.png')))
  assert png.shape[0] >= 300 and png.shape[1] >= 900  # three panels
  assert float(tf.math.reduce_std(tf.cast(png, tf.float32))) > 5.  # not blank
  return doc


def test_cli_checkpoint_and_saved_model_agree(workdir, image_path, tmp_path,
                                             caplog):
  path, model = workdir
  out_ckpt = str(tmp_path / 'ckpt')
  caplog.set_level('INFO')
  assert predict.main([f'--model={MODEL}', f'--checkpoint={path}',
                       f'--image={image_path}', f'--out={out_ckpt}']) == 0
  doc = _check_outputs(out_ckpt, (100, 80))
  assert doc['box_xywh'] == [0, 0, 80, 100] and doc['box_source'] == \
      'whole image'
  assert doc['default_fov_deg'] == 55. and 'assumed' in doc[
      'intrinsics_source']
  assert 'field of view' in caplog.text  # said in the log too

  from export import saved_model
  export_dir = saved_model.export_model(model, str(tmp_path / 'base'), MODEL,
                                        write_warmup=False, verify=False)
  out_sm = str(tmp_path / 'sm')
  assert predict.main([f'--saved_model={export_dir}', f'--image={image_path}',
                       '--box=5,10,60,80', '--focal=120',
                       f'--out={out_sm}']) == 0
  doc_sm = _check_outputs(out_sm, (100, 80))
  assert doc_sm['model'] == MODEL  # read from the export's metadata
  assert doc_sm['default_fov_deg'] is None
  assert doc_sm['intrinsics'][0][0] == 120.
  # The same box and focal through the checkpoint give the same poses.
  out_ckpt2 = str(tmp_path / 'ckpt2')
  assert predict.main([f'--model={MODEL}', f'--checkpoint={path}',
                       f'--image={image_path}', '--box=5,10,60,80',
                       '--focal=120', f'--out={out_ckpt2}']) == 0
  doc_ckpt2 = _check_outputs(out_ckpt2, (100, 80))
  for key in base.OUTPUT_KEYS:
    scale = max(1., np.abs(doc_ckpt2[key]).max())
    np.testing.assert_allclose(doc_sm[key], doc_ckpt2[key], rtol=1e-3,
                               atol=2e-3 * scale, err_msg=key)


def test_cli_errors(image_path, tmp_path, capsys):
  with pytest.raises(SystemExit):  # a usage error: one source is required
    predict.main([f'--image={image_path}', f'--out={tmp_path}'])
  assert predict.main(['--checkpoint=/nonexistent', f'--image={image_path}',
                       f'--out={tmp_path}']) == 2
  assert '--model' in capsys.readouterr().err
  assert predict.main([f'--model={MODEL}', '--checkpoint=/nonexistent',
                       f'--image={tmp_path}/missing.png',
                       f'--out={tmp_path}']) == 2
  assert 'does not exist' in capsys.readouterr().err
  assert predict.main([f'--saved_model={tmp_path}', f'--image={image_path}',
                       f'--out={tmp_path}']) == 2
  assert 'saved_model.pb' in capsys.readouterr().err
