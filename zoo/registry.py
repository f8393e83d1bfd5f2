"""Model registry: name -> builder, config class, presets.

The trainer, evaluator and exporter look models up here and never branch on a
name. Paper packages register themselves on import; `_PACKAGES` lists them.
"""
from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable, Mapping

from zoo import config as config_lib

PRESETS = ('paper', 'cpu', 'smoke')

# Paper packages that register models when imported.
_PACKAGES = (
    'zoo.c2f_volumetric',
    'zoo.lifting_deep',
    'zoo.metrabs',
)


@dataclasses.dataclass(frozen=True)
class ModelEntry:
  name: str
  model_class: type                  # a zoo.base.PoseModel subclass
  config_class: type                 # dataclass with the paper's defaults
  presets: Mapping[str, Any]         # 'paper' | 'cpu' | 'smoke' -> config
  description: str = ''
  # Optional: run before building (e.g. fit a pose prior); returns the config
  # to build with. Signature: prepare(config, workdir, data_dir) -> config.
  prepare: Callable[..., Any] | None = None

  def config(self, preset: str = 'cpu', **overrides) -> Any:
    if preset not in self.presets:
      raise KeyError(f'model {self.name!r} has no preset {preset!r}; valid '
                     f'presets are {sorted(self.presets)}')
    return config_lib.replace(self.presets[preset], **overrides)

  def build(self, config: Any):
    return self.model_class(config, name=self.name)


_REGISTRY: dict[str, ModelEntry] = {}
_loaded = False


def register(entry: ModelEntry) -> ModelEntry:
  missing = [p for p in PRESETS if p not in entry.presets]
  if missing:
    raise ValueError(f'model {entry.name!r} lacks presets {missing}')
  _REGISTRY[entry.name] = entry
  return entry


def _load():
  global _loaded
  if not _loaded:
    for package in _PACKAGES:
      try:
        importlib.import_module(package)
      except ModuleNotFoundError as e:
        # Only tolerate packages that do not exist yet, never broken imports.
        if e.name != package:
          raise
    _loaded = True


def names() -> list[str]:
  _load()
  return sorted(_REGISTRY)


def zoo_names() -> list[str]:
  """The models the zoo's own paper packages register (not a user's or a
  test's): what "every model" means for publishing, the study and export."""
  _load()
  return sorted(name for name, entry in _REGISTRY.items()
                if entry.model_class.__module__.startswith(_PACKAGES))


def get(name: str) -> ModelEntry:
  _load()
  if name not in _REGISTRY:
    raise KeyError(f'unknown model {name!r}; registered models are '
                   f'{sorted(_REGISTRY)}')
  return _REGISTRY[name]
