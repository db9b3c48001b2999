"""Every side effect of the workflows, grouped by the party it talks to.

- `records`: the case records in Postgres (the projection of each transition);
- `ballots`: the ballot box (casting is done by the API, tallying by the workflow);
- `notices`: the notification outbox.
"""
