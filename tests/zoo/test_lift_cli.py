"""python -m zoo.lift: the command line end to end (COCO results + image)."""
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from zoo import lift
from zoo import skeleton as skel

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def _run(*args):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  return subprocess.run([sys.executable, '-m', 'zoo.lift', *args], cwd=REPO,
                        env=env, capture_output=True, text=True, timeout=600)


def _coco_detection(image_id, centre, height_px, rng):
  """A standing person's COCO-17 keypoints around `centre`."""
  c = skel.COCO17.index
  unit = {'nose': (0, -.42), 'left_eye': (.02, -.44), 'right_eye': (-.02, -.44),
          'left_ear': (.04, -.43), 'right_ear': (-.04, -.43),
          'left_shoulder': (.1, -.33), 'right_shoulder': (-.1, -.33),
          'left_elbow': (.13, -.17), 'right_elbow': (-.13, -.17),
          'left_wrist': (.14, -.03), 'right_wrist': (-.14, -.03),
          'left_hip': (.06, 0.), 'right_hip': (-.06, 0.),
          'left_knee': (.07, .25), 'right_knee': (-.07, .25),
          'left_ankle': (.07, .5), 'right_ankle': (-.07, .5)}
  kp = np.zeros((17, 3))
  for name, (x, y) in unit.items():
    kp[c(name)] = [centre[0] + x * height_px, centre[1] + y * height_px,
                   rng.uniform(0.6, 1.)]
  return {'image_id': image_id, 'category_id': 1, 'score': 0.95,
          'keypoints': kp.reshape(-1).round(2).tolist(),
          'bbox': [centre[0] - 60, centre[1] - 200, 120, 400]}


def test_lifts_coco_results_over_an_image(tmp_path):
  rng = np.random.default_rng(0)
  image = tmp_path / 'photo.jpg'
  cv2.imwrite(str(image), np.full((480, 640, 3), 90, np.uint8))
  dets = [_coco_detection(1, (200, 250), 400, rng),
          _coco_detection(1, (450, 260), 380, rng)]
  few = _coco_detection(1, (600, 100), 100, rng)
  few['keypoints'][2::3] = [0.] * 14 + [0.9] * 3  # only the legs' ends
  dets.append(few)
  keypoints = tmp_path / 'results.json'
  keypoints.write_text(json.dumps(dets))
  out = tmp_path / 'out'
  proc = _run('--model=lifting_deep', f'--keypoints={keypoints}',
              f'--image={image}', '--focal=800', f'--out={out}')
  assert proc.returncode == 0, proc.stderr
  assert json.loads(proc.stdout)['num_lifted'] == 2
  doc = json.loads((out / 'lift.json').read_text())
  assert doc['keypoints_format'] == 'coco_results'
  assert doc['num_failed'] == 1 and 'not lifted' in doc['persons'][2]['error']
  for person in doc['persons'][:2]:
    k = np.asarray(person['intrinsics'])
    assert k[0, 0] == 800. and k[0, 2] == (640 - 1) / 2
    rel = np.asarray(person['poses3d_rel_mm'])
    # A standing person: the head top far above the ankles (y down), in mm.
    assert rel[skel.H36M17.index('head_top'), 1] < \
        rel[skel.H36M17.index('left_ankle'), 1] - 1000.
    assert (out / person['picture']).is_file()
  # The left person is left of the right one in the camera frame.
  left, right = (np.asarray(p['poses3d_cam_mm'])[0] for p in doc['persons'][:2])
  assert left[0] < right[0]


def test_bad_input_exits_2_and_writes_nothing(tmp_path, capsys):
  keypoints = tmp_path / 'bad.json'
  keypoints.write_text('[{"image_id": 1, "keypoints": [1, 2, 0.5]}]')
  out = tmp_path / 'out'
  assert lift.main(['--model=lifting_deep', f'--keypoints={keypoints}',
                    '--image_size=640,480', f'--out={out}']) == 2
  assert 'list of 51 numbers' in capsys.readouterr().err
  assert not out.exists()
  with pytest.raises(SystemExit) as e:  # a required flag missing
    lift.main([f'--keypoints={keypoints}'])
  assert e.value.code == 2
  assert '--out' in capsys.readouterr().err
