"""Shared fixtures of the export tests: every zoo model exported once.

`exported` (session scope) builds each zoo model from its `smoke`
preset (running the registry's `prepare` hook where there is one), writes its
weights + manifest into a workdir like the trainer does, exports it with the
command line (`export.saved_model.main`) into one BASE, and records the Keras
model's outputs on the example requests of every signature, so tests compare
the SavedModels (in other processes, or through the server) with Keras.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import sys

import pytest
import tensorflow as tf

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import export_test_model  # noqa: E402,F401  (registers 'export_test')
# Re-exported: the export tests import assert_close from here.
from export_helpers import assert_close  # noqa: E402,F401
from export_helpers import extra_cases  # noqa: E402
from export_helpers import keras_outputs  # noqa: E402
from zoo import weights as weights_lib  # noqa: E402


@dataclasses.dataclass
class Exported:
  base: str                    # BASE with BASE/NAME/1 for every model
  names: list[str]
  models: dict                 # name -> Keras model (the exported weights)
  # name -> signature -> list of (inputs, keras outputs), numpy
  cases: dict[str, dict[str, list[tuple[dict, dict]]]]


@pytest.fixture(scope='session')
def exported(tmp_path_factory) -> Exported:
  from export import saved_model
  from export import serving_module
  from export import warmup
  from trainers import checkpoints
  from zoo import config as config_lib
  from zoo import registry

  base = str(tmp_path_factory.mktemp('export_base'))
  names = sorted(registry.zoo_names() + [export_test_model.NAME])
  # Every zoo model (not models other tests register) and export_test; a
  # comma-separated subset for quick local iterations (export_test is always
  # kept: the tests use it).
  subset = os.environ.get('POSE3D_EXPORT_TEST_MODELS')
  if subset:
    names = [n for n in names
             if n in subset.split(',') or n == export_test_model.NAME]
  models, cases = {}, {}
  for name in names:
    entry = registry.get(name)
    workdir = str(tmp_path_factory.mktemp(f'workdir_{name}'))
    config = entry.config('smoke')
    if entry.prepare is not None:
      config = entry.prepare(config, workdir, None)
    tf.keras.utils.set_random_seed(1)
    model = weights_lib.build_model(entry, config)
    checkpoints.write_final(workdir, model, {
        'model': name, 'preset': 'smoke', 'steps': 0,
        'config': config_lib.to_dict(config)})
    # (verify, i.e. run both loaders before publishing, only for the tiny
    # model: the tests below do the same for every model)
    verify = [] if name == export_test_model.NAME else ['--noverify']
    assert saved_model.main([f'--model={name}', f'--workdir={workdir}',
                             f'--export_dir={base}'] + verify) == 0
    specs = serving_module.PoseServingModule(model).input_specs()
    requests = warmup.example_inputs(specs)
    cases[name] = {
        sig: [(inputs, keras_outputs(model, sig, inputs))
              for inputs in requests[sig] + extra_cases(sig, specs[sig])]
        for sig in specs}
    models[name] = model
  return Exported(base, names, models, cases)


# ----------------------------------------------------------------------------
# A running export.serve over a copy of the exports
# ----------------------------------------------------------------------------

# export_test is served with every version and two labels; the others with
# TF Serving's default policy (latest version).
SERVER_CONFIG_EXTRA = '''
    model_version_policy { all {} }
    version_labels { key: "stable" value: 1 }
    version_labels { key: "canary" value: 2 }
'''


@dataclasses.dataclass
class Server:
  process: object
  base: str
  grpc: str        # host:port
  rest: str        # http://host:port
  log_path: str

  def log(self) -> str:
    with open(self.log_path) as f:
      return f.read()


def _repo_root() -> str:
  return os.path.dirname(os.path.dirname(os.path.dirname(
      os.path.abspath(__file__))))


@pytest.fixture(scope='session')
def server(exported, tmp_path_factory):
  """export.serve on loopback ports, with --model_config_file.

  The config is the exporter's models.config (base paths /models/NAME, which
  the server resolves next to the file, as in Docker), plus a version policy
  and labels for export_test, whose version 1 is copied to version 2.
  """
  import shutil
  root = tmp_path_factory.mktemp('serving')
  base = str(root / 'models')
  shutil.copytree(exported.base, base)
  shutil.copytree(os.path.join(base, 'export_test', '1'),
                  os.path.join(base, 'export_test', '2'))
  with open(os.path.join(base, 'models.config')) as f:
    text = f.read()
  marker = 'name: "export_test"'
  assert marker in text
  text = text.replace(marker, marker + SERVER_CONFIG_EXTRA)
  config_path = os.path.join(base, 'serve_test.config')
  with open(config_path, 'w') as f:
    f.write(text)
  with serve_process([f'--model_config_file={config_path}',
                      '--file_system_poll_wait_seconds=0.5'], root,
                     base) as running:
    yield running


@contextlib.contextmanager
def serve_process(flags: list[str], root, base: str):
  """`python -m export.serve FLAGS` on free loopback ports, run from a copy
  of the export package only (it must serve without the zoo: it would fail
  to start if it imported it); stopped (SIGTERM, then SIGKILL) on exit."""
  import json
  import shutil
  import subprocess
  import time
  port_file = str(root / 'ports.json')
  log_path = str(root / 'server.log')
  code = root / 'code'
  shutil.copytree(os.path.join(_repo_root(), 'export'), code / 'export',
                  ignore=shutil.ignore_patterns('__pycache__'))
  env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
  env.update(TF_CPP_MIN_LOG_LEVEL='2', PYTHONPATH=str(code))
  with open(log_path, 'w') as log:
    process = subprocess.Popen(
        [sys.executable, '-m', 'export.serve', '--port=0',
         '--rest_api_port=-1', f'--port_file={port_file}'] + flags,
        cwd=str(code), env=env, stdout=log, stderr=subprocess.STDOUT)
  try:
    deadline = time.time() + 600
    while not os.path.exists(port_file):
      if process.poll() is not None or time.time() > deadline:
        with open(log_path) as f:
          pytest.fail(f'export.serve did not start:\n{f.read()[-5000:]}')
      time.sleep(0.2)
    with open(port_file) as f:
      ports = json.load(f)
    yield Server(process, base, f'127.0.0.1:{ports["grpc"]}',
                 f'http://127.0.0.1:{ports["rest"]}', log_path)
  finally:
    process.terminate()
    try:
      process.wait(timeout=30)
    except subprocess.TimeoutExpired:
      process.kill()
