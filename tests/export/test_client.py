"""Tests of export.client: request building and the CLI against export.serve
over gRPC and REST (poses equal the Keras model's on the same image)."""
from __future__ import annotations

import base64

import numpy as np
import pytest
import tensorflow as tf

from conftest import keras_outputs
from export import client as client_lib
from zoo.data import records


@pytest.fixture(scope='module')
def image_file(tmp_path_factory):
  rng = np.random.RandomState(0)
  small = rng.randint(0, 256, (12, 9, 3)).astype(np.float32)
  image = tf.cast(tf.image.resize(small[None], [120, 90])[0], tf.uint8)
  path = str(tmp_path_factory.mktemp('client') / 'person.png')
  tf.io.write_file(path, tf.io.encode_png(image))
  return path, image.numpy()


def test_image_inputs_defaults_and_given(image_file):
  path, image = image_file
  inputs, info = client_lib.image_inputs(path)
  assert inputs['image_bytes'].shape == (1,)
  np.testing.assert_array_equal(inputs['boxes'], [[0, 0, 90, 120]])
  np.testing.assert_allclose(inputs['intrinsics'][0],
                             records.default_intrinsics(120, 90))
  assert 'assumed' in info['intrinsics_source']
  inputs, info = client_lib.image_inputs(path, box='5,6,40,50', focal_px=300.,
                                         signature='serving_default')
  np.testing.assert_array_equal(inputs['images'][0], image)
  np.testing.assert_array_equal(inputs['boxes'], [[5, 6, 40, 50]])
  assert inputs['intrinsics'][0, 0, 0] == 300.
  assert info['box_source'] == 'given'
  with pytest.raises(ValueError, match='--box'):
    client_lib.image_inputs(path, box='1,2,3')


def test_to_json_value_binary():
  assert client_lib.to_json_value(np.array([b'ab', b'c'], dtype=object)) == [
      {'b64': base64.b64encode(b'ab').decode()},
      {'b64': base64.b64encode(b'c').decode()}]
  assert client_lib.to_json_value(np.zeros([1, 2], np.uint8)) == [[0, 0]]


@pytest.mark.parametrize('rest', [False, True])
def test_cli_prints_the_models_poses(exported, server, image_file, capsys,
                                     rest):
  path, image = image_file
  name = exported.names[0]
  args = [f'--server={server.rest if rest else server.grpc}',
          f'--model={name}', f'--image={path}', '--box=10,12,60,90',
          '--focal=150', '--json'] + (['--rest'] if rest else [])
  assert client_lib.main(args) == 0
  import json
  printed = json.loads(capsys.readouterr().out)
  k = np.array([[150., 0., 44.5], [0., 150., 59.5], [0., 0., 1.]], np.float32)
  expected = keras_outputs(exported.models[name], 'serving_default', {
      'images': image[None], 'boxes': np.array([[10, 12, 60, 90]], np.float32),
      'intrinsics': k[None]})
  for key, value in expected.items():
    np.testing.assert_allclose(printed[key], value[0], rtol=1e-3,
                               atol=1e-3 * max(1., np.abs(value).max()))
  # The table form names every joint.
  assert client_lib.main(args[:-1] if not rest else
                         [a for a in args if a != '--json']) == 0
  table = capsys.readouterr().out
  assert 'pelvis' in table and 'right_wrist' in table


def test_cli_reports_server_errors(server, image_file, capsys):
  path, _ = image_file
  assert client_lib.main([f'--server={server.grpc}', '--model=nope',
                          f'--image={path}']) == 1
  assert 'NOT_FOUND' in capsys.readouterr().err
  assert client_lib.main([f'--server={server.rest}', '--rest', '--model=nope',
                          f'--image={path}']) == 1
  assert 'HTTP 404' in capsys.readouterr().err
