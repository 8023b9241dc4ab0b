"""Generate text from a trained checkpoint.

    python inference.py --checkpoint checkpoints/div97.pt --prompt "12/5="
    python inference.py --checkpoint runs/s5 --prompt "01243 s5 10234="   # x, op, y; spaces optional
    python inference.py --checkpoint checkpoints/sanity.pt              # no prompt: from the start token
    python inference.py --checkpoint runs/sanity --temperature 1.0 --top-k 5 --num-samples 3

An equation's prompt is 'x op y=' with op as data.op names it (+ - * / /- x2+y2 ... s5conj);
spaces around op are optional (the data files put them around names longer than one character,
and the prompt is rewritten so). A permutation of 0..4 is written as its images of 0..4: 01243.
Standard output carries only the generated text (prompt plus completion), one sample per line;
everything else goes to standard error.
"""

import argparse
import sys

import torch

from checkpoint import load_checkpoint, model_from_checkpoint
from runlog import ArgumentParser, UserError, float_arg, int_arg, run_cli
from runtime import forward_context
from tasks import canonical_prompt, format_prompt, number_width, parse_prompt, uses_p


def complete(model, tokenizer, prompt, max_new_tokens=None, temperature=0.0, top_k=None, generator=None,
             context=None):
    """Prompt text -> prompt plus generated text, stopping at EOS or the model's block size.

    With number-level tokens, several generated tokens are written apart ('12/5 = 80'), since
    glued together ('=80' vs '1057') they could not be told apart.
    """
    ids = [tokenizer.eos_id] + tokenizer.encode(prompt)
    room = model.config.block_size + 1 - len(ids)  # the model reads at most block_size tokens
    if room <= 0:
        raise UserError(f"the prompt is {len(ids) - 1} tokens long; this model reads at most "
                        f"{model.config.block_size - 1} prompt tokens")
    if max_new_tokens is None:
        max_new_tokens = room
    elif max_new_tokens > room:
        raise UserError(f"--max-new-tokens {max_new_tokens} is beyond the model's block size: at most "
                        f"{room} new tokens fit after this prompt")
    with (context or forward_context("cpu"))():
        out = model.generate(torch.tensor([ids]), max_new_tokens, temperature=temperature, top_k=top_k,
                             eos_id=tokenizer.eos_id, generator=generator)
    new = [i for i in out[0, len(ids):].tolist() if i != tokenizer.eos_id]
    if tokenizer.kind == "number" and len(new) > 1:
        return prompt + " " + " ".join(tokenizer.decode([i]) for i in new)
    return prompt + tokenizer.decode(new)


def warn_about_equation_prompt(prompt, data):
    """A note on standard error when a prompt is not written as the model's equations are."""
    width = number_width(data)
    example = format_prompt(*example_operands(data), width)
    parsed = parse_prompt(prompt, data.op)
    if parsed is None:
        why = "does not end with '='" if not prompt.rstrip().endswith("=") else "is not two numbers around that operation"
        print(f"note: this model answers prompts of the form 'x {data.op} y=' (like {example}); "
              f"this prompt {why}", file=sys.stderr)
        return
    if not uses_p(data.op):
        if any(sorted(number) != list("01234") for number in parsed):
            print("note: this model saw only permutations of 0..4, written as their images of 0..4 "
                  f"(like {example}); this prompt has something else", file=sys.stderr)
        return
    if width and any(len(number) != width for number in parsed):
        print(f"note: this model was trained on numbers written with {width} digits (data.pad_numbers), "
              f"like {example}; this prompt's are not", file=sys.stderr)
    x, y = (int(number) for number in parsed)
    if x >= data.p or y >= data.p:
        print(f"note: this model saw only numbers 0 to {data.p - 1} (mod {data.p}); this prompt has a larger one",
              file=sys.stderr)
    if data.op == "/" and y % data.p == 0:
        print(f"note: 0 has no inverse mod {data.p}, so x/0 has no answer; the model never saw a division "
              "by 0 and what it writes means nothing", file=sys.stderr)


def example_operands(data):
    """(x, op, y) of the example prompt that messages show: 12 op 5, or two permutations."""
    if uses_p(data.op):
        return 12 % data.p, data.op, 5 % data.p
    return (0, 1, 2, 4, 3), data.op, (1, 0, 2, 3, 4)


def main():
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="a .pt file or a run directory (uses checkpoints/last.pt)")
    parser.add_argument("--prompt", help="text to continue, like '12/5=' (leave it out for a text model to "
                                         "generate from the start of a sequence)")
    parser.add_argument("--max-new-tokens", type=int_arg(1), help="default: as many as the block size allows")
    parser.add_argument("--temperature", type=float_arg(0), default=0.0, help="0 = greedy (default)")
    parser.add_argument("--top-k", type=int_arg(1), help="sample only from the k most likely tokens")
    parser.add_argument("--num-samples", type=int_arg(1), default=1)
    parser.add_argument("--seed", type=int_arg(0), default=0, help="seed for sampling")
    args = parser.parse_args()
    if args.prompt == "":
        raise UserError("--prompt is empty; give the text to continue, or leave --prompt out to generate "
                        "from the start of a sequence")

    ckpt = load_checkpoint(args.checkpoint)
    model, tokenizer, cfg = model_from_checkpoint(ckpt)
    context = forward_context("cpu", cfg.train.precision)
    print(f"loaded {args.checkpoint} (step {ckpt.get('step')}, {cfg.data.tokenizer} tokens, "
          f"{cfg.train.precision} as trained)", file=sys.stderr)
    if cfg.data.kind == "modular":
        if args.prompt is None:
            raise UserError(f"this model answers equations; give one with --prompt, like "
                            f"'{format_prompt(*example_operands(cfg.data), number_width(cfg.data))}'")
        warn_about_equation_prompt(args.prompt, cfg.data)
        args.prompt = canonical_prompt(args.prompt, cfg.data.op)  # the data files' spacing
    generator = torch.Generator().manual_seed(args.seed)
    for _ in range(args.num_samples):
        print(complete(model, tokenizer, args.prompt or "", args.max_new_tokens, args.temperature, args.top_k, generator,
                       context))


if __name__ == "__main__":
    run_cli(main)
