"""The `lift` signature of exported decoupled models: keypoints -> poses,
through the SavedModel, its warm-up records, the local server and the client."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from export import client as client_lib
from export import saved_model
from export import serve
from export import serving_core
from export import warmup
from zoo import base
from zoo import keypoints
from zoo import lift_lib
from zoo import skeleton as skel
from zoo import weights as weights_lib

NAME = 'decoupled_volumetric'


@pytest.fixture(scope='module')
def export(exported, tmp_path_factory):
  """(Keras model, BASE, BASE/NAME/1): the session's export of NAME (see
  conftest.py), or, when POSE3D_EXPORT_TEST_MODELS leaves it out, a fresh
  one."""
  if NAME in exported.models:
    return (exported.models[NAME], exported.base,
            os.path.join(exported.base, NAME, '1'))
  from zoo import registry
  entry = registry.get(NAME)
  tf.keras.utils.set_random_seed(5)
  model = weights_lib.build_model(entry, entry.config('smoke'))
  base = str(tmp_path_factory.mktemp('lift_export'))
  path = saved_model.export_model(model, base, NAME, verify=True)
  return model, base, path


def test_signature_inputs_and_outputs(export):
  _, _, path = export
  loaded = tf.saved_model.load(path)
  lift = loaded.signatures['lift']
  inputs = lift.structured_input_signature[1]
  assert {k: (v.shape.as_list(), v.dtype) for k, v in inputs.items()} == {
      'keypoints2d_px': ([None, 17, 2], tf.float32),
      'scores': ([None, 17], tf.float32),
      'intrinsics': ([None, 3, 3], tf.float32)}
  assert sorted(lift.structured_outputs) == sorted(
      loaded.signatures['serving_default'].structured_outputs)


def test_matches_keras_and_geometry(export):
  model, _, path = export
  request = warmup.keypoints_request(3, 300, 400, seed=1)
  served = tf.saved_model.load(path).signatures['lift'](
      **{k: tf.constant(v) for k, v in request.items()})
  keras_out = lift_lib.lift_decoupled_tf(model, *[
      tf.constant(request[k]) for k in ('keypoints2d_px', 'scores',
                                        'intrinsics')])
  for key in base.OUTPUT_KEYS:
    np.testing.assert_allclose(served[key].numpy(), keras_out[key].numpy(),
                               rtol=1e-4, atol=1e-2)
  # Detected joints keep their keypoints; missing ones have confidence 0.
  valid = request['scores'] >= keypoints.DEFAULT_MIN_SCORE
  np.testing.assert_allclose(served['poses2d_px'].numpy()[valid],
                             request['keypoints2d_px'][valid], atol=0.05)
  assert np.all(served['confidence'].numpy()[~valid] == 0.)


def test_bad_scores_are_rejected(export):
  _, _, path = export
  request = warmup.keypoints_request(1, 300, 400, seed=2)
  request['scores'][0, 3] = -1.
  with pytest.raises(tf.errors.InvalidArgumentError, match='scores'):
    tf.saved_model.load(path).signatures['lift'](
        **{k: tf.constant(v) for k, v in request.items()})


def test_warmup_records_cover_lift(export):
  _, _, path = export
  logs = warmup.read_warmup_file(
      os.path.join(path, 'assets.extra', warmup.WARMUP_FILE))
  lift = [log for log in logs
          if log.predict_log.request.model_spec.signature_name == 'lift']
  assert len(lift) == 2
  scores = tf.make_ndarray(lift[0].predict_log.request.inputs['scores'])
  assert scores.shape == (1, 17) and np.all(scores >= 0)


def _keypoints_file(tmp_path):
  request = warmup.keypoints_request(2, 480, 640, seed=3)
  persons = [{'image_id': 1, 'keypoints2d_px': kp.tolist(),
              'scores': sc.tolist()}
             for kp, sc in zip(request['keypoints2d_px'], request['scores'])]
  persons.append({'image_id': 1, 'keypoints2d_px': [[1., 1.]] * 17,
                  'scores': [0.] * 17})  # nothing detected: not sent
  path = tmp_path / 'people.json'
  path.write_text(json.dumps({'joint_names': list(skel.H36M17.joint_names),
                              'persons': persons}))
  return str(path), request


def test_server_and_client(export, tmp_path, capsys):
  model, base, _ = export
  keypoints, request = _keypoints_file(tmp_path)
  inputs, info = client_lib.keypoint_inputs(keypoints, image_size=(640, 480))
  assert info['persons'] == [0, 1] and info['skipped'][0]['index'] == 2
  np.testing.assert_allclose(inputs['keypoints2d_px'],
                             request['keypoints2d_px'])
  server = serve.start_server([serving_core.ModelConfig(NAME, os.path.join(base,
                                                                    NAME))],
                              port=0, rest_api_port=0)
  try:
    expected = lift_lib.lift_decoupled_tf(model, *[
        tf.constant(inputs[k]) for k in ('keypoints2d_px', 'scores',
                                         'intrinsics')])
    with client_lib.GrpcClient(f'127.0.0.1:{server.grpc_port}', 120.) as c:
      grpc_out = c.predict(NAME, inputs, 'lift')
    rest_out = client_lib.RestClient(f'http://127.0.0.1:{server.rest_port}',
                                     120.).predict(NAME, inputs, 'lift')
    for out in (grpc_out, rest_out):
      np.testing.assert_allclose(out['poses3d_cam_mm'],
                                 expected['poses3d_cam_mm'].numpy(),
                                 rtol=1e-4, atol=1e-2)
    code = client_lib.main([f'--server=127.0.0.1:{server.grpc_port}',
                            f'--model={NAME}', f'--keypoints={keypoints}',
                            '--image_size=640,480', '--json'])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed['persons'] == [0, 1]
    np.testing.assert_allclose(printed['poses3d_cam_mm'],
                               expected['poses3d_cam_mm'].numpy(), atol=0.01)
  finally:
    server.stop()
