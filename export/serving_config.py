"""Which models the server serves: --model_base_path or a ModelServerConfig.

Layouts of a base path: BASE/NAME/N/ (every model under BASE), or a single
model's directory BASE/N/ (named by --model_name, default the directory
name), as with TF Serving. In a models.config written by export.saved_model
the base paths name the Docker mount (/models/NAME); where such a path does
not exist, the model is looked up next to the config file.
"""
from __future__ import annotations

import os

from absl import logging
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from export.serving_core import ModelConfig
from export.serving_core import available_versions


def configs_from_base_path(base_path: str, model_name: str | None = None
                           ) -> list[ModelConfig]:
  """BASE/N (one model) or BASE/NAME/N (every model under BASE)."""
  base_path = os.path.abspath(base_path)
  if not os.path.isdir(base_path):
    raise FileNotFoundError(f'--model_base_path {base_path} does not exist')
  if available_versions(base_path):
    return [ModelConfig(model_name or os.path.basename(base_path), base_path)]
  configs = [ModelConfig(entry, os.path.join(base_path, entry))
             for entry in sorted(os.listdir(base_path))
             if not entry.startswith('.') and
             available_versions(os.path.join(base_path, entry))]
  if model_name is not None:
    configs = [c for c in configs if c.name == model_name]
  if not configs:
    raise FileNotFoundError(
        f'no SavedModel versions under {base_path}: expected '
        f'{base_path}/NAME/N/saved_model.pb or {base_path}/N/saved_model.pb')
  return configs


def configs_from_file(path: str) -> list[ModelConfig]:
  """A text ModelServerConfig (model_config_list)."""
  config = model_server_config_pb2.ModelServerConfig()
  with open(path) as f:
    try:
      text_format.Parse(f.read(), config)
    except text_format.ParseError as e:
      raise ValueError(f'{path} is not a text ModelServerConfig: {e}') from None
  if config.WhichOneof('config') != 'model_config_list':
    raise ValueError(f'{path} has no model_config_list')
  directory = os.path.dirname(os.path.abspath(path))
  configs = []
  for entry in config.model_config_list.config:
    if entry.model_platform not in ('', 'tensorflow'):
      raise ValueError(f'model {entry.name!r}: platform '
                       f'{entry.model_platform!r} is not supported')
    base = entry.base_path
    if not os.path.isdir(base):
      local = os.path.join(directory, os.path.basename(base.rstrip('/')))
      if os.path.isdir(local):
        logging.info('base_path %s of %s not found; using %s (next to the '
                     'config file, as mounted in Docker).', base, entry.name,
                     local)
        base = local
    policy = entry.model_version_policy.WhichOneof('policy_choice') or 'latest'
    configs.append(ModelConfig(
        entry.name, base, policy=policy,
        num_versions=entry.model_version_policy.latest.num_versions or 1,
        specific=tuple(entry.model_version_policy.specific.versions),
        labels=dict(entry.version_labels)))
  return configs
