"""OAuth2 for the mailbox and SMTP logins: token sources per flow, SASL XOAUTH2 strings.

`base` holds the one small protocol every flow implements (`token()`, `invalidate()`)
and the in-memory cache that renews tokens before they expire; `microsoft` gets tokens
with msal; `sources` turns a `[mailbox.oauth2]` table into a token source; `presets` is
the providers' servers and scopes. Nothing here reads mail or knows about tickets, and no
token or secret is ever put into a log line or an error message.
"""
