"""Start-up: the CLI loads only what a verb needs (issue 26). Times live in benchmarks/startup.py; these tests
check which libraries a fresh interpreter has loaded, which is what the times come from."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import REPO

from lookalike.index import ImageIndex

# Libraries that cost 0.1-4 s to import and that neither `--help` nor a search by id needs.
HEAVY = ("sklearn", "scipy", "torch", "transformers", "ray", "matplotlib", "fastapi", "starlette", "uvicorn",
         "pandas", "pyarrow", "pymilvus", "onnx", "onnxruntime", "cv2", "tqdm", "huggingface_hub", "joblib")
# A search by id reads the vector index (FAISS) and the database; it embeds nothing.
INDEX_READERS = ("faiss", "numpy", "sqlite3")


def loaded_after(code: str) -> dict[str, list[str]]:
    """Which of HEAVY and INDEX_READERS a fresh interpreter holds after running `code`."""
    probe = (f"import sys, json\n{code}\n"
             f"print(json.dumps({{'loaded': [m for m in {HEAVY + INDEX_READERS!r} if m in sys.modules]}}))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout.strip().splitlines()[-1])["loaded"]
    return {"heavy": [m for m in loaded if m in HEAVY], "readers": [m for m in loaded if m in INDEX_READERS]}


def test_importing_the_cli_and_building_its_parser_loads_no_heavy_library() -> None:
    loaded = loaded_after("import lookalike.cli\nlookalike.cli.build_parser()")
    assert loaded["heavy"] == []
    assert "faiss" not in loaded["readers"]


def test_help_loads_no_heavy_library() -> None:
    loaded = loaded_after("from lookalike.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass")
    assert loaded["heavy"] == []


def test_importing_lookalike_loads_no_heavy_library_until_a_name_is_used() -> None:
    assert loaded_after("import lookalike")["readers"] == ["numpy"]
    assert loaded_after("import lookalike\nlookalike.ImageIndex")["readers"] == ["faiss", "numpy", "sqlite3"]


def test_search_by_id_reads_the_index_without_loading_a_network(demo_index: ImageIndex) -> None:
    code = (f"from lookalike.cli import main\n"
            f"assert main(['search', '--id', '1', '--index', {str(demo_index.folder)!r}, '-k', '3', '--json']) == 0")
    loaded = loaded_after(code)
    assert loaded["heavy"] == []
    assert "faiss" in loaded["readers"]  # the search did run against the vector index


def test_the_public_names_still_load_on_use() -> None:
    import lookalike

    assert lookalike.ImageIndex is ImageIndex
    assert lookalike.Index is ImageIndex
    assert lookalike.__version__
