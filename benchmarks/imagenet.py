"""The ImageNet transfer protocol of TransferAttack's result table: the 1,000 images of the NIPS-2017
development-set layout (``images.csv`` + ``images/``), a ResNet-50 surrogate, the seven black-box CNN and ViT
targets that table uses (VGG-16, MobileNet-v2, Inception-v3, ViT-B/16, PiT-B, Visformer-S, Swin-T), untargeted
attacks on the true labels with ε = 16/255, T = 10, α = ε/T = 1.6/255, images resized to 224 × 224 as that
code loads them, every adversarial image saved as an 8-bit PNG (``images/<attack>/<surrogate>/<ImageId>.png``),
and success counted over all images and over the images each target classifies correctly.

    python benchmarks/imagenet.py --data-root /data/nips17 --device cuda --out runs/imagenet
    python benchmarks/imagenet.py --data-root /data/nips17 --attacks mi-fgsm smi-fgrm pgn bsr --images 200

Needs the vision extra (timm and torchvision, e.g. ``scripts/setup_vision_env.sh``) and, for ``--pretrained``
(the default), network access once to download the weights. ``--no-pretrained`` runs the same protocol on
randomly initialised models (what the test suite does, on a few generated images).
"""

from __future__ import annotations

import argparse
import time

from modelsafe.report import transfer_table
from modelsafe.workflows.attack import AttackRunOptions, attack_run

SURROGATE = "torchvision:resnet50"
TARGETS = ("torchvision:vgg16", "torchvision:mobilenet_v2", "torchvision:inception_v3",
           "timm:vit_base_patch16_224", "timm:pit_b_224", "timm:visformer_small", "timm:swin_tiny_patch4_window7_224")
ATTACKS = ("mi-fgsm", "ni-fgsm", "vmi-fgsm", "di-mi-fgsm", "ti-mi-fgsm", "si-ni-fgsm", "smi-fgrm", "gra", "pgn",
           "bsr", "sia", "mef")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", required=True, help="folder with images.csv and images/ (NIPS-2017 layout)")
    p.add_argument("--attacks", nargs="+", default=list(ATTACKS))
    p.add_argument("--images", type=int, default=1000)
    p.add_argument("--image-size", type=int, default=224, help="images are resized to this size first")
    p.add_argument("--surrogate", default=SURROGATE)
    p.add_argument("--targets", nargs="+", default=list(TARGETS))
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--pretrained", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--save-images", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default="runs/imagenet-transfer")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    options = AttackRunOptions(attacks=tuple(args.attacks), eps=16 / 255, eps_text="16/255", steps=args.steps,
                               images=args.images, batch_size=args.batch_size, labels="true", quantize=True,
                               examples=min(8, args.batch_size), pretrained=args.pretrained,
                               save_images=args.save_images)
    start = time.perf_counter()
    result, folder = attack_run([args.surrogate], list(args.targets), options=options, dataset="imagenet-compatible",
                                data_root=args.data_root, dataset_options={"image_size": args.image_size},
                                out=args.out, seed=args.seed, device=args.device, progress=args.progress)
    print(f"## Success (%) over all {args.images} images (surrogate {args.surrogate}, eps 16/255, T = {args.steps})\n")
    print(transfer_table(result, "all"))
    print("## Success (%) over the images each target classifies correctly\n")
    print(transfer_table(result, "correct"))
    means = {row["attack"]: row["black_box_mean"] for row in result.attacks}
    print("black-box mean over the targets: " + ", ".join(f"{a} {100 * m:.1f}" for a, m in means.items()))
    print(f"reports and PNGs in {folder}; wall time {time.perf_counter() - start:.0f} s")
    return means


if __name__ == "__main__":
    main()
