"""OAuth2 for the mailbox and SMTP logins: token sources per flow, SASL XOAUTH2 strings.

`base` holds the one small protocol every flow implements (`token()`, `invalidate()`)
and the in-memory cache that renews tokens before they expire; `microsoft` gets app-only
tokens with msal (client secret or certificate), `google` with a service account;
`microsoft_user` and `google_user` are a person's consent (device code; installed app with
a loopback redirect and PKCE) and the renewal from its refresh token, kept by `tokenfile`
(0600, atomic); `login` is `maild auth login/status`; `sources` turns a `[mailbox.oauth2]`
table into a token source; `presets` is the providers' servers and scopes. Nothing here
reads mail or knows about tickets, and no token or secret is ever put into a log line or
an error message.
"""
