"""Train a tiny ``DetectorTrainer`` for 2 epochs, alone or as one rank of torchrun; rank 0 saves the weights.

``--no-norm`` swaps batch norm for identity: then the only difference between world sizes is the order of float
sums, so the 2-process run must equal the 1-process one to float precision (the DDP loss split is exact).
"""

from __future__ import annotations

import sys

import torch

from medwss.detector.network import build_detector
from medwss.detector.training import DetectorTrainer, DetectorTrainingSettings
from medwss.runtime.device import resolve_device
from medwss.runtime.distributed import distributed_run


def main(out: str, no_norm: bool) -> None:
    torch.set_num_threads(1)
    with distributed_run(resolve_device("cpu")) as here:
        gen = torch.Generator().manual_seed(0)
        images = torch.rand(12, 1, 32, 32, generator=gen)
        presence = (torch.arange(12) % 3 == 0).float()[:, None]
        images[presence[:, 0] > 0, :, 10:20, 10:20] += 1.0
        torch.manual_seed(0)
        model = build_detector(in_channels=1, num_classes=1, width=8)
        if no_norm:
            for module in list(model.modules()):
                for child_name, child in list(module.named_children()):
                    if isinstance(child, torch.nn.BatchNorm2d):
                        setattr(module, child_name, torch.nn.Identity())
        settings = DetectorTrainingSettings(epochs=2, batch_size=4, seed=0)
        trainer = DetectorTrainer(model, images, presence, settings=settings)
        losses = [trainer.step()["losses/detector"] for _ in range(2)]
        if here.is_main:
            torch.save({"model": model.state_dict(), "losses": losses, "world": here.size}, out)


if __name__ == "__main__":
    main(sys.argv[1], "--no-norm" in sys.argv)
