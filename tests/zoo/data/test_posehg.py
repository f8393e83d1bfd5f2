"""Tests for zoo/data/posehg.py: annotation readers, crops, manifests."""
import json

import h5py
import numpy as np
import pytest

from zoo.data import posehg
from zoo.data import records


def test_decode_names_all_storage_kinds():
  names = ['a.jpg', 'S1_x.1_000001.jpg']
  fixed = np.array([n.encode() for n in names], 'S20')
  assert posehg.decode_names(fixed, 'f') == names
  assert posehg.decode_names(np.array(names, object), 'f') == names
  assert posehg.decode_names(np.array(names), 'f') == names
  codes = np.zeros((2, 20), np.float64)
  for i, n in enumerate(names):
    codes[i, :len(n)] = [ord(c) for c in n]
  assert posehg.decode_names(codes, 'f') == names
  assert posehg.decode_names(codes.astype(np.uint8), 'f') == names
  with pytest.raises(posehg.AnnotationError, match='integer character codes'):
    posehg.decode_names(codes + 0.5, 'f')


def test_read_array_squeezes_and_reports(tmp_path):
  path = str(tmp_path / 'a.h5')
  with h5py.File(path, 'w') as f:
    f['scale'] = np.ones((3, 1))
    f['part'] = np.ones((3, 4))
    f.create_group('grp')
  with posehg.open_h5(path) as h5:
    assert posehg.read_array(h5, 'scale', ('N',), 3).shape == (3,)
    assert posehg.read_array(h5, 'zind', ('N', 17), optional=True) is None
    with pytest.raises(posehg.AnnotationError,
                       match=r"a.h5: dataset 'part' has shape \(3, 4\), "
                       r"expected \(N, 16, 2\)"):
      posehg.read_array(h5, 'part', ('N', 16, 2))
    with pytest.raises(posehg.AnnotationError, match="'grp' is a group"):
      posehg.read_array(h5, 'grp', ('N',))
  bad = tmp_path / 'bad.h5'
  bad.write_bytes(b'not hdf5')
  with pytest.raises(posehg.AnnotationError, match='not a readable HDF5'):
    posehg.open_h5(str(bad))


def test_box_view_and_in_image():
  box = posehg.box_from_center_scale(np.array([[50., 40.]]), np.array([0.5]))
  np.testing.assert_allclose(box, [[0, -10, 100, 100]])
  image = np.zeros((80, 100, 3), np.uint8)
  image[40, 50] = 255
  _, affine, h, w = posehg.person_view(image, b'', box[0], 2.0, 40)
  # side 200 px -> 40 px: scale 0.2, box centre -> (20, 20).
  np.testing.assert_allclose(affine, [[.2, 0, 10], [0, .2, 12], [0, 0, 1]])
  assert (h, w) == (40, 40)
  joints = np.array([[0., 0.], [39.6, 10.], [-0.6, 3.], [5., 40.]])
  np.testing.assert_array_equal(posehg.in_image(joints, 40, 40), [1, 0, 0, 0])


def test_group_consecutive_and_manifest_merge(tmp_path):
  names = ['a', 'a', 'b', 'a']
  assert posehg.group_consecutive(names, [0, 1, 2, 3]) == [
      ('a', [0, 1]), ('b', [2]), ('a', [3])]
  posehg.update_manifest(str(tmp_path), 'x', {'train': {'count': 3}}, {})
  m = posehg.update_manifest(str(tmp_path), 'x', {'test': {'count': 1}},
                             {'note': 1})
  assert m['counts'] == {'train': 3, 'test': 1}
  on_disk = json.loads((tmp_path / 'manifest.json').read_text())
  assert on_disk['counts'] == {'train': 3, 'test': 1}
  assert on_disk['format_version'] == records.FORMAT_VERSION
