"""Merges the jars of a folder into one jar: the Beam Flink job server's classpath as one file.

    python deploy/flink/one_jar.py LIB_DIR OUT.jar

Why: Beam's Flink job server ships its own classpath to the Flink cluster with every job (the
portable runner's ``detectClassPathResourcesToStage``), one blob per classpath entry. With the
~160 jars Maven resolves, the upload of those blobs took ~13 s of every job's start (measured:
docs/benchmarks.md, issue 34); as one 160 MB file it takes ~1 s. Beam's own released job server is
one shaded jar for the same reason.

Rules (what a shading plugin does with no relocation): the jars are read in name order and the
first entry of a path wins; ``META-INF/services/*`` files are concatenated (every provider kept);
jar signatures and the jars' manifests and indexes are dropped; the new manifest marks the jar
Multi-Release (some dependencies keep Java 9+ classes under ``META-INF/versions``). Written to a
temporary file and renamed, so a killed merge leaves no half jar. Standard library only.
"""

from __future__ import annotations

import os
import re
import sys
import zipfile

SIGNATURE = re.compile(r"META-INF/[^/]+\.(SF|RSA|DSA|EC)$", re.IGNORECASE)
DROPPED = {"META-INF/MANIFEST.MF", "META-INF/INDEX.LIST"}
SERVICES = "META-INF/services/"
MANIFEST = "Manifest-Version: 1.0\nMulti-Release: true\nCreated-By: mnist_batch deploy/flink/one_jar.py\n\n"


def merge(jars: list[str], out: str) -> int:
    """Writes ``jars`` merged into ``out``; returns the number of entries written."""
    seen: set[str] = set()
    services: dict[str, list[bytes]] = {}
    tmp = f"{out}.tmp{os.getpid()}"
    try:
        with zipfile.ZipFile(tmp, "w") as dst:
            dst.writestr("META-INF/MANIFEST.MF", MANIFEST)
            for jar in jars:
                with zipfile.ZipFile(jar) as src:
                    for info in src.infolist():
                        name = info.filename
                        if name.endswith("/") or name.upper() in DROPPED or SIGNATURE.match(name):
                            continue
                        if name.startswith(SERVICES):
                            services.setdefault(name, []).append(src.read(info).rstrip(b"\n"))
                        elif name not in seen:
                            seen.add(name)
                            dst.writestr(info, src.read(info), compress_type=info.compress_type)
            for name, parts in services.items():
                dst.writestr(name, b"\n".join(parts) + b"\n", compress_type=zipfile.ZIP_DEFLATED)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return len(seen) + len(services) + 1


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: one_jar.py LIB_DIR OUT.jar", file=sys.stderr)
        return 2
    lib, out = argv
    jars = sorted(os.path.join(lib, n) for n in os.listdir(lib) if n.endswith(".jar"))
    if not jars:
        print(f"one_jar.py: no jars in {lib}", file=sys.stderr)
        return 1
    entries = merge(jars, out)
    print(f"{len(jars)} jars -> {out} ({entries:,} entries, {os.path.getsize(out) / 1e6:.0f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
