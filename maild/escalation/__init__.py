"""Time-based automations ("escalation"): `[[automation]]` tables in the rule files,
run by the scheduler every few minutes over the open tickets; each fires once per
ticket per condition episode. `words` holds the transparent word lists of the
"difficult conversation" signal; `signals` applies them; `loader` parses the
tables; `engine` evaluates (pure) and `runner` carries out (database, outbox)."""
