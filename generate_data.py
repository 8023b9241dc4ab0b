"""Modular-arithmetic data sets: every equation a op b = c (mod p) exactly once, split disjointly.

    python generate_data.py --config configs/warmup/add97_l2.yaml
    python generate_data.py --op / --p 97 --train-frac 0.5 --val-frac 0.25 --seed 0
    python generate_data.py --op + --p 113 --pad-numbers       # 007+104=111: one length for all

Writes data/<name>/{train,val,test}.txt (one equation per line, like 12/5=80) and meta.json.
"""

import argparse

from config import Config, load_config, validate
from runlog import ArgumentParser, UserError, float_arg, int_arg, refuse_foreign_folder, run_cli
from tasks import OPERATIONS, check_dataset, check_operation, dataset_dir, write_dataset


def main():
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="a train config; its data section is used")
    parser.add_argument("--op", choices=list(OPERATIONS), help="operation (default: the config's, else '/')")
    parser.add_argument("--p", type=int_arg(), help="modulus (default 97)")
    parser.add_argument("--train-frac", type=float_arg(0, 1, low_open=True),
                        help="share of all equations for training (default 0.5)")
    parser.add_argument("--val-frac", type=float_arg(0, 1),
                        help="share for validation; test gets the rest (default 0.25)")
    parser.add_argument("--seed", type=int_arg(0), help="data seed for the shuffle (default 0)")
    parser.add_argument("--pad-numbers", action="store_true", default=None,
                        help="write every number with the digits of p - 1 (007+104=111)")
    parser.add_argument("--out", help="output folder (default data/<op><p>_train<f>_val<f>_seed<s>)")
    args = parser.parse_args()
    cfg = load_config(args.config) if args.config else Config()
    data = cfg.data
    if data.kind != "modular":
        raise UserError(f"config '{args.config}' has data.kind '{data.kind}'; generate_data.py makes modular data")
    for flag, key in [("op", "op"), ("p", "p"), ("train_frac", "train_frac"),
                      ("val_frac", "val_frac"), ("seed", "data_seed"), ("pad_numbers", "pad_numbers"),
                      ("out", "data_dir")]:
        if getattr(args, flag) is not None:
            setattr(data, key, getattr(args, flag))
    validate(cfg)
    check_operation(data.op, data.p)
    out = dataset_dir(data)
    if (out / "meta.json").exists():
        meta = check_dataset(data)
        print(f"{out} already exists and matches")
    else:
        refuse_foreign_folder(out, "meta.json", "data folder")
        meta = write_dataset(data)  # whole or not at all: a folder cut short would be refused by every later run
        print(f"wrote {out}")
    total = sum(meta["counts"].values())
    for name, count in meta["counts"].items():
        print(f"  {name:5s} {count:6d}  ({count / total:.1%})")
    print(f"  total {total:6d}  equations {data.op} mod {data.p}")


if __name__ == "__main__":
    run_cli(main)
