#!/usr/bin/env bash
# A whole campaign on the bioreactor from the command line (experiments of up to two variables:
# its best needs temperature and pH together): ask, run the lab, tell, ten times;
# then the status and its figure. Every file goes to the folder given (default: a new ./campaign).
#   bash examples/bioreactor/campaign.sh [FOLDER] [EXPERIMENTS]
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
DIR=${1:-campaign}
N=${2:-10}
mkdir -p "$DIR"
STATE="$DIR/bio.acbo"
acbo campaign init --data "$HERE/observational.csv" --target titer --maximize --domains "$HERE/domains.json" \
  --intervenable temperature,pH,feed_rate --max-set 2 --budget "$N" --state "$STATE"
for i in $(seq 1 "$N"); do
  # the pending experiment as "name=value, ..." (the CSV output: a header row and one row of values)
  SET=$(acbo campaign ask --state "$STATE" --format csv | python -c \
    "import csv, sys; r = next(csv.DictReader(sys.stdin)); print(', '.join(f'{k}={v}' for k, v in r.items()))")
  python "$HERE/lab.py" --set "$SET" --seed "$i" --out "$DIR/measured-$i.csv"
  acbo campaign tell --state "$STATE" --result "$DIR/measured-$i.csv"
done
acbo campaign status --state "$STATE" --plot "$DIR/status.png"
acbo campaign export --state "$STATE" --out "$DIR/history.csv"
