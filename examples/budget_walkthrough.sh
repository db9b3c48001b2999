#!/usr/bin/env bash
# One budget-year cycle by hand, with curl, in simulated mode: the phases of both types on the
# calendar, metropolitan projects from the call to the ballot, the August vote, the results.
#
#   make up ARGS="--clock simulated"        # in one terminal
#   examples/budget_walkthrough.sh           # in another (needs curl and jq)
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
to() { # to ISO-TIME: move the simulated clock there (safe to repeat), then let the worker settle
  curl -sS --fail-with-body -X POST "$API/v1/dev/clock/advance" \
    -H 'Content-Type: application/json' -d "{\"to\": \"$1\"}" | jq -r '"clock: \(.now)"'
  sleep 1
}
phases() { curl -sS "$API/v1/budget-cycles/$YEAR" |
  jq -r '.phases | to_entries[] | "  \(.key): \(.value.phase) until \(.value.phase_ends_at)"'; }

ADMIN=$(token ops-1 admin)
COMMITTEE=$(token committee-1 committee)
PROPOSER=$(token citizen-1 citizen '"residency": "resident"')
NOW=$(curl -sS "$API/v1/clock" | jq -r .now)
YEAR=$(( ${NOW:0:4} + 1 ))

say "the operations team starts the $YEAR cycle (rulebook seoul-2021, drop ratio 30 %)"
post /v1/budget-cycles "$ADMIN" "{\"year\": $YEAR, \"drop_ratio\": 0.3}" | jq -c '{year, rulebook, drop_ratio}'
phases

say "1 January, 00:00 Seoul: both types start on the calendar, by themselves"
to "$YEAR-01-01T00:00:01+09:00"; phases

say "the call: three metropolitan projects (caps are exclusive; at least two districts)"
submit() { post "/v1/budget-cycles/$YEAR/projects" "$PROPOSER" \
  "{\"title\": \"$1\", \"body\": \"$1 in two districts\", \"field\": \"environment\", \"kind\": \"metro\",
    \"cost_krw\": $2, \"event\": false, \"districts\": [\"Mapo-gu\", \"Jongno-gu\"]}" | jq -r .id; }
A=$(submit "Riverside shade" 2000000000); B=$(submit "Rain gardens" 1000000000)
C=$(submit "Cool roofs" 1000000000)
echo "A $A"; echo "B $B"; echo "C $C"

say "1 March: screening (eligible: below the cap, two districts)"
to "$YEAR-03-01T00:00:01+09:00"; phases
for P in $A $B $C; do
  post "/v1/projects/$P/screening" "$ADMIN" '{"eligible": true, "reason": "city affair"}' | jq -r '"  \(.title): \(.status)"'
done

say "15 April: the public-private council reviews them (scores incl. social inclusiveness)"
to "$YEAR-04-15T00:00:01+09:00"
for P in $A $B $C; do
  post "/v1/projects/$P/review" "$COMMITTEE" \
    '{"advance": true, "scores": {"necessity": 80, "feasibility": 70, "impact": 90, "inclusiveness": 60}, "note": "site visit"}' |
    jq -r '"  \(.title): \(.status), score \(.scores.total)"'
done

say "1 August: the vote opens by itself; 10 citizens and 10 budget-school graduates vote"
to "$YEAR-08-01T00:00:01+09:00"; phases
ballot() { post "/v1/budget-cycles/$YEAR/ballots" "$1" "{\"kind\": \"metro\", \"project_ids\": $2}" >/dev/null; }
for i in $(seq 1 10); do
  case $i in 1|2|3|4) CHOICE="[\"$A\", \"$C\"]";; 5|6) CHOICE="[\"$A\", \"$B\"]";; 10) CHOICE="[\"$C\"]";; *) CHOICE="[\"$A\"]";; esac
  ballot "$(token "voter-$i" citizen '"residency": "resident"')" "$CHOICE"
done
for i in $(seq 1 10); do
  case $i in 9|10) CHOICE="[\"$A\"]";; *) CHOICE="[\"$A\", \"$B\"]";; esac
  ballot "$(token "graduate-$i" citizen '"residency": "resident", "budget_school": true')" "$CHOICE"
done
echo "results while voting (nobody sees counts before the close):"
curl -sS "$API/v1/budget-cycles/$YEAR/results?kind=metro" | jq -r '"  \(.status) \(.detail)"'

say "21 August: the vote closes by itself; counted per voter group, the lowest 30 % drop"
to "$YEAR-08-21T00:00:01+09:00"; sleep 1
curl -sS "$API/v1/budget-cycles/$YEAR/results?kind=metro" | jq -r '
  "rule \(.rule), ballots \(.ballots), recount matches the recorded tally: \(.matches_recorded_tally)",
  (.fields[] | .projects[] | "  #\(.rank) \(.name): \(.status)  approvals \(.approvals)  score \(.score)  cost \(.cost_krw)")'

say "the pabulib file"
curl -sS "$API/v1/budget-cycles/$YEAR/results.pb?kind=metro" | head -20

say "1 December to 1 January: the council phase, then closed"
to "$(( YEAR + 1 ))-01-01T00:00:01+09:00"; phases

say "the cycle's timeline"
curl -sS "$API/v1/budget-cycles/$YEAR/timeline" | jq -r '.items[] | "  \(.at)  \(.event)  \(.note)"'
