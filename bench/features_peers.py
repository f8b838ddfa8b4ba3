"""bench-features peer: Feast, over the files features_gen.py wrote in DIR.

  features_peers.py setup DIR     a feature repo in DIR/feast: three views of ten float features
                                  over view_*.parquet and a `history` view over history.parquet
                                  (event_ts, created timestamp written_at, TTL 30 days), the SQLite
                                  online store (Feast's local default) and the file offline store;
                                  `feast apply`, then `feast materialize` of the three views, timed
  features_peers.py offline DIR   get_historical_features of history:f0..f9 for entities.parquet
                                  (entity_id, event_timestamp), written to DIR/feast-training.parquet;
                                  prints seconds and peak resident memory
"""

import os
import resource
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

command, data = sys.argv[1], os.path.abspath(sys.argv[2])
repo = f"{data}/feast"
bin_dir = os.path.dirname(sys.executable)

DEFINITIONS = f'''
from datetime import timedelta
from feast import Entity, FeatureView, Field, FileSource
from feast.types import Float64
from feast.value_type import ValueType

entity = Entity(name="entity", join_keys=["entity_id"], value_type=ValueType.INT64)
schema = [Field(name=f"f{{i}}", dtype=Float64) for i in range(10)]


def view(name, path, online):
    source = FileSource(path=path, timestamp_field="event_ts", created_timestamp_column="written_at")
    return FeatureView(name=name, entities=[entity], ttl=timedelta(days=30), schema=schema, source=source, online=online)


v0 = view("v0", "{data}/view_0.parquet", True)
v1 = view("v1", "{data}/view_1.parquet", True)
v2 = view("v2", "{data}/view_2.parquet", True)
history = view("history", "{data}/history.parquet", False)
'''

CONFIG = """project: bench
registry: registry.db
provider: local
online_store:
  type: sqlite
  path: online.db
offline_store:
  type: file
entity_key_serialization_version: 3
"""


def feast(*args):
    subprocess.run([f"{bin_dir}/feast", *args], cwd=repo, check=True, stdout=subprocess.DEVNULL)


if command == "setup":
    os.makedirs(repo, exist_ok=True)
    for name in ("registry.db", "online.db"):
        if os.path.exists(f"{repo}/{name}"):
            os.remove(f"{repo}/{name}")
    with open(f"{repo}/feature_store.yaml", "w") as f:
        f.write(CONFIG)
    with open(f"{repo}/definitions.py", "w") as f:
        f.write(DEFINITIONS)
    feast("apply")
    end = datetime.now(timezone.utc)
    start = end - timedelta(days=11)
    began = time.monotonic()
    feast("materialize", start.isoformat(), end.isoformat())
    secs = time.monotonic() - began
    import pyarrow.parquet as pq

    rows = sum(pq.read_metadata(f"{data}/view_{v}.parquet").num_rows for v in range(3))
    print(f"feast          materialised {rows} rows into SQLite in {secs:.1f} s ({rows / secs:,.0f} rows/s)")
elif command == "offline":
    import pandas as pd
    from feast import FeatureStore

    store = FeatureStore(repo_path=repo)
    began = time.monotonic()
    entity_df = pd.read_parquet(f"{data}/entities.parquet")
    job = store.get_historical_features(entity_df=entity_df, features=[f"history:f{i}" for i in range(10)])
    job.to_df().to_parquet(f"{data}/feast-training.parquet")
    secs = time.monotonic() - began
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"feast          training set of {len(entity_df)} rows in {secs:.1f} s, peak {peak:.0f} MB resident")
else:
    sys.exit(__doc__)
