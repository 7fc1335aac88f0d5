"""Fact parsers fed with recorded outputs of real tools (tests/fixtures/README.md says where from)."""

from pathlib import Path

from pyinfra.facts.server import OsRelease

from deploy.host_facts import RuntimeFacts, parse_gpu_csv, parse_gpu_report, platform_from, wsl_kind

FIX = Path(__file__).parent / "fixtures" / "gpu" / "h100-80gb-hbm3"


def test_h100_query_csv_with_units():
    lines = (FIX / "query.csv").read_text().splitlines()[1:]  # the header line is skipped
    (gpu,) = parse_gpu_csv(lines)
    assert (gpu.index, gpu.name, gpu.compute_capability) == (0, "NVIDIA H100 80GB HBM3", "9.0")
    assert (gpu.memory_total_mib, gpu.memory_used_mib, gpu.memory_free_mib) == (81559, 0, 81079)
    assert gpu.driver_version == "580.159.04" and gpu.uuid.startswith("GPU-ea7756e3")


def test_report_from_tagged_output_with_cuda_version_and_processes():
    smi = (FIX / "nvidia-smi.txt").read_text()
    cuda_line = [line for line in smi.splitlines() if "CUDA Version" in line][0]
    output = ["STATE: rc0",
              "GPU: 0, NVIDIA H100 80GB HBM3, GPU-ea7756e3-6439-c532-dae7-fb445807a043, 9.0, 81559, 1536, 79543, "
              "580.159.04, Disabled",
              "CUDA: " + cuda_line[cuda_line.index("CUDA Version"):].split("|")[0].strip(),
              "PROC: GPU-ea7756e3-6439-c532-dae7-fb445807a043, 4242, python3, 1536"]
    report = parse_gpu_report(output)
    assert report.state == "ok" and report.cuda_version == "13.0" and report.driver_version == "580.159.04"
    assert report.gpus[0].mig_mode == "Disabled"
    assert report.processes == [{"gpu_uuid": "GPU-ea7756e3-6439-c532-dae7-fb445807a043", "pid": 4242,
                                 "name": "python3", "used_mib": 1536}]
    # another process's memory is taken; our own server's (pid in the unit's cgroup) is ours to replan
    assert report.free_for_plan_mib(report.gpus[0]) == 79543
    report.own_pids = {4242}
    assert report.free_for_plan_mib(report.gpus[0]) == 79543 + 1536


def test_no_driver_and_broken_driver_are_facts_not_crashes():
    assert parse_gpu_report(["STATE: absent"]).state == "no-driver"
    # what nvidia-smi prints when the kernel module is not loaded (e.g. after a driver upgrade, before reboot)
    broken = parse_gpu_report(["STATE: rc9", "GPU: NVIDIA-SMI has failed because it couldn't communicate with the "
                               "NVIDIA driver. Make sure that the latest NVIDIA driver is installed and running."])
    assert broken.state == "error" and "couldn't communicate" in broken.error and broken.gpus == []


def test_wsl_kinds_from_kernel_release():
    # kernel release formats as Microsoft documents them (learn.microsoft.com/windows/wsl/compare-versions)
    assert wsl_kind("5.15.167.4-microsoft-standard-WSL2", "") == "wsl2"
    assert wsl_kind("4.4.0-19041-Microsoft", "Linux version 4.4.0-19041-Microsoft") == "wsl1"
    assert wsl_kind("6.8.0-49-generic", "Linux version 6.8.0-49-generic (buildd@lcy02)") == "native"


def test_platform_from_pyinfra_facts_and_our_runtime_probe():
    # /etc/os-release of the lent H100 (Ubuntu 24.04.3), read by pyinfra's own OsRelease
    os_release = OsRelease().process(['PRETTY_NAME="Ubuntu 24.04.3 LTS"', 'NAME="Ubuntu"', 'VERSION_ID="24.04"',
                                      "ID=ubuntu", "ID_LIKE=debian"])
    runtime = RuntimeFacts().process(["PROCVERSION=Linux version 6.18.44", "PID1=bash", "MemAvailable=120000000",
                                      "PYTHON=3.12.3"])
    p = platform_from(os_release, "6.18.44-fc-v310-gpu\n", "x86_64", 128000, runtime)
    assert (p.distro, p.version, p.like, p.pretty) == ("ubuntu", "24.04", "debian", "Ubuntu 24.04.3 LTS")
    assert (p.kind, p.pid1, p.python, p.arch, p.kernel) == ("native", "bash", "3.12.3", "x86_64", "6.18.44-fc-v310-gpu")
    assert (p.mem_total_kib, p.mem_available_kib) == (128000 * 1024, 120000000)


def test_runtime_probe_without_python_or_meminfo():
    r = RuntimeFacts().process(["PROCVERSION=", "PID1=systemd", "PYTHON="])
    assert (r.pid1, r.python, r.mem_available_kib) == ("systemd", None, 0)


def test_installed_lines():
    from deploy.host_facts import parse_installed

    got = parse_installed(["VENV=/opt/vllm/venvs/vllm-0.24.0", "VLLM=0.24.0"])
    assert (got.vllm, got.active_venv) == ("0.24.0", "/opt/vllm/venvs/vllm-0.24.0")
    assert parse_installed(["VENV=", "VLLM="]) == parse_installed([])


def test_nvml_reading_of_the_real_h100_takes_precedence_for_planning():
    import json

    from deploy.host_facts import NvmlFacts

    recorded = (FIX / "nvml.json").read_text()  # deploy/nvml_probe.py on the lent H100, 2026-11-23
    nvml = NvmlFacts().process(recorded.splitlines())
    assert [(g.uuid, g.total_bytes, g.free_mib, g.process_bytes) for g in nvml] == [
        ("GPU-52a6cbf7-be65-a7f0-53ab-f746979b5545", 85520809984, 81079, {})]
    assert NvmlFacts().process([]) is None and NvmlFacts().process(["not json"]) is None
    assert NvmlFacts().process(['{"error": "NVMLError_DriverNotLoaded: Driver Not Loaded"}']) is None
    gpu = parse_gpu_csv(["0, NVIDIA H100 80GB HBM3, GPU-52a6cbf7-be65-a7f0-53ab-f746979b5545, 9.0, 81559, 900, 80179, "
                         "580.159.04, Disabled"])[0]
    report = parse_gpu_report(["STATE: rc0"])
    report.gpus = [gpu]
    held = json.loads(recorded)
    held["gpus"][0]["free_mib"] = 80179
    held["gpus"][0]["processes"] = [{"pid": 77, "used_bytes": 600 * 2**20}, {"pid": 78, "used_bytes": None},
                                    {"pid": 77, "used_bytes": 300 * 2**20}]  # one pid twice, as under MIG
    report.nvml, report.own_pids = NvmlFacts().process([json.dumps(held)]), {77, 78}
    assert report.free_for_plan_mib(gpu) == 81079  # our own server's 900 MiB count as free to replan
