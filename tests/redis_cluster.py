"""A real Redis Cluster for tests and benchmarks: three masters of our own on free ports.

    cluster = start_cluster()          # None when redis-server is not installed
    cluster.url                        # redis://127.0.0.1:<port of the first node>/0
    cluster.move_slot(slot, to_port)   # reshard one slot, key by key (SETSLOT + MIGRATE)
    cluster.stop()                     # stop the servers, remove their directory

Each node is `redis-server --cluster-enabled yes` with its own nodes file in a temporary directory,
joined by `redis-cli --cluster create ... --cluster-replicas 0`; start_cluster returns once every
node reports cluster_state:ok and agrees on who serves every slot. Under CI=true a missing
redis-server is a failure (see `tests.redis_server.missing`).
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field

import redis

SLOTS = 16384


@dataclass
class LocalCluster:
    """Masters we started (and may flush): their ports, processes and working directory."""

    ports: list[int]
    workdir: str
    processes: list[subprocess.Popen] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def client(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, socket_timeout=5)

    def node_id(self, port: int) -> str:
        return str(self.client(port).execute_command("CLUSTER", "MYID").decode())

    def owner(self, slot: int) -> int:
        """The port of the master that serves `slot` (as the first node sees it)."""
        for start, end, master, *_ in self.client(self.ports[0]).execute_command("CLUSTER", "SLOTS"):
            if start <= slot <= end:
                return int(master[1])
        raise AssertionError(f"slot {slot} is not served")

    def flushall(self) -> None:
        for port in self.ports:
            self.client(port).flushall()

    def move_slot(self, slot: int, to_port: int, pause: float = 0.0) -> int:
        """Reshard `slot` to the master on `to_port` as redis-cli does: IMPORTING/MIGRATING, MIGRATE
        the keys in small batches (sleeping `pause` between them, so readers meet the slot half
        moved), then SETSLOT NODE everywhere. Returns the number of keys moved."""
        from_port = self.owner(slot)
        if from_port == to_port:
            return 0
        source, target = self.client(from_port), self.client(to_port)
        source_id, target_id = self.node_id(from_port), self.node_id(to_port)
        target.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
        source.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
        moved = 0
        while True:
            keys = source.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 10)
            if not keys:
                break
            source.execute_command("MIGRATE", "127.0.0.1", to_port, "", 0, 5000, "KEYS", *keys)
            moved += len(keys)
            if pause:
                time.sleep(pause)
        for port in (to_port, from_port, *(p for p in self.ports if p not in (to_port, from_port))):
            self.client(port).execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
        return moved

    def kill(self, port: int) -> None:
        """Kill the node on `port` at once (its data is lost: no persistence)."""
        proc = self.processes[self.ports.index(port)]
        proc.kill()
        proc.wait()

    def restart(self, port: int, timeout: float = 30.0) -> None:
        """Start the node on `port` again (after kill), with its nodes file: it rejoins, empty."""
        self.processes[self.ports.index(port)] = _spawn(port, self.workdir)
        _wait(f"node {port} did not answer", lambda: self.client(port).ping(), timeout)
        _wait("the cluster did not become ok again", lambda: all(
            b"cluster_state:ok" in self.client(p).execute_command("CLUSTER", "INFO") for p in self.ports
        ), timeout)  # fmt: skip

    def stop(self) -> None:
        for proc in self.processes:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.processes:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free too, so below 55536."""
    while True:
        port = random.randrange(20_000, 45_000)
        if _free(port) and _free(port + 10_000):
            return port


def _spawn(port: int, workdir: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            f"{workdir}/nodes-{port}.conf",
            "--cluster-node-timeout",
            "5000",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
        ],  # fmt: skip
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _wait(what: str, ready, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if ready():
                return
        except redis.exceptions.RedisError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"the local Redis Cluster: {what} within {timeout}s")
        time.sleep(0.05)


def _slot_map(client: redis.Redis) -> list[tuple[int, int, int]]:
    return sorted((s, e, int(m[1])) for s, e, m, *_ in client.execute_command("CLUSTER", "SLOTS"))


def start_cluster(masters: int = 3, timeout: float = 30.0) -> LocalCluster | None:
    """Start `masters` cluster-enabled redis-servers and join them; None without redis-server."""
    if not (shutil.which("redis-server") and shutil.which("redis-cli")):
        return None
    ports: list[int] = []
    while len(ports) < masters:
        port = cluster_port()
        if all(abs(port - p) > 1 for p in ports):
            ports.append(port)
    cluster = LocalCluster(ports, tempfile.mkdtemp(prefix="fs-redis-cluster-"))
    try:
        cluster.processes = [_spawn(p, cluster.workdir) for p in ports]
        for p in ports:
            _wait(f"node {p} did not answer", lambda p=p: cluster.client(p).ping(), timeout)
        subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *(f"127.0.0.1:{p}" for p in ports),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],  # fmt: skip
            check=True,
            capture_output=True,
            timeout=timeout,
        )

        def agreed() -> bool:
            states = [cluster.client(p).execute_command("CLUSTER", "INFO") for p in ports]
            if not all(b"cluster_state:ok" in s for s in states):
                return False
            maps = [_slot_map(cluster.client(p)) for p in ports]
            return all(m == maps[0] for m in maps) and sum(e - s + 1 for s, e, _ in maps[0]) == SLOTS

        _wait("the nodes did not agree on the slots (cluster_state:ok)", agreed, timeout)
    except BaseException:
        cluster.stop()
        raise
    return cluster
