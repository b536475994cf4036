"""A PEP 517 build backend in the standard library alone, so that
`pip install ./sdk/python` works with no index to fetch setuptools and
wheel from. It builds a pure-Python wheel of the `credlet` package (and an
sdist) from the static [project] table of pyproject.toml."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import tarfile
import zipfile
from typing import Any, Dict, List, Optional, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "credlet"


def _project() -> Dict[str, Any]:
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        raw = f.read()
    try:
        import tomllib  # Python >= 3.11

        return tomllib.loads(raw.decode("utf-8"))["project"]
    except ImportError:
        pass
    # Python < 3.11: the [project] keys used here are plain strings.
    out: Dict[str, Any] = {}
    section = ""
    for line in raw.decode("utf-8").splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
            continue
        m = re.match(r'^([A-Za-z0-9_-]+)\s*=\s*"([^"]*)"$', line)
        if section == "[project]" and m:
            out[m.group(1)] = m.group(2)
    return out


def _metadata() -> Tuple[str, str, str]:
    """(name, version, METADATA text)."""
    p = _project()
    name, version = p["name"], p["version"]
    lines = [
        "Metadata-Version: 2.1",
        "Name: " + name,
        "Version: " + version,
        "Summary: " + p.get("description", ""),
        "Requires-Python: " + p.get("requires-python", ">=3.9"),
    ]
    for c in p.get("classifiers", []) if isinstance(p.get("classifiers"), list) else []:
        lines.append("Classifier: " + c)
    readme = p.get("readme")
    body = ""
    if readme:
        lines.append("Description-Content-Type: text/markdown")
        with open(os.path.join(ROOT, readme), encoding="utf-8") as f:
            body = f.read()
    return name, version, "\n".join(lines) + "\n\n" + body


def _package_files() -> List[str]:
    """The package's files, relative to ROOT: sources and py.typed."""
    out = []
    for dirpath, dirnames, filenames in os.walk(os.path.join(ROOT, PACKAGE)):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for fn in sorted(filenames):
            if fn.endswith(".py") or fn == "py.typed":
                out.append(os.path.relpath(os.path.join(dirpath, fn), ROOT))
    return out


def _dist_info(name: str, version: str) -> str:
    return "%s-%s.dist-info" % (re.sub(r"[-_.]+", "_", name), version)


def _write_wheel(wheel_directory: str, files: List[Tuple[str, bytes]]) -> str:
    name, version, metadata = _metadata()
    dist = _dist_info(name, version)
    files = files + [
        (dist + "/METADATA", metadata.encode("utf-8")),
        (dist + "/WHEEL", b"Wheel-Version: 1.0\nGenerator: credlet _build\nRoot-Is-Purelib: true\nTag: py3-none-any\n"),
    ]
    record = []
    for arc, data in files:
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode("ascii")
        record.append("%s,sha256=%s,%d" % (arc, digest, len(data)))
    record.append(dist + "/RECORD,,")
    files.append((dist + "/RECORD", ("\n".join(record) + "\n").encode("utf-8")))
    filename = "%s-%s-py3-none-any.whl" % (re.sub(r"[-_.]+", "_", name), version)
    with zipfile.ZipFile(os.path.join(wheel_directory, filename), "w", zipfile.ZIP_DEFLATED) as z:
        for arc, data in files:
            info = zipfile.ZipInfo(arc, date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, data)
    return filename


def _read(rel: str) -> bytes:
    with open(os.path.join(ROOT, rel), "rb") as f:
        return f.read()


def get_requires_for_build_wheel(config_settings: Optional[dict] = None) -> List[str]:
    return []


def get_requires_for_build_sdist(config_settings: Optional[dict] = None) -> List[str]:
    return []


get_requires_for_build_editable = get_requires_for_build_wheel


def build_wheel(wheel_directory: str, config_settings: Optional[dict] = None, metadata_directory: Optional[str] = None) -> str:
    return _write_wheel(wheel_directory, [(rel.replace(os.sep, "/"), _read(rel)) for rel in _package_files()])


def build_editable(wheel_directory: str, config_settings: Optional[dict] = None, metadata_directory: Optional[str] = None) -> str:
    # A .pth line puts the source folder on sys.path.
    return _write_wheel(wheel_directory, [(PACKAGE + "_editable.pth", (ROOT + "\n").encode("utf-8"))])


def build_sdist(sdist_directory: str, config_settings: Optional[dict] = None) -> str:
    name, version, metadata = _metadata()
    base = "%s-%s" % (name, version)
    rels = ["pyproject.toml", "README.md", os.path.join("_build", "backend.py")] + _package_files()
    filename = base + ".tar.gz"
    with tarfile.open(os.path.join(sdist_directory, filename), "w:gz", format=tarfile.PAX_FORMAT) as t:
        for arc, data in [(rel.replace(os.sep, "/"), _read(rel)) for rel in rels] + [("PKG-INFO", metadata.encode("utf-8"))]:
            info = tarfile.TarInfo(base + "/" + arc)
            info.size, info.mode, info.mtime = len(data), 0o644, 1577836800
            t.addfile(info, io.BytesIO(data))
    return filename
