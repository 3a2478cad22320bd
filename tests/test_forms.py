"""Every create and every edit form of every writable resource, opened and submitted.

The deployment form used to crash the app on open (a Select given Textual's old
`Select.BLANK`, which 8.2 rejects); nothing opened it. These tests open each form
with its optional fields empty and filled, submit it, and check the row in the
database, so a form that cannot open or cannot save fails here.
"""

from __future__ import annotations

import uuid

import psycopg
import pytest
from textual.widgets import Input, Select, SelectionList, TextArea

from opstui.ui.screens.resource import ResourceScreen
from tests.tui_support import SIZE, make_app, ready, wait_for


def _db(backend_info, sql: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(backend_info.db_url, autocommit=True) as conn:
        cur = conn.execute(sql, params)
        return cur.fetchall() if cur.description else []


def _first_option(select: Select):
    options = [value for _, value in select._options if value is not Select.NULL]
    assert options, f"{select.id} offers no choice"
    return options[0]


def _fill(form, name_value: str, table: str, *, optional: bool, git_provider: str = "") -> None:
    """Fill the required fields of `table`'s form, and its optional ones if asked."""
    form.query_one("#field-name", Input).value = name_value
    if table == "hosts":
        form.query_one("#field-ip", Input).value = "127.0.0.9"
        if optional:
            form.query_one("#field-description", Input).value = "made by a form test"
            form.query_one("#field-user", Input).value = "deploy"
    elif table == "repositories":
        provider = form.query_one("#field-provider_id")
        if isinstance(provider, Select):
            provider.value = _first_option(provider)
        else:
            provider.value = git_provider
        if optional:
            form.query_one("#field-url", Input).value = "https://git.example.invalid/a/b.git"
            form.query_one("#field-language", Input).value = "python"
    elif table == "deployments":
        form.query_one("#field-scripts_path", TextArea).text = "deploy.sh"
        if optional:
            repository = form.query_one("#field-repository_id", Select)
            repository.value = _first_option(repository)
            hosts = form.query_one("#field-host_ids", SelectionList)
            hosts.select(hosts.get_option_at_index(0))
            form.query_one("#field-environment_vars", TextArea).text = "LEVEL=info"
            form.query_one("#field-rollout_batch_size", Input).value = "25%"
            form.query_one("#field-rollout_max_failures", Input).value = "1"
    elif table == "cicd_providers":
        form.query_one("#field-url", Input).value = "http://127.0.0.1:9"
        form.query_one("#field-config", TextArea).text = '{"username": "ci", "api_token": "form-test-token"}'
        if optional:
            form.query_one("#field-port", Input).value = "8080"


# Keys to the list; providers are one key (p) away from the CI/CD view (5, its jobs).
WRITABLE = [("2", "hosts"), ("3", "repositories"), ("4", "deployments"), ("5 p", "cicd_providers")]


@pytest.mark.parametrize("optional", [False, True], ids=["required-only", "optional-filled"])
@pytest.mark.parametrize(("key", "table"), WRITABLE, ids=[t for _, t in WRITABLE])
async def test_every_form_opens_saves_and_reopens_for_edit(
    backend, backend_info, key, table, optional
):
    app = make_app(backend)
    name = f"form-{table[:4]}-{uuid.uuid4().hex[:6]}"
    try:
        async with app.run_test(size=SIZE) as pilot:
            await ready(pilot)
            await pilot.press(*key.split())
            await wait_for(
                pilot,
                lambda: isinstance(app.screen, ResourceScreen) and app.screen.spec.table == table,
            )
            screen = app.screen
            await pilot.press("c")
            await wait_for(pilot, lambda: type(app.screen).__name__ == "FormScreen", what="form")
            (git_provider,) = _db(
                backend_info,
                "select g.id::text from git_providers g join profiles p on p.id = g.profile_id"
                " join auth.users u on u.id = p.id where u.email = 'admin@acme.test' limit 1",
            )[0]
            _fill(app.screen, name, table, optional=optional, git_provider=git_provider)
            await pilot.press("ctrl+s")
            await wait_for(pilot, lambda: app.screen is screen, what=f"{table} form saved")
            rows = _db(backend_info, f"select id from {table} where name = %s", (name,))  # noqa: S608
            assert len(rows) == 1, f"the {table} row was saved once"
            row_id = rows[0][0]

            # Edit the row just made: the form opens with its values and saves a change.
            table_widget = screen.query_one("ResourceTable")
            await wait_for(pilot, lambda: table_widget.move_to(str(row_id)), what="row arrives")
            await pilot.press("e")
            await wait_for(pilot, lambda: type(app.screen).__name__ == "FormScreen", what="edit")
            form = app.screen
            assert form.query_one("#field-name", Input).value == name
            form.query_one("#field-name", Input).value = f"{name}-x"
            await pilot.press("ctrl+s")
            await wait_for(pilot, lambda: app.screen is screen, what=f"{table} edit saved")
            assert _db(backend_info, f"select 1 from {table} where name = %s", (f"{name}-x",))  # noqa: S608
    finally:
        _db(backend_info, f"delete from {table} where name like %s", (f"{name}%",))  # noqa: S608


async def test_editing_a_deployment_without_cicd_provider_opens(backend, backend_info):
    app = make_app(backend)
    name = f"bare-{uuid.uuid4().hex[:6]}"
    try:
        async with app.run_test(size=SIZE) as pilot:
            await ready(pilot)
            (dep_id,) = _db(
                backend_info,
                "insert into deployments (name, team_id, tenant_id, scripts_path)"
                " select %s, id, tenant_id, array['a.sh'] from teams where id = %s returning id",
                (name, app.store.team_id),
            )[0]
            await pilot.press("4")
            await wait_for(pilot, lambda: isinstance(app.screen, ResourceScreen))
            table_widget = app.screen.query_one("ResourceTable")
            await wait_for(pilot, lambda: table_widget.move_to(str(dep_id)), what="deployment row")
            await pilot.press("e")
            await wait_for(pilot, lambda: type(app.screen).__name__ == "FormScreen", what="edit")
            assert app.screen.query_one("#field-cicd_provider_id", Select).value is Select.NULL
            assert app.screen.query_one("#field-repository_id", Select).value is Select.NULL
    finally:
        _db(backend_info, "delete from deployments where name = %s", (name,))


async def test_host_form_refuses_names_the_cli_cannot_address_and_has_no_status(backend):
    app = make_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("2")
        await wait_for(pilot, lambda: isinstance(app.screen, ResourceScreen))
        screen = app.screen
        await pilot.press("c")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "FormScreen", what="form")
        form = app.screen
        assert not form.query("#field-status"), "status belongs to health checks"
        assert app.focused is form.query_one("#field-name"), "the first field has focus"
        # Digits typed into the form stay in it (they used to switch views).
        await pilot.press(*"nc keep 01 !!")
        assert form.query_one("#field-name", Input).value == "nc keep 01 !!"
        assert app.screen is form
        form.query_one("#field-ip", Input).value = "127.0.0.9"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: "letters, digits" in str(form.query_one("#name-error").content))
        assert app.screen is form and app.screen is not screen


async def test_delete_confirmation_names_one_repository(backend):
    app = make_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("3")
        await wait_for(pilot, lambda: isinstance(app.screen, ResourceScreen))
        await pilot.press("ctrl+d")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "ConfirmScreen")
        question = str(app.screen.query_one("#question").content)
        assert question.startswith("Delete repository "), question
        dialog = app.screen.query_one("#dialog")
        assert dialog.outer_size.height < SIZE[1] // 2, "sized to its content"
        await pilot.press("n")


async def test_the_deployment_form_with_its_rollout_fits_in_40_rows(backend, backend_info):
    app = make_app(backend)
    async with app.run_test(size=(140, 40)) as pilot:
        await ready(pilot)
        await pilot.press("4")
        await wait_for(pilot, lambda: isinstance(app.screen, ResourceScreen))
        await pilot.press("c")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "FormScreen")
        form = app.screen
        await pilot.pause()
        for field in ("rollout_batch_size", "rollout_max_failures", "host_timeout_seconds"):
            assert form.query_one(f"#field-{field}").region.bottom <= 39, field
        assert form.query_one("#save").region.bottom <= 39, "Save is on screen without scrolling"
        form.query_one("#field-rollout_batch_size", Input).value = "0"
        await pilot.press("ctrl+s")
        await wait_for(
            pilot, lambda: "percentage" in str(form.query_one("#rollout_batch_size-error").content)
        )


@pytest.mark.parametrize(
    ("ip", "user", "problem"),
    [
        ("127.0.0.5root", "deploy", "ip"),  # a mistyped address is not a host name
        ("127.0.0.9", "not an ip!", "user"),
        ("127.0.0.9", "ops; rm -rf /", "user"),
    ],
)
def test_the_host_form_refuses_mistyped_addresses_and_login_names(ip, user, problem):
    from pydantic import ValidationError

    from opstui.models import HostForm

    with pytest.raises(ValidationError) as refused:
        HostForm(name="web-09", ip=ip, user=user)
    assert refused.value.errors()[0]["loc"] == (problem,)
    assert HostForm(name="web-09", ip="lab-web-01.example", user="CORP\\admin").user == "CORP\\admin"
