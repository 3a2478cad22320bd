"""Create and edit forms, generated from the pydantic form models.

Validation errors appear under their field; a server refusal (RLS, a
resource limit, a conflict) appears at the top with the server's message,
and everything typed stays. The saved row arrives through realtime like
anyone else's change.
"""

from __future__ import annotations

import json
import typing
from datetime import datetime
from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, SecretStr, ValidationError
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, Checkbox, Input, Label, Select, SelectionList, TextArea

from opstui.models import CicdProviderForm, DeploymentForm, EnvVar, HostForm, RepositoryForm
from opstui.resources import ResourceSpec
from opstui.store import StoreError
from opstui.ui.widgets.footer import OpsFooter

FORMS: dict[str, type[BaseModel]] = {
    "hosts": HostForm,
    "repositories": RepositoryForm,
    "deployments": DeploymentForm,
    "cicd_providers": CicdProviderForm,
}

# Foreign keys: (table, field) -> (table the store holds, the column people read).
# "*" applies to every form.
REFERENCES = {
    ("*", "repository_id"): ("repositories", "name"),
    ("*", "cicd_provider_id"): ("cicd_providers", "name"),
    ("*", "host_ids"): ("hosts", "name"),
    ("repositories", "provider_id"): ("git_providers", "name"),
}
FIELD_LABELS = {
    "provider_id": "git provider",
    "repository_id": "repository",
    "cicd_provider_id": "CI/CD provider",
    "host_ids": "hosts",
    "scripts_path": "scripts",
    "scripts_parameters": "parameters",
    "environment_vars": "environment",
    "rollout_batch_size": "batch size",
    "rollout_max_failures": "max failures",
    "host_timeout_seconds": "host timeout (s)",
}
MULTILINE = {"scripts_path", "scripts_parameters", "environment_vars", "config"}
SECRET_FIELDS = {"password"}


def form_supported(spec: ResourceSpec) -> bool:
    return spec.table in FORMS


def _choices(annotation: Any) -> list[str] | None:
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return [str(a) for a in typing.get_args(annotation)]
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        for arg in typing.get_args(annotation):
            found = _choices(arg)
            if found:
                return found
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return [member.value for member in annotation]
    return None


def _is_bool(annotation: Any) -> bool:
    return annotation is bool


class FormScreen(Screen):
    BINDINGS = [
        Binding("ctrl+s", "save", "Save", id="form.save"),
        Binding("escape", "cancel", "Cancel", id="form.cancel"),
    ]

    def __init__(self, spec: ResourceSpec, row: dict[str, Any] | None) -> None:
        super().__init__()
        self.spec = spec
        self.row = row
        self.model = FORMS[spec.table]

    # -- building ---------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        verb = "Edit" if self.row else "New"
        title = f"{verb} {self.spec.singular}"
        if self.row:
            title += f": {self.row.get(self.spec.label_key)}"
        with VerticalScroll(id="form"):
            yield Label(title, id="form-title")
            yield Label("", id="form-error")
            for name, field in self.model.model_fields.items():
                # Label beside its field: a deployment's whole form fits in 40 rows.
                # Single-line fields sit on consecutive rows; lists and text areas get air.
                tall = name in MULTILINE or name == "host_ids"
                with Horizontal(classes="form-row -tall" if tall else "form-row"):
                    yield Label(FIELD_LABELS.get(name, name.replace("_", " ")), classes="field-label")
                    yield self._widget(name, field.annotation)
                yield Label("", id=f"{name}-error", classes="field-error")
            with Horizontal(id="form-buttons"):
                yield Button("Save (ctrl+s)", variant="primary", id="save", compact=True)
                yield Button("Cancel (esc)", id="cancel", compact=True)
        yield OpsFooter()

    def on_mount(self) -> None:
        # Focus the first field, so typed keys go into the form, never to view bindings.
        first = self.query(".form-row > *:last-child").first()
        if first is not None:
            first.focus()

    def _initial(self, name: str) -> Any:
        if self.row is None:
            default = self.model.model_fields[name].default
            return None if default is None or "PydanticUndefined" in repr(default) else default
        return self.row.get(name)

    def _widget(self, name: str, annotation: Any):
        value = self._initial(name)
        widget_id = f"field-{name}"
        store = self.app.store
        reference = REFERENCES.get((self.spec.table, name)) or REFERENCES.get(("*", name))
        if reference and store is not None:
            table, label = reference
            # Sorted by what the user reads, searchable by typing; the id never shows.
            options = sorted(
                ((str(r.get(label) or r["id"]), str(r["id"])) for r in store.rows(table)),
                key=lambda option: option[0].casefold(),
            )
            if name == "host_ids":
                chosen = {str(v) for v in value or []}
                return SelectionList(
                    *[(text, key, key in chosen) for text, key in options],
                    id=widget_id,
                    compact=True,
                )
            return Select(
                options,
                value=str(value) if str(value) in {k for _, k in options} else Select.NULL,
                id=widget_id,
                allow_blank=True,
                type_to_search=True,
                compact=True,
                prompt="(none)",
            )
        if _is_bool(annotation):
            return Checkbox("yes", value=bool(value), id=widget_id, compact=True)
        choices = _choices(annotation)
        if choices:
            current = (
                str(value.value if isinstance(value, Enum) else value)
                if value is not None
                else Select.NULL
            )
            return Select(
                [(c, c) for c in choices],
                value=current if current in choices else Select.NULL,
                id=widget_id,
                compact=True,
            )
        if name in MULTILINE:
            return TextArea(
                self._multiline_text(name, value), id=widget_id, classes="multiline", compact=True
            )
        if name in SECRET_FIELDS:
            hint = "leave blank to keep the stored password" if self.row else "optional"
            return Input(placeholder=hint, password=True, id=widget_id, compact=True)
        text = "" if value is None else str(value)
        return Input(value=text, id=widget_id, compact=True)

    @staticmethod
    def _multiline_text(name: str, value: Any) -> str:
        if value is None:
            return ""
        if name == "environment_vars":
            return "\n".join(
                f"{v.get('key')}={v.get('value', '')}" for v in value if isinstance(v, dict)
            )
        if name == "config":
            shown = {k: v for k, v in (value or {}).items() if k != "secret_keys"}
            return json.dumps(shown, indent=2)
        if isinstance(value, list):
            return "\n".join(str(v) for v in value)
        return str(value)

    # -- reading ----------------------------------------------------------------------------

    def _raw_values(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name in self.model.model_fields:
            widget = self.query_one(f"#field-{name}")
            if isinstance(widget, SelectionList):
                values[name] = list(widget.selected)
            elif isinstance(widget, Select):
                selected = widget.value
                if selected is not Select.NULL and selected is not None:
                    values[name] = selected
            elif isinstance(widget, Checkbox):
                values[name] = widget.value
            elif isinstance(widget, TextArea):
                values[name] = self._parse_multiline(name, widget.text)
            elif isinstance(widget, Input):
                text = widget.value.strip()
                if text:
                    values[name] = text
        stored = ((self.row or {}).get("config") or {}).get("secret_keys")
        if stored and isinstance(values.get("config"), dict):
            # Stored secrets are never shown; their names let validation see they exist
            # (the database recomputes this list on write).
            values["config"] = {**values["config"], "secret_keys": stored}
        return values

    @staticmethod
    def _parse_multiline(name: str, text: str) -> Any:
        if name == "environment_vars":
            try:
                return [v.model_dump() for v in DeploymentForm.parse_env(text)]
            except (ValueError, ValidationError) as exc:
                return _Invalid(str(exc).splitlines()[0])
        if name == "config":
            if not text.strip():
                return {}
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                return _Invalid(f"config must be a JSON object ({exc.msg} at line {exc.lineno})")
            return data if isinstance(data, dict) else _Invalid("config must be a JSON object")
        return [line.strip() for line in text.splitlines() if line.strip()]

    def validate(self) -> BaseModel | None:
        for label in self.query(".field-error"):
            label.update("")
            label.remove_class("-shown")
        self.query_one("#form-error", Label).update("")
        values = self._raw_values()
        problems = {
            name: value.reason for name, value in values.items() if isinstance(value, _Invalid)
        }
        if not problems:
            try:
                return self.model.model_validate(values)
            except ValidationError as exc:
                for error in exc.errors():
                    location = error.get("loc") or ()
                    message = error.get("msg", "invalid").removeprefix("Value error, ")
                    name = str(location[0]) if location else ""
                    if not name and ":" in message:  # model-level: "field: message"
                        name, message = (part.strip() for part in message.split(":", 1))
                    problems.setdefault(name or "form", message)
        for name, message in problems.items():
            target = self.query(f"#{name}-error")
            if target:
                target.first(Label).update(f"✕ {message}")
                target.first(Label).add_class("-shown")
            else:
                self.query_one("#form-error", Label).update(f"✕ {name}: {message}")
        return None

    def changes(self, model: BaseModel) -> dict[str, Any]:
        row = model.to_row()  # type: ignore[attr-defined]
        if self.row is None:
            return row
        changed = {}
        for name, value in row.items():
            if name in SECRET_FIELDS or self.row.get(name) != value:
                changed[name] = value
        # Fields cleared in the form are sent as null, except secrets (blank = keep).
        for name in self.model.model_fields:
            if name not in row and self.row.get(name) is not None and name not in SECRET_FIELDS:
                changed[name] = None
        return changed

    # -- actions ----------------------------------------------------------------------------

    @on(Button.Pressed, "#save")
    def action_save(self) -> None:
        model = self.validate()
        if model is not None:
            self.save(self.changes(model))

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.app.pop_screen()

    @work(exclusive=True, group="form", exit_on_error=False)
    async def save(self, values: dict[str, Any]) -> None:
        store = self.app.store
        if store is None:
            return
        self.query_one("#form-error", Label).update("saving…")
        try:
            if self.row is None:
                await store.insert(self.spec.table, values)
            elif values:
                await store.update(self.spec.table, self.row, values)
        except StoreError as exc:
            # Keep everything typed; show the server's own words.
            self.query_one("#form-error", Label).update(f"✕ {exc}")
            return
        self.app.notify(f"Saved {values.get('name') or self.row and self.row.get('name')!r}.")
        self.app.pop_screen()


class _Invalid:
    def __init__(self, reason: str) -> None:
        self.reason = reason


# Keep imports used only in annotations visible to linters.
_ = (SecretStr, datetime, EnvVar)
