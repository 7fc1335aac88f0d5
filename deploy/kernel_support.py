"""Does this GPU have gpt-oss's kernels in this vLLM release? The support table, as data.

gpt-oss needs two kernels that not every (vLLM release, GPU) pair has: an MXFP4
mixture-of-experts kernel and an attention kernel with "sinks". This module holds, for each
vLLM release range and NVIDIA compute capability, what vLLM picks there, the environment
variables the service should set, the minimum driver for the wheel's CUDA build, and what to
do when there is no working path. The data is a matrix, `MATRIX`: release ranges (`RELEASES`)
by architecture groups (`GROUPS`), each cell naming its source: the vLLM wheel (file and
lines) it was read from, or the issue / recipe it rests on. `SUPPORT_TABLE` is the same matrix
as rows. docs/kernel-support.md's tables are written from it (`python -m deploy.docs`); the
page's prose says what was verified in which wheel and what was not.

Pure Python over plain data (no pyinfra): the plan command and the deploy's preflight both
call `kernel_verdict`, `min_driver_for` and `driver_ok`.

Version matching notes (packaging 26, tested in tests/test_kernel_support.py):
- PEP 440 specifiers ignore a candidate's local label: `0.10.1+gptoss` is inside
  `>=0.10.1,<0.10.2` and matches `==0.10.1`. The launch wheel is therefore recognised by its
  local label before any range is tried.
- Pre-releases and dev builds (`0.11.1rc4`, `0.19.1rc1.dev379+g251c18d1f`) are judged by
  the release they lead to (`base_version`): `<0.11.1` excludes `0.11.1rc4` by PEP 440,
  so plain range matching would leave them in no range at all.
- A `+cuXYZ` local label (vLLM's GitHub-release wheel variants) keeps the kernel rows of its
  public version but takes its minimum driver from that CUDA build.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields

from packaging.specifiers import SpecifierSet
from packaging.version import Version

from deploy.versions import driver_version as parse_driver
from deploy.versions import vllm_version as parse_vllm

# The newest vLLM release this table was read against (`pip index versions vllm`,
# 2026-11-23: 0.33.0 is the newest on PyPI).
NEWEST_CHECKED = "0.33.0"
# The first release that serves gpt-oss at all: 0.10.0's wheel has no
# vllm/model_executor/models/gpt_oss.py and no quantization/mxfp4.py (read in
# vllm-0.10.0-cp38-abi3-manylinux1_x86_64.whl).
FIRST_GPT_OSS = "0.10.1"

# Minimum Linux x86_64 driver for each CUDA toolkit a vLLM wheel is compiled with.
# Source: NVIDIA CUDA Toolkit release notes, table "CUDA Toolkit and Corresponding Driver
# Versions" (GA releases): 12.6 GA >= 560.28.03, 12.8 GA >= 570.26, 12.9 GA >= 575.51.03,
# 13.0 GA >= 580.65.06.
CUDA_MIN_DRIVER: dict[str, str] = {
    "12.6": "560.28.03",
    "12.8": "570.26",
    "12.9": "575.51.03",
    "13.0": "580.65.06",
}

# Compute capabilities with explicit rows, and the GPUs people know them by.
KNOWN_CAPABILITIES: dict[str, str] = {
    "7.0": "Volta (V100)",
    "7.5": "Turing (T4, RTX 20xx, Quadro RTX)",
    "8.0": "Ampere (A100, A30)",
    "8.6": "Ampere (A10, A40, RTX 30xx, RTX A6000)",
    "8.9": "Ada (L4, L40S, RTX 40xx, RTX 6000 Ada)",
    "9.0": "Hopper (H100, H200, GH200)",
    "10.0": "Blackwell (B200, GB200)",
    "10.3": "Blackwell Ultra (B300, GB300)",
    "11.0": "Jetson Thor (CUDA 13 numbering)",
    "12.0": "Blackwell GeForce/workstation (RTX 50xx, RTX PRO 6000 Blackwell)",
    "12.1": "GB10 (DGX Spark)",
}

# The matrix's columns: architecture groups, each a set of compute capabilities that every
# release treats alike (vLLM's backend choices test these capabilities or their families).
GROUPS: dict[str, tuple[str, ...]] = {
    "7.x": ("7.0", "7.5"),
    "8.x": ("8.0", "8.6", "8.9"),
    "9.0": ("9.0",),
    "10.0": ("10.0",),
    "10.3": ("10.3",),
    "11.0": ("11.0",),
    "12.x": ("12.0", "12.1"),
}
GROUP_OF: dict[str, str] = {cap: group for group, caps in GROUPS.items() for cap in caps}


@dataclass(frozen=True)
class Release:
    """A range of vLLM releases whose gpt-oss kernel selection is the same."""

    key: str
    specifier: str  # PEP 440 specifier set over the public version
    local: str | None  # local label the version must carry ("gptoss"), or None for PyPI
    newest: str  # newest release inside the range (what to pin when suggesting it)
    torch: str  # torch the wheel pins (Requires-Dist in its METADATA)
    cuda: str  # CUDA toolkit the wheel's own kernels were compiled with
    source: str

    @property
    def min_driver(self) -> str:
        return CUDA_MIN_DRIVER[self.cuda]


@dataclass(frozen=True)
class Cell:
    """What one release range does on one architecture group: one cell of the matrix."""

    supported: bool
    moe_backend: str | None
    attention_backend: str | None
    why: str  # supported: how (one clause); unsupported: why not
    source: str
    env: tuple[tuple[str, str], ...] = ()
    remedy: str | None = None
    pip_extras: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class SupportRow(Cell):
    """A cell with its place: the release range and the compute capabilities it covers."""

    release: str = ""  # Release.key
    capabilities: tuple[str, ...] = ()


@dataclass(frozen=True)
class KernelVerdict:
    supported: bool
    reason: str  # one sentence: which kernels/backends, or why not and what to do
    moe_backend: str | None
    attention_backend: str | None
    env: dict[str, str]  # environment variables the unit should set on that GPU with that vLLM
    min_driver: str | None  # e.g. "570.26"
    remedy: str | None  # what to do when unsupported
    source: str
    # Additions (defaulted, so code written against the fields above keeps working):
    pip_extras: tuple[str, ...] = ()  # extras to install vLLM with, e.g. ("flashinfer",)
    notes: tuple[str, ...] = ()  # caveats a person should read before relying on the verdict


# --- the releases -------------------------------------------------------------------------

_WHL = "vllm-{v}-cp38-abi3-*_x86_64.whl from PyPI"

RELEASES: tuple[Release, ...] = (
    Release(
        key="0.10.1+gptoss",
        specifier="==0.10.1",
        local="gptoss",
        newest="0.10.1+gptoss",
        torch="nightly 2.9.0.dev (cu128 index)",
        cuda="12.8",
        source=(
            "Launch-time wheel from https://wheels.vllm.ai/gpt-oss/ (not on PyPI; not reachable "
            "from here, so not read): install command in the vLLM blog 'vLLM Now Supports "
            "gpt-oss' (2025-08-05) and the launch recipe uses "
            "--extra-index-url https://download.pytorch.org/whl/nightly/cu128 -> CUDA 12.8"
        ),
    ),
    Release(
        key="0.10.1.x",
        specifier=">=0.10.1,<0.10.2",
        local=None,
        newest="0.10.1.1",
        torch="2.7.1",
        cuda="12.8",
        source=(
            _WHL.format(v="0.10.1") + " and 0.10.1.1: METADATA Requires-Dist torch==2.7.1, "
            "flashinfer-python==0.2.11 only under extra 'flashinfer'; vllm/_C.abi3.so NEEDED "
            "libcudart.so.12, built by 'Cuda compilation tools, release 12.8, V12.8.93'. "
            "torch 2.7.1 on PyPI requires nvidia-cuda-runtime-cu12==12.6.77 (a CUDA 12.6 build)"
        ),
    ),
    Release(
        key="0.10.2-0.11.0",
        specifier=">=0.10.2,<0.11.1",
        local=None,
        newest="0.11.0",
        torch="2.8.0",
        cuda="12.8",
        source=(
            _WHL.format(v="0.10.2") + " and 0.11.0: torch==2.8.0 (PyPI build CUDA 12.8), "
            "flashinfer only under extra 'flashinfer'; no triton_kernels dependency and none "
            "vendored; _C.abi3.so built with CUDA 12.8 (V12.8.93)"
        ),
    ),
    Release(
        key="0.11.1-0.11.2",
        specifier=">=0.11.1,<0.12.0",
        local=None,
        newest="0.11.2",
        torch="2.9.0",
        cuda="12.8",
        source=(
            _WHL.format(v="0.11.1") + " and 0.11.2: torch==2.9.0 (PyPI build CUDA 12.8), "
            "flashinfer-python==0.5.2 now a hard dependency; still no triton_kernels; "
            "_C.abi3.so built with CUDA 12.8 (V12.8.93)"
        ),
    ),
    Release(
        key="0.12.0",
        specifier=">=0.12.0,<0.13.0",
        local=None,
        newest="0.12.0",
        torch="2.9.0",
        cuda="12.9",
        source=(
            _WHL.format(v="0.12.0") + ": torch==2.9.0, flashinfer-python==0.5.3; "
            "triton_kernels vendored as vllm/third_party/triton_kernels; _C.abi3.so built "
            "with CUDA 12.9 (V12.9.86)"
        ),
    ),
    Release(
        key="0.13-0.19",
        specifier=">=0.13.0,<0.20.0",
        local=None,
        newest="0.19.1",
        torch="2.9.0 .. 2.10.0",
        cuda="12.9",
        source=(
            "Wheels 0.13.0, 0.14.0/0.14.1, 0.15.0/0.15.1, 0.16.0, 0.17.0/0.17.1, 0.18.0/0.18.1, "
            "0.19.0/0.19.1 from PyPI: torch 2.9.0 -> 2.10.0 (PyPI builds CUDA 12.8); "
            "_C.abi3.so built with CUDA 12.9 (V12.9.86) in every one; flashinfer-cubin a "
            "dependency from 0.19.0"
        ),
    ),
    Release(
        key="0.20-0.21",
        specifier=">=0.20.0,<0.22.0",
        local=None,
        newest="0.21.0",
        torch="2.11.0",
        cuda="13.0",
        source=(
            "Wheels 0.20.0/0.20.1/0.20.2 and 0.21.0 from PyPI: torch==2.11.0 (PyPI build "
            "requires cuda-toolkit==13.0.2); _C.abi3.so NEEDED libcudart.so.13, built with "
            "CUDA 13.0; flashinfer-cubin a dependency"
        ),
    ),
    Release(
        key="0.22-0.23",
        specifier=">=0.22.0,<0.24.0",
        local=None,
        newest="0.23.0",
        torch="2.11.0",
        cuda="13.0",
        source=(
            "Wheels 0.22.0/0.22.1 and 0.23.0 from PyPI: torch==2.11.0 (CUDA 13.0); built with "
            "CUDA 13.0; vllm/envs.py marks VLLM_MXFP4_USE_MARLIN and "
            "VLLM_USE_FLASHINFER_MOE_MXFP4_MXFP8* deprecated_env(..., 'v0.23', ...) "
            "(0.23.0 envs.py L1366-1371, L1497-1503)"
        ),
    ),
    Release(
        key="0.24-0.27",
        specifier=">=0.24.0,<0.28.0",
        local=None,
        newest="0.27.1",
        torch="2.11.0 .. 2.13.0",
        cuda="13.0",
        source=(
            "Wheels 0.24.0, 0.25.0/0.25.1, 0.26.0, 0.27.0/0.27.1 from PyPI: torch 2.11.0 -> 2.13.0 "
            "(CUDA 13.0); vllm/_C_stable_libtorch.abi3.so NEEDED libcudart.so.13, built with "
            "CUDA 13.0; the MXFP4 env vars are gone from vllm/envs.py (an unknown VLLM_* "
            "variable only draws 'Unknown vLLM environment variable detected', 0.24.0 envs.py "
            "L1998-2004); flashinfer-cubin no longer a dependency from 0.26.0"
        ),
    ),
    Release(
        key="0.28-0.31",
        specifier=">=0.28.0,<0.32.0",
        local=None,
        newest="0.31.0",
        torch="2.13.0",
        cuda="13.0",
        source=(
            "Wheels 0.28.0, 0.29.0, 0.30.0, 0.31.0 from PyPI: torch==2.13.0 (PyPI build "
            "requires cuda-toolkit==13.0.x); built with CUDA 13.0"
        ),
    ),
    Release(
        key="0.32-0.33",
        specifier=">=0.32.0,<0.34.0",
        local=None,
        newest="0.33.0",
        torch="2.13.0 .. 2.14.0",
        cuda="13.0",
        source=(
            "Wheels 0.32.0 and 0.33.0 from PyPI: torch 2.13.0 / 2.14.0 (PyPI build requires "
            "cuda-toolkit==13.0.3); built with CUDA 13.0"
        ),
    ),
)

# --- shared wording ------------------------------------------------------------------------

MARLIN = "MARLIN"
TRITON = "TRITON"
FI_BF16 = "FLASHINFER_TRTLLM_MXFP4_BF16"
FI_MXFP8 = "FLASHINFER_TRTLLM_MXFP4_MXFP8"
FA3 = "FLASH_ATTN (FlashAttention 3)"
TRITON_ATTN = "TRITON_ATTN"
FI_ATTN = "FLASHINFER (TRT-LLM attention)"

# Releases whose vllm/envs.py reads each variable the table sets: present from 0.10.1,
# deprecated_env(..., "v0.23", ...) in 0.22.x/0.23.x (still honoured, with a warning), gone
# from 0.24.0 (read in every wheel from 0.10.1 to 0.33.0).
ENV_VAR_RELEASES: dict[str, str] = {
    "VLLM_USE_FLASHINFER_MOE_MXFP4_MXFP8": ">=0.10.1,<0.24.0",
    "VLLM_MXFP4_USE_MARLIN": ">=0.10.1,<0.24.0",
}

ENV_MXFP8 = (("VLLM_USE_FLASHINFER_MOE_MXFP4_MXFP8", "1"),)
ENV_MARLIN = (("VLLM_MXFP4_USE_MARLIN", "1"),)

_SRC_RECIPE = (
    "vllm-project/recipes OpenAI/GPT-OSS.md@00143a1 ('GPT-OSS works on Ampere devices by "
    "default, using the TRITON_ATTN attention backend and Marlin MXFP4 MoE'; launch_server.sh "
    "sets VLLM_USE_FLASHINFER_MOE_MXFP4_MXFP8=1 when compute_cap == 10.0)"
)

_NOTE_TORCH_CU126 = (
    "vLLM 0.10.1.x pins torch==2.7.1, whose PyPI build is CUDA 12.6 with no Blackwell code: "
    "install torch 2.7.1 from the cu128 index (uv pip install --torch-backend=cu128, or "
    "--extra-index-url https://download.pytorch.org/whl/cu128)"
)
_NOTE_PTX_JIT = (
    "no SASS for this architecture in vllm/_moe_C: the Marlin MoE kernels run from PTX "
    "(compute_90 in 0.10.1-0.11.x, compute_80 from 0.12.0) JIT-compiled by the driver on first use"
)
_NOTE_CUBINS = (
    "FlashInfer's TRT-LLM kernels are cubins fetched from NVIDIA's artifactory at first use "
    "unless the flashinfer-cubin package is installed (a vLLM dependency only in 0.19-0.25): "
    "on a host without internet access install flashinfer-cubin matching flashinfer-python, "
    "or vLLM falls back to {fallback} for attention"
)
_NOTE_GB10 = (
    "12.1 is GB10 (DGX Spark, aarch64): vLLM publishes aarch64 wheels on PyPI from 0.10.2; "
    "vllm#37030 (open) reports wrong first Harmony token (null content) with Marlin on SM121 "
    "in 0.16.0rc2, while a later comment there validates 0.23.1rc1: check responses after deploy"
)

_REMEDY_OLD_GPU = (
    "use a GPU of compute capability 8.0 or newer (A10/A100, L4/L40S, RTX 30/40/50-series, "
    "H100/H200, B200), or serve a GGUF quantization of gpt-oss with llama.cpp, whose CUDA "
    "FlashAttention supports attention sinks on Turing (llama.cpp PR 15157)"
)
_REMEDY_THOR = (
    "no verified vLLM + gpt-oss path for compute capability 11.0 in this table: serve on a "
    "datacenter GPU (H100/H200/B200), or verify NVIDIA's Jetson vLLM build by hand and add a row"
)


def ok(moe: str, attention: str, why: str, source: str, **more) -> Cell:
    """A cell where gpt-oss runs: the MoE and attention backends vLLM picks, and why."""
    return Cell(True, moe, attention, why, source, **more)


def no(why: str, remedy: str, source: str, **more) -> Cell:
    """A cell where gpt-oss does not run: why not, and what to do instead."""
    return Cell(False, None, None, why, source, remedy=remedy, **more)


def _marlin_triton(source: str, notes: tuple[str, ...] = ()) -> Cell:
    return ok(MARLIN, TRITON_ATTN, "Marlin weight-only MXFP4 MoE and Triton attention with sinks", source, notes=notes)


BELOW_AMPERE = no(
    (
        "vLLM has no MXFP4 kernel below compute capability 8.0 in any release "
        "(Mxfp4Config.get_min_capability() is 80, so start-up fails with 'The "
        "quantization method mxfp4 is not supported for the current GPU. Minimum "
        "capability: 80')"
    ),
    _REMEDY_OLD_GPU,
    (
        "Mxfp4Config.get_min_capability() returns 80 in every wheel read, 0.10.1 "
        "(quantization/mxfp4.py L75-76) to 0.33.0 (L71-72); the check raises in 0.10.1 "
        "vllm/config/__init__.py L3452-3457 and 0.33.0 vllm/config/vllm.py L930-934; "
        "vllm#22288 (SM75 report), vllm#23203 (request to allow 7.5, open)"
    ),
)

THOR = no(
    (
        "unverified: 11.0 is Jetson Thor (aarch64, CUDA 13 numbering), x86_64 torch builds "
        "carry no sm_110 code, and vLLM's Triton MXFP4 MoE is reported failing on sm_110a "
        "(vllm#29317, open)"
    ),
    _REMEDY_THOR,
    (
        "torch 2.11.0 cu130 x86_64 libtorch_cuda.so (cuobjdump --list-elf): sm_75..sm_121a, "
        "no sm_110, no PTX; CUDA 12.x builds (vLLM < 0.20) cannot target sm_110 at all; "
        "vllm#29317 'triton 3.5 for gpt-oss fails on sm11.0a cu130' (open); 0.24.0 "
        "experts/flashinfer_cutlass_moe.py excludes SM110 (flashinfer#3134); 0.32.0+ admits "
        "11.x to the Triton gate without naming it validated (0.33.0 "
        "experts/gpt_oss_triton_kernels_moe.py L48-53)"
    ),
)


# --- the matrix: release ranges x architecture groups ------------------------------------
# A key naming several groups shares one cell (same backends, same source). Every release
# has exactly one cell per group (tests/test_kernel_support.py).

MATRIX: dict = {
    "0.10.1+gptoss": {
        "7.x": BELOW_AMPERE,
        "8.x": no(
            (
                "the launch build has no sink-capable attention for sm_8x: FlashAttention 2 stops with "
                "'Sinks are only supported in FlashAttention 3' (vllm#22331 on RTX 4090, #22290 on A100) "
                "and forcing TRITON_ATTN_VLLM_V1 ends in 'no kernel image is available for execution on "
                "the device' (#22414, #22502 on A100)"
            ),
            (
                "install vLLM >= 0.10.1 from PyPI, which added Marlin MXFP4 MoE and Triton sink attention"
                f" for Ampere/Ada (PR 22714); newest checked {NEWEST_CHECKED}"
            ),
            "vllm#22331, #22290, #22414, #22502; PR 22714 (merged 2025-08-12); FACTS.md",
        ),
        "9.0": ok(
            TRITON,
            FA3,
            "the launch build's Hopper path (OpenAI Triton matmul_ogs MoE, FlashAttention 3 sinks)",
            (
                "vLLM blog 2025-08-05 'vLLM Now Supports gpt-oss' (Hopper: Triton matmul_ogs; Blackwell: "
                "FlashInfer MoE); attention sinks in FA3: vLLM PR 22320; FACTS.md; wheel not read"
            ),
        ),
        "10.0": ok(
            "FLASHINFER (MXFP4 MoE on Blackwell FP4 tensor cores)",
            FI_ATTN,
            "the launch build's B200 path (FlashInfer MXFP4 MoE, TRT-LLM attention with sinks)",
            "vLLM blog 2025-08-05 (Blackwell: FlashInfer MoE kernel); FACTS.md; wheel not read",
            notes=(
                (
                    "launch-era B200 variables (VLLM_USE_TRTLLM_ATTENTION=1, "
                    "VLLM_USE_FLASHINFER_MXFP4_MOE=1, seen commented out in vllm#22331) were not checked "
                    "against this wheel and are not set"
                ),
            ),
        ),
        ("10.3", "12.x"): no(
            (
                "the launch build targeted Hopper (9.0) and B200 (10.0) only; its recipe listed Ampere, "
                "Ada Lovelace and RTX 5090 as work in progress"
            ),
            (
                "install vLLM >= 0.10.2 from PyPI (Marlin MXFP4 MoE + Triton attention; B300 gets "
                f"FlashInfer from 0.13.0); newest checked {NEWEST_CHECKED}"
            ),
            (
                "launch recipe (copy at hochej.github.io/pi-mono/pods/gpt-oss): 'run it on NVIDIA H100, "
                "H200, B200 ... actively working on ... Ampere, Ada Lovelace, and RTX 5090'"
            ),
        ),
        "11.0": THOR,
    },
    "0.10.1.x": {
        "7.x": BELOW_AMPERE,
        "8.x": _marlin_triton(
            (
                "0.10.1 wheel: quantization/mxfp4.py L123-135 Mxfp4MoEMethod._should_use_marlin (CUDA and"
                " capability < 9.0 -> Marlin); platforms/cuda.py L321-324 (has_sink and not 9.0 -> "
                "TRITON_ATTN_VLLM_V1); PR 22714; "
            )
            + _SRC_RECIPE
        ),
        "9.0": ok(
            MARLIN,
            FA3,
            "Marlin MoE even on Hopper (torch 2.7.1 < 2.8 and no triton_kernels) and FA3 sinks",
            (
                "0.10.1 wheel: quantization/mxfp4.py L131-134 (no triton_kernels or torch < 2.8.0 -> "
                "Marlin); platforms/cuda.py L321-330 (9.0 keeps FLASH_ATTN_V1; FA3 asserts sinks in "
                "v1/attention/backends/flash_attn.py L422-426)"
            ),
        ),
        "10.0": ok(
            FI_MXFP8,
            FI_ATTN,
            "FlashInfer MXFP4 MoE with MXFP8 activations and TRT-LLM attention with sinks",
            (
                (
                    "0.10.1 wheel: quantization/mxfp4.py L35-61 (FlashInfer BF16 by default on capability "
                    "10.0 when flashinfer is importable; VLLM_USE_FLASHINFER_MOE_MXFP4_MXFP8 selects MXFP8), "
                    "L123-135 (Marlin never on 10.0); platforms/cuda.py L301-312 (FlashInfer attention by "
                    "default on 10.0); "
                )
                + _SRC_RECIPE
            ),
            env=ENV_MXFP8,
            pip_extras=("flashinfer",),
            notes=(
                _NOTE_TORCH_CU126,
                (
                    "without the flashinfer extra, SM100 skips Marlin and takes the triton_kernels path, "
                    "which this wheel does not ship: start-up fails (vLLM PR 23008 shows 'No module named"
                    " triton_kernels')"
                ),
                (
                    "FlashInfer's TRT-LLM kernels, the only ones with sinks here, are cubins fetched from"
                    " NVIDIA's artifactory at start (utils/flashinfer.py L152-175); without that access "
                    "0.10.1 leaves the TRT-LLM path (L176-199) and what follows was not verified: keep "
                    "such a host online for the first start or use vLLM >= 0.11.1"
                ),
            ),
        ),
        "10.3": ok(
            MARLIN,
            TRITON_ATTN,
            "Marlin MoE (the FlashInfer path matches capability 10.0 exactly) and Triton attention",
            (
                "0.10.1 wheel: quantization/mxfp4.py L126-134 (is_device_capability(100) is exact; no "
                "triton_kernels -> Marlin); platforms/cuda.py L321-324; cuobjdump of vllm/_moe_C.abi3.so:"
                " Marlin SASS sm_80/sm_87/sm_90 plus compute_90 PTX"
            ),
            notes=(_NOTE_TORCH_CU126, _NOTE_PTX_JIT, "not run on hardware here"),
        ),
        "11.0": THOR,
        "12.x": _marlin_triton(
            (
                "0.10.1 wheel: quantization/mxfp4.py L126-134 (torch 2.7.1 < 2.8.0 -> Marlin); "
                "platforms/cuda.py L321-324; cuobjdump of vllm/_moe_C.abi3.so (compute_90 PTX)"
            ),
            notes=(
                _NOTE_TORCH_CU126,
                _NOTE_PTX_JIT,
                "no aarch64 wheel of 0.10.1.x on PyPI (matters for GB10)",
                _NOTE_GB10,
            ),
        ),
    },
    "0.10.2-0.11.0": {
        "7.x": BELOW_AMPERE,
        "8.x": _marlin_triton(
            "0.10.2 wheel quantization/mxfp4.py L89-94 / 0.11.0 L94-99 (major < 9 -> Marlin); 0.10.2 "
            "platforms/cuda.py L355-358, 0.11.0 L358-362 (sinks off 9.0 -> TRITON_ATTN)"
        ),
        "9.0": ok(
            MARLIN,
            FA3,
            (
                "Marlin MoE on Hopper (triton_kernels is neither a dependency nor vendored, so the Triton"
                " branch is not taken) and FA3 sinks"
            ),
            (
                "0.10.2 wheel quantization/mxfp4.py L54-104 get_mxfp4_backend (L89-94: no triton_kernels "
                "-> Marlin), METADATA (no triton_kernels), utils has_triton_kernels = "
                "_has_module('triton_kernels'); 0.11.0 identical (L59-109)"
            ),
            notes=(
                (
                    "installing triton_kernels by hand switches Hopper to the TRITON backend (vllm#26582 "
                    "shows version matching is fragile)"
                ),
            ),
        ),
        "10.0": ok(
            FI_MXFP8,
            FI_ATTN,
            "FlashInfer MXFP4 MoE with MXFP8 activations and TRT-LLM attention with sinks",
            (
                (
                    "0.10.2 wheel quantization/mxfp4.py L66-73 (10.0 + flashinfer + "
                    "VLLM_USE_FLASHINFER_MOE_MXFP4_MXFP8 -> SM100_FI_MXFP4_MXFP8_TRTLLM), L80-94 (no "
                    "flashinfer -> warning, Marlin); utils/flashinfer.py L157-178 (TRT-LLM attention needs "
                    "capability 10.0 and the artifactory); "
                )
                + _SRC_RECIPE
            ),
            env=ENV_MXFP8,
            pip_extras=("flashinfer",),
            notes=(
                "without the flashinfer extra vLLM warns and uses MARLIN + TRITON_ATTN, which works",
                (
                    "with FlashInfer installed but its cubins unreachable (no internet, no flashinfer-"
                    "cubin), start-up fails with 'FlashInfer backend currently does not support attention"
                    " sinks' (0.10.2 v1/attention/backends/flashinfer.py L300-305): on such hosts install"
                    " without the extra"
                ),
            ),
        ),
        ("10.3", "12.x"): _marlin_triton(
            (
                "0.10.2 wheel quantization/mxfp4.py L56-94 (FlashInfer branches need capability 10.0 "
                "exactly; no triton_kernels -> Marlin); platforms/cuda.py L335-358 (FlashInfer default "
                "only on 10.0; sinks off 9.0 -> TRITON_ATTN); vllm#40153 (RTX PRO 6000 SM120 logs "
                "TRITON_ATTN + Marlin)"
            ),
            notes=(_NOTE_PTX_JIT, _NOTE_GB10),
        ),
        "11.0": THOR,
    },
    "0.11.1-0.11.2": {
        "7.x": BELOW_AMPERE,
        ("8.x", "12.x"): _marlin_triton(
            (
                "0.11.2 wheel quantization/mxfp4.py L134-142 (major < 9 or no triton_kernels -> Marlin); "
                "platforms/cuda.py L46-84 _get_backend_priorities (FLASH_ATTN, FLASHINFER, TRITON_ATTN) "
                "with FA2 lacking sinks (attention/utils/fa_utils.py L83-87) and FlashInfer sinks only "
                "via TRT-LLM on 10.0 (v1/attention/backends/flashinfer.py L345-357); 0.11.1 identical"
            ),
            notes=(_NOTE_GB10,),
        ),
        "9.0": ok(
            MARLIN,
            FA3,
            "Marlin MoE on Hopper (still no triton_kernels in the wheel) and FA3 sinks",
            (
                "0.11.2 wheel quantization/mxfp4.py L134-142, METADATA (no triton_kernels); fa_utils.py "
                "L83-87 (FA3 supports sinks)"
            ),
        ),
        "10.0": ok(
            FI_MXFP8,
            FI_ATTN,
            "FlashInfer MXFP4 MoE with MXFP8 activations and TRT-LLM attention with sinks",
            (
                (
                    "0.11.2 wheel quantization/mxfp4.py L110-115 (10.0 + flashinfer + "
                    "VLLM_USE_FLASHINFER_MOE_MXFP4_MXFP8 -> SM100_FI_MXFP4_MXFP8_TRTLLM); utils/flashinfer.py"
                    " L219-229 (TRT-LLM needs capability 10.0 and cubins); "
                )
                + _SRC_RECIPE
            ),
            env=ENV_MXFP8,
            notes=(_NOTE_CUBINS.format(fallback="TRITON_ATTN"),),
        ),
        "10.3": ok(
            MARLIN,
            TRITON_ATTN,
            "Marlin MoE and Triton attention (FlashInfer MoE and TRT-LLM attention match 10.0 only)",
            (
                "0.11.2 wheel quantization/mxfp4.py L104-142 (is_device_capability(100) exact); "
                "utils/flashinfer.py L219-229 (is_device_capability(100) exact)"
            ),
            notes=(_NOTE_PTX_JIT, "not run on hardware here"),
        ),
        "11.0": THOR,
    },
    "0.12.0": {
        "7.x": BELOW_AMPERE,
        ("8.x", "12.x"): _marlin_triton(
            (
                "0.12.0 wheel quantization/mxfp4.py L152-166 (Triton only for 9.0 <= capability < 11.0; "
                "'SM120 needs this fix: triton-lang/triton#8498' -> Marlin); platforms/cuda.py L46-83; "
                "v1/attention/backends/flashinfer.py L358 supports_sink"
            ),
            notes=(_NOTE_GB10,),
        ),
        "9.0": ok(
            MARLIN,
            FA3,
            (
                "Marlin MoE forced by VLLM_MXFP4_USE_MARLIN=1 because the default TRITON backend "
                "regressed at small concurrency on Hopper in 0.12.0 (vllm#28894), and FA3 sinks"
            ),
            (
                (
                    "0.12.0 wheel quantization/mxfp4.py L152-166 (VLLM_MXFP4_USE_MARLIN or Triton unsupported"
                    " -> Marlin, else Triton for 9.0 <= capability < 11.0); vllm#28894; vllm-project/recipes "
                    "PR 168; "
                )
                + _SRC_RECIPE
            ),
            env=ENV_MARLIN,
            notes=(
                (
                    "the regression was fixed by vLLM PR 30528: 0.13.0's _swizzle_mxfp4 pins split_k=1 on"
                    " SM90 (quantization/utils/mxfp4_utils.py), so 0.13+ needs no variable"
                ),
            ),
        ),
        "10.0": ok(
            FI_MXFP8,
            FI_ATTN,
            "FlashInfer MXFP4 MoE with MXFP8 activations and TRT-LLM attention with sinks",
            (
                (
                    "0.12.0 wheel quantization/mxfp4.py L128-133 (capability 10.0 + flashinfer + env -> "
                    "SM100_FI_MXFP4_MXFP8_TRTLLM); utils/flashinfer.py L257-267; "
                )
                + _SRC_RECIPE
            ),
            env=ENV_MXFP8,
            notes=(_NOTE_CUBINS.format(fallback="TRITON_ATTN"),),
        ),
        "10.3": ok(
            TRITON,
            TRITON_ATTN,
            (
                "OpenAI Triton MoE (FlashInfer matches 10.0 only, the Triton gate 9.0 <= capability < "
                "11.0 admits 10.3) and Triton attention"
            ),
            (
                "0.12.0 wheel quantization/mxfp4.py L121-166; utils/flashinfer.py L257-267 (TRT-LLM "
                "attention exact 10.0); fa_utils.py L91-95 (FA2 on 10.x has no sinks)"
            ),
            notes=("not run on hardware here",),
        ),
        "11.0": THOR,
    },
    "0.13-0.19": {
        "7.x": BELOW_AMPERE,
        ("8.x", "12.x"): _marlin_triton(
            (
                "0.13.0 wheel quantization/mxfp4.py L151-165, 0.18.0 L158-170 (Triton gate 9.0 <= "
                "capability < 11.0, else Marlin); 0.19.0 fused_moe/oracle/mxfp4.py L169-185 (priority ..."
                " TRITON, FLASHINFER_CUTLASS_MXFP4_BF16 (9.0 only), MARLIN) and "
                "fused_moe/gpt_oss_triton_kernels_moe.py L564 ((9,0) <= cap < (11,0)); platforms/cuda.py "
                "_get_backend_priorities unchanged"
            ),
            notes=(_NOTE_GB10,),
        ),
        "9.0": ok(
            TRITON,
            FA3,
            "OpenAI Triton (triton_kernels, vendored) MoE and FA3 sinks",
            (
                "0.13.0 wheel quantization/mxfp4.py L151-165 and quantization/utils/mxfp4_utils.py "
                "(split_k=1 on SM90, the PR 30528 fix); 0.19.0 oracle/mxfp4.py L169-185 (TRITON before "
                "MARLIN)"
            ),
        ),
        "10.0": ok(
            FI_MXFP8,
            FI_ATTN,
            "FlashInfer MXFP4 MoE with MXFP8 activations and TRT-LLM attention with sinks",
            (
                (
                    "0.13.0 wheel quantization/mxfp4.py L127-132 (is_device_capability_family(100) + "
                    "flashinfer + env -> SM100_FI_MXFP4_MXFP8_TRTLLM); 0.19.0 oracle/mxfp4.py L309-319 (env "
                    "-> FLASHINFER_TRTLLM_MXFP4_MXFP8); utils/flashinfer.py supports_trtllm_attention (family"
                    " 100); "
                )
                + _SRC_RECIPE
            ),
            env=ENV_MXFP8,
            notes=(_NOTE_CUBINS.format(fallback="TRITON_ATTN"),),
        ),
        "10.3": ok(
            FI_BF16,
            FI_ATTN,
            "FlashInfer MXFP4 MoE (BF16 activations) and TRT-LLM attention with sinks",
            (
                "0.13.0 wheel quantization/mxfp4.py L133-140 (family 100 -> SM100_FI_MXFP4_BF16 by "
                "default); utils/flashinfer.py supports_trtllm_attention (family 100)"
            ),
            notes=(
                (
                    "the recipe sets VLLM_USE_FLASHINFER_MOE_MXFP4_MXFP8=1 only for compute capability "
                    "10.0, so it is not set here"
                ),
                _NOTE_CUBINS.format(fallback="TRITON_ATTN"),
                "not run on hardware here",
            ),
        ),
        "11.0": THOR,
    },
    "0.20-0.21": {
        "7.x": BELOW_AMPERE,
        ("8.x", "12.x"): _marlin_triton(
            (
                "0.20.0 wheel fused_moe/oracle/mxfp4.py L193-211 (gpt-oss priority: "
                "FLASHINFER_TRTLLM_MXFP4_BF16 (family 100), AITER, TRITON ((9,0) <= cap < (11,0), experts"
                " L658), FLASHINFER_CUTLASS_MXFP4_BF16 (9.0), MARLIN)"
            ),
            notes=(_NOTE_GB10, "vllm#41477: GB10 on 0.20.0 runs Marlin by default"),
        ),
        "9.0": ok(
            TRITON,
            FA3,
            "OpenAI Triton MoE and FA3 sinks",
            "0.20.0 wheel fused_moe/oracle/mxfp4.py L193-211; v1/attention/backends/fa_utils.py L200-203",
        ),
        "10.0": ok(
            FI_MXFP8,
            FI_ATTN,
            "FlashInfer MXFP4 MoE with MXFP8 activations and TRT-LLM attention with sinks",
            (
                (
                    "0.20.0 wheel fused_moe/oracle/mxfp4.py L359-368 (env -> FLASHINFER_TRTLLM_MXFP4_MXFP8); "
                    "fa_utils.py L200-203 (FA3 and FA4 support sinks); METADATA flashinfer-"
                    "cubin==0.6.8.post1; "
                )
                + _SRC_RECIPE
            ),
            env=ENV_MXFP8,
            notes=(
                (
                    "0.20.1 changed the MXFP8 TRT-LLM quant config (mx_alignment=256) in oracle/mxfp4.py:"
                    " prefer 0.20.1+ over 0.20.0 for this path"
                ),
                (
                    "without the TRT-LLM cubins attention falls back to FLASH_ATTN (FlashAttention 4 has "
                    "sinks from 0.20)"
                ),
            ),
        ),
        "10.3": ok(
            FI_BF16,
            FI_ATTN,
            "FlashInfer MXFP4 MoE (BF16 activations) and TRT-LLM attention with sinks",
            "0.20.0 wheel fused_moe/oracle/mxfp4.py L193-211; experts/trtllm_mxfp4_moe.py L91 (family 100)",
            notes=("not run on hardware here",),
        ),
        "11.0": THOR,
    },
    "0.22-0.23": {
        "7.x": BELOW_AMPERE,
        ("8.x", "12.x"): _marlin_triton(
            (
                "0.22.0 wheel fused_moe/oracle/mxfp4.py L270-290 (gpt-oss priority), "
                "experts/gpt_oss_triton_kernels_moe.py L49 ((9,0) <= cap < (11,0))"
            ),
            notes=(_NOTE_GB10,),
        ),
        "9.0": ok(
            TRITON,
            FA3,
            "OpenAI Triton MoE and FA3 sinks",
            "0.22.0/0.23.0 wheels fused_moe/oracle/mxfp4.py L270-290",
        ),
        "10.0": ok(
            FI_MXFP8,
            FI_ATTN,
            "FlashInfer MXFP4 MoE with MXFP8 activations and TRT-LLM attention with sinks",
            (
                (
                    "0.23.0 wheel vllm/envs.py L1495-1503 (deprecated_env, 'v0.23'); "
                    "fused_moe/oracle/mxfp4.py L499-510 (env -> FLASHINFER_TRTLLM_MXFP4_MXFP8); "
                )
                + _SRC_RECIPE
            ),
            env=ENV_MXFP8,
            notes=(
                (
                    "VLLM_USE_FLASHINFER_MOE_MXFP4_MXFP8 still works here but logs a deprecation warning;"
                    " vLLM's replacement is '--moe-backend flashinfer_trtllm with "
                    "--quantization_config.moe.activation mxfp8', and 0.24.0 drops the variable"
                ),
            ),
        ),
        "10.3": ok(
            FI_BF16,
            FI_ATTN,
            "FlashInfer MXFP4 MoE (BF16 activations) and TRT-LLM attention with sinks",
            "0.23.0 wheel fused_moe/oracle/mxfp4.py L270-290; experts/trtllm_mxfp4_moe.py L87",
            notes=("not run on hardware here",),
        ),
        "11.0": THOR,
    },
    "0.24-0.27": {
        "7.x": BELOW_AMPERE,
        ("8.x", "12.x"): _marlin_triton(
            (
                "0.24.0 wheel fused_moe/oracle/mxfp4.py L304-323 (gpt-oss priority; BF16 variants only "
                "unless an activation is requested, L420-437), experts/gpt_oss_triton_kernels_moe.py "
                "L37-49 ((9,0) <= cap < (11,0)), experts/marlin_moe.py L603 (capability >= 7.5); "
                "platforms/cuda.py L84 priorities"
            ),
            notes=(_NOTE_GB10,),
        ),
        "9.0": ok(
            TRITON,
            FA3,
            "OpenAI Triton MoE and FA3 sinks",
            (
                "0.24.0 wheel fused_moe/oracle/mxfp4.py L304-323; FACTS.md: real H100 with 0.24.0 logs "
                "\"Using 'TRITON' Mxfp4 MoE backend\" and FLASH_ATTN (FA3)"
            ),
        ),
        ("10.0", "10.3"): ok(
            FI_BF16,
            FI_ATTN,
            "FlashInfer MXFP4 MoE (BF16 activations) and TRT-LLM attention with sinks",
            (
                "0.24.0 wheel vllm/envs.py (no MXFP4 variables; validate_environ L1998-2004), "
                "fused_moe/oracle/mxfp4.py L304-323 (FLASHINFER_TRTLLM_MXFP4_BF16 first), "
                "experts/trtllm_mxfp4_moe.py L85-87 (family 100 + flashinfer), utils/flashinfer.py "
                "L374-386; 0.26.0 METADATA (no flashinfer-cubin)"
            ),
            notes=(
                (
                    "VLLM_USE_FLASHINFER_MOE_MXFP4_MXFP8 no longer exists (setting it only logs 'Unknown "
                    "vLLM environment variable detected'); MXFP8 activations, which the recipe recommends"
                    " on 10.0, are now a serve option: --moe-backend flashinfer_trtllm with "
                    "--quantization_config.moe.activation mxfp8"
                ),
                (
                    "flashinfer-cubin is a dependency up to 0.25.x only: from 0.26.0 an offline host "
                    "needs it installed or falls back to FLASH_ATTN (FlashAttention 4) for attention"
                ),
            ),
        ),
        "11.0": THOR,
    },
    "0.28-0.31": {
        "7.x": BELOW_AMPERE,
        "8.x": _marlin_triton("0.28.0-0.31.0 wheels fused_moe/oracle/mxfp4.py (0.31.0 L342-366 gpt-oss priority)"),
        "9.0": ok(
            TRITON,
            FA3,
            "OpenAI Triton MoE and FA3 sinks",
            "0.31.0 wheel fused_moe/oracle/mxfp4.py L342-366",
        ),
        ("10.0", "10.3"): ok(
            FI_BF16,
            FI_ATTN,
            "FlashInfer MXFP4 MoE (BF16 activations) and TRT-LLM attention with sinks",
            "0.31.0 wheel fused_moe/oracle/mxfp4.py L342-366; experts/trtllm_mxfp4_moe.py (family 100)",
            notes=(
                (
                    "MXFP8 activations are a serve option (--moe-backend flashinfer_trtllm with "
                    "--quantization_config.moe.activation mxfp8), not an environment variable"
                ),
                _NOTE_CUBINS.format(fallback="FLASH_ATTN (FlashAttention 4)"),
            ),
        ),
        "11.0": THOR,
        "12.x": ok(
            MARLIN,
            "FLASHINFER (XQA decode) if FlashInfer's cubins are available, else TRITON_ATTN",
            "Marlin weight-only MXFP4 MoE and sink attention from FlashInfer XQA or Triton",
            (
                "0.28.0 wheel v1/attention/backends/flashinfer.py L543-560 (supports_sink: SM12x via XQA "
                "decode); utils/flashinfer.py supports_trtllm_attention (family 120 decode only); "
                "flashinfer#4070 (sinks on SM12x from flashinfer 0.6.16)"
            ),
            notes=(_NOTE_GB10, _NOTE_CUBINS.format(fallback="TRITON_ATTN")),
        ),
    },
    "0.32-0.33": {
        "7.x": BELOW_AMPERE,
        "8.x": _marlin_triton("0.33.0 wheel fused_moe/oracle/mxfp4.py L402-435 (gpt-oss priority)"),
        "9.0": ok(
            TRITON,
            FA3,
            "OpenAI Triton MoE and FA3 sinks",
            (
                "0.33.0 wheel fused_moe/oracle/mxfp4.py L402-435 (TRITON before MARLIN; Humming only "
                "moves ahead of Marlin on SM90, quantization/utils/humming/priority.py L12)"
            ),
        ),
        ("10.0", "10.3"): ok(
            FI_BF16,
            FI_ATTN,
            "FlashInfer MXFP4 MoE (BF16 activations) and TRT-LLM attention with sinks",
            (
                "0.33.0 wheel fused_moe/oracle/mxfp4.py L402-435, experts/trtllm_mxfp4_moe.py L123 "
                "(family 100 + flashinfer); v1/attention/backends/flashinfer.py L707-726"
            ),
            notes=(
                (
                    "MXFP8 activations are a serve option (--moe-backend flashinfer_trtllm with "
                    "--quantization_config.moe.activation mxfp8), not an environment variable"
                ),
                _NOTE_CUBINS.format(fallback="FLASH_ATTN (FlashAttention 4)"),
            ),
        ),
        "11.0": THOR,
        "12.x": ok(
            MARLIN,
            "FLASHINFER (XQA decode) if FlashInfer's cubins are available, else TRITON_ATTN",
            (
                "Marlin MoE (vLLM admits SM12x to Triton now but orders it after Marlin, which prefills "
                "~10% faster there) and sink attention from FlashInfer XQA or Triton"
            ),
            (
                "0.33.0 wheel fused_moe/oracle/mxfp4.py L426-433 (SM12x: TRITON moved after "
                "BATCHED_MARLIN), experts/gpt_oss_triton_kernels_moe.py L48-53 ((9,0) <= cap < (13,0)); "
                "v1/attention/backends/flashinfer.py L707-726; 0.32.0 identical (L413)"
            ),
            notes=(_NOTE_GB10, "--moe-backend triton opts into the Triton MoE on SM12x"),
        ),
    },
}


def _expand(matrix: dict) -> dict[str, dict[str, Cell]]:
    """Keys naming several groups -> one entry per group (the same Cell)."""
    out: dict[str, dict[str, Cell]] = {}
    for release, cells in matrix.items():
        out[release] = {}
        for key, cell in cells.items():
            for group in (key,) if isinstance(key, str) else key:
                out[release][group] = cell
    return out


MATRIX = _expand(MATRIX)


def _support_rows() -> tuple[SupportRow, ...]:
    """The matrix as rows: one per (release, cell), with the capabilities the cell covers."""
    rows = []
    for release, cells in MATRIX.items():
        caps: dict[int, tuple[Cell, list[str]]] = {}
        for group, cell in cells.items():
            caps.setdefault(id(cell), (cell, []))[1].extend(GROUPS[group])
        for cell, capabilities in caps.values():
            values = {f.name: getattr(cell, f.name) for f in fields(Cell)}
            rows.append(SupportRow(**values, release=release, capabilities=tuple(capabilities)))
    return tuple(rows)


SUPPORT_TABLE: tuple[SupportRow, ...] = _support_rows()

_RELEASES_BY_KEY = {r.key: r for r in RELEASES}

# --- lookups -------------------------------------------------------------------------------


def parse_capability(compute_capability: str | float | int) -> tuple[int, int] | None:
    """'9.0', 9.0, '12.1', 'sm_90', 'sm_120', 90 or 121 -> (major, minor); None if unreadable."""
    if isinstance(compute_capability, bool):
        return None
    if isinstance(compute_capability, float):
        text = f"{compute_capability:.1f}"
    else:
        text = str(compute_capability).strip().lower()
    m = re.fullmatch(r"(?:sm_?|compute_)?(\d{2,3})[af]?", text)
    if m and (text.startswith(("sm", "compute")) or int(m.group(1)) >= 20):
        digits = m.group(1)
        return int(digits[:-1]), int(digits[-1])
    m = re.fullmatch(r"(\d{1,2})(?:\.(\d))?", text)
    if m:
        return int(m.group(1)), int(m.group(2) or 0)
    return None


def _cap_text(cap: tuple[int, int]) -> str:
    return f"{cap[0]}.{cap[1]}"


@dataclass(frozen=True)
class _Match:
    release: Release | None
    note: str | None = None  # how the version was read (pre-release, local build)
    cuda_override: str | None = None  # CUDA build from a +cuXYZ label
    problem: str | None = None  # why no release matches


def _match_release(version: Version) -> _Match:
    local = version.local
    if local is not None and local.startswith("gptoss"):
        if version.public == "0.10.1":
            return _Match(_RELEASES_BY_KEY["0.10.1+gptoss"])
        return _Match(None, problem="no +gptoss build other than 0.10.1+gptoss is known")
    base = Version(version.base_version)
    note = None
    if version.is_prerelease or version.is_devrelease:
        note = f"pre-release {version} judged as {base}"
    cuda_override = None
    if local is not None:
        m = re.fullmatch(r"cu(\d{2})(\d)", local)
        if m:
            cuda_override = f"{int(m.group(1))}.{m.group(2)}"
            note = (note + "; " if note else "") + (
                f"+{local} wheel: kernel rows of {base}, driver minimum of CUDA {cuda_override}"
            )
        else:
            note = (note + "; " if note else "") + f"local build +{local} judged as {base}"
    if base < Version(FIRST_GPT_OSS):
        return _Match(None, note=note, problem="predates gpt-oss")
    for release in RELEASES:
        if release.local is None and SpecifierSet(release.specifier).contains(base, prereleases=True):
            return _Match(release, note=note, cuda_override=cuda_override)
    return _Match(None, note=note, problem="newer than the table")


def _row_for(release_key: str, cap: str) -> Cell | None:
    group = GROUP_OF.get(cap)
    return MATRIX[release_key][group] if group else None


def min_driver_for(vllm_version: str) -> str | None:
    """Minimum NVIDIA driver for the CUDA build of that vLLM wheel, or None if unknown."""
    version = parse_vllm(vllm_version)
    if version is None:
        return None
    match = _match_release(version)
    if match.release is None:
        return None
    if match.cuda_override is not None:
        return CUDA_MIN_DRIVER.get(match.cuda_override)
    return match.release.min_driver


def _cuda_of(vllm_version: str) -> str | None:
    version = parse_vllm(vllm_version)
    if version is None:
        return None
    match = _match_release(version)
    if match.release is None:
        return None
    return match.cuda_override or match.release.cuda


def driver_ok(vllm_version: str, driver_version: str) -> tuple[bool, str]:
    """Is this NVIDIA driver new enough for the CUDA build of that vLLM wheel?

    Compares numerically, part by part ('580.159.04' > '580.65.06'). The message names both
    versions and, when the driver is too old, the fix.
    """
    minimum = min_driver_for(vllm_version)
    if minimum is None:
        return False, (
            f"no minimum driver is known for vLLM {vllm_version!r} (not a gpt-oss-capable "
            f"release in the table, {FIRST_GPT_OSS} to {NEWEST_CHECKED}): pin a release from "
            "the table before checking the driver"
        )
    driver = parse_driver(driver_version)
    if driver is None:
        return False, (
            f"NVIDIA driver version {driver_version!r} is not a version number such as "
            f"580.159.04: cannot check it against vLLM {vllm_version}'s minimum {minimum}"
        )
    cuda = _cuda_of(vllm_version)
    if driver >= Version(minimum):
        return True, (
            f"NVIDIA driver {driver_version} meets vLLM {vllm_version}'s minimum {minimum} "
            f"(wheel built with CUDA {cuda})"
        )
    fallback = [r for r in RELEASES if r.local is None and driver >= Version(r.min_driver)]
    if fallback:
        older = fallback[-1]
        alternative = f", or pin vLLM {older.newest} (CUDA {older.cuda}, needs >= {older.min_driver})"
    else:
        alternative = (
            "; no vLLM release that serves gpt-oss runs on it (the oldest, "
            f"{FIRST_GPT_OSS}, needs >= {RELEASES[1].min_driver})"
        )
    return False, (
        f"NVIDIA driver {driver_version} is older than {minimum}, the minimum for vLLM "
        f"{vllm_version} (wheel built with CUDA {cuda}): upgrade the driver to {minimum} or "
        f"newer (e.g. the R580 branch){alternative}"
    )


def _who(gpu_name: str, cap: str) -> str:
    return f"{gpu_name} (compute capability {cap})" if gpu_name else f"compute capability {cap}"


def _unsupported(
    who: str,
    version: str,
    why: str,
    remedy: str,
    source: str,
    min_driver: str | None = None,
    notes: tuple[str, ...] = (),
) -> KernelVerdict:
    return KernelVerdict(
        supported=False,
        reason=f"{who} with vLLM {version}: no working gpt-oss kernels, {why}; remedy: {remedy}.",
        moe_backend=None,
        attention_backend=None,
        env={},
        min_driver=min_driver,
        remedy=remedy,
        source=source,
        notes=notes,
    )


def kernel_verdict(vllm_version: str, compute_capability: str | float, gpu_name: str = "") -> KernelVerdict:
    """Whether gpt-oss's MXFP4 MoE and attention-sink kernels work on this GPU in that vLLM."""
    gpu_name = (gpu_name or "").strip()
    cap = parse_capability(compute_capability)
    cap_text = _cap_text(cap) if cap else str(compute_capability)
    who = _who(gpu_name, cap_text)
    version = parse_vllm(vllm_version)

    if version is None:
        return _unsupported(
            who,
            repr(vllm_version),
            "the version is not a PEP 440 version",
            f"pass a release such as 0.10.1+gptoss, 0.11.0 or {NEWEST_CHECKED}",
            source="packaging.version.Version",
        )
    if cap is None:
        return _unsupported(
            who,
            str(version),
            f"compute capability {compute_capability!r} is not readable",
            "pass it as nvidia-smi --query-gpu=compute_cap prints it, e.g. 9.0",
            source="nvidia-smi --query-gpu=compute_cap",
        )

    match = _match_release(version)
    notes = (match.note,) if match.note else ()
    if match.release is None:
        if cap < (8, 0):
            cell = BELOW_AMPERE
            return _unsupported(who, str(version), cell.why, cell.remedy or "", cell.source, notes=notes)
        if match.problem == "predates gpt-oss":
            return _unsupported(
                who,
                str(version),
                f"vLLM {version} predates gpt-oss (0.10.0 has no gpt_oss model and no mxfp4 "
                f"quantization; the first release with both is {FIRST_GPT_OSS})",
                f"install vLLM >= {FIRST_GPT_OSS} (newest checked {NEWEST_CHECKED})",
                source="vllm-0.10.0 wheel: no vllm/model_executor/models/gpt_oss.py, no quantization/mxfp4.py",
                notes=notes,
            )
        if match.problem == "newer than the table":
            return _unsupported(
                who,
                str(version),
                f"vLLM {version} is newer than the newest release this table was checked "
                f"against ({NEWEST_CHECKED}), so its kernel choice is unknown",
                f"pin vLLM {NEWEST_CHECKED}, or read that release's MXFP4 backend selection "
                "and add a row to deploy/kernel_support.py",
                source=f"table covers {FIRST_GPT_OSS} to {NEWEST_CHECKED}",
                notes=notes,
            )
        return _unsupported(
            who,
            str(version),
            match.problem or "the version is not in the table",
            f"use 0.10.1+gptoss or a PyPI release from {FIRST_GPT_OSS} to {NEWEST_CHECKED}",
            source="deploy/kernel_support.py RELEASES",
            notes=notes,
        )

    release = match.release
    min_driver = CUDA_MIN_DRIVER.get(match.cuda_override) if match.cuda_override else release.min_driver
    row = _row_for(release.key, cap_text)
    if row is None:
        if cap < (8, 0):
            row = _row_for(release.key, "7.5")
        elif cap[0] == 8:
            row = _row_for(release.key, "8.6")
            notes += (
                f"no row for {cap_text}: judged by the 8.6 row, since vLLM treats every "
                "sm_8x alike (capability >= 8.0 and < 9.0)",
            )
        else:
            future = cap[0] > 12
            return _unsupported(
                who,
                str(version),
                (
                    f"compute capability {cap_text} is "
                    + ("a newer architecture than" if future else "not one of")
                    + " the architectures this table knows, so vLLM's kernel choice there is "
                    "unverified"
                ),
                "treat it as unsupported until that release's MXFP4 and attention backend "
                "selection is read for it and a row is added to deploy/kernel_support.py",
                source=f"KNOWN_CAPABILITIES: {', '.join(KNOWN_CAPABILITIES)}",
                min_driver=min_driver,
                notes=notes,
            )
    assert row is not None
    source = f"{row.source}. Release: {release.source}"
    if not row.supported:
        return _unsupported(
            who, str(version), row.why, row.remedy or "", source, min_driver=min_driver, notes=notes + row.notes
        )

    env = dict(row.env)
    parts = [
        f"{who} with vLLM {version}: supported, {row.why} "
        f"(MoE backend {row.moe_backend}, attention {row.attention_backend})"
    ]
    if env:
        parts.append("set " + ", ".join(f"{k}={v}" for k, v in env.items()))
    if row.pip_extras:
        parts.append(f"install vllm[{','.join(row.pip_extras)}]")
    parts.append(f"driver >= {min_driver}")
    return KernelVerdict(
        supported=True,
        reason="; ".join(parts) + ".",
        moe_backend=row.moe_backend,
        attention_backend=row.attention_backend,
        env=env,
        min_driver=min_driver,
        remedy=None,
        source=source,
        pip_extras=row.pip_extras,
        notes=notes + row.notes,
    )


def table_gaps() -> list[tuple[str, str]]:
    """(release, capability) pairs with no row, or with more than one: should be empty."""
    gaps = []
    for release in RELEASES:
        for cap in KNOWN_CAPABILITIES:
            count = sum(1 for row in SUPPORT_TABLE if row.release == release.key and cap in row.capabilities)
            if count != 1:
                gaps.append((release.key, cap))
    return gaps
