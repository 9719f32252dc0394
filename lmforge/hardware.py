"""What this machine can do: the one capability probe behind ``precision: auto``, the int8
kernels, ``lmforge info`` and the machine tag of every benchmark line.

Kernel and precision choices must follow what the CPU *measurably* supports, not the
machine a developer had. Three sources, in order of authority:

1. **Measurement** on this machine: the rate of a bf16 and an fp32 matmul
   (:func:`matmul_rate`), and a kernel check of fbgemm's int8 GEMM
   (:func:`int8_dynamic_saturates`). Each is bounded in time and cached per process.
2. **The ISA caps users set** for the libraries torch dispatches to, which make a machine
   behave like an older one: ``ATEN_CPU_CAPABILITY`` (ATen's own vector kernels),
   ``ONEDNN_MAX_CPU_ISA`` (oneDNN: bf16 matmuls), ``FBGEMM_ENABLE_INSTRUCTIONS``
   (fbgemm: int8 linear layers) and ``MKL_ENABLE_INSTRUCTIONS`` (MKL: fp32 matmuls).
3. **The CPU's feature flags** (``/proc/cpuinfo``).

The flags that matter, by level (a cap at one level removes every feature above it)::

    avx2 < avx_vnni < avx512f < avx512_vnni < avx512_bf16 < amx_bf16/amx_int8

On ARM the flags are reported (``asimd`` = NEON, ``asimddp`` = int8 dot product,
``i8mm``, ``bf16``, ``sve``, ``sve2``) and the caps do not apply.

Why it matters, measured on 2-core cloud machines (see docs/benchmarks.md):

- bf16 matmuls run on dedicated instructions with ``avx512_bf16`` or AMX (from twice as
  slow as fp32 to six times as fast, depending on the core), but are *emulated* on an
  AVX2-only CPU: 0.9 GFLOP/s against ~100 in fp32. So ``precision: auto`` uses bf16 only
  where a measured bf16 matmul beats fp32 by :data:`BF16_FASTER` or more.
- fbgemm's int8 GEMM without VNNI multiplies u8 x s8 pairs with ``vpmaddubsw``, whose
  int16 pair sums saturate (2 * 255 * 127 > 32767). With VNNI (``vpdpbusd``) they go
  straight into int32. :func:`int8_dynamic_saturates` runs the kernel on inputs that
  saturate, and ``int8-dynamic`` then quantises activations to 7 bits ("reduced
  range", 2 * 127 * 127 < 32767).
"""

from __future__ import annotations

import functools
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

# ----------------------------------------------------------------------------- flags

LEVELS = ("base", "avx2", "avx_vnni", "avx512f", "avx512_vnni", "avx512_bf16", "amx")
"""ISA levels in order; every x86 feature below belongs to one."""

X86_FEATURES = {"avx2": "avx2", "avx_vnni": "avx_vnni", "avx512f": "avx512f",
                "avx512_vnni": "avx512_vnni", "avx512_bf16": "avx512_bf16",
                "amx_bf16": "amx", "amx_int8": "amx"}
"""The x86 feature flags that change which kernels run, and their level."""

ARM_FEATURES = ("asimd", "asimddp", "i8mm", "bf16", "sve", "sve2")

# Each cap variable: its values (upper case) -> the highest level it allows.
CAPS: dict[str, dict[str, str]] = {
    "ATEN_CPU_CAPABILITY": {"DEFAULT": "base", "AVX2": "avx2", "AVX512": "amx"},
    "ONEDNN_MAX_CPU_ISA": {
        "SSE41": "base", "AVX": "base", "AVX2": "avx2", "AVX2_VNNI": "avx_vnni",
        "AVX2_VNNI_2": "avx_vnni", "AVX512_CORE": "avx512f",
        "AVX512_CORE_VNNI": "avx512_vnni", "AVX512_CORE_BF16": "avx512_bf16",
        "AVX10_1_512": "avx512_bf16", "AVX512_CORE_FP16": "avx512_bf16",
        "AVX512_CORE_AMX": "amx", "AVX512_CORE_AMX_FP16": "amx", "AVX10_1_512_AMX": "amx",
        "AVX10_1_512_AMX_FP16": "amx", "ALL": "amx"},
    "FBGEMM_ENABLE_INSTRUCTIONS": {
        "AVX2": "avx2", "AVX512": "avx512f", "AVX512_256": "avx512f",
        "AVX512_E1": "amx", "AVX512_E1_256": "amx"},
    "MKL_ENABLE_INSTRUCTIONS": {
        "SSE4_2": "base", "AVX": "base", "AVX2": "avx2", "AVX512": "avx512f",
        "AVX512_E1": "avx512_vnni", "AVX512_E2": "avx512_vnni", "AVX512_E3": "avx512_bf16",
        "AVX512_E4": "amx", "AVX512_E5": "amx"},
}
CAP_ALIASES = {"DNNL_MAX_CPU_ISA": "ONEDNN_MAX_CPU_ISA"}


def read_cpuinfo(path: str | Path = "/proc/cpuinfo") -> tuple[str, frozenset[str]]:
    """``(model name, feature flags)`` from ``/proc/cpuinfo`` (x86 ``flags`` or ARM
    ``Features``); ``("", {})`` where there is no such file (macOS, Windows)."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "", frozenset()
    model, flags = "", frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key == "model name" and not model:
            model = " ".join(value.split())
        elif key in ("flags", "features") and not flags:
            flags = frozenset(value.split())
    return model, flags


def isa_caps(env: dict[str, str] | None = None) -> dict[str, str]:
    """The cap variables set in ``env`` (default ``os.environ``): ``{name: value}``."""
    env = os.environ if env is None else env
    out = {}
    for name in (*CAPS, *CAP_ALIASES):
        if env.get(name):
            out[name] = env[name]
    return out


def cap_level(caps: dict[str, str]) -> str:
    """The lowest level any cap in ``caps`` allows (``"amx"``: no cap). An unknown value
    caps nothing, as the libraries ignore values they do not know."""
    level = len(LEVELS) - 1
    for name, value in caps.items():
        allowed = CAPS[CAP_ALIASES.get(name, name)].get(value.strip().upper())
        if allowed is not None:
            level = min(level, LEVELS.index(allowed))
    return LEVELS[level]


def isa_features(flags: frozenset[str], caps: dict[str, str] | None = None) -> list[str]:
    """The features of :data:`X86_FEATURES` / :data:`ARM_FEATURES` in ``flags`` that the
    caps leave usable, in level order."""
    top = LEVELS.index(cap_level(caps or {}))
    x86 = [f for f in X86_FEATURES if f in flags and LEVELS.index(X86_FEATURES[f]) <= top]
    x86.sort(key=lambda f: LEVELS.index(X86_FEATURES[f]))
    return x86 + [f for f in ARM_FEATURES if f in flags]


# ----------------------------------------------------------------------------- measurement

BF16_FASTER = 1.3
"""``precision: auto`` trains in bf16 on a CPU when its bf16 matmul is at least this many
times as fast as fp32 (measured: 0.5x on a Xeon without AMX, 2.3x on an AMD EPYC with
avx512_bf16, ~6x with AMX, over 100x slower where bf16 is emulated)."""


def matmul_rate(dtype: torch.dtype = torch.float32, n: int = 1024,
                seconds: float = 0.15) -> float:
    """GFLOP/s of an ``n x n`` matmul in ``dtype`` on the CPU: one warm-up product, then
    as many as fit in ``seconds`` (at least one), best time. Bounded: at most about
    ``seconds`` plus two products."""
    gen = torch.Generator().manual_seed(0)  # not the global RNG: measuring changes nothing
    a = torch.randn(n, n, generator=gen).to(dtype)
    b = torch.randn(n, n, generator=gen).to(dtype)
    torch.mm(a, b)
    best, start = float("inf"), time.perf_counter()
    while True:
        t = time.perf_counter()
        torch.mm(a, b)
        now = time.perf_counter()
        best = min(best, now - t)
        if now - start >= seconds:
            break
    return 2 * n ** 3 / best / 1e9


@dataclass(frozen=True)
class Bf16Speed:
    fp32_gflops: float
    bf16_gflops: float
    n: int  # the matmul size the rates were measured at

    @property
    def ratio(self) -> float:
        return self.bf16_gflops / self.fp32_gflops

    @property
    def emulated(self) -> bool:
        """bf16 has no instructions of its own here (over 10x slower than fp32)."""
        return self.ratio < 0.1

    @property
    def faster(self) -> bool:
        return self.ratio >= BF16_FASTER


def _interleaved_rates(n: int, seconds: float) -> tuple[float, float]:
    """GFLOP/s of an ``n x n`` fp32 and bf16 matmul, timed alternately (one product of
    each in turn, best time of each), so that load from other jobs hits both alike."""
    gen = torch.Generator().manual_seed(0)
    a32, b32 = torch.randn(n, n, generator=gen), torch.randn(n, n, generator=gen)
    a16, b16 = a32.bfloat16(), b32.bfloat16()
    best = [float("inf"), float("inf")]
    torch.mm(a32, b32)
    torch.mm(a16, b16)
    start = time.perf_counter()
    while True:
        for i, (a, b) in enumerate(((a32, b32), (a16, b16))):
            t = time.perf_counter()
            torch.mm(a, b)
            best[i] = min(best[i], time.perf_counter() - t)
        if time.perf_counter() - start >= seconds:
            break
    return 2 * n ** 3 / best[0] / 1e9, 2 * n ** 3 / best[1] / 1e9


@functools.lru_cache(maxsize=1)
def bf16_speed() -> Bf16Speed:
    """bf16 against fp32 matmul speed on this CPU, measured once per process (~0.5 s),
    the two precisions alternately (:func:`_interleaved_rates`).

    A 256² pair first: where bf16 is emulated it is already 100x slower there, and the
    1024² products (2 s each when emulated) are skipped."""
    small = Bf16Speed(*_interleaved_rates(256, 0.05), 256)
    if small.emulated:
        return small
    return Bf16Speed(*_interleaved_rates(1024, 0.4), 1024)


def int8_engine() -> str:
    """The quantized engine torch's int8 layers run on (``x86``/``fbgemm`` on x86,
    ``qnnpack`` on ARM), or ``"none"`` in a build without one."""
    engine = str(torch.backends.quantized.engine)
    return engine if engine in torch.backends.quantized.supported_engines else "none"


@functools.lru_cache(maxsize=1)
def int8_dynamic_saturates() -> bool:
    """Does the dynamic int8 linear layer saturate on this CPU (fbgemm without VNNI, or
    with VNNI turned off by ``FBGEMM_ENABLE_INSTRUCTIONS``)?

    The check: x = 1 (quantised to u8 255), W = 1 (s8 127), K = 64. Exact, the output
    is 64; a kernel whose u8 x s8 pair sums saturate in int16 gives about half. False
    where there is no int8 engine to check."""
    import warnings

    if int8_engine() == "none":
        return False
    k = 64
    w = torch.ones(1, k)
    try:
        with warnings.catch_warnings():  # qint8 tensors are deprecated (torch #184982)
            warnings.simplefilter("ignore", UserWarning)
            wq = torch.quantize_per_tensor(w, 1 / 127, 0, torch.qint8)
            packed = torch.ops.quantized.linear_prepack(wq, None)
            y = torch.ops.quantized.linear_dynamic(torch.ones(1, k), packed, False)
    except RuntimeError:  # an engine that cannot run the op
        return False
    return abs(float(y[0, 0]) - k) > 1.0


# ----------------------------------------------------------------------------- report

@dataclass
class Machine:
    """What :func:`describe` reports (``lmforge info``)."""

    cpu: str
    arch: str
    cores: int
    threads: int
    isa_hardware: list[str]
    caps: dict[str, str]
    isa: list[str]  # what the caps leave usable
    aten_kernels: str
    fp32_gflops: float | None = None
    bf16_gflops: float | None = None
    matmul_n: int | None = None  # the size the rates were measured at
    bf16: str = ""  # "native, ..." | "emulated, ..."
    precision_auto: str = ""
    int8: str = ""
    int8_dynamic: str = ""
    cuda: str = "not available"
    versions: dict[str, str] = field(default_factory=dict)

    def lines(self) -> list[str]:
        v = self.versions
        out = [f"lmforge {v['lmforge']}, torch {v['torch']}, Python {v['python']}",
               f"cpu: {self.cpu} ({self.arch}), {self.cores} cores, {self.threads} torch "
               + ("thread" if self.threads == 1 else "threads"),
               f"isa (hardware): {' '.join(self.isa_hardware) or 'none of ' + ', '.join(X86_FEATURES)}",
               "isa caps: " + (" ".join(f"{k}={v}" for k, v in self.caps.items()) or "none"),
               f"isa (in use): {' '.join(self.isa) or 'baseline'}; "
               f"ATen kernels: {self.aten_kernels}"]
        if self.fp32_gflops is not None:
            out.append(f"matmul {self.matmul_n}²: fp32 {self.fp32_gflops:.0f} GFLOP/s, bf16 "
                       f"{self.bf16_gflops:.1f} GFLOP/s ({self.bf16})")
        out += [f"precision: auto -> {self.precision_auto}",
                f"--quantize int8 -> {self.int8}",
                f"--quantize int8-dynamic -> {self.int8_dynamic}",
                f"cuda: {self.cuda}"]
        return out

    def to_dict(self) -> dict:
        return asdict(self)


def _usable_cores() -> int:
    """CPUs this process may run on (a container's share, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def _cpu_name(model: str) -> str:
    return model or platform.processor() or platform.machine() or "unknown"


def machine_tag() -> dict:
    """The fields every benchmark JSON line carries, so that figures from different
    machines are never compared by mistake: CPU model, ISA in use, caps, threads."""
    model, flags = read_cpuinfo()
    caps = isa_caps()
    return {"cpu": _cpu_name(model),
            "isa": " ".join(isa_features(flags, caps)) or "baseline",
            "isa_caps": " ".join(f"{k}={v}" for k, v in caps.items()) or "none",
            "threads": torch.get_num_threads()}


def describe(measure: bool = True) -> Machine:
    """The full report; ``measure=False`` skips the matmul timings (and so says what
    ``precision: auto`` would measure instead of what it picks)."""
    from . import __version__
    from .compress.quantize import int8_dynamic_kernel, int8_weight_only_kernel
    from .train.precision import describe_auto_precision

    model, flags = read_cpuinfo()
    caps = isa_caps()
    m = Machine(cpu=_cpu_name(model),
                arch=platform.machine(), cores=_usable_cores(),
                threads=torch.get_num_threads(),
                isa_hardware=isa_features(flags), caps=caps, isa=isa_features(flags, caps),
                aten_kernels=str(torch.backends.cpu.get_cpu_capability()),
                versions={"lmforge": __version__, "torch": torch.__version__,
                          "python": sys.version.split()[0]})
    if measure:
        speed = bf16_speed()
        m.fp32_gflops, m.bf16_gflops, m.matmul_n = (speed.fp32_gflops, speed.bf16_gflops,
                                                    speed.n)
        m.bf16 = (f"emulated, {1 / speed.ratio:.0f}x slower than fp32" if speed.emulated
                  else f"native, {speed.ratio:.2f}x fp32")
    m.precision_auto = describe_auto_precision(measure)
    m.int8 = int8_weight_only_kernel()
    m.int8_dynamic = int8_dynamic_kernel()
    if torch.cuda.is_available():
        m.cuda = (f"{torch.cuda.get_device_name(0)}, bf16 "
                  f"{'yes' if torch.cuda.is_bf16_supported() else 'no'}")
    return m
