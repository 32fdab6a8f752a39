"""The target and task service, in Flask.

Run it, then crawl it with the example:

    pip install flask
    python3 examples/flask_target/app.py --port 5000
    cargo run --example flask_target -- --target http://127.0.0.1:5000 --max-tasks 3

Each task's start URL carries the service's port, a task id is a string,
items and feedback have routes of their own, and it behaves like the embedded Rust service: one JSON envelope for every
answer with our error codes (404, 405 and 500 included), ``/ping`` and ``/``,
CORS, a timing log line per request, checked parameters. ``--port 0`` picks a
free port; the first line on stdout says which.
"""

import argparse
import logging
import sys
import threading
import time
import uuid

from flask import Flask, g, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.serving import make_server

# Our error codes: name -> (code, HTTP status).
ERRORS = {
    "unknown_error": (1000, 500),
    "access_forbidden": (1001, 403),
    "not_found": (1002, 404),
    "method_not_allowed": (1003, 405),
    "illegal_state": (1004, 409),
    "bad_parameter": (1005, 400),
    "unavailable": (1006, 503),
}


class ApiError(Exception):
    """A typed error, turned into the envelope in one place."""

    def __init__(self, name, detail):
        super().__init__(detail)
        self.name = name
        self.detail = detail


def ok(data):
    return jsonify({"status": 1, "message": "success", "data": data})


app = Flask(__name__)
log = logging.getLogger("flask_target")
lock = threading.Lock()
record = {"items": [], "feedbacks": [], "persist_calls": 0, "open_tasks": set()}


@app.errorhandler(ApiError)
def api_error(e):
    code, status = ERRORS[e.name]
    body = {"status": code, "message": "%s: %s" % (e.name, e.detail), "data": None}
    return jsonify(body), status


@app.errorhandler(HTTPException)
def http_error(e):
    name = {404: "not_found", 405: "method_not_allowed", 400: "bad_parameter"}.get(
        e.code, "unknown_error"
    )
    return api_error(ApiError(name, e.description or e.name))


@app.errorhandler(Exception)
def unexpected(e):
    log.exception("unexpected error")
    return api_error(ApiError("unknown_error", str(e)))


@app.before_request
def start_timer():
    g.started = time.perf_counter()


@app.after_request
def finish(response):
    response.headers["Access-Control-Allow-Origin"] = "*"
    response.headers["Access-Control-Allow-Methods"] = "GET, POST, PUT, OPTIONS"
    response.headers["Access-Control-Allow-Headers"] = "*"
    ms = (time.perf_counter() - g.get("started", time.perf_counter())) * 1000
    log.info("%s %s %s %.2fms", request.method, request.full_path.rstrip("?"),
             response.status_code, ms)
    return response


def json_body():
    body = request.get_json(silent=True)
    if body is None:
        raise ApiError("bad_parameter", "the body must be JSON")
    return body


@app.get("/")
def root():
    return ok({"service": "flask_target"})


@app.get("/ping")
def ping():
    return ok("pong")


@app.get("/crawler/crawl_dst/list")
def crawl_list():
    return jsonify({
        "status": 1,
        "data": ["./detail?id=1", "./detail?id=2", "./detail?id=3"],
        "message": "success",
    })


@app.get("/crawler/crawl_dst/detail")
def crawl_detail():
    _id = request.args.get("id") or "1"
    return jsonify({
        "status": 1,
        "data": {
            "id": _id,
            "url": "./detail?id=%s" % _id,
            "title": "title: %s" % _id,
            "content": "content: %s" % _id,
        },
    })


@app.get("/crawler/tasks")
def tasks():
    spider_name = request.args.get("spider_name") or "test"
    text = request.args.get("count") or "1"
    try:
        count = int(text)
    except ValueError:
        raise ApiError("bad_parameter", "count must be an integer from 1 to 100, got %r" % text)
    if not 1 <= count <= 100:
        raise ApiError("bad_parameter", "count must be an integer from 1 to 100, got %r" % text)
    base = request.host_url.rstrip("/")
    ids = [str(uuid.uuid4()) for _ in range(count)]
    with lock:
        record["open_tasks"].update(ids)
    return ok([
        {
            "id": tid,
            "spiderName": spider_name,
            "seed": {"startUrl": base + "/crawler/crawl_dst/list"},
        }
        for tid in ids
    ])


@app.put("/crawler/task/feedback")
def task_feedback():
    body = json_body()
    tid = body.get("tid") if isinstance(body, dict) else None
    stats = body.get("stats") if isinstance(body, dict) else None
    if not tid:
        raise ApiError("bad_parameter", "tid is required")
    if not isinstance(stats, dict):
        raise ApiError("bad_parameter", "stats must be an object")
    with lock:
        if tid not in record["open_tasks"]:
            if any(f["tid"] == tid for f in record["feedbacks"]):
                raise ApiError("illegal_state", "task %s was already fed back" % tid)
            raise ApiError("not_found", "no task %s was handed out" % tid)
        record["open_tasks"].discard(tid)
        record["feedbacks"].append({"tid": tid, "stats": stats})
    if stats.get("finish_reason") == "failed":
        log.warning("task %s failed: %s", tid, stats.get("error"))
    else:
        log.info("feedback for task %s: %d responses, %d items", tid,
                 stats.get("downloader/response_count", 0), stats.get("item_scraped_count", 0))
    return ok({"tid": tid})


@app.post("/crawler/data/persist")
def data_persist():
    items = json_body()
    if not isinstance(items, list):
        raise ApiError("bad_parameter", "the body must be a JSON array of items")
    with lock:
        record["persist_calls"] += 1
        record["items"].extend(items)
    return ok({"persisted": len(items)})


@app.get("/crawler/data/stats")
def data_stats():
    with lock:
        return ok({
            "items_persisted": len(record["items"]),
            "feedbacks": len(record["feedbacks"]),
            "persist_calls": record["persist_calls"],
        })


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = make_server(args.host, args.port, app, threaded=True)
    print("listening on http://%s:%d" % (args.host, server.server_port), flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
