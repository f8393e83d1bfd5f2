"""Pictures of poses: 2D skeletons drawn over images, contact sheets.

Used by the synthetic dataset's preview and by prediction pictures
(`save_figure`: the 2D skeleton over the image and the 3D skeleton from two
viewpoints), so that a
person can see data and predictions. Left limbs are drawn in one colour and
right limbs in another (the only place where colour marks a side); the
default colours read the same in RGB and BGR images.
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from zoo import fileio
from zoo import skeleton as skel

# Channel-order independent defaults: green, magenta, white.
LEFT_COLOR = (0, 230, 0)
RIGHT_COLOR = (230, 0, 230)
CENTER_COLOR = (240, 240, 240)


def limb_side(skeleton: skel.Skeleton, child: int) -> str:
  name = skeleton.joint_names[child]
  if name.startswith('left_'):
    return 'left'
  if name.startswith('right_'):
    return 'right'
  return 'center'


def draw_skeleton_2d(image_bgr_or_rgb: np.ndarray, joints2d_px: np.ndarray,
                     valid: np.ndarray | None = None,
                     skeleton: skel.Skeleton = skel.H36M17,
                     left_color: Sequence[int] = LEFT_COLOR,
                     right_color: Sequence[int] = RIGHT_COLOR,
                     center_color: Sequence[int] = CENTER_COLOR,
                     thickness: int | None = None,
                     radius: int | None = None) -> np.ndarray:
  """Returns a copy of the image with the 2D skeleton drawn over it.

  Args:
    image_bgr_or_rgb: uint8 [H, W, 3]; colours are written in the image's own
      channel order (the defaults look the same in either).
    joints2d_px: [J, 2] pixel coordinates (x right, y down).
    valid: optional [J] mask; limbs and joints with an invalid end are skipped.
    skeleton: the joint set of joints2d_px (default H36M-17).
    thickness, radius: line width and joint dot radius in pixels (default:
      scaled with the image size).
  """
  image = np.asarray(image_bgr_or_rgb)
  if image.ndim != 3 or image.shape[-1] != 3:
    raise ValueError(f'image must be [H, W, 3], got shape {image.shape}')
  joints = np.asarray(joints2d_px, np.float64)
  if joints.shape != (skeleton.num_joints, 2):
    raise ValueError(f'joints2d_px must be [{skeleton.num_joints}, 2] for '
                     f'{skeleton.name}, got shape {joints.shape}')
  if valid is None:
    valid = np.ones(skeleton.num_joints, bool)
  valid = np.asarray(valid).astype(bool) & np.all(np.isfinite(joints), -1)
  out = np.ascontiguousarray(image, np.uint8).copy()
  scale = max(out.shape[:2]) / 256.
  thickness = thickness or max(1, int(round(2 * scale)))
  radius = radius or max(1, int(round(2.5 * scale)))
  colors = {'left': tuple(int(c) for c in left_color),
            'right': tuple(int(c) for c in right_color),
            'center': tuple(int(c) for c in center_color)}
  shift = 4
  pts = np.round(np.clip(joints, -1e4, 1e4) * (1 << shift)).astype(np.int64)
  for parent, child in skeleton.limbs:
    if valid[parent] and valid[child]:
      cv2.line(out, tuple(pts[parent].tolist()), tuple(pts[child].tolist()),
               colors[limb_side(skeleton, child)], thickness, cv2.LINE_AA,
               shift)
  for j in range(skeleton.num_joints):
    if valid[j]:
      cv2.circle(out, tuple(pts[j].tolist()), radius << shift,
                 colors[limb_side(skeleton, j)], -1, cv2.LINE_AA, shift)
  return out


def contact_sheet(images: Sequence[np.ndarray], columns: int = 4,
                  captions: Sequence[str] | None = None,
                  pad: int = 4, background: int = 32) -> np.ndarray:
  """Tiles equally sized uint8 [H, W, 3] images into one grid image.

  Captions (one per image) are written in the top-left corner of each tile.
  """
  if not len(images):
    raise ValueError('contact_sheet needs at least one image')
  h, w = images[0].shape[:2]
  for im in images:
    if im.shape[:2] != (h, w):
      raise ValueError(f'all images must have the same size, got {im.shape} '
                       f'and {(h, w)}')
  rows = (len(images) + columns - 1) // columns
  sheet = np.full((rows * (h + pad) + pad, columns * (w + pad) + pad, 3),
                  background, np.uint8)
  for n, im in enumerate(images):
    r, c = divmod(n, columns)
    y, x = pad + r * (h + pad), pad + c * (w + pad)
    tile = np.ascontiguousarray(im[..., :3], np.uint8).copy()
    if captions is not None:
      for color, width in (((0, 0, 0), 3), ((255, 255, 255), 1)):
        cv2.putText(tile, captions[n], (4, 14), cv2.FONT_HERSHEY_SIMPLEX,
                    0.42, color, width, cv2.LINE_AA)
    sheet[y:y + h, x:x + w] = tile
  return sheet


# ----------------------------------------------------------------------------
# Prediction pictures (matplotlib): 2D over the image, 3D from two viewpoints
# ----------------------------------------------------------------------------

def _limb_colors() -> list[tuple[float, float, float]]:
  """Matplotlib colours of H36M17.limbs, the left/right scheme above."""
  colors = {'left': LEFT_COLOR, 'right': RIGHT_COLOR,
            'center': (90, 90, 90)}  # CENTER_COLOR is invisible on white
  return [tuple(c / 255. for c in colors[limb_side(skel.H36M17, child)])
          for _, child in skel.H36M17.limbs]


def plot_skeleton_3d(ax, poses3d_mm: np.ndarray, elev: float, azim: float,
                     title: str) -> None:
  """One 3D skeleton (camera frame mm) on a matplotlib 3D axis.

  Plotted as (x, z, -y): horizontal, depth and up, so the figure is upright
  for a camera whose y axis points down.
  """
  pts = np.asarray(poses3d_mm, np.float64)
  xs, ys, zs = pts[:, 0], pts[:, 2], -pts[:, 1]
  for (parent, child), color in zip(skel.H36M17.limbs, _limb_colors()):
    ax.plot([xs[parent], xs[child]], [ys[parent], ys[child]],
            [zs[parent], zs[child]], color=color, linewidth=2)
  ax.scatter(xs, ys, zs, s=8, color='k')
  centre = np.array([xs.mean(), ys.mean(), zs.mean()])
  half = max(np.ptp(xs), np.ptp(ys), np.ptp(zs), 1.) / 2 * 1.1
  ax.set_xlim(centre[0] - half, centre[0] + half)
  ax.set_ylim(centre[1] - half, centre[1] + half)
  ax.set_zlim(centre[2] - half, centre[2] + half)
  ax.set_box_aspect((1, 1, 1))
  ax.locator_params(nbins=4)
  ax.tick_params(labelsize=7)
  ax.set_xlabel('x (mm)', fontsize=8)
  ax.set_ylabel('z (mm)', fontsize=8)
  ax.set_zlabel('-y (mm)', fontsize=8)
  ax.view_init(elev=elev, azim=azim)
  ax.set_title(title)


def plot_skeleton_side(ax, poses3d_mm: np.ndarray,
                       reference_mm: np.ndarray | None = None,
                       title: str = '') -> None:
  """A 3D skeleton (camera frame mm) seen from the side on a plain 2D axis:
  depth z to the right, height -y up, equal scales; optionally a reference
  skeleton (the ground truth) under it in grey, dashed. The side view shows
  what the image cannot: the error in depth."""
  poses = [np.asarray(poses3d_mm, np.float64)]
  if reference_mm is not None:
    poses.insert(0, np.asarray(reference_mm, np.float64))
  for n, pts in enumerate(poses):
    reference = reference_mm is not None and n == 0
    colors = ['0.55'] * len(skel.H36M17.limbs) if reference else _limb_colors()
    for (parent, child), color in zip(skel.H36M17.limbs, colors):
      ax.plot(pts[[parent, child], 2], -pts[[parent, child], 1], color=color,
              linewidth=1.5 if reference else 2,
              linestyle='--' if reference else '-')
  ax.set_aspect('equal', adjustable='datalim')
  ax.tick_params(labelsize=7)
  ax.set_xlabel('z, depth (mm)', fontsize=8)
  ax.set_ylabel('-y, up (mm)', fontsize=8)
  ax.grid(alpha=0.3)
  if title:
    ax.set_title(title, fontsize=9)


def plot_skeleton_2d(ax, image: np.ndarray, poses2d_px: np.ndarray,
                     box_xywh: np.ndarray | None = None) -> None:
  """The image with the 2D skeleton (draw_skeleton_2d) and the person box."""
  ax.imshow(draw_skeleton_2d(image, poses2d_px))
  if box_xywh is not None:
    import matplotlib.patches as patches
    x, y, w, h = box_xywh
    ax.add_patch(patches.Rectangle((x - 0.5, y - 0.5), w, h, fill=False,
                                   color='yellow', linestyle='--',
                                   linewidth=1))
  ax.set_xlim(-0.5, image.shape[1] - 0.5)
  ax.set_ylim(image.shape[0] - 0.5, -0.5)
  ax.set_axis_off()


def save_figure(path: str, image: np.ndarray, result: dict[str, np.ndarray],
                box_xywh: np.ndarray, title: str = '') -> str:
  """PNG: 2D skeleton over the image + the 3D skeleton from two viewpoints."""
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  fig = plt.figure(figsize=(15, 5), dpi=100)
  ax = fig.add_subplot(1, 3, 1)
  plot_skeleton_2d(ax, image, result['poses2d_px'], box_xywh)
  ax.set_title('2D (image px)')
  rel = result['poses3d_rel_mm']
  plot_skeleton_3d(fig.add_subplot(1, 3, 2, projection='3d'), rel, elev=10.,
                   azim=-90., title='3D, front (camera view)')
  plot_skeleton_3d(fig.add_subplot(1, 3, 3, projection='3d'), rel, elev=10.,
                   azim=0., title='3D, side')
  if title:
    fig.suptitle(title)
  fig.tight_layout(rect=(0, 0, 1, 0.94) if title else None)
  return save_png(fig, path)


def save_png(fig, path: str, dpi: float | None = None) -> str:
  """Writes a matplotlib figure to `path` as PNG atomically (no half-written
  picture replaces a good one), closes it and returns `path`."""
  import matplotlib.pyplot as plt
  try:
    with fileio.atomic_path(path, suffix='.png') as tmp:
      fig.savefig(tmp, format='png', dpi=dpi)
  finally:
    plt.close(fig)
  return path
