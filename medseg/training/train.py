"""Train the shipped demonstration model on phantoms (and real STS tumors), on CPU.

``medseg train --out models/ct-phantom/2.1.0 --name ct-phantom --version 2.1.0 --sts-dir ../shared/data/sts-ct``
reproduces the committed phantom model:
the phantom seeds, the real cases used for training and those held out, the
recipe and the measured held-out metrics all land in ``manifest.json``.
Every case goes through the same ``pipeline.preprocess`` the service uses, so
training sees exactly what inference sees.
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from scipy import ndimage

from medseg.core.exceptions import TrainingError
from medseg.core.phantom import generate_phantom
from medseg.core.pipeline.segment import preprocess, preprocess_mask
from medseg.core.pipeline.spec import PipelineSpec
from medseg.core.volume import Volume
from medseg.models.manifest import ModelManifest
from medseg.models.store import build_network
from medseg.training.augment import PatchAugment
from medseg.training.checkpoint import CHECKPOINT_FILE, read_checkpoint, restore, save_checkpoint
from medseg.training.config import PER_CHUNK, STS_HOLDOUT, TrainConfig, require_holdout, require_validation, sts_cases
from medseg.training.real_ct import TRAIN_SLICES, NegativeVolume, full_fov, require_full_fov
from medseg.training.release import finish, manifest_stub, spec_for


@dataclass
class _Case:
    image: torch.Tensor  # (D, H, W) float32, windowed
    label: torch.Tensor  # (D, H, W) uint8
    #: voxel indices (N, 3) of each lesion (26-connected component of label > 0)
    lesions: list[np.ndarray]

def _case(image: Volume, truth: Volume, spec: PipelineSpec) -> _Case:
    prep = preprocess(image, spec)
    label = preprocess_mask(truth, prep)
    components, _ = ndimage.label(label.numpy() > 0, structure=np.ones((3, 3, 3), bool))
    lesions = [np.argwhere(components[box] == i) + [b.start for b in box]
               for i, box in enumerate(ndimage.find_objects(components), start=1)]
    return _Case(prep.tensor[0, 0].clone(), label, lesions)

def _patch(case: _Case, size, rng: np.random.Generator, foreground_fraction: float, jitter: float = 0.5,
           mirror_axes: tuple[int, ...] = (2,), center: np.ndarray | None = None,
           augment: PatchAugment | None = None):
    shape = np.array(case.image.shape)
    size = np.array(size)
    if center is not None:  # a chosen negative (inside the body, or a hard negative), jittered
        reach = (size * jitter / 2).astype(int)
        center = np.asarray(center) + rng.integers(-reach, reach + 1)
    elif case.lesions and rng.random() < foreground_fraction:
        # a lesion first, then one of its voxels: drawing a voxel of all foreground (1.0.0-1.1.0)
        # centred nearly every patch on the large tumors, since a 30 mm tumor has 1000x the voxels
        # of a 3 mm one, and the model never learned small lesions (12 mm ones scored p < 0.001)
        lesion = case.lesions[int(rng.integers(len(case.lesions)))]
        reach = (size * jitter).astype(int)
        center = lesion[int(rng.integers(len(lesion)))] + rng.integers(-reach, reach + 1)
    else:
        center = np.array([rng.integers(0, n) for n in shape])
    if augment is not None and augment.wants_affine(rng):
        image, label = augment.affine_patch(*_window(case, center, np.array(augment.region)), rng)
    else:
        image, label = _window(case, center, size)
    for axis in mirror_axes:
        if rng.random() < 0.5:
            image, label = image.flip(axis), label.flip(axis)
    if augment is not None:
        image = augment.intensity(image, rng)
    image = image * rng.uniform(0.95, 1.05) + rng.uniform(-0.02, 0.02)
    image = image + torch.randn_like(image) * rng.uniform(0, 0.01)
    return image, label


def _window(case: _Case, center: np.ndarray, size: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """``size`` voxels of image and label around ``center``; outside the case, 0 (the window's floor)."""
    shape = np.array(case.image.shape)
    start = center - size // 2
    image = torch.zeros(tuple(size))
    label = torch.zeros(tuple(size), dtype=torch.uint8)
    src = tuple(slice(max(0, s), min(n, s + p)) for s, n, p in zip(start, shape, size))
    dst = tuple(slice(a.start - s, a.stop - s) for a, s in zip(src, start))
    image[dst] = case.image[src]
    label[dst] = case.label[src]
    return image, label


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy plus soft Dice of the tumor channel, per patch, over patches that contain tumor.

    Per-patch Dice makes a 5 mm lesion count as much as a 10 cm sarcoma (a batch Dice lets the
    large one drown it); patches without tumor are left to the cross-entropy term, where a
    per-patch Dice would be undefined (and push the model to predict nothing anywhere).
    """
    labels = target[:, 0]
    loss = torch.nn.functional.cross_entropy(logits, labels)
    truth = (labels > 0).float()
    prob = torch.softmax(logits, dim=1)[:, 1:].sum(1)
    volume = truth.sum(dim=(1, 2, 3))
    has_tumor = volume > 0
    if has_tumor.any():
        overlap = (prob * truth).sum(dim=(1, 2, 3))
        dice = (2 * overlap + 1.0) / (prob.sum(dim=(1, 2, 3)) + volume + 1.0)
        loss = loss + (1 - dice[has_tumor]).mean()
    return loss


def train(cfg: TrainConfig, report: Callable[[str], None] = print, *, resume: bool = False) -> ModelManifest | None:
    """Train to the end of the budget and write the model (returns its manifest), or, with
    ``cfg.chunk_minutes``, stop after that long with a checkpoint (returns None); ``resume``
    continues from ``<out>/checkpoint.pt`` with the recipe recorded there."""
    payload = read_checkpoint(cfg.out)
    if resume and payload is None:
        raise TrainingError(f"{cfg.out}: no {CHECKPOINT_FILE} to resume from", code="train.no_checkpoint")
    if not resume and payload is not None:
        raise TrainingError(f"{cfg.out} holds a checkpoint of an unfinished run: continue it with --resume, or "
                            f"remove {CHECKPOINT_FILE}", code="train.checkpoint_exists")
    if payload is not None:
        cfg = TrainConfig.model_validate({**payload["config"], **cfg.model_dump(include=PER_CHUNK)})
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(os.cpu_count() or 1)
    rng = np.random.default_rng(cfg.seed)
    spec = spec_for(cfg)
    started = time.perf_counter()

    unused = [option for option, given, needs in (
        ("--sts-fraction", cfg.sts_fraction > 0, cfg.sts_dir), ("--sts-validation", cfg.sts_validation, cfg.sts_dir),
        ("--full-fov-fraction", cfg.full_fov_fraction > 0, cfg.full_fov_dir)) if given and needs is None]
    if unused:  # a recipe that would silently train on less than it says
        raise TrainingError(f"{', '.join(unused)} given without the data folder it takes from "
                            f"(--sts-dir, --full-fov-dir)", code="train.invalid")
    if cfg.full_fov_dir is not None:
        require_full_fov(cfg.full_fov_dir)
    if cfg.sts_dir is not None:  # both used at the end: refused now, not after hours of training
        require_holdout(cfg.sts_dir)
        require_validation(cfg.sts_dir, cfg.sts_validation)

    report(f"preparing {cfg.phantoms} training phantoms")
    phantom_cases = []
    for i in range(cfg.phantoms):
        seed = cfg.phantom_seed0 + i
        ph = generate_phantom(seed, n_tumors=int(np.random.default_rng(seed + 17).integers(2, 9)))
        phantom_cases.append(_case(ph.image, ph.truth, spec))
    real_cases, train_sts = [], []
    if cfg.sts_dir is not None and cfg.sts_fraction > 0:
        train_sts = sts_cases(cfg.sts_dir, holdout=False, validation=cfg.sts_validation)
        report(f"preparing {len(train_sts)} real STS training cases (held out: {len(STS_HOLDOUT)})")
        real_cases = [_case(image, truth, spec) for _, image, truth in train_sts]

    negatives: list[NegativeVolume] = []
    if cfg.full_fov_dir is not None and cfg.full_fov_fraction > 0:
        report(f"preparing the training slab of the whole CT (slices {TRAIN_SLICES[0]}-{TRAIN_SLICES[1] - 1})")
        negatives = [NegativeVolume.from_volume(full_fov(cfg.full_fov_dir, "train")[0], spec)]
    if not (phantom_cases or real_cases):
        raise TrainingError("nothing to train on: no phantoms and no real cases", code="train.no_data")

    augment = PatchAugment(cfg.patch_zyx) if cfg.augment else None

    def patch_pair():
        r = rng.random()
        if real_cases and (r < cfg.sts_fraction or not phantom_cases and not negatives):
            case = real_cases[int(rng.integers(len(real_cases)))]
        elif negatives and r < cfg.sts_fraction + cfg.full_fov_fraction:
            volume = negatives[int(rng.integers(len(negatives)))]
            case = _Case(volume.image, torch.zeros(volume.image.shape, dtype=torch.uint8), [])
            return _patch(case, cfg.patch_zyx, rng, 0.0, cfg.foreground_jitter, cfg.mirror_axes,
                          center=volume.centre(rng, cfg.hard_negative_share), augment=augment)
        else:
            pool = phantom_cases or real_cases
            case = pool[int(rng.integers(len(pool)))]
        return _patch(case, cfg.patch_zyx, rng, cfg.foreground_fraction, cfg.foreground_jitter, cfg.mirror_axes,
                      augment=augment)

    # channels-last: oneDNN's 3D convolutions run 1.45x faster on it (2-core EPYC, default
    # network: 0.42 -> 0.29 s per iteration), with the same losses. bfloat16 autocast was faster
    # still but turned the loss into NaN within 20 iterations (torch 2.13 CPU), so it is not used.
    network = build_network(manifest_stub(cfg)).to(memory_format=torch.channels_last_3d)
    network.train()
    optimizer = torch.optim.AdamW(network.parameters(), lr=cfg.learning_rate, weight_decay=1e-5)
    losses: list[float] = []
    iteration, spent_before, chunks = 0, 0.0, 1
    if payload is not None:
        restore(payload, network, optimizer, rng)
        iteration, spent_before, losses = payload["iteration"], payload["train_seconds"], list(payload["losses"])
        chunks = int(payload["extra"].get("chunks", 1)) + 1
        for volume, hard in zip(negatives, payload["extra"].get("hard", [])):
            volume.hard = hard.numpy()
        report(f"resuming at iteration {iteration} ({spent_before / 60:.1f} of {cfg.minutes} min trained, chunk {chunks})")
    # the whole run's training time: the first chunk's preparation counts against --minutes, once
    budget_s = float(payload["extra"]["budget_s"]) if payload is not None and "budget_s" in payload["extra"] else \
        cfg.minutes * 60 - (time.perf_counter() - started)
    chunk_end = time.perf_counter() + cfg.chunk_minutes * 60 if cfg.chunk_minutes else math.inf
    config_record = json.loads(cfg.model_dump_json(exclude=PER_CHUNK))
    train_started = time.perf_counter()
    next_save = train_started + cfg.checkpoint_every_minutes * 60

    def spent() -> float:
        return spent_before + time.perf_counter() - train_started

    def checkpoint() -> Path:
        return save_checkpoint(cfg.out, network, optimizer, iteration=iteration, train_seconds=spent(), rng=rng,
                               config=config_record, losses=losses,
                               extra={"chunks": chunks, "budget_s": budget_s,
                                      "hard": [torch.from_numpy(v.hard) for v in negatives]})

    finished = False
    while not finished:
        if iteration >= cfg.iterations or spent() >= budget_s:
            finished = True
            break
        if time.perf_counter() >= chunk_end:
            break
        iteration += 1
        progress = max(iteration / cfg.iterations, spent() / max(1.0, budget_s))
        lr = cfg.learning_rate * (min(1.0, iteration / 50) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))
        for group in optimizer.param_groups:
            group["lr"] = max(lr, cfg.learning_rate * 0.01)
        batch_x, batch_y = [], []
        for _ in range(cfg.batch_size):
            x, y = patch_pair()
            batch_x.append(x)
            batch_y.append(y)
        x = torch.stack(batch_x)[:, None].contiguous(memory_format=torch.channels_last_3d)
        y = torch.stack(batch_y)[:, None].long()
        loss = segmentation_loss(network(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if iteration % 50 == 0:
            report(f"iteration {iteration}: loss {np.mean(losses[-50:]):.4f} ({spent():.0f} s trained)")
        if negatives and iteration % cfg.mine_every == 0:
            called = [volume.mine(network, spec, rng=rng) for volume in negatives]
            report(f"iteration {iteration}: hard negatives mined, {sum(called)} voxel(s) called tumor on the training slab")
        if time.perf_counter() >= next_save:
            checkpoint()
            next_save = time.perf_counter() + cfg.checkpoint_every_minutes * 60
    if not finished:
        path = checkpoint()
        report(f"chunk {chunks} ends at iteration {iteration} ({spent() / 60:.1f} of {cfg.minutes} min trained): "
               f"{path} ({path.stat().st_size / 2**20:.1f} MB); continue with --resume")
        return None
    report(f"training ends at iteration {iteration} ({spent() / 60:.1f} min trained, {chunks} chunk(s))")
    record = {"real_training_cases": [name for name, *_ in train_sts], "iterations_run": iteration, "chunks": chunks,
              "final_loss": round(float(np.mean(losses[-50:])), 4), "wall_time_s": round(spent(), 1),
              "host": f"{platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}"}
    return finish(network, cfg, record, report)
