"""``tenure bench e2e``'s own logic, without servers: the traffic it posts, how it
decides that a consumer group's lag is bounded, how it reads the sink's accept log,
and its command-line options. (The run itself needs the whole stack: ``tenure bench
e2e --quick``, about 100 s, too long for the suite.)"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import orjson
import pytest

from tenure.bench.e2e import Drive, Step, _accepted, _slopes
from tenure.bench.e2e_traffic import MIX_SIZE, ShopTraffic, customer_of
from tenure.bench.lag import LagSample
from tenure.cli import main


def test_the_traffic_is_mostly_browsing_with_one_sign_up_per_mix() -> None:
    traffic = ShopTraffic("e2e-t")
    calls, signed_up = [], []
    for _ in range(20):
        body, new = traffic.batch(100)
        batch = orjson.loads(body)["batch"]
        assert len(batch) == 100
        calls += batch
        signed_up += new
    kinds = Counter(c.get("event", c["type"]) for c in calls)
    assert kinds["identify"] == kinds["Signed Up"] == len(signed_up) == 2_000 // MIX_SIZE
    assert kinds["Product Viewed"] > 0.8 * len(calls)
    assert len({c["messageId"] for c in calls}) == len(calls)
    identifies = [c for c in calls if c["type"] == "identify"]
    assert [customer_of(c["traits"]["email"]) for c in identifies] == signed_up
    # orders, carts and views are by customers who signed up before
    assert {c["userId"] for c in calls} <= set(signed_up)


def test_an_address_outside_the_bench_is_no_customer() -> None:
    assert customer_of("E2E-x-C1@Bench.Example") == "e2e-x-c1"
    assert customer_of("ada.1@demo7.example") is None


def _sample(at: float, lag: int, produced: int) -> LagSample:
    return LagSample(at, {"g": lag}, {"g": produced})


def _step(samples: list[LagSample]) -> Step:
    drive = Drive(offered=1_000, seconds=10, accepted=10_000)
    return Step(1_000, drive, samples, _slopes(samples), 10.0, {}, 10.0, 10_000)


def test_a_lag_that_goes_up_and_down_is_bounded_and_a_growing_one_is_not() -> None:
    steady = [_sample(t, 500 if t % 2 else 100, 1_000 * t) for t in range(10)]
    assert _step(steady).sustained
    growing = [_sample(t, 200 * t, 1_000 * t) for t in range(10)]
    lag = _slopes(growing)["g"]
    assert (round(lag.slope), round(lag.inflow), lag.last, lag.mean) == (200, 1_000, 1_800, 900)
    assert _step(growing).unbounded == ["g"]
    # an idle topic: a few messages behind, not growing
    assert _step([_sample(t, 3, 7) for t in range(10)]).sustained


def test_a_flat_lag_of_more_than_ten_seconds_of_inflow_is_not_bounded() -> None:
    flat_far_behind = [_sample(t, 12_000, 1_000 * t) for t in range(10)]
    step = _step(flat_far_behind)
    assert step.groups["g"].behind_s == 12.0
    assert step.unbounded == ["g"]


def test_a_step_the_generator_did_not_deliver_is_not_sustained() -> None:
    step = _step([_sample(t, 0, 1_000 * t) for t in range(10)])
    step.drive.accepted = 9_000  # 900/s of 1,000/s offered
    assert not step.sustained


def test_the_accept_log_gives_each_customers_first_email(tmp_path: Path) -> None:
    log = tmp_path / "accepted.tsv"
    log.write_text(
        "10.5\te2e-x-c1@bench.example\tWelcome to Northwind Outfitters, Bench\n"
        "11.0\tada@elsewhere.example,e2e-x-c2@bench.example\tBench, our bestsellers this week\n"
        "12.0\te2e-x-c1@bench.example\tThanks for your order, Bench\n"
    )
    assert _accepted(log) == {
        "e2e-x-c1": (10.5, "demo-welcome-1"),
        "e2e-x-c2": (11.0, "demo-welcome-2"),
    }
    assert _accepted(tmp_path / "missing.tsv") == {}


def test_the_step_options_belong_to_e2e(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "idle", "--steps", "1000,2000"]) == 2
    assert "applies to e2e only" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["bench", "e2e", "--steps", "1000,fast"])


def test_the_sink_logs_when_it_accepted_each_email(tmp_path: Path) -> None:
    import smtplib
    import time

    from tenure.sinks import SmtpSink

    log = tmp_path / "accepted.tsv"
    sink = SmtpSink(keep_in_memory=False, accept_log=log).start()
    try:
        before = time.time()
        with smtplib.SMTP("127.0.0.1", sink.port) as client:
            message = b"Subject: Welcome to Gold, Bench\r\n\r\nx"
            client.sendmail("bench@example.com", ["e2e-x-c9@bench.example"], message)
        after = time.time()
    finally:
        sink.stop()
    accepted = _accepted(log)
    assert list(accepted) == ["e2e-x-c9"]
    at, template = accepted["e2e-x-c9"]
    assert before <= at <= after
    assert template == "demo-gold"


def test_the_cpu_table_shows_each_part_its_total_and_the_rest_of_the_machine() -> None:
    from tenure.bench.e2e import MACHINE, _cpu_table

    used = {"journey": 3.0, "ingest": 1.0, MACHINE: 6.0}
    lines = _cpu_table([("at 1,000/s", used, 10.0, 10_000)]).splitlines()
    cells = {line.split()[0]: line.split()[1:] for line in lines[2:]}
    assert cells["journey"] == ["30.0", "300"]
    assert cells["total"] == ["40.0", "400"]
    assert cells["other"] == ["processes", "20.0"]
    assert [line.split()[0] for line in lines[2:]] == ["journey", "ingest", "total", "other"]


async def test_the_poster_replaces_a_connection_the_server_closed() -> None:
    import asyncio

    from tenure.bench.e2e import _Poster

    bodies: list[bytes] = []

    async def answer_once_then_close(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        bodies.append(await reader.readexactly(length))
        writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 14\r\n\r\n{"accepted":1}')
        await writer.drain()
        writer.close()  # as uvicorn does with a connection idle past its keep-alive

    server = await asyncio.start_server(answer_once_then_close, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    poster = _Poster(port, "key")
    try:
        assert await poster.post(b'{"batch":[1]}') == (200, b'{"accepted":1}')
        await asyncio.sleep(0.1)
        assert await poster.post(b'{"batch":[2]}') == (200, b'{"accepted":1}')
    finally:
        poster.close()
        server.close()
        await server.wait_closed()
    assert bodies == [b'{"batch":[1]}', b'{"batch":[2]}']
