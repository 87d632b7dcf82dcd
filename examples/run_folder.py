"""Run folders: train a target into a resumable folder, read what it holds, load it back and audit it.

``train_run`` is what ``modelsafe train`` runs. The folder holds ``modelsafe.json`` (what modelsafe wrote
there, with the SHA-256 of each weights file), ``config.json``, ``split.json`` (the membership split as index
sets), ``checkpoint/``, ``metrics.json`` and ``weights.safetensors``. Running the same call again resumes
from the last finished epoch; here the run is already finished, so it only reads the result back.

    python examples/run_folder.py --out runs/example-digits-mlp
    modelsafe audit --run runs/example-digits-mlp --attacks loss     # the same folder from the command line
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from modelsafe.data import SplitSpec
from modelsafe.privacy import audit
from modelsafe.report import RunFolder
from modelsafe.storage import read_json
from modelsafe.training import TrainConfig, evaluate
from modelsafe.workflows import load_target, train_run

SPLIT = SplitSpec(members=600, validation=150, reference=300, eval_nonmembers=300)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None,
                        help="the run folder: new, or written by this script before (default: in a temp dir)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    folder = args.out or Path(tempfile.mkdtemp(prefix="modelsafe-run-")) / "digits-mlp"
    start = time.perf_counter()

    train = TrainConfig(epochs=args.epochs, batch_size=32, lr=0.05)
    settings = dict(out=folder, split=SPLIT, train=train, seed=args.seed, progress=False)
    metrics = train_run("digits", "mlp", **settings)
    again = train_run("digits", "mlp", **settings)            # the same call: resumes, nothing to train
    print(f"trained into {folder}: test accuracy {metrics['test']['accuracy']:.3f}, "
          f"member accuracy {metrics['members']['accuracy']:.3f}; second call resumed: {again['resumed']}")

    print("folder holds: " + ", ".join(sorted(p.name for p in folder.iterdir())))
    marker = read_json(folder / "modelsafe.json")
    digests = {name: digest for name, digest in marker["files"].items() if digest}
    print(f"modelsafe.json: kind {marker['kind']!r}; SHA-256 recorded for "
          + ", ".join(f"{name} ({digest[:12]}...)" for name, digest in sorted(digests.items())))
    config = RunFolder(folder).config()
    print(f"config.json: dataset {config['dataset']}, model {config['model']}, seed {config['seed']}, "
          f"{config['train']['epochs']} epochs at lr {config['train']['lr']}")
    split = RunFolder(folder).load_split()
    print("split.json: " + ", ".join(f"{name} {len(split[name])}" for name in
                                     ("members", "validation", "attack_known_members", "attack_reference",
                                      "eval_members", "eval_nonmembers")))

    model, data, split, _ = load_target(folder)         # weights checked against their SHA-256 on load
    print(f"loaded back: test accuracy {evaluate(model, data.test)['accuracy']:.3f}")
    report = audit(model, data, split, ["loss"], n_bootstrap=200, progress=False)["loss"]
    print(f"loss-threshold attack on the loaded model: AUC {report.auc:.3f}, "
          f"advantage {report.advantage:.3f}")
    print(f"done ({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()
