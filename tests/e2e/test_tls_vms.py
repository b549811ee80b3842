"""Per-role TLS of the GCE and EC2 clusters, on the emulated clouds.

The VMs read their role's certificate and key from a per-cluster secret at boot (Secret
Manager / Secrets Manager): no private-key bytes in any instance's metadata / user-data, serial
console or process command line; tasks run over TLS; the secrets are gone after close and
after a failed start. ``dask.tls.vm-certificates = "metadata"`` ships each VM its own role's
pair only, never the client's.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from oxeo_flows import dask_runner, load_stack
from oxeo_flows.errors import ClusterError
from oxeo_flows.testing.compute import ComputeEmulator
from oxeo_flows.testing.secretmanager import SecretManagerEmulator

pytestmark = pytest.mark.slow

PROJECT = "oxeo-test"


def key_canaries(pems: list[str]) -> list[str]:
    """Fragments of each key's secret part (PKCS#8 EC: the scalar), raw and base64.

    The armor lines, the PKCS#8 algorithm prefix (shared by every P-256 key) and the public key
    at the end are not secret; the first 48 characters of the body are the prefix.
    """
    out: list[str] = []
    for pem in pems:
        lines = [line for line in pem.splitlines() if line and "-----" not in line]
        first, second = lines[0][48:64], lines[1][:26]
        out += [first, second]
        for shift in range(3):
            encoded = base64.b64encode(second[shift:].encode()).decode()
            out.append(encoded[4:-4])
    return out


def assert_absent(canaries: list[str], where: str, text: str) -> None:
    found = [c for c in canaries if c in text]
    assert not found, f"private-key bytes in {where}: {found[:2]}"


def cmdlines(pids: list[int]) -> str:
    """The command lines and environments of ``pids`` and all their descendants (forkservers
    and Nanny workers included)."""
    seen: set[int] = set()
    todo = list(pids)
    out: list[str] = []
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        proc = Path(f"/proc/{pid}")
        try:
            out.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode())
            out.append((proc / "environ").read_bytes().replace(b"\0", b" ").decode())
            children = (proc / "task" / str(pid) / "children").read_text().split()
        except OSError:
            continue
        todo += [int(c) for c in children]
    assert out, "no VM process found"
    return "\n".join(out)


def gce_stack(compute: ComputeEmulator, sm: SecretManagerEmulator, **tls: Any) -> Any:
    return load_stack(
        overrides={
            "gcp": {
                "project": PROJECT,
                "region": "europe-west4",
                "zone": "europe-west4-a",
                "network": "dask",
                "subnetwork": "dask",
                "endpoints": {"compute": compute.endpoint, "secret-manager": sm.endpoint},
            },
            "dask": {
                "backend": "gcp",
                "start-timeout": 60,
                "n-workers": 1,
                "gcp": {"docker-image": "europe-west4-docker.pkg.dev/oxeo-test/flows/x:1"},
                "tls": tls,
            },
        }
    )


@pytest.fixture
def gce(
    compute_emulator: ComputeEmulator, secret_manager_emulator: SecretManagerEmulator
) -> Iterator[tuple[ComputeEmulator, SecretManagerEmulator]]:
    yield compute_emulator, secret_manager_emulator
    compute_emulator.wait_idle()
    assert compute_emulator.processes() == []


def _gce_texts(compute: ComputeEmulator) -> dict[str, str]:
    """What `compute.instances.get` shows of each VM, and its serial console."""
    from oxeo_flows.clusters.gcp import compute_client

    api = compute_client(compute.endpoint)
    texts: dict[str, str] = {}
    for name in list(compute.vms):
        got = api.instances().get(project=PROJECT, zone="europe-west4-a", instance=name).execute()
        texts[f"instances.get {name}"] = json.dumps(got)
        serial = (
            api.instances()
            .getSerialPortOutput(project=PROJECT, zone="europe-west4-a", instance=name)
            .execute()
        )
        texts[f"serial console {name}"] = serial.get("contents", "")
    return texts


def test_gce_vms_fetch_their_role_certificate_from_a_per_cluster_secret(
    gce: tuple[ComputeEmulator, SecretManagerEmulator],
) -> None:
    from distributed import Client

    compute, sm = gce
    runner = dask_runner(stack=gce_stack(compute, sm))
    cluster = runner.cluster_class(**runner.cluster_kwargs, cluster_name="oxeo-tls00001")
    base = "oxeo-dask-oxeo-tls00001"
    try:
        # One secret per VM role; the client's pair is not stored.
        assert sorted(n for (p, n) in sm.secrets if p == PROJECT) == [
            f"{base}-scheduler",
            f"{base}-worker",
        ]
        bundles = {
            role: json.loads(sm.secrets[(PROJECT, f"{base}-{role}")][-1])
            for role in ("scheduler", "worker")
        }
        keys = [b["key"] for b in bundles.values()] + [cluster.security.tls_client_key]
        assert len(set(keys)) == 3  # one key per role
        assert cluster.security.tls_scheduler_key is None  # the client holds its own only
        assert cluster.security.tls_worker_key is None
        with Client(cluster, security=cluster.security) as client:
            assert client.scheduler.address.startswith("tls://127.10.0.")
            assert client.submit(lambda x: x + 1, 41).result(timeout=30) == 42
            assert len(client.scheduler_info()["workers"]) == 1

            def facts() -> dict[str, str]:
                with open(f"/proc/{os.getppid()}/cmdline", "rb") as f:
                    parent = f.read().replace(b"\0", b" ").decode()
                return {"parent": parent, "seed": os.environ.get("PYTHONHASHSEED", "")}

            # The Nanny's worker process was forked from the forkserver the VM started first,
            # with the environment the Nanny gives a spawned one.
            (got,) = client.run(facts).values()
            assert "multiprocessing.forkserver" in got["parent"], got
            assert got["seed"] == "6640"
        # Each VM read its own role's secret with its own credentials.
        read = [a.rsplit("/versions/", 1)[0].rsplit("/", 1)[1] for a in sm.accessed]
        assert sorted(read) == [f"{base}-scheduler", f"{base}-worker"]

        canaries = key_canaries(keys)
        texts = _gce_texts(compute)
        assert len(texts) == 4
        for where, text in texts.items():
            assert_absent(canaries, where, text)
        assert "oxeo_flows.dask_vm scheduler" in texts[next(iter(texts))]
        consoles = [t for where, t in texts.items() if where.startswith("serial console")]
        assert any("the Nanny forks its worker from a forkserver" in t for t in consoles)
        assert_absent(canaries, "VM process command lines", cmdlines(compute.processes()))
    finally:
        cluster.close()
    compute.wait_idle()
    assert compute.vms == {}
    assert not [n for (p, n) in sm.secrets if n.startswith(base)]


def test_gce_nanny_false_runs_the_worker_as_the_vms_container_process(
    gce: tuple[ComputeEmulator, SecretManagerEmulator],
) -> None:
    from distributed import Client

    compute, sm = gce
    runner = dask_runner(stack=gce_stack(compute, sm), nanny=False, n_workers=2)
    assert runner.cluster_kwargs["nanny"] is False
    cluster = runner.cluster_class(**runner.cluster_kwargs, cluster_name="oxeo-tls00004")
    try:
        with Client(cluster, security=cluster.security) as client:
            client.wait_for_workers(2, timeout=60)
            assert client.submit(lambda x: x + 1, 41).result(timeout=30) == 42

            def facts() -> tuple[int, str, int]:
                return os.getpid(), os.environ.get("PYTHONHASHSEED", ""), hash("oxeo-flows")

            got = list(client.run(facts).values())
        containers = {
            m.container.pid for m in compute.machines() if m.role == "worker" and m.container
        }
        # No Nanny and no forkserver: each worker is the process its VM's container started
        # (re-executed in place with the Nanny's environment): both hash alike.
        assert {pid for pid, _, _ in got} == containers
        assert [seed for _, seed, _ in got] == ["6640", "6640"]
        assert len({digest for _, _, digest in got}) == 1
        text = "\n".join(m.serial_output() for m in compute.machines() if m.role == "worker")
        assert "distributed.nanny" not in text
        assert "forkserver" not in text
        assert text.count("no Nanny: the worker runs in this process (PYTHONHASHSEED=6640)") == 2
    finally:
        cluster.close()
    compute.wait_idle()
    assert compute.vms == {}


def test_gce_failed_start_deletes_the_secrets(
    gce: tuple[ComputeEmulator, SecretManagerEmulator],
) -> None:
    compute, sm = gce
    compute.die_at_boot("scheduler")
    runner = dask_runner(stack=gce_stack(compute, sm))
    with pytest.raises(ClusterError):
        runner.cluster_class(**runner.cluster_kwargs, cluster_name="oxeo-tls00002")
    assert sm.calls["CreateSecret"] == 2
    assert sm.secrets == {}
    compute.wait_idle()
    assert compute.vms == {}


def test_gce_metadata_delivery_ships_each_vm_its_own_role_only(
    gce: tuple[ComputeEmulator, SecretManagerEmulator],
) -> None:
    from distributed import Client

    compute, sm = gce
    runner = dask_runner(stack=gce_stack(compute, sm, **{"vm-certificates": "metadata"}))
    cluster = runner.cluster_class(**runner.cluster_kwargs, cluster_name="oxeo-tls00003")
    try:
        assert sm.secrets == {}
        with Client(cluster, security=cluster.security) as client:
            assert client.submit(lambda x: x * 2, 21).result(timeout=30) == 42
        # The client's key is in no VM's metadata (the VMs' own keys are: the documented cost).
        texts = _gce_texts(compute)
        for where, text in texts.items():
            assert_absent(key_canaries([cluster.security.tls_client_key]), where, text)
        # The canary sees a key where one is (the control): the worker's own, in its metadata.
        worker_key = cluster._plan.vm_tls.certs.keys["worker"]
        (worker,) = [w for w in texts if w.startswith("instances.get") and "-worker-" in w]
        assert any(c in texts[worker] for c in key_canaries([worker_key]))
        (sched,) = [w for w in texts if w.startswith("instances.get") and "-scheduler" in w]
        assert_absent(key_canaries([worker_key]), "the scheduler's metadata", texts[sched])
    finally:
        cluster.close()
    compute.wait_idle()
    assert compute.vms == {}


def test_ec2_instances_fetch_their_role_certificate_from_secrets_manager(
    ec2_emulator: Any,
) -> None:
    from distributed import Client

    emulator = ec2_emulator
    ami = emulator.client().describe_images()["Images"][0]["ImageId"]
    stack = load_stack(
        overrides={
            "aws": {
                "region": emulator.region,
                "endpoint-url": emulator.endpoint_url,
                "vpc": emulator.vpc_id,
                "subnets": [emulator.subnet_id],
                "security-groups": [emulator.security_group_id],
            },
            "dask": {
                "backend": "ec2",
                "start-timeout": 60,
                "n-workers": 1,
                "ec2": {"docker-image": "x/flows:1", "ami": ami},
            },
        }
    )
    runner = dask_runner(stack=stack)
    cluster = runner.cluster_class(**runner.cluster_kwargs, cluster_name="oxeo-tls00004")
    sm = emulator.client("secretsmanager")
    ec2 = emulator.client("ec2")
    base = "oxeo-dask-oxeo-tls00004"
    try:
        names = sorted(s["Name"] for s in sm.list_secrets()["SecretList"])
        assert names == [f"{base}-scheduler", f"{base}-worker"]
        keys = [json.loads(sm.get_secret_value(SecretId=n)["SecretBinary"])["key"] for n in names]
        keys.append(cluster.security.tls_client_key)
        with Client(cluster, security=cluster.security) as client:
            assert client.submit(lambda x: x + 1, 41).result(timeout=30) == 42
        canaries = key_canaries(keys)
        checked = 0
        for iid in emulator.live_instances():
            attr = ec2.describe_instance_attribute(InstanceId=iid, Attribute="userData")
            raw = attr.get("UserData", {}).get("Value")
            if not raw:
                continue
            packed = base64.b64decode(raw)
            # gzip-compressed by default (EC2's 16 KB limit); cloud-init unpacks it.
            user_data = (gzip.decompress(packed) if packed[:2] == b"\x1f\x8b" else packed).decode()
            checked += "oxeo_flows.dask_vm" in user_data
            assert_absent(canaries, f"user-data of {iid}", user_data)
            console = ec2.get_console_output(InstanceId=iid).get("Output", "")
            assert_absent(canaries, f"console of {iid}", console)
        assert checked == 2  # the scheduler and the worker
        assert_absent(canaries, "VM process command lines", cmdlines(emulator.processes()))
    finally:
        cluster.close()
    emulator.wait_idle()
    assert sm.list_secrets()["SecretList"] == []
    assert emulator.processes() == []
    assert os.environ.get("OXEO_DASK_TLS_SECRET") is None
