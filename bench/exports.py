"""Benchmark: the financial export (COPY → SFTP, streamed) against its raw steps, side by side.

    .venv/bin/python bench/exports.py [--invoices 1000000] [--rounds 3] [--keep DIR]

Its own embedded PostgreSQL is filled with N invoices, one transaction each and a credit note
for one in twenty, over October 2025 in stores of five time zones. The SFTP server is OpenSSH's
`sshd` when /usr/sbin/sshd exists (`make bench-deps`), as a remote server would be, else the
project's asyncssh server (pure Python: its CPU competes with PostgreSQL's on a small machine);
it runs in another process, and a Temporal dev server (from the wheel) in a third. Each measured
step runs in a fresh child process, so its peak RSS is its own:

  export    the real export: FinancialExportWorkflow and its activities on a worker in the child
            process, as production runs it (the three files in parallel, then the manifest)
  copy      raw baseline: COPY (the same queries) TO STDOUT into a sink that drops the bytes,
            the three files in parallel on three connections
  put       raw baseline: asyncssh `put` of the same bytes (the exported files) to the same server,
            the three files in parallel on three connections
  crlf      the CSV record-end conversion (LF → CRLF outside quotes) alone, over the same data

The export, COPY and put run in alternating rounds (three by default). It prints the SFTP server
used, each round, rows/s, peak RSS and the child's own CPU time (PostgreSQL's and sshd's are not in
it) of each step's median run, and the ratio export / slower raw step (targets: at most 1.5x, peak
RSS of the export under 150 MB). Where PostgreSQL, sshd and the worker share two cores, the worker's
CPU time beyond the COPY client's is what the export waits for.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import posixpath
import resource
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path, PurePosixPath
from typing import Any
from uuid import UUID

import asyncpg
from temporalio.client import Client

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from activities.exports.destinations import CIPHERS
from activities.exports.streaming import CrlfRecords
from bench.chart import Result, record
from bench.measure import cpu_seconds, peak_rss_mb
from devstack.openssh import SSHD, openssh_sftp
from devstack.ports import free_port
from devstack.postgres import (
    DebianPostgres,
    EmbeddedPostgres,
    bench_postgres,
    create_database,
    drop_database,
    with_database,
)
from devstack.sftp_server import SftpServer
from devstack.ssh_keys import SftpLayout
from devstack.temporal_server import temporal_dev_server
from petcare.config import ExportSettings, Settings, SftpSettings
from petcare.exports_repository import COPY_OPTIONS, export_query
from petcare.migrate import apply_migrations
from petcare.models.exports import DATA_KINDS, FileKind, FinancialExportInput, export_workflow_id
from petcare.process import exit_without_teardown
from petcare.temporal_client import PetcarePlugin
from worker_main import open_resources, workers_running
from workflows.exports import FinancialExportWorkflow

SERVERS = {"embedded": "PostgreSQL 18 (embedded)", "debian15": "PostgreSQL 15 (Debian)"}
ZONES = ["America/New_York", "Europe/Paris", "Asia/Tokyo", "UTC", "America/Los_Angeles"]
FILL = [
    """INSERT INTO stores (name, timezone)
       SELECT 'Store ' || n, ($1::text[])[1 + n % 5] FROM generate_series(1, $2) AS n""",
    """INSERT INTO invoices (number, store_id, issued_at, currency, subtotal_cents, tax_cents, total_cents,
                             status)
       SELECT 'INV-' || lpad(n::text, 9, '0'), s.ids[1 + n % cardinality(s.ids)],
              timestamptz '2025-10-01 12:00+00' + (n % 2505600) * interval '1 second', 'EUR',
              n % 100000, (n % 100000) / 5, (n % 100000) * 6 / 5, (ARRAY['paid', 'open', 'void'])[1 + n % 3]
       FROM generate_series(1, $1) AS n, (SELECT array_agg(id ORDER BY name) AS ids FROM stores) AS s""",
    """INSERT INTO transactions (invoice_id, store_id, occurred_at, amount_cents, currency, method, reference)
       SELECT id, store_id, issued_at + interval '5 minutes', total_cents, currency, 'card', 'ref ' || number
       FROM invoices""",
    """INSERT INTO credit_notes (number, invoice_id, store_id, issued_at, amount_cents, currency, reason)
       SELECT 'CN-' || number, id, store_id, issued_at + interval '1 day', total_cents / 2, currency, 'refund'
       FROM invoices WHERE total_cents % 20 = 0""",
]


def sftp_settings(layout: SftpLayout, port: int, username: str, root: str) -> SftpSettings:
    """`root` is the remote path of `layout.root`: "/" on the jailed asyncssh server."""
    return SftpSettings(
        host="127.0.0.1",
        port=port,
        username=username,
        private_key_path=layout.client_key_path,
        known_hosts_path=layout.known_hosts_path,
        remote_dir=posixpath.join(root, "exports"),
    )


def local_path(layout: SftpLayout, settings: SftpSettings, remote: str) -> Path:
    """Where a file uploaded under `settings.remote_dir` lies on this machine."""
    return layout.root / "exports" / PurePosixPath(remote).relative_to(settings.remote_dir)


@asynccontextmanager
async def sftp_server(base: Path) -> AsyncIterator[tuple[str, SftpSettings]]:
    """OpenSSH's sshd if installed, else the asyncssh server in a child process; yields its name."""
    layout, port = SftpLayout(base), free_port()
    layout.prepare("127.0.0.1", port, remote_dirs=("/exports",))
    if SSHD.exists():
        async with openssh_sftp(layout, port) as username:
            yield "OpenSSH sshd", sftp_settings(layout, port, username, str(layout.root))
        return
    server = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "serve-sftp", str(base), str(port),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert server.stdin is not None
    assert server.stdout is not None
    try:
        await server.stdout.readline()
        yield "asyncssh (pure Python, on the same cores)", sftp_settings(layout, port, "petcare", "/")
    finally:
        server.stdin.close()
        await server.wait()


async def serve_sftp(base: Path, port: int) -> None:
    """Child process: the SFTP server, until its stdin closes."""
    layout = SftpLayout(base)
    server = SftpServer(
        "127.0.0.1",
        port,
        layout.root,
        host_key_path=layout.host_key_path,
        authorized_keys_path=layout.authorized_keys_path,
    )
    async with server:
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.read)


async def step_export(dsn: str, sftp: SftpSettings, export_id: UUID, temporal: str) -> dict[str, Any]:
    """The export as production runs it: worker_main's pools, activities and two workers."""
    settings = Settings(
        database_url=dsn, task_queue="bench-exports", sftp=sftp, export=ExportSettings(destination="sftp")
    )
    client = await Client.connect(temporal, plugins=[PetcarePlugin()])
    async with AsyncExitStack() as stack:
        resources = await open_resources(settings, stack)
        async with workers_running(client, resources):
            started, cpu_before = time.perf_counter(), cpu_seconds()
            result = await client.execute_workflow(
                FinancialExportWorkflow.run,
                FinancialExportInput(export_id=export_id, force=True),
                id=export_workflow_id(export_id),
                task_queue=settings.task_queue,
            )
            seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu_before
    files = [file for file in result.files if file.kind != "manifest"]
    return {
        "seconds": seconds,
        "cpu": cpu,
        "rows": sum(file.rows for file in files),
        "bytes": sum(file.bytes for file in files),
        "paths": [file.remote_path for file in files],
        "split": [],
    }


# The single-store case's raw baseline (issue 15): each table's rows of the store, as stored.
RAW_STORE_ROWS: dict[FileKind, str] = {
    "invoices": "SELECT * FROM invoices WHERE store_id = $1",
    "transactions": "SELECT * FROM transactions WHERE store_id = $1",
    "credit_notes": "SELECT * FROM credit_notes WHERE store_id = $1",
}


async def step_copy(dsn: str, export_id: UUID) -> dict[str, Any]:
    connection = await asyncpg.connect(dsn)
    try:
        row = await connection.fetchrow(
            "SELECT period_start, period_end, store_id FROM financial_exports WHERE id = $1", export_id
        )
    finally:
        await connection.close()
    assert row is not None
    period = {"period_start": row["period_start"], "period_end": row["period_end"]}
    store_id = row["store_id"]
    received = 0

    async def one(kind: FileKind) -> float:
        nonlocal received

        async def drop(chunk: bytes) -> None:
            nonlocal received
            received += len(chunk)

        connection = await asyncpg.connect(dsn)
        try:
            begun = time.perf_counter()
            if store_id is None:  # all stores: the export's own queries, so only the streaming differs
                query, query_args = export_query(kind, "csv", **period, store=None)
            else:  # one store: the plain rows of the store, COPY's own formatting
                query, query_args = RAW_STORE_ROWS[kind], (store_id,)
            await connection.copy_from_query(
                query, *query_args, output=drop, timeout=3600, **COPY_OPTIONS["csv"]
            )
            return round(time.perf_counter() - begun, 2)
        finally:
            await connection.close()

    started, cpu_before = time.perf_counter(), cpu_seconds()
    split = await asyncio.gather(*(one(kind) for kind in DATA_KINDS))
    return {
        "seconds": time.perf_counter() - started,
        "cpu": cpu_seconds() - cpu_before,
        "bytes": received,
        "split": list(split),
    }


SFTP_CLIENT = Path("/usr/bin/sftp")


async def openssh_put(settings: SftpSettings, paths: list[str]) -> dict[str, Any]:
    """OpenSSH's `sftp put` of each file, the three in parallel (the issue's raw baseline), with
    the cipher the export negotiates (OpenSSH's default, chacha20-poly1305, costs sshd twice the CPU)."""
    target = posixpath.join(settings.remote_dir, "raw")

    async def one(index: int, path: str) -> float:
        batch = f"-mkdir {target}\nput {path} {target}/file-{index}\n"
        begun = time.perf_counter()
        child = await asyncio.create_subprocess_exec(
            str(SFTP_CLIENT), "-q", "-b", "-", "-P", str(settings.port),
            "-i", str(settings.private_key_path), "-o", f"UserKnownHostsFile={settings.known_hosts_path}",
            "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-F", "/dev/null",
            # The export's cipher (AES-GCM): the baseline differs in the data path only.
            "-c", CIPHERS[0],
            f"{settings.username}@{settings.host}",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,  # `-mkdir` of an existing directory complains
        )  # fmt: skip
        await child.communicate(batch.encode())
        if child.returncode != 0:
            raise RuntimeError(f"sftp put failed ({child.returncode})")
        return round(time.perf_counter() - begun, 2)

    started = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    split = await asyncio.gather(*(one(index, path) for index, path in enumerate(paths)))
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return {
        "seconds": time.perf_counter() - started,
        "cpu": cpu,
        "split": list(split),
        "client": "OpenSSH sftp",
    }


async def step_put(settings: SftpSettings, paths: list[str]) -> dict[str, Any]:
    if await asyncio.to_thread(SFTP_CLIENT.exists):
        return await openssh_put(settings, paths)
    import asyncssh

    target = posixpath.join(settings.remote_dir, "raw")

    async def one(index: int, path: str) -> float:
        async with (
            asyncssh.connect(
                settings.host,
                settings.port,
                username=settings.username,
                known_hosts=str(settings.known_hosts_path),
                client_keys=[str(settings.private_key_path)],
                config=None,
                agent_path=None,
                encryption_algs=CIPHERS,  # as the export uses: the baseline differs in the data path only
            ) as connection,
            connection.start_sftp_client() as sftp,
        ):
            await sftp.makedirs(target, exist_ok=True)
            begun = time.perf_counter()
            await sftp.put(path, posixpath.join(target, f"file-{index}"))
            return round(time.perf_counter() - begun, 2)

    started, cpu_before = time.perf_counter(), cpu_seconds()
    split = await asyncio.gather(*(one(index, path) for index, path in enumerate(paths)))
    return {"seconds": time.perf_counter() - started, "cpu": cpu_seconds() - cpu_before, "split": list(split)}


async def step_overlap(dsn: str, settings: SftpSettings, export_id: UUID, paths: list[str]) -> dict[str, Any]:
    """The raw COPY and the raw put at the same time, on the same cores: the two halves a
    streaming export overlaps, with nothing of its own. No export can be faster on this machine."""
    started = time.perf_counter()
    copy, put = await asyncio.gather(step_copy(dsn, export_id), step_put(settings, paths))
    return {
        "seconds": time.perf_counter() - started,
        "cpu": copy["cpu"] + put["cpu"],
        "split": [round(copy["seconds"], 2), round(put["seconds"], 2)],
    }


def step_crlf(paths: list[str]) -> dict[str, Any]:
    """The conversion alone, over the exported CSV turned back into PostgreSQL's LF, in 1 MiB blocks."""
    seconds, size = 0.0, 0
    for path in paths:
        convert = CrlfRecords()
        with Path(path).open("rb") as file:
            while block := file.read(1024 * 1024):
                if block.endswith(b"\r"):
                    block += file.read(1)
                block = block.replace(b"\r\n", b"\n")  # not timed: rebuilds what COPY sends
                size += len(block)
                begun = time.perf_counter()
                convert(block)
                seconds += time.perf_counter() - begun
    return {"seconds": seconds, "bytes": size, "split": []}


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _processes() -> dict[int, tuple[int, float, str]]:
    """pid -> (parent pid, CPU seconds of it and of its reaped children, command line)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone meanwhile
            continue
        ticks = sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
        found[int(entry.name)] = (int(fields[1]), ticks / CLOCK_TICKS, command)
    return found


def server_cpu(roots: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far of each named process tree (a process and its live descendants; those
    that exited are in their parent's children times): PostgreSQL, sshd, the Temporal server."""
    processes = _processes()
    children: dict[int, list[int]] = {}
    for pid, (parent, _, _) in processes.items():
        children.setdefault(parent, []).append(pid)
    totals = {}
    for name, root in roots.items():
        total, stack = 0.0, [root]
        while stack:
            pid = stack.pop()
            if pid in processes:
                total += processes[pid][1]
                stack.extend(children.get(pid, []))
        totals[name] = total
    return totals


async def server_roots(dsn: str, sshd_config: str, temporal_port: str) -> dict[str, int]:
    """The root process of each server this bench started (never another user's)."""
    connection = await asyncpg.connect(dsn)
    try:
        backend = await connection.fetchval("SELECT pg_backend_pid()")
        processes = await asyncio.to_thread(_processes)  # while the backend lives
    finally:
        await connection.close()
    roots = {"postgres": processes[backend][0]}
    for pid, (_, _, command) in processes.items():
        if "sshd" in command and sshd_config in command:
            roots.setdefault("sshd", pid)
        if "start-dev" in command and f"--port {temporal_port}" in command:
            roots["temporal"] = pid
    return roots


SERVER_ROOTS: dict[str, int] = {}


async def run_step(*args: str) -> dict[str, Any]:
    before = await asyncio.to_thread(server_cpu, SERVER_ROOTS)
    child = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "step", *args, stdout=asyncio.subprocess.PIPE
    )
    stdout, _ = await child.communicate()
    if child.returncode != 0:
        raise SystemExit(f"step {args[0]} failed (exit {child.returncode})")
    after = await asyncio.to_thread(server_cpu, SERVER_ROOTS)
    result: dict[str, Any] = json.loads(stdout.decode().strip().splitlines()[-1])
    result["servers"] = {name: round(after[name] - before[name], 2) for name in after}
    return result


# The cases: the whole chain's month (20 stores), and one big store's month, exported alone.
CASES = {
    "store-month": ("one store, one month", 1),
    "all-stores": ("all 20 stores, one month", 20),
}


async def fill(dsn: str, invoices: int, stores: int) -> UUID:
    connection = await asyncpg.connect(dsn)
    try:
        await apply_migrations(connection)
        started = time.perf_counter()
        await connection.execute(FILL[0], ZONES, stores)
        await connection.execute(FILL[1], invoices)
        for statement in FILL[2:]:
            await connection.execute(statement)
        await connection.execute("VACUUM ANALYZE")
        counts = {
            table: await connection.fetchval(f"SELECT count(*) FROM {table}")  # fixed names
            for table in ("invoices", "transactions", "credit_notes")
        }
        export_id: UUID = await connection.fetchval(
            """INSERT INTO financial_exports (period_start, period_end, format, store_id)
               VALUES ('2025-10-01', '2025-10-31', 'csv',
                       CASE WHEN $1 = 1 THEN (SELECT id FROM stores) END) RETURNING id""",
            stores,
        )
        print(f"filled in {time.perf_counter() - started:.1f} s: {counts}", flush=True)
    finally:
        await connection.close()
    return export_id


async def filled_earlier(dsn: str, invoices: int) -> UUID | None:
    """The export of a database a previous run with --keep filled with as many invoices, if any."""
    try:
        connection = await asyncpg.connect(dsn)
    except asyncpg.InvalidCatalogNameError:
        return None
    try:
        if await connection.fetchval("SELECT count(*) FROM invoices") != invoices:
            return None
        export_id: UUID | None = await connection.fetchval(
            "SELECT id FROM financial_exports ORDER BY requested_at LIMIT 1"
        )
        if export_id is not None:
            # The code measured may have migrations the data was filled before.
            await apply_migrations(connection)
            await connection.execute("ANALYZE")
    except asyncpg.UndefinedTableError:
        return None
    finally:
        await connection.close()
    if export_id is not None:
        print("reusing the data of an earlier run (--keep)", flush=True)
    return export_id


async def bench(options: argparse.Namespace, work: Path) -> None:
    kinds = ["embedded", "debian15"] if options.postgres == "both" else [options.postgres]
    if "debian15" in kinds and not DebianPostgres.available():
        print("Debian's PostgreSQL 15 is not installed: embedded only", flush=True)
        kinds.remove("debian15")
    cases = list(CASES) if options.case == "both" else [options.case]
    sftp_base = (work / "sftp").resolve()  # absolute: sshd's remote paths are this machine's
    results = []
    async with sftp_server(sftp_base) as (server, settings), temporal_dev_server() as temporal:
        print(f"SFTP server: {server}", flush=True)
        for kind in kinds:
            async with bench_postgres(kind, work / kind) as postgres:
                for case in cases:
                    label = f"{SERVERS[kind]}, {CASES[case][0]}"
                    print(f"\n== {label}", flush=True)
                    rounds, crlf = await measure(
                        postgres, temporal, SftpLayout(sftp_base), settings, case, options
                    )
                    results.append(report(server, label, case, rounds, crlf))
    print("\njob     case                              server                    ratio  target  figures")
    for result in results:
        print(f"export  {result.case:33} {result.server:25} {result.ratio:5.2f}  <= 1.5  {result.detail}")
    if options.record:
        record(*results)


async def measure(
    postgres: EmbeddedPostgres | DebianPostgres,
    temporal: Any,
    layout: SftpLayout,
    settings: SftpSettings,
    case: str,
    options: argparse.Namespace,
) -> tuple[list[tuple[dict[str, Any], ...]], dict[str, Any]]:
    database = f"bench_exports_{case.replace('-', '_')}"
    dsn = with_database(postgres.url(), database)
    export_id = await filled_earlier(dsn, options.invoices)
    if export_id is None:
        await drop_database(postgres.url(), database)
        export_id = await fill(
            await create_database(postgres.url(), database), options.invoices, CASES[case][1]
        )
    address = temporal.client.service_client.config.target_host
    SERVER_ROOTS.clear()
    SERVER_ROOTS.update(await server_roots(dsn, str(layout.base / "sshd_config"), address.rsplit(":", 1)[1]))
    # Rounds alternate the steps, so a burst of load from a neighbour on this shared machine
    # falls on one round rather than on one side of the comparison.
    rounds: list[tuple[dict[str, Any], ...]] = []
    for number in range(1, options.rounds + 1):
        export = await run_step("export", dsn, settings.model_dump_json(), str(export_id), address)
        copy = await run_step("copy", dsn, str(export_id))
        files = [str(local_path(layout, settings, path)) for path in export["paths"]]
        put = await run_step("put", settings.model_dump_json(), *files)
        overlap = await run_step("overlap", dsn, settings.model_dump_json(), str(export_id), *files)
        ratio = export["seconds"] / max(copy["seconds"], put["seconds"])
        print(
            f"round {number}: export {export['seconds']:.2f} s, COPY {copy['seconds']:.2f} s, "
            f"put {put['seconds']:.2f} s: {ratio:.2f}x; COPY and put at once {overlap['seconds']:.2f} s",
            flush=True,
        )
        rounds.append((export, copy, put, overlap))
    crlf = await run_step("crlf", *files)
    return rounds, crlf


def median_round(rounds: list[tuple[dict[str, Any], ...]], step: int) -> dict[str, Any]:
    """The step's run of median time over the rounds (its peak RSS the highest of them all)."""
    runs = sorted((round_[step] for round_ in rounds), key=lambda run: run["seconds"])
    return {**runs[len(runs) // 2], "rss_mb": max(run["rss_mb"] for run in runs)}


def report(
    server: str, label: str, case: str, rounds: list[tuple[dict[str, Any], ...]], crlf: dict[str, Any]
) -> Result:
    export, copy, put, overlap = (median_round(rounds, step) for step in range(4))
    rows, size = export["rows"], export["bytes"]
    if case == "all-stores":
        # The same queries: one CR added per record (the header lines too) is the only difference.
        assert copy["bytes"] + rows + len(DATA_KINDS) == size, "the export must be the COPY's bytes with CRLF"
    print(f"{rows} rows, {size / 1e6:.1f} MB of CSV in three files (written in parallel)")
    print(f"  median of {len(rounds)} rounds; peak RSS the highest of any round")
    print(f"  SFTP server: {server}")
    steps = (
        ("export (COPY → SFTP)", export),
        ("raw COPY TO STDOUT", copy),
        ("raw SFTP put", put),
        ("raw COPY + put at once", overlap),
    )
    for name, step in steps:
        print(
            f"  {name:22} {step['seconds']:6.2f} s  {rows / step['seconds']:>10,.0f} rows/s  "
            f"{size / 1e6 / step['seconds']:6.1f} MB/s  peak RSS {step['rss_mb']:5.1f} MB  "
            f"own CPU {step['cpu']:5.2f} s  servers' CPU {step['servers']} s  "
            f"(per file: {step['split']} s)"
        )
    slower = max(copy["seconds"], put["seconds"])
    ratio = export["seconds"] / slower
    print(
        f"  CRLF conversion alone: {crlf['seconds']:.2f} s for {crlf['bytes'] / 1e6:.0f} MB "
        f"({crlf['bytes'] / 1e6 / crlf['seconds']:.0f} MB/s, {crlf['seconds'] / export['seconds']:.1%} "
        "of the export's time)"
    )
    print(f"  ratio export / slower raw step (medians): {ratio:.2f}x (target <= 1.5x)")
    # What two cores allow: the raw steps run at once already take this much of the COPY's time.
    floor = overlap["seconds"] / slower
    print(
        f"  raw COPY and put at once: {overlap['seconds']:.2f} s = {floor:.2f}x the slower raw step "
        "(the fastest a streaming export can be here); "
        f"export / that: {export['seconds'] / overlap['seconds']:.2f}x"
    )
    print(f"  export peak RSS {export['rss_mb']:.1f} MB (target < 150 MB)")
    job, where = label.split(", ", 1)[1], label.split(", ", 1)[0]
    return Result(
        job="export",
        case=f"{job} ({rows / 1e6:.2f} M rows)",
        server=where,
        ratio=ratio,
        target=1.5,
        higher_is_better=False,
        floor=floor,
        detail=(
            f"export {export['seconds']:.2f} s, COPY {copy['seconds']:.2f} s, put {put['seconds']:.2f} s, "
            f"rounds {[round(r[0]['seconds'] / max(r[1]['seconds'], r[2]['seconds']), 2) for r in rounds]}, "
            f"COPY + put at once {overlap['seconds']:.2f} s ({floor:.2f}x), RSS {export['rss_mb']:.0f} MB"
        ),
    )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "serve-sftp":
        asyncio.run(serve_sftp(Path(sys.argv[2]), int(sys.argv[3])))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "step":
        name, args = sys.argv[2], sys.argv[3:]
        if name == "export":
            settings = SftpSettings.model_validate_json(args[1])
            result = asyncio.run(step_export(args[0], settings, UUID(args[2]), args[3]))
        elif name == "copy":
            result = asyncio.run(step_copy(args[0], UUID(args[1])))
        elif name == "put":
            result = asyncio.run(step_put(SftpSettings.model_validate_json(args[0]), args[1:]))
        elif name == "overlap":
            settings = SftpSettings.model_validate_json(args[1])
            result = asyncio.run(step_overlap(args[0], settings, UUID(args[2]), args[3:]))
        else:
            result = step_crlf(args)
        print(json.dumps({**result, "rss_mb": peak_rss_mb()}))
        exit_without_teardown(0)  # the export step held a Temporal client (petcare/process.py)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invoices", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3, help="export, COPY and put each run this often")
    parser.add_argument("--case", choices=(*CASES, "both"), default="both")
    parser.add_argument("--postgres", choices=("embedded", "debian15", "both"), default="both")
    parser.add_argument("--no-record", dest="record", action="store_false", help="leave docs/ as it is")
    parser.add_argument(
        "--keep",
        type=Path,
        help="work directory to keep (default: a temporary one); a later run with the same "
        "--invoices reuses its database instead of filling it again",
    )
    options = parser.parse_args()
    if options.keep:
        asyncio.run(bench(options, options.keep))
        return
    with tempfile.TemporaryDirectory(prefix="bench-exports-") as work:
        Path(work).chmod(0o755)  # Debian's server runs as `postgres` when we are root
        asyncio.run(bench(options, Path(work)))


if __name__ == "__main__":
    main()
