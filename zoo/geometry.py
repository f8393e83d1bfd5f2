"""Camera geometry, in NumPy (data generation, metrics) and TensorFlow (in-graph).

Conventions at every boundary:
- Camera frame: x right, y down, z forward, millimetres.
- Image frame: pixels, x right, y down; pixel centres at integer coordinates.
- `intrinsics` is a 3x3 pinhole matrix K = [[fx, 0, cx], [0, fy, cy], [0, 0, 1]];
  `extrinsics` is world-to-camera [R | t] (3x4), X_cam = R X_world + t (mm).
All functions are batched over leading dimensions.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from zoo import skeleton as skel


# ----------------------------------------------------------------------------
# NumPy
# ----------------------------------------------------------------------------

def project(points_cam_mm: np.ndarray, intrinsics: np.ndarray) -> np.ndarray:
  """Pinhole projection: [..., J, 3] camera mm, [..., 3, 3] K -> [..., J, 2] px."""
  p = np.einsum('...ij,...nj->...ni', intrinsics, points_cam_mm)
  return p[..., :2] / p[..., 2:3]


def back_project(points_px: np.ndarray, depth_mm: np.ndarray,
                 intrinsics: np.ndarray) -> np.ndarray:
  """[..., J, 2] px with [..., J] depths (camera z, mm) -> [..., J, 3] mm."""
  homog = np.concatenate([points_px, np.ones_like(points_px[..., :1])], -1)
  rays = np.einsum('...ij,...nj->...ni', np.linalg.inv(intrinsics), homog)
  return rays / rays[..., 2:3] * depth_mm[..., None]


def weak_perspective_project(points: np.ndarray, scale: np.ndarray,
                             translation_px: np.ndarray) -> np.ndarray:
  """Scaled orthographic projection: s * (x, y) + t for [..., J, 3] points."""
  return (np.asarray(scale)[..., None, None] * points[..., :2]
          + np.asarray(translation_px)[..., None, :])


def world_to_camera(points_world_mm: np.ndarray,
                    extrinsics: np.ndarray) -> np.ndarray:
  """[..., J, 3] world mm with [..., 3, 4] [R | t] -> camera mm."""
  rot, trans = extrinsics[..., :3, :3], extrinsics[..., :3, 3]
  return np.einsum('...ij,...nj->...ni', rot, points_world_mm) + trans[..., None, :]


def camera_to_world(points_cam_mm: np.ndarray,
                    extrinsics: np.ndarray) -> np.ndarray:
  rot, trans = extrinsics[..., :3, :3], extrinsics[..., :3, 3]
  return np.einsum('...ji,...nj->...ni', rot, points_cam_mm - trans[..., None, :])


def look_at(eye: np.ndarray, target: np.ndarray,
            world_up: np.ndarray = np.array([0., 0., 1.]),
            roll_rad: float = 0.) -> np.ndarray:
  """World-to-camera extrinsics [3, 4] of a camera at `eye` looking at `target`.

  The camera's y axis (down in the image) points along -world_up as far as the
  viewing direction allows; `roll_rad` then rotates about the optical axis.
  """
  z = np.asarray(target, np.float64) - np.asarray(eye, np.float64)
  z /= np.linalg.norm(z)
  # x = y x z with y ~ -world_up, i.e. x = z x world_up (right-handed).
  x = np.cross(z, np.asarray(world_up, np.float64))
  x /= np.linalg.norm(x)
  y = np.cross(z, x)
  rot = np.stack([x, y, z])  # rows: camera axes in world coordinates
  rot = rotation_z(roll_rad) @ rot
  trans = -rot @ np.asarray(eye, np.float64)
  return np.concatenate([rot, trans[:, None]], 1)


def rotation_x(angle_rad) -> np.ndarray:
  c, s = np.cos(angle_rad), np.sin(angle_rad)
  o, z = np.ones_like(c), np.zeros_like(c)
  return np.stack([np.stack([o, z, z], -1), np.stack([z, c, -s], -1),
                   np.stack([z, s, c], -1)], -2)


def rotation_y(angle_rad) -> np.ndarray:
  c, s = np.cos(angle_rad), np.sin(angle_rad)
  o, z = np.ones_like(c), np.zeros_like(c)
  return np.stack([np.stack([c, z, s], -1), np.stack([z, o, z], -1),
                   np.stack([-s, z, c], -1)], -2)


def rotation_z(angle_rad) -> np.ndarray:
  c, s = np.cos(angle_rad), np.sin(angle_rad)
  o, z = np.ones_like(c), np.zeros_like(c)
  return np.stack([np.stack([c, -s, z], -1), np.stack([s, c, z], -1),
                   np.stack([z, z, o], -1)], -2)


def box_crop_affine(box_xywh: np.ndarray, out_size: int) -> np.ndarray:
  """[..., 3, 3] affine mapping source px to a square out_size crop of the box.

  The box's longer side fills the crop; the box centre maps to the crop
  centre. Apply to intrinsics as `A @ K` and to pixels as `A @ [u, v, 1]`.
  """
  box = np.asarray(box_xywh, np.float64)
  side = np.maximum(box[..., 2], box[..., 3])
  scale = out_size / side
  cx = box[..., 0] + box[..., 2] / 2
  cy = box[..., 1] + box[..., 3] / 2
  a = np.zeros(box.shape[:-1] + (3, 3))
  a[..., 0, 0] = scale
  a[..., 1, 1] = scale
  a[..., 0, 2] = out_size / 2 - scale * cx
  a[..., 1, 2] = out_size / 2 - scale * cy
  a[..., 2, 2] = 1
  return a


def transform_intrinsics(intrinsics: np.ndarray, affine: np.ndarray) -> np.ndarray:
  """Intrinsics of an image warped by a 3x3 pixel affine (crop, resize)."""
  return affine @ intrinsics


def apply_homography(homography: np.ndarray, points_px: np.ndarray) -> np.ndarray:
  """[..., 3, 3] H applied to [..., J, 2] pixels."""
  homog = np.concatenate([points_px, np.ones_like(points_px[..., :1])], -1)
  p = np.einsum('...ij,...nj->...ni', homography, homog)
  return p[..., :2] / p[..., 2:3]


def root_relative(joints: np.ndarray, root: int = skel.ROOT) -> np.ndarray:
  return joints - joints[..., root:root + 1, :]


def procrustes_align(pred: np.ndarray, target: np.ndarray,
                     scale: bool = True) -> np.ndarray:
  """Aligns [..., J, 3] pred onto target by the best similarity transform.

  Rotation without reflection (Kabsch/Umeyama with the sign of the smallest
  singular value fixed), uniform scale (unless scale=False) and translation.
  """
  mu_p = pred.mean(-2, keepdims=True)
  mu_t = target.mean(-2, keepdims=True)
  p, t = pred - mu_p, target - mu_t
  cov = np.einsum('...ni,...nj->...ij', t, p)  # target^T pred
  u, s, vt = np.linalg.svd(cov)
  d = np.sign(np.linalg.det(u @ vt))
  fix = np.ones_like(s)
  fix[..., -1] = d
  rot = u @ (fix[..., :, None] * vt)  # maps pred into target's frame
  if scale:
    var_p = np.sum(p ** 2, axis=(-2, -1))
    sc = np.sum(s * fix, -1) / np.maximum(var_p, 1e-12)
  else:
    sc = np.ones(pred.shape[:-2])
  aligned = sc[..., None, None] * np.einsum('...ij,...nj->...ni', rot, p)
  return aligned + mu_t


def _limb_rays(joints2d_px, joints3d_rel_mm, intrinsics, limbs):
  """Per-limb (a, b) with reconstructed bone vector = root_depth * a + b."""
  homog = np.concatenate([joints2d_px, np.ones_like(joints2d_px[..., :1])], -1)
  rays = np.einsum('...ij,...nj->...ni', np.linalg.inv(intrinsics), homog)
  rays = rays / rays[..., 2:3]  # z = 1
  z_rel = joints3d_rel_mm[..., 2]
  parent, child = limbs[:, 0], limbs[:, 1]
  a = rays[..., child, :] - rays[..., parent, :]
  b = (rays[..., child, :] * z_rel[..., child, None]
       - rays[..., parent, :] * z_rel[..., parent, None])
  return a, b


def recover_root_depth(joints2d_px: np.ndarray, joints3d_rel_mm: np.ndarray,
                       intrinsics: np.ndarray,
                       bone_lengths_mm: np.ndarray | None = None,
                       skeleton: skel.Skeleton = skel.H36M17,
                       min_depth_mm: float = 500., max_depth_mm: float = 30000.,
                       num_grid: int = 256, num_newton: int = 8) -> np.ndarray:
  """Root depth (mm) that makes back-projected limbs match known lengths.

  Each joint is back-projected at depth root_depth + z_rel (from the predicted
  root-relative pose); the root depth minimises sum_k (|bone_k| - L_k)^2 over
  the skeleton's limbs. `bone_lengths_mm` defaults to the lengths of the given
  relative pose itself ([..., num_limbs] or [num_limbs]; the H36M means are
  `skeleton.mean_bone_lengths_mm()`). Grid search, then Newton refinement.
  """
  limbs = np.array(skeleton.limbs)
  if bone_lengths_mm is None:
    bone_lengths_mm = skel.bone_lengths(joints3d_rel_mm, skeleton)
  a, b = _limb_rays(joints2d_px, joints3d_rel_mm, intrinsics, limbs)
  lengths = np.broadcast_to(bone_lengths_mm, a.shape[:-1])
  grid = np.geomspace(min_depth_mm, max_depth_mm, num_grid)
  # cost over the grid: [..., G]
  vec = (grid.reshape((1,) * (a.ndim - 2) + (-1, 1, 1)) * a[..., None, :, :]
         + b[..., None, :, :])
  cost = np.sum((np.linalg.norm(vec, axis=-1) - lengths[..., None, :]) ** 2, -1)
  depth = grid[np.argmin(cost, -1)]
  for _ in range(num_newton):
    v = depth[..., None, None] * a + b
    n = np.maximum(np.linalg.norm(v, axis=-1), 1e-9)
    r = n - lengths
    dn = np.sum(v * a, -1) / n
    d2n = (np.sum(a * a, -1) - dn ** 2) / n
    grad = np.sum(r * dn, -1)
    hess = np.sum(dn ** 2 + r * d2n, -1)
    step = np.where(hess > 1e-12, grad / np.maximum(hess, 1e-12), 0.)
    depth = np.clip(depth - step, min_depth_mm, max_depth_mm)
  return depth


def absolute_pose(joints2d_px: np.ndarray, joints3d_rel_mm: np.ndarray,
                  intrinsics: np.ndarray, root_depth_mm: np.ndarray,
                  root: int = skel.ROOT) -> np.ndarray:
  """Camera-space pose: joints back-projected at root_depth + z_rel (mm)."""
  z = root_depth_mm[..., None] + (joints3d_rel_mm[..., 2]
                                  - joints3d_rel_mm[..., root:root + 1, 2])
  return back_project(joints2d_px, z, intrinsics)


def fit_intrinsics(joints2d_px: np.ndarray, joints_cam_mm: np.ndarray,
                   valid: np.ndarray | None = None) -> np.ndarray:
  """Least-squares pinhole K [..., 3, 3] from 2D/3D correspondences.

  With the 3D points in the camera frame, u = fx X/Z + cx and v = fy Y/Z + cy
  are linear in (fx, cx) and (fy, cy): two independent 2-parameter fits per
  leading index over the [..., J] points (`valid` selects them; zero skew).
  Raises ValueError where fewer than 2 valid points or the x/Z (y/Z) values
  are all equal, which leaves the fit undetermined.
  """
  p2 = np.asarray(joints2d_px, np.float64)
  p3 = np.asarray(joints_cam_mm, np.float64)
  if p2.shape[:-1] != p3.shape[:-1] or p2.shape[-1] != 2 or p3.shape[-1] != 3:
    raise ValueError(f'fit_intrinsics expects [..., J, 2] and [..., J, 3], got '
                     f'{p2.shape} and {p3.shape}')
  w = (np.ones(p2.shape[:-1]) if valid is None
       else np.asarray(valid, np.float64) * 1.)
  w = w * (p3[..., 2] > 0)
  z = np.where(p3[..., 2] > 0, p3[..., 2], 1.)
  k = np.zeros(p2.shape[:-2] + (3, 3))
  k[..., 2, 2] = 1
  for axis in (0, 1):
    a = p3[..., axis] / z  # normalised image coordinate
    b = p2[..., axis]
    # Weighted normal equations of b = f a + c.
    s_w, s_a, s_b = w.sum(-1), (w * a).sum(-1), (w * b).sum(-1)
    s_aa, s_ab = (w * a * a).sum(-1), (w * a * b).sum(-1)
    det = s_w * s_aa - s_a ** 2
    if np.any(s_w < 2) or np.any(det <= 1e-12 * np.maximum(s_w * s_aa, 1e-30)):
      raise ValueError('fit_intrinsics: undetermined fit (fewer than 2 valid '
                       'points in front of the camera, or all on one ray '
                       'coordinate)')
    k[..., axis, axis] = (s_w * s_ab - s_a * s_b) / det
    k[..., axis, 2] = (s_aa * s_b - s_a * s_ab) / det
  return k


def crop_camera(intrinsics: np.ndarray, box_xywh: np.ndarray, out_size: int,
                zoom: float = 1., rotation_rad: float = 0.,
                shift_px=(0., 0.)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """A perspective-correct crop: a virtual camera aimed at the box centre.

  Returns (new_intrinsics [3,3], rotation [3,3] old-cam -> new-cam, homography
  [3,3] old px -> new px). The virtual camera shares the optical centre, looks
  along the ray through the box centre, is rolled by `rotation_rad` (image
  rotates counter-clockwise for positive angles) and has a focal length that
  maps the box's longer side onto out_size * zoom pixels. 3D points transform
  as X_new = rotation @ X_old and pixels by the homography, exactly.
  """
  return tuple(t.numpy() for t in crop_camera_tf(
      tf.constant(intrinsics, tf.float32), tf.constant(box_xywh, tf.float32),
      out_size, tf.constant(zoom, tf.float32),
      tf.constant(rotation_rad, tf.float32),
      tf.constant(shift_px, tf.float32)))


# ----------------------------------------------------------------------------
# TensorFlow (in-graph; same semantics as the NumPy functions above)
# ----------------------------------------------------------------------------

def project_tf(points_cam_mm: tf.Tensor, intrinsics: tf.Tensor,
               min_depth_mm: float = 1.) -> tf.Tensor:
  p = tf.einsum('...ij,...nj->...ni', intrinsics, points_cam_mm)
  return p[..., :2] / tf.maximum(p[..., 2:3], min_depth_mm)


def back_project_tf(points_px: tf.Tensor, depth_mm: tf.Tensor,
                    intrinsics: tf.Tensor) -> tf.Tensor:
  homog = tf.concat([points_px, tf.ones_like(points_px[..., :1])], -1)
  rays = tf.einsum('...ij,...nj->...ni', tf.linalg.inv(intrinsics), homog)
  return rays / rays[..., 2:3] * depth_mm[..., None]


def apply_homography_tf(homography: tf.Tensor, points_px: tf.Tensor) -> tf.Tensor:
  homog = tf.concat([points_px, tf.ones_like(points_px[..., :1])], -1)
  p = tf.einsum('...ij,...nj->...ni', homography, homog)
  return p[..., :2] / p[..., 2:3]


def root_relative_tf(joints: tf.Tensor, root: int = skel.ROOT) -> tf.Tensor:
  return joints - joints[..., root:root + 1, :]


def _rotation_between_tf(src: tf.Tensor, dst: tf.Tensor) -> tf.Tensor:
  """[..., 3, 3] rotation taking unit vector src to unit vector dst (Rodrigues)."""
  v = tf.linalg.cross(src, dst)
  c = tf.reduce_sum(src * dst, -1)[..., None, None]
  zero = tf.zeros_like(v[..., 0])
  vx = tf.stack([tf.stack([zero, -v[..., 2], v[..., 1]], -1),
                 tf.stack([v[..., 2], zero, -v[..., 0]], -1),
                 tf.stack([-v[..., 1], v[..., 0], zero], -1)], -2)
  eye = tf.eye(3, batch_shape=tf.shape(v)[:-1], dtype=src.dtype)
  return eye + vx + vx @ vx / (1. + c)


def crop_camera_tf(intrinsics: tf.Tensor, box_xywh: tf.Tensor, out_size: int,
                   zoom=1., rotation_rad=0., shift_px=(0., 0.)):
  """TF version of `crop_camera`, batched over leading dimensions.

  `shift_px` moves the box centre (in source pixels) before aiming, so the
  person lands off-centre (used for truncation augmentation).
  """
  intrinsics = tf.convert_to_tensor(intrinsics, tf.float32)
  box = tf.convert_to_tensor(box_xywh, tf.float32)
  zoom = tf.convert_to_tensor(zoom, tf.float32)
  rotation_rad = tf.convert_to_tensor(rotation_rad, tf.float32)
  shift = tf.convert_to_tensor(shift_px, tf.float32)
  centre = box[..., :2] + box[..., 2:] / 2 + shift
  side = tf.maximum(box[..., 2], box[..., 3])
  k_inv = tf.linalg.inv(intrinsics)
  centre_h = tf.concat([centre, tf.ones_like(centre[..., :1])], -1)
  ray = tf.linalg.matvec(k_inv, centre_h)
  ray = ray / tf.norm(ray, axis=-1, keepdims=True)
  forward = tf.broadcast_to(tf.constant([0., 0., 1.]), tf.shape(ray))
  aim = _rotation_between_tf(ray, forward)  # old camera -> aimed camera
  c, s = tf.cos(rotation_rad), tf.sin(rotation_rad)
  c = tf.broadcast_to(c, tf.shape(side))
  s = tf.broadcast_to(s, tf.shape(side))
  z, o = tf.zeros_like(c), tf.ones_like(c)
  # Rolling the camera by -angle rotates the image content by +angle.
  roll = tf.stack([tf.stack([c, s, z], -1), tf.stack([-s, c, z], -1),
                   tf.stack([z, z, o], -1)], -2)
  rotation = roll @ aim
  # Focal so that the box side (measured at the box centre) fills out/zoom.
  fx, fy = intrinsics[..., 0, 0], intrinsics[..., 1, 1]
  focal = 0.5 * (fx + fy) * out_size * zoom / side
  half = tf.fill(tf.shape(focal), (out_size - 1) / 2.)
  new_k = tf.stack([tf.stack([focal, z, half], -1),
                    tf.stack([z, focal, half], -1),
                    tf.stack([z, z, o], -1)], -2)
  homography = new_k @ rotation @ k_inv
  return new_k, rotation, homography


def recover_root_depth_tf(joints2d_px: tf.Tensor, joints3d_rel_mm: tf.Tensor,
                          intrinsics: tf.Tensor, bone_lengths_mm: tf.Tensor,
                          skeleton: skel.Skeleton = skel.H36M17,
                          min_depth_mm: float = 500.,
                          max_depth_mm: float = 30000., num_grid: int = 256,
                          num_newton: int = 8) -> tf.Tensor:
  """TF version of `recover_root_depth`; bone_lengths_mm is required."""
  limbs = np.array(skeleton.limbs)
  homog = tf.concat([joints2d_px, tf.ones_like(joints2d_px[..., :1])], -1)
  rays = tf.einsum('...ij,...nj->...ni', tf.linalg.inv(intrinsics), homog)
  rays = rays / rays[..., 2:3]
  z_rel = joints3d_rel_mm[..., 2]
  rp, rc = tf.gather(rays, limbs[:, 0], axis=-2), tf.gather(rays, limbs[:, 1], axis=-2)
  zp = tf.gather(z_rel, limbs[:, 0], axis=-1)[..., None]
  zc = tf.gather(z_rel, limbs[:, 1], axis=-1)[..., None]
  a = rc - rp
  b = rc * zc - rp * zp
  lengths = tf.broadcast_to(tf.cast(bone_lengths_mm, a.dtype), tf.shape(a)[:-1])
  grid = tf.constant(np.geomspace(min_depth_mm, max_depth_mm, num_grid),
                     a.dtype)
  vec = (grid[:, None, None] * a[..., None, :, :] + b[..., None, :, :])
  cost = tf.reduce_sum((tf.norm(vec, axis=-1) - lengths[..., None, :]) ** 2, -1)
  depth = tf.gather(grid, tf.argmin(cost, axis=-1))
  for _ in range(num_newton):
    v = depth[..., None, None] * a + b
    n = tf.maximum(tf.norm(v, axis=-1), 1e-9)
    r = n - lengths
    dn = tf.reduce_sum(v * a, -1) / n
    d2n = (tf.reduce_sum(a * a, -1) - dn ** 2) / n
    grad = tf.reduce_sum(r * dn, -1)
    hess = tf.reduce_sum(dn ** 2 + r * d2n, -1)
    step = tf.where(hess > 1e-12, grad / tf.maximum(hess, 1e-12),
                    tf.zeros_like(grad))
    depth = tf.clip_by_value(depth - step, min_depth_mm, max_depth_mm)
  return depth


def absolute_pose_tf(joints2d_px: tf.Tensor, joints3d_rel_mm: tf.Tensor,
                     intrinsics: tf.Tensor, root_depth_mm: tf.Tensor,
                     root: int = skel.ROOT) -> tf.Tensor:
  z = root_depth_mm[..., None] + (joints3d_rel_mm[..., 2]
                                  - joints3d_rel_mm[..., root:root + 1, 2])
  return back_project_tf(joints2d_px, z, intrinsics)
