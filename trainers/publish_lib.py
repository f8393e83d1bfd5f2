"""Publishing bundled checkpoints (the library; the command line is
trainers.publish): zoo/checkpoints/<model>/ from a training run.

What. For each model it either trains the `cpu` preset on the embedded
synthetic data (trainers.train_lib.train into WORKDIR_ROOT/<model>_<preset>;
an existing run there is resumed) or takes a finished training workdir
(--from_workdir; with --model=all, DIR holds one <model>_<preset> workdir per
model, e.g. runs/), and writes

  ROOT/<model>/<model>.weights.h5   the run's final weights (same bytes)
  ROOT/<model>/manifest.json        model, preset, config, training command,
                                    steps, data (name, seed, format version),
                                    the run's test metrics, `slice_eval`
                                    (metrics on SLICE_EVAL, re-measured on
                                    the published file), size and sha256
  ROOT/README.md                    a table of every bundled checkpoint

Why. The zoo cannot download weights, so it ships its own, small enough for
the repository (all checkpoints together at most MAX_TOTAL_BYTES; a publish
that would exceed it fails), and every bundled file can be reproduced by one
command (the manifest's `publish_command`). `zoo.load(name)` loads them; the
tests re-evaluate each on the fixed slice and compare with `slice_eval`.

Atomicity. A checkpoint is assembled and verified (loaded back, sha256
checked, slice evaluated, size limit checked) in ROOT/.tmp-<model>-*/; only
then is the old ROOT/<model> moved aside to ROOT/.old-<model>-*, the new one
renamed in and the old one deleted (put back if the rename fails). A publish
that fails leaves the previous checkpoint as it was; a process killed between
the two renames leaves ROOT/.old-<model>-*, which the next publish of that
model puts back first. Run one publish per model at a time.

Config fields that name files on the training machine (`*_path`, `*_file`,
`*_dir` and trainers.checkpoints.INIT_ONLY_FIELDS, e.g. lifting_deep's
prior_path) are set to None in the bundled manifest: the weights are
self-contained (lifting_deep's prior lives in its LiftingLayer weights), so a
bundled checkpoint loads without them.
"""
from __future__ import annotations

import datetime
import glob
import os
import re
import shlex
import shutil
import tempfile
from typing import Any, Iterable, Mapping, Sequence

from absl import logging

from trainers import evaluation
from trainers import run_config
from trainers import train_lib
from trainers import training_data
from zoo import config as config_lib
from zoo import fileio
from zoo import manifest as manifest_lib
from zoo import registry
from zoo import weights as weights_lib
import zoo
from zoo.data import records
from zoo.data import synthetic

DEFAULT_PRESET = 'cpu'
DEFAULT_WORKDIR_ROOT = os.path.join('runs', 'publish')
MAX_TOTAL_BYTES = 30 * 1000 * 1000  # all bundled checkpoints together
README_FILE = 'README.md'
BUNDLE_MANIFEST_VERSION = 1
# The fixed slice every bundled checkpoint is re-evaluated on (manifest
# `slice_eval`, tests/zoo/test_load.py): the first `num_examples` examples of
# the synthetic test split generated with `seed` (example i depends only on
# (seed, split, i), so any dataset size gives the same slice), no flip test,
# a fixed batch size.
SLICE_EVAL = {'data': 'synthetic', 'seed': 0, 'split': 'test',
              'num_examples': 64, 'batch_size': 16, 'flip_test': False}
# Training examples of the slice's cache directory (only its test split is
# read; ensure_dataset needs at least one of each).
_SLICE_NUM_TRAIN = 1
_LOCAL_PATH_SUFFIXES = ('_path', '_file', '_dir')
_SLICE_KEYS = ('mpjpe_mm', 'pa_mpjpe_mm', 'n_mpjpe_mm', 'pck3d_150', 'auc',
               'abs_mpjpe_mm', 'mean_error_2d_px', 'pckh', 'num_eval_examples')


class PublishError(RuntimeError):
  """A checkpoint could not be published; the previous one is unchanged."""


# ----------------------------------------------------------------------------
# The fixed evaluation slice
# ----------------------------------------------------------------------------

def slice_data_dir(spec: Mapping[str, Any] = SLICE_EVAL,
                   progress: bool = False) -> str:
  """A cached synthetic dataset whose test split starts with the slice."""
  if spec.get('data', 'synthetic') != 'synthetic' or spec.get(
      'split', 'test') != 'test':
    raise ValueError(f'slice spec must be on the synthetic test split, got '
                     f'{dict(spec)}')
  # One process: forking workers once TensorFlow runs can deadlock, and a
  # slice is small.
  return synthetic.ensure_dataset(_SLICE_NUM_TRAIN, int(spec['num_examples']),
                                  seed=int(spec['seed']), num_workers=1,
                                  progress=progress)


def evaluate_slice(model, spec: Mapping[str, Any] = SLICE_EVAL,
                   progress: bool = False) -> dict[str, Any]:
  """Metrics of `model` on the fixed slice (trainers.evaluation)."""
  metrics = evaluation.evaluate_model(
      model, slice_data_dir(spec, progress), model.config,
      flip_test=bool(spec['flip_test']),
      num_examples=int(spec['num_examples']),
      batch_size=int(spec['batch_size']), split=spec['split'],
      progress=progress)
  # The slice's images change with the generator version: recorded, so a
  # later bump shows up as such rather than as a metric mismatch.
  return {**dict(spec), 'generator_version': synthetic.GENERATOR_VERSION,
          'format_version': records.FORMAT_VERSION,
          **{k: metrics[k] for k in _SLICE_KEYS if k in metrics}}


# ----------------------------------------------------------------------------
# Layout helpers
# ----------------------------------------------------------------------------

def weights_file_name(name: str) -> str:
  return f'{name}.weights.h5'


def _dir_bytes(path: str) -> int:
  total = 0
  for directory, _, files in os.walk(path):
    total += sum(os.path.getsize(os.path.join(directory, f)) for f in files)
  return total


def bundled_sizes(root: str) -> dict[str, int]:
  """Bytes of every bundled checkpoint directory under `root`."""
  return {name: _dir_bytes(os.path.join(root, name))
          for name in zoo.bundled_models(root)}


def recover(root: str, name: str) -> None:
  """Undoes what a publish killed part-way left (module docstring)."""
  final = os.path.join(root, name)
  olds = sorted(glob.glob(os.path.join(root, f'.old-{name}-*')),
                key=os.path.getmtime)
  if olds and not os.path.exists(final):
    logging.warning('Restoring %s from %s (a publish was killed between its '
                    'renames).', final, olds[-1])
    os.rename(olds.pop(), final)
  for leftover in olds + glob.glob(os.path.join(root, f'.tmp-{name}-*')):
    logging.warning('Removing leftover %s of an interrupted publish.',
                    leftover)
    shutil.rmtree(leftover, ignore_errors=True)


def _swap_in(staged: str, final: str) -> None:
  """Puts `staged` at `final`, replacing (and deleting) an old one; where
  the old one has to be moved aside first, `recover` finds it."""
  root, name = os.path.split(final)
  fileio.replace_directory(
      staged, final, lambda: os.path.join(root, f'.old-{name}-{os.getpid()}'))


def portable_config(config: Mapping[str, Any]
                    ) -> tuple[dict[str, Any], list[str]]:
  """The config without paths of the training machine (module docstring).

  Returns (config dict, dotted names of the fields that were cleared).
  """
  cleared = []

  def clean(values, prefix):
    out = {}
    for key, value in values.items():
      dotted = f'{prefix}{key}'
      if isinstance(value, Mapping):
        out[key] = clean(value, dotted + '.')
      elif isinstance(value, str) and (
          key.endswith(_LOCAL_PATH_SUFFIXES)
          or key in weights_lib.INIT_ONLY_FIELDS):
        out[key] = None
        cleared.append(dotted)
      else:
        out[key] = value
    return out

  return clean(dict(config), ''), cleared


def portable_command(command: str | None) -> str | None:
  """The training command without paths of the training machine.

  An absolute path given as a flag's value (`--workdir=/home/me/runs/x`)
  becomes a placeholder named after the flag (`--workdir=WORKDIR`), and an
  interpreter named by its absolute path its file name: the bundle records
  what was run, not where.
  """
  if not command:
    return command
  words = []
  for i, word in enumerate(shlex.split(command)):
    flag, sep, value = word.partition('=')
    if i == 0 and os.path.isabs(word):  # the interpreter, e.g. a venv's
      word = os.path.basename(word)
    elif sep and flag.startswith('--') and os.path.isabs(value):
      word = f'{flag}={flag.lstrip("-").upper()}'
    words.append(word)
  return shlex.join(words)


def differences_from_preset(config: Mapping[str, Any], config_class: type,
                            preset_config: Any, ignore: Iterable[str] = ()
                            ) -> list[str]:
  """zoo.config.differences of a run's config (a dict) from a preset's,
  apart from the dotted fields in `ignore` and without the fields that name
  files of the training machine (portable_config): a fitted prior's path is
  no setting."""
  portable, _ = portable_config(config)
  return config_lib.differences(config_lib.from_dict(config_class, portable),
                                preset_config, 'preset', ignore=ignore)


def _generator_version(data: Mapping[str, Any]) -> int | None:
  """The synthetic generator version of a run's data (its cache dir name
  encodes it, zoo.data.synthetic.dataset_dir_name)."""
  match = re.search(r'_g(\d+)_', os.path.basename(str(data.get('dir') or '')))
  return int(match.group(1)) if match else None


def publish_command(name: str, preset: str, steps: int | None,
                    default_steps: int | None) -> str:
  """The command that re-trains and rewrites this checkpoint."""
  parts = ['python', '-m', 'trainers.publish', f'--model={name}']
  if preset != DEFAULT_PRESET:
    parts.append(f'--preset={preset}')
  if steps is not None and steps != default_steps:
    parts.append(f'--steps={steps}')
  return shlex.join(parts)


# ----------------------------------------------------------------------------
# Publishing one model
# ----------------------------------------------------------------------------

def _check_size(root: str, name: str, staged: str,
                max_total_bytes: int) -> None:
  """PublishError if `staged` replacing ROOT/name exceeds the limit."""
  sizes = bundled_sizes(root)
  sizes.pop(name, None)
  own = _dir_bytes(staged)
  total = sum(sizes.values()) + own
  if total > max_total_bytes:
    others = ', '.join(f'{k} {v / 1e6:.2f} MB' for k, v in sorted(
        sizes.items())) or 'none'
    raise PublishError(
        f'publishing {name} ({own / 1e6:.2f} MB) would make the bundled '
        f'checkpoints {total / 1e6:.2f} MB, over the '
        f'{max_total_bytes / 1e6:g} MB limit (others: {others}); use a '
        'smaller preset')


def _finished_run(name: str, preset: str, workdir: str):
  """(source, manifest) of a finished, evaluated synthetic-data run."""
  if not os.path.isdir(workdir):
    raise PublishError(f'--from_workdir {workdir!r} is not a directory')
  try:
    source = weights_lib.resolve(workdir)
  except FileNotFoundError as e:
    raise PublishError(f'{workdir} is not a finished training workdir: {e}'
                       ) from None
  manifest = source.manifest
  if source.kind != 'h5' or not manifest:
    raise PublishError(
        f'{workdir} has no final weights with a manifest newer than its '
        'checkpoints (training unfinished?); finish it with `python -m '
        f'trainers.run --model={name} --preset={preset} --workdir={workdir}`')
  problems = []
  if manifest.get('model') != name:
    problems.append(f'it holds model {manifest.get("model")!r}, not {name!r}')
  if manifest.get('preset') != preset:
    problems.append(f'its preset is {manifest.get("preset")!r}, not '
                    f'{preset!r}')
  data_name = (manifest.get('data') or {}).get('name')
  if data_name != 'synthetic':
    problems.append(f'it was trained on {data_name!r} data, not the embedded '
                    "'synthetic' dataset")
  target = ((manifest.get('config') or {}).get('train') or {}).get('steps')
  if target is not None and (manifest.get('steps') or 0) < target:
    problems.append(f'it stopped at step {manifest.get("steps")} of {target}')
  if not manifest.get('metrics'):
    metrics_path = os.path.join(workdir, manifest_lib.METRICS_FILE)
    metrics = fileio.read_json(metrics_path) if os.path.exists(
        metrics_path) else {}
    if metrics.get('steps') == manifest.get('steps') and 'mpjpe_mm' in metrics:
      manifest = dict(manifest, metrics=metrics)
    else:
      problems.append('it has no test metrics for its final step (rerun '
                      'the same `python -m trainers.run` command: a finished '
                      'run only evaluates)')
  if problems:
    raise PublishError(f'cannot publish {workdir} as the bundled {name!r} '
                       f'checkpoint: {"; ".join(problems)}')
  weights_lib.verify_sha256(source)
  later = later_evaluation(workdir, manifest)
  if later is not None:
    manifest = dict(manifest, metrics=later, metrics_source=_EVAL_SOURCE)
  return source, manifest


_EVAL_SOURCE = ('python -m trainers.evaluate of the final weights, after '
                f'training ({manifest_lib.EVAL_FILE})')


def later_evaluation(workdir: str, manifest: Mapping[str, Any]
                     ) -> dict[str, Any] | None:
  """The run's metrics updated from `python -m trainers.evaluate`'s output
  in the workdir, when that measured the same final weights the same way
  (same step, data, number of examples and flip test), else None.

  Why: a decoding fix after training changes what the same weights score;
  re-evaluating them is cheaper and more faithful than re-training, and the
  bundled table should show what the zoo's code gives today.
  """
  path = os.path.join(workdir, manifest_lib.EVAL_FILE)
  run = manifest.get('metrics') or {}
  if not os.path.exists(path) or not run:
    return None
  later = fileio.read_json(path)
  same_data = all((later.get('data') or {}).get(k) ==
                  (manifest.get('data') or {}).get(k)
                  for k in ('name', 'seed', 'format_version'))
  if (later.get('steps') != manifest.get('steps')
      or later.get('checkpoint_kind') != 'h5' or not same_data
      or any(later.get(k) != run.get(k)
             for k in ('num_eval_examples', 'flip_test'))):
    logging.info('Not using %s: it did not evaluate the final weights on the '
                 'run\'s own test setting.', path)
    return None
  return dict(run, **{k: later[k] for k in evaluation.METRIC_KEYS
                      if k in later})


def publish(name: str, *, preset: str = DEFAULT_PRESET,
            from_workdir: str | None = None, steps: int | None = None,
            workdir_root: str = DEFAULT_WORKDIR_ROOT,
            checkpoints_root: str | None = None, seed: int = 0,
            data_seed: int = 0, progress: bool = True,
            max_total_bytes: int = MAX_TOTAL_BYTES,
            command: str | Sequence[str] | None = None,
            write_readme_file: bool = True) -> dict[str, Any]:
  """Trains (or takes) a run of model `name` and bundles its weights.

  Args:
    name: a registered model.
    preset: the preset to publish (bundled checkpoints are 'cpu'; tests use
      'smoke').
    from_workdir: a finished training workdir of `name` at `preset` on the
      synthetic data; None trains one into WORKDIR_ROOT/<name>_<preset>.
    steps: training steps (default: the preset's); not with from_workdir.
    workdir_root: where training runs go.
    checkpoints_root: the bundled checkpoints' root (default
      zoo.checkpoints_root(): $POSE3D_ZOO_CHECKPOINTS or zoo/checkpoints).
    seed, data_seed: trainer seeds (weights/input order, synthetic data).
    progress: tqdm bars.
    max_total_bytes: the limit on all bundled checkpoints together.
    command: the training command to record (default: this process's argv).
    write_readme_file: regenerate ROOT/README.md afterwards.

  Returns:
    The bundled manifest.

  Raises:
    PublishError: the run is unusable or the size limit would be exceeded
      (the previous checkpoint is unchanged).
  """

  entry = run_config.get_entry(name)
  run_config.validate_preset(entry, preset)
  root = zoo.checkpoints_root(checkpoints_root)
  os.makedirs(root, exist_ok=True)
  recover(root, name)
  if from_workdir is not None and steps is not None:
    raise PublishError('--steps applies to re-training; a --from_workdir run '
                       'keeps the steps it was trained for')
  default_steps = entry.config(preset).train.steps
  if from_workdir is None:
    workdir = os.path.join(workdir_root, f'{name}_{preset}')
    logging.info('Publishing %s: training preset %s in %s.', name, preset,
                 workdir)
    result = train_lib.train(name, preset=preset, workdir=workdir,
                             data=training_data.DATA_SYNTHETIC, steps=steps,
                             seed=seed, data_seed=data_seed,
                             progress=progress, command=command)
    if result.interrupted_by is not None:
      raise PublishError(f'training of {name} was interrupted (signal '
                         f'{result.interrupted_by}); rerun to resume')
    from_workdir = workdir
  source, run = _finished_run(name, preset, os.path.abspath(from_workdir))

  config, cleared = portable_config(run['config'])
  # A run taken with --from_workdir may predate a preset change (or carry an
  # --override): say so, since publish_command trains the current preset.
  retrain = publish_command(name, preset, run.get('steps'), default_steps)
  unlike = _unlike_preset(entry, preset, run['config'], retrain)
  if unlike:
    logging.warning('%s: the run\'s config differs from the current %s '
                    'preset: %s. Its publish_command would train the '
                    'preset instead.', name, preset, '; '.join(unlike))
  run_data = run.get('data') or {}
  manifest = {
      'bundle_manifest_version': BUNDLE_MANIFEST_VERSION,
      'model': name,
      'preset': preset,
      'config': config,
      'config_fields_cleared': cleared,
      'config_unlike_preset': unlike,
      'command': portable_command(run.get('command')),
      'publish_command': retrain,
      'steps': run.get('steps'),
      'seed': run.get('seed'),
      'precision': run.get('precision'),
      'data': {
          'name': run_data.get('name'),
          'seed': run_data.get('seed'),
          'format_version': run_data.get('format_version'),
          'generator_version': _generator_version(run_data),
          'num_train_examples': config['train'].get('num_train_examples'),
          'num_test_examples': config['train'].get('num_test_examples'),
          'note': 'the zoo\'s embedded synthetic dataset (zoo.data.'
                  'synthetic), not Human3.6M',
      },
      'init_from': {k: v for k, v in (run.get('init_from') or {}).items()
                    if k != 'path'} or None,
      'metrics': run['metrics'],
      'metrics_source': run.get('metrics_source', 'the training run\'s own '
                                'evaluation'),
      'versions': run.get('versions'),
      'published': datetime.datetime.now(datetime.timezone.utc).isoformat(
          timespec='seconds'),
      'weights_file': weights_file_name(name),
      'sha256': run['sha256'],
      'manifest_version': run.get('manifest_version',
                                  manifest_lib.MANIFEST_VERSION),
  }

  trained_version = manifest['data']['generator_version']
  if trained_version not in (None, synthetic.GENERATOR_VERSION):
    logging.warning(
        '%s was trained and tested on synthetic data generator version %s; '
        'the zoo now generates version %d, on which the slice is measured. '
        'Re-train (without --from_workdir) for a checkpoint of the current '
        'data.', name, trained_version, synthetic.GENERATOR_VERSION)
  staged = tempfile.mkdtemp(dir=root, prefix=f'.tmp-{name}-')
  try:
    # mkdtemp makes it private.
    os.chmod(staged, 0o777 & ~fileio.current_umask())
    weights = os.path.join(staged, weights_file_name(name))
    shutil.copyfile(source.path, weights)
    if manifest_lib.sha256_file(weights) != run['sha256']:
      raise PublishError(f'copying {source.path} changed its bytes')
    manifest['size_bytes'] = os.path.getsize(weights)
    manifest_path = os.path.join(staged, manifest_lib.MANIFEST_FILE)
    fileio.atomic_write_json(manifest_path, manifest)
    _check_size(root, name, staged, max_total_bytes)  # fail early
    # Load the staged checkpoint exactly as zoo.load will, and measure it.
    model = weights_lib.load_model(name, staged, verify=True)
    manifest['slice_eval'] = evaluate_slice(model, SLICE_EVAL, progress)
    fileio.atomic_write_json(manifest_path, manifest)
    _check_size(root, name, staged, max_total_bytes)
    _swap_in(staged, os.path.join(root, name))
  finally:
    shutil.rmtree(staged, ignore_errors=True)
  logging.info('Published %s: %s (%.2f MB, sha256 %s, slice MPJPE %.1f mm).',
               name, os.path.join(root, name), manifest['size_bytes'] / 1e6,
               manifest['sha256'], manifest['slice_eval']['mpjpe_mm'])
  if write_readme_file:
    write_readme(root)
  return manifest


# ----------------------------------------------------------------------------
# README
# ----------------------------------------------------------------------------

def _num(value, digits: int = 1) -> str:
  if isinstance(value, (int, float)) and value == value:
    return f'{value:.{digits}f}'
  return 'n/a'


def _unlike_preset(entry: registry.ModelEntry, preset: str,
                   config: Mapping[str, Any], retrain_command: str | None
                   ) -> list[str]:
  """How a run's config (a dict) differs from `preset` as the code defines
  it now, without the training machine's paths (differences_from_preset).
  Steps count unless the command that re-trains it asks for them
  (publish_command's --steps)."""
  steps_asked = '--steps=' in str(retrain_command or '')
  return differences_from_preset(
      config, entry.config_class, entry.config(preset),
      ignore=('train.steps',) if steps_asked else ())


def unlike_current_preset(name: str, manifest: Mapping[str, Any]
                          ) -> list[str]:
  """_unlike_preset of a bundled checkpoint when the README is written: a
  preset changed after publishing shows here, unlike the manifest's
  `config_unlike_preset`, fixed when it was published."""
  try:  # a model or preset the code no longer has: what was recorded
    return _unlike_preset(registry.get(name),
                          manifest.get('preset', DEFAULT_PRESET),
                          manifest.get('config') or {},
                          manifest.get('publish_command'))
  except KeyError:
    return list(manifest.get('config_unlike_preset') or [])


def readme_text(root: str) -> str:
  """The generated README.md of the bundled checkpoints."""
  manifests = {name: zoo.bundled_manifest(name, root)
               for name in zoo.bundled_models(root)}
  sizes = bundled_sizes(root)
  lines = [
      '# Bundled checkpoints',
      '',
      'Generated by `python -m trainers.publish`; do not edit by hand.',
      '',
      'Every checkpoint here was trained by the zoo itself on its **embedded '
      'synthetic dataset** (`zoo.data.synthetic`: people rendered by a '
      'calibrated camera with exact 2D/3D labels; train subjects S1 S5 S6 S7 '
      'S8, test subjects S9 S11). **These are not Human3.6M models.** Their '
      'metrics are on the synthetic test split and are not comparable with '
      'the papers\' Human3.6M numbers, and they are not expected to work well '
      'on real photographs. They exist so that `zoo.load`, `zoo.predict`, '
      'the export, serving and fine-tuning work without training first.',
      '',
  ]
  if not manifests:
    lines += ['No checkpoint is bundled yet: run `python -m trainers.publish '
              '--model=all`.', '']
    return '\n'.join(lines)
  lines += [
      '| model | preset | trained on | steps | batch | test MPJPE (mm) | '
      'test PA-MPJPE (mm) | test PCK3D@150 | test flip | slice MPJPE (mm) | '
      'size (MB) | sha256 |',
      '|---|---|---|---:|---:|---:|---:|---:|---|---:|---:|---|',
  ]
  for name, m in manifests.items():
    data = m.get('data') or {}
    metrics = m.get('metrics') or {}
    trained_on = (f'{data.get("name")} v{data.get("generator_version")} '
                  f'(seed {data.get("seed")}, '
                  f'{data.get("num_train_examples")} train ex.)')
    batch = ((m.get('config') or {}).get('train') or {}).get('batch_size')
    lines.append(
        f'| `{name}` | {m.get("preset")} | {trained_on} | {m.get("steps")} | '
        f'{batch} | {_num(metrics.get("mpjpe_mm"))} | '
        f'{_num(metrics.get("pa_mpjpe_mm"))} | '
        f'{_num(metrics.get("pck3d_150"), 3)} | '
        f'{"yes" if metrics.get("flip_test") else "no"} | '
        f'{_num((m.get("slice_eval") or {}).get("mpjpe_mm"))} | '
        f'{sizes.get(name, 0) / 1e6:.2f} | `{str(m.get("sha256"))[:12]}` |')
  total = sum(sizes.values())
  first = next(iter(manifests.values()))
  test_examples = (first.get('metrics') or {}).get('num_eval_examples')
  spec = first.get('slice_eval') or SLICE_EVAL
  lines += [
      '',
      f'Total: {total / 1e6:.2f} MB (limit {MAX_TOTAL_BYTES / 1e6:.0f} MB).',
      '',
      '*Trained on*: the synthetic data generator version (vN, '
      '`zoo.data.synthetic.GENERATOR_VERSION`), its seed and the number of '
      'training examples.',
      '',
      f'*Test* metrics: the synthetic test split ({test_examples} examples '
      'for the first row; see each manifest) measured right after training, '
      'or by a later `python -m trainers.evaluate` of the same weights where '
      'the manifest\'s `metrics_source` says so (after a decoding fix) '
      '(*test flip*: with the flip test, as the model\'s config says). *Slice* '
      f'MPJPE: the first {spec.get("num_examples")} examples of the '
      f'synthetic test split (seed {spec.get("seed")}), no flip test, batch '
      f'{spec.get("batch_size")}, re-measured on the published file; '
      '`tests/zoo/test_load.py` re-checks it within 2 mm.',
      '',
      '## Use',
      '',
      '```python',
      'import zoo',
      "model = zoo.load('c2f_volumetric')   # verifies the sha256",
      '```',
      '',
      '`python -m zoo.predict --model=NAME --image=PATH --out=DIR` and '
      '`python -m export.saved_model --model=NAME --export_dir=BASE` use '
      'these when no checkpoint is given; `python -m trainers.run '
      '--model=NAME --init_from=zoo/checkpoints/NAME` fine-tunes from one.',
      '',
      '## Reproduce',
      '',
      'Each manifest.json records the training command, steps, data, seed, '
      'config, metrics and sha256. These commands re-train and rewrite the '
      'files (training is not bit-exact across machines; the metrics should '
      'be close):',
      '',
      '```',
  ]
  lines += [m.get('publish_command') or f'python -m trainers.publish '
            f'--model={name}' for name, m in manifests.items()]
  lines += ['```', '']
  unlike = {name: d for name, m in manifests.items()
            if (d := unlike_current_preset(name, m))}
  if unlike:
    lines += ['These checkpoints were trained with a config that differs '
              'from the current preset (the command above trains the '
              'preset; the manifest\'s `command` is the run\'s own):', '']
    lines += [f'- `{name}`: {"; ".join(d)}' for name, d in unlike.items()]
    lines += ['']
  return '\n'.join(lines)


def write_readme(root: str | None = None) -> str:
  """Writes ROOT/README.md atomically; returns its path."""
  root = zoo.checkpoints_root(root)
  os.makedirs(root, exist_ok=True)
  path = os.path.join(root, README_FILE)
  fileio.atomic_write_text(path, readme_text(root))
  return path


# ----------------------------------------------------------------------------
# Data for a batch of runs
# ----------------------------------------------------------------------------

def generate_data(names: Sequence[str], preset: str, data_seed: int,
                   progress: bool) -> None:
  """Generates every dataset the runs need before any of them trains.

  The generator forks worker processes, which is only safe before
  TensorFlow has run anything in this process (a later model of
  --model=all would otherwise generate after the first one trained).
  """
  sizes = set()
  for name in names:
    try:
      train = registry.get(name).config(preset).train
    except KeyError:
      continue  # reported by publish()
    sizes.add((train.num_train_examples, train.num_test_examples))
  for num_train, num_test in sorted(sizes):
    synthetic.ensure_dataset(num_train, num_test, seed=data_seed,
                             progress=progress)
