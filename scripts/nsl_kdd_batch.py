"""Print a JSON body for POST /api/v1/events/ built from NSL-KDD rows shipped in data/.

    python scripts/nsl_kdd_batch.py --count 500 --offset 20000 > batch.json
    curl -H "Authorization: Token $TOKEN" -H 'Content-Type: application/json' \\
         --data @batch.json http://127.0.0.1:8000/api/v1/events/
"""

import argparse
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from reviews.csv_import import infer_schema, nsl_kdd_layout, read_events  # noqa: E402

HISTORY = ROOT / "data" / "nsl-kdd" / "KDDTrain+_20Percent.csv.gz"
LIVE = ROOT / "data" / "nsl-kdd" / "KDDTest+.csv.gz"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--offset", type=int, default=0, help="first row of KDDTest+ to use")
    parser.add_argument("--prefix", default="curl", help="external_id prefix (the same prefix and rows give the same ids)")
    args = parser.parse_args()
    schema = infer_schema(HISTORY, {"label", "difficulty"})
    # Row n of the file occurs at start + n seconds: the last row printed occurs now, not hours ahead.
    layout = nsl_kdd_layout(
        schema,
        id_prefix=args.prefix,
        start=datetime.now(UTC) - timedelta(seconds=args.offset + args.count),
        spacing=timedelta(seconds=1),
        labelled=False,
    )
    events = []
    for i, (event, _) in enumerate(read_events(LIVE, layout)):
        if i < args.offset:
            continue
        if len(events) == args.count:
            break
        events.append(event)
    json.dump({"source": "nsl-kdd", "events": events}, sys.stdout)


if __name__ == "__main__":
    main()
