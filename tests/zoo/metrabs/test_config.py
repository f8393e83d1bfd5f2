"""Tests for zoo/metrabs/config.py and presets.py, and the registry entry."""
import dataclasses

import pytest

from zoo import config as config_lib
from zoo import registry
from zoo.metrabs import presets as presets_lib
from zoo.metrabs.config import MetrabsConfig


def test_registered_with_all_presets():
  entry = registry.get('metrabs')
  assert entry.config_class is MetrabsConfig
  assert set(entry.presets) == {'paper', 'cpu', 'smoke'}
  for config in entry.presets.values():
    config.validate()


def test_paper_defaults():
  config = MetrabsConfig()
  assert config.heatmap_size == 8 and config.depth_bins == 8
  assert config.box_size_mm == 2200. and config.mean_relative
  assert config.train.optimizer == 'adamw'
  assert 1e-4 <= config.train.learning_rate <= 2.2e-4
  assert config.train.lr_schedule != 'constant'
  assert config.augment.scale_range == (0.75, 1.25)
  # The shared pipeline clips N(0, r) at 2r: a +-20 deg range.
  assert 2 * config.augment.rotation_deg == 20.
  assert config.augment.shift_fraction > 0 and config.augment.occlusion_prob > 0


def test_cpu_and_smoke_presets():
  cpu = presets_lib.PRESETS['cpu']
  assert cpu.input_size == 128 and cpu.heatmap_size == 8
  # Truncation augmentation stronger than the paper's (shift 10 % of the
  # box), the flip test on at evaluation (the paper: off).
  paper = presets_lib.PRESETS['paper']
  assert cpu.augment.shift_fraction > paper.augment.shift_fraction
  assert cpu.augment.occlusion_prob == pytest.approx(0.3)
  assert cpu.flip_test and not paper.flip_test
  smoke = presets_lib.PRESETS['smoke']
  assert (smoke.train.steps, smoke.train.num_train_examples,
          smoke.train.num_test_examples, smoke.train.batch_size) == (3, 32, 16, 2)


def test_dict_round_trip_and_dotted_overrides():
  cpu = presets_lib.PRESETS['cpu']
  back = config_lib.from_dict(MetrabsConfig, config_lib.to_dict(cpu))
  assert back == cpu
  changed = registry.get('metrabs').config(
      'cpu', **{'train.steps': 7, 'backbone_weights': '/x/b.weights.h5'})
  assert changed.train.steps == 7
  assert changed.backbone_weights == '/x/b.weights.h5'


def test_resnet18_strides_4_to_32_validate():
  for stride in (4, 8, 16, 32):
    config = dataclasses.replace(MetrabsConfig(), backbone='resnet18',
                                 input_size=128, output_stride=stride)
    assert config.validate().heatmap_size == 128 // stride


@pytest.mark.parametrize('overrides, field', [
    ({'backbone': 'vgg'}, 'backbone'),
    ({'backbone': 'resnet50v2', 'output_stride': 16}, 'output_stride'),
    ({'backbone': 'resnet18', 'output_stride': 2}, 'output_stride'),
    ({'input_size': 100}, 'input_size'),
    ({'depth_bins': 1}, 'depth_bins'),
    ({'box_size_mm': 0.}, 'box_size_mm'),
    ({'loss_abs_weight': -1.}, 'loss_abs_weight'),
    ({'mix_3d_inside_crop': 2.}, 'mix_3d_inside_crop'),
])
def test_validation_names_the_field(overrides, field):
  config = dataclasses.replace(MetrabsConfig(), **overrides)
  with pytest.raises(ValueError, match=field):
    config.validate()
