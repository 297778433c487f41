"""What an image is made of: bytes above the base, per layer, per installed distribution.

``invoke docker.size`` (docs/containers.md#image-size) builds nothing: it reads the image's
history through the Docker SDK (what each of our layers adds above the base image) and runs
``PROBE`` once inside the image (SDK, hardened, no network) with the image's own Python. The probe
walks site-packages, gives every file to the distribution whose ``RECORD`` lists it (bytecode in
``__pycache__`` goes to the distribution of its source; files no RECORD lists, to the distribution
owning their top-level directory), sorts each file into a kind (bytecode, source, shared objects,
stubs, tests, docs, other), and reports the shared objects that still carry a symbol table or debug
sections (what ``strip --strip-unneeded`` removes). Sizes are apparent file sizes, hard links once,
in bytes; the image's own size is what the engine reports (uncompressed).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ops.docker import commands
from ops.docker import engine as docker_engine

MB = 1_000_000

KINDS = ("bytecode", "source", "shared objects", "stubs", "tests", "docs", "other")
HEADERS = {"bytecode": ".pyc", "source": ".py", "shared objects": ".so", "stubs": ".pyi"}

# Paths outside site-packages worth a line of their own, when the image has them.
OTHER_PATHS = ("/opt/app", "/usr/lib/postgresql")

# Runs inside the image as `python3 -c PROBE PATH...`; prints one JSON document. Standard library
# only, Python 3.8+.
PROBE = r"""
import json, os, struct, sys, sysconfig
from importlib import metadata

site = sysconfig.get_path("purelib")

def kind(rel):
    parts = rel.split("/")
    name = parts[-1]
    if {"tests", "test"} & set(parts[1:-1]):
        return "tests"
    if name.endswith(".pyc"):
        return "bytecode"
    if name.endswith(".py"):
        return "source"
    if name.endswith(".so") or ".so." in name:
        return "shared objects"
    if name.endswith(".pyi"):
        return "stubs"
    if {"doc", "docs", "examples"} & set(parts[:-1]) or name.endswith((".md", ".rst")):
        return "docs"
    return "other"

def unstripped(path):
    # True when an ELF file has a .symtab or .debug_* section (strip --strip-unneeded removes them).
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            if head[:4] != b"\x7fELF" or head[4] != 2:
                return False
            end = "<" if head[5] == 1 else ">"
            shoff, = struct.unpack(end + "Q", head[40:48])
            shentsize, shnum, shstrndx = struct.unpack(end + "HHH", head[58:64])
            f.seek(shoff)
            table = f.read(shentsize * shnum)
            def section(i):
                return struct.unpack(end + "IIQQQQ", table[i * shentsize:i * shentsize + 40])
            _, _, _, _, str_off, str_size = section(shstrndx)
            f.seek(str_off)
            names = f.read(str_size)
            for i in range(shnum):
                name_off = section(i)[0]
                name = names[name_off:names.index(b"\0", name_off)]
                if name == b".symtab" or name.startswith(b".debug"):
                    return True
    except (OSError, ValueError, struct.error, IndexError):
        return False
    return False

by_file, by_top = {}, {}
for dist in metadata.distributions(path=[site]):
    name = dist.metadata["Name"]
    for f in dist.files or []:
        rel = str(f)
        if rel.startswith(".."):
            continue
        by_file.setdefault(rel, name)
        if "/" in rel:
            by_top.setdefault(rel.split("/")[0], name)

def owner(rel):
    if rel in by_file:
        return by_file[rel]
    if rel.endswith(".pyc") and rel[:-1] in by_file:  # compileall -b, source removed
        return by_file[rel[:-1]]
    parts = rel.split("/")
    if len(parts) >= 2 and parts[-2] == "__pycache__":
        source = "/".join(parts[:-2] + [parts[-1].split(".")[0] + ".py"])
        if source in by_file:
            return by_file[source]
    if len(parts) > 1 and parts[0] in by_top:
        return by_top[parts[0]]
    return "(not recorded)"

seen = set()
def walk(root):
    for directory, _dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(directory, name)
            st = os.lstat(path)
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            yield path, st.st_size

dists, strippable, site_total = {}, [], 0
for path, size in walk(site):
    rel = os.path.relpath(path, site)
    k = kind(rel)
    entry = dists.setdefault(owner(rel), {})
    entry[k] = entry.get(k, 0) + size
    site_total += size
    if k == "shared objects" and unstripped(path):
        strippable.append([rel, size])

def total(root):
    return sum(size for _path, size in walk(root)) if os.path.isdir(root) else None

seen.clear()
paths = {"site-packages": site_total}
prefix = sys.prefix
if prefix != sys.base_prefix:
    for _ in walk(site):
        pass  # marks site-packages seen: the venv's line counts the rest of the venv only
    paths[prefix + " (outside site-packages)"] = total(prefix)
for extra in sys.argv[1:]:
    size = total(extra)
    if size is not None:
        paths[extra] = size
print(json.dumps({"site": site, "python": sys.version.split()[0], "distributions": dists,
                  "paths": paths, "strippable": strippable}))
"""


@dataclass(frozen=True)
class Layer:
    """One layer of ours (above the base image)."""

    size: int
    created_by: str


@dataclass(frozen=True)
class Distribution:
    """One installed distribution's bytes in site-packages, by kind."""

    name: str
    kinds: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.kinds.values())


@dataclass(frozen=True)
class SizeReport:
    """Everything ``invoke docker.size`` prints for one image."""

    size: commands.ImageSize
    layers: list[Layer]
    site: str
    distributions: list[Distribution]  # largest first
    paths: dict[str, int]  # site-packages and other big paths
    strippable: list[tuple[str, int]] = field(default_factory=list)

    @property
    def site_total(self) -> int:
        return self.paths["site-packages"]

    def kind_total(self, kind: str) -> int:
        return sum(d.kinds.get(kind, 0) for d in self.distributions)


def layers_above_base(ref: str, base_ref: str) -> list[Layer]:
    """The image's history entries that are not the base's (newest first), with their sizes."""
    api = docker_engine.client()
    try:
        history = api.images.get(ref).history()
        base_history = api.images.get(base_ref).history()
    finally:
        api.close()
    ours = history[: len(history) - len(base_history)]
    return [Layer(int(h.get("Size") or 0), str(h.get("CreatedBy") or "")) for h in ours]


def probe(ref: str, paths: Sequence[str] = OTHER_PATHS) -> dict[str, Any]:
    """Run ``PROBE`` inside ``ref`` (hardened, no network) and return what it printed."""
    code, output = commands.run_to_completion(
        ref,
        ["-c", PROBE, *paths],
        entrypoint=["python3"],
        network_disabled=True,
        stderr=False,
        **commands.HARDENED,
    )
    if code != 0:
        from invoke.exceptions import Exit

        raise Exit(f"the size probe failed in {ref} (exit {code}):\n{output[-2000:]}", code=1)
    return dict(json.loads(output))


def report(ref: str, base_ref: str) -> SizeReport:
    """Inspect the built image ``ref`` against ``base_ref``; builds nothing."""
    size = commands.image_size(ref, base_ref)
    found = probe(ref)
    distributions = sorted(
        (Distribution(name, dict(kinds)) for name, kinds in found["distributions"].items()),
        key=lambda d: (-d.total, d.name.lower()),
    )
    return SizeReport(
        size=size,
        layers=layers_above_base(ref, base_ref),
        site=str(found["site"]),
        distributions=distributions,
        paths={str(k): int(v) for k, v in found["paths"].items()},
        strippable=[(str(p), int(s)) for p, s in found["strippable"]],
    )


def _mb(n: int) -> str:
    return f"{n / MB:.1f}"


def render(reports: Iterable[SizeReport], *, top: int = 25) -> None:
    """Print each report as rich tables (layers, distributions, other paths)."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for rep in reports:
        console.print(
            f"[bold]{rep.size.ref}[/bold]: {_mb(rep.size.total)} MB total, "
            f"[bold]{_mb(rep.size.above_base)} MB above the base[/bold] "
            f"({_mb(rep.size.base)} MB); site-packages {_mb(rep.site_total)} MB ({rep.site})"
        )
        layers = Table(title="layers above the base (MB)", title_justify="left")
        layers.add_column("MB", justify="right")
        layers.add_column("created by")
        for layer in rep.layers:
            if layer.size:
                layers.add_row(_mb(layer.size), layer.created_by[:100])
        console.print(layers)

        shown = rep.distributions[:top] if top > 0 else rep.distributions
        rest = rep.distributions[len(shown) :]
        table = Table(title="site-packages by distribution (MB)", title_justify="left")
        table.add_column("distribution", no_wrap=True)
        table.add_column("total", justify="right")
        table.add_column("%", justify="right")
        for kind in KINDS:
            table.add_column(HEADERS.get(kind, kind), justify="right")
        rows = [(d.name, d.kinds, d.total) for d in shown]
        if rest:
            merged: dict[str, int] = {}
            for d in rest:
                for kind, n in d.kinds.items():
                    merged[kind] = merged.get(kind, 0) + n
            rows.append((f"({len(rest)} more)", merged, sum(merged.values())))
        rows.append(("site-packages", {k: rep.kind_total(k) for k in KINDS}, rep.site_total))
        for name, kinds, total in rows:
            share = f"{100 * total / rep.site_total:.0f}" if rep.site_total else "-"
            table.add_row(
                name, _mb(total), share, *(_mb(kinds[k]) if kinds.get(k) else "" for k in KINDS)
            )
        console.print(table)

        other = Table(title="other big paths (MB)", title_justify="left")
        other.add_column("path")
        other.add_column("MB", justify="right")
        for path, n in rep.paths.items():
            if path != "site-packages":
                other.add_row(path, _mb(n))
        stripped = sum(n for _p, n in rep.strippable)
        other.add_row(
            f"shared objects with symbols or debug sections ({len(rep.strippable)})", _mb(stripped)
        )
        console.print(other)
