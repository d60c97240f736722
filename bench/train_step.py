"""Benchmark: what ``medseg train --augment`` costs per training iteration, against the same
recipe without it, in the same run.

Both arms train the same network (the default UNet, channels-last, AdamW) on patches drawn from
the real training sarcomas of ``--sts-dir`` (32 x 96 x 96, batch 8, as ct-tumor 3.0.0), the same
number of iterations each, in alternating rounds so that a busy host slows both alike. Per arm it
prints the seconds per iteration and how much of it went to drawing the patches; then the ratio,
which is the share of iterations a time-budgeted run gives up for augmentation.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from medseg.models.store import build_network  # noqa: E402
from medseg.training.augment import PatchAugment  # noqa: E402
from medseg.training.config import STS_VALIDATION, TrainConfig, sts_cases  # noqa: E402
from medseg.training.release import manifest_stub, spec_for  # noqa: E402
from medseg.training.train import _case, _patch, segmentation_loss  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sts-dir", type=Path, default=Path("../shared/data/sts-ct"))
    parser.add_argument("--iterations", type=int, default=15, help="per arm and round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    cfg = TrainConfig(out=Path("."), patch_zyx=(32, 96, 96), batch_size=8, sts_dir=args.sts_dir)
    spec = spec_for(cfg)
    cases = [_case(image, truth, spec) for _, image, truth in sts_cases(args.sts_dir, False, STS_VALIDATION)]
    network = build_network(manifest_stub(cfg)).to(memory_format=torch.channels_last_3d).train()
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)
    arms = {"plain": None, "augment": PatchAugment(cfg.patch_zyx)}
    step_s: dict[str, list[float]] = {name: [] for name in arms}
    patch_s: dict[str, list[float]] = {name: [] for name in arms}
    print(f"machine: {torch.get_num_threads()} torch threads; {len(cases)} training sarcomas; "
          f"{args.rounds} rounds of {args.iterations} iterations per arm")
    for round_ in range(args.rounds):
        for name, augment in arms.items():
            for _ in range(args.iterations):
                start = time.perf_counter()
                pairs = [_patch(cases[int(rng.integers(len(cases)))], cfg.patch_zyx, rng, 0.5, 0.5, (2,),
                                augment=augment) for _ in range(cfg.batch_size)]
                drawn = time.perf_counter()
                x = torch.stack([p[0] for p in pairs])[:, None].contiguous(memory_format=torch.channels_last_3d)
                y = torch.stack([p[1] for p in pairs])[:, None].long()
                loss = segmentation_loss(network(x), y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if round_ or _ >= 3:  # the first iterations of the first round warm oneDNN up
                    step_s[name].append(time.perf_counter() - start)
                    patch_s[name].append(drawn - start)
    print(f"{'':24}{'plain':>10}{'augment':>10}{'ratio':>8}")
    step = {name: statistics.median(v) for name, v in step_s.items()}
    patch = {name: statistics.median(v) for name, v in patch_s.items()}
    print(f"{'median s per iteration':24}{step['plain']:10.3f}{step['augment']:10.3f}{step['augment'] / step['plain']:7.2f}x")
    print(f"{'of it, drawing patches':24}{patch['plain']:10.3f}{patch['augment']:10.3f}"
          f"{patch['augment'] / patch['plain']:7.2f}x")
    print(f"iterations in a fixed budget with --augment: {step['plain'] / step['augment']:.0%} of the plain recipe's")


if __name__ == "__main__":
    main()
