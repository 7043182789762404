"""The query API: the HTTP application (api, http_protocol, apidocs), the queries it answers over the Redis state
(queries, summaries, answers), search by image (search, images) and the identity browser's static files."""
