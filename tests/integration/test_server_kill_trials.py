"""Twenty runs, each interrupted by ``kill -9`` of its server at a random moment, all complete.

Each trial creates a run of a 20-node fan-out/fan-in graph on a live server, SIGKILLs the
server 0-0.5 s later, reads what the database recorded at that instant, then starts the next
server, which takes the run over once its lease (1 s) expired and resumes it from its journal.
The restarted server is the next trial's server. Four chains of five trials run side by side on
one database per backend, so a run may also be taken over by another chain's server.
"""

from __future__ import annotations

import os
import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from service.runtime.registry import discover
from tests.conftest import LiveServer
from tests.integration.durability import (
    DURABLE_WORKFLOWS,
    completed_event_nodes,
    completions_by_node,
    create_run,
    durable_env,
    open_store,
    wait_terminal,
)
from tests.integration.durable_workflows import BRANCHES

pytestmark = pytest.mark.slow

CHAINS = 4
TRIALS_PER_CHAIN = 5
NODES = {"start", "join", *BRANCHES}


@dataclass
class Trial:
    tag: str
    input: dict[str, Any]
    run_id: str = ""
    kill_after: float = 0.0
    recorded_at_kill: frozenset[str] = frozenset()  # nodes whose completion the DB held
    status_at_kill: str = ""


def _chain(
    database_url: str, tmp_path: Path, counter: Path, chain: int, rng: random.Random
) -> list[Trial]:
    env = durable_env(counter)
    trials: list[Trial] = []
    server = LiveServer(database_url, tmp_path / f"chain{chain}-0.log", **env)
    with open_store(database_url) as store:
        for i in range(TRIALS_PER_CHAIN):
            trial = Trial(tag=f"c{chain}t{i}", input={"tag": f"c{chain}t{i}", "delay": 0.05})
            trial.run_id = create_run(server.url, "fan_out_20", trial.input, max_concurrent=6)
            trial.kill_after = rng.uniform(0.0, 0.5)
            time.sleep(trial.kill_after)
            server.kill()
            server.stop()
            trial.recorded_at_kill = frozenset(r["node"] for r in store.journal(trial.run_id))
            run = store.get_run(trial.run_id)
            assert run is not None
            trial.status_at_kill = run.status
            server = LiveServer(database_url, tmp_path / f"chain{chain}-{i + 1}.log", **env)
            wait_terminal(store, trial.run_id, timeout=40)
            trials.append(trial)
    server.stop()
    return trials


def test_runs_killed_at_random_moments_complete_once_each_with_uninterrupted_outputs(
    database_url: str, tmp_path: Path
) -> None:
    seed = int(os.environ.get("GRAPHFLOW_TEST_SEED", random.randrange(2**32)))
    counter = tmp_path / "completions.txt"
    with ThreadPoolExecutor(CHAINS) as pool:
        chains = [
            pool.submit(_chain, database_url, tmp_path, counter, c, random.Random(seed + c))
            for c in range(CHAINS)
        ]
        trials = [t for f in chains for t in f.result()]
    assert len(trials) == CHAINS * TRIALS_PER_CHAIN

    graph = discover([DURABLE_WORKFLOWS])["fan_out_20"].graph
    with ThreadPoolExecutor(len(trials)) as pool:
        expected = list(pool.map(lambda t: graph.invoke(dict(t.input)), trials))

    interrupted = reran = 0
    with open_store(database_url) as store:
        for trial, want in zip(trials, expected, strict=True):
            why = f"seed={seed} trial={trial}"
            run = store.get_run(trial.run_id)
            assert run is not None and run.status == "succeeded", (why, run and run.error)
            assert run.output == want, why
            # In the database every node run completed exactly once: none redone, none lost.
            assert sorted(completed_event_nodes(store, trial.run_id)) == sorted(NODES), why
            ran = completions_by_node(counter, trial.tag)
            assert set(ran) == NODES, why
            for node, pids in ran.items():
                if node in trial.recorded_at_kill:
                    assert len(pids) == 1, f"{node} recorded before the kill ran again: {why}"
                else:
                    # In flight (or done but unrecorded) at the kill: at most once per process.
                    # It may run in more than two: another chain's server that took the run
                    # over can itself be killed by its own chain while the node runs.
                    assert len(pids) == len(set(pids)), (node, pids, why)
            interrupted += trial.status_at_kill == "running" and 0 < len(trial.recorded_at_kill)
            reran += any(len(p) > 1 for p in ran.values())
    print(f"seed={seed}: {interrupted} runs killed mid-run, {reran} with a node run twice")
    # Most kills must land mid-run, or the test would prove little.
    assert interrupted >= len(trials) // 3, (seed, interrupted)
