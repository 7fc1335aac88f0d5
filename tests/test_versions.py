"""The one version type: vLLM releases, NVIDIA drivers and CUDA versions as packaging Versions."""

from __future__ import annotations

import pytest

from deploy.kernel_support import driver_ok
from deploy.versions import Version, driver_version, vllm_version, vllm_version_or_error


@pytest.mark.parametrize(
    ("newer", "older"),
    [
        ("580.159.04", "580.65.06"),  # part by part, not as text ("159" < "65" as text)
        ("580.65.06", "575.51.03"),
        ("570.26.1", "570.26"),
        ("1000.0", "999.99.99"),
    ],
)
def test_driver_versions_compare_numerically(newer, older):
    assert driver_version(newer) > driver_version(older)


def test_driver_versions_pad_missing_parts():
    assert driver_version("570.26") == driver_version("570.26.0")
    assert driver_version("580.65.06") == Version("580.65.6")


@pytest.mark.parametrize("bad", ["", "580.x", "N/A", "[Not Supported]", "580.65.06-1", "v580", "1.0rc1"])
def test_driver_versions_reject_anything_but_dotted_numbers(bad):
    assert driver_version(bad) is None


@pytest.mark.parametrize(
    ("text", "public", "local"),
    [("0.24.0", "0.24.0", None), ("v0.24.0", "0.24.0", None), (" 0.10.1+gptoss ", "0.10.1", "gptoss"),
     ("0.11.1rc4", "0.11.1rc4", None), ("0.19.1rc1.dev379+g251c18d1f", "0.19.1rc1.dev379", "g251c18d1f")],
)
def test_vllm_versions(text, public, local):
    v = vllm_version(text)
    assert v is not None and v.public == public and v.local == local


def test_bad_vllm_version_names_the_flag():
    assert vllm_version("latest") is None
    with pytest.raises(ValueError, match=r"--vllm: 'latest' is not a version such as 0.10.1\+gptoss"):
        vllm_version_or_error("latest")


def test_driver_check_uses_the_same_comparison():
    # 0.24.0 is a CUDA 13.0 wheel: minimum 580.65.06
    assert driver_ok("0.24.0", "580.159.04")[0]
    assert driver_ok("0.24.0", "580.65.06")[0]
    assert not driver_ok("0.24.0", "580.65.05")[0]
    assert not driver_ok("0.24.0", "575.57.08")[0]
