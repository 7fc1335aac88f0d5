"""Only the platform steps of deploy.py (driver, CUDA toolkit), for a host that must not be changed
otherwise: `pyinfra -y INVENTORY bench/h100/platform_steps.py` (used on the lent H100)."""

from pyinfra import host

from deploy.cuda_toolkit import cuda_toolkit
from deploy.driver import nvidia_driver
from deploy.host_facts import GpuFacts, host_platform
from deploy.run import inventory_settings

s = inventory_settings()[host.name]
platform = host_platform()
gpu = host.get_fact(GpuFacts, service=s.service_name)
driver = nvidia_driver(s, platform, gpu)
print(f"[{host.name}] driver: {driver.action}: {driver.reason}")
if driver.action == "none":
    plan = cuda_toolkit(s, platform, gpu, driver)
    print(f"[{host.name}] toolkit: {plan.action}: {plan.reason}")
