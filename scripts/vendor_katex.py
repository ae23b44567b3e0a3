"""Vendor KaTeX into docs/assets/katex so the documentation renders its mathematics offline.

    python scripts/vendor_katex.py 0.16.22

Run by hand when updating KaTeX (it needs npm and the npm registry); the build never fetches
anything. Copies dist/katex.min.js, dist/katex.min.css, the .woff2 fonts and the license of the
npm package ``katex``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "docs" / "assets" / "katex"


def main(argv: list[str]) -> int:
    version = argv[0] if argv else "0.16.22"
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["npm", "pack", f"katex@{version}"], cwd=tmp, check=True,
                       capture_output=True)
        with tarfile.open(next(Path(tmp).glob("katex-*.tgz"))) as archive:
            archive.extractall(tmp, filter="data")
        package = Path(tmp) / "package"
        (TARGET / "fonts").mkdir(parents=True, exist_ok=True)
        for name in ("katex.min.js", "katex.min.css"):
            shutil.copy(package / "dist" / name, TARGET / name)
        for font in (package / "dist" / "fonts").glob("*.woff2"):
            shutil.copy(font, TARGET / "fonts" / font.name)
        shutil.copy(package / "LICENSE", TARGET / "LICENSE")
    print(f"vendored KaTeX {version} into {TARGET}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
