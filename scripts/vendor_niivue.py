"""Vendor NiiVue's browser bundle into the package (run by hand, never at install).

Fetches ``@niivue/niivue@VERSION`` with ``npm pack``, takes ``dist/niivue.umd.js``
(one self-contained file: a UMD wrapper that defines ``window.niivue`` when loaded by a
classic ``<script>``; no imports, no workers, no WebAssembly), checks its sha256 and
writes it with the licence and a record of where it came from into
``src/brainlrp/report/vendor/``. The report inlines that file, so the package needs
neither npm nor the network after this.

Usage: ``python scripts/vendor_niivue.py`` (needs ``npm`` and the npm registry). To
move to another version, change ``VERSION`` and ``SHA256`` together after reading the
new bundle's changes.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

VERSION = "0.69.0"
BUNDLE = "package/dist/niivue.umd.js"
SHA256 = "47b896b77ec4a5be3ef1949c33ad393b6f45629921f326c279000bcf51bdb4af"
DEST = Path(__file__).resolve().parents[1] / "src" / "brainlrp" / "report" / "vendor"

# The npm tarball carries no LICENSE file; package.json says BSD-2-Clause. This is the
# text of the LICENSE file in the NiiVue repository.
LICENSE = """BSD 2-Clause License

Copyright (c) 2021, Niivue
All rights reserved.

Redistribution and use in source and binary forms, with or without
modification, are permitted provided that the following conditions are met:

1. Redistributions of source code must retain the above copyright notice, this
   list of conditions and the following disclaimer.

2. Redistributions in binary form must reproduce the above copyright notice,
   this list of conditions and the following disclaimer in the documentation
   and/or other materials provided with the distribution.

THIS SOFTWARE IS PROVIDED BY THE COPYRIGHT HOLDERS AND CONTRIBUTORS "AS IS"
AND ANY EXPRESS OR IMPLIED WARRANTIES, INCLUDING, BUT NOT LIMITED TO, THE
IMPLIED WARRANTIES OF MERCHANTABILITY AND FITNESS FOR A PARTICULAR PURPOSE ARE
DISCLAIMED. IN NO EVENT SHALL THE COPYRIGHT HOLDER OR CONTRIBUTORS BE LIABLE
FOR ANY DIRECT, INDIRECT, INCIDENTAL, SPECIAL, EXEMPLARY, OR CONSEQUENTIAL
DAMAGES (INCLUDING, BUT NOT LIMITED TO, PROCUREMENT OF SUBSTITUTE GOODS OR
SERVICES; LOSS OF USE, DATA, OR PROFITS; OR BUSINESS INTERRUPTION) HOWEVER
CAUSED AND ON ANY THEORY OF LIABILITY, WHETHER IN CONTRACT, STRICT LIABILITY,
OR TORT (INCLUDING NEGLIGENCE OR OTHERWISE) ARISING IN ANY WAY OUT OF THE USE
OF THIS SOFTWARE, EVEN IF ADVISED OF THE POSSIBILITY OF SUCH DAMAGE.
"""


def main() -> int:
    """Fetch, check and write the bundle; returns the exit code."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["npm", "pack", f"@niivue/niivue@{VERSION}", "--silent"], cwd=tmp,
                       check=True, stdout=subprocess.DEVNULL)
        tarball = next(Path(tmp).glob("niivue-niivue-*.tgz"))
        with tarfile.open(tarball) as tar:
            manifest = json.load(tar.extractfile("package/package.json"))
            bundle = tar.extractfile(BUNDLE).read()
            names = tar.getnames()
        tar_sha = hashlib.sha256(tarball.read_bytes()).hexdigest()
    digest = hashlib.sha256(bundle).hexdigest()
    if digest != SHA256:
        print(f"{BUNDLE} of {VERSION} has sha256 {digest}, expected {SHA256}: not written",
              file=sys.stderr)
        return 1
    text = bundle.decode("utf-8")
    # Inlined into <script>: these would end the element early.
    if "</script" in text.lower() or "<!--" in text:
        print("the bundle contains '</script' or '<!--' and cannot be inlined",
              file=sys.stderr)
        return 1
    DEST.mkdir(parents=True, exist_ok=True)
    (DEST / "niivue.umd.js").write_bytes(bundle)
    licence = LICENSE
    for name in names:  # a future tarball may ship its own licence: prefer it
        if name.lower() in ("package/license", "package/license.md", "package/license.txt"):
            with tarfile.open(tarball) as tar:
                licence = tar.extractfile(name).read().decode("utf-8")
    (DEST / "LICENSE.niivue").write_text(licence)
    record = {"package": "@niivue/niivue", "version": manifest["version"],
              "license": manifest.get("license"), "file": BUNDLE.removeprefix("package/"),
              "sha256": digest, "tarball_sha256": tar_sha,
              "global": "niivue", "fetched_with": f"npm pack @niivue/niivue@{VERSION}"}
    (DEST / "niivue.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {DEST / 'niivue.umd.js'} ({len(bundle)} bytes, sha256 {digest})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
