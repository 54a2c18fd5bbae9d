"""The listener of the Postgres outcome store: ``LISTEN`` on its own connection, a refresh per notification.

Every write transaction of :class:`store.postgres.PostgresBackend` ends with ``pg_notify(CHANNEL, ...)``,
delivered at commit; the listener calls the store's refresh on each one, and every :data:`SAFETY_REFRESH_S`
seconds anyway in case a notification was lost. While its connection is down it reconnects with backoff
(and the backend's reads poll).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

import psycopg

log = logging.getLogger(__name__)

CHANNEL = "fusiongraph_store"
LISTEN_POLL_S = 0.5  # how often the listener checks whether it should stop
SAFETY_REFRESH_S = 30.0  # refresh this often even without a notification


class Listener:
    """A daemon thread that calls `on_change` after each notification on :data:`CHANNEL` (it returns False
    to stop); ``listening`` is True while its connection is up."""

    def __init__(self, url: str, kwargs: dict, label: str):
        self.url = url
        self.label = label
        self._kwargs = kwargs
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.listening = False

    def start(self, on_change: Callable[[], bool]) -> None:
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._loop, args=(on_change,), daemon=True, name=f"fusiongraph-store-listen-{self.label}"
        )
        self._thread.start()

    def _loop(self, on_change: Callable[[], bool]) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            conn = None
            try:
                conn = psycopg.connect(self.url, **self._kwargs)
                conn.execute(f"LISTEN {CHANNEL}")
                self.listening = True
                backoff = 0.5
                got = True  # catch up on whatever was committed while nobody listened
                last = 0.0
                while not self._stop.is_set():
                    if got or time.monotonic() - last > SAFETY_REFRESH_S:
                        try:
                            if not on_change():
                                return
                        except Exception as exc:  # the main connection is down: it reconnects on its own
                            log.warning("outcome store %s: refresh failed (%s)", self.label, exc)
                        last = time.monotonic()
                    got = False
                    for _ in conn.notifies(timeout=LISTEN_POLL_S, stop_after=1):
                        got = True
            except Exception as exc:
                if not self._stop.is_set():  # warn once per outage, not at every retry
                    (log.warning if self.listening or backoff == 0.5 else log.debug)(
                        "outcome store %s: LISTEN connection lost (%s); reads poll until it is back (retry in %.1f s)",
                        self.label,
                        str(exc).strip(),
                        backoff,
                    )
            finally:
                self.listening = False
                if conn is not None:
                    try:
                        conn.close()
                    except Exception:
                        pass
            self._stop.wait(backoff)
            backoff = min(backoff * 2, 10.0)

    def stop(self) -> None:
        self._stop.set()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout=LISTEN_POLL_S * 4 + 1)
        self._thread = None
