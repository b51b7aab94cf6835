"""The pages over real HTTP, on each backend: filters, counts, keyset pages, the resource
page's status check, the overview's aggregates, and mounting into an app of your own."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI

import tasktrail.api
import tasktrail.web
from tasktrail import Link, TaskContext, Trail
from tasktrail.web.routes import PAGE_SIZE
from tests.support.server import serve

ROW = re.compile(r'<tr data-task-id="([0-9a-z]+)">')


@pytest.fixture
def parked(web_trail: Trail) -> Iterator[httpx.Client]:
    """A server with no worker: tasks stay where the test puts them."""
    app = FastAPI()
    tasktrail.api.mount(app, web_trail, token="")
    tasktrail.web.mount(app, web_trail, token="")
    with serve(app) as url, httpx.Client(base_url=url, timeout=20) as http:
        yield http


def rows(html: str) -> list[str]:
    return ROW.findall(html)


def test_the_tasks_page_filters_counts_and_pages_by_keyset(
    web_trail: Trail, parked: httpx.Client
) -> None:
    echoes = [
        web_trail.submit("web.echo", {"value": n}, run=False).id for n in range(PAGE_SIZE + 3)
    ]
    linked = web_trail.submit("web.fail", {}, links=[Link("roadmap", "r1")], queue="slow")

    first = parked.get("/")
    assert first.status_code == 200
    assert rows(first.text) == [linked.id, *reversed(echoes)][:PAGE_SIZE]
    assert re.search(r'data-count="created">created <b>53</b>', first.text)
    assert re.search(r'data-count="queued">queued <b>1</b>', first.text)
    next_url = re.search(r'href="([^"]+)" rel="next"', first.text)
    assert next_url is not None
    second = parked.get(next_url.group(1).replace("&amp;", "&"))
    assert rows(second.text) == list(reversed(echoes))[PAGE_SIZE - 1 :]
    assert 'rel="next"' not in second.text

    filtered = parked.get("/", params={"name": "web.echo"}).text
    next_url = re.search(r'href="([^"]+)" rel="next"', filtered)
    assert next_url is not None
    page_two = parked.get(next_url.group(1).replace("&amp;", "&")).text
    assert rows(page_two) == list(reversed(echoes))[PAGE_SIZE:]
    assert 'href="/?name=web.echo" rel="first"' in page_two

    assert rows(parked.get("/", params={"status": "queued"}).text) == [linked.id]
    assert rows(parked.get("/", params={"queue": "slow"}).text) == [linked.id]
    assert rows(parked.get("/", params={"name": "web.fail"}).text) == [linked.id]
    assert rows(parked.get("/", params={"resource": "roadmap:r1"}).text) == [linked.id]
    assert parked.get("/", params={"resource": "no-colon"}).status_code == 422


def test_the_task_page_enables_only_what_the_state_machine_allows(
    web_trail: Trail, parked: httpx.Client
) -> None:
    waiting = web_trail.submit("web.echo", {}, run=False)
    html = parked.get(f"/tasks/{waiting.id}").text
    assert re.search(r'id="cancel">', html)
    assert re.search(r'id="retry" disabled>', html)

    web_trail.cancel(waiting.id)
    html = parked.get(f"/tasks/{waiting.id}").text
    assert re.search(r'id="cancel" disabled>', html)
    assert re.search(r'id="retry">', html)
    assert re.search(r'id="retry-failed" disabled>', html)
    assert parked.get("/tasks/nope").status_code == 404


def test_retry_failed_items_from_the_page_reruns_only_those(
    web_trail: Trail, parked: httpx.Client
) -> None:
    @web_trail.task("web.items")
    def with_items(ctx: TaskContext, keys: list[str]) -> None:
        for item in ctx.items(keys):
            with item:
                if item.key == "b":
                    raise RuntimeError("b failed")

    task = web_trail.submit("web.items", {"keys": ["a", "b"]})
    web_trail.run_pending()
    html = parked.get(f"/tasks/{task.id}").text
    assert "partial_failure" in html
    assert re.search(r'id="retry-failed">Retry failed items \(1\)', html)
    assert 'class="item-failed"><td>b</td>' in html
    parked.get("/login")
    form = {"csrf_token": parked.cookies["tasktrail_csrf"]}

    response = parked.post(f"/tasks/{task.id}/retry-failed-items", data=form)

    assert response.status_code == 303
    assert web_trail.get(task.id).status.value == "queued"
    assert [(i.key, i.status.value) for i in web_trail.items(task.id)] == [
        ("a", "completed"),
        ("b", "pending"),
    ]


def test_the_resource_page_lists_tasks_with_roles_and_highlights_stale_items(
    web_trail: Trail, parked: httpx.Client
) -> None:
    @web_trail.stale_probe("roadmap", item_type="concept")
    def probe(roadmap_id: str) -> list[dict[str, str]]:
        return [
            {"item": "c1", "status": "generating"},
            {"item": "c7", "status": "generating"},
        ]

    older = web_trail.submit("web.echo", {}, links=[Link("roadmap", "r1", role="creation")])
    web_trail.run_pending()
    newer = web_trail.submit(
        "web.echo", {}, links=[Link("roadmap", "r1", role="retry"), Link("concept", "c1")]
    )

    html = parked.get("/resources/roadmap/r1").text

    assert rows(html) == [newer.id, older.id]
    assert "<td>retry</td>" in html
    assert "<td>creation</td>" in html
    assert re.findall(r'<tr class="stale-item"><td>([^<]*)</td>', html) == ["c7"]


BAR = re.compile(r'height="([0-9.e-]+)" class="bar"><title>([^<]*)</title>')


def charts_of(html: str, queue: str) -> tuple[list[tuple[float, str]], list[tuple[float, str]]]:
    """The (height, label) bars of one queue's throughput and failure-rate charts."""
    section = re.search(rf'<section class="queue-charts" data-queue="{queue}">(.*?)</section>',
                        html, re.S)  # fmt: skip
    assert section is not None, f"no charts for queue {queue}"
    throughput, failures = section.group(1).split("</figure>")[:2]
    return (
        [(float(h), label) for h, label in BAR.findall(throughput)],
        [(float(h), label) for h, label in BAR.findall(failures)],
    )


def without_times(
    charts: tuple[list[tuple[float, str]], list[tuple[float, str]]],
) -> list[list[tuple[float, str]]]:
    """``charts_of``'s bars with each label's window ("19:25-19:30: ") left out."""
    return [[(height, label.split(": ", 1)[1]) for height, label in bars] for bars in charts]


def test_a_resource_id_with_slashes_has_its_page(web_trail: Trail, parked: httpx.Client) -> None:
    task = web_trail.submit("web.echo", {}, links=[Link("document", "docs/a.md", role="index")])
    page_html = parked.get(f"/tasks/{task.id}").text
    link = re.search(r'href="([^"]*/resources/document/[^"]*)"', page_html)
    assert link is not None

    for url in (link.group(1), "/resources/document/docs%2Fa.md"):
        answer = parked.get(url)
        assert answer.status_code == 200, url
        assert rows(answer.text) == [task.id]


def test_the_resource_page_pages_by_keyset(web_trail: Trail, parked: httpx.Client) -> None:
    linked = [
        web_trail.submit("web.echo", {}, links=[Link("roadmap", "r 2", role="bulk")], run=False).id
        for _ in range(PAGE_SIZE + 2)
    ]
    newest_first = list(reversed(linked))

    first = parked.get("/resources/roadmap/r%202").text
    assert rows(first) == newest_first[:PAGE_SIZE]
    assert 'rel="first"' not in first
    next_url = re.search(r'href="([^"]+)" rel="next"', first)
    assert next_url is not None
    second = parked.get(next_url.group(1).replace("&amp;", "&")).text
    assert rows(second) == newest_first[PAGE_SIZE:]
    assert 'rel="next"' not in second
    assert 'href="/resources/roadmap/r%202" rel="first"' in second


def test_the_overview_shows_queues_throughput_and_lost_workers(
    web_trail: Trail, parked: httpx.Client
) -> None:
    web_trail.submit("web.echo", {})
    web_trail.submit("web.fail", {})
    web_trail.run_pending()
    for value in range(2):
        web_trail.submit("web.echo", {"value": value}, queue="fast")
    web_trail.run_pending(queues=["fast"])
    waiting = web_trail.submit("web.echo", {}, queue="slow")
    lost = web_trail.submit("web.echo", {})
    assert web_trail.store.claim(worker="gone", queues=["default"]) is not None
    web_trail.store.reap_lost(0)

    html = parked.get("/overview").text

    assert "<td>slow</td>" in html
    assert re.search(r'<td class="lag">\d+s</td>', html)
    # Every run ended in the last five minutes: the last bar of each chart. The default
    # queue: 1 completed, 2 failed (the lost run ended failed too); fast: 2 completed.
    runs, failures = charts_of(html, "default")
    assert [h for h, _ in runs] == [0.0] * 11 + [40.0]
    assert runs[-1][1].endswith(": 1 completed")
    assert [round(h, 2) for h, _ in failures] == [0.0] * 11 + [26.67]  # 67 % of 40
    assert failures[-1][1].endswith(": 67% of 3 failed")
    runs, failures = charts_of(html, "fast")
    assert runs[-1][0] == 40.0
    assert runs[-1][1].endswith(": 2 completed")
    assert [h for h, _ in failures] == [0.0] * 12
    runs, failures = charts_of(html, "slow")
    assert [h for h, _ in runs + failures] == [0.0] * 24
    assert "1 in the hour" in html and "2 in the hour" in html
    assert "2 failed in the hour" in html
    assert lost.id in html
    assert "running → failed" in html
    assert waiting.id not in html
    fragment = parked.get("/fragments/overview")
    assert fragment.status_code == 200
    # The same bars; each window's clock times move on if a minute began between the two.
    assert without_times(charts_of(fragment.text, "default")) == without_times(
        charts_of(html, "default")
    )
    assert 'hx-trigger="every 10s"' in html


def test_mounted_under_a_path_of_your_own(web_trail: Trail) -> None:
    app = FastAPI()
    tasktrail.web.mount(app, web_trail, root="/ops/", token="")
    task = web_trail.submit("web.echo", {}, run=False)
    with serve(app) as url, httpx.Client(base_url=url, timeout=20) as http:
        page = http.get("/ops/")
        assert f'href="/ops/tasks/{task.id}"' in page.text
        assert 'src="/ops/static/dashboard.js"' in page.text
        assert http.get("/ops/static/dashboard.css").status_code == 200
        assert http.get(f"/ops/tasks/{task.id}").status_code == 200
        assert http.get("/").status_code == 404
