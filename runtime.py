"""Where and how the model runs: device, precision, SDPA kernel, seeds and RNG states."""

import contextlib
import platform
import random

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from runlog import UserError


def device_type(device):
    """'cuda:1' -> 'cuda': torch.autocast takes a device type, not a device."""
    return torch.device(device).type


def forward_context(device, precision="fp32"):
    """A factory of contexts to run the model in: bf16 autocast, and on a CPU SDPA's math kernel.

    Whether attention goes through SDPA at all is the model's own setting (GPTConfig.attention).
    """
    kind = device_type(device)

    @contextlib.contextmanager
    def context():
        with contextlib.ExitStack() as stack:
            if precision == "bf16":
                stack.enter_context(torch.autocast(device_type=kind, dtype=torch.bfloat16))
            # SDPA's math kernel beats its CPU flash kernel on these few-token sequences (bench.py).
            if kind == "cpu":
                stack.enter_context(sdpa_kernel(SDPBackend.MATH))
            yield
    return context


def slow_bf16_note(device, precision):
    """A note when bf16 autocast is asked for on a CPU that has no bf16 instructions (no AVX-512 BF16
    or AMX): oneDNN then emulates it, and a step runs several times slower than in fp32 (bench.py on
    an AVX2-only AMD EPYC, experiments/bench/). None where bf16 is native or not asked for."""
    if precision != "bf16" or device_type(device) != "cpu":
        return None
    try:
        native = torch.ops.mkldnn._is_mkldnn_bf16_supported()
    except (AttributeError, RuntimeError):  # a torch without the probe: say nothing rather than guess
        return None
    if native:
        return None
    return ("note: this CPU has no bf16 instructions (torch sees "
            f"{torch.backends.cpu.get_cpu_capability()}), so bf16 autocast is emulated and several times slower "
            "than fp32 here; --train.precision=fp32 trains at full speed (numbers then differ slightly "
            "from bf16 runs)")


def cpu_identity():
    """The CPU's model name and the instruction set torch's CPU kernels use (AVX2, AVX512, ...).
    CPUs of one model name can differ in the second (an AMD EPYC with or without AVX-512), and with
    it in speed and in the last digits of bf16 numbers."""
    try:
        name = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        name = platform.processor()
    return {"cpu": name, "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def seed_everything(seed):
    random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def pick_device(name):
    if name == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("device 'cuda' was asked for but no CUDA GPU is visible; use --train.device=auto")
    if name == "mps" and not torch.backends.mps.is_available():
        raise UserError("device 'mps' was asked for but MPS is not available; use --train.device=auto")
    return name


def rng_state():
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state):
    random.setstate(_as_tuple(state["python"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(x):
    return tuple(_as_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x
