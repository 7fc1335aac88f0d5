"""Write the docs pages' tables from the data tables: `python -m deploy.docs` (`--check`: compare only).

docs/kernel-support.md and docs/platforms.md hold prose written by people and blocks written
here, between `<!-- BEGIN generated: NAME -->` and `<!-- END generated: NAME -->`. Change the
data (deploy/kernel_support.py, deploy/platform_data.py), then run this; tests/test_docs.py fails
while a committed page differs from what the tables give. Pure Python, no pyinfra.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path

from deploy import kernel_support as ks
from deploy import platform_data as pd

ROOT = Path(__file__).resolve().parent.parent

# Backend names as the summary shows them (the full names are in the cells below it).
SHORT = {
    ks.MARLIN: "Marlin",
    ks.TRITON: "Triton",
    ks.FI_BF16: "FlashInfer BF16",
    ks.FI_MXFP8: "FlashInfer MXFP8",
    ks.FA3: "FA3",
    ks.TRITON_ATTN: "Triton",
    ks.FI_ATTN: "FlashInfer",
    "FLASHINFER (MXFP4 MoE on Blackwell FP4 tensor cores)": "FlashInfer",
    "FLASHINFER (XQA decode) if FlashInfer's cubins are available, else TRITON_ATTN": "FlashInfer XQA or Triton",
}


def _cell_text(cell: ks.Cell) -> str:
    if not cell.supported:
        return "no"
    moe, attention = cell.moe_backend or "", cell.attention_backend or ""
    text = f"{SHORT.get(moe, moe)} + {SHORT.get(attention, attention)}"
    extras = [f"`{k}={v}`" for k, v in cell.env]
    if cell.pip_extras:
        extras.append(f"`vllm[{','.join(cell.pip_extras)}]`")
    return text + (" (" + ", ".join(extras) + ")" if extras else "")


def _release_label(release: ks.Release) -> str:
    if release.local:
        return release.key
    oldest = next(s.version for s in ks.SpecifierSet(release.specifier) if s.operator == ">=")
    return oldest if oldest == release.newest else f"{oldest} – {release.newest}"


def kernel_summary() -> str:
    groups = list(ks.GROUPS)
    head = "| vLLM | " + " | ".join(" / ".join(ks.GROUPS[g]) for g in groups) + " |"
    lines = [head, "|---" * (len(groups) + 1) + "|"]
    lines.append(f"| < {ks.FIRST_GPT_OSS} | " + " | ".join("no" for _ in groups) + " |")
    for release in ks.RELEASES:
        cells = ks.MATRIX[release.key]
        lines.append(f"| {_release_label(release)} | " + " | ".join(_cell_text(cells[g]) for g in groups) + " |")
    lines.append(f"| > {ks.NEWEST_CHECKED} | unknown: not supported until a row is added" + " |" * len(groups))
    lines.append("")
    lines.append('"X + Y" is MoE backend + attention backend; in brackets what the service sets or installs. GPUs: '
                 + "; ".join(f"{cap} {name}" for cap, name in ks.KNOWN_CAPABILITIES.items()) + ".")
    return "\n".join(lines)


def kernel_releases() -> str:
    lines = ["| range | specifier | newest | torch pinned | vLLM kernels built with | minimum driver | source |",
             "|---|---|---|---|---|---|---|"]
    for r in ks.RELEASES:
        spec = f"`{r.specifier}` +{r.local}" if r.local else f"`{r.specifier}`"
        cells = (_release_label(r), spec, r.newest, r.torch, f"CUDA {r.cuda}", r.min_driver, r.source)
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Minimum driver per CUDA build (`CUDA_MIN_DRIVER`, NVIDIA's \"CUDA Toolkit and Corresponding Driver "
                 "Versions\" table, GA releases): "
                 + ", ".join(f"{cuda} ≥ {driver}" for cuda, driver in ks.CUDA_MIN_DRIVER.items()) + ".")
    return "\n".join(lines)


def kernel_cells() -> str:
    out = []
    for release in ks.RELEASES:
        out.append(f"### {release.key}")
        out.append("")
        for row in ks.SUPPORT_TABLE:
            if row.release != release.key:
                continue
            caps = ", ".join(row.capabilities)
            if row.supported:
                out.append(f"- **{caps}**: {row.moe_backend} + {row.attention_backend}: {row.why}.")
            else:
                out.append(f"- **{caps}**: unsupported: {row.why}. Remedy: {row.remedy}.")
            if row.env:
                out.append("  Sets " + ", ".join(f"`{k}={v}`" for k, v in row.env) + ".")
            if row.pip_extras:
                out.append(f"  Installs `vllm[{','.join(row.pip_extras)}]`.")
            out.extend(f"  Note: {note}." for note in row.notes)
            out.append(f"  Source: {row.source}.")
        out.append("")
    return "\n".join(out).rstrip()


def platform_repos() -> str:
    lines = ["| distribution (`ID`) | version | NVIDIA repository | packages via | architectures | signing key | also "
             "| source |",
             "|---|---|---|---|---|---|---|---|"]
    for repo in (*pd.CUDA_REPOS, pd.WSL_REPO):
        also = []
        if repo.needs_contrib:
            also.append("Debian `contrib` component")
        if repo.epel:
            also.append(f"EPEL (`{repo.epel}`)")
        if repo is pd.WSL_REPO:
            also.append("WSL2 only, toolkit only: never a driver")
        version = "any" if repo.major == "*" else repo.major
        arches = ", ".join(pd.REPO_ARCH[a] for a in repo.arches)
        lines.append(f"| {', '.join(repo.distros)} | {version} | `{repo.repo_dir}` | {repo.family} | {arches} | "
                     f"`{repo.key_file}` | {'; '.join(also) or '-'} | {repo.source} |")
    lines.append("")
    lines.append(f"Repository URL: `{pd.CUDA_REPO_BASE}/<repository>/<architecture>/` (`cuda_repo_url` replaces it).")
    return "\n".join(lines)


def platform_packages() -> str:
    rows = [
        ("driver, apt (open / proprietary kernel modules)",
         f"`{pd.APT_PINNING_PACKAGE}` first, then "
         + " / ".join(f"`{' '.join(p)}`" for p in pd.APT_DRIVER_PACKAGES.values())),
        ("driver, dnf (open / proprietary)", " / ".join(f"module `{m}`" for m in pd.DNF_DRIVER_MODULE.values())),
        ("kernel headers for the running kernel",
         "; ".join(f"{fam}: " + ", ".join(f"`{p}`" for p in pk) for fam, pk in pd.HEADER_PACKAGES.items())),
        ("apt prerequisites", ", ".join(f"`{p}`" for p in pd.APT_PREREQUISITES)),
        ("nouveau blacklist, then", f"`{pd.NOUVEAU_BLACKLIST_FILE}`; "
         + "; ".join(f"{fam}: `{cmd}`" for fam, cmd in pd.INITRAMFS_COMMAND.items())),
        ("CUDA toolkit", f"`{pd.TOOLKIT_PACKAGE}` into `{pd.TOOLKIT_ROOT}`, paths in `{pd.PROFILE_SCRIPT}`; versions "
         + ", ".join(f"{v} (driver ≥ {ks.CUDA_MIN_DRIVER[v]})" for v in pd.TOOLKIT_VERSIONS)),
        ("WSL2: Linux driver packages refused", ", ".join(f"`{p}*`" for p in pd.WSL_FORBIDDEN_PACKAGE_PREFIXES)),
    ]
    lines = ["| what | packages / files |", "|---|---|"] + [f"| {a} | {b} |" for a, b in rows]
    lines += ["", "| chip prefix (lspci) | architecture | first compute capability | open kernel modules |",
              "|---|---|---|---|"]
    lines += [f"| {a.prefix} | {a.name} | {a.capability} | {a.open_modules} |" for a in pd.GPU_ARCHS]
    return "\n".join(lines)


PAGES: dict[str, dict[str, Callable[[], str]]] = {
    "docs/kernel-support.md": {"summary": kernel_summary, "releases": kernel_releases, "cells": kernel_cells},
    "docs/platforms.md": {"repositories": platform_repos, "packages": platform_packages},
}


def render_page(text: str, blocks: dict[str, Callable[[], str]], page: str = "") -> str:
    """The page with every generated block replaced by what the tables give now."""
    for name, make in blocks.items():
        pattern = re.compile(rf"(<!-- BEGIN generated: {name} [^\n]*-->\n).*?(<!-- END generated: {name} -->)", re.S)
        if not pattern.search(text):
            raise ValueError(f"{page}: no '<!-- BEGIN generated: {name} ... -->' / '<!-- END generated: {name} -->'")
        text = pattern.sub(lambda m, make=make: m.group(1) + make() + "\n" + m.group(2), text)
    return text


def stale_pages(root: Path = ROOT) -> list[str]:
    """Pages whose committed text differs from what the tables give."""
    return [page for page, blocks in PAGES.items()
            if (root / page).read_text() != render_page((root / page).read_text(), blocks, page)]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["--check"]:
        stale = stale_pages()
        for page in stale:
            print(f"{page} differs from the tables: run python -m deploy.docs", file=sys.stderr)
        return 1 if stale else 0
    if argv:
        print("usage: python -m deploy.docs [--check]", file=sys.stderr)
        return 2
    for page, blocks in PAGES.items():
        path = ROOT / page
        path.write_text(render_page(path.read_text(), blocks, page))
        print(f"wrote {page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
