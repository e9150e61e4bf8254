"""Fetch the installer pinned in requirements/uv.lock, checked against the lock's hashes, into DIR/uv.

For a machine whose own Python is not the locks' (SkyPilot's GPU images: Ubuntu 22.04, Python 3.10, often without
pip or venv): uv then provides the Python the locks were resolved for (cloud/setup.sh). Standard library only and
Python 3.8+, since it runs under whatever `python3` the image has. The wheel comes from the package index
(UV_INDEX_URL or PIP_INDEX_URL when set, a PEP 503 simple index, else PyPI's) and is refused unless its SHA-256 is
one of the lock's.

    python3 tools/fetch_uv.py .uv/bin
"""

import hashlib
import io
import os
import platform
import re
import sys
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

LOCK = Path(__file__).resolve().parents[1] / "requirements/uv.lock"


def pinned(lock: Path):
    """(version, set of sha256) of uv in the lock."""
    text = lock.read_text(encoding="utf-8")
    found = re.search(r"^uv==(\S+)((?:\s*\\\s*--hash=sha256:[0-9a-f]{64})+)", text, re.M)
    if not found:
        raise SystemExit(f"error: {lock}: no hashed uv==<version> pin; run `make lock`")
    return found.group(1), set(re.findall(r"sha256:([0-9a-f]{64})", found.group(2)))


def wheel_links(index: str, version: str):
    """(filename, url, sha256) of uv's wheels of that version on a PEP 503 simple index page."""
    page_url = index.rstrip("/") + "/uv/"
    local = page_url + "index.html" if page_url.startswith("file:") else page_url  # a folder index, as pip reads it
    with urllib.request.urlopen(local, timeout=60) as page:
        html = page.read().decode("utf-8", "replace")
    for href in re.findall(r'href="([^"]+)"', html):
        url = urllib.parse.urljoin(page_url, href.replace("&amp;", "&"))
        name = urllib.parse.unquote(url.split("#")[0].rsplit("/", 1)[-1])
        digest = re.search(r"sha256=([0-9a-f]{64})", url)
        if name.startswith(f"uv-{version}-") and name.endswith(".whl") and digest:
            yield name, url.split("#")[0], digest.group(1)


def main(argv) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(argv[0])
    version, hashes = pinned(LOCK)
    machine = platform.machine().lower()
    index = os.environ.get("UV_INDEX_URL") or os.environ.get("PIP_INDEX_URL") or "https://pypi.org/simple/"
    try:
        fits = [(name, url, digest) for name, url, digest in wheel_links(index, version)
                if digest in hashes and "manylinux" in name and machine in name]
    except OSError as exc:  # URLError included: no network, a wrong index URL
        print(f"error: cannot read uv's page on the package index {index}: {exc}", file=sys.stderr)
        return 2
    if not fits:
        print(f"error: no uv {version} wheel for {machine} Linux with a hash of {LOCK.name} on {index}",
              file=sys.stderr)
        return 2
    name, url, digest = fits[0]
    with urllib.request.urlopen(url, timeout=300) as response:
        data = response.read()
    if hashlib.sha256(data).hexdigest() != digest:  # the index said one hash, the bytes have another
        print(f"error: {name}: its SHA-256 is not the lock's; refusing it", file=sys.stderr)
        return 2
    with zipfile.ZipFile(io.BytesIO(data)) as wheel:
        binary = wheel.read(f"uv-{version}.data/scripts/uv")
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / ".uv.partial"
    tmp.write_bytes(binary)
    tmp.chmod(0o755)
    tmp.replace(out / "uv")
    print(f"uv {version} ({name}, sha256 checked) in {out / 'uv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
