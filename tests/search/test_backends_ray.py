"""A search on a real two-node Ray cluster on 127.0.0.1, inside private network and pid namespaces.

``unshare -n -p -f --mount-proc`` gives the test its own network (loopback only, so Ray cannot
probe or reach any outside address) and its own pid namespace: when the script ends, the kernel
kills every process started in it (both Ray nodes included). Skips when Ray is missing or the
namespaces are not permitted here.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from .conftest import REPO, SYNTHETIC, subprocess_env

UNSHARE = ["unshare", "-n", "-p", "-f", "--mount-proc"]


def _namespaces_permitted() -> bool:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return False
    try:
        return subprocess.run([*UNSHARE, "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


pytestmark = [
    pytest.mark.slow,  # each test starts Ray (pytest -m slow; CI installs the ray extra for them)
    pytest.mark.skipif(
        importlib.util.find_spec("ray") is None, reason="Ray is not installed (pip install 'ray[default]')"
    ),
    pytest.mark.skipif(
        not _namespaces_permitted(), reason="`unshare -n -p -f --mount-proc` is not permitted here"
    ),
]


RAY_BIN = str(Path(sys.executable).with_name("ray"))


def run_on_cluster(tmp_path, port: int, cfg: dict, body: str, timeout: int) -> subprocess.CompletedProcess:
    """Start a Ray head node on 127.0.0.1:port inside fresh namespaces, then run ``body`` (bash).

    ``cfg`` is written to cfg.json with its execution section pointed at the cluster. ``body`` starts
    the second node and the search and must end with ``exit $rc``; every Ray process dies with the
    pid namespace when the script ends.
    """
    cfg = {**cfg, "execution": {**cfg["execution"], "backend": "ray", "ray_address": f"127.0.0.1:{port}"}}
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    prelude = textwrap.dedent(
        f"""
        set -e
        ip link set lo up
        export RAY_USAGE_STATS_ENABLED=0
        {RAY_BIN} start --head --port={port} --node-ip-address=127.0.0.1 --num-cpus=1 \\
            --include-dashboard=false --disable-usage-stats > head.log 2>&1
        """
    )
    return subprocess.run(
        [*UNSHARE, "bash", "-c", prelude + textwrap.dedent(body)],
        cwd=tmp_path,
        env=subprocess_env(PYTHONPATH=str(REPO)),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def journal_slots(tmp_path) -> list[tuple[int, int]]:
    recs = [json.loads(line) for line in (tmp_path / "exp" / "journal.jsonl").read_text().splitlines()]
    assert all(r["status"] in ("ok", "invariant") for r in recs), [r["status"] for r in recs]
    return sorted((r["generation"], r["index"]) for r in recs)


@pytest.mark.slow
def test_search_on_a_two_node_ray_cluster_by_address(tmp_path):
    port = 6391
    cfg = {
        "task": {"dataset": "digits"},
        "search": {"population_size": 4, "generations": 2, "seed": 1},
        "execution": {"evaluator": SYNTHETIC, "evaluator_options": {"sleep": 0.2}},
    }
    body = f"""
        {RAY_BIN} start --address=127.0.0.1:{port} --node-ip-address=127.0.0.1 --num-cpus=1 > node.log 2>&1
        set +e
        {sys.executable} -m taylorglo.search run cfg.json --dir exp --no-progress
        rc=$?
        {RAY_BIN} stop --force > /dev/null 2>&1
        exit $rc
        """
    proc = run_on_cluster(tmp_path, port, cfg, body, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "generation limit (2) reached" in proc.stdout
    assert journal_slots(tmp_path) == [(g, i) for g in range(2) for i in range(4)]


@pytest.mark.slow
def test_search_survives_the_second_ray_node_dying_mid_generation(tmp_path):
    # The second node runs with --block in the background so that its pid is known; once the first
    # evaluation of generation 0 is journaled it is killed (SIGKILL: the node's raylet and workers go
    # with it). Ray retries its lost tasks on the head node and the search completes with every
    # candidate evaluated exactly once in the journal.
    port = 6393
    cfg = {
        "task": {"dataset": "digits"},
        "search": {"population_size": 6, "generations": 2, "seed": 2, "retries": 2},
        # candidate 0 finishes first; by then both nodes run a 4 s candidate, so the kill
        # always takes a running task with it
        "execution": {"evaluator": SYNTHETIC, "evaluator_options": {"sleep": [0.5, 4.0, 4.0, 4.0, 0.5, 0.5]}},
    }
    alive = "import ray; ray.init(address='127.0.0.1:%d'); print('alive nodes', sum(n['Alive'] for n in ray.nodes()))"
    body = f"""
        {RAY_BIN} start --address=127.0.0.1:{port} --node-ip-address=127.0.0.1 --num-cpus=1 --block \\
            > node.log 2>&1 &
        node=$!
        sleep 3
        set +e
        {sys.executable} -m taylorglo.search run cfg.json --dir exp --no-progress > search.log 2>&1 &
        search=$!
        for i in $(seq 1 300); do
            if [ -s exp/journal.jsonl ]; then break; fi
            sleep 0.1
        done
        pkill -KILL -P $node; kill -KILL $node
        echo "killed the second node" > killed.txt
        wait $search
        rc=$?
        cat search.log
        {sys.executable} -c "{alive % port}" 2> /dev/null
        {RAY_BIN} stop --force > /dev/null 2>&1
        exit $rc
        """
    proc = run_on_cluster(tmp_path, port, cfg, body, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "killed.txt").exists()
    assert "alive nodes 1" in proc.stdout, proc.stdout  # the cluster did lose the node
    assert "generation limit (2) reached" in proc.stdout
    assert journal_slots(tmp_path) == [(g, i) for g in range(2) for i in range(6)]
