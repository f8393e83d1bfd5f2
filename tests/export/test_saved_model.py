"""Tests of export.saved_model (+ serving_module, warmup): layout, signatures,
agreement with Keras in a process that cannot import the zoo, saved_model_cli,
models.config / batching / warm-up files, versioning and atomic export."""
from __future__ import annotations

import os
import pickle
import subprocess
import sys
import tempfile
import textwrap

import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format

from conftest import assert_close
from export import saved_model
from export import serving_module
from export import warmup
from zoo import weights as weights_lib

PREDICT = 'tensorflow/serving/predict'
IMAGE_OUTPUTS = {'poses3d_cam_mm': [-1, 17, 3], 'poses3d_rel_mm': [-1, 17, 3],
                 'poses2d_px': [-1, 17, 2], 'confidence': [-1, 17]}


def _signature_defs(path: str):
  from tensorflow.core.protobuf import saved_model_pb2
  proto = saved_model_pb2.SavedModel()
  with open(os.path.join(path, 'saved_model.pb'), 'rb') as f:
    proto.ParseFromString(f.read())
  (graph,) = proto.meta_graphs
  assert list(graph.meta_info_def.tags) == ['serve']
  return {k: v for k, v in graph.signature_def.items()
          if not k.startswith('__')}


def _dims(info) -> list[int]:
  return [d.size for d in info.tensor_shape.dim]


def _clean_env() -> dict:
  env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
  env['TF_CPP_MIN_LOG_LEVEL'] = '2'
  return env


def test_layout_and_signatures(exported):
  assert sorted(saved_model.list_models(exported.base)) == exported.names
  for name in exported.names:
    path = os.path.join(exported.base, name, '1')
    for item in ('saved_model.pb', 'variables/variables.index',
                 'assets.extra/tf_serving_warmup_requests',
                 'assets.extra/pose3d_zoo.json'):
      assert os.path.exists(os.path.join(path, item)), (name, item)
    sigs = _signature_defs(path)
    assert sorted(sigs) == sorted(exported.cases[name]), name
    assert {'serving_default', 'serving_bytes'} <= set(sigs)
    for sig_name, sig in sigs.items():
      assert sig.method_name == PREDICT, (name, sig_name)
      for key, info in list(sig.inputs.items()) + list(sig.outputs.items()):
        assert _dims(info)[0] == -1, (name, sig_name, key, 'batch dim')
      for key, info in sig.outputs.items():
        assert info.dtype == tf.float32.as_datatype_enum, (name, key)
    default = sigs['serving_default']
    assert {k: (tf.dtypes.as_dtype(v.dtype).name, _dims(v))
            for k, v in default.inputs.items()} == {
                'images': ('uint8', [-1, -1, -1, 3]),
                'boxes': ('float32', [-1, 4]),
                'intrinsics': ('float32', [-1, 3, 3])}
    assert {k: (tf.dtypes.as_dtype(v.dtype).name, _dims(v))
            for k, v in sigs['serving_bytes'].inputs.items()} == {
                'image_bytes': ('string', [-1]),
                'boxes': ('float32', [-1, 4]),
                'intrinsics': ('float32', [-1, 3, 3])}
    for sig_name in ('serving_default', 'serving_bytes'):
      assert {k: _dims(v) for k, v in sigs[sig_name].outputs.items()} == \
          IMAGE_OUTPUTS, (name, sig_name)
  lift = _signature_defs(os.path.join(exported.base, 'export_test', '1'))[
      'lift']
  assert sorted(lift.inputs) == ['joint_weights', 'poses2d']


def test_fresh_process_without_zoo_matches_keras(exported, tmp_path):
  """Every signature of every export, loaded where `import zoo` fails, in a
  TF1 session: how TF Serving and saved_model_cli load a SavedModel (the
  MetaGraph's saver restores the variables; tf.saved_model.load restores
  through the object graph instead, which is more forgiving). The TF2 path is
  checked here for export_test and for every model by test_serve.py, whose
  server process cannot import the zoo either."""
  requests = {name: {sig: [inputs for inputs, _ in cases]
                     for sig, cases in sigs.items()}
              for name, sigs in exported.cases.items()}
  with open(tmp_path / 'requests.pkl', 'wb') as f:
    pickle.dump({'base': exported.base, 'requests': requests}, f)
  script = tmp_path / 'run_exports.py'
  script.write_text(textwrap.dedent('''
      import pickle, sys
      try:
        import zoo  # noqa
        zoo_importable = True
      except ImportError:
        zoo_importable = False
      import tensorflow as tf
      with open('requests.pkl', 'rb') as f:
        job = pickle.load(f)
      tf2, tf1 = {}, {}
      for name, sigs in job['requests'].items():
        path = f"{job['base']}/{name}/1"
        if name == 'export_test':
          loaded = tf.saved_model.load(path)
          tf2[name] = {
              sig: [{k: v.numpy() for k, v in loaded.signatures[sig](
                  **{k: tf.constant(v) for k, v in inputs.items()}).items()}
                    for inputs in requests]
              for sig, requests in sigs.items()}
        with tf.compat.v1.Session(graph=tf.Graph()) as sess:
          meta = tf.compat.v1.saved_model.loader.load(sess, ['serve'], path)
          tf1[name] = {}
          for sig, requests in sigs.items():
            sig_def = meta.signature_def[sig]
            fetch = {k: v.name for k, v in sig_def.outputs.items()}
            tf1[name][sig] = [sess.run(fetch, {
                sig_def.inputs[k].name: v for k, v in inputs.items()})
                              for inputs in requests]
      with open('outputs.pkl', 'wb') as f:
        pickle.dump({'zoo_importable': zoo_importable, 'sys_path': sys.path,
                     'tf2': tf2, 'tf1': tf1}, f)
      '''))
  proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path,
                        env=_clean_env(), capture_output=True, text=True,
                        timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(tmp_path / 'outputs.pkl', 'rb') as f:
    out = pickle.load(f)
  assert out['zoo_importable'] is False, out['sys_path']
  assert sorted(out['tf1']) == exported.names
  assert list(out['tf2']) == ['export_test']
  for loader in ('tf2', 'tf1'):
    for name, sigs in exported.cases.items():
      if name not in out[loader]:
        continue
      for sig, cases in sigs.items():
        assert len(out[loader][name][sig]) == len(cases)
        for i, (_, expected) in enumerate(cases):
          assert_close(out[loader][name][sig][i], expected,
                       f'{loader} {name}/{sig}/request {i}')


def test_saved_model_cli_show_and_run(exported, tmp_path):
  path = os.path.join(exported.base, 'export_test', '1')
  cli = [sys.executable, '-m', 'tensorflow.python.tools.saved_model_cli']
  show = subprocess.run(cli + ['show', '--dir', path, '--all'], cwd=tmp_path,
                        env=_clean_env(), capture_output=True, text=True,
                        timeout=300)
  assert show.returncode == 0, show.stderr[-3000:]
  for text in ("signature_def['serving_default']",
               "signature_def['serving_bytes']", "signature_def['lift']",
               f'Method name is: {PREDICT}', "inputs['images']",
               "inputs['image_bytes']", "outputs['poses3d_cam_mm']"):
    assert text in show.stdout, text

  inputs, expected = exported.cases['export_test']['serving_default'][1]
  for key, value in inputs.items():
    np.save(tmp_path / f'{key}.npy', value)
  run = subprocess.run(
      cli + ['run', '--dir', path, '--tag_set', 'serve', '--signature_def',
             'serving_default', '--inputs',
             ';'.join(f'{k}={tmp_path / k}.npy' for k in inputs),
             '--outdir', str(tmp_path / 'out')],
      cwd=tmp_path, env=_clean_env(), capture_output=True, text=True,
      timeout=300)
  assert run.returncode == 0, run.stderr[-3000:]
  actual = {k: np.load(tmp_path / 'out' / f'{k}.npy') for k in expected}
  assert_close(actual, expected, 'saved_model_cli run')


def test_models_config_parses(exported):
  from tensorflow_serving.config import model_server_config_pb2
  config = model_server_config_pb2.ModelServerConfig()
  with open(os.path.join(exported.base, 'models.config')) as f:
    text_format.Parse(f.read(), config)
  entries = config.model_config_list.config
  assert [c.name for c in entries] == exported.names
  for c in entries:
    assert c.base_path == f'/models/{c.name}'
    assert c.model_platform == 'tensorflow'


def _batching_parameters_class():
  """BatchingParameters (tensorflow_serving session_bundle_config.proto),
  declared here because tensorflow-serving-api does not ship it."""
  from google.protobuf import descriptor_pb2
  from google.protobuf import descriptor_pool
  from google.protobuf import message_factory
  from google.protobuf import wrappers_pb2
  pool = descriptor_pool.DescriptorPool()
  wrappers = descriptor_pb2.FileDescriptorProto()
  wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
  pool.Add(wrappers)
  proto = descriptor_pb2.FileDescriptorProto(
      name='batching_test.proto', package='test',
      dependency=['google/protobuf/wrappers.proto'])
  msg = proto.message_type.add(name='BatchingParameters')
  f = descriptor_pb2.FieldDescriptorProto
  for number, (name, type_name) in enumerate([
      ('max_batch_size', '.google.protobuf.Int64Value'),
      ('batch_timeout_micros', '.google.protobuf.Int64Value'),
      ('max_enqueued_batches', '.google.protobuf.Int64Value'),
      ('num_batch_threads', '.google.protobuf.Int64Value')], start=1):
    msg.field.add(name=name, number=number, type=f.TYPE_MESSAGE,
                  type_name=type_name, label=f.LABEL_OPTIONAL)
  msg.field.add(name='allowed_batch_sizes', number=10, type=f.TYPE_INT64,
                label=f.LABEL_REPEATED)
  msg.field.add(name='pad_variable_length_inputs', number=11,
                type=f.TYPE_BOOL, label=f.LABEL_OPTIONAL)
  pool.Add(proto)
  return message_factory.GetMessageClass(
      pool.FindMessageTypeByName('test.BatchingParameters'))


def test_batching_parameters_parse(exported):
  params = _batching_parameters_class()()
  with open(os.path.join(exported.base, 'batching_parameters.txt')) as f:
    text_format.Parse(f.read(), params)
  assert params.max_batch_size.value == 32
  assert params.batch_timeout_micros.value > 0
  assert params.num_batch_threads.value >= 1
  assert params.pad_variable_length_inputs


def test_warmup_records_parse(exported):
  for name in exported.names:
    path = os.path.join(exported.base, name, '1')
    logs = warmup.read_warmup_file(
        os.path.join(path, 'assets.extra', warmup.WARMUP_FILE))
    sigs = _signature_defs(path)
    assert 0 < len(logs) <= warmup.MAX_WARMUP_RECORDS
    seen = set()
    for log in logs:
      request = log.predict_log.request
      assert request.model_spec.name == name
      sig = request.model_spec.signature_name
      seen.add(sig)
      assert sorted(request.inputs) == sorted(sigs[sig].inputs), (name, sig)
      for key, tensor in request.inputs.items():
        assert tensor.dtype == sigs[sig].inputs[key].dtype, (name, sig, key)
    assert seen == set(sigs), name


# ----------------------------------------------------------------------------
# Versions and atomicity (the tiny export_test model)
# ----------------------------------------------------------------------------

def _fingerprint(path: str) -> bytes:
  with open(os.path.join(path, 'saved_model.pb'), 'rb') as f:
    return f.read()


def _leftovers(base: str) -> list[str]:
  return [e for e in os.listdir(base) if e.startswith('.')]


def test_versions_and_atomic_failure(exported, tmp_path, monkeypatch):
  model = exported.models['export_test']
  base = str(tmp_path / 'base')
  kwargs = dict(write_warmup=False, verify=False)
  v1 = saved_model.export_model(model, base, 'export_test', **kwargs)
  assert v1 == os.path.join(base, 'export_test', '1')
  assert saved_model.next_version(os.path.join(base, 'export_test')) == 2
  with pytest.raises(FileExistsError, match='--overwrite'):
    saved_model.export_model(model, base, 'export_test', version=1, **kwargs)
  good = _fingerprint(v1)

  # A failure after the SavedModel is written (warm-up) ...
  def broken_warmup(*args, **kw):
    raise RuntimeError('disk full (simulated)')
  monkeypatch.setattr(warmup, 'write_warmup_file', broken_warmup)
  with pytest.raises(RuntimeError, match='simulated'):
    saved_model.export_model(model, base, 'export_test', version=1,
                             overwrite=True, verify=False)
  with pytest.raises(RuntimeError, match='simulated'):
    saved_model.export_model(model, base, 'export_test', verify=False)
  monkeypatch.undo()

  # ... and one in the middle of tf.saved_model.save (a half-written model).
  real_save = tf.saved_model.save
  def half_save(obj, path, **kw):
    os.makedirs(os.path.join(path, 'variables'))
    with open(os.path.join(path, 'saved_model.pb'), 'wb') as f:
      f.write(b'\x08half')
    raise OSError('killed during save (simulated)')
  monkeypatch.setattr(tf.saved_model, 'save', half_save)
  with pytest.raises(OSError, match='simulated'):
    saved_model.export_model(model, base, 'export_test', version=1,
                             overwrite=True, **kwargs)
  monkeypatch.setattr(tf.saved_model, 'save', real_save)

  # The good version is untouched, nothing half-written is visible.
  assert _fingerprint(v1) == good
  assert saved_model.versions(os.path.join(base, 'export_test')) == [1]
  assert sorted(os.listdir(os.path.join(base, 'export_test'))) == ['1']
  assert _leftovers(base) == []
  loaded = tf.saved_model.load(v1)
  assert 'serving_default' in loaded.signatures

  # Overwriting works when asked to; the default version is highest + 1.
  saved_model.export_model(model, base, 'export_test', version=1,
                           overwrite=True, **kwargs)
  v2 = saved_model.export_model(model, base, 'export_test', **kwargs)
  assert v2.endswith(os.path.join('export_test', '2'))
  assert _leftovers(base) == []
  assert saved_model.list_models(base) == {'export_test': [1, 2]}


def test_verify_rejects_a_broken_model(exported, tmp_path):
  from zoo import registry
  entry = registry.get('export_test')
  model = weights_lib.build_model(entry, entry.config('smoke'))
  model.head.kernel.assign(np.full(model.head.kernel.shape, np.nan))
  base = str(tmp_path / 'base')
  with pytest.raises(RuntimeError, match='not finite'):
    saved_model.export_model(model, base, 'export_test', write_warmup=False)
  assert saved_model.list_models(base) == {} and _leftovers(base) == []


def test_extra_signature_validation(exported):
  model = exported.models['export_test']

  class Clashing:
    def __getattr__(self, name):
      return getattr(model, name)

    def extra_serving_signatures(self):
      return {'serving_default': model.extra_serving_signatures()['lift']}

  with pytest.raises(ValueError, match='serving_default'):
    serving_module.PoseServingModule(Clashing())

  class Unnamed(Clashing):
    def extra_serving_signatures(self):
      fn, _ = model.extra_serving_signatures()['lift']
      return {'lift': (fn, [tf.TensorSpec([None, 17, 2], tf.float32)])}

  with pytest.raises(TypeError, match='named tf.TensorSpec'):
    serving_module.PoseServingModule(Unnamed())


def test_cli_errors(tmp_path, capsys):
  code = saved_model.main(['--model=export_test',
                           f'--workdir={tmp_path / "missing"}',
                           f'--export_dir={tmp_path / "base"}'])
  assert code == 2
  assert 'does not exist' in capsys.readouterr().err


def _fake_version(path: str, marker: str) -> None:
  os.makedirs(os.path.join(path, 'variables'))
  with open(os.path.join(path, 'saved_model.pb'), 'w') as f:
    f.write(marker)


def _marker(path: str) -> str:
  with open(os.path.join(path, 'saved_model.pb')) as f:
    return f.read()


def _publish_killed(base: str, final: str, kill_when: str,
                    swap: bool = True) -> None:
  """A forked process publishes a new version over `final` and is SIGKILLed
  at `kill_when`: 'after_swap' (about to delete the old version) or
  'between_renames' (the two-rename fallback, after moving the old aside)."""
  import signal
  from zoo import fileio
  pid = os.fork()
  if pid == 0:  # child: no TF, file operations only
    try:
      staging = tempfile.mkdtemp(dir=base,
                                 prefix=fileio.temp_prefix('export_test'))
      staged = os.path.join(staging, os.path.basename(final))
      _fake_version(staged, 'new')
      if not swap:
        fileio.exchange_paths = lambda a, b: False
      if kill_when == 'after_swap':
        saved_model.shutil.rmtree = lambda *a, **k: os.kill(os.getpid(),
                                                            signal.SIGKILL)
      else:
        real_rename = os.rename
        def rename(src, dst):
          real_rename(src, dst)
          os.kill(os.getpid(), signal.SIGKILL)
        os.rename = rename
      saved_model._publish(staged, final, overwrite=True)
    finally:
      os._exit(3)  # not reached when killed
  _, status = os.waitpid(pid, 0)
  assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, (
      status)


def test_killed_overwrite_never_loses_the_served_version(exported, tmp_path):
  base = str(tmp_path / 'base')
  final = os.path.join(base, 'export_test', '1')
  _fake_version(final, 'old')
  from zoo import fileio
  probe = [str(tmp_path / 'probe_a'), str(tmp_path / 'probe_b')]
  for path in probe:
    os.makedirs(path)
  if fileio.exchange_paths(*probe):
    # Atomic swap: killed right after it, the new version is in place, the
    # old one waits in the dead process's .tmp-PID-* for the next export.
    _publish_killed(base, final, 'after_swap')
    assert _marker(final) == 'new'
    assert len(_leftovers(base)) == 1
    saved_model.recover_interrupted(base)
    assert _marker(final) == 'new' and _leftovers(base) == []
  # Without the swap (other systems): killed between the two renames, the
  # next export into BASE moves the old version back.
  _publish_killed(base, final, 'between_renames', swap=False)
  assert not os.path.exists(final)
  # (the dead process's staging directory and the old version set aside)
  assert sorted(e[:5] for e in _leftovers(base)) == ['.old-', '.tmp-']
  # The next export (here of version 2) restores it and cleans up.
  model = exported.models['export_test']
  v2 = saved_model.export_model(model, base, 'export_test', write_warmup=False,
                                verify=False)
  assert _marker(final) == 'new'
  assert saved_model.versions(os.path.dirname(final)) == [1, 2]
  assert v2.endswith(os.path.join('export_test', '2'))
  assert _leftovers(base) == []
