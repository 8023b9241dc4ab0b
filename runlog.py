"""Reading run directories and judging grokking: what plot.py and sweep.py need, without torch.

Also home to what every command line shares: UserError and run_cli (one line, exit 2), the
argparse parser and number types that check like a config key does, whole-or-nothing writes
(write_atomic) and the checks of output paths made before any work starts.
"""

import argparse
import json
import math
import os
import signal
import sys
from pathlib import Path

import yaml

# Grokking, as this repo counts it: held-out accuracy reached GROKKED and never fell below HELD
# afterwards, to the end of the run. A single evaluation touching GROKKED is "touched", not grokked.
GROKKED = 0.99
HELD = 0.97
DROP = 0.90  # a fall below this after grokking counts as a collapse


class UserError(Exception):
    """A problem with what the user asked for: printed as one line, exit status 2."""


class WriteError(UserError):
    """A file that could not be written (a full disk, no permission): the path and the cause."""


def run_cli(main):
    """Run main(), turning a UserError (and an OSError, a Ctrl-C) into a one-line message and a
    non-zero exit: 2 for a problem to fix, 130 for an interruption."""
    signal.signal(signal.SIGTERM, _interrupt)  # a kill, like Ctrl-C, runs the cleanup on its way out
    try:
        main()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except OSError as e:  # one the command did not expect at that point; the message still names the file
        print(f"error: {e.strerror or e}" + (f": '{e.filename}'" if e.filename else ""), file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("error: interrupted (Ctrl-C)", file=sys.stderr)
        sys.exit(130)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser, with its own errors (an unknown option, a missing value) in the one-line
    form of every other error: 'error: ...', exit status 2 (through run_cli)."""

    def error(self, message):
        # 'argument --mark: expected one argument' names the form too: --mark STEP=TEXT
        for action in self._actions:
            names = "/".join(action.option_strings)
            if action.metavar and names and message.startswith(f"argument {names}:"):
                message = message.replace(names, f"{names} {action.metavar}", 1)
        raise UserError(f"{message} (see python {self.prog} --help)")


MAX_INT = 2**63 - 1  # what torch stores as int64 (seeds, steps); a larger number cannot be used


def shorten(value, limit=40):
    """A value for an error message: one typed at great length is shown by its start and length,
    so that the message stays one readable line."""
    text = str(value)
    return text if len(text) <= limit else f"{text[:20]}... ({len(text)} characters)"


def int_arg(low=0, high=MAX_INT):
    """An argparse type: a whole number in [low, high], written with ASCII digits ('²' is a digit
    to str.isdigit but not to int(); '٣' reads as 3 to int() but is not what anyone typed)."""
    def parse(text):
        body = text.strip().removeprefix("-")
        if not body.isascii() or not body.isdigit():
            raise argparse.ArgumentTypeError(f"'{shorten(text)}' is not a whole number")
        # int() refuses more than 4,300 digits, and nothing here takes more than MAX_INT's 19
        value = int(text) if len(body.lstrip("0")) <= len(str(MAX_INT)) else math.inf
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{shorten(text.strip())} is out of range: give a whole number "
                                             f"from {low} to {high}")
        return value
    return parse


def float_arg(low=-math.inf, high=math.inf, low_open=False):
    """An argparse type: a finite number in [low, high] (or (low, high] with low_open)."""
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{shorten(text)}' is not a number")
        if not math.isfinite(value) or value < low or value > high or (low_open and value == low):
            where = f"{'(' if low_open else '['}{low:g}, {high:g}]"
            raise argparse.ArgumentTypeError(f"'{shorten(text)}' is out of range: give a finite number in {where}")
        return value
    return parse


def cannot_write(path, error):
    return WriteError(f"cannot write '{path}': {error.strerror or error}")


def write_atomic(path, write, binary=False):
    """Write path whole or not at all: write(f) fills a temp file beside it (its folder made if
    missing), which is flushed to disk and renamed over path. On any failure (a full disk, no
    permission, Ctrl-C) the temp file is removed and path is as it was; an OSError becomes a
    WriteError naming path and the cause."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb" if binary else "w") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise cannot_write(path, e) from None
        raise


def write_text(path, text):
    write_atomic(path, lambda f: f.write(text))


def check_output_file(path, what, suffixes=None):
    """Refuse, before any work starts, an output file that could not be written: a folder at its
    place, a file where one of its folders belongs, a folder without write permission, a file
    name whose extension is not among suffixes. Missing folders are fine (they are made)."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{what} '{path}' is a folder; give a file name")
    if suffixes is not None and path.suffix.lower().lstrip(".") not in suffixes:
        raise UserError(f"{what} '{path}' must end in one of: {', '.join('.' + s for s in sorted(suffixes))}")
    check_output_folder(path.parent, what)
    return path


def check_output_folder(folder, what):
    """The nearest existing folder of folder must be a folder we may write in."""
    existing = Path(folder).absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{what} '{folder}': '{existing}' is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{what} '{folder}': no permission to write in '{existing}'")


def refuse_foreign_folder(folder, marker, what):
    """A folder this repo is about to fill must be absent, empty, or hold marker (a file the
    repo wrote there): never someone else's files."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{what} '{folder}' is a file, not a folder; pick another")
    if folder.is_dir() and not (folder / marker).exists() and any(folder.iterdir()):
        raise UserError(f"{what} '{folder}' holds files but no {marker}, so they are not this repo's (or their "
                        "writing was cut short); pick a new or empty folder, or delete this one")
    check_output_folder(folder, what)


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key set twice in one mapping is an error (PyYAML keeps
    the last one silently)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key '{key}' is set twice (line {key_node.start_mark.line + 1})", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def load_yaml_mapping(path, what, hint):
    """A YAML file that must hold a mapping (a config or a sweep file), or a UserError that names
    the file and the problem: missing, not UTF-8, not YAML, a key set twice, not a mapping."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} '{path}' not found ({hint})")
    try:
        tree = yaml.load(path.read_bytes().decode("utf-8"), Loader=_UniqueKeyLoader)
    except UnicodeDecodeError as e:
        raise UserError(f"{what} '{path}' is not UTF-8 text (byte {e.start}); save it as UTF-8")
    except ValueError:  # a whole number longer than int() reads (4,300 digits)
        raise UserError(f"{what} '{path}' holds a whole number of more than {sys.get_int_max_str_digits():,} "
                        "digits, too long to read; give one in range") from None
    except yaml.YAMLError as e:
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None and "line" not in problem else ""
        raise UserError(f"{what} '{path}' is not valid YAML: {problem}{where}")
    tree = {} if tree is None else tree
    if not isinstance(tree, dict):
        raise UserError(f"{what} '{path}' must be a mapping of keys to values")
    return tree


def dump_json(path, obj):
    write_text(path, json.dumps(obj, indent=2) + "\n")


def read_metrics(run_dir, allow_empty=False):
    """The records of a run directory's metrics.jsonl, in step order.

    A line still being written by a live run (no newline yet, or cut short) is left out. A log
    with no evaluation yet is an error unless allow_empty, which returns [] for it.
    """
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise UserError(f"'{run_dir}' has no metrics.jsonl; pass run directories written by train.py")
    *complete, _unfinished = path.read_text().split("\n")  # "" or a line still being written
    records = []
    for number, line in enumerate(complete, 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                raise UserError(f"'{path}' line {number} is not JSON; the log was edited or damaged")
    if not records and not allow_empty:
        raise UserError(f"'{path}' holds no evaluation yet; wait for the run's first evaluation")
    return records


# Config keys added after some committed runs were made, with the value that does what those runs
# did (each was added off by default). Readers of old config.yaml files use these for absent keys;
# a test checks that they equal the current defaults.
KEYS_ADDED_LATER = {"model.init_scale": 1.0, "train.loss": "softmax", "train.perpendicular_grad": False,
                    "train.eval_subset": 0, "train.eval_full_gap": 0, "train.drop_train_acc": 1.0,
                    "model.attention": "sdpa"}

# Config keys since removed, each true or false. They changed the speed only (the same loss up to
# float rounding), so a config file, run log, checkpoint or sweep that sets one loads without it.
# train.packed ran the model on the real tokens only; it gained nothing on the padded rows every
# config now uses (experiments/bench/bench_cpu_2026-11-24_char_padded.txt).
REMOVED_KEYS = ("train.packed",)


def is_removed(dotted, value):
    """True if dotted is one of REMOVED_KEYS, which readers drop; its value must be true or false."""
    if dotted not in REMOVED_KEYS:
        return False
    if not isinstance(value, bool):
        raise UserError(f"config key '{dotted}' was removed and has no effect; it can only be true or false, "
                        f"not {value!r}: drop it")
    return True


def upgrade_config(tree):
    """A config tree (a YAML file, a run's config.yaml, a checkpoint's config) as this code reads
    it, for one written before a key went or moved: REMOVED_KEYS are dropped, and
    train.attention_kernel became model.attention. Its 'auto' and 'default' both ran SDPA (they
    picked different CPU kernels; now the CPU always gets the math one, as 'auto' did), 'explicit'
    the written-out attention. The tree given is left as it is."""
    tree = {name: {key: value for key, value in section.items() if not is_removed(f"{name}.{key}", value)}
            if isinstance(section, dict) else section for name, section in tree.items()}
    train = tree.get("train")
    if not isinstance(train, dict) or "attention_kernel" not in train:
        return tree
    kernel = train["attention_kernel"]
    if kernel not in ("auto", "default", "explicit"):
        raise UserError(f"config key 'train.attention_kernel' (now 'model.attention') is {kernel!r}; "
                        "write model.attention: sdpa or explicit instead")
    model = tree.get("model") or {}
    if not isinstance(model, dict):
        raise UserError("config section 'model' must be a mapping of keys to values")
    attention = "explicit" if kernel == "explicit" else "sdpa"
    if model.get("attention", attention) != attention:
        raise UserError(f"the config sets both model.attention: {model['attention']} and the old key it replaced, "
                        f"train.attention_kernel: {kernel}; keep model.attention only")
    train = {key: value for key, value in train.items() if key != "attention_kernel"}
    return {**tree, "model": {**model, "attention": attention}, "train": train}


def read_run_config(run_dir):
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise UserError(f"'{run_dir}' has no config.yaml; pass run directories written by train.py")
    return upgrade_config(yaml.safe_load(path.read_text()))


def heldout_split(records):
    """The split that grokking is judged on: test if the run logged it, else val."""
    return "test" if any("test_acc" in r for r in records) else "val"


def first_step(records, key, level):
    """First logged step where records[key] >= level, or None if it never gets there."""
    return next((r["step"] for r in records if r.get(key, -1.0) >= level), None)


def grokked_and_held(records, key):
    """First step from which records[key] was >= GROKKED and never again below HELD; else None.

    The hold must be seen: a run that first reaches GROKKED at its last evaluation has not held it.
    """
    held, seen = None, 0
    for r in records:
        value = r.get(key)
        if value is None:
            continue
        if value < HELD:
            held, seen = None, 0
        elif held is None and value >= GROKKED:
            held, seen = r["step"], 1
        elif held is not None:
            seen += 1
    return held if seen >= 2 else None


def after_grokking(records, key):
    """(lowest value, number of falls below DROP) of records[key] after it first reached GROKKED."""
    start = first_step(records, key, GROKKED)
    if start is None:
        return None, None
    values = [r[key] for r in records if r["step"] >= start and key in r]
    falls = sum(1 for before, now in zip(values, values[1:]) if before >= DROP > now)
    return min(values), falls


def grokking_summary(records, heldout=None):
    """The grokking numbers of one run's log: None where a level was never reached.

    train_99 / <heldout>_99: first step at 99% accuracy (touched); lag: held-out minus train;
    delay_99: held-out over train (the ratio of those steps);
    grokked_at: first step of grokked-and-held (see GROKKED, HELD); lowest / falls: how far the
    held-out accuracy went down after first touching 99%, and how often it fell below 90%.
    """
    records = [r for r in records if "subset" not in r]  # judged on full evaluations only
    heldout = heldout or heldout_split(records)
    key = f"{heldout}_acc"
    out = {"last_step": records[-1]["step"]}
    for level, tag in ((GROKKED, "99"), (1.0, "100")):
        train_step, held_step = first_step(records, "train_acc", level), first_step(records, key, level)
        out[f"train_{tag}"], out[f"{heldout}_{tag}"] = train_step, held_step
        out[f"lag_{tag}"] = None if train_step is None or held_step is None else held_step - train_step
    # the delay as the log-x plot shows it: 3 means the held-out curve reaches 99% half a decade later
    train_99, held_99 = out["train_99"], out[f"{heldout}_99"]
    out["delay_99"] = None if not train_99 or held_99 is None else round(held_99 / train_99, 2)  # none from step 0
    out["grokked_at"] = grokked_and_held(records, key)
    out["grokked"] = out["grokked_at"] is not None
    out[f"lowest_{heldout}_after_99"], out["falls_below_90"] = after_grokking(records, key)
    touched = first_step(records, key, GROKKED)
    out["seconds_to_99"] = next((r.get("elapsed") for r in records if r["step"] == touched), None)
    for name in ("train_loss", "train_acc", f"{heldout}_loss", f"{heldout}_acc", "weight_norm"):
        out[f"final_{name}"] = records[-1].get(name)
    return out
