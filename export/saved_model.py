"""Export a trained zoo model as a TF Serving SavedModel, atomically.

  python -m export.saved_model --model=NAME [--workdir=DIR] --export_dir=BASE
      [--version=N] [--preset=P] [--flip_test] [--overwrite]
      [--container_base_path=/models] [--max_batch_size=32]

(without --workdir: the model's bundled checkpoint zoo/checkpoints/NAME,
trained on the zoo's synthetic data)

writes

  BASE/NAME/N/{saved_model.pb, variables/, assets.extra/}
      assets.extra/tf_serving_warmup_requests  (PredictionLog TFRecord)
      assets.extra/pose3d_zoo.json             (model, config, crop settings,
                                                signatures, source weights)
  BASE/models.config            text ModelServerConfig listing every model
                                under BASE (base_path CONTAINER_BASE/NAME)
  BASE/batching_parameters.txt  text BatchingParameters for --enable_batching

The version defaults to the highest existing one + 1. Atomicity: the
SavedModel is written and (by default) verified in a temporary directory
BASE/.tmp-NAME-*, then renamed to BASE/NAME/N, so TF Serving, which polls
BASE/NAME for integer directories, never sees a half-written version, and an
export that fails part-way leaves every existing version as it was. An
existing version is only replaced with --overwrite: the new and the old
directory swap places in one atomic rename (Linux renameat2 RENAME_EXCHANGE),
so the version directory is never missing, and the old one is then deleted.
Where the file system cannot swap, the old one is moved aside to
BASE/.old-PID-* first; an export killed between the two renames is undone by
the next export into BASE (the old version is moved back). Temporaries of
killed exports (BASE/.tmp-PID-*, BASE/.old-PID-*) are removed by the next
export into BASE.

Model-agnostic: signatures come from export.serving_module, model-specific
extras from the model's optional `extra_serving_signatures()`.
"""
from __future__ import annotations

import datetime
import json
import os
import shutil
import tempfile
from typing import Any, Sequence

from absl import flags
from absl import logging
import numpy as np
import tensorflow as tf

from export import serving_module
from export import warmup
from zoo import base
from zoo import cli
from zoo import config as config_lib
from zoo import fileio
from zoo import host
from zoo import manifest as manifest_lib
from zoo import weights as weights_lib

METADATA_FILE = 'pose3d_zoo.json'
MODELS_CONFIG = 'models.config'
BATCHING_PARAMETERS = 'batching_parameters.txt'
DEFAULT_CONTAINER_BASE = '/models'


# ----------------------------------------------------------------------------
# Layout of an export base directory
# ----------------------------------------------------------------------------

def versions(model_dir: str) -> list[int]:
  """Integer version directories holding a saved_model.pb, ascending."""
  if not os.path.isdir(model_dir):
    return []
  found = []
  for entry in os.listdir(model_dir):
    if entry.isdigit() and os.path.isfile(
        os.path.join(model_dir, entry, 'saved_model.pb')):
      found.append(int(entry))
  return sorted(found)


def next_version(model_dir: str) -> int:
  """Highest existing version + 1 (1 for a new model).

  Any integer-named directory counts, complete or not, so a new export never
  reuses a number.
  """
  if not os.path.isdir(model_dir):
    return 1
  numbers = [int(e) for e in os.listdir(model_dir) if e.isdigit()]
  return max(numbers, default=0) + 1


def list_models(export_base: str) -> dict[str, list[int]]:
  """Model name -> its versions, for every model directory under BASE."""
  if not os.path.isdir(export_base):
    return {}
  models = {}
  for entry in sorted(os.listdir(export_base)):
    if entry.startswith('.'):
      continue
    found = versions(os.path.join(export_base, entry))
    if found:
      models[entry] = found
  return models


def models_config_text(export_base: str,
                       container_base: str = DEFAULT_CONTAINER_BASE) -> str:
  """Text ModelServerConfig with one entry per model under BASE."""
  from google.protobuf import text_format
  from tensorflow_serving.config import model_server_config_pb2
  config = model_server_config_pb2.ModelServerConfig()
  for name in list_models(export_base):
    entry = config.model_config_list.config.add()
    entry.name = name
    entry.base_path = container_base.rstrip('/') + '/' + name
    entry.model_platform = 'tensorflow'
  header = ('# TF Serving model config (text ModelServerConfig), written by '
            'export.saved_model.\n# base_path is where BASE is mounted inside '
            f'the container ({container_base}).\n')
  return header + text_format.MessageToString(config)


def write_models_config(export_base: str,
                        container_base: str = DEFAULT_CONTAINER_BASE) -> str:
  path = os.path.join(export_base, MODELS_CONFIG)
  fileio.atomic_write_text(path,
                           models_config_text(export_base, container_base))
  return path


def batching_parameters_text(max_batch_size: int = 32,
                             batch_timeout_micros: int = 2000,
                             num_batch_threads: int | None = None,
                             max_enqueued_batches: int = 100) -> str:
  """Text BatchingParameters (tensorflow_serving session_bundle_config)."""
  if num_batch_threads is None:
    num_batch_threads = host.available_cores()
  return (
      '# TF Serving --batching_parameters_file, written by export.saved_model.'
      '\n# pad_variable_length_inputs: serving_default requests whose images '
      'differ\n# in size are batched by padding the smaller images at the '
      'bottom/right\n# (TF Serving pads with the tensor\'s first value). '
      'Only a person box\n# whose crop reaches past the image border can see '
      'the padding; send\n# encoded images (serving_bytes, never padded) for '
      'exact results there.\n'
      f'max_batch_size {{ value: {int(max_batch_size)} }}\n'
      f'batch_timeout_micros {{ value: {int(batch_timeout_micros)} }}\n'
      f'num_batch_threads {{ value: {int(num_batch_threads)} }}\n'
      f'max_enqueued_batches {{ value: {int(max_enqueued_batches)} }}\n'
      'pad_variable_length_inputs: true\n')


def write_batching_parameters(export_base: str, **kwargs) -> str:
  path = os.path.join(export_base, BATCHING_PARAMETERS)
  fileio.atomic_write_text(path, batching_parameters_text(**kwargs))
  return path


# ----------------------------------------------------------------------------
# Export
# ----------------------------------------------------------------------------

def _spec_json(spec: tf.TensorSpec) -> dict[str, Any]:
  return {'dtype': spec.dtype.name, 'shape': spec.shape.as_list()}


def _metadata(model, module: serving_module.PoseServingModule,
              model_name: str, version: int, extra: dict | None) -> dict:
  config = getattr(model, 'config', None)
  try:
    config_dict = config_lib.to_dict(config) if config is not None else None
  except TypeError:
    config_dict = None
  return {
      'model': model_name,
      'version': version,
      'created': datetime.datetime.now(datetime.timezone.utc).isoformat(),
      'tensorflow': tf.__version__,
      'input_size': module.input_size,
      'box_margin': module.box_margin,
      'flip_test': module._flip_test,
      'signatures': {name: {s.name: _spec_json(s) for s in specs}
                     for name, specs in module.input_specs().items()},
      'outputs': dict(base.OUTPUT_UNITS),
      'config': config_dict,
      **(extra or {}),
  }


def verify_export(path: str, examples: dict[str, list[dict[str, np.ndarray]]]
                  ) -> None:
  """Runs every example through both loaders; raises RuntimeError if bad.

  tf.saved_model.load (TF2, object graph) and a TF1 session with the
  MetaGraph's saver, which is how TF Serving and saved_model_cli load a
  SavedModel; the two must agree and give finite outputs.
  """
  loaded = tf.saved_model.load(path)
  reference = {}
  for signature, requests in examples.items():
    if signature not in loaded.signatures:
      raise RuntimeError(f'export {path} lacks signature {signature!r}')
    fn = loaded.signatures[signature]
    for i, inputs in enumerate(requests):
      outputs = {k: v.numpy() for k, v in fn(
          **{k: tf.constant(v) for k, v in inputs.items()}).items()}
      for key, value in outputs.items():
        if value.dtype.kind == 'f' and not np.all(np.isfinite(value)):
          raise RuntimeError(f'export {path}: signature {signature!r} output '
                             f'{key!r} is not finite on a warm-up example')
      if i == 0:
        reference[signature] = outputs
  with tf.compat.v1.Session(graph=tf.Graph()) as session:
    try:
      meta = tf.compat.v1.saved_model.loader.load(session, ['serve'], path)
      for signature, requests in examples.items():
        sig = meta.signature_def[signature]
        outputs = session.run(
            {k: v.name for k, v in sig.outputs.items()},
            {sig.inputs[k].name: v for k, v in requests[0].items()})
        for key, value in outputs.items():
          want = reference[signature][key]
          if not np.allclose(value, want, rtol=1e-3,
                             atol=1e-3 * max(1., float(np.abs(want).max()))):
            raise RuntimeError(
                f'export {path}: signature {signature!r} output {key!r} '
                'differs between tf.saved_model.load and a TF1 session (the '
                'way TF Serving loads it)')
    except tf.errors.OpError as e:
      raise RuntimeError(f'export {path} fails in a TF1 session (the way TF '
                         f'Serving loads it): {e.message[:500]}') from None


def export_model(model, export_base: str, model_name: str | None = None, *,
                 version: int | None = None, flip_test: bool = False,
                 overwrite: bool = False, write_warmup: bool = True,
                 verify: bool = True, metadata: dict | None = None,
                 container_base: str = DEFAULT_CONTAINER_BASE,
                 batching: dict | None = None) -> str:
  """Writes EXPORT_BASE/MODEL_NAME/VERSION atomically; returns its path.

  Args:
    model: a built zoo PoseModel with its weights.
    export_base: BASE; created if missing.
    model_name: the served name (default: model.name).
    version: integer version (default: highest existing + 1).
    flip_test: serve the flip-test average (twice the compute).
    overwrite: replace an existing version (otherwise FileExistsError).
    write_warmup: write assets.extra/tf_serving_warmup_requests.
    verify: load the temporary export and run the warm-up examples before
      publishing it.
    metadata: extra entries for assets.extra/pose3d_zoo.json.
    container_base: where BASE is mounted in the TF Serving container (the
      base_path prefix in models.config).
    batching: keyword arguments of `batching_parameters_text`.
  """
  model_name = model_name or model.name
  if not model_name or '/' in model_name or model_name.startswith('.'):
    raise ValueError(f'invalid model name {model_name!r}')
  os.makedirs(export_base, exist_ok=True)
  recover_interrupted(export_base)  # before numbering: it may restore one
  model_dir = os.path.join(export_base, model_name)
  if version is None:
    version = next_version(model_dir)
  if int(version) < 0:
    raise ValueError(f'version must be a non-negative integer, got {version}')
  version = int(version)
  final = os.path.join(model_dir, str(version))
  if os.path.exists(final) and not overwrite:
    raise FileExistsError(f'{final} already exists; pass --overwrite to '
                          'replace it or --version to choose another number')

  module = serving_module.PoseServingModule(model, flip_test=flip_test,
                                            name=f'{model_name}_serving')
  examples = warmup.example_inputs(module.input_specs())
  with fileio.staging_directory(export_base, model_name) as staging:
    path = os.path.join(staging, str(version))
    logging.info('Tracing and saving %s version %d ...', model_name, version)
    tf.saved_model.save(module, path, signatures=module.signatures())
    if write_warmup:
      warmup.write_warmup_file(path, model_name, examples)
    meta = _metadata(model, module, model_name, version, metadata)
    os.makedirs(os.path.join(path, 'assets.extra'), exist_ok=True)
    with open(os.path.join(path, 'assets.extra', METADATA_FILE), 'w') as f:
      json.dump(meta, f, indent=2, default=str)
    if verify:
      verify_export(path, examples)
    _publish(path, final, overwrite)
  write_models_config(export_base, container_base)
  write_batching_parameters(export_base, **(batching or {}))
  logging.info('Exported %s version %d to %s.', model_name, version, final)
  return final


_ASIDE_TARGET = 'target.json'  # in BASE/.old-PID-*: which version it holds


def _publish(staged: str, final: str, overwrite: bool) -> None:
  """Renames the staged version into place (swapping out an old one).

  `staged` must lie in a temporary directory of this process (it holds the
  old version after a swap; the caller removes it).
  """
  os.makedirs(os.path.dirname(final), exist_ok=True)
  if os.path.exists(final) and not overwrite:
    raise FileExistsError(f'{final} appeared during the export; not replaced')
  base = os.path.dirname(os.path.dirname(final))
  asides = []

  def make_aside() -> str:
    """BASE/.old-PID-NAME-*/old, with a note of the version it holds for
    `recover_interrupted`."""
    aside = tempfile.mkdtemp(dir=base, prefix=fileio.temp_prefix(
        os.path.basename(os.path.dirname(final)), fileio.ASIDE_PREFIX))
    asides.append(aside)
    fileio.atomic_write_text(os.path.join(aside, _ASIDE_TARGET), json.dumps(
        {'version_dir': os.path.relpath(final, base)}))
    return os.path.join(aside, 'old')

  try:
    fileio.replace_directory(staged, final, make_aside)
  finally:
    for aside in asides:
      shutil.rmtree(aside, ignore_errors=True)


def recover_interrupted(export_base: str) -> None:
  """Undoes what killed exports into BASE left behind.

  A version an --overwrite moved aside (BASE/.old-PID-*) before it was killed
  goes back into place if nothing replaced it; every other temporary of a
  process that is gone (BASE/.tmp-PID-*, BASE/.old-PID-*) is removed.
  """
  for path in fileio.stale_temporaries(export_base):
    name = os.path.basename(path)
    old = os.path.join(path, 'old')
    if name.startswith(fileio.ASIDE_PREFIX) and os.path.isdir(old):
      try:
        with open(os.path.join(path, _ASIDE_TARGET)) as f:
          version_dir = json.load(f)['version_dir']
      except (OSError, ValueError, KeyError, TypeError):
        version_dir = None
      target = os.path.join(export_base, version_dir) if version_dir else None
      if target and not os.path.exists(target) and os.path.isfile(
          os.path.join(old, 'saved_model.pb')):
        logging.warning('Restoring %s from %s: an --overwrite export was '
                        'killed between its renames.', target, path)
        os.rename(old, target)
  for path in fileio.remove_stale_temporaries(export_base):
    logging.warning('Removed %s, left by an export that was killed.', path)


def export_checkpoint(name: str, checkpoint: str, export_base: str, *,
                      preset: str | None = None, **kwargs) -> str:
  """Loads model NAME from a workdir / weights file and exports it."""
  model = weights_lib.load_model(name, checkpoint, preset)
  source = weights_lib.resolve(checkpoint)
  meta = {'source': {'path': os.path.abspath(source.path),
                     'kind': source.kind, 'step': source.step,
                     'sha256': (source.manifest or {}).get('sha256'),
                     'preset': source.preset}}
  meta.update(kwargs.pop('metadata', None) or {})
  return export_model(model, export_base, name, metadata=meta, **kwargs)


PROGRAM = 'python -m export.saved_model'


def define_flags(flag_values: flags.FlagValues) -> None:
  """The command line's flags (zoo.cli: defined only to run the program)."""
  fv = {'flag_values': flag_values}
  flags.DEFINE_string('model', None, 'registered model name', **fv)
  flags.DEFINE_string('workdir', None, 'training workdir, weights directory '
                      'or .weights.h5 file (default: the bundled checkpoint '
                      'zoo/checkpoints/NAME)', **fv)
  flags.DEFINE_string('export_dir', None, 'export base BASE', **fv)
  flags.DEFINE_integer('version', None, 'version number (default: highest '
                       'existing + 1)', **fv)
  flags.DEFINE_string('preset', None, 'only for weights without a manifest',
                      **fv)
  flags.DEFINE_boolean('flip_test', False, 'serve flip-test averaged poses '
                       '(2x compute)', **fv)
  flags.DEFINE_boolean('overwrite', False, 'replace an existing version',
                       **fv)
  flags.DEFINE_boolean('warmup', True, 'write warm-up requests '
                       '(--nowarmup: none)', **fv)
  flags.DEFINE_boolean('verify', True, 'load and run the export before '
                       'publishing it (--noverify: skip)', **fv)
  flags.DEFINE_string('container_base_path', DEFAULT_CONTAINER_BASE,
                      'where BASE is mounted in the TF Serving container',
                      **fv)
  flags.DEFINE_integer('max_batch_size', 32, 'BatchingParameters', **fv)
  flags.DEFINE_integer('batch_timeout_micros', 2000, 'BatchingParameters',
                       **fv)
  flags.DEFINE_integer('num_batch_threads', None, 'BatchingParameters', **fv)
  flags.mark_flags_as_required(['model', 'export_dir'], flag_values=flag_values)


def run(args: flags.FlagValues, argv: Sequence[str] = ()) -> int:
  """Exports as the flags say; prints the version directory. 2 on bad input."""
  del argv  # unused
  logging.set_verbosity(logging.INFO)
  try:
    workdir = args.workdir
    if workdir is None:
      workdir = manifest_lib.bundled_checkpoint(args.model)
      logging.info('No --workdir given: exporting the bundled checkpoint %s.',
                   workdir)
    path = export_checkpoint(
        args.model, workdir, args.export_dir, preset=args.preset,
        version=args.version, flip_test=args.flip_test,
        overwrite=args.overwrite, write_warmup=args.warmup,
        verify=args.verify, container_base=args.container_base_path,
        batching={'max_batch_size': args.max_batch_size,
                  'batch_timeout_micros': args.batch_timeout_micros,
                  'num_batch_threads': args.num_batch_threads})
  except (ValueError, KeyError, FileNotFoundError, FileExistsError) as e:
    return cli.bad_input(e)
  print(path)
  return 0


def main(argv: Sequence[str]) -> int:
  """The program on `argv` (flags only), in this process."""
  return cli.call(define_flags, run, argv, PROGRAM)


if __name__ == '__main__':
  cli.run_program(define_flags, run)
