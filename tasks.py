"""The data sets: every modular equation a op b = c (mod p) exactly once, split disjointly by a
data seed of its own and stored as text; and the strings of the memorisation checks.

Pure functions of (operation, p, split fractions, seed); generate_data.py is their command line.
"""

import hashlib
import itertools
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from runlog import UserError, cannot_write, write_text


def is_prime(n):
    return n >= 2 and all(n % k for k in range(2, int(n**0.5) + 1))


def inverse_mod(y, p):
    """y's inverse mod a prime p: y^(p-2) (Fermat's little theorem)."""
    return pow(y, p - 2, p)


def divide_if_odd(x, y, p):
    """Power et al. 2022's mixed operation: x / y where y is odd, x - y where y is even (0 included)."""
    return (x * inverse_mod(y, p)) % p if y % 2 else (x - y) % p


# A permutation of 0..4 is the tuple of its images (x[i] is where x sends i). Composition x.y
# applies x first, then y: (x.y)[i] = y[x[i]], the order of sympy's x * y, which the paper's code
# (openai/grok, grok/data.py) uses for its S5 operations.
def compose(x, y):
    return tuple(y[i] for i in x)


def invert(x):
    inverse = [0] * len(x)
    for i, image in enumerate(x):
        inverse[image] = i
    return tuple(inverse)


@dataclass(frozen=True)
class Operation:
    """One binary operation of Power et al. 2022, appendix A.1.1: c = answer(x, y, p).
    Operands are the residues 0..p-1 (y from 1 where nonzero_y), or for group 's5' the 120
    permutations of 0..4 (p is not used)."""

    slug: str  # the operation's part of its data folder's name
    answer: Callable
    group: str = "residues"
    nonzero_y: bool = False
    needs_prime: bool = False  # every y used must have an inverse mod p


OPERATIONS = {
    "+": Operation("add", lambda x, y, p: (x + y) % p),
    "-": Operation("sub", lambda x, y, p: (x - y) % p),
    "*": Operation("mul", lambda x, y, p: (x * y) % p),
    "/": Operation("div", lambda x, y, p: (x * inverse_mod(y, p)) % p, nonzero_y=True, needs_prime=True),
    "/-": Operation("div_odd_sub", divide_if_odd, needs_prime=True),
    "x2+y2": Operation("x2_y2", lambda x, y, p: (x**2 + y**2) % p),
    "x2+xy+y2": Operation("x2_xy_y2", lambda x, y, p: (x**2 + x * y + y**2) % p),
    "x2+xy+y2+x": Operation("x2_xy_y2_x", lambda x, y, p: (x**2 + x * y + y**2 + x) % p),
    "x3+xy": Operation("x3_xy", lambda x, y, p: (x**3 + x * y) % p),
    "x3+xy2+y": Operation("x3_xy2_y", lambda x, y, p: (x**3 + x * y**2 + y) % p),
    "s5": Operation("s5", lambda x, y, p: compose(x, y), group="s5"),
    "s5conj": Operation("s5conj", lambda x, y, p: compose(compose(x, y), invert(x)), group="s5"),
    "s5aba": Operation("s5aba", lambda x, y, p: compose(compose(x, y), x), group="s5"),
}
PERMUTATIONS = list(itertools.permutations(range(5)))  # S5 in lexicographic order


def uses_p(op):
    """False for the S5 operations, whose operands are permutations whatever data.p says."""
    return OPERATIONS[op].group == "residues"


MAX_EQUATIONS = 10_000_000  # p up to 3,162: far beyond the paper's 97 and 113, and a few GB at most


def check_operation(op, p):
    if op not in OPERATIONS:
        raise UserError(f"unknown operation '{op}'; choose one of: {' '.join(OPERATIONS)}")
    if not uses_p(op):
        return
    if p < 2:
        raise UserError(f"p must be at least 2, got {p}")
    if p * p > MAX_EQUATIONS:
        raise UserError(f"p = {p} gives {p * p:,} equations (p squared), more than this repo builds "
                        f"({MAX_EQUATIONS:,}, p <= {int(MAX_EQUATIONS ** 0.5)}); use a smaller p")
    if OPERATIONS[op].needs_prime and not is_prime(p):
        raise UserError(f"'{op}' needs a prime p (every y it divides by must have an inverse), but {p} is not prime")


def operands(op, p):
    """(the x values, the y values) of op's equations, in a fixed order."""
    operation = OPERATIONS[op]
    if operation.group == "s5":
        return PERMUTATIONS, PERMUTATIONS
    return range(p), range(1 if operation.nonzero_y else 0, p)


def all_equations(op, p):
    """Every (x, y, c) of op mod p (or in S5), in a fixed order."""
    check_operation(op, p)
    xs, ys = operands(op, p)
    answer = OPERATIONS[op].answer
    return [(x, y, answer(x, y, p)) for x in xs for y in ys]


def number_width(data):
    """Digits each number is written with: those of p - 1 if data.pad_numbers, else as many as it has."""
    return len(str(data.p - 1)) if data.pad_numbers else 0


def format_number(n, width=0):
    """An operand or answer as the data files write it: a residue '5', or with width 2
    (data.pad_numbers) '05'; a permutation as its images of 0..4, '01243' (width not used)."""
    if isinstance(n, tuple):
        return "".join(map(str, n))
    return f"{n:0{width}d}"


def format_prompt(x, op, y, width=0):
    """The question part of an equation: '12+5=' (width 2: '12+05='). An operation named by more
    than one character stands between spaces, '3 x2+y2 5=', so that no name runs into a number."""
    space = "" if len(op) == 1 else " "
    return f"{format_number(x, width)}{space}{op}{space}{format_number(y, width)}="


def format_equation(x, op, y, c, width=0):
    return format_prompt(x, op, y, width) + format_number(c, width)


def parse_prompt(prompt, op):
    """The operands (as written) of a prompt 'x op y=' (spaces around op allowed), or None."""
    match = re.fullmatch(rf"\s*([0-9]+)\s*{re.escape(op)}\s*([0-9]+)\s*=", prompt)
    return None if match is None else (match[1], match[2])


def canonical_prompt(prompt, op):
    """The prompt as the data files write it (their spacing), or the prompt unchanged if it is not
    'x op y=': a model on character tokens reads every space."""
    parsed = parse_prompt(prompt, op)
    if parsed is None:
        return prompt
    space = "" if len(op) == 1 else " "
    return f"{parsed[0]}{space}{op}{space}{parsed[1]}="


def split_sizes(n, train_frac, val_frac):
    n_train = round(train_frac * n)
    n_val = min(round(val_frac * n), n - n_train)
    return n_train, n_val, n - n_train - n_val


def split_equations(equations, train_frac, val_frac, seed):
    """Shuffle with a generator of its own (the data seed) and cut into disjoint splits."""
    n_train, n_val, n_test = split_sizes(len(equations), train_frac, val_frac)
    wanted = {"train": (train_frac, n_train), "val": (val_frac, n_val), "test": (1 - train_frac - val_frac, n_test)}
    for name, (frac, count) in wanted.items():
        if frac > 1e-9 and count == 0:
            raise UserError(
                f"{len(equations)} equations are too few to give the {name} split any at fraction "
                f"{frac:g}; use a larger p or change the fractions"
            )
    import torch  # here, so that readers of names (sweep.py) load without it

    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(equations), generator=generator).tolist()
    shuffled = [equations[i] for i in order]
    return {
        "train": shuffled[:n_train],
        "val": shuffled[n_train:n_train + n_val],
        "test": shuffled[n_train + n_val:],
    }


def dataset_dir(data):
    if data.data_dir:
        return Path(data.data_dir)
    name = OPERATIONS[data.op].slug if data.op in OPERATIONS else "op"
    if data.op not in OPERATIONS or uses_p(data.op):
        name += str(data.p)
    padded = "_padded" if data.pad_numbers else ""
    return Path("data") / f"{name}_train{data.train_frac:g}_val{data.val_frac:g}_seed{data.data_seed}{padded}"


def split_identity(data):
    """What fixes a modular data set's examples and split: what its meta.json records."""
    identity = {"op": data.op, "p": data.p, "train_frac": data.train_frac,
                "val_frac": data.val_frac, "data_seed": data.data_seed}
    if data.op in OPERATIONS and not uses_p(data.op):  # the S5 operations: the same data whatever data.p says
        del identity["p"]
    if data.pad_numbers:  # only when set: data sets and checkpoints written before the option lack it
        identity["pad_numbers"] = True
    return identity


def data_identity(data):
    """What fixes a run's examples, their split and their tokens: a resume must not change any
    of it. Checkpoints store it."""
    if data.kind == "text":
        return {"kind": "text", "text": list(data.text), "mask_first": data.mask_first, "tokenizer": data.tokenizer}
    return {"kind": "modular", **split_identity(data), "tokenizer": data.tokenizer}


def first_difference(stored, wanted):
    """The first key of the identity wanted that the stored one gives another value, or None.
    A key the stored identity lacks is not compared, except pad_numbers of modular data: written
    only when True, so its absence (on either side) means False."""
    if "op" in wanted:
        stored = {**stored, "pad_numbers": stored.get("pad_numbers", False)}
        wanted = {**wanted, "pad_numbers": wanted.get("pad_numbers", False)}
    return next((key for key, value in wanted.items() if key in stored and stored[key] != value), None)


def write_dataset(data):
    """Generate, split and write the data set that the DataConfig describes; returns meta.

    The folder appears whole or not at all: it is written as a private folder beside it and
    renamed into place, so that runs starting side by side (a sweep's seeds) never see each
    other's half-written files; where another process got there first, its data set is used."""
    out = dataset_dir(data)
    splits = split_equations(all_equations(data.op, data.p), data.train_frac, data.val_frac, data.data_seed)
    meta = dict(split_identity(data), counts={}, sha256={})
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        private = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    except OSError as e:
        raise cannot_write(out, e) from None
    try:
        for name, rows in splits.items():
            text = "".join(format_equation(a, data.op, b, c, number_width(data)) + "\n" for a, b, c in rows)
            write_text(private / f"{name}.txt", text)
            meta["counts"][name] = len(rows)
            meta["sha256"][name] = hashlib.sha256(text.encode()).hexdigest()
        write_text(private / "meta.json", json.dumps(meta, indent=2) + "\n")
        try:
            os.rename(private, out)  # replaces an empty folder; fails on one another process filled
        except OSError:
            if not (out / "meta.json").is_file():
                raise
            shutil.rmtree(private, ignore_errors=True)  # the other process's copy is the one kept
            return check_dataset(data)
    except BaseException as e:
        shutil.rmtree(private, ignore_errors=True)
        if isinstance(e, OSError):
            raise cannot_write(out, e) from None
        raise
    return meta


def check_dataset(data):
    """Refuse a data directory made with other settings, or edited since."""
    out = dataset_dir(data)
    try:
        meta = json.loads((out / "meta.json").read_text())
    except (OSError, json.JSONDecodeError):
        raise UserError(f"'{out}' has no readable meta.json; delete the folder to regenerate it")
    k = first_difference(meta, split_identity(data))
    if k is not None:
        raise UserError(
            f"data directory '{out}' was made with {k}={meta.get(k, False)!r} but the config asks for "
            f"{k}={getattr(data, k)!r}; point data.data_dir elsewhere or delete '{out}'"
        )
    for name, digest in meta["sha256"].items():
        path = out / f"{name}.txt"
        if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            raise UserError(f"'{path}' is missing or was changed since meta.json was written; delete '{out}' to regenerate")
    return meta


def ensure_dataset(data, log=print):
    """The data set's folder, generated on first use; checked against the config otherwise."""
    out = dataset_dir(data)
    if not (out / "meta.json").exists():
        meta = write_dataset(data)
        log(f"generated {out} ({', '.join(f'{k} {v}' for k, v in meta['counts'].items())})")
        return out, meta
    return out, check_dataset(data)


def read_split(path):
    """Equations 'x op y=c' -> (prompt 'x op y=', completion 'c')."""
    rows = []
    for line in Path(path).read_text().splitlines():
        prompt, _, answer = line.rpartition("=")
        rows.append((prompt + "=", answer))
    return rows


def load_splits(data, log=print):
    """{'train', 'val', 'test'} -> list of (prompt, completion) for any data kind."""
    if data.kind == "text":
        # Memorisation: the model is scored on the very strings it trains on.
        examples = [("", text) for text in data.text]
        return {"train": examples, "val": examples, "test": []}
    out, _ = ensure_dataset(data, log)
    return {name: read_split(out / f"{name}.txt") for name in ("train", "val", "test")}


def all_pair_examples(data):
    """Every valid equation of the data's operation, as (prompt, completion), written as its files are."""
    width = number_width(data)
    return [(format_prompt(a, data.op, b, width), format_number(c, width)) for a, b, c in all_equations(data.op, data.p)]
