"""A WSGI app that reads the body and answers what the webhook answers, doing nothing else: what
`bench/webhook.py --gunicorn` times as "HTTP alone", the part of each delivery that is gunicorn
and the connection, not Django and not the database."""

ANSWER = b'{"received": "evt_bench", "duplicate": false}'


def application(environ, start_response):
    length = int(environ.get("CONTENT_LENGTH") or 0)
    environ["wsgi.input"].read(length)
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(ANSWER)))])
    return [ANSWER]
