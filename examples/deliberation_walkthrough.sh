#!/usr/bin/env bash
# Public deliberation by hand, in simulated mode: a proposal gathers 500 supports, is selected
# for a forum, the forum reaches 5,000 participants with a majority and is handed to a budget
# year; an ask runs to its published review; a sortition is committed, revealed and verified.
#
#   make up ARGS="--clock simulated"          # in one terminal
#   examples/deliberation_walkthrough.sh       # in another (curl, jq, xargs; takes a minute or two)
set -euo pipefail
API=${MINJU_URL:-http://127.0.0.1:8000}
export API

say() { printf '\n== %s\n' "$*"; }
post() { curl -sS --fail-with-body -X POST "$API$1" -H "Authorization: Bearer $2" \
  -H 'Content-Type: application/json' -d "${3:-{\}}"; }
token() { curl -sS --fail-with-body -X POST "$API/v1/dev/tokens" -H 'Content-Type: application/json' \
  -d "{\"sub\": \"$1\", \"role\": \"$2\"${3:+, $3}}" | jq -r .token; }
advance() { curl -sS --fail-with-body -X POST "$API/v1/dev/clock/advance" \
  -H 'Content-Type: application/json' -d "$1" | jq -r .now; }
# many PREFIX COUNT PATH BODY: COUNT different citizens POST BODY to PATH, 16 at a time.
many() {
  seq 1 "$2" | xargs -P 16 -I{} sh -c '
    t=$(curl -sS -X POST "$API/v1/dev/tokens" -H "Content-Type: application/json" \
      -d "{\"sub\": \"$0-{}\", \"role\": \"citizen\", \"residency\": \"resident\"}" | jq -r .token)
    curl -sS -o /dev/null -w "%{http_code}\n" -X POST "$API$1" -H "Authorization: Bearer $t" \
      -H "Content-Type: application/json" -d "$2"' "$1" "$3" "$4" | sort | uniq -c
}

ADMIN=$(token ops-1 admin)
COMMITTEE=$(token committee-1 committee)
HEALTH=$(token health-1 caseworker '"dept": "health"')

say "a sortition: the admin commits to sha256(seed), reveals the seed, anyone verifies"
members=$(jq -nc '[range(0; 200) | {person_id: "candidate-\(.)", sex: (if . % 2 == 0 then "female" else "male" end),
  birth_year: (1950 + . % 50), district: (["Jongno-gu","Mapo-gu","Gangnam-gu","Nowon-gu"][. % 4])}]')
post /v1/sortition-pools "$ADMIN" "{\"name\": \"agenda-2027\", \"members\": $members}" | jq -c '{name}'
SEED="walkthrough seed $(date +%s)"
COMMIT=$(printf '%s' "$SEED" | sha256sum | cut -d' ' -f1)
DRAW=$(post /v1/sortitions "$ADMIN" "{\"purpose\": \"agenda_selection_group\", \"size\": 20,
  \"strata\": [\"sex\", \"age_band\", \"district\"], \"pool\": \"agenda-2027\", \"seed_commitment\": \"$COMMIT\"}" | jq -r .id)
post "/v1/sortitions/$DRAW/reveal" "$ADMIN" "{\"seed\": \"$SEED\"}" | jq -c '{status, members: (.members | length)}'
curl -sS "$API/v1/sortitions/$DRAW/verify" | jq -c .

say "a seoul-2020 proposal gathers 500 supports within 30 days"
ID=$(post /v1/proposals "$(token proposer-1 citizen '"residency": "resident"')" \
  '{"title": "Support for infertility treatment", "body": "The city should help pay", "rulebook": "seoul-2020"}' | jq -r .id)
many supporter 500 "/v1/proposals/$ID/supports" '{}'
sleep 1; curl -sS "$API/v1/proposals/$ID" | jq -c '{status, support_count}'

say "the planning group's agenda, with the drawn selection group"
post "/v1/proposals/$ID/agenda/plan" "$ADMIN" "{\"agenda_title\": \"Infertility support\",
  \"summary\": \"Should the city fund treatment?\", \"forum_kind\": \"for_against\", \"selection_draw_id\": \"$DRAW\"}" | jq -c .selection_group

say "day 31: the selection group decides to hold a forum"
advance '{"days": 31}'
FORUM=$(post "/v1/proposals/$ID/agenda/decision" "$COMMITTEE" \
  '{"hold_forum": true, "votes_for": 14, "votes_against": 6, "reason": "Broad public interest"}' | jq -r .forum_id)
echo "forum $FORUM"

say "5,000 citizens take part: 2,700 for, 2,300 against"
many for-voter 2700 "/v1/forums/$FORUM/participations" '{"position": "for"}'
many against-voter 2300 "/v1/forums/$FORUM/participations" '{"position": "against"}'

say "30 days later the forum closes, is counted, and goes to its budget year"
advance '{"days": 30, "seconds": 1}'; sleep 2
YEAR=$(curl -sS "$API/v1/forums/$FORUM" | tee /dev/stderr | jq -r .budget_year)
echo; curl -sS "$API/v1/forums?budget_year=$YEAR" | jq -c '[.items[] | {id, budget_year, carried_over}]'

say "Seoul asks: requested 15 days ahead, open 30 days, reviewed by the department"
NOW=$(curl -sS "$API/v1/clock" | jq -r .now)
OPENS=$(python3 -c "import datetime,sys; t=datetime.datetime.fromisoformat(sys.argv[1]); print((t+datetime.timedelta(days=15)).isoformat())" "$NOW")
CLOSES=$(python3 -c "import datetime,sys; t=datetime.datetime.fromisoformat(sys.argv[1]); print((t+datetime.timedelta(days=30)).isoformat())" "$OPENS")
ASK=$(post /v1/asks "$HEALTH" "{\"title\": \"Late-night clinics?\", \"body\": \"Should the city fund them?\",
  \"opens_at\": \"$OPENS\", \"closes_at\": \"$CLOSES\"}" | jq -r .id)
advance '{"days": 15, "seconds": 1}' >/dev/null
many asked 40 "/v1/asks/$ASK/participations" '{"position": "for", "opinion": "Yes, please"}'
advance '{"days": 30}' >/dev/null; sleep 1
curl -sS "$API/v1/asks/$ASK" | jq -c '{status, participants, for, due_at}'
post "/v1/asks/$ASK/review" "$HEALTH" '{"summary": "We will pilot two clinics", "actions": "Budget request for 2027"}' | jq -c '{status, review_summary}'
