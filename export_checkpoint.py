"""Strip a checkpoint to what inference needs (weights, config, tokenizer, step): for shipping.

    python export_checkpoint.py experiments/div97_paper/div97_paper_s0 checkpoints/div97.pt

The result loads everywhere a full checkpoint does (inference.py, evaluate.py) but cannot
resume training: it has no optimizer state. Weights are stored without any torch.compile prefix,
in fp32, or with --half in fp16: half the file, cast back to fp32 on loading. fp16 keeps about 3
significant digits, which can in principle flip a close prediction: score the exported file with
evaluate.py (the README does so for the shipped files).
"""

import argparse

import torch

from checkpoint import load_checkpoint, save_checkpoint
from runlog import ArgumentParser, check_output_file, run_cli

KEEP = ("model", "config", "tokenizer", "step", "data")


def main():
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="a checkpoint file or a run directory")
    parser.add_argument("dest", help="where to write the weights-only checkpoint")
    parser.add_argument("--half", action="store_true", help="store the weights in fp16 (half the size)")
    args = parser.parse_args()
    check_output_file(args.dest, "dest")
    ckpt = load_checkpoint(args.source)
    small = {k: ckpt[k] for k in KEEP if k in ckpt}
    dtype = torch.float16 if args.half else torch.float32
    small["model"] = {k.removeprefix("_orig_mod."): v.to(dtype) for k, v in small["model"].items()}
    save_checkpoint(args.dest, small)
    print(f"wrote {args.dest} (step {small.get('step')}, {dtype})")


if __name__ == "__main__":
    run_cli(main)
