"""Execute an example notebook and keep what it showed.

    python examples/execute.py [--notebook examples/quickstart.ipynb] [--workdir DIR]
                               [--out DIR]

The notebook runs with nbclient in ``--workdir`` (default: a new temporary folder), on
this Python's kernel. ``--out`` (default: ``$BRAINLRP_NOTEBOOK_OUT``, else nothing is
saved) receives the executed notebook (``<name>.ipynb``) and the first image it
displayed (``<name>-heatmap.png``: the quickstart's heatmap). ``tests/test_api.py``
calls :func:`execute` the same way.
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: Where the executed notebook and its first image go when no ``--out`` is given.
OUT_VARIABLE = "BRAINLRP_NOTEBOOK_OUT"


def first_image(notebook) -> bytes | None:
    """The PNG bytes of the first image output of an executed notebook."""
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if "image/png" in data:
                return base64.b64decode(data["image/png"])
    return None


def execute(notebook: str | os.PathLike = HERE / "quickstart.ipynb",
            workdir: str | os.PathLike | None = None, out: str | os.PathLike | None = None,
            timeout: int = 300):
    """Run ``notebook`` in ``workdir`` and save it and its first image under ``out``.

    Returns
    -------
    (nbformat.NotebookNode, dict)
        The executed notebook, and ``{"seconds": ..., "notebook": path or None,
        "image": path or None}``.
    """
    import nbformat
    from nbclient import NotebookClient

    notebook = Path(notebook)
    workdir = Path(workdir or tempfile.mkdtemp(prefix="brainlrp-notebook-"))
    workdir.mkdir(parents=True, exist_ok=True)
    nb = nbformat.read(notebook, as_version=4)
    start = time.perf_counter()
    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(workdir)}}).execute()
    info = {"seconds": time.perf_counter() - start, "notebook": None, "image": None}
    out = out or os.environ.get(OUT_VARIABLE)
    if out:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        info["notebook"] = out / notebook.name
        nbformat.write(nb, info["notebook"])
        image = first_image(nb)
        if image is not None:
            info["image"] = out / f"{notebook.stem}-heatmap.png"
            info["image"].write_bytes(image)
    return nb, info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--notebook", default=HERE / "quickstart.ipynb")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    _, info = execute(args.notebook, args.workdir, args.out)
    print(f"executed {args.notebook} in {info['seconds']:.1f} s")
    for key in ("notebook", "image"):
        if info[key] is not None:
            print(f"{key}: {info[key]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
