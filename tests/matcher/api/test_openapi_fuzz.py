"""Schemathesis, an OpenAPI fuzzer, against the running query API (real HTTP, real Redis, image search with the
tiny re-ID model): every check it has, a bounded number of examples per operation, deterministic generation, and
zero failures: each rule the server enforces is declared, and each status it answers is documented."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest

from keyreid_stream.contracts import TrackletMessage
from keyreid_stream.matcher.api.queries import MatcherQueries
from keyreid_stream.matcher.state.records import Decision
from keyreid_stream.matcher.state.store import load_tracklets

TOKEN = "s3cret-token"  # conftest.API_TOKEN
EXAMPLES = 30  # per operation and phase: about a minute on two shared cores
# The one rule OpenAPI cannot declare: a time range's start after its end (`since` > `until`, `start` > `end`) is
# a 400 with a clear message. Only the operations that take a range may answer it to schema-valid input.
RANGE_RULE = "".join(
    f'[[operations]]\ninclude-path = "{path}"\n'
    '[operations.checks.positive_data_acceptance]\nexpected-statuses = ["2XX", "400", "401", "404"]\n'
    for path in ("/identities", "/identities/count", "/links"))


def _add_crops(shared, crop_embedder) -> None:
    """Three people stored in the image model's descriptor space, so that image search finds identities."""
    rng = np.random.default_rng(5)
    messages = []
    for i in range(3):
        space, descriptor = crop_embedder(rng.integers(0, 255, (64, 32, 3), dtype=np.uint8))
        messages.append(TrackletMessage("cam-a", 100 + i, 1.7e9 + i, 1.7e9 + i + 1, 1, descriptor, "keyreid_test",
                                        "random-init", message_id=f"{0xF00 + i:032x}"))
    assert shared.store.ingest(messages) == ["stored"] * 3
    tracklets = {t.tracklet_id: t for t in load_tracklets(shared.client, shared.keys, [m.message_id for m in messages])}
    shared.store.commit_decisions([Decision(m.message_id, f"g{100 + i}", "new", 0.0) for i, m in enumerate(messages)],
                                  tracklets, None, "lease-token")
    shared.index.add(space, list(tracklets), np.stack([t.descriptor for t in tracklets.values()]))


@pytest.mark.slow
def test_schemathesis_finds_nothing(shared, serve, crop_embedder, tmp_path: Path) -> None:
    _add_crops(shared, crop_embedder)  # this module's own scenario
    server = serve(MatcherQueries(shared.client, shared.keys, shared.index, max_results=50, embed_crop=crop_embedder),
                   token=TOKEN)
    config = tmp_path / "schemathesis.toml"  # the token from the environment, never in argv
    config.write_text('headers = { Authorization = "Bearer ${KEYREID_FUZZ_TOKEN}" }\n' + RANGE_RULE)
    command = [str(Path(sys.executable).with_name("schemathesis")), "--config-file", str(config), "--no-color",
               "run", f"{server.url}/openapi.json", "--checks", "all", "--max-examples", str(EXAMPLES),
               "--generation-deterministic", "--workers", "1", "--request-timeout", "30",
               "--report", "junit", "--report-dir", str(tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path, check=False,
                            env={**os.environ, "KEYREID_FUZZ_TOKEN": TOKEN})
    summary = result.stdout[-6000:]
    assert result.returncode == 0, summary
    operations = sum(len(methods) for methods in httpx.get(f"{server.url}/openapi.json").json()["paths"].values())
    assert f"{operations} selected / {operations} total" in result.stdout and " passed" in summary, summary
    assert "failures" not in summary.rsplit("SUMMARY", 1)[-1] or " 0 failures" in summary, summary
