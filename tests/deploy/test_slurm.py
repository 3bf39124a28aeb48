"""The SLURM deployment (deploy/slurm) on a real one-node SLURM cluster: Debian's slurmctld,
slurmd and munged started here (as root, configured in a temporary directory, all stopped at
the end), the service and its workers submitted with ``sbatch`` exactly as docs/slurm.md says.

The service job uses this test's own PostgreSQL database (given as ``SURROGATE_DATABASE_URL``,
as at a site with a database server) and starts its own Redis (``redis-server`` from PATH, with
a generated password: the no-root path; PostgreSQL refuses to run as root, so its own start is
not exercised here);
the node's two "GPUs" are gres entries without devices, so ``worker.sbatch`` keeps its
``--gres=gpu:1``. Measured (printed, and written to ``timings.json`` in the test's directory):
seconds from ``sbatch`` to /readyz (the bootstrap's build and training on a 60-row seed
included), from ``scancel`` to the job's takeover by a worker submitted after it, from the
time-limit SIGTERM to the takeover by a waiting worker, until the replica refuses a revoked key,
and the total.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
ADMIN_URL = os.environ.get("SURROGATE_TEST_DATABASE_URL",
                           "postgresql+psycopg://postgres@127.0.0.1:5432/test")
DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "redis-server")
SLOW_GNN = {"epochs": 30, "checkpoint_every": 2, "patience": 1000, "ensemble": 1,
            "hidden": 16, "batch_size": 64}
TIMINGS: dict[str, float] = {}


def _missing() -> str | None:
    absent = [d for d in DAEMONS if shutil.which(d) is None
              and not Path("/usr/sbin", d).exists()]
    if absent:
        return (f"SLURM/munge not installed ({', '.join(absent)} missing; scripts/test.sh "
                "installs slurm-wlm and munge with apt where it can)")
    if os.geteuid() != 0:
        return "starting slurmctld/slurmd/munged needs root"
    try:
        socket.gethostbyname(socket.gethostname())
    except OSError:
        return f"this machine's hostname {socket.gethostname()!r} does not resolve"
    import psycopg
    try:
        psycopg.connect(ADMIN_URL.replace("+psycopg", ""), connect_timeout=2).close()
    except Exception as exc:
        return f"PostgreSQL not reachable at {ADMIN_URL} ({type(exc).__name__})"
    return None


def _bin(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate: Any, timeout: float, what: str, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


class Cluster:
    """munged + slurmctld + slurmd for this machine, configured and kept in ``root``."""

    def __init__(self, root: Path) -> None:
        self.root, self.host = root, socket.gethostname()
        self.conf = root / "slurm.conf"
        self.env = {**{k: v for k, v in os.environ.items() if not k.startswith("SURROGATE_")},
                    "SLURM_CONF": str(self.conf)}

    def write_config(self) -> None:
        r = self.root
        for sub in ("state", "spool", "munge", "logs"):
            (r / sub).mkdir(mode=0o700, exist_ok=True)
        (r / "munge" / "munge.key").write_bytes(os.urandom(1024))
        os.chmod(r / "munge" / "munge.key", 0o400)
        for i in range(2):  # gres "GPUs" without devices: the scheduler counts them
            (r / f"gpu{i}").touch()
        (r / "gres.conf").write_text(f"NodeName={self.host} Name=gpu File={r}/gpu[0-1]\n")
        self.conf.write_text("\n".join([
            "ClusterName=nastest", f"SlurmctldHost={self.host}", "SlurmUser=root",
            "SlurmdUser=root", f"SlurmctldPort={_free_port()}", f"SlurmdPort={_free_port()}",
            "AuthType=auth/munge", "CredType=cred/munge",
            f"AuthInfo=socket={r}/munge/munge.sock",
            "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none",
            "SchedulerType=sched/backfill", "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_CPU", "SlurmdParameters=config_overrides",
            "MpiDefault=none", "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none", "ReturnToService=2",
            "KillWait=10", "GresTypes=gpu", f"StateSaveLocation={r}/state",
            f"SlurmdSpoolDir={r}/spool", f"SlurmctldPidFile={r}/slurmctld.pid",
            f"SlurmdPidFile={r}/slurmd.pid", f"SlurmctldLogFile={r}/logs/slurmctld.log",
            f"SlurmdLogFile={r}/logs/slurmd.log",
            f"NodeName={self.host} CPUs=32 RealMemory=256000 Gres=gpu:2 State=UNKNOWN",
            f"PartitionName=test Nodes={self.host} Default=YES MaxTime=INFINITE State=UP", ""]))

    def start(self) -> Cluster:
        self.write_config()
        m = self.root / "munge"
        subprocess.run([_bin("munged"), "--force", f"--socket={m}/munge.sock",
                        f"--key-file={m}/munge.key", f"--pid-file={m}/munged.pid",
                        f"--log-file={m}/munged.log", f"--seed-file={m}/seed"], check=True)
        subprocess.run([_bin("slurmctld"), "-f", str(self.conf)], check=True, env=self.env)
        subprocess.run([_bin("slurmd"), "-f", str(self.conf)], check=True, env=self.env)
        wait_for(lambda: self.run("sinfo", "-h", "-o", "%t").stdout.strip() in ("idle", "mix"),
                 60, "the node to be idle")
        return self

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(args), env=self.env, capture_output=True, text=True)

    def sbatch(self, script: str, env: dict[str, str], *options: str) -> str:
        out = self.root / "logs" / f"{Path(script).stem}-%j.log"
        done = subprocess.run(["sbatch", "--parsable", f"--output={out}", *options,
                               str(REPO / "deploy" / "slurm" / script)],
                              env={**self.env, **env}, cwd=REPO, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip().split(";")[0]

    def log(self, script: str, job: str) -> str:
        path = self.root / "logs" / f"{Path(script).stem}-{job}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def state(self, job: str) -> str:
        return self.run("squeue", "-h", "-j", job, "-o", "%T").stdout.strip()

    def stop(self) -> None:
        jobs = self.run("squeue", "-h", "-o", "%i").stdout.split()
        if jobs:
            self.run("scancel", *jobs)
            try:
                wait_for(lambda: not self.run("squeue", "-h", "-o", "%i").stdout.split(), 60,
                         "the jobs to end")
            except AssertionError:
                pass
        for pidfile in ("slurmd.pid", "slurmctld.pid", "munge/munged.pid"):
            path = self.root / pidfile
            if not path.exists():
                continue
            pid = int(path.read_text().split()[0])
            try:
                os.kill(pid, 15)
                wait_for(lambda p=pid: _gone(p), 20, f"{pidfile} to exit")
            except (ProcessLookupError, AssertionError):
                pass


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The cluster, the test's database, and the service job (which starts Redis) with one
    worker (queues cpu,gpu: it runs the bootstrap's build); ready when /readyz is 200."""
    import psycopg

    why = _missing()
    if why:
        pytest.skip(why)
    started = time.monotonic()
    root = tmp_path_factory.mktemp("slurm")
    name = f"nas_surrogate_slurm_{uuid.uuid4().hex[:8]}"
    admin = ADMIN_URL.replace("+psycopg", "")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    seed = root / "seed.csv"
    from tests.conftest import TRAIN_CSV
    with open(TRAIN_CSV) as src:
        seed.write_text("".join(line for _, line in zip(range(61), src)))
    data = root / "data"
    port = _free_port()
    env = {"SURROGATE_DATA_DIR": str(data),
           "SURROGATE_DATABASE_URL": ADMIN_URL.rsplit("/", 1)[0] + "/" + name,
           "SURROGATE_REDIS_PORT": str(_free_port()), "SURROGATE_ENVIRONMENT": "test",
           "SURROGATE_SEED_CSV": str(seed), "SURROGATE_DEFAULT_PREDICTOR": "trees",
           "SURROGATE_WARM_UP": "false", "SURROGATE_ENCODER_PROCESSES": "0",
           "SURROGATE_JOB_LEASE_S": "6", "SURROGATE_HEARTBEAT_INTERVAL_S": "1",
           "SURROGATE_PROGRESS_INTERVAL_S": "0.2", "SURROGATE_RECONCILE_INTERVAL_S": "2",
           "SURROGATE_MAX_ATTEMPTS": "5", "SURROGATE_EPOCH_DELAY_S": "0.5",
           "SURROGATE_TRAIN_SOFT_LIMIT_S": "600", "SURROGATE_TRAIN_HARD_LIMIT_S": "900",
           "SURROGATE_API_PORT": str(port)}
    cluster = Cluster(root).start()
    try:
        t0 = time.monotonic()
        service = cluster.sbatch("service.sbatch", env)
        worker = cluster.sbatch("worker.sbatch", {**env, "SURROGATE_QUEUES": "cpu,gpu"})
        # A second API replica (tested below), started now so that it starts meanwhile.
        replica_port = _free_port()
        replica = cluster.sbatch("service.sbatch", {**env, "SURROGATE_SERVICE_ROLE": "api",
                                                    "SURROGATE_API_PORT": str(replica_port)})
        base = f"http://{socket.gethostname()}:{port}"

        def ready() -> bool:
            assert cluster.state(service) in ("PENDING", "RUNNING"), \
                cluster.log("service.sbatch", service)[-3000:]
            try:
                return httpx.get(base + "/readyz", timeout=5).status_code == 200
            except httpx.HTTPError:
                return False
        wait_for(ready, 420, "the service to build, train and load the first model", 1.0)
        TIMINGS["sbatch_to_ready_s"] = round(time.monotonic() - t0, 1)
        yield {"cluster": cluster, "env": env, "data": data, "base": base, "service": service,
               "worker": worker, "replica": replica,
               "replica_base": f"http://{socket.gethostname()}:{replica_port}",
               "admin": (data / "admin.key").read_text().strip()}
    finally:
        cluster.stop()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        TIMINGS["total_s"] = round(time.monotonic() - started, 1)
        (root / "timings.json").write_text(json.dumps(TIMINGS))
        print("\nSLURM timings:", json.dumps(TIMINGS))


def _client(stack: dict[str, Any]) -> httpx.Client:
    return httpx.Client(base_url=stack["base"], headers={"X-API-Key": stack["admin"]},
                        timeout=30)


def test_service_job_writes_service_env_and_the_admin_key(stack):
    from nas_surrogate_client import SurrogateClient

    data = stack["data"]
    env = dict(line.split("=", 1) for line in (data / "service.env").read_text().splitlines())
    host = socket.gethostname()
    assert env["SURROGATE_API_URL"] == stack["base"]
    assert f"@{host}:" in env["SURROGATE_DATABASE_URL"]       # not 127.0.0.1: other nodes
    assert re.fullmatch(rf"redis://:[0-9a-f]{{48}}@{host}:{stack['env']['SURROGATE_REDIS_PORT']}/0",
                        env["SURROGATE_BROKER_URL"])              # the Redis the job started
    assert (data / "redis.password").stat().st_mode & 0o777 == 0o600
    assert (data / "admin.key").stat().st_mode & 0o777 == 0o600
    assert (data / "service.env").stat().st_mode & 0o777 == 0o600
    client = SurrogateClient.from_env(data)        # what the pipeline's own jobs do
    assert client.active_version() == 1


def test_a_second_api_replica_predicts_and_a_key_revoked_on_the_primary_is_refused(stack):
    """Another job of service.sbatch (SURROGATE_SERVICE_ROLE=api) over the same database and
    broker serves /predict; a key revoked on the primary is refused there at once, and by the
    replica within the key cache's TTL (README: "within 30 s in others"): a thread polls the
    replica while the next tests run, the last test reads what it saw."""
    import csv
    import threading

    from tests.conftest import TRAIN_CSV

    cluster, replica_job, replica = stack["cluster"], stack["replica"], stack["replica_base"]

    def ready() -> bool:
        assert cluster.state(replica_job) in ("PENDING", "RUNNING"), \
            cluster.log("service.sbatch", replica_job)[-3000:]
        try:
            return httpx.get(replica + "/readyz", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False
    wait_for(ready, 180, "the replica", 1.0)
    with open(TRAIN_CSV, newline="") as f:
        genomes = [row["genome"] for _, row in zip(range(5), csv.DictReader(f))]
    with _client(stack) as c:
        made = c.post("/keys", json={"name": "replica", "scopes": ["predict"]}).json()
        key_id, key = made["id"], made["key"]
        r = httpx.post(replica + "/predict", json={"genomes": genomes},
                       headers={"X-API-Key": key}, timeout=60)
        assert r.status_code == 200, r.text
        assert len(r.json()["items"]) == 5 and r.json()["model_name"] == "default"
        t0 = time.monotonic()
        assert c.post(f"/keys/{key_id}/revoke").status_code == 200
    assert httpx.post(stack["base"] + "/predict", json={"genomes": genomes[:1]},
                      headers={"X-API-Key": key}, timeout=60).status_code == 401
    seen: dict[str, float] = {}

    def poll() -> None:
        while time.monotonic() - t0 < 120:
            try:
                code = httpx.post(replica + "/predict", json={"genomes": genomes[:1]},
                                  headers={"X-API-Key": key}, timeout=60).status_code
            except httpx.HTTPError:
                code = 0
            if code == 401:
                seen["s"] = time.monotonic() - t0
                return
            time.sleep(1.0)
    stack["revocation"] = (threading.Thread(target=poll, daemon=True), seen, t0)
    stack["revocation"][0].start()


def test_a_worker_that_cannot_reach_the_broker_says_so_and_fails(stack, tmp_path):
    cluster, port = stack["cluster"], _free_port()   # nothing listens there
    data = tmp_path / "elsewhere"
    data.mkdir()
    (data / "service.env").write_text(f"SURROGATE_API_URL=http://127.0.0.1:1\n"
                                      f"SURROGATE_BROKER_URL=redis://127.0.0.1:{port}/0\n")
    job = cluster.sbatch("worker.sbatch", {**stack["env"], "SURROGATE_DATA_DIR": str(data)})
    wait_for(lambda: not cluster.state(job), 120, "the worker to give up")
    log = cluster.log("worker.sbatch", job)
    assert f"cannot reach the broker at 127.0.0.1:{port}" in log, log[-2000:]
    shown = cluster.run("scontrol", "show", "job", job).stdout
    assert "ExitCode=3:0" in shown, shown


def test_scancel_and_sigterm_hand_a_running_training_to_another_worker(stack):
    cluster, env = stack["cluster"], stack["env"]
    with _client(stack) as c:
        dataset = c.get("/datasets").json()["data"][0]["id"]
        r = c.post("/jobs/train", json={"dataset_id": dataset, "predictor": "simple_gcn",
                                        "hyperparameters": SLOW_GNN, "model_name": "slurm"})
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]

        def job() -> dict[str, Any]:
            return c.get(f"/jobs/{job_id}").json()

        def epochs(n: int) -> Any:
            return lambda: len(job().get("epochs") or []) >= n
        wait_for(epochs(3), 240, "three epochs on the first worker")
        # 1. scancel (SIGTERM to every process of the job, then SIGKILL): released, taken over
        # by a worker submitted afterwards.
        t0 = time.monotonic()
        assert cluster.run("scancel", stack["worker"]).returncode == 0
        wait_for(lambda: not cluster.state(stack["worker"]), 60, "the first worker to end")
        second = cluster.sbatch("worker.sbatch", env)
        wait_for(lambda: job()["attempt"] == 2 and job()["status"] == "running", 180,
                 "the second worker to take the job over")
        TIMINGS["scancel_to_takeover_s"] = round(time.monotonic() - t0, 1)
        done_before = len(job()["epochs"] or [])
        # 2. The warning SLURM sends before a time limit (--signal=B:TERM@120): SIGTERM to the
        # batch script only; its trap releases the job, and a waiting worker finishes it.
        third = cluster.sbatch("worker.sbatch", env)
        wait_for(lambda: " ready." in cluster.log("worker.sbatch", third), 180,
                 "the third worker")
        wait_for(epochs(done_before + 2), 120, "two more epochs on the second worker")
        t1 = time.monotonic()
        assert cluster.run("scancel", "--signal=TERM", "--batch", second).returncode == 0
        wait_for(lambda: job()["attempt"] == 3 and job()["status"] in ("running", "succeeded"),
                 120, "the third worker to take the job over")
        TIMINGS["sigterm_to_takeover_s"] = round(time.monotonic() - t1, 1)
        wait_for(lambda: not cluster.state(second), 60, "the signalled worker to exit")
        log = cluster.log("worker.sbatch", second)
        assert "releasing the running job" in log and "worker exited (status 0)" in log, log[-3000:]
        done = wait_for(lambda: job()["status"] in ("succeeded", "failed") and job(), 240,
                        "the training to end")
        assert done["status"] == "succeeded", done
        assert done["attempt"] == 3 and done["model_version"] == 1
        events = c.get(f"/jobs/{job_id}/events").json()
        assert sum("resuming from checkpoint" in e["message"] for e in events) == 2
        versions = c.get("/models", params={"name": "slurm"}).json()["data"]
        assert [v["lineage"]["job_id"] for v in versions] == [job_id]   # nothing twice


def test_the_replica_refused_the_revoked_key_within_the_key_cache_ttl(stack):
    from app.api.deps import KEY_CACHE_TTL_S

    assert "revocation" in stack, "the replica test did not run"
    thread, seen, t0 = stack["revocation"]
    thread.join(timeout=max(1.0, KEY_CACHE_TTL_S + 5 - (time.monotonic() - t0)))
    assert "s" in seen and seen["s"] <= KEY_CACHE_TTL_S + 5, seen
    TIMINGS["revocation_seen_by_replica_s"] = round(seen["s"], 1)


def _pg_bin() -> str | None:
    import glob
    found = shutil.which("initdb") or next(iter(sorted(glob.glob(
        "/usr/lib/postgresql/*/bin/initdb"), reverse=True)), None)
    return str(Path(found).resolve().parent) if found else None


RUNUSER = shutil.which("runuser") or "/usr/sbin/runuser"


@pytest.mark.skipif(_pg_bin() is None or not Path(RUNUSER).exists() or os.geteuid() != 0,
                    reason="needs PostgreSQL's initdb, runuser and root (to become nobody)")
def test_the_service_job_starts_postgresql_itself_without_root():
    """service.sbatch's own start_postgres (and the functions it uses, taken from the script)
    as an unprivileged user, as on a cluster: initdb once with a generated password, a server
    other hosts reach by password, and a second start that reuses both."""
    script = (REPO / "deploy" / "slurm" / "service.sbatch").read_text()
    funcs = [re.search(rf"^{name}\(\) {{(?:[^\n]*}}|.*?^}})$", script, re.S | re.M)
             for name in ("say", "die", "secret", "start_postgres")]
    assert all(funcs)
    import tempfile
    work = Path(tempfile.mkdtemp(prefix="nas-surrogate-pg-"))   # pytest's tmp is root's only
    port = _free_port()
    (work / "run.sh").write_text("\n".join([
        "set -uo pipefail", *(m.group(0) for m in funcs if m),
        f"DATA={work}/data; mkdir -p $DATA/logs; RUN=''; HOST=$(hostname); PG_STARTED=''",
        f"export TMPDIR={work}",
        f"export SURROGATE_PG_PORT={port}", "start_postgres", 'echo "URL=$SURROGATE_DATABASE_URL"',
        'pg_ctl -D "$PG_STARTED" -m fast -w stop >/dev/null', "PG_STARTED=''", "start_postgres",
        'echo "URL=$SURROGATE_DATABASE_URL"', ""]))   # left running: connected to below
    shutil.chown(work, "nobody")
    env = {"PATH": f"{_pg_bin()}:/usr/bin:/bin", "HOME": str(work)}

    def start_twice() -> list[str]:
        done = subprocess.run([RUNUSER, "-u", "nobody", "--", "bash", str(work / "run.sh")],
                              env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        return [line[4:] for line in done.stdout.splitlines() if line.startswith("URL=")]

    try:
        _start_twice_and_connect(start_twice, work, port, env)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _start_twice_and_connect(start_twice: Any, work: Path, port: int,
                             env: dict[str, str]) -> None:
    import psycopg

    try:
        first, second = start_twice()
    except AssertionError:
        _stop_pg(work, env)
        raise
    assert first == second and f"@{socket.gethostname()}:{port}/surrogate" in first
    assert (work / "data" / "postgres.password").stat().st_mode & 0o777 == 0o600
    try:  # the server answers other hosts by password
        with psycopg.connect(first.replace("+psycopg", ""), connect_timeout=5) as conn:
            assert conn.execute("SELECT current_user").fetchone() == ("surrogate",)
        wrong = re.sub(r"surrogate:[0-9a-f]+@", "surrogate:wrong@", first)
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(wrong.replace("+psycopg", ""), connect_timeout=5)
    finally:
        _stop_pg(work, env)


def _stop_pg(work: Path, env: dict[str, str]) -> None:
    subprocess.run([RUNUSER, "-u", "nobody", "--", f"{_pg_bin()}/pg_ctl", "-D",
                    str(work / "data" / "postgres"), "-m", "fast", "-w", "stop"],
                   env=env, capture_output=True, timeout=60)
