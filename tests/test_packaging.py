"""The wheel's layout: every package folder of the tree is shipped, `server/` as `featurestore.server`,
and no top-level package of a common name (`server`) is installed beside `featurestore`."""

from __future__ import annotations

import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent


def _setuptools() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def _shipped_folders() -> dict[str, Path]:
    """Package name -> the folder setuptools takes it from, as pyproject.toml says."""
    config = _setuptools()
    mapping = config.get("package-dir", {})
    out = {}
    for package in config["packages"]:
        parent = next(
            (
                p
                for p in sorted(mapping, key=len, reverse=True)
                if package == p or package.startswith(p + ".")
            ),
            None,
        )
        if parent is None:
            out[package] = ROOT / package.replace(".", "/")
        else:
            out[package] = ROOT / mapping[parent] / package[len(parent) + 1 :].replace(".", "/")
    return out


def test_every_package_folder_is_shipped_and_only_under_featurestore():
    shipped = _shipped_folders()
    assert all(name == "featurestore" or name.startswith("featurestore.") for name in shipped)
    on_disk = {
        init.parent.resolve()
        for top in ("featurestore", "server")
        for init in (ROOT / top).rglob("__init__.py")
    }
    assert {p.resolve() for p in shipped.values()} == on_disk
    assert shipped["featurestore.server"] == ROOT / "server"


def test_type_marker_is_shipped():
    assert (ROOT / "featurestore" / "py.typed").exists()
    assert "py.typed" in _setuptools()["package-data"]["featurestore"]


def test_the_server_is_importable_as_featurestore_server_only(tmp_path):
    """From a folder outside the repo (so only what is installed counts): featurestore.server imports,
    a top-level `server` does not."""
    import subprocess

    code = (
        "import importlib.util, featurestore.server as s; "
        "print(s.__file__); print(importlib.util.find_spec('server'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    where, top_level = out.stdout.split("\n")[:2]
    assert Path(where).resolve() == ROOT / "server" / "__init__.py"
    assert top_level == "None"


def test_every_data_file_of_a_package_is_shipped():
    """Files a package reads at run time (the monitoring report's template) are in its package-data."""
    from fnmatch import fnmatch

    data = _setuptools()["package-data"]
    for package, folder in _shipped_folders().items():
        for path in folder.rglob("*"):
            if path.is_dir() or path.suffix in (".py", ".pyc") or "__pycache__" in path.parts:
                continue
            if any(
                (folder / sub).is_dir() and (folder / sub / "__init__.py").exists()
                for sub in path.relative_to(folder).parents
                if str(sub) != "."
            ):
                continue  # a file of a subpackage: that package's entry covers it
            relative = path.relative_to(folder).as_posix()
            assert any(fnmatch(relative, g) for g in data.get(package, [])), (
                f"{package}: {relative} is not in [tool.setuptools.package-data]"
            )
