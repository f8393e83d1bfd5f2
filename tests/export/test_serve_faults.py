"""export.serve under load and faults: a soak with concurrent gRPC and REST
clients across a version swap, a new version that fails to load, a version
released only once no request runs in it, REST edge cases (bad framing,
methods, versions, nesting) and degenerate inputs."""
from __future__ import annotations

import http.client
import json
import os
import shutil
import threading
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import predict_pb2

from conftest import assert_close
from conftest import serve_process
from export import client as client_lib
from export import serve
from export import serving_core
from export import warmup

CODE = grpc.StatusCode
NAME = 'export_test'


def _copy_version(source: str, model_dir: str, version: int) -> str:
  """Copies a version directory in, appearing at once (staged + rename)."""
  staging = os.path.join(os.path.dirname(model_dir), f'.staging-{version}')
  shutil.copytree(source, staging)
  final = os.path.join(model_dir, str(version))
  os.rename(staging, final)
  return final


def _truncate_variables(version_dir: str) -> None:
  variables = os.path.join(version_dir, 'variables')
  (data,) = [f for f in os.listdir(variables) if f.startswith(
      'variables.data')]
  path = os.path.join(variables, data)
  with open(path, 'r+b') as f:
    f.truncate(os.path.getsize(path) // 2)


@pytest.fixture
def model_dir(exported, tmp_path) -> str:
  """BASE/export_test with version 1 only (a copy of the shared export)."""
  directory = tmp_path / 'models' / NAME
  directory.mkdir(parents=True)
  shutil.copytree(os.path.join(exported.base, NAME, '1'), directory / '1')
  return str(directory)


# ----------------------------------------------------------------------------
# Soak: concurrent gRPC + REST clients across a hot version swap
# ----------------------------------------------------------------------------

def test_soak_concurrent_clients_across_a_version_swap(exported, model_dir,
                                                       tmp_path):
  cases = exported.cases[NAME]
  root = tmp_path / 'soak'
  root.mkdir()
  with serve_process([f'--model_base_path={model_dir}',
                      '--file_system_poll_wait_seconds=0.2'], root,
                     model_dir) as server:
    stop = threading.Event()
    lock = threading.Lock()
    errors: list[str] = []
    versions_seen: dict[int, int] = {}
    done = {'grpc': 0, 'rest': 0}

    def grpc_client(signature: str):
      with client_lib.GrpcClient(server.grpc, timeout=120.) as client:
        inputs, expected = cases[signature][0]
        while not stop.is_set():
          try:
            request = client.predict_request(NAME, inputs,
                                             signature_name=signature)
            reply = client.predict_raw(request)
            outputs = {k: tf.make_ndarray(v)
                       for k, v in reply.outputs.items()}
            assert_close(outputs, expected, f'gRPC {signature}')
            with lock:
              done['grpc'] += 1
              version = reply.model_spec.version.value
              versions_seen[version] = versions_seen.get(version, 0) + 1
          except Exception as e:  # noqa: BLE001  (every failure counts)
            with lock:
              errors.append(f'gRPC {signature}: {e!r}'[:500])

    def rest_client(row_format: bool):
      rest = client_lib.RestClient(server.rest, timeout=120.)
      inputs, expected = cases['serving_default'][0]
      while not stop.is_set():
        try:
          assert_close(rest.predict(NAME, inputs, row_format=row_format),
                       expected, 'REST')
          with lock:
            done['rest'] += 1
        except Exception as e:  # noqa: BLE001
          with lock:
            errors.append(f'REST: {e!r}'[:500])

    threads = [threading.Thread(target=grpc_client, args=(s,)) for s in
               ('serving_default', 'serving_bytes', 'lift')] + [
                   threading.Thread(target=rest_client, args=(r,))
                   for r in (False, True)]
    for thread in threads:
      thread.start()
    try:
      time.sleep(1.5)
      _copy_version(os.path.join(model_dir, '1'), model_dir, 2)
      # Bounded: until version 2 answered a few requests and >= 4 s passed.
      start, deadline = time.time(), time.time() + 240
      while time.time() < deadline and not errors:
        with lock:
          swapped = versions_seen.get(2, 0) >= 10
        if swapped and time.time() - start >= 2.5:
          break
        if server.process.poll() is not None:
          break
        time.sleep(0.1)
    finally:
      stop.set()
      for thread in threads:
        thread.join(timeout=180)
    assert server.process.poll() is None, server.log()[-3000:]
    assert not errors, (errors[:5], server.log()[-3000:])
    assert versions_seen.get(1, 0) > 0 and versions_seen.get(2, 0) >= 10, (
        versions_seen, server.log()[-3000:])
    assert done['rest'] > 0 and done['grpc'] > 0, done
    with client_lib.GrpcClient(server.grpc, timeout=60.) as client:
      deadline = time.time() + 120  # version 1 is released after its requests
      while time.time() < deadline:
        states = {s['version']: s['state'] for s in client.status(NAME)}
        if states.get(1) == 'END':
          break
        time.sleep(0.2)
      assert states == {1: 'END', 2: 'AVAILABLE'}, states
      inputs, expected = cases['serving_default'][-1]
      assert_close(client.predict(NAME, inputs), expected, 'after the soak')
    assert 'Unloaded export_test version 1' in server.log()


# ----------------------------------------------------------------------------
# Versions: a failed new version, a version in use (in process)
# ----------------------------------------------------------------------------

def _core(model_dir: str) -> serving_core.ServerCore:
  core = serving_core.ServerCore(
      [serving_core.ModelConfig(NAME, model_dir)], warmup=True,
      poll_seconds=0)
  core.sync()
  return core


def _spec(version: int | None = None):
  spec = predict_pb2.PredictRequest().model_spec
  spec.name = NAME
  if version is not None:
    spec.version.value = version
  return spec


def test_a_failed_new_version_leaves_the_served_one(exported, model_dir,
                                                    monkeypatch):
  core = _core(model_dir)
  model = core.models[NAME]
  assert sorted(model.servables) == [1]
  bad = _copy_version(os.path.join(model_dir, '1'), model_dir, 2)
  _truncate_variables(bad)
  loads = []
  real_load = serving_core.ServerCore._load
  monkeypatch.setattr(serving_core.ServerCore, '_load', lambda self, m, v: (
      loads.append(v), real_load(self, m, v))[1])
  core.sync()
  assert loads == [2]
  assert sorted(model.servables) == [1]
  state, code, message = model.states[2]
  assert state == serving_core.VersionState.END and code != 0, model.states
  assert 'failed to load' in message, message
  assert model.states[1][0] == serving_core.VersionState.AVAILABLE
  # Requests still go to version 1; GetModelStatus reports both.
  inputs, expected = exported.cases[NAME]['serving_default'][0]
  request = predict_pb2.PredictRequest()
  request.model_spec.CopyFrom(_spec())
  for key, value in inputs.items():
    request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
  reply = core.predict(request)
  assert reply.model_spec.version.value == 1
  status_request = get_model_status_pb2.GetModelStatusRequest()
  status_request.model_spec.name = NAME
  status = {s.version: (s.state, s.status.error_message)
            for s in core.status(status_request).model_version_status}
  assert status[1][0] == serving_core.VersionState.AVAILABLE
  assert status[2][0] == serving_core.VersionState.END
  assert 'failed to load' in status[2][1]
  # Not retried while its files stay the same ...
  core.sync()
  core.sync()
  assert loads == [2]
  # ... retried once they change: repaired, it loads and replaces version 1.
  shutil.rmtree(bad)
  _copy_version(os.path.join(model_dir, '1'), model_dir, 2)
  core.sync()
  assert loads == [2, 2]
  assert sorted(model.servables) == [2]
  assert model.states[2][0] == serving_core.VersionState.AVAILABLE
  assert model.states[1][0] == serving_core.VersionState.END


def test_a_version_in_use_is_released_only_when_idle(exported, model_dir):
  core = _core(model_dir)
  model = core.models[NAME]
  with core.using(_spec(1)) as held:
    _copy_version(os.path.join(model_dir, '1'), model_dir, 2)
    started = time.time()
    core._reap = lambda wait_seconds=0.2, reap=core._reap: reap(wait_seconds)
    core.sync()
    assert sorted(model.servables) == [2]
    # Retired (no new request gets it) but not released: a request runs in it.
    assert held._loaded is not None and not held.idle
    assert model.states[1][0] == serving_core.VersionState.UNLOADING
    assert not held.acquire()
    inputs, expected = exported.cases[NAME]['serving_default'][0]
    assert_close(held.run(held.signature(''), inputs), expected,
                 'the retired version still answers its running request')
  assert time.time() - started < 60
  core.sync()  # the next poll releases it
  assert held._loaded is None and held.signatures == {}
  assert model.states[1][0] == serving_core.VersionState.END


# ----------------------------------------------------------------------------
# REST edge cases and degenerate inputs (in-process server)
# ----------------------------------------------------------------------------

@pytest.fixture(scope='module')
def running(exported, tmp_path_factory):
  base = tmp_path_factory.mktemp('faults') / NAME
  shutil.copytree(os.path.join(exported.base, NAME, '1'), base / '1')
  server = serve.start_server(
      [serving_core.ModelConfig(NAME, str(base))], port=0, rest_api_port=0,
      poll_seconds=0)
  yield server
  server.stop()


def _raw_http(port: int, method: str, path: str, body: bytes = b'',
              headers: dict | None = None) -> tuple[int, dict]:
  connection = http.client.HTTPConnection('127.0.0.1', port, timeout=60)
  try:
    connection.putrequest(method, path, skip_accept_encoding=True)
    for key, value in (headers or {}).items():
      connection.putheader(key, value)
    connection.endheaders()
    if body:
      connection.send(body)
    reply = connection.getresponse()
    return reply.status, json.loads(reply.read() or b'null')
  finally:
    connection.close()


def _body(inputs: dict) -> bytes:
  return json.dumps({'inputs': {k: client_lib.to_json_value(v)
                                for k, v in inputs.items()}}).encode()


def test_rest_framing_methods_versions_and_nesting(exported, running):
  port = running.rest_port
  inputs, expected = exported.cases[NAME]['serving_default'][0]
  path = f'/v1/models/{NAME}:predict'
  cases = [
      ('POST', f'/v1/models/{NAME}/versions/{2 ** 64}:predict', _body(inputs),
       {}, 400, 'not a valid version number'),
      ('GET', f'/v1/models/{NAME}/versions/99999999999999999999999', b'', {},
       400, 'not a valid version number'),
      ('POST', path, b'[' * 100000, {}, 400, 'nested too deeply'),
      ('POST', path, b'', {'Content-Length': 'abc'}, 400,
       "invalid Content-Length 'abc'"),
      ('POST', path, b'', {'Content-Length': '-5'}, 400,
       "invalid Content-Length '-5'"),
      ('PUT', path, b'', {}, 405, 'method PUT is not supported'),
      ('DELETE', f'/v1/models/{NAME}', b'', {}, 405,
       'method DELETE is not supported'),
      ('OPTIONS', path, b'', {}, 501, 'Unsupported method'),
  ]
  for method, url, body, headers, want, fragment in cases:
    if body and 'Content-Length' not in headers:
      headers = dict(headers, **{'Content-Length': str(len(body))})
    status, reply = _raw_http(port, method, url, body, headers)
    assert status == want, (method, url, status, reply)
    assert isinstance(reply, dict) and set(reply) == {'error'}, reply
    assert fragment in reply['error'], (method, url, reply)
  # Deep but parseable nesting in a tensor value: a clear 400 too.
  status, reply = _raw_http(port, 'POST', path, json.dumps(
      {'inputs': {'images': json.loads('[' * 900 + ']' * 900)}}).encode(),
      {'Content-Length': str(len(json.dumps(
          {'inputs': {'images': json.loads('[' * 900 + ']' * 900)}})))})
  assert status == 400 and 'error' in reply, reply
  # Booleans are not pixels.
  body = json.loads(_body(inputs))
  body['inputs']['images'] = np.asarray(inputs['images'] > 127).tolist()
  raw = json.dumps(body).encode()
  status, reply = _raw_http(port, 'POST', path, raw,
                            {'Content-Length': str(len(raw))})
  assert status == 400 and "'images'" in reply['error'] and \
      'boolean' in reply['error'], reply
  # Still serving.
  rest = client_lib.RestClient(f'http://127.0.0.1:{port}', timeout=60.)
  assert_close(rest.predict(NAME, inputs), expected, 'after the edge cases')


def test_degenerate_inputs_are_rejected_naming_the_input(exported, running):
  grpc_client = client_lib.GrpcClient(f'127.0.0.1:{running.grpc_port}',
                                      timeout=60.)
  good = warmup.image_request(2, 40, 50, seed=3)

  def with_(**changes):
    return dict(good, **changes)

  singular = good['intrinsics'].copy()
  singular[:, 2, :] = 0.
  zero_focal = good['intrinsics'].copy()
  zero_focal[0, 0, 0] = 0.
  boxes_zero = good['boxes'].copy()
  boxes_zero[1, 2] = 0.
  boxes_negative = good['boxes'].copy()
  boxes_negative[0, 3] = -4.
  cases = [
      (with_(images=np.zeros([2, 0, 0, 3], np.uint8)), "'images'",
       'height and width'),
      (with_(boxes=boxes_zero), "'boxes'", 'positive width and height'),
      (with_(boxes=boxes_negative), "'boxes'", 'positive width and height'),
      ({'images': good['images'][:0], 'boxes': good['boxes'][:0],
        'intrinsics': good['intrinsics'][:0]}, "'images'", 'batch size 0'),
      (with_(intrinsics=singular), "'intrinsics'", 'invertible'),
      (with_(intrinsics=zero_focal), "'intrinsics'",
       'fx = K[0][0] and fy = K[1][1] (pixels)'),
  ]
  for inputs, name, fragment in cases:
    with pytest.raises(grpc.RpcError) as e:
      grpc_client.predict(NAME, inputs)
    assert e.value.code() == CODE.INVALID_ARGUMENT, e.value.details()
    assert name in e.value.details() and fragment in e.value.details(), (
        e.value.details())
    # The same over REST: 400 naming an input (JSON cannot carry the shape
    # of an empty array, so [2, 0, 0, 3] arrives as [2, 0]: a shape error).
    rest = client_lib.RestClient(f'http://127.0.0.1:{running.rest_port}',
                                 timeout=60.)
    with pytest.raises(client_lib.RestError) as e:
      rest.predict(NAME, inputs)
    empty = min(v.size for v in inputs.values()) == 0
    assert e.value.status == 400, str(e.value)
    assert (("input '" in e.value.message) if empty else
            (name in e.value.message and fragment in e.value.message)), (
                str(e.value))
  grpc_client.close()


def test_clean_tf_message_keeps_brackets_inside_the_assertion():
  message = ("assertion failed: [input 'intrinsics' must have positive focal "
             'lengths fx = K[0][0] and fy = K[1][1] (pixels)]\n\t [[{{node '
             'Assert}}]] [Op:__inference_signature_wrapper_123]')
  assert serving_core.clean_tf_message(message) == (
      "input 'intrinsics' must have positive focal lengths fx = K[0][0] and "
      'fy = K[1][1] (pixels)')
