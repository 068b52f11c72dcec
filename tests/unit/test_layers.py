"""The layers stay apart: the contract needs pydantic alone, the SDK never loads the
broker or the worker, and only the `garage` command (`cli/`) imports all of them."""

from __future__ import annotations

import ast
import json
import subprocess
import sys

import pytest

from tests.support import ROOT

# What each package may import of garage's own packages.
ALLOWED = {
    "contract": {"contract"},
    "client": {"contract", "client"},
    "broker": {"contract", "broker"},
    "worker": {"contract", "client", "worker"},
    "cli": {"contract", "client", "broker", "worker", "cli"},
}
PYDANTIC_ALONE = {"pydantic", "pydantic_core", "typing_extensions", "annotated_types",
                  "typing_inspection", "garage"}  # fmt: skip


def _garage_imports(package: str) -> set[tuple[str, str]]:
    """(file, garage package) for every `garage.*` import in a package's sources."""
    found = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                parts = name.split(".")
                if parts[0] == "garage" and len(parts) > 1:
                    found.add((str(path.relative_to(ROOT)), parts[1]))
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_a_package_imports_only_the_layers_below_it(package: str) -> None:
    wrong = {(f, p) for f, p in _garage_imports(package) if p not in ALLOWED[package]}
    assert not wrong, f"{package}/ reaches past its layer: {sorted(wrong)}"


def _loaded_after(statement: str) -> list[str]:
    code = f"import sys; {statement}; import json; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/"
    )
    return json.loads(out.stdout)


def test_the_contract_imports_with_pydantic_alone() -> None:
    loaded = _loaded_after("import garage.contract, garage.contract.batch_file")
    outside = {
        name.split(".")[0]
        for name in loaded
        if name.split(".")[0] not in sys.stdlib_module_names
        and name.split(".")[0] not in PYDANTIC_ALONE
        and not name.startswith("_")  # the interpreter's own: site hooks, the editable finder
    }
    assert not outside, f"the contract loads more than pydantic: {sorted(outside)}"
    garage = [n for n in loaded if n.startswith("garage.")]
    assert all(n.startswith("garage.contract") for n in garage), garage


def test_the_sdk_loads_neither_broker_nor_worker_nor_progress_bars() -> None:
    loaded = _loaded_after("import garage.client")
    for name in ("garage.broker", "garage.worker", "garage.cli", "tqdm"):
        assert name not in loaded, f"importing garage.client loads {name}"


def _requirements() -> dict[str, list[str]]:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {"base": project["dependencies"], **project["optional-dependencies"]}


def test_the_base_install_is_the_client_and_its_http_stack() -> None:
    from packaging.requirements import Requirement

    base = {Requirement(r).name for r in _requirements()["base"]}
    assert base == {"httptools", "httpx", "httpx-sse", "pydantic", "pydantic-settings",
                    "click", "rich", "tqdm", "tenacity"}  # fmt: skip


def test_redis_py_is_not_held_below_8() -> None:
    from packaging.requirements import Requirement

    [redis] = [Requirement(r) for r in _requirements()["broker"] if r.startswith("redis[")]
    assert redis.specifier.contains("8.1.0") and redis.specifier.contains("9.0.0")
