"""Schemathesis hooks for scripts/contract.sh: take generated calls past the gates.

Random input alone rarely gets far here: every route takes one kind of token, and most ids
must name something that exists and belongs to the caller. So before each call this module
picks, with a seeded coin, one of three treatments:

- "live" (most calls): the right kind of token for the operation (read from its OpenAPI
  `security`) and ids that exist and fit it: the caller's own user id, the contract concert,
  one of its dates, a free seat, a reservation the caller holds, a body that joins the line,
  holds a seat or pays for the caller's holds. Everything else the fuzzer generated stays.
- "token": the right kind of token, the generated ids and body untouched.
- "raw": the call as generated (no token, or whatever the generator made up).

The fixtures behind "live" are made with plain HTTP calls to the same gateway (not counted):
users with money, places in the line, admissions (the gateway admits within one fast tick),
holds. After each call the hook records what it changed (a new hold, a paid or left admission)
and appends "METHOD /path/template STATUS" to $CONTRACT_LOG, which contract.sh sums per
operation.

Environment: CONTRACT_BASE (gateway URL), CONTRACT_ADMIN (admin token), CONTRACT_CONCERT (the
concert the fuzzer books), CONTRACT_ADMIN_CONCERT (a concert whose queue settings the fuzzer may
change), CONTRACT_LOG (output file), CONTRACT_SEED (optional).
"""

from __future__ import annotations

import os
import random
import threading
import time
import uuid

import requests
import schemathesis

BASE = os.environ["CONTRACT_BASE"].rstrip("/")
ADMIN = os.environ["CONTRACT_ADMIN"]
CONCERT = int(os.environ["CONTRACT_CONCERT"])
ADMIN_CONCERT = int(os.environ["CONTRACT_ADMIN_CONCERT"])
LOG = os.environ["CONTRACT_LOG"]
RNG = random.Random(int(os.environ.get("CONTRACT_SEED", "1")))
LOCK = threading.RLock()
HTTP = requests.Session()
MAX_HOLDS = 4  # per user and date, and per checkout


def _call(method: str, path: str, token: str | None = None, body: object = None) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return HTTP.request(method, BASE + path, headers=headers, json=body, timeout=10)


class Booker:
    """A user admitted to the contract concert: tokens, and the holds they have."""

    def __init__(self, user_id: int, user_token: str, queue_token: str, access_token: str):
        self.user_id = user_id
        self.user_token = user_token
        self.queue_token = queue_token
        self.access_token = access_token
        self.holds: dict[int, int] = {}  # reservation id -> schedule id
        self.spent = False  # paid or left: the access token is revoked

    def holds_on(self, schedule: int) -> int:
        return sum(1 for s in self.holds.values() if s == schedule)


class World:
    def __init__(self) -> None:
        self.users: list[tuple[int, str]] = []
        self.bookers: list[Booker] = []
        self.by_access: dict[str, Booker] = {}
        self.by_queue: dict[str, Booker] = {}
        self.owner: dict[int, Booker] = {}  # reservation id -> booker
        self._schedules: list[int] | None = None

    def schedules(self) -> list[int]:
        if self._schedules is None:
            b = self.booker()
            r = _call("GET", f"/v1/concerts/{CONCERT}/schedules", b.access_token)
            r.raise_for_status()
            self._schedules = [s["schedule_id"] for s in r.json()["schedules"]]
        return self._schedules

    def new_user(self) -> tuple[int, str]:
        r = _call("POST", "/v1/users", body={"name": f"contract {len(self.users) + 1}"})
        r.raise_for_status()
        u = (r.json()["user_id"], r.json()["user_token"])
        self.users.append(u)
        return u

    def user(self) -> tuple[int, str]:
        if not self.users or RNG.random() < 0.1:
            return self.new_user()
        return RNG.choice(self.users)

    def new_booker(self) -> Booker:
        user_id, user_token = self.new_user()
        _call("POST", f"/v1/users/{user_id}/balance/charge", user_token, {"amount": 1_000_000_000}).raise_for_status()
        r = _call("POST", "/v1/queue", user_token, {"concert_id": CONCERT})
        r.raise_for_status()
        queue_token = r.json()["queue_token"]
        access = r.json().get("access_token")
        until = time.monotonic() + 10
        while not access:
            if time.monotonic() > until:
                print(_call("GET", f"/v1/admin/concerts/{CONCERT}/queue", ADMIN).text, flush=True)
                raise RuntimeError("contract fixture: a user was never admitted")
            time.sleep(0.05)
            s = _call("GET", "/v1/queue/status", queue_token)
            s.raise_for_status()
            access = s.json().get("access_token")
        b = Booker(user_id, user_token, queue_token, access)
        self.bookers.append(b)
        self.by_access[access] = b
        self.by_queue[queue_token] = b
        return b

    def booker(self) -> Booker:
        live = [b for b in self.bookers if not b.spent]
        if not live or RNG.random() < 0.05:
            return self.new_booker()
        return RNG.choice(live)

    def free_seat(self, b: Booker) -> tuple[int, int] | None:
        """A date where b may hold one more seat, and a free seat there."""
        dates = [s for s in self.schedules() if b.holds_on(s) < MAX_HOLDS]
        RNG.shuffle(dates)
        for schedule in dates[:3]:
            r = _call("GET", f"/v1/schedules/{schedule}/seats", b.access_token)
            if r.status_code != 200:
                continue
            free = [s["seat_no"] for s in r.json()["seats"] if s["status"] == "available"]
            if free:
                return schedule, RNG.choice(free)
        return None

    def hold(self, b: Booker) -> int | None:
        """A reservation b holds, made now if b has none."""
        if b.holds:
            return RNG.choice(list(b.holds))
        spot = self.free_seat(b)
        if spot is None:
            return None
        r = _call("POST", "/v1/reservations", b.access_token, {"schedule_id": spot[0], "seat_no": spot[1]})
        if r.status_code != 201:
            return None
        self.held(b, r.json()["reservation_id"], spot[0])
        return r.json()["reservation_id"]

    def held(self, b: Booker, reservation: int, schedule: int) -> None:
        b.holds[reservation] = schedule
        self.owner[reservation] = b

    def spend(self, b: Booker | None) -> None:
        if b is not None:
            b.spent = True
            for r in b.holds:
                self.owner.pop(r, None)
            b.holds.clear()


WORLD = World()


def _security(case) -> str | None:
    for requirement in case.operation.definition.raw.get("security") or []:
        for name in requirement:
            return name
    return None


def _bearer(case, token: str) -> None:
    case.headers["Authorization"] = f"Bearer {token}"


def _json_body(case, body: dict) -> None:
    case.body = body
    case.media_type = "application/json"


def _live(case) -> None:
    """Right token, ids that exist and fit it, a body that does something."""
    op = f"{case.operation.method.upper()} {case.operation.path}"
    kind = _security(case)
    params = case.path_parameters
    if op == "GET /assets/{file}":
        params["file"] = RNG.choice(["app.js", "app.css", "docs.js", "docs.css"])
    elif op == "GET /concerts/{concert_id}":
        params["concert_id"] = CONCERT
    if kind == "user_token":
        user_id, token = WORLD.user()
        _bearer(case, token)
        if "user_id" in params:
            params["user_id"] = user_id
        if op == "POST /v1/queue":
            _json_body(case, {"concert_id": CONCERT})
        elif op.endswith("/balance/charge"):
            _json_body(case, {"amount": RNG.randint(1, 100_000)})
            case.headers.pop("Idempotency-Key", None)
    elif kind == "queue_token":
        if op == "DELETE /v1/queue":
            b = WORLD.booker() if RNG.random() < 0.2 else WORLD.new_booker()
        else:
            b = WORLD.booker()
        _bearer(case, b.queue_token)
    elif kind == "access_token":
        b = WORLD.booker()
        if "concert_id" in params:
            params["concert_id"] = CONCERT
        if "schedule_id" in params:
            params["schedule_id"] = RNG.choice(WORLD.schedules())
        if "reservation_id" in params:
            reservation = WORLD.hold(b)
            if reservation is not None:
                params["reservation_id"] = reservation
        if op == "POST /v1/reservations":
            spot = WORLD.free_seat(b)
            if spot is not None:
                _json_body(case, {"schedule_id": spot[0], "seat_no": spot[1]})
        elif op == "POST /v1/payments":
            if WORLD.hold(b) is not None:
                ids = list(b.holds)[:MAX_HOLDS]
                if isinstance(case.body, dict) and "reservation_ids" in case.body or len(ids) > 1:
                    _json_body(case, {"reservation_ids": ids})
                else:
                    _json_body(case, {"reservation_id": ids[0]})
            case.headers["Idempotency-Key"] = f"contract-{uuid.uuid4()}"
        _bearer(case, b.access_token)
    elif kind == "admin_token":
        _bearer(case, ADMIN)
        if "concert_id" in params:
            params["concert_id"] = ADMIN_CONCERT


def _tokened(case) -> None:
    """Right kind of token; ids and body as generated."""
    kind = _security(case)
    if kind == "user_token":
        _bearer(case, WORLD.user()[1])
    elif kind == "queue_token":
        _bearer(case, WORLD.booker().queue_token)
    elif kind == "access_token":
        _bearer(case, WORLD.booker().access_token)
    elif kind == "admin_token":
        _bearer(case, ADMIN)


@schemathesis.hook
def before_call(context, case, kwargs):
    with LOCK:
        roll = RNG.random()
        try:
            if roll < 0.6:
                _live(case)
            elif roll < 0.8:
                _tokened(case)
        except (requests.RequestException, RuntimeError, KeyError, ValueError) as e:
            # A fixture could not be made: send the call as generated, and say so.
            print(f"[contract-hooks] fixture failed for {case.operation.label}: {e}", flush=True)
        # Whatever the generator made up, the admin routes never touch the booked concert's
        # line: a generated `admit_per_tick: 0` there would stall every fixture after it.
        if _security(case) == "admin_token" and str(case.path_parameters.get("concert_id")) == str(CONCERT):
            case.path_parameters["concert_id"] = ADMIN_CONCERT


def _bearer_of(case) -> str:
    value = (case.headers or {}).get("Authorization") or ""
    return value[7:] if value.startswith("Bearer ") else ""


@schemathesis.hook
def after_call(context, case, response):
    op = f"{case.operation.method.upper()} {case.operation.path}"
    status = response.status_code
    with LOCK:
        with open(LOG, "a", encoding="utf-8") as f:
            f.write(f"{op} {status}\n")
        token = _bearer_of(case)
        b = WORLD.by_access.get(token)
        try:
            body = response.json() if status in (200, 201) else {}
        except ValueError:
            body = {}
        if op == "POST /v1/reservations" and status == 201 and b is not None:
            WORLD.held(b, body["reservation_id"], body["schedule_id"])
        elif op == "DELETE /v1/reservations/{reservation_id}" and status == 204 and b is not None:
            r = int(case.path_parameters.get("reservation_id", 0))
            b.holds.pop(r, None)
            WORLD.owner.pop(r, None)
        elif op == "POST /v1/payments" and status in (200, 201):
            WORLD.spend(b)
        elif op == "DELETE /v1/queue" and status == 204:
            WORLD.spend(WORLD.by_queue.get(token))
        elif status == 401 and b is not None and "TOKEN_REVOKED" in response.text:
            WORLD.spend(b)
