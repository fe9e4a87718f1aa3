"""RestClient against the local Tinker server: every method sync and async, pagination, archive URL 302 / 503 loop."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pytest

import tinkex
from tinkex.api_future import APIFuture
from tinkex.errors import InternalServerError, NotFoundError, UnprocessableEntityError
from tinkex.rest_client import ArchiveRetryConfig, RestClient, parse_tinker_path
from tinkex.testing import FaultRule, LocalServer

API_KEY = "tml-rest-client-test"
BASE_MODEL = "Qwen/Qwen3-8B"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class World:
    server: LocalServer
    client: tinkex.Client
    rest: RestClient
    run_id: str
    weights_path: str
    sampler_path: str
    run_ids: list[str]


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    with LocalServer() as server:
        client = tinkex.Client(base_url=server.base_url, api_key=API_KEY)
        training = client.create_lora_training_client(BASE_MODEL, rank=8)
        weights = training.save_state("ckpt-1").result().path
        sampler = training.save_weights_for_sampler("final").result().path
        others = [client.create_lora_training_client(BASE_MODEL, rank=4).model_id for _ in range(2)]
        rest = RestClient(client.holder, archive_retry=ArchiveRetryConfig(max_attempts=6, wait_s=0.01))
        yield World(server, client, rest, training.model_id, weights, sampler, [training.model_id, *others])
        client.close()


@pytest.fixture(autouse=True)
def clean_faults(world: World) -> Iterator[None]:
    yield
    world.server.faults.clear()


def test_training_run_methods_return_futures(world: World) -> None:
    future = world.rest.get_training_run(world.run_id)
    assert isinstance(future, APIFuture)
    run = future.result(timeout=10)
    assert run.training_run_id == world.run_id
    assert run.base_model == BASE_MODEL and run.lora_rank == 8 and not run.corrupted
    assert run.last_checkpoint is not None and run.last_checkpoint.tinker_path == world.weights_path
    assert run.last_sampler_checkpoint is not None and run.last_sampler_checkpoint.tinker_path == world.sampler_path

    by_path = world.rest.get_training_run_by_tinker_path(world.sampler_path, "accessible").result(timeout=10)
    assert by_path.training_run_id == world.run_id


def test_access_scope_is_sent_as_a_query_parameter(world: World) -> None:
    with pytest.raises(UnprocessableEntityError) as caught:
        world.rest.get_training_run(world.run_id, "everything").result(timeout=10)  # type: ignore[arg-type]
    assert "access_scope" in caught.value.message


def test_list_training_runs_pages_with_limit_and_offset(world: World) -> None:
    page = world.rest.list_training_runs(limit=1, offset=1).result(timeout=10)
    assert [r.training_run_id for r in page.training_runs] == world.run_ids[1:2]
    assert (page.cursor.offset, page.cursor.limit, page.cursor.total_count) == (1, 1, 3)
    default = world.rest.list_training_runs().result(timeout=10)
    assert default.cursor.limit == 20 and [r.training_run_id for r in default.training_runs] == world.run_ids


def test_checkpoint_listings(world: World) -> None:
    listed = world.rest.list_checkpoints(world.run_id).result(timeout=10)
    paths = [c.tinker_path for c in listed.checkpoints]
    assert world.weights_path in paths and world.sampler_path in paths
    kinds = {c.tinker_path: (c.checkpoint_id, c.checkpoint_type) for c in listed.checkpoints}
    assert kinds[world.weights_path] == ("weights/ckpt-1", "training")
    assert kinds[world.sampler_path] == ("sampler_weights/final", "sampler")

    user = world.rest.list_user_checkpoints(limit=1, offset=0).result(timeout=10)
    assert len(user.checkpoints) == 1 and user.cursor is not None and user.cursor.limit == 1
    assert user.cursor.total_count >= 2


def test_sessions_samplers_and_weights_info(world: World) -> None:
    sessions = world.rest.list_sessions().result(timeout=10).sessions
    assert len(sessions) == 1
    session = world.rest.get_session(sessions[0]).result(timeout=10)
    assert session.training_run_ids[:3] == world.run_ids

    sampler_client = world.client.create_sampling_client(model_path=world.sampler_path)
    sampler = world.rest.get_sampler(sampler_client.sampling_session_id).result(timeout=10)
    assert (sampler.base_model, sampler.model_path) == (BASE_MODEL, world.sampler_path)

    info = world.rest.get_weights_info_by_tinker_path(world.weights_path).result(timeout=10)
    assert (info.base_model, info.is_lora, info.lora_rank) == (BASE_MODEL, True, 8)


def test_publish_unpublish_ttl_and_delete(world: World) -> None:
    training = world.client.create_lora_training_client(BASE_MODEL, rank=2)
    path = training.save_state("managed").result(timeout=10).path

    def record() -> tinkex.types.Checkpoint:
        (found,) = [c for c in world.rest.list_checkpoints(training.model_id).result(timeout=10).checkpoints if c.tinker_path == path]
        return found

    world.rest.publish_checkpoint_from_tinker_path(path).result(timeout=10)
    assert record().public
    world.rest.unpublish_checkpoint_from_tinker_path(path).result(timeout=10)
    assert not record().public

    before = datetime.now(timezone.utc)
    world.rest.set_checkpoint_ttl_from_tinker_path(path, 3600).result(timeout=10)
    expires = record().expires_at
    assert expires is not None and before + timedelta(seconds=3590) < expires < before + timedelta(seconds=3700)
    world.rest.set_checkpoint_ttl_from_tinker_path(path, None).result(timeout=10)
    assert record().expires_at is None

    world.rest.delete_checkpoint_from_tinker_path(path).result(timeout=10)
    assert path not in [c.tinker_path for c in world.rest.list_checkpoints(training.model_id).result(timeout=10).checkpoints]
    with pytest.raises(NotFoundError) as caught:
        world.rest.delete_checkpoint(training.model_id, "weights/managed").result(timeout=10)
    assert caught.value.status_code == 404 and "managed" in caught.value.message


def test_ttl_must_be_positive(world: World) -> None:
    with pytest.raises(ValueError, match="ttl_seconds must be a positive"):
        world.rest.set_checkpoint_ttl_from_tinker_path(world.weights_path, 0).result(timeout=10)


def test_checkpoint_id_without_kind_is_named(world: World) -> None:
    with pytest.raises(ValueError, match="lacks its kind: expected 'weights/<name>'"):
        world.rest.delete_checkpoint(world.run_id, "ckpt-1").result(timeout=10)


@pytest.mark.parametrize(
    ("given", "run_id", "checkpoint_id"),
    [
        ("tinker://sess-1:train:0/weights/ckpt-1", "sess-1:train:0", "weights/ckpt-1"),
        ("  tinker://sess-1:train:0/sampler_weights/final/ \n", "sess-1:train:0", "sampler_weights/final"),
        ("sess-1:train:0/weights/000080", "sess-1:train:0", "weights/000080"),
    ],
)
def test_parse_tinker_path_accepts_every_form(given: str, run_id: str, checkpoint_id: str) -> None:
    parsed = parse_tinker_path(given)
    assert (parsed.training_run_id, parsed.checkpoint_id) == (run_id, checkpoint_id)
    assert parsed.tinker_path == f"tinker://{run_id}/{checkpoint_id}"


@pytest.mark.parametrize(
    ("given", "named"),
    [
        ("tinker://sess-1/ckpt-1", "exactly 3 non-empty segments"),
        ("tinker://sess-1/checkpoints/ckpt-1", "kind 'checkpoints' is not 'weights' or 'sampler_weights'"),
        ("s3://bucket/weights/x", "must start with 'tinker://'"),
    ],
)
def test_parse_errors_name_the_path_and_the_expected_form(given: str, named: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_tinker_path(given)
    assert given in str(caught.value) and named in str(caught.value)


# archive URL ------------------------------------------------------------------------------------------------


def test_archive_url_is_read_from_the_302(world: World) -> None:
    archive = world.rest.get_checkpoint_archive_url_from_tinker_path(world.sampler_path).result(timeout=10)
    assert archive.url.startswith(world.server.base_url + "/download/")
    now = datetime.now(timezone.utc)
    assert now + timedelta(minutes=13) < archive.expires <= now + timedelta(minutes=16)
    received = world.server.ledger.received("get_checkpoint_archive_url")[-1]
    assert received.status == 302 and "application/gzip" in received.headers["accept"]


def test_archive_url_expires_header_is_parsed(world: World) -> None:
    headers = {"location": "https://storage.example/a.tar?sig=1", "expires": "Wed, 21 Oct 2026 07:28:00 GMT"}
    world.server.faults.add(FaultRule(endpoint="get_checkpoint_archive_url", status=302, headers=headers, body=b""))
    archive = world.rest.get_checkpoint_archive_url(world.run_id, "sampler_weights/final").result(timeout=10)
    assert archive.url == "https://storage.example/a.tar?sig=1"
    assert archive.expires == datetime(2026, 10, 21, 7, 28, tzinfo=timezone.utc)


def test_archive_url_unparseable_expires_defaults_to_15_minutes(world: World) -> None:
    headers = {"location": "https://storage.example/b.tar", "expires": "tomorrow-ish"}
    world.server.faults.add(FaultRule(endpoint="get_checkpoint_archive_url", status=302, headers=headers, body=b""))
    archive = world.rest.get_checkpoint_archive_url_from_tinker_path(world.sampler_path).result(timeout=10)
    now = datetime.now(timezone.utc)
    assert now + timedelta(minutes=14) < archive.expires <= now + timedelta(minutes=15, seconds=1)


def test_archive_url_waits_while_the_archive_is_built(world: World) -> None:
    building = FaultRule(
        endpoint="get_checkpoint_archive_url", status=503, headers={"x-should-retry": "false"}, count=2
    )
    in_progress = FaultRule(
        endpoint="get_checkpoint_archive_url",
        status=409,
        headers={"x-should-retry": "false"},
        body={"detail": "Archive creation already in progress"},
    )
    world.server.faults.add(building, in_progress)
    world.server.ledger.clear()
    archive = world.rest.get_checkpoint_archive_url_from_tinker_path(world.sampler_path).result(timeout=10)
    assert "/download/" in archive.url
    statuses = [r.status for r in world.server.ledger.received("get_checkpoint_archive_url")]
    assert statuses == [503, 503, 409, 302]


def test_archive_url_gives_up_after_max_attempts(world: World) -> None:
    world.server.faults.add(
        FaultRule(endpoint="get_checkpoint_archive_url", status=503, headers={"x-should-retry": "false"}, count=10)
    )
    world.server.ledger.clear()
    with pytest.raises(InternalServerError) as caught:
        world.rest.get_checkpoint_archive_url_from_tinker_path(world.sampler_path).result(timeout=10)
    assert caught.value.status_code == 503
    assert any("still being built after 6 requests" in note for note in caught.value.__notes__)
    assert len(world.server.ledger.received("get_checkpoint_archive_url")) == 6


def test_archive_url_rejects_a_2xx_and_a_302_without_location(world: World) -> None:
    world.server.faults.add(FaultRule(endpoint="get_checkpoint_archive_url", status=200, body={"url": "x"}))
    with pytest.raises(RuntimeError, match="Expected a redirect response, got: 200"):
        world.rest.get_checkpoint_archive_url_from_tinker_path(world.sampler_path).result(timeout=10)
    world.server.faults.add(FaultRule(endpoint="get_checkpoint_archive_url", status=302, body=b""))
    with pytest.raises(RuntimeError, match="302 without a Location header"):
        world.rest.get_checkpoint_archive_url_from_tinker_path(world.sampler_path).result(timeout=10)


def test_archive_url_other_errors_are_raised_at_once(world: World) -> None:
    world.server.ledger.clear()
    with pytest.raises(NotFoundError):
        world.rest.get_checkpoint_archive_url(world.run_id, "sampler_weights/missing").result(timeout=10)
    assert len(world.server.ledger.received("get_checkpoint_archive_url")) == 1


def test_archive_retry_config_is_validated() -> None:
    with pytest.raises(ValueError, match="max_attempts must be >= 1"):
        ArchiveRetryConfig(max_attempts=0)


# async twins and iterators ----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_async_twins_run_on_the_callers_loop(world: World) -> None:
    client = tinkex.Client(base_url=world.server.base_url, api_key=API_KEY)
    try:
        rest = RestClient(client.holder, archive_retry=ArchiveRetryConfig(wait_s=0.01))
        run = await rest.get_training_run_async(world.run_id)
        assert run.training_run_id == world.run_id
        assert (await rest.get_training_run_by_tinker_path_async(world.weights_path)).training_run_id == world.run_id
        assert (await rest.list_training_runs_async(limit=2)).cursor.limit == 2
        assert world.weights_path in [c.tinker_path for c in (await rest.list_checkpoints_async(world.run_id)).checkpoints]
        assert (await rest.list_user_checkpoints_async(limit=1)).cursor is not None
        sessions = (await rest.list_sessions_async()).sessions
        assert (await rest.get_session_async(sessions[0])).training_run_ids[:3] == world.run_ids
        assert (await rest.get_weights_info_by_tinker_path_async(world.sampler_path)).base_model == BASE_MODEL
        archive = await rest.get_checkpoint_archive_url_from_tinker_path_async(world.sampler_path)
        assert "/download/" in archive.url
        direct = await rest.get_checkpoint_archive_url_async(world.run_id, "weights/ckpt-1")
        assert "/download/" in direct.url
        with pytest.raises(NotFoundError):
            await rest.get_sampler_async("no-such-sampler")

        training = await client.create_lora_training_client_async(BASE_MODEL, rank=2)
        path = (await (await training.save_state_async("async-managed"))).path
        await rest.publish_checkpoint_from_tinker_path_async(path)
        await rest.unpublish_checkpoint_from_tinker_path_async(path)
        await rest.set_checkpoint_ttl_from_tinker_path_async(path, 60)
        await rest.delete_checkpoint_async(training.model_id, "weights/async-managed")
        with pytest.raises(NotFoundError):
            await rest.delete_checkpoint_from_tinker_path_async(path)
    finally:
        await client.aclose()


@pytest.mark.anyio
async def test_iterators_page_through_everything(world: World) -> None:
    client = tinkex.Client(base_url=world.server.base_url, api_key=API_KEY)
    try:
        rest = client.create_rest_client()
        runs = [run.training_run_id async for run in rest.iter_training_runs(page_size=1)]
        everything = (await rest.list_training_runs_async(limit=100)).training_runs
        assert runs == [r.training_run_id for r in everything] and len(runs) >= 3
        checkpoints = [c.tinker_path async for c in rest.iter_user_checkpoints(page_size=1)]
        assert checkpoints == [c.tinker_path for c in (await rest.list_user_checkpoints_async()).checkpoints]
        assert len(checkpoints) >= 2
    finally:
        await client.aclose()
