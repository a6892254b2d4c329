"""Does a path of the super-network train like the stand-alone model? A diagnostic for the
super-network's loss plateau (`benchmarks/README.md`, supernet_noise.py).

Trains, with the same recipe (300 steps, batch 8, SGD lr 0.05, 50 warm-up steps, cosine, clip 10, the
same minibatches and flips), (1) the super-network with ``repghostnet_050``'s path fixed, (2) the
stand-alone SSDLite-RepGhostNet 0.5×, and prints the mean loss every 50 steps. The synthetic set is
the one supernet_noise.py generated (512 train images).

    nice -n 10 python benchmarks/supernet_single_path.py --data runs/supernet-noise/synthetic
"""

import argparse

import torch

from repghost.detection.backbone import build_body
from repghost.detection.config import DataConfig
from repghost.detection.detectors import build_ssdlite
from repghost.models.repghostnet_space import RepGhostNetSpace
from repghost.run.schedule import warmup_cosine
from repghost.search.data import StepBatches, flips, step_loader
from repghost.search.superspace import SuperSSDLite
from repghost.search.supertrain import train_dataset

STEPS = 300


def train(name: str, model, dataset, before=lambda: None) -> None:
    """The recipe above on ``model`` (``before`` runs before each step: the super-network's path)."""
    torch.manual_seed(0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=4e-5)
    batches = step_loader(dataset, StepBatches(range(len(dataset)), 8, (0, 0), 0, STEPS), 0)
    losses = []
    for step in range(STEPS):
        images, targets, _ = next(batches)
        images, targets = flips(images, targets, (0, 0), step)
        for group in optimizer.param_groups:
            group["lr"] = warmup_cosine(0.05, step, 50, STEPS)
        before()
        model.train()
        loss = sum(model(images, targets).values())
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.grad is not None], 10.0)
        optimizer.step()
        losses.append(loss.item())
        if (step + 1) % 50 == 0:
            print(name, step + 1, round(sum(losses[-50:]) / 50, 3), flush=True)


def main() -> None:
    torch.set_num_threads(1)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="runs/supernet-noise/synthetic")
    args = parser.parse_args()
    dataset = train_dataset(DataConfig(synthetic_dir=args.data, synthetic_train=512, synthetic_val=192))
    space = RepGhostNetSpace()
    arch = space.named_archs()["repghostnet_050"]
    torch.manual_seed(0)
    supernet = SuperSSDLite(space, dataset.num_classes, 128)
    train("supernet, fixed path repghostnet_050", supernet.model, dataset, lambda: supernet.set_arch(arch))
    torch.manual_seed(0)
    stand_alone = build_ssdlite(build_body("repghostnet_050", (3, 4)), dataset.num_classes, 128)
    train("stand-alone repghostnet_050", stand_alone, dataset)


if __name__ == "__main__":
    main()
