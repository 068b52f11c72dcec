"""Writes the reference docs that are generated from the code, never by hand.

    python docs/generate.py           # writes docs/configuration.md and docs/api.md
    python docs/generate.py --check   # exits 1, naming the file, when one is stale

`docs/configuration.md` comes from the pydantic-settings classes: each setting's
environment variables as pydantic-settings itself reads them, and the flag of the
`garage` command that passes it. `docs/api.md` comes from the OpenAPI document the broker
serves at `/openapi.json`, read from an app built in-process (no server, no Redis), with
each endpoint's role taken from the same `Endpoint` declarations the document is built from.
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import enum
import importlib
import inspect
import json
import re
import sys
import types
import typing
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import annotated_types
import click
import httpx
from pydantic import AliasChoices, BaseModel, SecretBytes, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings

__all__ = ["Setting", "check", "generate", "main", "settings_rows", "settings_table"]

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
COMMAND = "python docs/generate.py"


# --- configuration.md ------------------------------------------------------------------


@dataclass(frozen=True)
class Component:
    """A part of garage with its own settings, and the command that passes flags to them."""

    title: str
    module: str
    command: tuple[str, ...]  # the `garage` subcommand building the settings; () for none
    intro: str


@dataclass(frozen=True)
class Setting:
    """One row of the reference: a field as the environment and the CLI set it."""

    name: str  # the field's name; a nested model's field as "parent.field"
    env_names: tuple[str, ...]  # in the order pydantic-settings tries them
    flag: str | None
    type: str
    default: str | None  # None for a secret, whose default is not shown
    description: str


COMPONENTS = (
    Component(
        "Broker",
        "garage.broker.settings",
        ("broker", "run"),
        "The broker (`garage broker run`) reads its settings once at start and hands them "
        "down. Without a Redis URL it runs an embedded `redis-server` that keeps an "
        "append-only file in the data folder; several brokers may share one Redis. "
        "`GARAGE_ADMIN_KEY`, when set, is accepted as an admin key: it bootstraps the other "
        "keys through `garage admin key create`.",
    ),
    Component(
        "Worker",
        "garage.worker.settings",
        ("worker", "run"),
        "A worker (`garage worker run`, one per rig) reads its settings once at start; "
        "`garage worker gpus` reads the same ones to judge its GPU readings. The broker's "
        "URL and the worker's key fall back on the client's `GARAGE_URL` and "
        "`GARAGE_API_KEY`. A nested group such as the GPU thresholds takes one variable "
        "per field, or the whole group as one JSON object.",
    ),
    Component(
        "Client",
        "garage.client.settings",
        (),
        "The Python client (`Client`, `AsyncClient`) and every `garage` command that talks "
        "to a broker read these when a client is created. Arguments (`Client(url=..., "
        "api_key=...)`) and the commands' `--url` and `--api-key` flags override them.",
    ),
)


def settings_classes(module_name: str) -> list[type[BaseSettings]]:
    """The settings classes defined in `module_name`, by name."""
    module = importlib.import_module(module_name)
    found = [
        value
        for _, value in inspect.getmembers(module, inspect.isclass)
        if issubclass(value, BaseSettings) and value.__module__ == module_name
    ]
    return sorted(found, key=lambda cls: cls.__name__)


def command_flags(path: Sequence[str]) -> dict[str, str]:
    """Each option of `garage <path...>` by the name it is passed under (its dest).

    cli/broker.py hands every option to `BrokerSettings` as a keyword of that name;
    cli/worker.py does the same and merges `temp_*_c` into the nested GPU thresholds, so
    the name matches the field (or the nested field) the flag sets."""
    if not path:
        return {}
    from garage.cli import main

    command: click.Command = main
    context = click.Context(main, info_name="garage")
    for name in path:
        assert isinstance(command, click.Group), f"garage {name}: not a command group"
        found = command.get_command(context, name)
        assert found is not None, f"no command garage {' '.join(path)}"
        command, context = found, click.Context(found, info_name=name, parent=context)
    return {
        param.name: ", ".join(sorted(param.opts, key=len))
        for param in command.params
        if isinstance(param, click.Option) and param.name is not None
    }


def env_names(cls: type[BaseSettings], name: str, field: FieldInfo) -> tuple[str, ...]:
    """The environment variables pydantic-settings reads for a field, in its order: the
    field's aliases, then (with no alias, or with `populate_by_name`) the prefixed name.
    A test sets each name listed and checks that it reaches the field."""
    config = cls.model_config
    alias = field.validation_alias
    found: list[str] = []
    if isinstance(alias, str):
        found.append(alias)
    elif isinstance(alias, AliasChoices):
        found += [choice for choice in alias.choices if isinstance(choice, str)]
    if not found or config.get("populate_by_name", False):
        found.append(config.get("env_prefix", "") + name)
    if not config.get("case_sensitive", False):
        found = [env.upper() for env in found]
    return tuple(dict.fromkeys(found))


def nested_model(field: FieldInfo) -> type[BaseModel] | None:
    annotation = field.annotation
    if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        return annotation
    return None


def settings_rows(cls: type[BaseSettings], flags: Mapping[str, str]) -> list[Setting]:
    """The rows of `cls`: each field, then the fields of a nested model when the
    environment can set them one by one (`env_nested_delimiter`)."""
    delimiter = cls.model_config.get("env_nested_delimiter")
    rows: list[Setting] = []
    for name, field in cls.model_fields.items():
        names = env_names(cls, name, field)
        nested = nested_model(field)
        rows.append(setting(name, names, flags.get(name), field))
        if nested is None or not delimiter:
            continue
        for sub_name, sub_field in nested.model_fields.items():
            sub_names = tuple(f"{env}{delimiter}{sub_name.upper()}" for env in names)
            flag = None if sub_name in cls.model_fields else flags.get(sub_name)
            rows.append(setting(f"{name}.{sub_name}", sub_names, flag, sub_field))
    return rows


def setting(name: str, names: tuple[str, ...], flag: str | None, field: FieldInfo) -> Setting:
    return Setting(
        name=name,
        env_names=names,
        flag=flag,
        type=field_type(field),
        default=None if is_secret(field.annotation) else field_default(field),
        description=" ".join((field.description or "").split()),
    )


def is_secret(annotation: Any) -> bool:
    if annotation in (SecretStr, SecretBytes):
        return True
    return any(is_secret(arg) for arg in typing.get_args(annotation))


def is_json(annotation: Any) -> bool:
    """Whether the environment must hold the value as JSON (a list, set, mapping, model)."""
    if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        return True
    origin = typing.get_origin(annotation)
    if origin in (list, set, frozenset, tuple, dict):
        return True
    return any(is_json(arg) for arg in typing.get_args(annotation))


def type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(arg) for arg in args)
    if origin is typing.Literal:
        return " | ".join(json.dumps(arg) for arg in args)
    if origin is typing.Annotated:
        return type_name(args[0])
    if origin is not None:
        return f"{origin.__name__}[{', '.join(type_name(arg) for arg in args)}]"
    if annotation is type(None):
        return "None"
    return getattr(annotation, "__name__", str(annotation))


_BOUNDS = (
    (annotated_types.Gt, "gt", ">"),
    (annotated_types.Ge, "ge", "≥"),
    (annotated_types.Lt, "lt", "<"),
    (annotated_types.Le, "le", "≤"),
    (annotated_types.MinLen, "min_length", "min length"),
    (annotated_types.MaxLen, "max_length", "max length"),
)


def field_constraints(field: FieldInfo) -> list[str]:
    return [
        f"{symbol} {getattr(item, attribute)}"
        for item in field.metadata
        for kind, attribute, symbol in _BOUNDS
        if isinstance(item, kind)
    ]


def field_type(field: FieldInfo) -> str:
    text = f"`{type_name(field.annotation)}`"
    if is_json(field.annotation):
        text += " as JSON"
    return ", ".join([text, *field_constraints(field)])


def field_default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        if nested_model(field) is not None:
            return "the rows below"
        return f"`{getattr(field.default_factory, '__name__', 'computed')}()`"
    if field.default is PydanticUndefined:
        return "required"
    return value_text(field.default)


def value_text(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float) and value.is_integer():
        return f"`{int(value)}`"
    if isinstance(value, set | frozenset):
        return f"`{json.dumps(sorted(value))}`"
    if isinstance(value, list | tuple | dict):
        return f"`{json.dumps(value)}`"
    return f"`{value}`"


def settings_table(cls: type[BaseSettings], flags: Mapping[str, str]) -> list[str]:
    """The markdown table of `cls`'s settings."""
    rows = [
        (
            ", ".join(f"`{env}`" for env in row.env_names),
            f"`{row.flag}`" if row.flag else "",
            row.type,
            row.default if row.default is not None else "secret, not shown",
            row.description,
        )
        for row in settings_rows(cls, flags)
    ]
    return table(("environment variable", "flag", "type", "default", "description"), rows)


def configuration_page() -> str:
    lines = [
        "# Configuration reference",
        "",
        notice("the pydantic-settings classes of each component and the `garage` commands"),
        "",
        "Each component reads its settings from the environment once, when it starts, through "
        "pydantic-settings. Names are case-insensitive; where a setting lists several "
        "variables, the first one set wins. A flag, where there is one, overrides the "
        "environment. Values of list, set and object types are JSON. Secrets show no default.",
    ]
    for component in COMPONENTS:
        lines += component_section(component)
    return "\n".join(lines) + "\n"


def component_section(component: Component) -> list[str]:
    flags = command_flags(component.command)
    source = f", with the flags of `garage {' '.join(component.command)}`"
    lines = ["", f"## {component.title}", "", component.intro]
    for cls in settings_classes(component.module):
        origin = f"`{component.module}.{cls.__name__}`{source if component.command else ''}:"
        lines += ["", origin, "", *settings_table(cls, flags)]
    return lines


# --- api.md ----------------------------------------------------------------------------


_METHOD_ORDER = {"get": 0, "post": 1, "put": 2, "patch": 3, "delete": 4}
_SCHEMA_CONSTRAINTS = {
    "minLength": "min length {}",
    "maxLength": "max length {}",
    "minimum": "≥ {}",
    "exclusiveMinimum": "> {}",
    "maximum": "≤ {}",
    "exclusiveMaximum": "< {}",
    "minItems": "min items {}",
    "maxItems": "max items {}",
    "minProperties": "min entries {}",
    "maxProperties": "max entries {}",
    "multipleOf": "multiple of {}",
    "pattern": "pattern `{}`",
}


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    spec: Mapping[str, Any]
    role: str | None  # the roles its key may have, comma-separated (an admin key may call all)

    @property
    def title(self) -> str:
        return f"{self.method.upper()} {self.path}"


def broker_document() -> tuple[dict[str, Any], dict[tuple[str, str], str | None]]:
    """The broker's OpenAPI document and each endpoint's role, from an app built in-process."""
    return asyncio.run(_read_broker_document())


async def _read_broker_document() -> tuple[dict[str, Any], dict[tuple[str, str], str | None]]:
    from garage.broker.app import build_app
    from garage.broker.clock import system_clock
    from garage.broker.settings import BrokerSettings
    from garage.broker.store import Store

    settings = BrokerSettings.model_construct()  # the defaults: the environment plays no part
    store = Store.connect(  # never contacted: nothing here runs the app's lifespan
        "redis://127.0.0.1:1/0",
        system_clock,
        lease_ms=settings.lease_ms,
        retention_ms=settings.retention_ms,
        worker_alive_ms=settings.worker_alive_ms,
    )
    try:
        app = build_app(settings, store=store)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://broker") as http:
            reply = await http.get("/openapi.json")
            reply.raise_for_status()
    finally:
        await store.aclose()
    return reply.json(), declared_roles(app.router.routes)


def declared_roles(routes: Iterable[Any]) -> dict[tuple[str, str], str | None]:
    """The role each route's `Endpoint` declares, by (method, path)."""
    from garage.broker.routing import Endpoint

    roles: dict[tuple[str, str], str | None] = {}
    for route in routes:
        endpoint = getattr(getattr(route, "app", None), "endpoint", None)
        if isinstance(endpoint, Endpoint):
            role = None
            if endpoint.role is not None:  # "user,worker" where others may call it too
                role = ",".join(r.value for r in (endpoint.role, *endpoint.also))
            roles[(endpoint.method.lower(), endpoint.path)] = role
    return roles


def operations(
    document: Mapping[str, Any], roles: Mapping[tuple[str, str], str | None]
) -> list[Operation]:
    found = []
    for path, methods in document["paths"].items():
        for method, spec in methods.items():
            if (method, path) not in roles:
                raise LookupError(f"{method.upper()} {path}: documented but not declared")
            found.append(Operation(method, path, spec, roles[(method, path)]))
    return sorted(found, key=lambda op: (op.path, _METHOD_ORDER.get(op.method, 9), op.method))


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def ref_name(schema: Mapping[str, Any]) -> str:
    return str(schema["$ref"]).rsplit("/", 1)[1]


def schema_link(name: str) -> str:
    return f"[{name}](#{slug(name)})"


def schema_type(schema: Mapping[str, Any]) -> str:
    """A JSON schema as a short type: links for named schemas, `or` for unions."""
    if "$ref" in schema:
        return schema_link(ref_name(schema))
    for union in ("anyOf", "oneOf"):
        if union in schema:
            return " or ".join(schema_type(member) for member in schema[union])
    if "allOf" in schema:
        return " and ".join(schema_type(member) for member in schema["allOf"])
    if "const" in schema:
        return f"`{json.dumps(schema['const'])}`"
    if "enum" in schema:
        return " or ".join(f"`{json.dumps(value)}`" for value in schema["enum"])
    kind = schema.get("type")
    if isinstance(kind, list):
        return " or ".join(kind)
    if kind == "array" and isinstance(schema.get("items"), dict):
        return f"array of {schema_type(schema['items'])}"
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        return f"object of {schema_type(schema['additionalProperties'])}"
    if kind is not None and "format" in schema:
        return f"{kind} ({schema['format']})"
    return str(kind or "any")


def schema_constraints(schema: Mapping[str, Any], where: str = "") -> list[str]:
    found = [
        where + template.format(schema[key])
        for key, template in _SCHEMA_CONSTRAINTS.items()
        if key in schema
    ]
    for member in schema.get("anyOf", ()):
        found += schema_constraints(member, where)
    for key, label in (("items", "each item"), ("additionalProperties", "each value")):
        if isinstance(schema.get(key), dict):
            found += schema_constraints(schema[key], f"{label}: ")
    if isinstance(schema.get("propertyNames"), dict):
        found += schema_constraints(schema["propertyNames"], "each key: ")
    return found


def default_text(schema: Mapping[str, Any]) -> str:
    return f"`{json.dumps(schema['default'])}`" if "default" in schema else ""


def fields_table(schema: Mapping[str, Any]) -> list[str]:
    """An object schema's properties, in their declared order."""
    required = set(schema.get("required", ()))
    rows = [
        (
            f"`{name}`",
            schema_type(field),
            "yes" if name in required else "",
            default_text(field),
            str(field.get("description", "")),
            ", ".join(schema_constraints(field)),
        )
        for name, field in schema.get("properties", {}).items()
    ]
    return table(("field", "type", "required", "default", "description", "constraints"), rows)


def extra_fields_note(schema: Mapping[str, Any]) -> list[str]:
    extra = schema.get("additionalProperties")
    if extra is False:
        return ["", "Other fields are refused (400)."]
    if extra is True:
        return ["", "Other fields are accepted."]
    return []


def role_text(role: str | None) -> str:
    if role is None:
        return "none: no key needed"
    if role == "admin":
        return "`admin`"
    return " or ".join(f"`{r}`" for r in role.split(",")) + " (or `admin`)"


def parameters_table(parameters: Sequence[Mapping[str, Any]]) -> list[str]:
    header = ("parameter", "in", "type", "required", "default", "description", "constraints")
    return table(header, [parameter_row(parameter) for parameter in parameters])


def parameter_row(parameter: Mapping[str, Any]) -> tuple[str, ...]:
    schema = parameter.get("schema", {})
    return (
        f"`{parameter['name']}`",
        parameter["in"],
        schema_type(schema),
        "yes" if parameter.get("required") else "",
        default_text(schema),
        str(parameter.get("description") or schema.get("description", "")),
        ", ".join(schema_constraints(schema)),
    )


def answer_lines(responses: Mapping[str, Any]) -> list[str]:
    lines = []
    for status, response in sorted(responses.items()):
        if not status.startswith("2"):
            continue
        contents = response.get("content", {})
        kinds = [
            f"{schema_link(ref_name(body['schema']))} (`{media}`)"
            if "$ref" in body.get("schema", {})
            else f"`{media}`"
            for media, body in sorted(contents.items())
        ]
        lines.append(f"- Answer: `{status}` {', '.join(kinds) or 'no content'}")
    return lines


def error_statuses(responses: Mapping[str, Any]) -> list[str]:
    return sorted(status for status in responses if not status.startswith("2"))


def errors_line(responses: Mapping[str, Any]) -> str:
    statuses = ", ".join(f"`{status}`" for status in error_statuses(responses))
    return f"- [Errors](#{slug('Error statuses')}): {statuses}"


def error_legend(ops: Iterable[Operation]) -> list[str]:
    """What each error status means, over every endpoint that may answer it."""
    meanings = sorted(
        {
            (status, op.spec["responses"][status]["description"])
            for op in ops
            for status in error_statuses(op.spec["responses"])
        }
    )
    return [
        "",
        "## Error statuses",
        "",
        f"Every error answer is an OpenAI-style body, {schema_link('ErrorBody')}.",
        "",
        *table(("status", "meaning"), [(f"`{status}`", text) for status, text in meanings]),
    ]


def request_body_lines(body: Mapping[str, Any], schemas: Mapping[str, Any]) -> list[str]:
    lines = []
    for media, content in sorted(body.get("content", {}).items()):
        schema = content.get("schema", {})
        if "$ref" in schema:
            name = ref_name(schema)
            lines += ["", f"Request body: {schema_link(name)} (`{media}`)", ""]
            lines += fields_table(schemas[name]) + extra_fields_note(schemas[name])
        else:
            lines += ["", f"Request body (`{media}`):", "", *fields_table(schema)]
    return lines


def operation_section(op: Operation, schemas: Mapping[str, Any]) -> list[str]:
    spec = op.spec
    lines = ["", f"### {op.title}", "", f"**{spec['summary'].rstrip('.')}.**"]
    if spec.get("description"):
        lines[-1] += f" {spec['description']}"
    lines += ["", f"- Role: {role_text(op.role)}"]
    lines += answer_lines(spec["responses"])
    lines.append(errors_line(spec["responses"]))
    if spec.get("parameters"):
        lines += ["", "Parameters:", "", *parameters_table(spec["parameters"])]
    if "requestBody" in spec:
        lines += request_body_lines(spec["requestBody"], schemas)
    return lines


def schema_section(name: str, schema: Mapping[str, Any]) -> list[str]:
    lines = ["", f"### {name}"]
    if schema.get("description"):
        lines += ["", " ".join(str(schema["description"]).split())]
    if "enum" in schema:
        lines += ["", "One of " + ", ".join(f"`{json.dumps(v)}`" for v in schema["enum"]) + "."]
    elif schema.get("properties"):
        lines += ["", *fields_table(schema), *extra_fields_note(schema)]
    else:
        lines += ["", f"Type: {schema_type(schema)}."]
    return lines


def contents_lines(by_tag: Mapping[str, Sequence[Operation]]) -> list[str]:
    lines = ["", "## Contents", "", f"- [Error statuses](#{slug('Error statuses')})"]
    for tag, ops in by_tag.items():
        lines.append(f"- [{tag}](#{slug(tag)})")
        lines += [f"  - [{op.title}](#{slug(op.title)}): {op.spec['summary']}" for op in ops]
    lines.append(f"- [Schemas](#{slug('Schemas')})")
    return lines


def check_unique_anchors(headings: Iterable[str]) -> None:
    seen: dict[str, str] = {}
    for heading in headings:
        anchor = slug(heading)
        if anchor in seen:
            raise ValueError(f"headings {seen[anchor]!r} and {heading!r} share the anchor {anchor}")
        seen[anchor] = heading


def api_page() -> str:
    document, roles = broker_document()
    schemas = document["components"]["schemas"]
    by_tag: dict[str, list[Operation]] = {}
    for op in operations(document, roles):
        by_tag.setdefault(op.spec.get("tags", ["other"])[0], []).append(op)
    by_tag = dict(sorted(by_tag.items()))
    titles = [op.title for ops in by_tag.values() for op in ops]
    fixed = ["Contents", "Error statuses", "Schemas"]
    check_unique_anchors([*fixed, *by_tag, *titles, *sorted(schemas)])
    info = document["info"]
    lines = [
        "# API reference",
        "",
        notice("the broker's OpenAPI document, which it serves at `GET /openapi.json`"),
        "",
        f"{info['title']}: {info['summary']} An endpoint with a role takes the key as "
        "`Authorization: Bearer <key>`; an admin key may call every endpoint.",
        *contents_lines(by_tag),
        *error_legend(op for ops in by_tag.values() for op in ops),
    ]
    for tag, ops in by_tag.items():
        lines += ["", f"## {tag}"]
        for op in ops:
            lines += operation_section(op, schemas)
    lines += ["", "## Schemas"]
    for name in sorted(schemas):
        lines += schema_section(name, schemas[name])
    return "\n".join(lines) + "\n"


# --- markdown, writing, checking -------------------------------------------------------


def notice(source: str) -> str:
    return f"> Generated by `{COMMAND}` from {source}. Do not edit by hand: run it again."


def cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(cell(value) for value in row) + " |" for row in rows),
    ]


def generate() -> dict[Path, str]:
    """Each generated file and the text it should hold."""
    return {
        DOCS / "configuration.md": configuration_page(),
        DOCS / "api.md": api_page(),
    }


def stale_files(outputs: Mapping[Path, str]) -> Iterator[tuple[Path, list[str]]]:
    """Each file whose text differs from what it should hold, with a short diff."""
    for path, text in outputs.items():
        current = path.read_text(encoding="utf-8") if path.exists() else ""
        if current != text:
            name = str(path.relative_to(ROOT))
            diff = difflib.unified_diff(
                current.splitlines(), text.splitlines(), name, f"{name} (generated)", lineterm=""
            )
            yield path, list(diff)[:40]


def check(outputs: Mapping[Path, str]) -> list[str]:
    """A message for each stale file; none when every file is up to date."""
    return [
        f"{path.relative_to(ROOT)} is stale: it differs from what `{COMMAND}` writes; "
        "run it and commit the result.\n" + "\n".join(diff)
        for path, diff in stale_files(outputs)
    ]


def write(outputs: Mapping[Path, str]) -> None:
    for path, text in outputs.items():
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path.relative_to(ROOT)}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write the generated reference docs.")
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if a generated file is stale; write nothing"
    )
    args = parser.parse_args(argv)
    outputs = generate()
    if not args.check:
        write(outputs)
        return 0
    problems = check(outputs)
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
