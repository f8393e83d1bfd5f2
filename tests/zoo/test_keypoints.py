"""zoo.keypoints: reading COCO and H36M-17 keypoint files, choosing an
image's persons, checking an image against them; clear errors for bad
files."""
import json

import numpy as np
import pytest

from zoo import keypoints
from zoo import skeleton as skel

C = skel.COCO17.index
H = skel.H36M17.index


def _coco_flat(keypoints_px, scores):
  return np.concatenate([keypoints_px, scores[:, None]], 1).reshape(-1).tolist()


def _coco_person(rng, centre=(320., 240.), spread=60.):
  keypoints_px = np.asarray(centre) + rng.uniform(-spread, spread, (17, 2))
  return keypoints_px, rng.uniform(0.5, 1., 17)


def test_reads_coco_results(tmp_path):
  rng = np.random.default_rng(0)
  kp, sc = _coco_person(rng)
  path = tmp_path / 'res.json'
  path.write_text(json.dumps([{'image_id': 7, 'category_id': 1,
                               'keypoints': _coco_flat(kp, sc), 'score': 0.9,
                               'bbox': [1, 2, 3, 4]}]))
  kfile = keypoints.read_keypoints(str(path))
  assert kfile.format == 'coco_results' and len(kfile.persons) == 1
  p = kfile.persons[0]
  want, want_scores = skel.coco17_to_h36m17(kp, sc)
  np.testing.assert_allclose(p.keypoints2d_px, want)
  np.testing.assert_allclose(p.scores, want_scores)
  assert p.image_id == 7 and p.bbox_xywh == [1., 2., 3., 4.]
  assert p.detection_score == pytest.approx(0.9)


def test_reads_coco_annotation_file_with_visibility_flags(tmp_path):
  rng = np.random.default_rng(1)
  kp, _ = _coco_person(rng)
  flags = np.full(17, 2.)
  flags[C('left_wrist')] = 0.  # unlabelled
  flags[C('right_wrist')] = 1.  # labelled, occluded
  doc = {'images': [{'id': 3, 'file_name': 'a.jpg', 'width': 640,
                     'height': 480}],
         'annotations': [{'image_id': 3, 'keypoints': _coco_flat(kp, flags)},
                         {'image_id': 3, 'iscrowd': 1,
                          'keypoints': [0] * 51}]}
  path = tmp_path / 'ann.json'
  path.write_text(json.dumps(doc))
  kfile = keypoints.read_keypoints(str(path))
  assert kfile.format == 'coco_annotations'
  assert len(kfile.persons) == 1  # the crowd annotation is skipped
  scores = kfile.persons[0].scores
  assert scores[H('left_wrist')] == 0. and scores[H('right_wrist')] == 1.
  assert kfile.images[3]['width'] == 640
  assert keypoints.image_size_of(kfile, kfile.persons[0], None) == (480, 640)


def test_reads_h36m_json_and_predict_output(tmp_path):
  kp = np.arange(34, dtype=float).reshape(17, 2)
  path = tmp_path / 'h36m.json'
  path.write_text(json.dumps({
      'joint_names': list(skel.H36M17.joint_names),
      'persons': [{'image_id': 'x', 'keypoints2d_px': kp.tolist(),
                   'scores': [0.5] * 17}]}))
  p = keypoints.read_keypoints(str(path)).persons[0]
  np.testing.assert_array_equal(p.keypoints2d_px, kp)
  np.testing.assert_array_equal(p.scores, [0.5] * 17)
  path.write_text(json.dumps({'joint_names': list(skel.H36M17.joint_names),
                              'poses2d_px': kp.tolist(),
                              'confidence': [0.25] * 17}))
  p = keypoints.read_keypoints(str(path)).persons[0]
  np.testing.assert_array_equal(p.scores, [0.25] * 17)


@pytest.mark.parametrize('text, match', [
    ('[{"keypoints": [1, 2', 'not valid JSON.*line 1'),
    ('[{"image_id": 1, "keypoints": [1, 2, 3]}]', 'list of 51 numbers.*got 3'),
    ('[{"image_id": 1}]', 'detection 0.*"keypoints"'),
    ('{"joint_names": ["a"], "persons": []}', 'H36M-17 joints'),
    ('{"persons": [{"keypoints2d_px": [[1, 2]]}]}', '17 \\[x, y\\] pairs'),
    ('{"something": 1}', 'not a keypoints file'),
    ('"text"', 'expected a JSON list'),
])
def test_malformed_files_get_clear_errors(tmp_path, text, match):
  path = tmp_path / 'bad.json'
  path.write_text(text)
  with pytest.raises(keypoints.KeypointsError, match=match):
    keypoints.read_keypoints(str(path))


@pytest.mark.parametrize('bad, match', [
    ({'score': float('nan')}, 'scores must be finite'),
    ({'score': -0.5}, 'scores must be >= 0'),
    ({'x': float('inf')}, 'NaN or infinite but have a positive score'),
])
def test_bad_values_name_the_detection(bad, match):
  rng = np.random.default_rng(2)
  kp, sc = _coco_person(rng)
  if 'score' in bad:
    sc[4] = bad['score']
  else:
    kp[4, 0] = bad['x']
  good = _coco_flat(*_coco_person(rng))
  with pytest.raises(keypoints.KeypointsError, match=f'detection 1.*{match}'):
    keypoints.parse_keypoints([{'keypoints': good},
                              {'keypoints': _coco_flat(kp, sc)}], 'f.json')


def test_missing_keypoints_may_be_nan_with_zero_score():
  rng = np.random.default_rng(3)
  kp, sc = _coco_person(rng)
  kp[C('left_ankle')] = np.nan
  sc[C('left_ankle')] = 0.
  flat = [None if not np.isfinite(v) else v for v in _coco_flat(kp, sc)]
  p = keypoints.parse_keypoints([{'keypoints': flat}]).persons[0]
  assert np.all(np.isfinite(p.keypoints2d_px))
  assert p.scores[H('left_ankle')] == 0.


def test_select_persons_by_image():
  rng = np.random.default_rng(4)
  dets = [{'image_id': i, 'keypoints': _coco_flat(*_coco_person(rng))}
          for i in (1, 1, 2)]
  kfile = keypoints.parse_keypoints(dets, 'r.json')
  assert len(keypoints.select_persons(kfile)) == 3
  assert [p.index for p in keypoints.select_persons(kfile, image_id='1')] == \
      [0, 1]
  with pytest.raises(keypoints.KeypointsError, match='pass image_id'):
    keypoints.select_persons(kfile, image_path='photo.jpg')
  with pytest.raises(keypoints.KeypointsError, match='no persons with'):
    keypoints.select_persons(kfile, image_id=9)


def test_image_extent_and_size_checks():
  rng = np.random.default_rng(5)
  kp, sc = _coco_person(rng, centre=(600., 400.), spread=50.)
  kfile = keypoints.parse_keypoints([{'keypoints': _coco_flat(kp, sc)}], 'r')
  keypoints.check_image_matches(kfile, kfile.persons, (480, 700), 'i.png',
                               0.3)
  with pytest.raises(keypoints.KeypointsError, match='another .*image'):
    keypoints.check_image_matches(kfile, kfile.persons, (240, 320), 'i.png',
                                 0.3)
  kfile.images[None] = {'width': 640, 'height': 480}
  with pytest.raises(keypoints.KeypointsError, match='records image'):
    keypoints.check_image_matches(kfile, kfile.persons, (480, 700), 'i.png',
                                 0.3)
