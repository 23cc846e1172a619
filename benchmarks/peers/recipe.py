"""What every anchor script is told: the images, the network and hwbench's recipe. The standard library alone, so a
peer that imports it loads nothing its user's own script would not."""

from __future__ import annotations

import argparse


def arguments(doc: str | None) -> argparse.ArgumentParser:
    """The images (an .npz file), the network, the epochs (the first is warm-up), the batch, the rate, the seed."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("arrays", help="an .npz file: x, float32 (N, 1, 28, 28); y, int64 (N,)")
    parser.add_argument("--arch", choices=["ffnn", "cnn"], default="ffnn")
    parser.add_argument("--epochs", type=int, default=5, help="at least 2: the first is warm-up, the rest are timed")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    return parser


def parse(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """The command line, refused in one line where its epochs leave no steady state to time."""
    args = parser.parse_args()
    if args.epochs < 2:
        raise SystemExit("error: --epochs must be at least 2: the first is warm-up")
    return args
