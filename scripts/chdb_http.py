"""chdb-http: ClickHouse's HTTP interface served from chdb, for tests only.

chdb (PyPI `chdb-core`) is ClickHouse 26.9 built as an in-process Python library, with no server of its own. This
program serves the subset of ClickHouse's HTTP interface that clients such as the `clickhouse` Rust crate use, so
that amigo's real code runs unchanged against a current ClickHouse. Every request runs on its own chdb connection
(cheap: well under a millisecond) on its own thread, so a long INSERT ... SELECT can be watched in system.processes
and killed from other requests, as on a server.

    scripts/chdb-http --path DATA_DIR --port PORT        # listens on 127.0.0.1 only; SIGTERM stops it
    scripts/chdb-http --self-test                        # starts one on a free port and a temp dir, checks it

What is served, as a 26.x server does it:
- POST / and GET /?query=..., the SQL in `query=`, in the body, or both (then `query` + "\\n" + body); a
  multipart/form-data body (fields `query` and `param_*`, as the crate sends bound parameters). GET runs with
  readonly=2. GET /, /ping and /replicas_status answer "Ok.\\n"; other paths 404.
- `default_format` (TabSeparated when absent; a FORMAT clause in the SQL wins), `database` (else `default`),
  `query_id` (else a random UUID), `param_NAME` (`{NAME:Type}` placeholders); the X-ClickHouse-Query-Id,
  -Database and -Format request headers. Every other URL argument is a setting for that request only: it is
  applied with one `SET` on the request's own connection, which is closed afterwards, so nothing leaks between
  requests; an unknown one fails with Code 115 UNKNOWN_SETTING, as on a server.
- Answers: 200 with the result, headers X-ClickHouse-Query-Id, -Format, -Timezone, -Server-Display-Name, -Summary;
  errors as a server sends them: the status of ClickHouse's exceptionCodeToHTTPStatus (400 syntax and bad
  arguments, 404 unknown table/database/setting/function..., 408 TIMEOUT_EXCEEDED, 500 otherwise), header
  X-ClickHouse-Exception-Code, body "Code: N. DB::Exception: ... (NAME) (version 26.9.2.1)\\n". A KILLed query's
  request answers Code 394 QUERY_WAS_CANCELLED; max_execution_time is enforced by chdb itself (Code 159).
- A running query id is refused to a second query (Code 216), as on a server.
- INSERT ... FORMAT F in `query=` with the data in the body streams the body's bytes to chdb (binary formats too).

Server defaults that chdb changes, restored on every request (SERVER_DEFAULTS below; a request's own settings win).

THE ONE PLACE THIS DIFFERS FROM A SERVER: query ids. chdb gives each query its own random id, and nothing in its
API lets a caller choose one. So the front tags each query it runs with the request's id (the client's or a
generated UUID) in the setting `chdb_client_name` (a chdb-only setting that means something only to remote() calls,
so it changes nothing here; a server has no such setting, so a client's `chdb_*` settings are refused with Code
115), which system.processes shows in its `Settings` map. Then, in every incoming statement:
- each table reference `system.processes` after FROM/JOIN/DESCRIBE is replaced by PROCESSES below: the same
  table with `query_id` (and `initial_query_id`) replaced by the tag where there is one, and the tag dropped from
  `Settings`. So `SELECT ... FROM system.processes WHERE query_id = 'amigo-...'` finds the client's id. (SHOW
  PROCESSLIST reads it too.) Only the reading query's own row shows the rewritten text in its `query` column.
- `KILL QUERY WHERE <condition> [SYNC|ASYNC|TEST] [FORMAT F]` becomes: the real chdb ids of the rows of PROCESSES
  that match <condition>, then `KILL QUERY WHERE has([those ids], query_id) ...` in chdb, and its answer rows
  with the client's ids put back, in the requested format. A KILL that matches nothing succeeds with no rows, as
  on a server.
Tables other than system.processes (system.query_log, system.mutations...) show chdb's own query ids.

Other differences a test author should know:
- The whole answer is built before it is sent (as a server does with wait_end_of_query=1): no progress headers
  (send_progress_in_http_headers is accepted but sends none), and an error never follows a 200.
- Answers are never compressed, whatever Accept-Encoding asks (an identity answer is valid HTTP; the crate reads
  it). `compress`/`decompress` (ClickHouse's block compression), sessions (`session_id`) and external data
  (multipart file fields) are refused with Code 48 NOT_IMPLEMENTED. Outside the INSERT ... FORMAT path above,
  the body must be UTF-8.
- system.query_log lists each request's `USE` and `SET` beside its statement.
- chdb's `default` database has engine Overlay (the databases you create are Atomic, as on a server); there are
  no clusters and no users (any user and password are accepted); merges and mutations run in chdb's background
  pool (2 threads here, 16 on a server).
- The multi-statement error (Code 62) is worded like a server's; its position is approximate.
"""

import argparse
import json
import os
import re
import signal
import socket
import sys
import tempfile
import threading
import time
import traceback
import uuid
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

VERSION = "26.9.2.1"  # replaced at startup by what chdb says

# Settings whose chdb value differs from a 26.x server's default in a way a server-like test can see. Sent first
# in every request's SET, so that the request's own settings override them.
#   mutations_sync: chdb 1 (ALTER ... UPDATE/DELETE waits for the mutation); a server returns once it is queued.
#   date_time_input_format: chdb best_effort; a server's default is basic (ClickHouse docs, 25.6+), so a server
#     refuses DateTime text that only best_effort parses.
#   implicit_select, allow_introspection_functions, storage_file_read_method: clickhouse-local's session defaults
#     (1, 1, mmap), which chdb inherits; a server has 0, 0, pread.
# Left as chdb has them because chdb matches upstream 26.x there: async_insert = 1 (the docs generated from 26.x's
# Settings.cpp give 1), alter_sync, lightweight_deletes_sync, max_execution_time, readonly, log_queries.
SERVER_DEFAULTS = [
    ("mutations_sync", "0"),
    ("date_time_input_format", "basic"),
    ("implicit_select", "0"),
    ("allow_introspection_functions", "0"),
    ("storage_file_read_method", "pread"),
]

TAG = "chdb_client_name"  # the setting that carries a request's query id (see the module docstring)

# system.processes with the client's query ids (see the module docstring). REPLACE expressions read the table's
# own columns, so `query_id` inside them is chdb's id.
_TAGGED = f"Settings['{TAG}']"
_REPLACE = (
    f"REPLACE (if({_TAGGED} = '', query_id, {_TAGGED}) AS query_id, "
    f"if({_TAGGED} = '' OR initial_query_id != query_id, initial_query_id, {_TAGGED}) AS initial_query_id, "
    f"mapFilter((k, v) -> k != '{TAG}', Settings) AS Settings)"
)
PROCESSES = f"(SELECT * {_REPLACE} FROM system.processes)"
REAL_ID = "__chdb_http_real_query_id"  # chdb's own id, beside the client's, for KILL QUERY

# URL arguments that are not settings (HTTPHandler's reserved names, plus query, role and param_*).
RESERVED = {
    "query", "query_id", "database", "default_format", "user", "password", "quota_key", "stacktrace", "role",
    "buffer_size", "wait_end_of_query", "session_id", "session_timeout", "session_check", "client_protocol_version",
    "close_session", "compress", "decompress",
}

# ClickHouse's exceptionCodeToHTTPStatus (src/Server/HTTP/exceptionCodeToHTTPStatus.cpp, read in ClickHouse's
# repository; 403 for ACCESS_DENIED and 415 for UNSUPPORTED_MEDIA_TYPE appear in its newest version only).
_STATUS_OF_CODE = {
    194: 401,                                                   # REQUIRED_PASSWORD
    192: 403, 193: 403, 516: 403, 512: 403, 497: 403,           # UNKNOWN_USER, WRONG_PASSWORD, AUTHENTICATION_FAILED...
    36: 400, 427: 400, 6: 400, 25: 400, 26: 400, 38: 400, 41: 400, 72: 400, 441: 400, 675: 400, 676: 400,
    27: 400, 376: 400, 15: 400, 44: 400, 37: 400, 123: 400, 8: 400, 167: 400, 168: 400, 223: 400, 62: 400,
    117: 400, 53: 400, 321: 400,                                # BAD_ARGUMENTS, CANNOT_PARSE_*, SYNTAX_ERROR...
    60: 404, 46: 404, 47: 404, 50: 404, 56: 404, 81: 404, 115: 404, 152: 404, 63: 404, 73: 404, 336: 404,
    78: 404, 511: 404,                                          # UNKNOWN_TABLE, UNKNOWN_DATABASE, UNKNOWN_SETTING...
    229: 413,                                                   # QUERY_IS_TOO_LARGE
    48: 501,                                                    # NOT_IMPLEMENTED
    209: 503, 76: 503, 439: 503,                                # SOCKET_TIMEOUT, CANNOT_OPEN_FILE, CANNOT_SCHEDULE_TASK
    381: 411,                                                   # HTTP_LENGTH_REQUIRED
    159: 408,                                                   # TIMEOUT_EXCEEDED
    779: 415,                                                   # UNSUPPORTED_MEDIA_TYPE
}

_CODE_NAMES = {48: "NOT_IMPLEMENTED", 62: "SYNTAX_ERROR", 115: "UNKNOWN_SETTING", 216: "QUERY_WITH_SAME_ID_IS_ALREADY_RUNNING",
               89: "UNKNOWN_COMPRESSION_METHOD", 1001: "STD_EXCEPTION"}


class ClickHouseError(Exception):
    """An error to answer as a server does: code and message (the message ends with "(NAME)")."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message

    @staticmethod
    def of(code, text):
        return ClickHouseError(code, f"{text}. ({_CODE_NAMES.get(code, 'UNKNOWN_EXCEPTION')})")

    @staticmethod
    def from_chdb(error):
        """chdb's exception text, unwrapped: it may nest "Code: N. DB::Exception: ... (version V). (NAME)" twice."""
        message, code = str(error).strip(), None
        while True:
            match = re.match(r"Code: (\d+)\. DB::Exception: (.*)\Z", message, re.S)
            if not match:
                break
            code, message = int(match.group(1)), match.group(2)
            wrapped = re.match(r"(.*) \(version [^)]*\)\. \([A-Z0-9_]+\)\Z", message, re.S)
            if wrapped and wrapped.group(1).startswith("Code: "):
                message = wrapped.group(1)
        message = re.sub(r" \(version [^)]*\)\Z", "", message)  # some already carry the suffix the body adds
        if code is None:
            return ClickHouseError(1001, f"{message} (STD_EXCEPTION)")
        return ClickHouseError(code, message)

    def status(self):
        return _STATUS_OF_CODE.get(self.code, 500)

    def body(self):
        return f"Code: {self.code}. DB::Exception: {self.message} (version {VERSION})\n".encode()


# ---------------------------------------------------------------- SQL tokens

_TOKEN = re.compile(
    r"""(?P<ws>\s+)
      | (?P<comment>--[^\n]*|\#[ !][^\n]*|/\*.*?\*/)
      | (?P<string>'(?:[^'\\]|\\.|'')*')
      | (?P<quoted>`(?:[^`\\]|\\.|``)*`|"(?:[^"\\]|\\.|"")*")
      | (?P<heredoc>\$(?P<tag>[A-Za-z0-9_]*)\$.*?\$(?P=tag)\$)
      | (?P<open>['"`]|/\*).*\Z
      | (?P<word>[A-Za-z_][A-Za-z0-9_$]*)
      | (?P<number>[0-9][A-Za-z0-9_.]*)
      | (?P<other>.)""",
    re.X | re.S,
)


class Token:
    __slots__ = ("kind", "text", "start", "end")

    def __init__(self, kind, text, start, end):
        self.kind, self.text, self.start, self.end = kind, text, start, end

    def word(self):
        """The keyword, upper-cased, for an unquoted word; None otherwise."""
        return self.text.upper() if self.kind == "word" else None

    def name(self):
        """The identifier this token names (unquoted or quoted), or None."""
        if self.kind == "word":
            return self.text
        if self.kind == "quoted":
            quote = self.text[0]
            return re.sub(r"\\(.)", r"\1", self.text[1:-1].replace(quote * 2, quote))
        return None


def tokens(sql):
    """The significant tokens of `sql` (no whitespace, no comments). A lexer just good enough for the rewrites."""
    found = []
    for match in _TOKEN.finditer(sql):
        kind = match.lastgroup if match.lastgroup != "tag" else "heredoc"
        if kind not in ("ws", "comment"):
            found.append(Token(kind, match.group(), match.start(), match.end()))
    return found


def first_word(toks):
    for tok in toks:
        if tok.text != "(":
            return tok.word()
    return None


def quote_string(value):
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def quote_identifier(name):
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


# Words after which a table reference has no alias of its own.
_NOT_ALIAS = set(
    "WHERE PREWHERE GROUP ORDER LIMIT OFFSET HAVING SETTINGS FORMAT UNION EXCEPT INTERSECT JOIN INNER LEFT RIGHT "
    "FULL CROSS OUTER SEMI ANTI ANY ALL ASOF ARRAY GLOBAL PASTE ON USING WINDOW QUALIFY INTO FINAL SAMPLE WITH "
    "INTERSECT".split()
)


def rewrite_processes(sql):
    """`sql` with each table reference system.processes replaced by PROCESSES (see the module docstring)."""
    if "processes" not in sql:
        return sql
    toks = tokens(sql)
    edits = []
    for i in range(1, len(toks) - 2):
        if not (toks[i].name() == "system" and toks[i + 1].text == "." and toks[i + 2].name() == "processes"):
            continue
        before = toks[i - 1].word()
        describe = before in ("DESCRIBE", "DESC") or (
            before == "TABLE" and i >= 2 and toks[i - 2].word() in ("DESCRIBE", "DESC"))
        if before not in ("FROM", "JOIN") and not describe:
            continue
        after = toks[i + 3] if i + 3 < len(toks) else None
        has_alias = after is not None and (after.kind == "quoted" or (after.kind == "word" and after.word() not in _NOT_ALIAS))
        alias = "" if describe or has_alias else " AS processes"
        edits.append((toks[i].start, toks[i + 2].end, PROCESSES + alias))
    for start, end, text in reversed(edits):
        sql = sql[:start] + text + sql[end:]
    return sql


def show_processlist(sql, toks):
    """SHOW PROCESSLIST ... as the SELECT a server runs for it, or None."""
    if len(toks) >= 2 and toks[0].word() == "SHOW" and toks[1].word() == "PROCESSLIST":
        return sql[:toks[0].start] + "SELECT * FROM system.processes" + sql[toks[1].end:]
    return None


def parse_kill_query(sql, toks):
    """(condition, mode, format, settings) of `KILL QUERY WHERE ...`, or None for anything else (KILL MUTATION,
    KILL QUERY ON CLUSTER: passed to chdb as they are)."""
    if len(toks) < 4 or toks[0].word() != "KILL" or toks[1].word() != "QUERY" or toks[2].word() != "WHERE":
        return None
    depth, end = 0, len(toks)
    for i in range(3, len(toks)):
        tok = toks[i]
        if tok.text in "([{" and tok.kind == "other":
            depth += 1
        elif tok.text in ")]}" and tok.kind == "other":
            depth -= 1
        elif depth == 0 and (tok.word() in ("SYNC", "ASYNC", "TEST", "FORMAT", "SETTINGS") or tok.text == ";"):
            end = i
            break
    condition = sql[toks[3].start:toks[end - 1].end] if end > 3 else ""
    mode, fmt, settings = "", None, ""
    rest = toks[end:]
    i = 0
    while i < len(rest):
        word = rest[i].word()
        if word in ("SYNC", "ASYNC", "TEST"):
            mode = word
        elif word == "FORMAT" and i + 1 < len(rest):
            fmt = rest[i + 1].name()
            i += 1
        elif word == "SETTINGS":
            stop = next((j for j in range(i + 1, len(rest)) if rest[j].word() == "FORMAT" or rest[j].text == ";"), len(rest))
            settings = sql[rest[i].start:rest[stop - 1].end]
            i = stop - 1
        i += 1
    return condition, mode, fmt, settings


def output_format_clause(toks):
    """The name in a top-level `FORMAT name` of a statement that outputs rows, or None."""
    depth = 0
    found = None
    for i, tok in enumerate(toks):
        if tok.kind == "other" and tok.text in "([{":
            depth += 1
        elif tok.kind == "other" and tok.text in ")]}":
            depth -= 1
        elif depth == 0 and tok.word() == "FORMAT" and i + 1 < len(toks):
            found = toks[i + 1].name()
    return found


def multi_statement_position(toks):
    """Offset of a top-level `;` followed by another statement, or None."""
    for i, tok in enumerate(toks):
        if tok.text == ";" and tok.kind == "other" and any(t.text != ";" for t in toks[i + 1:]):
            return tok.start
    return None


# Statements that answer rows (and so an X-ClickHouse-Format header) even when there are none.
_OUTPUT_STATEMENTS = {"SELECT", "WITH", "SHOW", "DESC", "DESCRIBE", "EXISTS", "EXPLAIN", "KILL", "CHECK", "VALUES"}


def content_type(fmt):
    """The Content-Type a server gives a result in `fmt` (exact for the common formats, plain text otherwise)."""
    name = fmt.lower()
    if name.startswith(("tabseparated", "tsv")):
        return "text/tab-separated-values; charset=UTF-8"
    if name.startswith("csv"):
        return "text/csv; charset=UTF-8; header=" + ("present" if "withnames" in name else "absent")
    if name.startswith("json") or name in ("ndjson", "jsonl"):
        return "application/json; charset=UTF-8"
    if name == "xml":
        return "application/xml; charset=UTF-8"
    if name.startswith(("rowbinary", "native", "parquet", "arrow", "orc", "avro", "msgpack", "protobuf", "capnproto",
                        "npy", "bsoneachrow")):
        return "application/octet-stream"
    return "text/plain; charset=UTF-8"


# ---------------------------------------------------------------- chdb

class Engine:
    """The chdb data directory: one connection held open for the process's life (so that opening a request's
    connection is cheap and the engine never shuts down between requests), the ids of queries in flight."""

    def __init__(self, path):
        from chdb import _chdb  # noqa: import here: --help stays fast

        self._chdb = _chdb
        self.uri = "file:" + os.path.abspath(path)
        self.anchor = _chdb.connect(self.uri)
        self.lock = threading.Lock()
        self.running = set()  # the query ids of the requests being run
        global VERSION
        VERSION = self.anchor.query("SELECT version()", "TSVRaw").bytes().decode().strip()
        self.timezone = self.anchor.query("SELECT timezone()", "TSVRaw").bytes().decode().strip()
        # A server has a `default` database; chdb has one too (engine Overlay), created here if it ever is not.
        self.anchor.query("CREATE DATABASE IF NOT EXISTS default", "TSV")

    def connect(self):
        return self._chdb.connect(self.uri)

    def claim(self, query_id):
        with self.lock:
            if query_id in self.running:
                raise ClickHouseError.of(216, f"Query with id = {query_id} is already running")
            self.running.add(query_id)

    def release(self, query_id):
        with self.lock:
            self.running.discard(query_id)

    def kill_all(self):
        """Ends every query a request is running (at shutdown)."""
        try:
            self.anchor.query(f"KILL QUERY WHERE {_TAGGED} != '' SYNC", "TSV")
        except Exception:  # noqa: nothing to do about it at shutdown
            pass

    def close(self):
        self.anchor.close()


def run_query(conn, sql, fmt, params):
    try:
        return conn.query(sql, fmt, params=params)
    except Exception as error:  # chdb raises RuntimeError with ClickHouse's text
        raise ClickHouseError.from_chdb(error) from None


class Outcome:
    def __init__(self, body=b"", fmt=None, summary=None):
        self.body, self.fmt, self.summary = body, fmt, summary or {}


def summary_of(result, body_len):
    def get(name):
        try:
            return getattr(result, name)()
        except Exception:  # noqa: a result without that statistic
            return 0

    return {
        "read_rows": get("storage_rows_read"), "read_bytes": get("storage_bytes_read"),
        "written_rows": get("rows_written"), "written_bytes": get("bytes_written"),
        "total_rows_to_read": get("storage_rows_read"), "result_rows": get("rows_read"), "result_bytes": body_len,
        "elapsed_ns": int(get("elapsed") * 1e9),
    }


def execute(engine, request):
    """Runs one request (a dict made by the handler) and returns an Outcome; raises ClickHouseError."""
    query_param, body, params = request["query"], request["body"], request["params"]
    settings, database, default_format = request["settings"], request["database"], request["default_format"]

    for name in settings:  # names go into a SET statement: only setting-like ones, and none of chdb's own
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) or name.lower().startswith("chdb_"):
            raise ClickHouseError(115, f"Unknown setting '{name}'. (UNKNOWN_SETTING)")

    # INSERT ... FORMAT F in the URL, the data in the body: the body goes to chdb as bytes.
    insert_format = None
    if query_param is not None and body and not request["multipart"]:
        qtoks = tokens(query_param)
        if (first_word(qtoks) == "INSERT" and len(qtoks) >= 2 and qtoks[-2].word() == "FORMAT"
                and qtoks[-1].kind in ("word", "quoted")):
            insert_format = qtoks[-1].name()
            insert_sql = query_param[:qtoks[-2].start]
    if insert_format is None:
        try:
            text = body.decode("utf-8") if body else ""
        except UnicodeDecodeError:
            raise ClickHouseError(36, "The request body is not UTF-8 (chdb-http passes binary data only as the body "
                                  "of an INSERT ... FORMAT sent in the query parameter). (BAD_ARGUMENTS)") from None
        if request["multipart"]:
            sql = query_param or ""
        elif query_param:
            sql = query_param + "\n" + text
        else:
            sql = text
        toks = tokens(sql)
        if not toks:
            raise ClickHouseError.of(62, "Empty query")

    conn = engine.connect()
    try:
        if database:
            run_query(conn, f"USE {quote_identifier(database)}", "TSV", {})
        changes = [(TAG, request["query_id"])] + SERVER_DEFAULTS + list(settings.items())
        if request["readonly"] and "readonly" not in settings:
            changes.append(("readonly", "2"))
        run_query(conn, "SET " + ", ".join(f"{name} = {quote_string(value)}" for name, value in changes), "TSV", {})

        if insert_format is not None:
            try:
                inserter = conn.send_insert(insert_sql, insert_format)
                conn.insert_append(inserter, body)
                result = conn.insert_done(inserter)
            except Exception as error:
                raise ClickHouseError.from_chdb(error) from None
            return Outcome(summary=summary_of(result, 0))

        # One statement per request, as on a server (chdb would run them all).
        count = conn.classify_query(sql).get("statement_count", 1)
        position = multi_statement_position(toks)
        if count > 1 or (count == 0 and position is not None):
            at = position if position is not None else len(sql)
            raise ClickHouseError.of(62, f"Syntax error (Multi-statements are not allowed): failed at position {at + 1} "
                                         f"(;): {sql[at:at + 40]}")

        processlist = show_processlist(sql, toks)
        if processlist is not None:
            sql, toks = processlist, tokens(processlist)
        kind = first_word(toks)
        own_format = output_format_clause(toks) if kind != "INSERT" else None
        fmt = own_format or default_format

        kill = parse_kill_query(sql, toks)
        if kill is not None:
            return kill_query(conn, kill, fmt, params)

        result = run_query(conn, rewrite_processes(sql), fmt, params)
        data = result.bytes()
        shows_format = bool(data) or kind in _OUTPUT_STATEMENTS
        return Outcome(data, fmt if shows_format else None, summary_of(result, len(data)))
    finally:
        conn.close()


def kill_query(conn, kill, fmt, params):
    """KILL QUERY WHERE <condition> on the client's query ids (see the module docstring)."""
    condition, mode, own_format, settings = kill
    fmt = own_format or fmt
    select = (f"SELECT {REAL_ID}, query_id FROM (SELECT query_id AS {REAL_ID}, * {_REPLACE} FROM system.processes) "
              f"WHERE ({rewrite_processes(condition)})")
    rows = run_query(conn, select, "JSONCompactEachRow", params).bytes().decode()
    client_of = dict(json.loads(line) for line in rows.splitlines() if line.strip())
    tail = f" {mode}" + (f" {settings}" if settings else "")
    if not client_of:
        result = run_query(conn, f"KILL QUERY WHERE 0{tail}", fmt, {})
        data = result.bytes()
        return Outcome(data, fmt, summary_of(result, len(data)))
    ids = "[" + ", ".join(quote_string(real) for real in client_of) + "]"
    answer = run_query(conn, f"KILL QUERY WHERE has({ids}, query_id){tail}", "JSONCompactEachRowWithNamesAndTypes", {})
    lines = [json.loads(line) for line in answer.bytes().decode().splitlines() if line.strip()]
    if len(lines) < 2:  # nothing left to kill by now
        result = run_query(conn, f"KILL QUERY WHERE 0{tail}", fmt, {})
        data = result.bytes()
        return Outcome(data, fmt, summary_of(result, len(data)))
    names, types, data_rows = lines[0], lines[1], lines[2:]
    if "query_id" in names:
        column = names.index("query_id")
        for row in data_rows:
            row[column] = client_of.get(row[column], row[column])
    structure = ", ".join(f"{quote_identifier(n)} {t}" for n, t in zip(names, types))
    data = "\n".join(json.dumps(row) for row in data_rows)
    result = run_query(conn, f"SELECT * FROM format(JSONCompactEachRow, {quote_string(structure)}, {quote_string(data)})",
                       fmt, {})
    body = result.bytes()
    return Outcome(body, fmt, summary_of(result, len(body)))


# ---------------------------------------------------------------- HTTP

def parse_multipart(body, content_type_header):
    """The fields of a multipart/form-data body, as (name, value) pairs; file fields are refused."""
    match = re.search(r'boundary="?([^";]+)"?', content_type_header)
    if not match:
        raise ClickHouseError(36, "multipart/form-data without a boundary. (BAD_ARGUMENTS)")
    delimiter = b"--" + match.group(1).encode()
    fields = []
    for part in body.split(delimiter)[1:]:
        if part.startswith(b"--"):
            break
        head, _, value = part.partition(b"\r\n\r\n")
        if value.endswith(b"\r\n"):
            value = value[:-2]
        disposition = re.search(rb'name="([^"]*)"', head)
        if disposition is None:
            continue
        if re.search(rb'filename="', head):
            raise ClickHouseError.of(48, "chdb-http does not support external data (multipart file fields)")
        fields.append((disposition.group(1).decode(), value.decode("utf-8")))
    return fields


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 300  # an idle keep-alive connection is dropped after this
    disable_nagle_algorithm = True  # headers and body go out as two writes: without this, 40 ms per answer

    def log_message(self, format, *args):  # noqa: A002: one line per query instead, from handle_query
        pass

    def version_string(self):
        return "chdb-http"

    def do_GET(self):
        self.answer(readonly=True)

    def do_HEAD(self):
        self.answer(readonly=True)

    def do_POST(self):
        self.answer(readonly=False)

    def answer(self, readonly):
        if self.server.stopping:  # a request on a kept-alive connection after SIGTERM: closed unanswered
            self.close_connection = True
            return
        self.server.busy(+1)
        try:
            self.handle_query(readonly)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            self.server.busy(-1)

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            body = b"".join(chunks)
        else:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        encoding = self.headers.get("Content-Encoding", "").strip().lower()
        if encoding in ("gzip", "deflate"):
            body = zlib.decompress(body, 47)  # gzip or zlib header, detected
        elif encoding not in ("", "identity"):
            raise ClickHouseError(89, f"Unknown compression method '{encoding}'. (UNKNOWN_COMPRESSION_METHOD)")
        return body

    def send(self, status, body, headers):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def handle_query(self, readonly):
        engine = self.server.engine
        started = time.monotonic()
        url = urlsplit(self.path)
        try:
            body = self.read_body()
        except ClickHouseError as error:
            body, early_error = b"", error
        except Exception as error:  # noqa: a broken request
            self.close_connection = True
            body, early_error = b"", ClickHouseError(36, f"Cannot read the request: {error}. (BAD_ARGUMENTS)")
        else:
            early_error = None
        common = [("X-ClickHouse-Server-Display-Name", self.server.display_name),
                  ("Access-Control-Expose-Headers", "X-ClickHouse-Query-Id,X-ClickHouse-Summary,"
                   "X-ClickHouse-Server-Display-Name,X-ClickHouse-Format,X-ClickHouse-Timezone,X-ClickHouse-Exception-Code")]
        if url.path in ("/ping", "/replicas_status") or (url.path == "/" and readonly and not url.query and not body):
            self.send(200, b"Ok.\n", [("Content-Type", "text/html; charset=UTF-8")])
            return
        if url.path != "/":
            text = (f"There is no handle {url.path}\n\nUse / or /ping for health checks.\n"
                    "Send queries from your program with POST method or GET /?query=...\n")
            self.send(404, text.encode(), [("Content-Type", "text/plain; charset=UTF-8")] + common)
            return

        pairs = parse_qsl(url.query, keep_blank_values=True)
        query_id = next((v for k, v in pairs if k == "query_id"), "") or self.headers.get("X-ClickHouse-Query-Id", "")
        query_id = query_id or str(uuid.uuid4())
        shown_sql = ""
        try:
            if early_error is not None:
                raise early_error
            multipart = self.headers.get("Content-Type", "").startswith("multipart/form-data")
            if multipart:
                pairs = pairs + parse_multipart(body, self.headers["Content-Type"])
            query_values = [v for k, v in pairs if k == "query"]
            query_param = "".join(query_values) if query_values else None
            shown_sql = query_param or ("" if multipart else body[:400].decode("utf-8", "replace"))
            names = {k for k, _ in pairs}
            if "session_id" in names:
                raise ClickHouseError.of(48, "chdb-http does not support HTTP sessions (session_id)")
            for flag in ("compress", "decompress"):
                if any(k == flag and v not in ("", "0", "false") for k, v in pairs):
                    raise ClickHouseError.of(48, f"chdb-http does not support ClickHouse's block compression ({flag}=1)")
            settings = {}
            for key, value in pairs:
                if key and key not in RESERVED and not key.startswith("param_"):
                    settings[key] = value
            request = {
                "query": query_param,
                "body": b"" if multipart else body,
                "multipart": multipart,
                "params": {k[len("param_"):]: v for k, v in pairs if k.startswith("param_")},
                "settings": settings,
                "database": self.headers.get("X-ClickHouse-Database") or next((v for k, v in pairs if k == "database"), ""),
                "default_format": self.headers.get("X-ClickHouse-Format")
                or next((v for k, v in pairs if k == "default_format"), "") or "TabSeparated",
                "query_id": query_id,
                "readonly": readonly,
            }
            engine.claim(query_id)
            try:
                outcome = execute(engine, request)
            finally:
                engine.release(query_id)
        except ClickHouseError as error:
            self.log(started, query_id, shown_sql, f"Code {error.code}")
            self.send(error.status(), error.body(),
                      [("Content-Type", "text/plain; charset=UTF-8"), ("X-ClickHouse-Query-Id", query_id),
                       ("X-ClickHouse-Exception-Code", str(error.code))] + common)
            return
        except Exception as error:  # noqa: a bug here: answer like a server's LOGICAL_ERROR, and say where
            traceback.print_exc(file=sys.stderr)
            failure = ClickHouseError(49, f"chdb-http: {type(error).__name__}: {error}. (LOGICAL_ERROR)")
            self.log(started, query_id, shown_sql, "Code 49")
            self.send(500, failure.body(), [("Content-Type", "text/plain; charset=UTF-8"),
                                            ("X-ClickHouse-Exception-Code", "49")] + common)
            return
        headers = [("X-ClickHouse-Query-Id", query_id)]
        if outcome.fmt:
            headers += [("Content-Type", content_type(outcome.fmt)), ("X-ClickHouse-Format", outcome.fmt),
                        ("X-ClickHouse-Timezone", engine.timezone)]
        else:
            headers += [("Content-Type", "text/plain; charset=UTF-8")]
        summary = {k: str(v) for k, v in outcome.summary.items()}
        headers.append(("X-ClickHouse-Summary", json.dumps(summary, separators=(",", ":"))))
        self.log(started, query_id, shown_sql, "ok")
        self.send(200, outcome.body, headers + common)

    def log(self, started, query_id, sql, outcome):
        ms = (time.monotonic() - started) * 1000
        line = " ".join(sql.split())[:200]
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{int(time.time() * 1000) % 1000:03d}Z"
        sys.stderr.write(f"{stamp} {query_id} {json.dumps(line, ensure_ascii=False)} {outcome} {ms:.0f} ms\n")
        sys.stderr.flush()


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address, engine):
        super().__init__(address, Handler)
        self.engine = engine
        self.display_name = socket.gethostname()
        self.stopping = False
        self.in_flight = 0  # requests being answered (idle keep-alive connections are not counted)
        self.in_flight_lock = threading.Lock()

    def busy(self, delta):
        with self.in_flight_lock:
            self.in_flight += delta
            return self.in_flight


def serve(path, port):
    os.makedirs(path, exist_ok=True)
    started = time.monotonic()
    engine = Engine(path)
    server = Server(("127.0.0.1", port), engine)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    thread.start()
    sys.stderr.write(f"chdb-http: ClickHouse {VERSION} (chdb) on http://127.0.0.1:{port}, data in {os.path.abspath(path)}, "
                     f"ready in {time.monotonic() - started:.2f} s\n")
    sys.stderr.flush()
    while not stop.wait(0.1):
        pass
    # Like a server's shutdown: stop accepting, cancel the queries in flight (their requests answer Code 394),
    # give the requests a few seconds to answer, then close the data directory.
    sys.stderr.write("chdb-http: stopping\n")
    sys.stderr.flush()
    stopping = time.monotonic()
    server.stopping = True
    server.shutdown()
    engine.kill_all()
    deadline = time.monotonic() + 5
    while server.busy(0) and time.monotonic() < deadline:
        time.sleep(0.05)
    server.server_close()
    answered = time.monotonic()
    engine.close()
    sys.stderr.write(f"chdb-http: stopped in {time.monotonic() - stopping:.2f} s "
                     f"(requests answered in {answered - stopping:.2f} s, then chdb closed)\n")
    sys.stderr.flush()


# ---------------------------------------------------------------- self-test

def self_test():
    """Starts a front on a free port and a temp dir, and checks what amigo relies on with real HTTP requests."""
    import subprocess
    import urllib.error
    import urllib.parse
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    data = tempfile.mkdtemp(prefix="chdb-http-test-")
    front = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--path", data, "--port", str(port)],
                             stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    failures = []

    def post(sql, **args):
        """What the crate sends: POST, SQL body, settings as URL arguments. (status, headers, body)"""
        url = base + "/?" + urllib.parse.urlencode(args)
        request = urllib.request.Request(url, data=sql.encode(), method="POST")
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:
                return answer.status, answer.headers, answer.read()
        except urllib.error.HTTPError as error:
            return error.code, error.headers, error.read()

    def check(name, ok, detail=""):
        print(("ok   " if ok else "FAIL ") + name + ("" if ok else f": {detail}"))
        if not ok:
            failures.append(name)

    launched = time.monotonic()
    try:
        deadline = launched + 30
        while True:
            try:
                with urllib.request.urlopen(base + "/ping", timeout=1) as answer:
                    if answer.read() == b"Ok.\n":
                        break
            except OSError:
                pass
            if time.monotonic() > deadline or front.poll() is not None:
                raise SystemExit("the front did not start")
            time.sleep(0.05)
        print(f"answers /ping {time.monotonic() - launched:.2f} s after start")

        status, headers, body = post("SELECT version()")
        check("version", status == 200 and body.decode().startswith("26.9"), body)
        check("query id header", re.fullmatch(r"[0-9a-f-]{36}", headers.get("X-ClickHouse-Query-Id", "")) is not None)
        post("CREATE DATABASE t")
        db = {"database": "t"}
        status, _, body = post("SELECT engine FROM system.databases WHERE name = 't'")
        check("new databases are Atomic", body == b"Atomic\n", body)
        post("CREATE TABLE e (d Date, x UInt64, s String) ENGINE = MergeTree PARTITION BY toYYYYMM(d) ORDER BY x", **db)
        status, _, body = post("SELECT toUInt64(7) AS a, 'seven' AS b, toInt64(-7) AS c",
                               default_format="RowBinaryWithNamesAndTypes", **db)
        expected = (b"\x03\x01a\x01b\x01c\x06UInt64\x06String\x05Int64" + (7).to_bytes(8, "little") + b"\x05seven"
                    + (-7).to_bytes(8, "little", signed=True))
        check("RowBinaryWithNamesAndTypes", body == expected, body)
        status, headers, body = post("SELECT * FROM nope", **db)
        check("unknown table", status == 404 and headers.get("X-ClickHouse-Exception-Code") == "60"
              and body.startswith(b"Code: 60. DB::Exception: ") and body.endswith(b"(UNKNOWN_TABLE) (version 26.9.2.1)\n"), body)
        status, headers, body = post("SELECT 1", no_such_setting="1")
        check("unknown setting", status == 404 and headers.get("X-ClickHouse-Exception-Code") == "115", body)
        status, _, body = post("SELECT getSetting('max_threads')", max_threads="1")
        _, _, default = post("SELECT getSetting('max_threads')")
        check("settings do not leak", body == b"1\n" and default != b"1\n", (body, default))
        _, _, body = post("SELECT getSetting('mutations_sync'), currentDatabase()")
        check("server defaults", body == b"0\tdefault\n", body)
        status, headers, body = post("SELECT sleep(2)", max_execution_time="1")
        check("max_execution_time", headers.get("X-ClickHouse-Exception-Code") == "159" and status == 408, (status, body))
        status, _, body = post("SELECT 1; SELECT 2")
        check("one statement per request", status == 400 and b"Multi-statements" in body, body)

        # The copy amigo watches and kills: progress by the client's id, then KILL ... SYNC.
        outcome = {}

        def copy():
            outcome["answer"] = post("INSERT INTO e SELECT toDate('2020-01-01') + number % 300, number, toString(number) "
                                     "FROM numbers(20000000)", query_id="amigo-test-copy", max_threads="1", **db)

        runner = threading.Thread(target=copy)
        runner.start()
        seen = []
        for _ in range(100):
            _, _, body = post("SELECT elapsed, read_rows, total_rows_approx, written_rows FROM system.processes "
                              "WHERE query_id = 'amigo-test-copy'", **db)
            if body:
                seen.append(int(body.split(b"\t")[1]))
                if len(seen) >= 3:
                    break
            time.sleep(0.1)
        check("progress by the client's query id", len(seen) >= 3 and seen[-1] > seen[0], seen)
        killed_at = time.monotonic()
        status, _, body = post("KILL QUERY WHERE has(['amigo-test-copy'], query_id) SYNC", **db)
        check("kill answers with the client's id", status == 200 and b"amigo-test-copy" in body, body)
        runner.join()
        latency = time.monotonic() - killed_at
        status, headers, body = outcome["answer"]
        check("killed query answers Code 394", status == 500 and headers.get("X-ClickHouse-Exception-Code") == "394", body)
        check(f"kill latency under a second ({latency:.2f} s from KILL ... SYNC sent to the copy's answer)", latency < 1, latency)
        status, _, body = post("KILL QUERY WHERE has(['gone'], query_id) SYNC")
        check("a kill that matches nothing", status == 200 and body == b"", body)

        post("INSERT INTO e VALUES ('2020-01-01', 1, 'a')", **db)
        started = time.monotonic()
        status, _, _ = post("ALTER TABLE e UPDATE s = 'b' WHERE sleepEachRow(0.5) = 0", **db)
        took = time.monotonic() - started
        _, _, body = post("SELECT count() FROM system.mutations WHERE database = 't' AND table = 'e'", **db)
        check("ALTER UPDATE returns at once", status == 200 and took < 0.4 and body != b"0\n", (took, body))
        post("CREATE TABLE a (x UInt8) ENGINE = MergeTree ORDER BY x", **db)
        post("CREATE TABLE b (y UInt8) ENGINE = MergeTree ORDER BY y", **db)
        status, _, body = post("EXCHANGE TABLES a AND b", **db)
        _, _, columns = post("SELECT name FROM system.columns WHERE database = 't' AND table = 'a'", **db)
        check("EXCHANGE TABLES", status == 200 and columns == b"y\n", (body, columns))
        with urllib.request.urlopen(base + "/?query=" + urllib.parse.quote("SELECT 40 + 2"), timeout=10) as answer:
            check("GET ?query=", answer.read() == b"42\n")
        status, _, body = post("DROP DATABASE t SYNC")
        check("DROP DATABASE", status == 200, body)
    finally:
        started = time.monotonic()
        front.send_signal(signal.SIGTERM)
        try:
            front.wait(20)
        except subprocess.TimeoutExpired:
            front.kill()
            failures.append("SIGTERM")
        log = front.stderr.read()
        check("stops on SIGTERM", front.returncode == 0, (front.returncode, log[-2000:]))
        print(f"stopped in {time.monotonic() - started:.2f} s")
        subprocess.run(["rm", "-rf", data], check=False)
    print(f"{len(failures)} failed" if failures else "all passed")
    return 1 if failures else 0


def main():
    parser = argparse.ArgumentParser(description="ClickHouse's HTTP interface, served from chdb (tests only).")
    parser.add_argument("--path", help="data directory (created if missing)")
    parser.add_argument("--port", type=int, default=58124, help="port on 127.0.0.1 (default 58124)")
    parser.add_argument("--self-test", action="store_true", help="start one on a free port and a temp dir, and check it")
    args = parser.parse_args()
    if args.self_test:
        sys.exit(self_test())
    if not args.path:
        parser.error("--path is required")
    serve(args.path, args.port)


if __name__ == "__main__":
    main()
