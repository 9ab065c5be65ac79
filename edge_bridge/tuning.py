"""Tuning constants: the fixed numbers behind the settings, in one place.

Settings (`config.py`) are what an operator sets; these are what the code chose and why.
Constants that depend on each other are written in terms of each other here, so changing
one keeps the rest consistent instead of relying on a comment in another module.
"""

from __future__ import annotations

# --- HTTP server and shutdown -------------------------------------------------------------
# uvicorn waits this long for open responses on SIGTERM before it cancels them.
GRACEFUL_SHUTDOWN_SECONDS = 3.0
# Every open stream ends with a complete response (the final chunk) within this of SIGTERM,
# well before uvicorn gives up on them: they close at once when the server is told to exit
# (api/event_stream.py `ServerExit`), not when the lifespan shutdown runs after the wait.
SSE_SHUTDOWN_GRACE_SECONDS = GRACEFUL_SHUTDOWN_SECONDS - 2.0
# The ingest worker's share of shutdown: finish the batch in flight within this.
INGEST_STOP_TIMEOUT_SECONDS = GRACEFUL_SHUTDOWN_SECONDS / 2

# --- SSE ----------------------------------------------------------------------------------
SSE_RETRY_MS = 1000  # the `retry:` a browser waits before reconnecting
# A send to one client that waits longer than this means the client stopped taking bytes:
# the stream is closed as slow and the browser's reconnect replays what it missed.
SSE_SEND_TIMEOUT_SECONDS = 10.0
EVENT_ID_MAX_DIGITS = 18  # a Last-Event-ID fits a signed 64-bit database integer
HUB_RING_SIZE = 4096  # recent events kept in memory, so most reconnects read no database
# Event-log reads for replays at once; a reconnect storm queues behind these instead of
# running hundreds of reads (each up to SSE_REPLAY_LIMIT + 1 rows) at the same time.
HUB_HISTORY_READS_AT_ONCE = 4
SSE_WRITE_CHUNK_BYTES = 65_536  # a stream that fell behind sends its backlog in writes this big
# `Retry-After` of the 503 when SSE_MAX_STREAMS streams are open in this process.
SSE_FULL_RETRY_AFTER_SECONDS = 10

# --- MQTT ingest ----------------------------------------------------------------------------
MQTT_SESSION_EXPIRY_SECONDS = 7 * 24 * 3600  # scans wait this long for a bridge that is down
MQTT_RECEIVE_MAXIMUM = 1000  # QoS 1 scans in flight to the bridge at once
MQTT_KEEPALIVE_SECONDS = 30
MQTT_RECONNECT_MIN_SECONDS = 1
MQTT_RECONNECT_MAX_SECONDS = 30
# Scans per write transaction, at most: a backlog goes in batches this big. Receive Maximum
# bounds what is in flight on one connection, so a larger batch would never fill up.
INGEST_MAX_BATCH = MQTT_RECEIVE_MAXIMUM
# A transient database error (connection lost, lock timeout, serialization failure) leaves
# the batch unacknowledged and retries it after this delay, doubling up to the maximum.
INGEST_RETRY_MIN_SECONDS = 0.1
INGEST_RETRY_MAX_SECONDS = 5.0
# A repeated scan_id whose reader ts is further than this from the first one's is a new
# scan (a reader whose counter restarted), not a redelivery (which repeats the same ts).
SCAN_ID_REUSE_TS_TOLERANCE_SECONDS = 5.0
# Ingest warnings (rejections, dropped QoS 0 scans): one line per device and reason per
# window; the next line says how many were suppressed. At most this many keys are tracked.
INGEST_LOG_WINDOW_SECONDS = 60.0
INGEST_LOG_MAX_KEYS = 10_000

# --- Background jobs ----------------------------------------------------------------------
PRUNE_INTERVAL_MAX_SECONDS = 300.0  # event log and processed scans; shorter for short retention
PRESENCE_FLUSH_SECONDS = 5.0  # readers' `last_seen` goes to the database this often
# Supervision and leadership can change outside this process (`edge-bridge import`): open
# streams re-read their staff member's groups this often.
GROUP_REFRESH_SECONDS = 5.0
DEVICE_RELOAD_ON_MISS_SECONDS = (
    2.0  # an unknown device id re-reads the device table at most this often
)

# --- Login limits -------------------------------------------------------------------------
LOGIN_WINDOW_SECONDS = 300.0
LOGIN_FAILURES_PER_EMAIL = 10
LOGIN_FAILURES_PER_ADDRESS = 50  # an IPv4 address or an IPv6 /64
# A known address (it logged in as that email before) skips both limits above and has one
# of its own, per (email, address): a staff member at a shared NAT an attacker fills up.
LOGIN_FAILURES_PER_KNOWN_ADDRESS = 10
LOGIN_KNOWN_ADDRESSES_MAX = 10_000  # (email, address) pairs remembered, least recent go first
LOGIN_KNOWN_ADDRESS_TTL_SECONDS = 30 * 24 * 3600.0
LOGIN_LIMITER_MAX_KEYS = 10_000  # per limiter; keys over their limit are kept beyond it

# --- Refresh tokens -----------------------------------------------------------------------
# Expired refresh_token rows are deleted on a login at most this often.
REFRESH_TOKEN_PRUNE_INTERVAL_SECONDS = 600.0

# --- Database -----------------------------------------------------------------------------
# A PostgreSQL connection attempt gives up after this (libpq's connect_timeout, whole
# seconds): a host that drops packets must not hold /ready and the writer for the TCP timeout.
POSTGRES_CONNECT_TIMEOUT_SECONDS = 5
# A used refresh token presented again within this many seconds of its use is a lost response,
# a duplicated tab or two refreshes racing: refused ("already used") but the login stays.
# Presented later it is a stolen copy and the whole login (family) is revoked.
REFRESH_REUSE_GRACE_SECONDS = 20.0


# --- Event-log tail (PostgreSQL: every instance feeds its hub from the log) ---------------
# A wake-up comes by LISTEN/NOTIFY after each commit; without one for this long the tail
# reads anyway (the safety net for a lost notification).
TAIL_POLL_SECONDS = 1.0
TAIL_BATCH = 1_000  # rows per read; the tail reads again at once while reads come back full
# The tail reconnects its LISTEN connection after this delay, doubling up to the maximum.
TAIL_RECONNECT_MIN_SECONDS = 0.2
TAIL_RECONNECT_MAX_SECONDS = 5.0
# /ready is 503 when the tail has not been caught up with the log for longer than this
# (a few polls), or while its LISTEN connection is down.
TAIL_STALE_SECONDS = 3.0
# A Last-Event-ID above this instance's newest id (another instance wrote it a moment ago)
# waits this long for the tail to get there before it counts as ahead of the log (resync).
TAIL_CATCH_UP_WAIT_SECONDS = 2.0 * TAIL_POLL_SECONDS
# MQTT session expiry of an instance in a shared group (MQTT_SHARED_GROUP set): after a drop
# the broker stops routing scans to it at once (see mqtt_client.session_expiry_seconds).
MQTT_SHARED_SESSION_EXPIRY_SECONDS = 0

# --- Shared login limits (issue 12.4) -----------------------------------------------------
# Per-email failure windows live in the database (table login_failure_window), so every
# instance counts against one budget; rows whose window ended are deleted at most this often.
LOGIN_FAILURE_PRUNE_INTERVAL_SECONDS = 600.0

# --- MQTT driver on the loop (issue 14) ---------------------------------------------------
# paho runs without its network thread (its select() fails for descriptors >= 1024): the
# loop calls paho's loop_misc() this often, which sends keepalive pings and notices a broker
# that stopped answering. The reconnect backoff is MQTT_RECONNECT_MIN/MAX_SECONDS above.
MQTT_MISC_INTERVAL_SECONDS = 1.0

# --- MQTT backpressure (flat-out bursts) --------------------------------------------------
# The hand-over queue pauses reading the socket at INGEST_QUEUE_SIZE messages and resumes
# once the worker has taken it down to this fraction of it (mqtt_client.MqttClient._enqueue).
INGEST_QUEUE_RESUME_FRACTION = 0.5
