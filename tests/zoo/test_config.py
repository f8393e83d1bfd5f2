"""Tests for zoo/config.py: dotted overrides, the dict round trip and the
differences a run's config shows against a preset."""
import dataclasses

import pytest

from zoo import config as config_lib


def test_replace_takes_dotted_keys_and_names_unknown_fields():
  config = config_lib.ModelConfig()
  changed = config_lib.replace(config, input_size=128, **{'train.steps': 7})
  assert (changed.input_size, changed.train.steps) == (128, 7)
  assert changed.train.batch_size == config.train.batch_size
  assert config.train.steps == config_lib.TrainConfig().steps  # a copy
  with pytest.raises(KeyError, match="TrainConfig has no field 'step'"):
    config_lib.replace(config, **{'train.step': 7})


def test_dict_round_trip_restores_nested_dataclasses_and_tuples():
  config = config_lib.replace(config_lib.ModelConfig(),
                              **{'augment.scale_range': (0.5, 2.)})
  values = config_lib.to_dict(config)
  values['augment']['scale_range'] = [0.5, 2.]  # as JSON gives it back
  assert config_lib.from_dict(config_lib.ModelConfig, values) == config
  with pytest.raises(KeyError, match='no field'):
    config_lib.from_dict(config_lib.ModelConfig, {'depth': 3})


def test_differences_name_each_dotted_field_apart_from_ignored_ones():
  preset = config_lib.ModelConfig()
  run = config_lib.replace(preset, input_size=128, **{
      'train.steps': 7, 'train.log_every': 1,
      'augment.scale_range': [0.75, 1.25]})  # a list equal to the tuple
  assert config_lib.differences(run, preset, 'preset') == [
      'input_size=128 (preset: 256)',
      'train.log_every=1 (preset: 50)',
      f'train.steps=7 (preset: {preset.train.steps!r})']
  assert config_lib.differences(
      run, preset, 'preset', ignore=('train.steps', 'train.log_every')) == [
          'input_size=128 (preset: 256)']
  # An ignored name matches a whole dotted field, not a prefix of one.
  assert len(config_lib.differences(run, preset, ignore=('train',))) == 3
  assert config_lib.differences(preset, dataclasses.replace(preset)) == []
