#!/usr/bin/env bash
# One budget-year cycle by hand, with curl, in simulated mode, from January to the December city
# council, for both types on one calendar:
#
# - deliberative (숙의형, process.md §5): field allocations; citizen councils 5:5 (active members
#   and a revealed draw of budget-school graduates) and the Budget Square (a revealed draw of
#   `sortition.square_size` citizens); existing programmes (caseworkers) and new items (council
#   members); the shortlist at 130 %; deliberation; the Square's opinions; the end-of-July vote
#   selecting to the 100 % level per field;
# - metropolitan (시민숙의 광역, process.md §6a): the call, screening, the council review, the
#   August vote dropping the lowest 30 %;
# - then the general assembly's approval and the city council's decision, recorded as given.
#
#   make up ARGS="--clock simulated"        # in one terminal
#   examples/budget_walkthrough.sh           # in another (needs curl, jq and sha256sum)
#
# MINJU_URL overrides the API address (default http://127.0.0.1:8000). The year is the one after
# the clock's, so the script can run again on the same stack (it then plays the next year).
set -euo pipefail
API=${MINJU_URL:-http://127.0.0.1:8000}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

say() { printf '\n== %s\n' "$*"; }
call() { # call METHOD PATH TOKEN [JSON | @FILE]: fails (printing the problem) on an error status
  curl -sS --fail-with-body -X "$1" "$API$2" -H "Authorization: Bearer $3" \
    -H 'Content-Type: application/json' -d "${4:-{\}}"
}
post() { call POST "$@"; }
put() { call PUT "$@"; }
get() { curl -sS --fail-with-body "$API$1" ${2:+-H "Authorization: Bearer $2"}; }
refused() { # refused METHOD PATH TOKEN JSON: a call expected to fail; prints its status and detail
  local out status
  out=$(curl -sS -X "$1" "$API$2" -H "Authorization: Bearer $3" \
    -H 'Content-Type: application/json' -d "$4" -w '\n%{http_code}')
  status=${out##*$'\n'}
  printf '  refused, %s: %s\n' "$status" "$(jq -r '.detail' <<<"${out%$'\n'*}")"
}
token() { # token SUB ROLE [EXTRA-JSON-FIELDS]
  curl -sS --fail-with-body -X POST "$API/v1/dev/tokens" -H 'Content-Type: application/json' \
    -d "{\"sub\": \"$1\", \"role\": \"$2\"${3:+, $3}}" | jq -r .token
}
to() { # to ISO-TIME [TYPE PHASE]...: move the simulated clock there (safe to repeat, so
  # repeated on a 503), then wait until the cycle shows each TYPE in its PHASE
  local out target=$1 n; shift
  for n in $(seq 1 31); do
    [ "$n" -le 30 ] || { echo "the clock did not reach $target" >&2; exit 1; }
    out=$(curl -sS --fail-with-body -X POST "$API/v1/dev/clock/advance" \
      -H 'Content-Type: application/json' -d "{\"to\": \"$target\"}") && break
    sleep 5
  done
  jq -r '"clock: \(.now)"' <<<"$out"
  while [ $# -ge 2 ]; do
    for n in $(seq 1 61); do
      [ "$n" -le 60 ] || { echo "the $1 type did not reach its $2 phase" >&2; exit 1; }
      [ "$(get "/v1/budget-cycles/$YEAR" | jq -r --arg t "$1" '.phases[$t].phase')" = "$2" ] && break
      sleep 0.5
    done
    shift 2
  done
  sleep 1 # let the worker settle the rest of what the jump set off
}
phases() { get "/v1/budget-cycles/$YEAR" |
  jq -r '.phases | to_entries[] | "  \(.key): \(.value.phase) until \(.value.phase_ends_at)"'; }
settled() { # settled PROJECT-ID STATUS: wait until the project's projection shows the status
  for _ in $(seq 1 60); do
    [ "$(get "/v1/projects/$1" | jq -r .status)" = "$2" ] && return
    sleep 0.5
  done
  echo "project $1 did not become $2" >&2
  exit 1
}
projects() { # projects KIND: every project of the kind, by field and title
  get "/v1/budget-cycles/$YEAR/projects?kind=$1&limit=200" | jq -r '.items | sort_by(.field, .title)[] |
    "  \(.field)  \(.title): \(.status), \(.cost_krw) KRW\(if .opinions > 0 then ", \(.opinions) opinion(s)" else "" end)"'
}
sha() { printf %s "$1" | sha256sum | cut -d' ' -f1; }
draw() { # draw JSON SEED: commit to sha256(SEED) (the pool is frozen), reveal; prints the draw id
  local id
  id=$(post /v1/sortitions "$ADMIN" "$(jq -c --arg c "$(sha "$2")" '. + {seed_commitment: $c}' <<<"$1")" | jq -r .id)
  post "/v1/sortitions/$id/reveal" "$ADMIN" "{\"seed\": \"$2\"}" >/dev/null
  echo "$id"
}
drawn() { # drawn DRAW-ID N: the N-th drawn person (from 0), as only the admin may see them
  get "/v1/sortitions/$1/members" "$ADMIN" | jq -r --argjson n "$2" '.members[$n].person_id'
}

ADMIN=$(token ops-1 admin)
COMMITTEE=$(token committee-1 committee)
PROPOSER=$(token citizen-1 citizen '"residency": "resident"')
NOW=$(get /v1/clock | jq -r .now)
YEAR=$(( ${NOW:0:4} + 1 ))

say "the operations team starts the $YEAR cycle (rulebook seoul-2021, drop ratio 30 %)"
post /v1/budget-cycles "$ADMIN" "{\"year\": $YEAR, \"drop_ratio\": 0.3}" | jq -c '{year, rulebook, drop_ratio}'
phases

# ---- January ---------------------------------------------------------------------------------

say "1 January, 00:00 Seoul: both types start on the calendar, by themselves"
to "$YEAR-01-01T00:00:01+09:00" deliberative allocation metro call; phases

say "deliberative allocation: the fields and the budget of each"
put "/v1/budget-cycles/$YEAR/fields" "$ADMIN" \
  '{"fields": [{"field": "environment", "allocation_krw": 1000000000},
               {"field": "welfare", "allocation_krw": 600000000}]}' |
  jq -r '.fields[] | "  \(.field): \(.allocation_krw) KRW"'

say "the metropolitan call: three projects (caps are exclusive; at least two districts)"
submit() { post "/v1/budget-cycles/$YEAR/projects" "$PROPOSER" \
  "{\"title\": \"$1\", \"body\": \"$1 in two districts\", \"field\": \"environment\", \"kind\": \"metro\",
    \"cost_krw\": $2, \"event\": false, \"districts\": [\"Mapo-gu\", \"Jongno-gu\"]}" | jq -r .id; }
A=$(submit "Riverside shade" 2000000000); B=$(submit "Rain gardens" 1000000000)
C=$(submit "Cool roofs" 1000000000)
echo "A $A"; echo "B $B"; echo "C $C"

# ---- February: the bodies, the first entries -------------------------------------------------

say "1 February: deliberative forming (the councils and the Square are formed now)"
to "$YEAR-02-01T00:00:01+09:00" deliberative forming; phases

DISTRICTS='["Jongno-gu","Jung-gu","Yongsan-gu","Seongdong-gu","Gwangjin-gu","Dongdaemun-gu",
  "Jungnang-gu","Seongbuk-gu","Gangbuk-gu","Dobong-gu","Nowon-gu","Eunpyeong-gu","Seodaemun-gu",
  "Mapo-gu","Yangcheon-gu","Gangseo-gu","Guro-gu","Geumcheon-gu","Yeongdeungpo-gu","Dongjak-gu",
  "Gwanak-gu","Seocho-gu","Gangnam-gu","Songpa-gu","Gangdong-gu"]'

say "sortition pools (the operations team loads them): budget-school graduates, and 1,250 citizens"
for F in environment welfare; do
  jq -n --arg name "graduates-$F-$YEAR" --arg p "grad-$F-$YEAR-" --argjson y "$YEAR" --argjson d "$DISTRICTS" '
    {name: $name, members: [range(0; 20) | {person_id: "\($p)\(.)",
      sex: (if . % 2 == 0 then "female" else "male" end), birth_year: ($y - 25 - 10 * (. % 5)),
      district: $d[. % 25], budget_school: true}]}' >"$TMP/pool-$F.json"
  post /v1/sortition-pools "$ADMIN" "@$TMP/pool-$F.json" | jq -r '"  \(.name): \(.members) members, \(.budget_school) budget-school graduates"'
done
jq -n --arg name "square-$YEAR" --arg p "square-$YEAR-" --argjson y "$YEAR" --argjson d "$DISTRICTS" '
  {name: $name, members: [range(0; 1250) | {person_id: "\($p)\(.)",
    sex: (if (. / 25 | floor) % 2 == 0 then "female" else "male" end),
    birth_year: ($y - 25 - 10 * ((. / 50 | floor) % 5)), district: $d[. % 25]}]}' >"$TMP/pool-square.json"
post /v1/sortition-pools "$ADMIN" "@$TMP/pool-square.json" | jq -r '"  \(.name): \(.members) members"'

say "commit-reveal draws: 5 graduates per council (half of 10), the Square of 1,000 in 13 groups"
ENV_DRAW=$(draw "{\"purpose\": \"citizen_council\", \"council_size\": 10, \"strata\": [\"sex\", \"age_band\"],
  \"pool\": \"graduates-environment-$YEAR\"}" "council environment $YEAR, a public seed")
WEL_DRAW=$(draw "{\"purpose\": \"citizen_council\", \"council_size\": 10, \"strata\": [\"sex\", \"age_band\"],
  \"pool\": \"graduates-welfare-$YEAR\"}" "council welfare $YEAR, a public seed")
SQ_DRAW=$(draw "{\"purpose\": \"budget_square\", \"groups\": 13, \"pool\": \"square-$YEAR\"}" \
  "square $YEAR, a public seed")
for D in $ENV_DRAW $WEL_DRAW $SQ_DRAW; do
  get "/v1/sortitions/$D" | jq -r '"  \(.purpose) \(.id): \(.members | length) of \(.candidates) drawn"'
  get "/v1/sortitions/$D/verify" | jq -r '"    anyone re-runs it: reproduced \(.reproduced), commitment matches \(.commitment_matches)"'
done

say "the citizen councils: 5 active members named by the operations team + the 5 drawn graduates"
council() { # council FIELD DRAW PREFIX
  post "/v1/budget-cycles/$YEAR/councils" "$ADMIN" \
    "{\"field\": \"$1\", \"draw_id\": \"$2\", \"active_member_ids\": $(jq -nc --arg p "$3" '[range(1; 6) | "\($p)\(.)"]')}" |
    jq -r '"  \(.body): \(.active) active + \(.drawn) drawn"'
}
council environment "$ENV_DRAW" "env-active-$YEAR-"
echo "7 active members against 5 drawn graduates is not 5:5 within one person:"
refused POST "/v1/budget-cycles/$YEAR/councils" "$ADMIN" \
  "{\"field\": \"welfare\", \"draw_id\": \"$WEL_DRAW\", \"active_member_ids\": $(jq -nc '[range(1; 8) | "someone-\(.)"]')}"
council welfare "$WEL_DRAW" "welfare-active-$YEAR-"

say "the On-Citizen Budget Square: the 1,000 citizens of the revealed draw"
post "/v1/budget-cycles/$YEAR/square" "$ADMIN" "{\"draw_id\": \"$SQ_DRAW\"}" |
  jq -r '"  \(.body): \(.drawn) citizens (draw \(.draw_id))"'

ENV_GRADUATE=$(drawn "$ENV_DRAW" 0)   # a drawn graduate of the environment council
ENV_MEMBER=$(token "$ENV_GRADUATE" citizen '"residency": "resident", "budget_school": true')
WEL_MEMBER=$(token "welfare-active-$YEAR-1" citizen '"residency": "resident"')
SQUARE_MEMBER=$(token "$(drawn "$SQ_DRAW" 0)" citizen '"residency": "resident"')
ENV_DEPT=$(token cw-env caseworker '"dept": "Climate and Environment Bureau"')
WEL_DEPT=$(token cw-welfare caseworker '"dept": "Welfare Policy Office"')

enter() { # enter TOKEN FIELD TITLE COST: a deliberative project; prints its id
  post "/v1/budget-cycles/$YEAR/projects" "$1" \
    "{\"title\": \"$3\", \"body\": \"$3\", \"field\": \"$2\", \"kind\": \"deliberative\", \"cost_krw\": $4}" |
    jq -r .id
}
say "entries: caseworkers enter existing programmes, council members new items"
E1=$(enter "$ENV_DEPT" environment "Urban forest upkeep" 400000000)          # existing programme
E2=$(enter "$ENV_DEPT" environment "Green roof subsidy" 300000000)           # existing programme
E3=$(enter "$ENV_MEMBER" environment "School gardens" 350000000)             # new item
E4=$(enter "$ENV_MEMBER" environment "Stream clean-up days" 250000000)       # new item
E5=$(enter "$ENV_MEMBER" environment "Bike repair stations" 200000000)       # new item
W1=$(enter "$WEL_DEPT" welfare "Senior lunch programme" 300000000)           # existing programme
W2=$(enter "$WEL_MEMBER" welfare "Neighbourhood care coordinators" 280000000) # new item
W3=$(enter "$WEL_MEMBER" welfare "Youth mental-health line" 200000000)       # new item
projects deliberative
echo "a new item from someone not on the field's council, and a field the cycle has not:"
refused POST "/v1/budget-cycles/$YEAR/projects" "$PROPOSER" \
  '{"title": "x", "body": "x", "field": "welfare", "kind": "deliberative", "cost_krw": 1000}'
refused POST "/v1/budget-cycles/$YEAR/projects" "$ENV_DEPT" \
  '{"title": "x", "body": "x", "field": "culture", "kind": "deliberative", "cost_krw": 1000}'

# ---- March: the shortlist; metropolitan screening --------------------------------------------

say "1 March: deliberative shortlist, metropolitan screening"
to "$YEAR-03-01T00:00:01+09:00" deliberative shortlist metro screening; phases

say "a late existing programme (still taken in the shortlist phase)"
W4=$(enter "$WEL_DEPT" welfare "Food bank vans" 150000000)
get "/v1/projects/$W4" | jq -r '"  \(.field)  \(.title): \(.status), \(.cost_krw) KRW"'

say "screening (eligible: below the cap, two districts)"
for P in $A $B $C; do
  post "/v1/projects/$P/screening" "$ADMIN" '{"eligible": true, "reason": "city affair"}' | jq -r '"  \(.title): \(.status)"'
done

say "the councils set their shortlists at 130 % of the allocation (+/- 5 %)"
echo "environment: 1,050,000,000 KRW is 105 %, below the level:"
refused PUT "/v1/budget-cycles/$YEAR/fields/environment/shortlist" "$ENV_MEMBER" \
  "{\"project_ids\": [\"$E1\", \"$E2\", \"$E3\"]}"
echo "a member of another field's council may not set it:"
refused PUT "/v1/budget-cycles/$YEAR/fields/environment/shortlist" "$WEL_MEMBER" \
  "{\"project_ids\": [\"$E1\", \"$E2\", \"$E3\", \"$E4\"]}"
put "/v1/budget-cycles/$YEAR/fields/environment/shortlist" "$ENV_MEMBER" \
  "{\"project_ids\": [\"$E1\", \"$E2\", \"$E3\", \"$E4\"]}" >/dev/null
put "/v1/budget-cycles/$YEAR/fields/welfare/shortlist" "$WEL_MEMBER" \
  "{\"project_ids\": [\"$W1\", \"$W2\", \"$W3\"]}" |
  jq -r '.fields[] | "  \(.field): shortlist \(.shortlist_krw) KRW of \(.allocation_krw) KRW allocated"'

say "a Budget Square member's opinion"
post "/v1/projects/$E3/opinions" "$SQUARE_MEMBER" \
  '{"body": "Pupils in our school would look after the beds in summer too."}' | jq -r '"  on School gardens: \(.body)"'

# ---- April to July: deliberation; the metropolitan review ------------------------------------

say "1 April: the shortlist phase is over; every project learns whether it is on the list"
to "$YEAR-04-01T00:00:01+09:00" deliberative deliberation; phases
for P in $E1 $E2 $E3 $E4 $W1 $W2 $W3; do settled "$P" shortlisted; done
for P in $E5 $W4; do settled "$P" not_shortlisted; done
projects deliberative

say "deliberation: the councils continue, resize or end projects on their lists"
deliberate() { # deliberate TOKEN PROJECT JSON
  post "/v1/projects/$2/deliberation" "$1" "$3" | jq -r '"  \(.title): \(.status), \(.cost_krw) KRW"'
}
deliberate "$ENV_MEMBER" "$E1" '{"action": "continue", "note": "site visit done; keep as is"}'
deliberate "$ENV_MEMBER" "$E2" '{"action": "resize", "cost_krw": 280000000, "note": "fewer roofs in the first year"}'
deliberate "$ENV_MEMBER" "$E4" '{"action": "end", "note": "the district runs it already"}'
deliberate "$WEL_MEMBER" "$W2" '{"action": "continue", "note": "the care network supports it"}'

say "a new item entered during deliberation starts on the list"
E6=$(enter "$ENV_MEMBER" environment "Tree-planting weekends" 150000000)
get "/v1/projects/$E6" | jq -r '"  \(.title): \(.status), \(.cost_krw) KRW"'
echo "an existing programme is no longer taken:"
refused POST "/v1/budget-cycles/$YEAR/projects" "$ENV_DEPT" \
  '{"title": "Late programme", "body": "x", "field": "environment", "kind": "deliberative", "cost_krw": 1000}'

say "the Budget Square's opinions (anyone reads them, without authors)"
post "/v1/projects/$E2/opinions" "$SQUARE_MEMBER" \
  '{"body": "Start with the public buildings, then the flats."}' >/dev/null
for P in $E2 $E3; do
  get "/v1/projects/$P" | jq -r '"  \(.title):"'
  get "/v1/projects/$P/opinions" | jq -r '.items[] | "    \(.created_at)  \(.body)"'
done

say "15 April: the public-private council reviews the metropolitan projects (scores incl. social inclusiveness)"
to "$YEAR-04-15T00:00:01+09:00" metro council_review
for P in $A $B $C; do
  post "/v1/projects/$P/review" "$COMMITTEE" \
    '{"advance": true, "scores": {"necessity": 80, "feasibility": 70, "impact": 90, "inclusiveness": 60}, "note": "site visit"}' |
    jq -r '"  \(.title): \(.status), score \(.scores.total)"'
done

# ---- 20-31 July: the deliberative vote ---------------------------------------------------------

say "20 July: the deliberative vote opens by itself; 10 citizens and 5 budget-school graduates vote"
to "$YEAR-07-20T00:00:01+09:00" deliberative vote metro objections; phases
ballot() { post "/v1/budget-cycles/$YEAR/ballots" "$1" "{\"kind\": \"$2\", \"project_ids\": $3}" >/dev/null; }
approve() { # approve I THRESHOLD=PROJECT...: the projects whose threshold is at least I, as JSON
  local i=$1; shift
  printf '%s\n' "$@" | jq -R --argjson i "$i" 'split("=") | select((.[0] | tonumber) >= $i) | .[1]' | jq -sc .
}
for i in $(seq 1 10); do
  ballot "$(token "voter-$i" citizen '"residency": "resident"')" deliberative \
    "$(approve "$i" "10=$E1" "7=$E3" "5=$E2" "3=$E6" "8=$W2" "6=$W1" "2=$W3")"
done
for i in $(seq 1 5); do
  ballot "$(token "graduate-$i" citizen '"residency": "resident", "budget_school": true')" deliberative \
    "$(approve "$i" "5=$E1" "4=$E3" "3=$E2" "1=$E6" "4=$W2" "3=$W1" "1=$W3")"
done
echo "a project that is not on the ballot (ended in deliberation):"
refused POST "/v1/budget-cycles/$YEAR/ballots" "$(token voter-99 citizen '"residency": "resident"')" \
  "{\"kind\": \"deliberative\", \"project_ids\": [\"$E4\"]}"

say "1 August: the deliberative vote closes by itself: per field, rank order to the 100 % level"
to "$YEAR-08-01T00:00:01+09:00" deliberative drafting metro vote; phases
for P in $E1 $E2 $E3 $E6 $W1 $W2 $W3; do
  for _ in $(seq 1 60); do
    case $(get "/v1/projects/$P" | jq -r .status) in selected|dropped) break;; esac; sleep 0.5
  done
done
get "/v1/budget-cycles/$YEAR/results?kind=deliberative" | jq -r '
  "rule \(.rule), ballots \(.ballots), recount matches the recorded tally: \(.matches_recorded_tally)",
  (.fields | to_entries[] | "  \(.key): \(.value.line.note)",
    (.value.projects[] | "    #\(.rank) \(.name): \(.status)  approvals \(.approvals)  score \(.score)  cost \(.cost_krw)"))'
echo "what each project was told (the vote's recorded decision):"
projects deliberative
get "/v1/budget-cycles/$YEAR" | jq -r '.fields[] |
  "  \(.field): allocation \(.allocation_krw), shortlist \(.shortlist_krw), selected \(.selected_krw) KRW"'

# ---- August: the metropolitan vote ---------------------------------------------------------------

say "1 August: the metropolitan vote opens by itself; 10 citizens and 10 budget-school graduates vote"
for i in $(seq 1 10); do
  case $i in 1|2|3|4) CHOICE="[\"$A\", \"$C\"]";; 5|6) CHOICE="[\"$A\", \"$B\"]";; 10) CHOICE="[\"$C\"]";; *) CHOICE="[\"$A\"]";; esac
  ballot "$(token "voter-$i" citizen '"residency": "resident"')" metro "$CHOICE"
done
for i in $(seq 1 10); do
  case $i in 9|10) CHOICE="[\"$A\"]";; *) CHOICE="[\"$A\", \"$B\"]";; esac
  ballot "$(token "graduate-$i" citizen '"residency": "resident", "budget_school": true')" metro "$CHOICE"
done
echo "results while voting (nobody sees counts before the close):"
curl -sS "$API/v1/budget-cycles/$YEAR/results?kind=metro" | jq -r '"  \(.status) \(.detail)"'

say "21 August: the metropolitan vote closes by itself; counted per voter group, the lowest 30 % drop"
to "$YEAR-08-21T00:00:01+09:00" metro assembly; phases
for P in $A $B $C; do
  for _ in $(seq 1 60); do
    case $(get "/v1/projects/$P" | jq -r .status) in selected|dropped) break;; esac; sleep 0.5
  done
done
get "/v1/budget-cycles/$YEAR/results?kind=metro" | jq -r '
  "rule \(.rule), ballots \(.ballots), recount matches the recorded tally: \(.matches_recorded_tally)",
  (.fields[] | .projects[] | "  #\(.rank) \(.name): \(.status)  approvals \(.approvals)  score \(.score)  cost \(.cost_krw)")'

say "the pabulib file (metropolitan)"
get "/v1/budget-cycles/$YEAR/results.pb?kind=metro" | head -20

# ---- the general assembly and the city council -------------------------------------------------

SELECTED=$(get "/v1/budget-cycles/$YEAR/projects?status=selected&limit=200" | jq -c '[.items[].id]')
say "the general assembly approves next year's projects (recorded as given, in the metro assembly phase)"
post "/v1/budget-cycles/$YEAR/assembly" "$ADMIN" \
  "{\"approved_project_ids\": $SELECTED, \"minutes\": \"General assembly of $YEAR, minutes no. 1\"}" |
  jq -r '.decisions.assembly | "  \(.project_ids | length) projects approved (\(.reference)) at \(.recorded_at)"'

say "1 December: the council phase of both types"
to "$YEAR-12-01T00:00:01+09:00" deliberative council metro council; phases
echo "the assembly's decision is recorded once, and only in its phase:"
refused POST "/v1/budget-cycles/$YEAR/assembly" "$ADMIN" '{"approved_project_ids": [], "minutes": "again"}'

say "the city council adopts the budget (recorded as given)"
post "/v1/budget-cycles/$YEAR/council" "$ADMIN" \
  "{\"adopted_project_ids\": $SELECTED, \"resolution_ref\": \"Seoul Metropolitan Council resolution $YEAR-12\"}" |
  jq -r '.decisions.council | "  \(.project_ids | length) projects adopted (\(.reference)) at \(.recorded_at)"'

# ---- the end -------------------------------------------------------------------------------------

say "1 January $(( YEAR + 1 )): both types closed"
to "$(( YEAR + 1 ))-01-01T00:00:01+09:00" deliberative closed metro closed; phases

say "the cycle"
get "/v1/budget-cycles/$YEAR" | jq '{year, status, rulebook, drop_ratio, phases, fields, totals,
  bodies: (.bodies | map_values({draw_id, active, drawn})),
  decisions: (.decisions | {shortlists: (.shortlists | map_values(length)), assembly, council})}'

say "one project's timeline (Green roof subsidy: entered, shortlisted, resized, voted)"
get "/v1/projects/$E2/timeline" | jq -r '.items[] | "  \(.at)  \(.event)  \(.note)"'

say "the cycle's timeline"
get "/v1/budget-cycles/$YEAR/timeline" | jq -r '.items[] | "  \(.at)  \(.event)  \(.note)"'
