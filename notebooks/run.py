"""Execute notebooks headless (CI runs this through `cargo test`): python3 notebooks/run.py NB [OUT_NB].
The kernel is this interpreter with the same PYTHONPATH (e.g. .pydeps)."""
import sys
import nbformat
from nbclient import NotebookClient

nb = nbformat.read(sys.argv[1], as_version=4)
NotebookClient(nb, timeout=300, kernel_name="python3").execute()
if len(sys.argv) > 2:
    nbformat.write(nb, sys.argv[2])
print("executed", sys.argv[1])
