"""notebooks/: valid nbformat-4 files whose code parses, executed top to bottom (nbformat, nbclient
and ipykernel are test dependencies, so CI runs them)."""
import ast
import json
import os

import pytest

NOTEBOOKS = sorted(os.path.join(root, f) for root, _, files in os.walk(os.path.join(os.path.dirname(__file__), "..", "..", "notebooks"))
                   for f in files if f.endswith(".ipynb") and ".ipynb_checkpoints" not in root)


def test_there_are_notebooks():
    assert NOTEBOOKS, "notebooks/ has no .ipynb files"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_notebook_is_valid_and_its_code_parses(path):
    with open(path) as f:
        nb = json.load(f)
    assert nb["nbformat"] == 4 and nb["cells"]
    for k, cell in enumerate(nb["cells"]):
        assert cell["cell_type"] in ("markdown", "code")
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [], f"cell {k}: commit notebooks with outputs cleared"
            source = "".join(cell["source"])
            ast.parse("\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))))


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_notebook_runs(path, monkeypatch):
    root = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    nb = nbformat.read(path, as_version=4)
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": os.path.dirname(path)}}).execute()
