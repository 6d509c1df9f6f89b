"""The walkthrough notebook runs top to bottom (executed, not just parsed)."""
from __future__ import annotations

from pathlib import Path

import pytest

NB = Path(__file__).resolve().parent.parent / "notebooks" / "walkthrough.ipynb"


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_walkthrough_notebook_executes(tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend, so figures become outputs
    nb = nbformat.read(NB, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 6  # a picture after every stage
    text = "".join(o.get("text", "") for o in outputs)
    assert "sparse keymasks AP50" in text and "median error" in text
