"""When each progress measure crosses its threshold, against the step of val 99%: a table from run logs.

    python scripts/crossings.py experiments/div97_progress/*_s? experiments/div97_memorise/div97_s0

The thresholds (stated in REPORT.md, "Why it groks"): the restricted loss (logits kept only along the
key frequencies) falls below 1.0 nat, the excluded loss (those frequencies removed) rises above 0.5
nat while the training loss is below 0.1, and the top-5 share of the embedding's spectral power
rises above 0.3 (about 0.12 at initialisation). Reads metrics.jsonl only (no torch).
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from runlog import GROKKED, first_step, read_metrics, run_cli  # noqa: E402
from sweep import format_table  # noqa: E402

RESTRICTED_BELOW, EXCLUDED_ABOVE, FULL_BELOW, SHARE_ABOVE = 1.0, 0.5, 0.1, 0.3


def first_where(records, test):
    return next((r["step"] for r in records if "fourier_full_loss" in r and test(r)), None)


def crossings(records):
    """{column: step or None} for one run."""
    return {
        "train_99": first_step(records, "train_acc", GROKKED),
        f"restricted<{RESTRICTED_BELOW}": first_where(records, lambda r: r["fourier_restricted_loss"] < RESTRICTED_BELOW),
        f"excluded>{EXCLUDED_ABOVE}": first_where(records, lambda r: r["fourier_excluded_loss"] > EXCLUDED_ABOVE
                                                 and r["fourier_full_loss"] < FULL_BELOW),
        f"top5_share>{SHARE_ABOVE}": first_where(records, lambda r: r["fourier_top5_share"] > SHARE_ABOVE),
        "val_99": first_step(records, "val_acc", GROKKED),
        "last_step": records[-1]["step"],
        "key_freqs_at_end": " ".join(map(str, records[-1].get("fourier_key_freqs", []))),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="run directories whose metrics.jsonl carry the fourier_* measures")
    args = parser.parse_args()
    rows = [{"run": f"{Path(run).parent.name}/{Path(run).name}",
             **{c: "never" if step is None else str(step) for c, step in crossings(read_metrics(run)).items()}}
            for run in args.runs]
    print(format_table(list(rows[0]), rows))


if __name__ == "__main__":
    run_cli(main)
