"""Transfer attack with S-FGRM: craft adversarial images on one model, test them on another.

A small CNN (the surrogate) and an MLP (the target) are trained on scikit-learn's 8x8 ``digits``. MI-FGSM and
SMI-FGRM (Han et al., arXiv 2204.02887 / 2307.02828) attack the surrogate; the transfer matrix reports how
often the images fool the surrogate itself (white-box) and the MLP it has never seen (black-box). On 8x8
images the two attacks are close; docs/attacks.md gives the Fashion-MNIST benchmark, where SMI-FGRM leads.

    python examples/transfer_attack.py --out runs/example-transfer
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from modelsafe.adversarial import create_attack, transfer_matrix
from modelsafe.data import load_dataset
from modelsafe.models import create_model_for
from modelsafe.report import transfer_table
from modelsafe.storage import write_json, write_text
from modelsafe.training import evaluate, fit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for the results (default: a new temp dir)")
    parser.add_argument("--images", type=int, default=None, help="test images to attack (default: all 359)")
    parser.add_argument("--eps", type=float, default=0.15, help="L-infinity budget in [0, 1] pixel units")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="modelsafe-transfer-"))
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()

    data = load_dataset("digits")                       # 1,797 8x8 grey images, bundled with scikit-learn
    torch.manual_seed(args.seed)                        # module constructors draw from the global generator
    surrogate = create_model_for("cnn", data.info)
    target = create_model_for("mlp", data.info)
    for model in (surrogate, target):
        fit(model, data.train, epochs=10, lr=0.05, seed=args.seed, progress=False)
    print(f"clean test accuracy: cnn {evaluate(surrogate, data.test)['accuracy']:.3f}, "
          f"mlp {evaluate(target, data.test)['accuracy']:.3f}")

    # one attack on its own: any nn.Module that takes [0, 1] images; labels default to its own prediction
    images = data.test.features(torch.arange(8))
    adv = create_attack("smi-fgrm", surrogate, eps=args.eps, seed=args.seed)(images)
    print(f"smi-fgrm on 8 images: max |adv - clean| = {float((adv - images).abs().max()):.3f} "
          f"(eps {args.eps})")

    # the transfer matrix: every attack on the surrogate, every image checked against every target
    test = data.test if args.images is None else data.test.subset(range(args.images))
    result = transfer_matrix(["mi-fgsm", "smi-fgrm"], {"cnn": surrogate}, {"cnn": surrogate, "mlp": target},
                             test, eps=args.eps, seed=args.seed, progress=False)
    table = transfer_table(result)
    print(table)
    for attack in ("mi-fgsm", "smi-fgrm"):
        print(f"{attack} black-box success on the mlp: {100 * result.black_box_mean(attack):.1f}%")
    write_text(out / "transfer.md", table)
    write_json(out / "transfer.json", result.to_dict())
    print(f"results in {out} ({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()
