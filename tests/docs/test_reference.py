"""docs/configuration.md and docs/api.md are what docs/generate.py writes, and what the
generator lists is what the code reads: a new setting shows up, and every environment
variable listed really sets its field."""

from __future__ import annotations

import importlib.util
import re
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
from pydantic import AliasChoices, BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from garage.broker.settings import BrokerSettings
from garage.client.settings import ClientSettings
from garage.worker.settings import WorkerSettings

from ..support import ROOT


@pytest.fixture(scope="module")
def generator() -> Iterator[ModuleType]:
    spec = importlib.util.spec_from_file_location("docs_generate", ROOT / "docs" / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it runs
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]


def test_the_generated_docs_are_current(
    generator: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    stale = generator.main(["--check"])
    assert stale == 0, capsys.readouterr().err


def test_the_check_names_a_stale_file(generator: ModuleType) -> None:
    api = ROOT / "docs" / "api.md"
    outputs = {api: api.read_text(encoding="utf-8") + "\nan endpoint nobody generated\n"}
    problems = generator.check(outputs)
    assert len(problems) == 1
    assert problems[0].startswith("docs/api.md is stale")
    assert "+an endpoint nobody generated" in problems[0]


class _Limits(BaseModel):
    burst: int = Field(3, ge=1, description="Requests at once.")


class _GadgetSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="GADGET_", env_nested_delimiter="__", populate_by_name=True
    )

    colour: str = Field("red", description="Colour of the gadget.")
    key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("GADGET_KEY", "SHARED_KEY"), description="A key."
    )
    limits: _Limits = Field(default_factory=_Limits, description="Its limits.")


def test_a_new_setting_shows_up_with_its_env_var_flag_and_default(generator: ModuleType) -> None:
    rows = generator.settings_rows(_GadgetSettings, {"colour": "--colour", "burst": "--burst"})
    assert rows == [
        generator.Setting(
            "colour", ("GADGET_COLOUR",), "--colour", "`str`", "`red`", "Colour of the gadget."
        ),
        generator.Setting(
            "key", ("GADGET_KEY", "SHARED_KEY"), None, "`SecretStr | None`", None, "A key."
        ),
        generator.Setting(
            "limits", ("GADGET_LIMITS",), None, "`_Limits` as JSON", "the rows below", "Its limits."
        ),
        generator.Setting(
            "limits.burst",
            ("GADGET_LIMITS__BURST",),
            "--burst",
            "`int`, ≥ 1",
            "`3`",
            "Requests at once.",
        ),
    ]
    table = "\n".join(generator.settings_table(_GadgetSettings, {}))
    assert "| `GADGET_COLOUR` |  | `str` | `red` | Colour of the gadget. |" in table
    assert "| `GADGET_KEY`, `SHARED_KEY` |  | `SecretStr \\| None` | secret, not shown |" in table


def _sample(row: Any) -> tuple[str, Any] | None:
    """A value to set a row's variable to, and what its field then holds; None for the
    types where no value fits every field (paths, literals, optional numbers, JSON)."""
    if row.type in ("`str`", "`str | None`", "`SecretStr | None`"):
        text = f"http://{re.sub(r'[^a-z]', '-', row.name)}.example"
        return text, text
    default = (row.default or "").strip("`")
    if row.type.startswith("`int`"):  # one above the default satisfies every bound here
        return str(int(default) + 1), int(default) + 1
    if row.type.startswith("`float`"):  # half the default keeps within bounds like <= 1
        value = float(default) / 2 if float(default) > 0 else 1.0
        return str(value), value
    return None


def _read(settings: BaseSettings, path: str) -> Any:
    value: Any = settings
    for part in path.split("."):
        value = getattr(value, part)
    return value.get_secret_value() if isinstance(value, SecretStr) else value


@pytest.mark.parametrize(
    "settings_class", [_GadgetSettings, BrokerSettings, WorkerSettings, ClientSettings]
)
def test_every_listed_variable_sets_its_field(
    generator: ModuleType, settings_class: type[BaseSettings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each variable of each row, set alone, reaches the field: the aliases
    (`GARAGE_URL`, `GARAGE_ADMIN_KEY`, ...) and the nested names (`..._GPU__TEMP_WARN_C`)."""
    checked = 0
    for row in generator.settings_rows(settings_class, {}):
        sample = _sample(row)
        if sample is None:
            continue
        text, expected = sample
        for env in row.env_names:
            for other in row.env_names:
                monkeypatch.delenv(other, raising=False)
            monkeypatch.setenv(env, text)
            assert _read(settings_class(), row.name) == expected, env
            checked += 1
    assert checked >= 3
