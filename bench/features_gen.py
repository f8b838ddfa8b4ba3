"""bench-features data, seeded (the same files every run), as Parquet in OUT:
- view_0.parquet … view_2.parquet: one row per entity (ENTITIES): entity_id, event_ts, written_at
  (UTC timestamps within the last 10 days, written up to an hour after the event), f0 … f9;
- history.parquet: HISTORY rows of one view over the same entities (about HISTORY / ENTITIES
  values each), corrections included (a tenth of the rows repeat an event time, written later);
- entities.parquet: ENTITY_ROWS rows of entity_id and event_timestamp to join the history to.
Usage: features_gen.py ENTITIES HISTORY ENTITY_ROWS OUT"""

import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

entities, history, entity_rows, out = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
rng = np.random.default_rng(20261203)
now_ms = int(time.time() * 1000)
DAY = 86_400_000


def ts(ms):
    return pa.array(ms.astype("datetime64[ms]"), type=pa.timestamp("ms", tz="UTC"))


def table(ids, event_ms, written_ms):
    cols = {"entity_id": pa.array(ids, type=pa.int64()), "event_ts": ts(event_ms), "written_at": ts(written_ms)}
    for f in range(10):
        cols[f"f{f}"] = pa.array(rng.normal(f, 1.0 + f / 10, len(ids)))
    return pa.table(cols)


for v in range(3):
    event = now_ms - rng.integers(DAY // 24, 10 * DAY, entities)
    written = event + rng.integers(0, 3_600_000, entities)
    pq.write_table(table(np.arange(entities), event, written), f"{out}/view_{v}.parquet")

ids = rng.integers(0, entities, history)
event = now_ms - rng.integers(DAY // 24, 10 * DAY, history)
# A tenth of the rows correct the row before them: same entity, same event time, written later.
fix = np.flatnonzero(rng.random(history) < 0.1)
fix = fix[fix > 0]
ids[fix] = ids[fix - 1]
event[fix] = event[fix - 1]
written = event + rng.integers(0, 3_600_000, history)
written[fix] = written[fix - 1] + rng.integers(1, 2 * DAY, len(fix))
pq.write_table(table(ids, event, written), f"{out}/history.parquet", row_group_size=1 << 20)

at = now_ms - rng.integers(0, 10 * DAY, entity_rows)
pq.write_table(
    pa.table({"entity_id": pa.array(rng.integers(0, entities, entity_rows), type=pa.int64()), "event_timestamp": ts(at)}),
    f"{out}/entities.parquet",
)
print(f"features data: 3 views x {entities} entities, {history} history rows, {entity_rows} entity rows in {out}")
