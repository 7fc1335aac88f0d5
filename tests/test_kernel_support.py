"""Verdicts for every row of the gpt-oss kernel support table, plus the driver checks."""

from __future__ import annotations

import pytest
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from deploy import kernel_support as ks
from deploy.kernel_support import (
    CUDA_MIN_DRIVER,
    ENV_VAR_RELEASES,
    KNOWN_CAPABILITIES,
    NEWEST_CHECKED,
    RELEASES,
    SUPPORT_TABLE,
    KernelVerdict,
    driver_ok,
    kernel_verdict,
    min_driver_for,
    parse_capability,
    table_gaps,
)

RELEASES_BY_KEY = {r.key: r for r in RELEASES}

# Every vLLM release on PyPI from the first that serves gpt-oss to the newest checked
# (`pip index versions vllm`, 2026-11-23).
PYPI_RELEASES = (
    "0.10.1 0.10.1.1 0.10.2 0.11.0 0.11.1 0.11.2 0.12.0 0.13.0 0.14.0 0.14.1 0.15.0 0.15.1 "
    "0.16.0 0.17.0 0.17.1 0.18.0 0.18.1 0.19.0 0.19.1 0.20.0 0.20.1 0.20.2 0.21.0 0.22.0 "
    "0.22.1 0.23.0 0.24.0 0.25.0 0.25.1 0.26.0 0.27.0 0.27.1 0.28.0 0.29.0 0.30.0 0.31.0 "
    "0.32.0 0.33.0"
).split()


def _versions_of(release) -> list[str]:
    """The oldest and the newest version inside a release range."""
    if release.local:
        return [release.newest]
    oldest = [s.version for s in SpecifierSet(release.specifier) if s.operator == ">="][0]
    return sorted({oldest, release.newest}, key=Version)


ROW_CASES = [
    pytest.param(row, cap, version, id=f"{version}-cc{cap}")
    for row in SUPPORT_TABLE
    for cap in row.capabilities
    for version in _versions_of(RELEASES_BY_KEY[row.release])
]


# --- the table itself ----------------------------------------------------------------------


def test_every_release_and_known_capability_has_exactly_one_row():
    assert table_gaps() == []


def test_rows_name_known_releases_and_capabilities():
    for row in SUPPORT_TABLE:
        assert row.release in RELEASES_BY_KEY
        assert set(row.capabilities) <= set(KNOWN_CAPABILITIES)
        assert row.source.strip()
        if row.supported:
            assert row.moe_backend and row.attention_backend and row.remedy is None
        else:
            assert row.remedy and row.moe_backend is None and row.env == ()


def test_release_ranges_do_not_overlap_and_cover_every_pypi_release():
    pypi = [r for r in RELEASES if r.local is None]
    for version in PYPI_RELEASES:
        matching = [r.key for r in pypi if SpecifierSet(r.specifier).contains(version)]
        assert len(matching) == 1, (version, matching)
    for release in pypi:
        assert SpecifierSet(release.specifier).contains(release.newest)
        assert release.cuda in CUDA_MIN_DRIVER


def test_env_vars_are_read_by_the_release_that_sets_them():
    for row in SUPPORT_TABLE:
        for name, _value in row.env:
            assert name in ENV_VAR_RELEASES, name
            for version in _versions_of(RELEASES_BY_KEY[row.release]):
                assert SpecifierSet(ENV_VAR_RELEASES[name]).contains(Version(version).public), (
                    name,
                    version,
                )


@pytest.mark.parametrize("row,cap,version", ROW_CASES)
def test_verdict_for_every_row(row, cap, version):
    release = RELEASES_BY_KEY[row.release]
    verdict = kernel_verdict(version, cap, gpu_name="GPU-X")
    assert isinstance(verdict, KernelVerdict)
    assert verdict.supported is row.supported
    assert verdict.moe_backend == row.moe_backend
    assert verdict.attention_backend == row.attention_backend
    assert verdict.env == dict(row.env)
    assert verdict.min_driver == release.min_driver
    assert verdict.remedy == row.remedy
    assert verdict.pip_extras == row.pip_extras
    assert row.source in verdict.source and release.source in verdict.source
    # Messages are concrete: GPU, compute capability, vLLM version, and the fix.
    assert "GPU-X" in verdict.reason
    assert f"compute capability {cap}" in verdict.reason
    assert f"vLLM {version}" in verdict.reason
    if not row.supported:
        assert row.remedy in verdict.reason


# --- the cases people ask about --------------------------------------------------------------


def test_h100_with_launch_wheel_is_supported():
    verdict = kernel_verdict("0.10.1+gptoss", "9.0", "NVIDIA H100 80GB HBM3")
    assert verdict.supported
    assert verdict.moe_backend == "TRITON"
    assert verdict.attention_backend.startswith("FLASH_ATTN")
    assert verdict.env == {}
    assert verdict.min_driver == "570.26"


def test_a100_with_launch_wheel_is_not_supported_and_points_at_pypi_0_10_1():
    verdict = kernel_verdict("0.10.1+gptoss", 8.0, "NVIDIA A100-SXM4-80GB")
    assert not verdict.supported
    assert "Sinks are only supported in FlashAttention 3" in verdict.reason
    assert ">= 0.10.1" in verdict.remedy
    assert "NVIDIA A100-SXM4-80GB" in verdict.reason and "0.10.1+gptoss" in verdict.reason


def test_a100_with_pypi_0_10_1_uses_marlin_and_triton_attention():
    verdict = kernel_verdict("0.10.1", "8.0", "NVIDIA A100-SXM4-80GB")
    assert verdict.supported
    assert verdict.moe_backend == "MARLIN"
    assert verdict.attention_backend == "TRITON_ATTN"
    assert verdict.env == {}


@pytest.mark.parametrize("version", ["0.10.1+gptoss", *PYPI_RELEASES])
def test_t4_is_never_supported(version):
    verdict = kernel_verdict(version, "7.5", "Tesla T4")
    assert not verdict.supported
    assert "Minimum capability: 80" in verdict.reason
    assert "8.0 or newer" in verdict.remedy
    assert "Tesla T4 (compute capability 7.5)" in verdict.reason


def test_t4_with_a_version_outside_the_table_still_names_the_gpu_problem():
    verdict = kernel_verdict("0.9.2", 7.5, "Tesla T4")
    assert not verdict.supported
    assert "8.0 or newer" in verdict.remedy


@pytest.mark.parametrize(
    "version,moe,attention",
    [
        ("0.10.1", "MARLIN", "TRITON_ATTN"),
        ("0.11.0", "MARLIN", "TRITON_ATTN"),
        ("0.12.0", "MARLIN", "TRITON_ATTN"),
        ("0.24.0", "MARLIN", "TRITON_ATTN"),
        ("0.28.0", "MARLIN", "FLASHINFER (XQA decode) if FlashInfer's cubins are available, else TRITON_ATTN"),
        ("0.33.0", "MARLIN", "FLASHINFER (XQA decode) if FlashInfer's cubins are available, else TRITON_ATTN"),
    ],
)
def test_rtx_5090(version, moe, attention):
    verdict = kernel_verdict(version, "12.0", "NVIDIA GeForce RTX 5090")
    assert verdict.supported
    assert (verdict.moe_backend, verdict.attention_backend) == (moe, attention)
    assert verdict.env == {}


def test_rtx_5090_with_launch_wheel_is_not_supported():
    verdict = kernel_verdict("0.10.1+gptoss", "12.0", "NVIDIA GeForce RTX 5090")
    assert not verdict.supported
    assert "RTX 5090" in verdict.reason and ">= 0.10.2" in verdict.remedy


def test_rtx_5090_on_0_10_1_needs_the_cu128_torch():
    verdict = kernel_verdict("0.10.1.1", "12.0", "NVIDIA GeForce RTX 5090")
    assert verdict.supported
    assert any("cu128" in note for note in verdict.notes)


@pytest.mark.parametrize("version", ["0.10.1", "0.10.2", "0.11.2", "0.12.0", "0.19.1", "0.21.0", "0.23.0"])
def test_b200_sets_the_mxfp8_moe_variable_while_vllm_reads_it(version):
    verdict = kernel_verdict(version, "10.0", "NVIDIA B200")
    assert verdict.supported
    assert verdict.env == {"VLLM_USE_FLASHINFER_MOE_MXFP4_MXFP8": "1"}
    assert verdict.moe_backend == "FLASHINFER_TRTLLM_MXFP4_MXFP8"
    assert "VLLM_USE_FLASHINFER_MOE_MXFP4_MXFP8=1" in verdict.reason


@pytest.mark.parametrize("version", ["0.24.0", "0.27.1", "0.33.0"])
def test_b200_from_0_24_sets_no_removed_variable(version):
    verdict = kernel_verdict(version, 10.0, "NVIDIA B200")
    assert verdict.supported
    assert verdict.env == {}
    assert verdict.moe_backend == "FLASHINFER_TRTLLM_MXFP4_BF16"
    assert any("--moe-backend flashinfer_trtllm" in note for note in verdict.notes)


@pytest.mark.parametrize("version", ["0.10.1", "0.10.1.1", "0.10.2", "0.11.0"])
def test_b200_before_0_11_1_needs_the_flashinfer_extra(version):
    verdict = kernel_verdict(version, "10.0", "NVIDIA B200")
    assert verdict.pip_extras == ("flashinfer",)
    assert "vllm[flashinfer]" in verdict.reason


def test_h100_on_0_12_0_forces_marlin_for_the_hopper_regression():
    verdict = kernel_verdict("0.12.0", "9.0", "NVIDIA H100 80GB HBM3")
    assert verdict.env == {"VLLM_MXFP4_USE_MARLIN": "1"}
    assert verdict.moe_backend == "MARLIN"
    assert "28894" in verdict.reason
    assert kernel_verdict("0.13.0", "9.0").env == {}


def test_h100_on_0_24_0_matches_the_real_h100_log():
    # FACTS.md: a real H100 with vLLM 0.24.0 logs "Using 'TRITON' Mxfp4 MoE backend" and FA3.
    verdict = kernel_verdict("0.24.0", "9.0", "NVIDIA H100 80GB HBM3")
    assert verdict.supported
    assert verdict.moe_backend == "TRITON"
    assert verdict.attention_backend == "FLASH_ATTN (FlashAttention 3)"
    assert verdict.min_driver == "580.65.06"


@pytest.mark.parametrize("version", ["0.10.1", "0.11.2"])
def test_hopper_uses_marlin_before_triton_kernels_shipped(version):
    assert kernel_verdict(version, "9.0").moe_backend == "MARLIN"


def test_thor_is_not_supported_anywhere():
    for version in ["0.10.1+gptoss", *PYPI_RELEASES]:
        verdict = kernel_verdict(version, "11.0", "NVIDIA Thor")
        assert not verdict.supported and "29317" in verdict.reason


# --- versions and capabilities outside the table ------------------------------------------------


@pytest.mark.parametrize("version", ["0.10.0", "0.9.2", "0.8.5.post1", "0.5.0"])
def test_versions_before_gpt_oss(version):
    verdict = kernel_verdict(version, "9.0", "NVIDIA H100 80GB HBM3")
    assert not verdict.supported
    assert "predates gpt-oss" in verdict.reason
    assert ">= 0.10.1" in verdict.remedy
    assert min_driver_for(version) is None


@pytest.mark.parametrize("version", ["", "latest", "nightly", "0.x", "not-a-version"])
def test_unparseable_versions(version):
    verdict = kernel_verdict(version, "9.0")
    assert not verdict.supported
    assert "not a PEP 440 version" in verdict.reason
    assert NEWEST_CHECKED in verdict.remedy
    assert min_driver_for(version) is None


def test_version_newer_than_the_table():
    verdict = kernel_verdict("0.34.0", "9.0", "NVIDIA H100 80GB HBM3")
    assert not verdict.supported
    assert "newer than the newest release" in verdict.reason
    assert NEWEST_CHECKED in verdict.remedy


def test_unknown_gptoss_build():
    verdict = kernel_verdict("0.10.2+gptoss", "9.0")
    assert not verdict.supported
    assert "0.10.1+gptoss" in verdict.reason


@pytest.mark.parametrize("cap", ["13.0", "14.0", 13.0])
def test_future_architecture_is_unknown_not_supported(cap):
    verdict = kernel_verdict(NEWEST_CHECKED, cap, "Future GPU")
    assert not verdict.supported
    assert "newer architecture" in verdict.reason
    assert verdict.remedy


@pytest.mark.parametrize("cap", ["9.5", "10.1", "12.2"])
def test_unknown_minor_of_a_known_architecture_is_not_guessed(cap):
    verdict = kernel_verdict(NEWEST_CHECKED, cap)
    assert not verdict.supported
    assert "not one of the architectures" in verdict.reason


def test_other_sm8x_is_judged_like_ampere():
    verdict = kernel_verdict("0.24.0", "8.7", "Jetson AGX Orin")
    assert verdict.supported and verdict.moe_backend == "MARLIN"
    assert any("judged by the 8.6 row" in note for note in verdict.notes)


@pytest.mark.parametrize("cap", ["6.1", "7.0", 5.2])
def test_anything_below_8_0_is_unsupported(cap):
    assert not kernel_verdict("0.24.0", cap).supported


def test_unreadable_capability():
    verdict = kernel_verdict("0.24.0", "hopper")
    assert not verdict.supported and "not readable" in verdict.reason


@pytest.mark.parametrize(
    "given,expected",
    [
        ("9.0", (9, 0)),
        (9.0, (9, 0)),
        ("12.1", (12, 1)),
        (12.0, (12, 0)),
        ("sm_90", (9, 0)),
        ("sm_90a", (9, 0)),
        ("sm_120", (12, 0)),
        ("90", (9, 0)),
        (121, (12, 1)),
        ("10", (10, 0)),
        (" 8.6 ", (8, 6)),
        ("hopper", None),
        ("", None),
    ],
)
def test_parse_capability(given, expected):
    assert parse_capability(given) == expected


# --- packaging's handling of local and pre-release versions --------------------------------------


def test_packaging_specifiers_ignore_the_local_label():
    # Why the launch wheel is matched by its local label before any range is tried.
    assert SpecifierSet(">=0.10.1,<0.10.2").contains("0.10.1+gptoss")
    assert SpecifierSet("==0.10.1").contains("0.10.1+gptoss")
    assert not SpecifierSet("==0.10.1+gptoss").contains("0.10.1")
    assert not SpecifierSet(">0.10.1").contains("0.10.1+gptoss")
    assert not SpecifierSet("<0.10.1").contains("0.10.1+gptoss")


def test_packaging_ranges_exclude_pre_releases_of_their_bound():
    # Why pre-releases are judged by their base version.
    assert not SpecifierSet(">=0.10.2,<0.11.1").contains("0.11.1rc4", prereleases=True)
    assert not SpecifierSet(">=0.11.1,<0.12.0").contains("0.11.1rc4", prereleases=True)


def test_launch_wheel_and_pypi_0_10_1_get_different_verdicts():
    assert not kernel_verdict("0.10.1+gptoss", "8.6").supported
    assert kernel_verdict("0.10.1", "8.6").supported


@pytest.mark.parametrize(
    "version,release_like",
    [
        ("0.11.1rc4", "0.11.1"),
        ("0.19.1rc1.dev379+g251c18d1f", "0.19.1"),
        ("0.10.2+cu126", "0.10.2"),
    ],
)
def test_pre_releases_and_local_builds_follow_their_release(version, release_like):
    got, expected = kernel_verdict(version, "9.0"), kernel_verdict(release_like, "9.0")
    assert (got.supported, got.moe_backend, got.attention_backend, got.env) == (
        expected.supported,
        expected.moe_backend,
        expected.attention_backend,
        expected.env,
    )
    assert got.notes  # says how the version was read


def test_leading_v_is_accepted():
    assert kernel_verdict("v0.24.0", "9.0") == kernel_verdict("0.24.0", "9.0")


# --- minimum driver -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "version,driver",
    [
        ("0.10.1+gptoss", "570.26"),
        ("0.10.1", "570.26"),
        ("0.10.1.1", "570.26"),
        ("0.11.0", "570.26"),
        ("0.11.2", "570.26"),
        ("0.12.0", "575.51.03"),
        ("0.16.0", "575.51.03"),
        ("0.19.1", "575.51.03"),
        ("0.20.0", "580.65.06"),
        ("0.24.0", "580.65.06"),
        ("0.33.0", "580.65.06"),
        ("0.10.2+cu126", "560.28.03"),
        ("0.11.0+cu129", "575.51.03"),
        ("0.10.0", None),
        ("0.34.0", None),
        ("garbage", None),
    ],
)
def test_min_driver_for(version, driver):
    assert min_driver_for(version) == driver


def test_min_driver_matches_the_verdict():
    for version in PYPI_RELEASES:
        assert kernel_verdict(version, "9.0").min_driver == min_driver_for(version)


def test_driver_ok_compares_numerically_not_as_text():
    ok, message = driver_ok("0.24.0", "580.159.04")  # the real H100 host's driver
    assert ok
    assert "580.159.04" in message and "580.65.06" in message


@pytest.mark.parametrize(
    "version,driver,expected",
    [
        ("0.24.0", "580.65.06", True),
        ("0.24.0", "580.65.5", False),
        ("0.24.0", "580.65", False),
        ("0.24.0", "581", True),
        ("0.12.0", "575.51.03", True),
        ("0.12.0", "575.51.02", False),
        ("0.11.0", "570.26", True),
        ("0.11.0", "570.26.0", True),
        ("0.11.0", "570.124.06", True),
        ("0.11.0", "565.57.01", False),
        ("0.10.1+gptoss", "535.230.02", False),
    ],
)
def test_driver_ok(version, driver, expected):
    ok, message = driver_ok(version, driver)
    assert ok is expected
    assert driver in message and min_driver_for(version) in message


def test_driver_too_old_names_the_fix():
    ok, message = driver_ok("0.24.0", "570.124.06")
    assert not ok
    assert "570.124.06" in message and "580.65.06" in message and "0.24.0" in message
    assert "upgrade the driver" in message
    assert "pin vLLM 0.11.2" in message  # the newest release an R570 driver can run


def test_driver_too_old_for_every_release():
    ok, message = driver_ok("0.12.0", "535.183.01")
    assert not ok
    assert "no vLLM release that serves gpt-oss runs on it" in message


@pytest.mark.parametrize("driver", ["", "n/a", "580.x", "[N/A]"])
def test_driver_ok_rejects_unreadable_driver(driver):
    ok, message = driver_ok("0.24.0", driver)
    assert not ok and "not a version number" in message


def test_driver_ok_with_unknown_vllm():
    ok, message = driver_ok("0.10.0", "580.159.04")
    assert not ok and "no minimum driver is known" in message


# --- the matrix ----------------------------------------------------------------------------


def test_groups_split_the_known_capabilities_exactly_once():
    listed = [cap for caps in ks.GROUPS.values() for cap in caps]
    assert sorted(listed) == sorted(KNOWN_CAPABILITIES) and len(listed) == len(set(listed))


def test_every_release_has_one_cell_per_group_and_no_other():
    assert list(ks.MATRIX) == [r.key for r in RELEASES]
    for release, cells in ks.MATRIX.items():
        assert set(cells) == set(ks.GROUPS), release


def test_every_cell_names_its_source():
    for cells in ks.MATRIX.values():
        for cell in cells.values():
            assert cell.source.strip() and cell.why.strip()


def test_rows_are_the_matrix_cells():
    for row in SUPPORT_TABLE:
        for cap in row.capabilities:
            cell = ks.MATRIX[row.release][ks.GROUP_OF[cap]]
            assert (cell.supported, cell.moe_backend, cell.source) == (row.supported, row.moe_backend, row.source)


def test_pre_ampere_and_thor_share_one_cell_in_every_release():
    assert all(cells["7.x"] is ks.BELOW_AMPERE and cells["11.0"] is ks.THOR for cells in ks.MATRIX.values())
