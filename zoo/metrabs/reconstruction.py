"""MeTRAbs absolute pose: the camera-space translation of a metric relative pose.

Given 2D joints in crop pixels, the crop intrinsics K and a metric relative pose
P_rel (mm, camera axes), find the translation T (mm) such that
project(K, P_rel + T) matches the 2D joints. With normalised image coordinates
(u, v, 1) = K^-1 (x, y, 1), the perspective constraints of joint j,
  u_j (z_j + T_z) = x_j + T_x,   v_j (z_j + T_z) = y_j + T_y,
are linear in T:
  T_x - u_j T_z = u_j z_j - x_j,   T_y - v_j T_z = v_j z_j - y_j,
so a weighted least-squares solve gives T in closed form (the released code's
`reconstruct_ref_fullpersp`). Joints whose predicted 2D lies inside the crop
get weight 1, the others a tiny weight (their 2D is clamped at the border by
the soft-argmax and says nothing). For conditioning, the T_z column is scaled
by the RMS of (u, v) and the right-hand side by its RMS, per example; a small
l2 regulariser on the scaled unknowns keeps the 3x3 normal equations
invertible. Everything is batched, float32 and differentiable
(tf.linalg.solve), so the absolute loss trains both heads through it.
"""
from __future__ import annotations

import tensorflow as tf


def inside_crop_mask(coords2d_px, input_size: int,
                     border_px: float = 0.) -> tf.Tensor:
  """[B, J] float32: 1 where a 2D joint lies inside the crop's pixel area.

  The area is [-0.5, S - 0.5] in x and y (pixel centres at integers), shrunk by
  `border_px` on every side.
  """
  coords2d_px = tf.cast(coords2d_px, tf.float32)
  lo = -0.5 + border_px
  hi = input_size - 0.5 - border_px
  inside = tf.reduce_all((coords2d_px >= lo) & (coords2d_px <= hi), axis=-1)
  return tf.cast(inside, tf.float32)


def normalized_coords(coords2d_px, intrinsics) -> tf.Tensor:
  """[B, J, 2] (u, v) = K^-1 (x, y, 1), the ray direction at depth 1."""
  coords2d_px = tf.cast(coords2d_px, tf.float32)
  homog = tf.concat([coords2d_px, tf.ones_like(coords2d_px[..., :1])], -1)
  rays = tf.einsum('bij,bnj->bni', tf.linalg.inv(tf.cast(intrinsics,
                                                         tf.float32)), homog)
  return rays[..., :2] / rays[..., 2:3]


def solve_translation(coords2d_px, coords3d_rel_mm, intrinsics, weights=None,
                      l2_regularizer: float = 1e-3) -> tf.Tensor:
  """Least-squares camera translation T [B, 3] (mm) of a relative pose.

  Args:
    coords2d_px: [B, J, 2] 2D joints in the pixels of the camera `intrinsics`.
    coords3d_rel_mm: [B, J, 3] metric pose relative to any reference point,
      camera axes (x right, y down, z forward), mm.
    intrinsics: [B, 3, 3] pinhole K.
    weights: optional [B, J] non-negative joint weights (default all 1).
    l2_regularizer: ridge term on the normalised unknowns (> 0 keeps the solve
      defined when every weight is 0 or the 2D joints coincide).

  Returns:
    [B, 3] float32 T, so that coords3d_rel_mm + T[:, None] projects onto
    coords2d_px in the least-squares sense.
  """
  rel = tf.cast(coords3d_rel_mm, tf.float32)
  uv = normalized_coords(coords2d_px, intrinsics)                # [B, J, 2]
  if weights is None:
    weights = tf.ones(tf.shape(uv)[:2], tf.float32)
  w = tf.cast(weights, tf.float32)[..., None]                    # [B, J, 1]
  b = uv * rel[..., 2:3] - rel[..., :2]                          # [B, J, 2]
  # Per-example RMS scales (unweighted, so they never vanish with the weights).
  s_uv = tf.sqrt(tf.reduce_mean(tf.square(uv), axis=[1, 2]) + 1e-12)  # [B]
  s_b = tf.sqrt(tf.reduce_mean(tf.square(b), axis=[1, 2]) + 1e-6)     # [B]
  uv_n = uv / s_uv[:, None, None]
  b_n = b / s_b[:, None, None]
  # Normal equations of rows [1, 0, -u'] . t = bx', [0, 1, -v'] . t = by'
  # with t = (T_x / s_b, T_y / s_b, T_z s_uv / s_b).
  sum_w = tf.reduce_sum(w, axis=[1, 2])                          # [B]
  sum_uv = tf.reduce_sum(w * uv_n, axis=1)                       # [B, 2]
  sum_uv2 = tf.reduce_sum(w * tf.square(uv_n), axis=[1, 2])      # [B]
  sum_b = tf.reduce_sum(w * b_n, axis=1)                         # [B, 2]
  sum_uvb = tf.reduce_sum(w * uv_n * b_n, axis=[1, 2])           # [B]
  lam = tf.constant(l2_regularizer, tf.float32)
  zero = tf.zeros_like(sum_w)
  su, sv = sum_uv[:, 0], sum_uv[:, 1]
  normal = tf.stack([
      tf.stack([sum_w + lam, zero, -su], -1),
      tf.stack([zero, sum_w + lam, -sv], -1),
      tf.stack([-su, -sv, sum_uv2 + lam], -1)], -2)              # [B, 3, 3]
  rhs = tf.stack([sum_b[:, 0], sum_b[:, 1], -sum_uvb], -1)       # [B, 3]
  t = tf.linalg.solve(normal, rhs[..., None])[..., 0]
  scale = tf.stack([s_b, s_b, s_b / s_uv], -1)
  return t * scale


def reconstruct_absolute(coords2d_px, coords3d_rel_mm, intrinsics, weights,
                         l2_regularizer: float = 1e-3,
                         mix_3d_inside=None,
                         inside=None) -> tuple[tf.Tensor, tf.Tensor]:
  """Absolute camera-space pose [B, J, 3] (mm) and its translation [B, 3].

  By default every joint is P_rel + T. With `mix_3d_inside` = w (scalar or
  broadcastable to [B, J, 1]) the joints where `inside` [B, J] is 1 become
  w (P_rel + T) + (1 - w) (ray of the 2D joint at depth T_z + z_rel), i.e.
  their image position comes from the 2D head (the released code's option).
  """
  rel = tf.cast(coords3d_rel_mm, tf.float32)
  translation = solve_translation(coords2d_px, rel, intrinsics, weights,
                                  l2_regularizer)
  poses = rel + translation[:, None, :]
  if mix_3d_inside is None:
    return poses, translation
  if inside is None:
    raise ValueError('reconstruct_absolute: `inside` [B, J] is required with '
                     'mix_3d_inside')
  uv = normalized_coords(coords2d_px, intrinsics)
  depth = poses[..., 2:3]
  from_2d = tf.concat([uv * depth, depth], -1)
  w = tf.cast(mix_3d_inside, tf.float32)
  mixed = w * poses + (1. - w) * from_2d
  inside = tf.cast(inside, tf.float32)[..., None] > 0.5
  return tf.where(inside, mixed, poses), translation
