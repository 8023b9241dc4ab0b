"""Strip a checkpoint to what inference needs (weights, config, tokenizer, step): for shipping.

    python export_checkpoint.py results/grok/div97_s0 checkpoints/div97.pt

The result loads everywhere a full checkpoint does (inference.py, evaluate.py) but cannot
resume training: it has no optimizer state. Weights are stored in fp32 without any
torch.compile prefix.
"""

import argparse

from common import load_checkpoint, run_cli, save_checkpoint

KEEP = ("model", "config", "tokenizer", "step", "data")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="a checkpoint file or a run directory")
    parser.add_argument("dest", help="where to write the weights-only checkpoint")
    args = parser.parse_args()
    ckpt = load_checkpoint(args.source)
    small = {k: ckpt[k] for k in KEEP if k in ckpt}
    small["model"] = {k.removeprefix("_orig_mod."): v.float() for k, v in small["model"].items()}
    save_checkpoint(args.dest, small)
    print(f"wrote {args.dest} (step {small.get('step')})")


if __name__ == "__main__":
    run_cli(main)
