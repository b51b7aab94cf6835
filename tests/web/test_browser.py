"""The dashboard in a real Chromium against a real server, on each backend."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import httpx
import sqlalchemy as sa
from playwright.sync_api import Page, expect

from tasktrail import Trail
from tasktrail.schema import events
from tasktrail.web.routes import TIMELINE_LIMIT
from tests.support.polling import eventually
from tests.web.apps import EVIL_ERROR, EVIL_NAME, EVIL_PARAM, EVIL_STEP
from tests.web.conftest import ARTIFACTS


def status_of(http: httpx.Client, task_id: str) -> str:
    status: str = http.get(f"/api/v1/tasks/{task_id}").json()["status"]
    return status


def events_of(http: httpx.Client, task_id: str) -> list[dict[str, object]]:
    events: list[dict[str, object]] = http.get(f"/api/v1/tasks/{task_id}/events").json()
    return events


def test_progress_moves_live_then_cancel_and_retry_from_the_page(
    page: Page, server: str, http: httpx.Client, web_trail: Trail
) -> None:
    page.goto(server + "/")
    expect(page.locator("h1")).to_have_text("Tasks")
    created = http.post("/api/v1/tasks", json={"name": "web.long", "params": {}})
    task_id = created.json()["id"]
    eventually(lambda: status_of(http, task_id) == "running")
    expect(page.locator('[data-count="running"] b')).to_have_text("1")

    page.goto(f"{server}/tasks/{task_id}")
    task = page.locator(f'article[data-task-id="{task_id}"]')
    expect(task.locator('h1 [data-field="status"]')).to_have_text("running")
    bar = task.locator('.progress progress[data-field="progress"]')
    start = float(bar.evaluate("node => node.value"))
    page.evaluate("window.notReloaded = true")
    page.wait_for_function(
        "start => document.querySelector('.progress progress').value >= start + 5", arg=start
    )
    expect(page.locator("#task-step")).to_have_text(re.compile(r"step \d+"))
    assert page.evaluate("window.notReloaded === true"), "the page reloaded to show progress"
    expect(page.locator("#retry")).to_be_disabled()

    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#cancel").click()
    expect(page.locator('h1 [data-field="status"]')).to_have_text("cancelled")
    expect(page.locator("#cancel")).to_be_disabled()
    expect(page.locator("#retry")).to_be_enabled()

    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#retry").click()
    timeline = page.locator("#timeline")
    expect(timeline).to_contain_text("cancelled → queued")
    badge = page.locator('h1 [data-field="status"]')
    # The retried run is short: the badge may already have moved on from queued.
    expect(badge).to_have_text(re.compile(r"^(queued|running|completed)$"))
    expect(badge).to_have_text("completed", timeout=30_000)
    expect(page.locator("#result")).to_contain_text('"attempt": 2')
    ARTIFACTS.mkdir(exist_ok=True)
    backend = web_trail.store.dialect
    page.screenshot(path=str(ARTIFACTS / f"dashboard-task-page-{backend}.png"), full_page=True)
    assert status_of(http, task_id) == "completed"


def test_a_dismissed_confirmation_changes_nothing(
    page: Page, server: str, http: httpx.Client
) -> None:
    task_id = http.post("/api/v1/tasks", json={"name": "web.long", "params": {}}).json()["id"]
    eventually(lambda: status_of(http, task_id) == "running")
    page.goto(f"{server}/tasks/{task_id}")
    page.evaluate("window.notReloaded = true")
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.locator("#cancel").click()
    # Let live progress arrive after the click: a form that went out would have navigated.
    start = float(page.locator(".progress progress").evaluate("node => node.value"))
    page.wait_for_function(
        "start => document.querySelector('.progress progress').value >= start + 2", arg=start
    )
    assert page.evaluate("window.notReloaded === true")
    expect(page.locator("#cancel")).to_be_enabled()
    assert status_of(http, task_id) == "running"
    assert "cancel_requested" not in [e["type"] for e in events_of(http, task_id)]
    http.post(f"/api/v1/tasks/{task_id}/cancel")


def elements_inside(page: Page, selector: str) -> list[str]:
    """The tag names of every element inside ``selector``'s element: user text shown as
    text creates none, whatever the Content Security Policy would let run."""
    tags: list[str] = page.locator(selector).evaluate(
        "node => Array.from(node.querySelectorAll('*'), child => child.tagName)"
    )
    return tags


def test_user_text_is_shown_as_text_and_never_runs(
    page: Page, server: str, web_trail: Trail
) -> None:
    task = web_trail.submit(EVIL_NAME, {"html": EVIL_PARAM})
    eventually(lambda: web_trail.get(task.id).status.value == "failed")

    page.goto(f"{server}/tasks/{task.id}")
    expect(page.locator("#task-name")).to_have_text(EVIL_NAME)
    expect(page.locator("#params")).to_contain_text(EVIL_PARAM)
    expect(page.locator("#task-step")).to_have_text(EVIL_STEP)
    expect(page.locator("#error")).to_contain_text(EVIL_ERROR)
    expect(page.locator("#traceback")).to_contain_text(EVIL_ERROR)
    for selector in ("#task-name", "#params", "#task-step", "#error", "#traceback"):
        assert elements_inside(page, selector) == [], f"markup in {selector} became elements"
    assert page.locator("#error").text_content() == f"RuntimeError: {EVIL_ERROR}"
    assert page.locator("b", has_text="bold?").count() == 0
    assert page.evaluate("typeof window.xss") == "undefined"

    page.goto(server + "/")
    row = f'tr[data-task-id="{task.id}"]'
    expect(page.locator(f'{row} [data-field="name"]')).to_have_text(EVIL_NAME)
    expect(page.locator(f'{row} [data-field="step"]')).to_have_text(EVIL_STEP)
    assert elements_inside(page, f'{row} [data-field="name"]') == []
    assert elements_inside(page, f'{row} [data-field="step"]') == []
    assert page.evaluate("typeof window.xss") == "undefined"


def test_a_hostile_step_pushed_live_is_shown_as_text(
    page: Page, parked_server: str, web_trail: Trail
) -> None:
    task = web_trail.submit("web.echo", {})
    claimed = web_trail.store.claim(worker="test")
    assert claimed is not None and claimed.id == task.id
    tasks_tab = page.context.new_page()
    tasks_tab.goto(parked_server + "/")
    page.goto(f"{parked_server}/tasks/{task.id}")
    expect(page.locator('h1 [data-field="status"]')).to_have_text("running")

    web_trail.store.record_progress(task.id, claimed.attempts, 30, EVIL_STEP)

    expect(page.locator("#task-step")).to_have_text(EVIL_STEP)
    assert elements_inside(page, "#task-step") == []
    step = tasks_tab.locator(f'tr[data-task-id="{task.id}"] [data-field="step"]')
    expect(step).to_have_text(EVIL_STEP)
    assert elements_inside(tasks_tab, f'tr[data-task-id="{task.id}"] [data-field="step"]') == []
    for tab in (page, tasks_tab):
        assert tab.locator("img").count() == 0
        assert tab.evaluate("typeof window.xss") == "undefined"


def test_a_task_with_more_events_than_the_page_shows_does_not_reload_in_a_loop(
    page: Page, parked_server: str, web_trail: Trail
) -> None:
    task = web_trail.submit("web.fail", {})
    # Old failures, each with a traceback, before the real one: more events than any page
    # shows. A page that resumed its stream inside this history would replay transitions
    # and reload for ever.
    old = 10_050
    now = datetime.now(UTC)
    with web_trail.store.writing() as conn:
        conn.execute(
            sa.insert(events),
            [
                {
                    "task_id": task.id,
                    "type": "transition",
                    "from_status": "running",
                    "to_status": "scheduled",
                    "message": f"old failure {n}",
                    "data": {"transition": "fail", "traceback": f"OLD TRACEBACK {n}"},
                    "created_at": now,
                }
                for n in range(old)
            ],
        )
    web_trail.run_pending()
    assert web_trail.get(task.id).status.value == "failed"
    total = len(web_trail.events(task.id, limit=20_000))

    page.goto(f"{parked_server}/tasks/{task.id}")
    expect(page.locator("#omitted")).to_contain_text(
        f"{total - TIMELINE_LIMIT} older events not shown"
    )
    timeline = page.locator("#timeline tbody tr")
    expect(timeline).to_have_count(TIMELINE_LIMIT)
    expect(timeline.last).to_contain_text("running → failed")
    expect(page.locator("#traceback")).to_contain_text("planned failure")
    expect(page.locator("#traceback")).not_to_contain_text("OLD TRACEBACK")

    web_trail.retry(task.id)
    expect(page.locator('h1 [data-field="status"]')).to_have_text("queued")
    expect(timeline.last).to_contain_text("failed → queued")
    page.evaluate("window.notReloaded = true")
    page.wait_for_timeout(3000)
    assert page.evaluate("window.notReloaded === true"), "the page keeps reloading"

    claimed = web_trail.store.claim(worker="test")
    assert claimed is not None and claimed.id == task.id
    expect(page.locator('h1 [data-field="status"]')).to_have_text("running")
    page.evaluate("window.notReloaded = true")
    web_trail.store.record_progress(task.id, claimed.attempts, 42, "live step")
    expect(page.locator("#task-step")).to_have_text("live step")
    expect(page.locator('.progress [data-field="percent"]')).to_have_text("42%")
    page.wait_for_timeout(2000)
    assert page.evaluate("window.notReloaded === true"), "the page keeps reloading"


def test_the_tasks_page_adds_and_drops_rows_live(
    page: Page, parked_server: str, web_trail: Trail
) -> None:
    queued = page.context.new_page()
    queued.goto(f"{parked_server}/?status=queued")
    page.goto(parked_server + "/")
    for tab in (page, queued):
        expect(tab.locator("#task-rows")).to_contain_text("No tasks.")
        tab.evaluate("window.notReloaded = true")

    with httpx.Client(base_url=parked_server, timeout=20) as http:
        task_id = http.post("/api/v1/tasks", json={"name": "web.echo", "params": {}}).json()["id"]

    for tab in (page, queued):
        row = tab.locator(f'#task-rows tr[data-task-id="{task_id}"]')
        expect(row.locator('[data-field="status"]')).to_have_text("queued")
        expect(tab.locator('[data-count="queued"] b')).to_have_text("1")

    assert web_trail.run_pending() == 1
    expect(page.locator(f'tr[data-task-id="{task_id}"] [data-field="status"]')).to_have_text(
        "completed"
    )
    expect(page.locator('[data-count="completed"] b')).to_have_text("1")
    expect(queued.locator(f'tr[data-task-id="{task_id}"]')).to_have_count(0)
    expect(queued.locator("#task-rows")).to_contain_text("No tasks.")
    expect(queued.locator('[data-count="queued"] b')).to_have_text("0")
    for tab in (page, queued):
        assert tab.evaluate("window.notReloaded === true"), "the page reloaded"
