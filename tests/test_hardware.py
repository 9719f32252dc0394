"""The capability probe (``lmforge.hardware``) and ``lmforge info``.

References: /proc/cpuinfo texts of an x86 and an ARM machine, the ISA caps' documented
values, and the kernels themselves: on an x86 CPU with AVX-512 the caps
(``ATEN_CPU_CAPABILITY``, ``ONEDNN_MAX_CPU_ISA``, ``FBGEMM_ENABLE_INSTRUCTIONS``,
``MKL_ENABLE_INSTRUCTIONS``) make it an AVX2-only machine, and a subprocess under them
must find bf16 emulated and fbgemm's int8 GEMM saturating, and pick fp32 and 7-bit
activations accordingly.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest
import torch
from fakes import run_cli

from lmforge import hardware as hw

AVX2_CAPS = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2",
             "FBGEMM_ENABLE_INSTRUCTIONS": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}

X86_CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 9R14 96-Core Processor
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512bw avx512_vnni avx512_bf16 vaes

processor\t: 1
model name\t: AMD EPYC 9R14 96-Core Processor
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512bw avx512_vnni avx512_bf16 vaes
"""

ARM_CPUINFO = """processor\t: 0
BogoMIPS\t: 243.75
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics asimddp sve i8mm bf16
CPU implementer\t: 0x41
"""


def test_read_cpuinfo_x86_and_arm(tmp_path):
    (tmp_path / "x86").write_text(X86_CPUINFO)
    (tmp_path / "arm").write_text(ARM_CPUINFO)
    model, flags = hw.read_cpuinfo(tmp_path / "x86")
    assert model == "AMD EPYC 9R14 96-Core Processor"
    assert hw.isa_features(flags) == ["avx2", "avx512f", "avx512_vnni", "avx512_bf16"]
    model, flags = hw.read_cpuinfo(tmp_path / "arm")
    assert model == ""
    assert hw.isa_features(flags) == ["asimd", "asimddp", "i8mm", "bf16", "sve"]
    assert hw.read_cpuinfo(tmp_path / "missing") == ("", frozenset())


@pytest.mark.parametrize("caps, want", [
    ({}, ["avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16"]),
    ({"ATEN_CPU_CAPABILITY": "avx2"}, ["avx2"]),
    ({"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_VNNI"}, ["avx2", "avx512f", "avx512_vnni"]),
    ({"DNNL_MAX_CPU_ISA": "avx512_core"}, ["avx2", "avx512f"]),
    ({"FBGEMM_ENABLE_INSTRUCTIONS": "AVX512_E1", "MKL_ENABLE_INSTRUCTIONS": "AVX512_E3"},
     ["avx2", "avx512f", "avx512_vnni", "avx512_bf16"]),
    ({"ONEDNN_MAX_CPU_ISA": "no-such-isa"},  # the libraries ignore unknown values
     ["avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16"]),
    ({"ATEN_CPU_CAPABILITY": "default"}, []),
])
def test_caps_remove_the_features_above_them(caps, want):
    flags = frozenset("avx2 fma avx512f avx512_vnni avx512_bf16 amx_bf16 amx_tile".split())
    assert hw.isa_features(flags, caps) == want
    assert hw.isa_caps({**caps, "UNRELATED": "x"}) == caps


def test_measuring_leaves_the_global_rng_alone_and_decides_auto():
    torch.manual_seed(3)
    want = torch.rand(3)
    torch.manual_seed(3)
    assert hw.matmul_rate(torch.float32, 128, 0.01) > 0
    assert torch.equal(torch.rand(3), want)
    speed = hw.bf16_speed()
    assert speed.fp32_gflops > 0 and speed.bf16_gflops > 0 and speed.n in (256, 1024)
    from lmforge.train import resolve_precision

    auto = resolve_precision("auto", torch.device("cpu"))
    assert auto is (torch.bfloat16 if speed.ratio >= hw.BF16_FASTER else None)


def _x86_with_avx512() -> bool:
    _model, flags = hw.read_cpuinfo()
    return platform.machine() in ("x86_64", "AMD64") and "avx512f" in flags


def _info_json(env: dict | None = None) -> dict:
    out = subprocess.run([sys.executable, "-m", "lmforge.cli", "info", "--json"],
                         capture_output=True, text=True, timeout=300,
                         env={**os.environ, **(env or {})})
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.mark.skipif(not _x86_with_avx512(),
                    reason="needs an x86 CPU with AVX-512 to cap down to AVX2")
def test_avx2_caps_really_take_effect():
    """Under the caps this machine behaves as an AVX2-only one, kernel by kernel."""
    info = _info_json(AVX2_CAPS)
    assert info["isa"] == ["avx2"]
    assert info["aten_kernels"] == "AVX2"
    assert info["caps"] == AVX2_CAPS
    assert info["bf16"].startswith("emulated")  # oneDNN has no AVX2 bf16 kernels
    assert info["precision_auto"].startswith("fp32")
    assert "7 bits" in info["int8_dynamic"]  # fbgemm saturates without VNNI


def test_info_reports_this_machine():
    info = _info_json()
    model, flags = hw.read_cpuinfo()
    assert info["versions"]["torch"] == torch.__version__
    if model:
        assert info["cpu"] == model
    assert info["isa"] == hw.isa_features(flags, hw.isa_caps())
    assert info["cores"] == len(os.sched_getaffinity(0)) and info["threads"] >= 1
    assert info["fp32_gflops"] > 0 and info["matmul_n"] in (256, 1024)
    assert info["precision_auto"].startswith(("bf16", "fp32"))
    if hw.int8_engine() in ("x86", "fbgemm"):
        # fbgemm accumulates u8 x s8 in int32 with AVX-512 VNNI only; without it the
        # products would saturate and activations must be 7-bit
        vnni = "avx512_vnni" in info["isa"]
        assert ("8 bits" if vnni else "7 bits") in info["int8_dynamic"], info["int8_dynamic"]


def test_info_text_and_no_measure(capsys):
    code, out, _err = run_cli(["info", "--no-measure"], capsys)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("lmforge ") and f"torch {torch.__version__}" in lines[0]
    assert any(line.startswith("cpu: ") for line in lines)
    assert any(line.startswith("precision: auto -> ") for line in lines)
    assert any(line.startswith("--quantize int8-dynamic -> ") for line in lines)
    assert not any(line.startswith("matmul") for line in lines)


def test_machine_tag_names_the_caps_in_force(monkeypatch):
    for name in (*hw.CAPS, *hw.CAP_ALIASES):  # whatever caps the suite itself runs under
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    tag = hw.machine_tag()
    assert set(tag) == {"cpu", "isa", "isa_caps", "threads"}
    assert tag["isa_caps"] == "ONEDNN_MAX_CPU_ISA=AVX2"
    assert not any(f.startswith(("avx512", "amx")) for f in tag["isa"].split())
    assert tag["threads"] == torch.get_num_threads()
