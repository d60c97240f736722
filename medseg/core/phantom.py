"""Seeded CT-like abdominal/thoracic phantoms with tumors and exact ground truth.

A phantom is drawn analytically in patient space (LPS, mm) on an axis-aligned
grid, then handed out in the requested acquisition orientation by exact axis
permutations/flips. Anatomy: air, body with subcutaneous fat and muscle wall,
visceral fat, liver, spleen, kidneys, aorta, spine (cortical and cancellous
bone, spinal canal), paraspinal muscles, bowel with gas, and lungs above a
diaphragm level. Tumors (0..N, 3-40 mm) are lobulated ellipsoids placed in an
organ, hypo- or hyper-dense relative to it, larger ones with a necrotic core.
The scanner is a Gaussian point-spread function plus correlated noise.

Every random choice comes from ``numpy.random.default_rng(seed)``: the same
seed and arguments give the same study, voxel for voxel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from medseg.core.volume import Reorientation, Volume

ORIENTATIONS = ("supine", "prone", "feet_first", "coronal", "sagittal")

#: acquisition layout of each orientation, as the inverse of a canonical reorientation
_LAYOUTS = {
    "supine": Reorientation((0, 1, 2), (False, False, False)),
    "feet_first": Reorientation((0, 1, 2), (True, False, True)),  # FFS: rows run to the right, slices descend
    "prone": Reorientation((0, 1, 2), (False, True, True)),
    "coronal": Reorientation((1, 0, 2), (True, False, False)),
    "sagittal": Reorientation((2, 0, 1), (False, True, False)),
}


@dataclass(frozen=True)
class Tumor:
    center_lps: tuple[float, float, float]
    diameter_mm: float
    contrast_hu: float
    host: str


@dataclass
class Phantom:
    image: Volume  # HU, float32
    truth: Volume  # uint8 0/1, same grid
    tumors: list[Tumor] = field(default_factory=list)
    seed: int = 0


class _Grid:
    """Axis-aligned canonical grid: index (z, y, x), positive spacing."""

    def __init__(self, shape, spacing, origin):
        self.shape, self.spacing, self.origin = tuple(shape), np.asarray(spacing, float), np.asarray(origin, float)

    def box(self, center_zyx, half_zyx):
        lo = np.floor((np.asarray(center_zyx) - half_zyx - self.origin) / self.spacing).astype(int)
        hi = np.ceil((np.asarray(center_zyx) + half_zyx - self.origin) / self.spacing).astype(int) + 1
        lo, hi = np.clip(lo, 0, self.shape), np.clip(hi, 0, self.shape)
        if np.any(hi <= lo):
            return None
        return tuple(slice(a, b) for a, b in zip(lo, hi))

    def coords(self, box):
        return [
            (self.origin[a] + np.arange(box[a].start, box[a].stop) * self.spacing[a]).reshape(
                [-1 if i == a else 1 for i in range(3)]
            )
            for a in range(3)
        ]


def _ellipsoid(grid: _Grid, center, radii, lobes=None):
    """Bounding box and boolean mask of a (lobulated) ellipsoid; center/radii in (z, y, x) mm."""
    radii = np.asarray(radii, float)
    reach = radii * (1.35 if lobes else 1.0)
    box = grid.box(center, reach)
    if box is None:
        return None, None
    z, y, x = grid.coords(box)
    dz, dy, dx = z - center[0], y - center[1], x - center[2]
    d = np.sqrt((dz / radii[0]) ** 2 + (dy / radii[1]) ** 2 + (dx / radii[2]) ** 2)
    if lobes:
        r = np.sqrt(dz**2 + dy**2 + dx**2) + 1e-6
        bump = sum(amp * np.sin(w[0] * dz / r * 3 + w[1] * dy / r * 3 + w[2] * dx / r * 3 + ph)
                   for amp, w, ph in lobes)
        d = d / (1.0 + bump)
    return box, d <= 1.0


def _paint(image, grid, center, radii, hu, lobes=None, within=None):
    box, mask = _ellipsoid(grid, center, radii, lobes)
    if box is None:
        return None, None
    if within is not None:
        mask &= within[box]
    image[box][mask] = hu
    return box, mask


def generate_phantom(
    seed: int,
    *,
    shape: tuple[int, int, int] | None = None,
    spacing: tuple[float, float, float] | None = None,
    orientation: str | None = None,
    n_tumors: int | None = None,
    noise_hu: float | None = None,
) -> Phantom:
    """A CT-like study. ``shape``/``spacing`` are (slices, rows, columns) / mm.

    Unspecified parameters are drawn from the seed: 40-160 slices of 1.25-5 mm,
    128-320 pixels over a 330-450 mm field of view, supine (other
    orientations only when asked), 0-4 tumors, 6-22 HU noise.
    """
    rng = np.random.default_rng(seed)
    thickness = float(rng.choice([1.25, 2.0, 2.5, 3.0, 5.0])) if spacing is None else spacing[0]
    if shape is None:
        side = int(rng.choice([128, 160, 192, 256, 320]))
        shape = (int(np.clip(round(rng.uniform(160, 320) / thickness), 40, 160)), side, side)
    if spacing is None:
        fov = rng.uniform(330, 450)
        spacing = (thickness, fov / shape[1], fov / shape[2])
    orientation = orientation or "supine"
    if orientation not in ORIENTATIONS:
        raise ValueError(f"orientation must be one of {ORIENTATIONS}")
    n_tumors = int(rng.integers(0, 5)) if n_tumors is None else n_tumors
    noise_hu = float(rng.uniform(6, 22)) if noise_hu is None else noise_hu

    ext = np.asarray(shape) * np.asarray(spacing)
    origin = np.array([rng.uniform(-600, -300), -ext[1] / 2 + rng.uniform(-10, 10), -ext[2] / 2 + rng.uniform(-10, 10)])
    grid = _Grid(shape, spacing, origin)
    image = np.full(shape, -1000.0, dtype=np.float32)
    z_mid = origin[0] + ext[0] / 2
    z, y, x = grid.coords(tuple(slice(0, n) for n in shape))

    # body: elliptic cylinder that varies slowly along z; fat layer, muscle wall, visceral fat
    a, b = rng.uniform(135, 180) * min(1.0, ext[2] / 380), rng.uniform(95, 125) * min(1.0, ext[1] / 300)
    wobble = 1 + 0.04 * np.sin((z - origin[0]) / rng.uniform(60, 120) + rng.uniform(0, 6))
    body_y0 = rng.uniform(-10, 10)
    r_body = np.sqrt((x / (a * wobble)) ** 2 + ((y - body_y0) / (b * wobble)) ** 2)
    fat_thickness = rng.uniform(8, 25)
    body = r_body <= 1.0
    image[body] = rng.uniform(-110, -85)
    wall = r_body <= 1.0 - fat_thickness / b
    image[wall] = rng.uniform(40, 55)
    interior = r_body <= 1.0 - (fat_thickness + rng.uniform(8, 14)) / b
    image[interior] = rng.uniform(-95, -60)
    del r_body

    phase = rng.uniform(0, 1)  # 0 = unenhanced, 1 = portal venous
    hosts: dict[str, list] = {}
    diaphragm = origin[0] + ext[0] * rng.uniform(0.45, 1.3)  # above it: lungs (may be outside the FOV)

    def organ(name, center, radii, hu, lobes=None, within=None):
        box, mask = _paint(image, grid, center, radii, hu, lobes, within)
        if box is not None and mask.any():
            hosts.setdefault(name, []).append((center, radii))

    _paint(image, grid, (z_mid - ext[0] * 0.15, body_y0 - b * 0.35, a * 0.1), (ext[0] * 0.35, b * 0.3, a * 0.45), 15.0,
          within=interior)
    for _ in range(int(rng.integers(3, 8))):  # gas pockets in the bowel
        c = (z_mid + rng.uniform(-0.4, 0.2) * ext[0], body_y0 - b * rng.uniform(0.2, 0.55), a * rng.uniform(-0.3, 0.5))
        _paint(image, grid, c, rng.uniform(4, 14, 3), -1000.0 + rng.uniform(0, 50), within=interior)
    for side in (-1, 1):
        organ("kidney", (diaphragm - rng.uniform(80, 130), body_y0 + b * 0.35, side * a * 0.33),
              (rng.uniform(45, 60), 28, rng.uniform(22, 30)), 30 + 130 * phase + rng.uniform(-10, 10))
    liver_hu = 55 + 55 * phase + rng.uniform(-8, 8)
    organ("liver", (diaphragm - rng.uniform(50, 80), body_y0 - b * 0.05, -a * 0.42),
          (rng.uniform(70, 100), b * 0.55, a * 0.42), liver_hu, within=interior)
    organ("spleen", (diaphragm - rng.uniform(40, 70), body_y0 + b * 0.3, a * 0.5), (45, 30, 28),
          45 + 70 * phase + rng.uniform(-8, 8), within=interior)
    organ("psoas", (diaphragm - 200, body_y0 + b * 0.45, 0), (200, 25, a * 0.28), 50.0, within=interior)
    spine_y = body_y0 + b * 0.6
    _paint(image, grid, (z_mid, spine_y, 0), (ext[0], 18, 20), rng.uniform(700, 1000))  # cortical bone
    _paint(image, grid, (z_mid, spine_y, 0), (ext[0], 15, 17), rng.uniform(180, 300))  # cancellous
    _paint(image, grid, (z_mid, spine_y + 28, 0), (ext[0], 9, 8), 20.0)  # spinal canal
    for side in (-1, 1):
        organ("paraspinal", (z_mid, spine_y + 40, side * 35), (ext[0], 22, 28), 50.0, within=body)
    _paint(image, grid, (z_mid, spine_y - 30, 12), (ext[0], 11, 11), 40 + 180 * phase)  # aorta
    lungs = np.zeros(shape, bool)
    for side in (-1, 1):
        box, mask = _ellipsoid(grid, (diaphragm + 140, body_y0 + b * 0.05, side * a * 0.48),
                               (160, b * 0.7, a * 0.4))
        if box is not None:
            mask &= grid.coords(box)[0] > diaphragm
            mask &= interior[box]
            image[box][mask] = rng.uniform(-880, -820)
            lungs[box] |= mask
    if lungs.any():
        hosts["lung"] = []

    truth = np.zeros(shape, np.uint8)
    tumors = []
    for _ in range(n_tumors):
        tumor = _place_tumor(rng, grid, image, truth, hosts, lungs, interior)
        if tumor is not None:
            tumors.append(tumor)

    # scanner: point-spread function, then spatially correlated noise
    psf = (0.35 * 2.5 / spacing[0], 0.7 * 0.8 / spacing[1], 0.7 * 0.8 / spacing[2])
    image = ndimage.gaussian_filter(image, sigma=psf, mode="nearest")
    noise = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), sigma=(0.3, 0.6, 0.6))
    noise *= noise_hu / max(float(noise.std()), 1e-6)
    image += noise
    np.clip(image, -1024, 3071, out=image)

    # canonical index (z, y, x) -> LPS (x, y, z): column k moves along z, r along y, c along x
    affine = np.eye(4)
    affine[:3, :3] = np.array([[0, 0, spacing[2]], [0, spacing[1], 0], [spacing[0], 0, 0]])
    affine[:3, 3] = origin[[2, 1, 0]]
    layout = _LAYOUTS[orientation]
    out_affine = layout.apply_affine(affine, shape)
    return Phantom(
        Volume(np.ascontiguousarray(layout.apply(image)), out_affine),
        Volume(np.ascontiguousarray(layout.apply(truth)), out_affine),
        tumors,
        seed,
    )


def _place_tumor(rng, grid, image, truth, hosts, lungs, interior) -> Tumor | None:
    names = [n for n in hosts]
    if not names:
        return None
    weights = np.array([4.0 if n == "liver" else 1.5 if n == "lung" else 1.0 for n in names])
    host = names[int(rng.choice(len(names), p=weights / weights.sum()))]
    diameter = float(math.exp(rng.uniform(math.log(3.0), math.log(40.0))))
    radius = diameter / 2
    for _attempt in range(30):
        if host == "lung":
            candidates = np.argwhere(lungs[:: 4, :: 4, :: 4]) * 4
            if len(candidates) == 0:
                return None
            idx = candidates[int(rng.integers(len(candidates)))]
            center = grid.origin + idx * grid.spacing
        else:
            c, radii = hosts[host][int(rng.integers(len(hosts[host])))]
            u = rng.uniform(-0.75, 0.75, 3)
            center = np.asarray(c) + u * (np.asarray(radii) - radius).clip(min=1)
        idx = np.round((center - grid.origin) / grid.spacing).astype(int)
        if np.all(idx >= 0) and np.all(idx < grid.shape) and interior[tuple(idx)]:
            break
    else:
        return None
    host_hu = float(image[tuple(idx)])
    if host == "lung":
        contrast = rng.uniform(20, 60) - host_hu  # a solid nodule in aerated lung
    elif rng.random() < 0.6:
        contrast = -rng.uniform(25, 70)  # hypodense (typical metastasis)
    else:
        contrast = rng.uniform(25, 70)  # hyperdense (hypervascular)
    radii = radius * rng.uniform(0.75, 1.25, 3)
    lobes = [(rng.uniform(0.03, 0.12), rng.normal(size=3), rng.uniform(0, 6)) for _ in range(3)]
    box, mask = _ellipsoid(grid, center, radii, lobes)
    if box is None or not mask.any():
        return None
    region = image[box]
    value = host_hu + contrast
    region[mask] = value
    if diameter > 20:  # necrotic core: lower density in the middle
        core_box, core = _ellipsoid(grid, center, radii * 0.45)
        if core_box is not None:
            image[core_box][core] = min(value, host_hu) - rng.uniform(10, 30)
    truth[box][mask] = 1
    lps = (float(center[2]), float(center[1]), float(center[0]))
    return Tumor(lps, round(diameter, 2), round(float(contrast), 1), host)
