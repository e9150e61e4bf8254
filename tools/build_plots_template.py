"""Build assets/dvc_plots_offline.html: DVC's plots page with vega, vega-lite and vega-embed inlined.

DVC's default page loads those three scripts from a CDN, so `dvc plots show/diff` draws a blank page offline.
.dvc/config points `plots.html_template` at the committed output of this script. Re-run it (needs npm and the
npm registry) to move to newer builds:  python tools/build_plots_template.py
"""

import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

# The majors DVC's own page pins (dvc_render.vega.VegaRenderer.SCRIPTS): its specs are vega-lite v5.
PACKAGES = {"vega": "5", "vega-lite": "5", "vega-embed": "6"}
OUT = Path(__file__).resolve().parents[1] / "assets" / "dvc_plots_offline.html"

PAGE = """<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <meta charset="utf-8">
    <title>DVC Plot</title>
    <!-- Inlined by tools/build_plots_template.py: @VERSIONS@. Licences: BSD-3-Clause (see each package). -->
@SCRIPTS@
    <style>
        table { border-spacing: 15px; }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


def fetch_build(workdir: Path, name: str, major: str) -> tuple[str, str]:
    """npm-pack one package and return (version, its minified UMD build)."""
    tgz = subprocess.run(["npm", "pack", "--silent", f"{name}@{major}"], cwd=workdir, check=True,
                         capture_output=True, text=True).stdout.strip().splitlines()[-1]
    with tarfile.open(workdir / tgz) as tar:
        tar.extractall(workdir / name, filter="data")
    version = tgz.removeprefix(f"{name}-").removesuffix(".tgz")
    code = (workdir / name / "package" / "build" / f"{name}.min.js").read_text(encoding="utf-8")
    if "</script" in code:  # would end the inline <script> element early
        raise SystemExit(f"{name} {version}: build contains '</script', cannot inline it")
    return version, code


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        builds = {name: fetch_build(Path(tmp), name, major) for name, major in PACKAGES.items()}
    scripts = "\n".join(f"    <script>/* {n} {v} */\n{code}\n    </script>" for n, (v, code) in builds.items())
    versions = ", ".join(f"{n} {v}" for n, (v, _) in builds.items())
    # DVC fills {plot_divs} and {refresh_tag}; no {scripts} placeholder, so it adds no CDN <script> tags.
    page = PAGE.replace("@VERSIONS@", versions).replace("@SCRIPTS@", scripts)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(page, encoding="utf-8")
    print(f"wrote {OUT} ({OUT.stat().st_size // 1024} KiB): {versions}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
