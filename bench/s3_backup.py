"""backup-push to S3 (a moto server) against barman-cloud-backup and a raw boto3 floor.

In one run: a pgbench cluster (``--scale``, 50 is about 800 MB), a moto server on
127.0.0.1, then, each the median of ``--runs``:

- walg backup-push to ``s3://<bucket>/walg`` with stock settings (only the endpoint,
  path-style addressing, dummy keys and lz4 are set);
- barman-cloud-backup (``--cloud-provider aws-s3 --endpoint-url ... --lz4``, its default
  2 jobs) of the same cluster to ``s3://<bucket>/barman``, as the postgres user, connected
  through the socket. It runs from a venv of Debian's /usr/bin/python3 at
  ``--barman-venv`` (default /opt/barman-venv), made with ``pip install barman[cloud] lz4``
  on first run;
- the floor: the very objects walg stored (same bytes, same sizes) uploaded again by a
  plain boto3 client in this process with walg's parallelism (parts in flight, one
  thread each), once with botocore's defaults and once with its request checksums off
  (``request_checksum_calculation='when_required'``). Its time has no process start,
  no PostgreSQL and no compression: it is what the server allows for those bytes.

The contenders run in turn, one round after another (a shared, loaded machine loads
the contenders of a round alike). Prints MB/s (of the database's size), median times,
and the medians of the per-round ratios barman/walg (how many times faster walg is) and
floor/walg (1.00 = walg at the server's limit). CPU is the seconds used by the contender's
processes plus the moto server's (less sensitive to other load than the wall time).
``--file`` adds walg to file storage, ``--walg-env`` walg rows with extra settings.

    .venv/bin/python bench/s3_backup.py [--scale 50] [--runs 3]

Runs as root (PostgreSQL and barman-cloud-backup run as the postgres user).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from backup import WALG, db_size  # also puts tests/ on sys.path
from servers.postgres import PG_USER, PgCluster
from servers.s3 import REGION, raw_client, start_moto, stop_moto

SERVER_NAME = "bench"


def ensure_barman(venv: Path) -> Path:
    """barman-cloud-backup in ``venv`` (a venv of /usr/bin/python3), installed if missing."""
    script = venv / "bin" / "barman-cloud-backup"
    if not script.exists():
        print(f"installing barman[cloud] and lz4 into {venv} ...", flush=True)
        subprocess.run(["/usr/bin/python3", "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin" / "pip"), "install", "-q", "barman[cloud]", "lz4"]
        subprocess.run(pip, check=True)
    return script


def aws_env(url: str) -> dict[str, str]:
    """Dummy keys, the region, and no shared AWS files (the postgres user cannot read root's)."""
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def clear(client: Any, bucket: str, prefix: str) -> None:
    """Remove every object under ``prefix`` (moto holds them in memory)."""
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})


def stored(client: Any, bucket: str, prefix: str) -> list[tuple[str, int]]:
    """(key, size) of every object under ``prefix``."""
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [(o["Key"], int(o["Size"])) for page in pages for o in page.get("Contents", [])]


def run(command: list[str], env: dict[str, str]) -> float:
    """Seconds ``command`` took (dirty pages of earlier runs flushed first)."""
    os.sync()
    time.sleep(0.5)
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(
            f"{' '.join(command)} failed:\n{done.stdout.decode()}{done.stderr.decode()}"
        )
    return elapsed


def cpu_seconds(pid: int) -> float:
    """CPU time used so far by this process, its reaped children, and process ``pid``."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    other = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime + other


class Bench:
    def __init__(self, cluster: PgCluster, url: str, bucket: str, runs: int) -> None:
        self.cluster = cluster
        self.url = url
        self.bucket = bucket
        self.runs = runs
        self.client = raw_client(url)

    def walg_env(self, extra: dict[str, str]) -> dict[str, str]:
        keep = {k: v for k, v in os.environ.items() if not k.startswith(("WALG_", "PG", "AWS_"))}
        return {
            **keep,
            **self.cluster.env,
            **aws_env(self.url),
            "WALG_S3_PREFIX": f"s3://{self.bucket}/walg",
            "AWS_ENDPOINT": self.url,
            "AWS_S3_FORCE_PATH_STYLE": "true",
            "AWS_REGION": REGION,
            "WALG_COMPRESSION_METHOD": "lz4",
            "WALG_ARCHIVE_CHECK": "false",  # the cluster archives to /bin/true
            "WALG_LOG_LEVEL": "ERROR",
            **extra,
        }

    def walg(self, extra: dict[str, str] | None = None) -> Callable[[], float]:
        env = self.walg_env(extra or {})

        def once() -> float:
            clear(self.client, self.bucket, "walg/")
            return run([WALG, "backup-push", str(self.cluster.data_dir)], env)

        return once

    def walg_file(self, folder: Path) -> Callable[[], float]:
        """walg to file storage (context: the same push without a network)."""
        env = {k: v for k, v in self.walg_env({}).items() if k != "WALG_S3_PREFIX"}
        env["WALG_FILE_PREFIX"] = str(folder)

        def once() -> float:
            shutil.rmtree(folder, ignore_errors=True)
            return run([WALG, "backup-push", str(self.cluster.data_dir)], env)

        return once

    def barman(self, script: Path) -> Callable[[], float]:
        env = {**os.environ, **aws_env(self.url)}
        command = ["runuser", "-u", PG_USER, "--", str(script), "--cloud-provider", "aws-s3"]
        command += ["--endpoint-url", self.url, "--addressing-style", "path", "--lz4"]
        command += ["-h", str(self.cluster.socket_dir), "-p", str(self.cluster.port)]
        command += ["-U", PG_USER, "--immediate-checkpoint"]
        command += [f"s3://{self.bucket}/barman", SERVER_NAME]

        def once() -> float:
            clear(self.client, self.bucket, "barman/")
            return run(command, env)

        return once

    def floor(
        self, objects: list[tuple[str, bytes]], threads: int, checksums: bool
    ) -> Callable[[], float]:
        """Upload ``objects`` again (to floor/...) with a plain boto3 client, ``threads`` at
        once, one PutObject each (walg's objects here are under its 20 MiB part size)."""
        import boto3
        from botocore.config import Config

        config = Config(
            s3={"addressing_style": "path"},
            max_pool_connections=max(10, threads * 2),
            request_checksum_calculation="when_supported" if checksums else "when_required",
        )
        client = boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=config,
        )

        def put(item: tuple[str, bytes]) -> None:
            key, data = item
            client.put_object(Bucket=self.bucket, Key="floor/" + key, Body=data)

        def once() -> float:
            clear(self.client, self.bucket, "floor/")
            started = time.perf_counter()
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(put, objects))
            return time.perf_counter() - started

        return once

    def walg_objects(self) -> list[tuple[str, bytes]]:
        """The objects the last walg run stored, with their bytes."""
        return [
            (key, self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read())
            for key, _ in stored(self.client, self.bucket, "walg/")
        ]


def rounds(
    runs: int, contenders: dict[str, Callable[[], float]], server: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Each contender once per round, in turn, ``runs`` rounds: on a shared, loaded machine
    the contenders of one round see about the same load, so ratios are taken per round.
    Returns the wall times and the CPU times (the contender's processes, this process and
    the ``server`` process: CPU is what load on the machine does not stretch)."""
    times: dict[str, list[float]] = {name: [] for name in contenders}
    cpu: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(runs):
        for name, once in contenders.items():
            before = cpu_seconds(server)
            times[name].append(once())
            cpu[name].append(cpu_seconds(server) - before)
    return times, cpu


def report(mb: float, times: dict[str, list[float]], cpu: dict[str, list[float]]) -> None:
    walg = times["walg backup-push"]
    for what, seconds in times.items():
        median = statistics.median(seconds)
        runs = " ".join(f"{t:.2f}" for t in seconds)
        print(
            f"  {what:<32} {mb / median:7.1f} MB/s  {median:6.2f} s  CPU "
            f"{statistics.median(cpu[what]):5.2f} s  (runs: {runs})"
        )

    def ratio(other: str) -> float:
        return statistics.median(o / w for o, w in zip(times[other], walg, strict=True))

    if "barman-cloud-backup" in times:
        print(
            f"  barman / walg: {ratio('barman-cloud-backup'):4.2f}x (median of per-round "
            "ratios; 2.00 = walg takes half barman's time)"
        )
    floors = [name for name in times if name.startswith("boto3 floor")]
    best = max(floors, key=ratio)
    print(f"  floor / walg:  {ratio(best):4.2f} ({best}; 1.00 = walg at the server's limit)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--barman-venv", type=Path, default=Path("/opt/barman-venv"))
    parser.add_argument("--no-barman", action="store_true", help="walg and the floor only")
    parser.add_argument("--file", action="store_true", help="also walg to file storage")
    parser.add_argument(
        "--walg-env",
        nargs="*",
        default=[],
        metavar="NAME=VALUE[,NAME=VALUE]",
        help="more walg rows, each with these extra settings",
    )
    args = parser.parse_args()
    barman = None if args.no_barman else ensure_barman(args.barman_venv)
    cluster = PgCluster.create(settings={"checkpoint_timeout": "30min", "max_wal_size": "4GB"})
    moto, url = start_moto(cluster.base / "moto.log")
    try:
        cluster.start()
        cluster.pgbench_init(scale=args.scale)
        cluster.psql("CHECKPOINT")
        mb = db_size(cluster.data_dir) / 1e6
        bench = Bench(cluster, url, "bench", args.runs)
        bench.client.create_bucket(Bucket="bench")
        bench.walg()()  # once first: the objects the floor uploads again
        objects = bench.walg_objects()
        stored_mb = sum(len(d) for _, d in objects) / 1e6
        cpus = os.cpu_count() or 1
        threads = max(1, min(16, cpus))  # walg's parts in flight, stock settings
        contenders = {"walg backup-push": bench.walg()}
        for spec in args.walg_env:
            contenders[f"walg {spec}"] = bench.walg(dict(s.split("=", 1) for s in spec.split(",")))
        if args.file:
            contenders["walg to file storage"] = bench.walg_file(cluster.make_dir("file-storage"))
        if barman is not None:
            contenders["barman-cloud-backup"] = bench.barman(barman)
        contenders["boto3 floor, default config"] = bench.floor(objects, threads, True)
        contenders["boto3 floor, checksums off"] = bench.floor(objects, threads, False)
        times, cpu = rounds(args.runs, contenders, moto.pid)
        print(
            f"database: pgbench scale {args.scale}, {mb:.0f} MB backed up; walg stored "
            f"{stored_mb:.1f} MB in {len(objects)} objects; lz4; moto {url}; {cpus} cores; "
            f"floor threads {threads}; median of {args.runs} rounds (each contender in turn)"
        )
        report(mb, times, cpu)
    finally:
        stop_moto(moto)
        cluster.cleanup()


if __name__ == "__main__":
    sys.exit(main())
