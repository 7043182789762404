"""The query side, a separate process from the matcher: the HTTP client of its API and the command line built on it
(client), the HTML report (report) and the MOTChallenge export of global identities (motexport)."""
