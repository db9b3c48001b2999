#!/usr/bin/env bash
# A citizen proposal from submission to completion, by hand, with curl, in simulated mode.
#
#   make up ARGS="--clock simulated"        # in one terminal
#   examples/walkthrough.sh                  # in another (needs curl and jq)
#
# MINJU_URL overrides the API address (default http://127.0.0.1:8000).
set -euo pipefail
API=${MINJU_URL:-http://127.0.0.1:8000}

say() { printf '\n== %s\n' "$*"; }
post() { # post PATH TOKEN [JSON]
  curl -sS --fail-with-body -X POST "$API$1" -H "Authorization: Bearer $2" \
    -H 'Content-Type: application/json' -d "${3:-{\}}"
}
token() { # token SUB ROLE [EXTRA-JSON-FIELDS]
  curl -sS --fail-with-body -X POST "$API/v1/dev/tokens" -H 'Content-Type: application/json' \
    -d "{\"sub\": \"$1\", \"role\": \"$2\"${3:+, $3}}" | jq -r .token
}
advance() { curl -sS --fail-with-body -X POST "$API/v1/dev/clock/advance" \
  -H 'Content-Type: application/json' -d "$1" | jq -r .now; }
status() { curl -sS "$API/v1/proposals/$1" | jq -r '"\(.status)  due \(.due_at)  overdue \(.overdue)"'; }

say "clock"; curl -sS "$API/v1/clock"; echo
PROPOSER=$(token citizen-1 citizen '"residency": "resident"')
ADMIN=$(token ops-1 admin)
PARKS=$(token parks-1 caseworker '"dept": "parks"')
COMMITTEE=$(token committee-1 committee)
AUDITOR=$(token auditor-1 auditor)

say "a citizen proposes"
ID=$(post /v1/proposals "$PROPOSER" \
  '{"title": "Shade trees on Jong-ro", "body": "Plant 200 trees", "estimated_cost_krw": 0}' | jq -r .id)
echo "proposal $ID"; status "$ID"

say "ten citizens support it (the 10th sends it to department review)"
for i in $(seq 1 10); do
  post "/v1/proposals/$ID/supports" "$(token "supporter-$i" citizen '"residency": "resident"')" >/dev/null
done
sleep 1; status "$ID"

say "the operations team assigns the parks department: the 20-day clock starts"
post "/v1/proposals/$ID/assign" "$ADMIN" '{"department": "parks", "note": "parks and green"}' | jq -r .due_at

say "21 days pass without an answer: the case is overdue and the department is notified"
advance '{"days": 21}'; sleep 1; status "$ID"

say "the department accepts, late"
post "/v1/proposals/$ID/review" "$PARKS" '{"decision": "accept", "reason": "Feasible within the greening plan"}' | jq -r .status

say "the committee screens it on the four criteria and writes the plan"
post "/v1/proposals/$ID/screening" "$COMMITTEE" \
  '{"decision": "advance", "scores": {"necessity": 8, "changeability": 7, "feasibility": 9, "impact": 8}, "note": "1st review"}' | jq -r .status
post "/v1/proposals/$ID/plan" "$COMMITTEE" \
  '{"summary": "Plant in April", "executing_department": "parks", "cost_krw": 0}' | jq -r .status

say "the department finds the plan appropriate: the vote opens for 30 days"
post "/v1/proposals/$ID/appropriateness" "$PARKS" '{"verdict": "appropriate", "reason": "Law and budget checked"}' | jq .vote

say "1,000 citizens vote (quorum for a non-budget plan: 1,000), 700 yes"
for i in $(seq 1 1000); do
  choice=$([ "$i" -le 700 ] && echo yes || echo no)
  post "/v1/proposals/$ID/ballots" "$(token "voter-$i" citizen '"residency": "resident"')" \
    "{\"choice\": \"$choice\"}" >/dev/null &
  [ $((i % 20)) -eq 0 ] && wait
done
wait

say "30 days pass: the vote closes and is tallied"
advance '{"days": 30, "seconds": 1}'; sleep 2
curl -sS "$API/v1/proposals/$ID" | jq '{status, vote}'

say "the department reports progress, then completion"
post "/v1/proposals/$ID/execution-reports" "$PARKS" '{"progress_pct": 50, "note": "100 trees planted"}' | jq -r .status
post "/v1/proposals/$ID/execution-reports" "$PARKS" '{"progress_pct": 100, "note": "200 trees planted", "final": true}' | jq -r .status

say "the timeline"
curl -sS "$API/v1/proposals/$ID/timeline" | jq -r '.items[] | "\(.at)  \(.stage)  \(.event)  [\(.actor_role)]  \(.note)"'

say "an auditor replays the case and recounts the vote"
post "/v1/audit/cases/proposal-$ID/replay" "$AUDITOR" | jq -c .
curl -sS "$API/v1/audit/ballots/$ID/recount" -H "Authorization: Bearer $AUDITOR" | jq -c .

say "the same from the command line: export, replay the file against this checkout, recount"
MINJU=${MINJU:-$(dirname "$0")/../.venv/bin/minju}
OUT=$(mktemp -d)
"$MINJU" audit --url "$API" --token "$AUDITOR" --no-progress export "proposal-$ID" --out "$OUT"
"$MINJU" audit --url "$API" --token "$AUDITOR" replay --dir "$OUT"
"$MINJU" audit --url "$API" --token "$AUDITOR" recount "$ID"
"$MINJU" audit --url "$API" --token "$AUDITOR" --no-progress timers "proposal-$ID"
