"""Sparse training with RigL, in a plain PyTorch loop and inside ``fit``, then a packed sparse file.

RigL (Evci et al., ICML 2020) keeps a fixed share of the weights active (here 10%, spread over the layers by
ERK) and every few steps drops the smallest active weights and regrows the inactive ones with the largest
gradient. ``export_sparse`` stores only the non-zero weights, so the file is really smaller.

    python examples/sparse_rigl.py --out runs/example-sparse
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from modelsafe.data import load_dataset
from modelsafe.models import create_model_for
from modelsafe.sparse import DynamicSparsity, SparsityCallback, export_sparse, load_sparse
from modelsafe.storage import save_weights
from modelsafe.training import evaluate, fit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for the weights (default: a new temp dir)")
    parser.add_argument("--density", type=float, default=0.1, help="share of conv/linear weights kept")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="modelsafe-sparse-"))
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    data = load_dataset("digits")
    batch_size = 64
    total_steps = args.epochs * math.ceil(len(data.train) / batch_size)

    # 1. your own loop: one extra line after each optimizer step
    torch.manual_seed(args.seed)
    model = create_model_for("cnn", data.info)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    sparsity = DynamicSparsity(model, optimizer, args.density, total_steps=total_steps, update_interval=25,
                               prune="magnitude", grow="gradient", seed=args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    for _ in range(args.epochs):
        model.train()
        for x, y in data.train.batches(batch_size, shuffle=True, generator=generator):
            optimizer.zero_grad()
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
            sparsity.step()
    sparsity.remove()
    summary = sparsity.summary()
    print(f"own loop: test accuracy {evaluate(model, data.test)['accuracy']:.3f}, "
          f"density {summary['density']:.3f} ({summary['nnz']:,} of {summary['params']['sparse_layers']:,} "
          f"weights), {summary['updates']} mask updates, ITOP rate {summary['itop_rate']:.3f}")

    # 2. the same inside modelsafe.training.fit, which builds its own optimizer
    torch.manual_seed(args.seed)
    model2 = create_model_for("cnn", data.info)
    callback = SparsityCallback.dynamic(args.density, grow="gradient", update_interval=25, seed=args.seed)
    fit(model2, data.train, epochs=args.epochs, batch_size=batch_size, lr=0.05, callbacks=[callback],
        seed=args.seed, progress=False)
    callback.engine.remove()
    print(f"fit + SparsityCallback: test accuracy {evaluate(model2, data.test)['accuracy']:.3f}")

    # 3. a packed file: only the non-zero weights are stored; loading gives back the exact tensors
    dense_file = save_weights(out / "dense.safetensors", model)
    report = export_sparse(model, out / "model.sparse.safetensors")
    restored = load_sparse(report.path)
    assert all(torch.equal(restored[k], v) for k, v in model.state_dict().items())
    print(f"packed file: {report.sparse_bytes:,} bytes vs {dense_file.stat().st_size:,} dense "
          f"({report.ratio:.1f}x smaller), weights restored exactly")
    print(f"files in {out} ({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()
