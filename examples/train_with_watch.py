"""Train a model on embedded digits under gd.watch, then print the report and write the HTML page.

    python examples/train_with_watch.py [--activation sigmoid|relu] [--steps 300]
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

import graddoctor as gd
from graddoctor.present import html as html


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--activation", default="sigmoid")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--out", default="runs/example")
    args = ap.parse_args()

    data = gd.data.load("digits", seed=0)
    model = gd.zoo.mlp(depth=20, width=64, activation=args.activation)
    print(gd.check(model, data.x_train[:64], target=data.y_train[:64]))

    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    train, _ = data.loaders(batch_size=64)
    step = 0
    with gd.watch(model, optimizer=opt, log_dir=args.out, example_inputs=data.x_train[:64]) as w:
        while step < args.steps:
            for x, y in train:
                loss = F.cross_entropy(model(x), y)
                loss.backward()
                opt.step()
                opt.zero_grad()
                w.step(loss)
                step += 1
                if step >= args.steps:
                    break
    report = w.report()
    print(report)
    path = html.write(f"{args.out}/report.html", {"watch": report})
    print(f"HTML report: {path}")


if __name__ == "__main__":
    main()
