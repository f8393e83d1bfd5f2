"""Tests for zoo/registry.py: lookups, presets, and what "every model" means."""
import dataclasses

import pytest

from zoo import base
from zoo import registry


@dataclasses.dataclass
class _Config:
  size: int = 1


class _OutsideModel(base.PoseModel):
  config_class = _Config


def test_zoo_models_are_registered_with_all_presets():
  names = registry.zoo_names()
  for name in ('c2f_volumetric', 'volumetric_stacked', 'coordinate_regression',
               'decoupled_volumetric', 'lifting_deep', 'metrabs'):
    assert name in names
    assert set(registry.get(name).presets) >= set(registry.PRESETS)


def test_models_registered_outside_the_zoo_are_not_zoo_models():
  entry = registry.register(registry.ModelEntry(
      name='outside_test_model', model_class=_OutsideModel,
      config_class=_Config,
      presets={p: _Config() for p in registry.PRESETS}))
  assert 'outside_test_model' in registry.names()
  assert 'outside_test_model' not in registry.zoo_names()
  assert registry.get('outside_test_model') is entry


def test_unknown_model_and_preset_list_the_choices():
  with pytest.raises(KeyError, match='registered models are'):
    registry.get('no_such_model')
  with pytest.raises(KeyError, match='valid presets are'):
    registry.get('c2f_volumetric').config('no_such_preset')


def test_register_requires_every_preset():
  with pytest.raises(ValueError, match='lacks presets'):
    registry.register(registry.ModelEntry(
        name='incomplete', model_class=_OutsideModel, config_class=_Config,
        presets={'paper': _Config()}))
