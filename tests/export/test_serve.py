"""Tests of export.serve: gRPC and REST round trips through the real
tensorflow-serving-api stubs, TF Serving's error codes, versions, labels and
new versions picked up while serving; plus the JSON and config helpers."""
from __future__ import annotations

import base64
import json
import os
import shutil
import time
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
import tensorflow as tf

from conftest import assert_close
from export import client as client_lib
from export import serving_config
from export import serving_core
from export import serving_rest

CODE = grpc.StatusCode


# ----------------------------------------------------------------------------
# Helpers that need no server
# ----------------------------------------------------------------------------

def test_json_to_array_dtypes_and_b64():
  spec = tf.TensorSpec([None], tf.string, name='image_bytes')
  raw = [b'\x89PNG\x00\xff', b'abc']
  value = [{'b64': base64.b64encode(r).decode()} for r in raw]
  assert list(serving_rest.json_to_array(value, spec, 'image_bytes')) == raw
  images = serving_rest.json_to_array([[[[0, 255, 7]]]], tf.TensorSpec(
      [None, None, None, 3], tf.uint8, name='images'), 'images')
  assert images.dtype == np.uint8 and images.tolist() == [[[[0, 255, 7]]]]
  for bad, match in (([[[[256, 0, 0]]]], r'outside \[0, 255\]'),
                     ([[[[1.5, 0, 0]]]], 'non-integer'),
                     ([[[[1, 2]], [[1, 2, 3]]]], 'rectangular|numbers')):
    with pytest.raises(serving_core.ServingError, match=match) as e:
      serving_rest.json_to_array(
          bad, tf.TensorSpec([None, None, None, 3], tf.uint8, name='images'),
          'images')
    assert e.value.code == CODE.INVALID_ARGUMENT
  with pytest.raises(serving_core.ServingError, match='base64'):
    serving_rest.json_to_array([{'b64': '***'}], spec, 'image_bytes')


def test_version_policies():
  config = serving_core.ModelConfig('m', '/x')
  assert serving_core.wanted_versions(config, [3, 1, 2]) == [3]
  config.num_versions = 2
  assert serving_core.wanted_versions(config, [3, 1, 2]) == [2, 3]
  config.policy = 'all'
  assert serving_core.wanted_versions(config, [3, 1, 2]) == [1, 2, 3]
  config.policy, config.specific = 'specific', (1, 5)
  assert serving_core.wanted_versions(config, [3, 1, 2]) == [1]


def test_configs_from_file_and_base_path(tmp_path):
  (tmp_path / 'a' / '1').mkdir(parents=True)
  (tmp_path / 'a' / '1' / 'saved_model.pb').write_bytes(b'')
  (tmp_path / 'a' / '7').mkdir()  # no saved_model.pb: not a version
  path = tmp_path / 'models.config'
  path.write_text('''
      model_config_list {
        config { name: "a" base_path: "/models/a" model_platform: "tensorflow"
                 model_version_policy { specific { versions: 1 } }
                 version_labels { key: "stable" value: 1 } }
      }''')
  (config,) = serving_config.configs_from_file(str(path))
  assert config.base_path == str(tmp_path / 'a')  # found next to the file
  assert (config.policy, config.specific, config.labels) == (
      'specific', (1,), {'stable': 1})
  (single,) = serving_config.configs_from_base_path(str(tmp_path / 'a'))
  assert (single.name, single.base_path) == ('a', str(tmp_path / 'a'))
  (multi,) = serving_config.configs_from_base_path(str(tmp_path))
  assert multi.name == 'a'
  path.write_text('model_config_list { config { name: 1 } ')
  with pytest.raises(ValueError, match='ModelServerConfig'):
    serving_config.configs_from_file(str(path))
  with pytest.raises(FileNotFoundError, match='no SavedModel'):
    serving_config.configs_from_base_path(str(tmp_path / 'a' / '7'))


# ----------------------------------------------------------------------------
# gRPC
# ----------------------------------------------------------------------------

@pytest.fixture(scope='module')
def grpc_client(server):
  with client_lib.GrpcClient(server.grpc, timeout=120.) as c:
    yield c


def test_grpc_predict_every_model_matches_keras(exported, server,
                                               grpc_client):
  for name, sigs in exported.cases.items():
    for sig, cases in sigs.items():
      inputs, expected = cases[-1]
      response = grpc_client.predict_raw(grpc_client.predict_request(
          name, inputs, signature_name=sig))
      assert response.model_spec.name == name
      assert response.model_spec.signature_name == sig
      assert response.model_spec.version.value == (
          2 if name == 'export_test' else 1)
      outputs = {k: tf.make_ndarray(v) for k, v in response.outputs.items()}
      assert_close(outputs, expected, f'gRPC {name}/{sig}')
  # output_filter returns only what was asked for.
  inputs, expected = exported.cases[exported.names[0]]['serving_default'][0]
  out = grpc_client.predict(exported.names[0], inputs,
                            output_filter=['confidence'])
  assert list(out) == ['confidence']


def test_grpc_metadata_and_status(exported, server, grpc_client):
  for name in exported.names:
    meta = grpc_client.metadata(name)
    assert meta['model_spec'].name == name
    sigs = meta['signature_def']
    assert set(exported.cases[name]) <= set(sigs)
    for sig in exported.cases[name]:
      assert sigs[sig].method_name == 'tensorflow/serving/predict'
    status = grpc_client.status(name)
    expected = [2, 1] if name == 'export_test' else [1]
    assert [s['version'] for s in status] == expected
    assert all(s['state'] == 'AVAILABLE' and s['error_code'] == 0
               for s in status), status
  assert grpc_client.status('export_test', version_label='stable')[0][
      'version'] == 1


def _assert_rpc_error(fn, code, *fragments):
  with pytest.raises(grpc.RpcError) as e:
    fn()
  assert e.value.code() == code, (e.value.code(), e.value.details())
  for fragment in fragments:
    assert fragment in e.value.details(), (fragment, e.value.details())
  return e.value.details()


def test_grpc_errors_have_tf_serving_codes(exported, server, grpc_client):
  name = exported.names[0]
  inputs, expected = exported.cases[name]['serving_default'][0]
  c = grpc_client
  _assert_rpc_error(lambda: c.predict('no_such_model', inputs), CODE.NOT_FOUND,
                    'no_such_model')
  _assert_rpc_error(lambda: c.predict(name, inputs, version=9),
                    CODE.NOT_FOUND, 'Specific(', '9')
  _assert_rpc_error(lambda: c.predict('export_test', {}, version_label='x'),
                    CODE.INVALID_ARGUMENT, 'version label')
  _assert_rpc_error(lambda: c.predict(name, inputs, signature_name='nope'),
                    CODE.FAILED_PRECONDITION, '"nope"', 'serving_bytes')
  missing = {k: v for k, v in inputs.items() if k != 'intrinsics'}
  _assert_rpc_error(lambda: c.predict(name, missing), CODE.INVALID_ARGUMENT,
                    'Missing but required: {intrinsics}',
                    'intrinsics: float32 [?, 3, 3]')
  _assert_rpc_error(lambda: c.predict(name, dict(inputs, extra=np.ones(2))),
                    CODE.INVALID_ARGUMENT, 'Sent extra: {extra}')
  _assert_rpc_error(
      lambda: c.predict(name, dict(inputs, images=inputs['images'].astype(
          np.float32))),
      CODE.INVALID_ARGUMENT, "'images'", 'float32', 'uint8 [?, ?, ?, 3]')
  _assert_rpc_error(
      lambda: c.predict(name, dict(inputs, boxes=inputs['boxes'][:, :3])),
      CODE.INVALID_ARGUMENT, "'boxes'", 'float32 [?, 4]')
  _assert_rpc_error(
      lambda: c.predict(name, dict(inputs, boxes=np.concatenate(
          [inputs['boxes']] * 2))),
      CODE.INVALID_ARGUMENT, "'boxes'", 'one row per entry')
  bad_k = inputs['intrinsics'].copy()
  bad_k[:, 0, 0] = 0.
  _assert_rpc_error(lambda: c.predict(name, dict(inputs, intrinsics=bad_k)),
                    CODE.INVALID_ARGUMENT, 'focal')
  _assert_rpc_error(
      lambda: c.predict(name, {'image_bytes': np.array([b'not an image'],
                                                       dtype=object),
                               'boxes': inputs['boxes'][:1],
                               'intrinsics': inputs['intrinsics'][:1]},
                        signature_name='serving_bytes'),
      CODE.INVALID_ARGUMENT)
  from tensorflow_serving.apis import get_model_metadata_pb2
  request = get_model_metadata_pb2.GetModelMetadataRequest()
  request.model_spec.name = name
  _assert_rpc_error(lambda: c.prediction.GetModelMetadata(request),
                    CODE.INVALID_ARGUMENT, 'metadata_field')
  _assert_rpc_error(lambda: c.status('no_such_model'), CODE.NOT_FOUND)
  _assert_rpc_error(lambda: c.status(name, version=9), CODE.NOT_FOUND)
  # The server keeps serving.
  assert_close(c.predict(name, inputs), expected, 'after errors')
  assert server.process.poll() is None


def test_versions_labels_and_new_versions(exported, server, grpc_client):
  inputs, _ = exported.cases['export_test']['serving_default'][0]
  def version_of(**spec):
    request = grpc_client.predict_request('export_test', inputs, **spec)
    return grpc_client.predict_raw(request).model_spec.version.value
  assert version_of() == 2
  assert version_of(version=1) == 1
  assert version_of(version_label='stable') == 1
  assert version_of(version_label='canary') == 2
  # A version that appears while serving is loaded and becomes the default.
  model_dir = os.path.join(server.base, 'export_test')
  staging = os.path.join(server.base, '.staging-3')
  shutil.copytree(os.path.join(model_dir, '1'), staging)
  os.rename(staging, os.path.join(model_dir, '3'))
  deadline = time.time() + 180
  while time.time() < deadline:
    states = {s['version']: s['state']
              for s in grpc_client.status('export_test')}
    if states.get(3) == 'AVAILABLE':
      break
    time.sleep(0.5)
  assert states == {1: 'AVAILABLE', 2: 'AVAILABLE', 3: 'AVAILABLE'}, (
      states, server.log()[-3000:])
  assert version_of() == 3


# ----------------------------------------------------------------------------
# REST
# ----------------------------------------------------------------------------

def _rest(server, path: str, body=None, raw: bytes | None = None):
  data = raw if raw is not None else (
      None if body is None else json.dumps(body).encode())
  request = urllib.request.Request(server.rest + path, data=data,
                                   method='GET' if data is None else 'POST')
  try:
    with urllib.request.urlopen(request, timeout=120) as reply:
      return reply.status, json.loads(reply.read())
  except urllib.error.HTTPError as e:
    return e.code, json.loads(e.read())


def test_rest_predict_columnar_and_row(exported, server):
  rest = client_lib.RestClient(server.rest, timeout=120.)
  for name in (exported.names[0], 'export_test'):
    inputs, expected = exported.cases[name]['serving_default'][-1]
    assert_close(rest.predict(name, inputs), expected, f'REST columnar {name}')
    inputs, expected = exported.cases[name]['serving_bytes'][-1]
    assert_close(rest.predict(name, inputs, signature_name='serving_bytes',
                              row_format=True), expected, f'REST row {name}')
  inputs, expected = exported.cases['export_test']['lift'][0]
  assert_close(rest.predict('export_test', inputs, signature_name='lift',
                            version_label='stable'), expected, 'REST lift')
  # The row format answers with one object per instance.
  inputs, expected = exported.cases['export_test']['serving_default'][1]
  status, reply = _rest(server, '/v1/models/export_test/versions/1:predict', {
      'instances': [{k: client_lib.to_json_value(v[i])
                     for k, v in inputs.items()}
                    for i in range(len(inputs['boxes']))]})
  assert status == 200
  assert len(reply['predictions']) == len(inputs['boxes'])
  np.testing.assert_allclose(
      [p['poses2d_px'] for p in reply['predictions']],
      expected['poses2d_px'], rtol=1e-3, atol=1e-2)


def test_rest_status_and_metadata(exported, server):
  status, reply = _rest(server, '/v1/models/export_test')
  assert status == 200
  assert {s['version']: s['state'] for s in reply['model_version_status']}[
      '1'] == 'AVAILABLE'
  assert reply['model_version_status'][0]['status']['error_code'] == 'OK'
  status, reply = _rest(server, f'/v1/models/{exported.names[0]}/metadata')
  assert status == 200
  sigs = reply['metadata']['signature_def']['signature_def']
  assert sigs['serving_default']['method_name'] == 'tensorflow/serving/predict'
  assert set(sigs['serving_bytes']['inputs']) == {'image_bytes', 'boxes',
                                                  'intrinsics'}


def test_rest_errors(exported, server):
  name = exported.names[0]
  inputs, expected = exported.cases[name]['serving_default'][0]
  body = {'inputs': {k: client_lib.to_json_value(v)
                     for k, v in inputs.items()}}
  cases = [
      ('/v1/models/nope:predict', body, None, 404, 'nope'),
      (f'/v1/models/{name}/versions/9:predict', body, None, 404, '9'),
      (f'/v1/models/{name}:predict', {'inputs': {
          k: v for k, v in body['inputs'].items() if k != 'boxes'}}, None,
       400, 'Missing but required: {boxes}'),
      (f'/v1/models/{name}:predict', dict(body, signature_name='nope'), None,
       400, 'nope'),
      (f'/v1/models/{name}:predict', None, b'{not json', 400, 'JSON'),
      (f'/v1/models/{name}:predict', {'instances': [], 'inputs': {}}, None,
       400, 'only one of'),
      (f'/v1/models/{name}:predict', {'inputs': dict(
          body['inputs'], boxes=[[0, 0, 1]])}, None, 400, "'boxes'"),
      (f'/v1/models/{name}:predict', {'inputs': dict(
          body['inputs'], images=[[[['a', 'b', 'c']]]])}, None, 400,
       "'images'"),
      ('/v1/models', None, None, 400, 'Malformed'),
  ]
  for path, payload, raw, want_status, fragment in cases:
    status, reply = _rest(server, path, payload, raw)
    assert status == want_status, (path, status, reply)
    assert set(reply) == {'error'} and fragment in reply['error'], (
        path, reply)
  with pytest.raises(client_lib.RestError) as e:
    client_lib.RestClient(server.rest).predict('nope', inputs)
  assert e.value.status == 404
  # Still serving.
  assert_close(client_lib.RestClient(server.rest, 120.).predict(name, inputs),
               expected, 'REST after errors')
