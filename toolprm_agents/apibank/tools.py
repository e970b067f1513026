"""API-Bank's level-1 APIs as executable LangChain tools, backed by its simulated database.

API-Bank (Li et al., 2023) evaluates tool calls on 49 APIs -- agendas, alarms, meetings,
reminders, accounts, bank, stocks, hospital registrations, health data, smart home,
search, knowledge look-ups. Its dialogues record each call's result against a simulated
back end (``init_database/*.json``). :class:`ApiBank` re-implements those APIs in plain
Python over a fresh in-memory copy of that database, so a tool call an agent makes really
executes and its result flows back into the conversation.

Each API is a :class:`~langchain_core.tools.StructuredTool` named as in API-Bank
(``GetUserToken``, ``AddAgenda``, ...), with API-Bank's own description and an args
schema typed from its spec (``int``, ``bool``, ``list[str]``; a list given as its Python
text, ``"['a', 'b']"``, as in API-Bank's recorded calls, is accepted too). A failing call
(a wrong token, an unknown appointment) returns API-Bank's error text as the tool result
instead of raising, so an agent sees it and may retry.

Example:
    >>> bank = ApiBank()
    >>> bank.call("GetUserToken", username="JohnDoe", password="pass123")
    {'token': 'a9s8d7f6g5h4j3k2l1'}
    >>> bank.call("QueryBalance", token="a9s8d7f6g5h4j3k2l1")
    2739.25
    >>> tools = bank.tools(["GetUserToken", "QueryBalance"])   # StructuredTools for an agent
    >>> tools[1].invoke({"token": "nope"})
    'The token is invalid.'

Every :class:`ApiBank` holds its own copy of the database (a call changes only that
copy), so agents, threads and tests do not interfere. Results follow API-Bank's recorded
dialogues (``lv1-lv2-samples``) where they can be reproduced; where API-Bank used random
or online services the results are deterministic stand-ins:

* ``RegisterUser`` tokens and ``AppointmentRegistration`` IDs come from a seeded RNG
  (API-Bank drew them at random);
* ``ForgotPassword``'s verification code is always ``970420`` (as recorded);
* ``GetToday`` returns a fixed date (``2023-03-31``, as recorded; ``ApiBank(today=...)``);
* ``Dictionary`` and ``Translate`` called online services: they answer from the results
  recorded in API-Bank's dialogues and fail for anything else;
* ``DocumentQA`` answers a question found in the document's Q&A list (API-Bank used a
  model and often answered "The question is too difficult to answer.", which is what it
  returns for any other question);
* ``SearchEngine`` ranks the documents with BM25 (top 2), as API-Bank did.

The data files in ``toolprm_agents/apibank/data/`` are API-Bank's (Apache-2.0, see the
``LICENSE`` files there): the database, the API specs (``apis.json``, taken from its
level-1 test set) and the recorded Dictionary/Translate results (``recorded.json``).
"""

from __future__ import annotations

import ast
import copy
import datetime as _dt
import functools
import json
import math
import operator
import random
import re
import string
from collections import Counter
from pathlib import Path
from typing import Annotated, Any, Callable, Iterable

import pydantic
from langchain_core.tools import StructuredTool, ToolException

DATA_DIR = Path(__file__).parent / "data"
VERIFICATION_CODE = 970420
DEFAULT_TODAY = "2023-03-31"
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"

# Arguments that may be left out (API-Bank's specs say nothing about it; these are the
# ones its APIs treat as alternatives or extras).
OPTIONAL_ARGS: dict[str, set[str]] = {
    "DeleteAgenda": {"time", "location"},
    "ModifyAgenda": {"time", "location"},
    "QueryAgenda": {"content", "time", "location"},
    "DeleteMeeting": {"meeting_topic", "start_time", "end_time", "location", "attendees"},
    "ModifyMeeting": {"start_time", "end_time", "location", "attendees"},
    "QueryMeeting": {"meeting_topic", "start_time", "end_time", "location", "attendees"},
    "DeleteReminder": {"content", "time"},
    "ModifyReminder": {"content", "time"},
    "QueryReminder": {"content", "time"},
    "ForgotPassword": {"username", "email", "verification_code", "new_password"},
    "Translate": {"src_lang", "tgt_lang"},
}


class ApiBankError(ToolException):
    """An API-Bank call failed; the message is API-Bank's error text."""


# ------------------------------------------------------------------------------------------
# data


@functools.lru_cache(maxsize=None)
def _load_json(name: str) -> Any:
    with open(DATA_DIR / name, encoding="utf-8") as f:
        return json.load(f)


def api_specs() -> list[dict[str, Any]]:
    """API-Bank's level-1 API specs: ``[{"name", "description", "input_parameters", "output_parameters"}]``."""
    return copy.deepcopy(_load_json("apis.json"))


def _db(name: str) -> Any:
    return _load_json(f"init_database/{name}.json")


# ------------------------------------------------------------------------------------------
# argument types


def _parse_literal(value: Any) -> Any:
    """A list given as JSON or Python text (``"['a', 'b']"``) becomes the list."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                return json.loads(text)
            except ValueError:
                try:
                    return ast.literal_eval(text)
                except (ValueError, SyntaxError):
                    return value
    return value


StrList = Annotated[list[str], pydantic.BeforeValidator(_parse_literal)]
DictList = Annotated[list[dict[str, Any]], pydantic.BeforeValidator(_parse_literal)]
_TYPES: dict[str, Any] = {"str": str, "int": int, "bool": bool, "float": float, "list(str)": StrList, "list": DictList}


def _args_schema(spec: dict[str, Any]) -> type[pydantic.BaseModel]:
    optional = OPTIONAL_ARGS.get(spec["name"], set())
    fields: dict[str, Any] = {}
    for arg, info in spec["input_parameters"].items():
        typ = _TYPES.get(info["type"])
        if typ is None:  # pragma: no cover - the specs use only the types above
            raise ValueError(f"API {spec['name']}: unknown parameter type {info['type']!r}")
        desc = info.get("description", "")
        is_optional = arg in optional or desc.startswith("[Optional]") or "Only needed for" in desc
        default = None if is_optional else ...
        fields[arg] = (typ, pydantic.Field(default=default, description=desc))
    return pydantic.create_model(spec["name"], __doc__=spec["description"], **fields)


# ------------------------------------------------------------------------------------------
# helpers


def _describe(exc: Exception) -> str:
    """A pydantic validation error as ``arg: problem; ...``."""
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return str(exc)
    return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors())


def _norm_time(value: str | None, fmt: str = TIME_FORMAT) -> str | None:
    """``value`` in ``fmt`` (a short year is zero-filled), or ``None`` if not given."""
    if value is None:
        return None
    text = str(value).strip()
    parts = text.split("-")
    if len(parts) == 3 and len(parts[0]) < 4:
        text = "-".join([parts[0].zfill(4)] + parts[1:])
    try:
        return _dt.datetime.strptime(text, fmt).strftime(fmt)
    except ValueError:
        raise ApiBankError(f"time data {value!r} does not match format {fmt!r}") from None


def _same(a: Any, b: Any) -> bool:
    return str(a).strip().lower() == str(b).strip().lower()


def _day(value: str | None) -> str | None:
    return None if value is None else str(value).strip()[:10]


_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


def _calc(node: ast.AST) -> float:
    if isinstance(node, ast.Expression):
        return _calc(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        return _BINOPS[type(node.op)](_calc(node.left), _calc(node.right))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.UAdd, ast.USub)):
        v = _calc(node.operand)
        return -v if isinstance(node.op, ast.USub) else v
    raise ApiBankError("invalid formula")


class _BM25:
    """BM25 Okapi (k1=1.5, b=0.75, epsilon=0.25), as API-Bank's search engine used."""

    def __init__(self, docs: list[list[str]], k1: float = 1.5, b: float = 0.75, epsilon: float = 0.25):
        self.k1, self.b = k1, b
        self.tfs = [Counter(d) for d in docs]
        self.lengths = [len(d) for d in docs]
        self.avgdl = sum(self.lengths) / len(docs)
        df = Counter(w for d in docs for w in set(d))
        n = len(docs)
        idf = {w: math.log(n - k + 0.5) - math.log(k + 0.5) for w, k in df.items()}
        floor = epsilon * sum(idf.values()) / len(idf)
        self.idf = {w: (v if v >= 0 else floor) for w, v in idf.items()}

    def scores(self, query: list[str]) -> list[float]:
        out = []
        for tf, dl in zip(self.tfs, self.lengths):
            s = 0.0
            for q in query:
                f = tf.get(q, 0)
                if f:
                    s += self.idf.get(q, 0.0) * f * (self.k1 + 1) / (f + self.k1 * (1 - self.b + self.b * dl / self.avgdl))
            out.append(s)
        return out


_TOKEN_RE = re.compile(r"\w+|[^\w\s]")


# ------------------------------------------------------------------------------------------


_IMPLS: dict[str, Callable[..., Any]] = {}


def _api(name: str):
    def register(fn):
        _IMPLS[name] = fn
        return fn

    return register


class ApiBank:
    """API-Bank's level-1 APIs over a private, in-memory copy of its database.

    Args:
        today: what ``GetToday`` answers (``%Y-%m-%d``).
        seed: seeds the generated tokens (``RegisterUser``) and appointment IDs.

    Example:
        >>> bank = ApiBank()
        >>> [t.name for t in bank.tools()][:3]
        ['AddAgenda', 'AddAlarm', 'AddMeeting']
        >>> bank.execute("QueryStock", {"stock_code": "SQ", "date": "2022-03-14"})
        {'api_name': 'QueryStock', 'input': {'stock_code': 'SQ', 'date': '2022-03-14'}, 'output': 248.9, 'exception': None}
    """

    # the tables an API may change (deep-copied per instance); the rest are read-only
    MUTABLE = ("Account", "Agenda", "Alarm", "Appointments", "Bank", "HealthData", "Hotel", "Meeting", "Reminder", "Scenes", "TimeSwitch")

    def __init__(self, *, today: str = DEFAULT_TODAY, seed: int = 0):
        self.today = today
        self.rng = random.Random(seed)
        self.db: dict[str, Any] = {name: copy.deepcopy(_db(name)) for name in self.MUTABLE}
        self.bank_accounts: dict[str, dict[str, Any]] = {}
        self.sent_emails: list[dict[str, str]] = []
        self._password_reset: str | None = None
        self._specs = {s["name"]: s for s in _load_json("apis.json")}
        self._schemas: dict[str, type[pydantic.BaseModel]] = {}
        self._tools: dict[str, StructuredTool] = {}

    # -- public surface ----------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        """The API names, sorted."""
        return sorted(self._specs)

    def spec(self, name: str) -> dict[str, Any]:
        """API-Bank's spec of one API (name, description, input/output parameters)."""
        return copy.deepcopy(self._specs[self._check(name)])

    def args_schema(self, name: str) -> type[pydantic.BaseModel]:
        name = self._check(name)
        if name not in self._schemas:
            self._schemas[name] = _args_schema(self._specs[name])
        return self._schemas[name]

    def tool(self, name: str) -> StructuredTool:
        """One API as a LangChain tool (errors come back as the tool's text result)."""
        name = self._check(name)
        if name not in self._tools:
            spec = self._specs[name]

            def run(**kwargs: Any) -> Any:
                return self.call(name, **kwargs)

            run.__name__ = run.__qualname__ = name
            self._tools[name] = StructuredTool(
                name=name,
                description=spec["description"],
                args_schema=self.args_schema(name),
                func=run,
                handle_tool_error=True,
                handle_validation_error=lambda exc, _name=name: f"invalid arguments for {_name}: {_describe(exc)}",
            )
        return self._tools[name]

    def tools(self, names: Iterable[str] | None = None) -> list[StructuredTool]:
        """The APIs (all, or those named) as LangChain tools."""
        return [self.tool(n) for n in (self.names if names is None else names)]

    def call(self, name: str, /, **params: Any) -> Any:
        """Run one API; returns its output or raises :class:`ApiBankError` with API-Bank's error text."""
        name = self._check(name)
        schema = self.args_schema(name)
        unknown = sorted(set(params) - set(schema.model_fields))
        if unknown:
            raise ApiBankError(f"{name} has no parameter(s) {', '.join(unknown)}")
        try:
            args = schema.model_validate(params)
        except pydantic.ValidationError as exc:
            raise ApiBankError(f"invalid arguments for {name}: {_describe(exc)}") from None
        return _IMPLS[name](self, **{k: getattr(args, k) for k in params})

    def execute(self, name: str, params: dict[str, Any]) -> dict[str, Any]:
        """Run one API and report it the way API-Bank's dialogues record it.

        Returns ``{"api_name", "input", "output", "exception"}``; ``exception`` is the
        error text (and ``output`` ``None``) when the call failed.
        """
        try:
            output, exception = self.call(name, **params), None
        except ApiBankError as exc:
            output, exception = None, str(exc)
        return {"api_name": name, "input": dict(params), "output": output, "exception": exception}

    def _check(self, name: str) -> str:
        if name not in self._specs:
            raise KeyError(f"unknown API-Bank API {name!r}; known: {', '.join(sorted(self._specs))}")
        return name

    # -- shared lookups ----------------------------------------------------------------------
    def _user(self, token: str) -> str:
        for username, info in self.db["Account"].items():
            if info["token"] == str(token).strip():
                return username
        raise ApiBankError("The token is invalid.")

    def _new_token(self, length: int = 32) -> str:
        return "".join(self.rng.choices(string.ascii_lowercase + string.digits, k=length))

    def _find(self, table: str, username: str, match: Callable[[dict], bool]) -> str | None:
        for key, item in self.db[table].items():
            if item.get("username") == username and match(item):
                return key
        return None

    def _next_id(self, table: str) -> str:
        return str(max((int(k) for k in self.db[table] if str(k).isdigit()), default=0) + 1)


# ------------------------------------------------------------------------------------------
# accounts


@_api("GetUserToken")
def _get_user_token(bank: ApiBank, username: str, password: str):
    info = bank.db["Account"].get(username)
    if info is None:
        raise ApiBankError("The username does not exist.")
    if info["password"] != password:
        raise ApiBankError("The password is incorrect.")
    return {"token": info["token"]}


@_api("RegisterUser")
def _register_user(bank: ApiBank, username: str, password: str, email: str):
    if username in bank.db["Account"]:
        raise ApiBankError("The username already exists.")
    token = bank._new_token()
    bank.db["Account"][username] = {"password": password, "token": token, "email": email}
    return {"token": token}


@_api("DeleteAccount")
def _delete_account(bank: ApiBank, token: str):
    username = bank._user(token)
    del bank.db["Account"][username]
    return {"status": "success"}


@_api("ModifyPassword")
def _modify_password(bank: ApiBank, token: str, old_password: str, new_password: str):
    username = bank._user(token)
    if bank.db["Account"][username]["password"] != old_password:
        raise ApiBankError("The old password is incorrect.")
    bank.db["Account"][username]["password"] = new_password
    return {"status": "success"}


@_api("ForgotPassword")
def _forgot_password(bank: ApiBank, status: str, username=None, email=None, verification_code=None, new_password=None):
    if status == "Forgot Password":
        if not username or not email:
            raise ApiBankError("The username and email are required for the first call.")
        info = bank.db["Account"].get(username)
        if info is None:
            raise ApiBankError("The username does not exist.")
        if info["email"] != email:
            raise ApiBankError("The email is incorrect.")
        bank._password_reset = username
        return VERIFICATION_CODE
    if status == "Verification Code":
        if bank._password_reset is None:
            raise ApiBankError("You need to call the API with status 'Forgot Password' at first.")
        if verification_code is None or not new_password:
            raise ApiBankError("The new password and verification code are required for the second call.")
        if int(verification_code) != VERIFICATION_CODE:
            raise ApiBankError("The verification code is incorrect.")
        bank.db["Account"][bank._password_reset]["password"] = new_password
        bank._password_reset = None
        return "success"
    raise ApiBankError("The status is only 'Forgot Password' or 'Verification Code'.")


# ------------------------------------------------------------------------------------------
# bank and stocks


@_api("QueryBalance")
def _query_balance(bank: ApiBank, token: str):
    username = bank._user(token)
    if username not in bank.db["Bank"]:
        raise ApiBankError("The user does not have an account.")
    return bank.db["Bank"][username]["balance"]


@_api("OpenBankAccount")
def _open_bank_account(bank: ApiBank, account: str, password: str, name: str):
    if account in bank.bank_accounts:
        raise ApiBankError("The account already exists.")
    bank.bank_accounts[account] = {"password": password, "name": name, "balance": 0.0}
    return "success"


@_api("QueryStock")
def _query_stock(bank: ApiBank, stock_code: str, date: str):
    code = stock_code.strip().upper()
    if not code:
        raise ApiBankError("The stock code cannot be empty.")
    stocks = _db("Stock")
    if code not in stocks:
        raise ApiBankError("The stock code does not exist.")
    day = _norm_time(date, "%Y-%m-%d")
    if day not in stocks[code]:
        raise ApiBankError("The stock price of this date is not maintained.")
    return stocks[code][day]


# ------------------------------------------------------------------------------------------
# agenda, alarms, reminders, meetings (per user, through the token)


@_api("AddAgenda")
def _add_agenda(bank: ApiBank, token: str, content: str, time: str, location: str):
    username = bank._user(token)
    if not content.strip():
        raise ApiBankError("Content should not be null")
    bank.db["Agenda"][bank._next_id("Agenda")] = {"content": content, "time": _norm_time(time), "location": location, "username": username}
    return "success"


def _agenda_key(bank: ApiBank, token: str, content: str | None, time: str | None) -> str:
    username = bank._user(token)
    if content:
        key = bank._find("Agenda", username, lambda it: _same(it["content"], content))
        if key is None:
            raise ApiBankError(f"You have no agenda about {content}")
        return key
    if time:
        key = bank._find("Agenda", username, lambda it: _day(it["time"]) == _day(time))
        if key is None:
            raise ApiBankError(f"You have no agenda at time : {time}")
        return key
    raise ApiBankError("Content and time should not be null both")


@_api("DeleteAgenda")
def _delete_agenda(bank: ApiBank, token: str, content: str, time=None, location=None):
    del bank.db["Agenda"][_agenda_key(bank, token, content, time)]
    return "success"


@_api("ModifyAgenda")
def _modify_agenda(bank: ApiBank, token: str, content: str, time=None, location=None):
    item = bank.db["Agenda"][_agenda_key(bank, token, content, None)]
    if time is not None:
        item["time"] = _norm_time(time)
    if location is not None:
        item["location"] = location
    return "success"


@_api("QueryAgenda")
def _query_agenda(bank: ApiBank, token: str, content=None, time=None, location=None):
    return dict(bank.db["Agenda"][_agenda_key(bank, token, content, time)])


@_api("AddAlarm")
def _add_alarm(bank: ApiBank, token: str, time: str):
    username = bank._user(token)
    bank.db["Alarm"][bank._next_id("Alarm")] = {"time": _norm_time(time), "username": username}
    return "success"


def _alarm_key(bank: ApiBank, token: str, time: str) -> str:
    username = bank._user(token)
    t = _norm_time(time)
    key = bank._find("Alarm", username, lambda it: it["time"] == t)
    if key is None:
        raise ApiBankError(f"You have no alarm clock at time : {time}")
    return key


@_api("DeleteAlarm")
def _delete_alarm(bank: ApiBank, token: str, time: str):
    del bank.db["Alarm"][_alarm_key(bank, token, time)]
    return "success"


@_api("ModifyAlarm")
def _modify_alarm(bank: ApiBank, token: str, from_time: str, to_time: str):
    bank.db["Alarm"][_alarm_key(bank, token, from_time)]["time"] = _norm_time(to_time)
    return "success"


@_api("QueryAlarm")
def _query_alarm(bank: ApiBank, token: str, time: str):
    return dict(bank.db["Alarm"][_alarm_key(bank, token, time)])


@_api("AddReminder")
def _add_reminder(bank: ApiBank, token: str, content: str, time: str):
    username = bank._user(token)
    if not content.strip():
        raise ApiBankError("Content should not be null")
    bank.db["Reminder"][bank._next_id("Reminder")] = {"content": content, "time": _norm_time(time), "username": username}
    return "success"


def _reminder_key(bank: ApiBank, token: str, content: str | None, time: str | None) -> str:
    """The user's reminder about ``content`` or, failing that, at ``time``."""
    username = bank._user(token)
    if not content and not time:
        raise ApiBankError("Content should not be null")
    t = _norm_time(time) if time else None
    key = bank._find("Reminder", username, lambda it: bool(content) and _same(it["content"], content))
    if key is None and t:
        key = bank._find("Reminder", username, lambda it: it["time"] == t)
    if key is None:
        raise ApiBankError(f"You have no reminder about {content} or at time : {time}")
    return key


@_api("DeleteReminder")
def _delete_reminder(bank: ApiBank, token: str, content=None, time=None):
    del bank.db["Reminder"][_reminder_key(bank, token, content, time)]
    return "success"


@_api("ModifyReminder")
def _modify_reminder(bank: ApiBank, token: str, content=None, time=None):
    item = bank.db["Reminder"][_reminder_key(bank, token, content, time)]
    if content:
        item["content"] = content
    if time:
        item["time"] = _norm_time(time)
    return "success"


@_api("QueryReminder")
def _query_reminder(bank: ApiBank, token: str, content=None, time=None):
    return dict(bank.db["Reminder"][_reminder_key(bank, token, content, time)])


@_api("AddMeeting")
def _add_meeting(bank: ApiBank, token: str, meeting_topic: str, start_time: str, end_time: str, location: str, attendees: list[str]):
    username = bank._user(token)
    if not meeting_topic.strip():
        raise ApiBankError("Meeting Topic should not be null")
    bank.db["Meeting"][bank._next_id("Meeting")] = {
        "meeting_topic": meeting_topic,
        "start_time": _norm_time(start_time),
        "end_time": _norm_time(end_time),
        "location": location,
        "attendees": list(attendees),
        "username": username,
    }
    return "success"


def _meeting_key(bank: ApiBank, token: str, meeting_topic: str | None, start_time: str | None) -> str:
    username = bank._user(token)
    if not meeting_topic and not start_time:
        raise ApiBankError("Meeting Topic and start_time should not be null both")
    if meeting_topic:
        key = bank._find("Meeting", username, lambda it: _same(it["meeting_topic"], meeting_topic))
        if key is None:
            raise ApiBankError(f"You have no meeting about {meeting_topic}")
        return key
    t = _norm_time(start_time)
    key = bank._find("Meeting", username, lambda it: it["start_time"] == t)
    if key is None:
        raise ApiBankError(f"You have no meeting at time : {start_time}")
    return key


@_api("DeleteMeeting")
def _delete_meeting(bank: ApiBank, token: str, meeting_topic=None, start_time=None, end_time=None, location=None, attendees=None):
    del bank.db["Meeting"][_meeting_key(bank, token, meeting_topic, start_time)]
    return "success"


@_api("ModifyMeeting")
def _modify_meeting(bank: ApiBank, token: str, meeting_topic: str, start_time=None, end_time=None, location=None, attendees=None):
    item = bank.db["Meeting"][_meeting_key(bank, token, meeting_topic, None)]
    for key, value in (("start_time", start_time), ("end_time", end_time)):
        if value is not None:
            item[key] = _norm_time(value)
    if location is not None:
        item["location"] = location
    if attendees is not None:
        item["attendees"] = list(attendees)
    return "success"


@_api("QueryMeeting")
def _query_meeting(bank: ApiBank, token: str, meeting_topic=None, start_time=None, end_time=None, location=None, attendees=None):
    return copy.deepcopy(bank.db["Meeting"][_meeting_key(bank, token, meeting_topic, start_time)])


# ------------------------------------------------------------------------------------------
# hospital and health


@_api("AppointmentRegistration")
def _appointment_registration(bank: ApiBank, patient_name: str, date: str, doctor_name: str):
    if not patient_name.strip() or not doctor_name.strip():
        raise ApiBankError("Patient name or doctor name cannot be empty.")
    day = _norm_time(date, "%Y-%m-%d")
    for item in bank.db["Appointments"].values():
        if _same(item["patient_name"], patient_name) and item["date"] == day:
            if _same(item["doctor_name"], doctor_name):
                raise ApiBankError("This appointment has already been registered.")
            raise ApiBankError("This patient has already been registered in this day.")
    appointment_id = f"{bank.rng.randrange(10**8):08d}"
    while appointment_id in bank.db["Appointments"]:
        appointment_id = f"{bank.rng.randrange(10**8):08d}"
    bank.db["Appointments"][appointment_id] = {"patient_name": patient_name, "date": day, "doctor_name": doctor_name}
    return appointment_id


@_api("QueryRegistration")
def _query_registration(bank: ApiBank, patient_name: str, date: str):
    day = _norm_time(date, "%Y-%m-%d")
    found = {k: dict(v) for k, v in bank.db["Appointments"].items() if _same(v["patient_name"], patient_name) and v["date"] == day}
    if not found:
        raise ApiBankError("No appointments found.")
    return found


@_api("CancelRegistration")
def _cancel_registration(bank: ApiBank, appointment_id: str):
    if str(appointment_id) not in bank.db["Appointments"]:
        raise ApiBankError("The appointment ID is incorrect.")
    del bank.db["Appointments"][str(appointment_id)]
    return "success"


@_api("ModifyRegistration")
def _modify_registration(bank: ApiBank, appointment_id: str, new_appointment_date: str, new_appointment_doctor: str):
    item = bank.db["Appointments"].get(str(appointment_id))
    if item is None:
        raise ApiBankError("The appointment ID does not exist.")
    if not new_appointment_doctor.strip():
        raise ApiBankError("Fail because the doctor name is empty.")
    day = _norm_time(new_appointment_date, "%Y-%m-%d")
    if day == item["date"] and _same(new_appointment_doctor, item["doctor_name"]):
        raise ApiBankError("Fail because no modification is made.")
    item["date"], item["doctor_name"] = day, new_appointment_doctor
    return "success"


@_api("QueryHealthData")
def _query_health_data(bank: ApiBank, user_id: str, start_time: str, end_time: str):
    if not user_id.strip():
        raise ApiBankError("The user id cannot be empty.")
    start, end = _norm_time(start_time), _norm_time(end_time)
    if start > end:
        raise ApiBankError("The start time cannot be later than the end time.")
    key = next((k for k in bank.db["HealthData"] if _same(k, user_id)), None)
    if key is None:
        raise ApiBankError("The user id does not exist.")
    return [dict(r) for r in bank.db["HealthData"][key] if start <= r["time"] <= end]


@_api("RecordHealthData")
def _record_health_data(bank: ApiBank, user_id: str, time: str, health_data: list[dict[str, Any]]):
    if not user_id.strip():
        raise ApiBankError("The user id cannot be empty.")
    if not health_data:
        raise ApiBankError("The health data cannot be empty.")
    record: dict[str, Any] = {"time": _norm_time(time)}
    for item in health_data:
        if not isinstance(item, dict) or "name" not in item or "value" not in item:
            raise ApiBankError("The health data has invalid format.")
        if item["name"] in record:
            raise ApiBankError("The health data cannot contain duplicate items.")
        record[item["name"]] = item["value"]
    bank.db["HealthData"].setdefault(user_id, []).append(record)
    return "success"


@_api("SymptomSearch")
def _symptom_search(bank: ApiBank, symptom: str):
    return [{"name": d["name"], "description": d["description"]} for d in _symptom(symptom)]


@_api("EmergencyKnowledge")
def _emergency_knowledge(bank: ApiBank, symptom: str):
    return [{"name": d["name"], "aid": d["aid"]} for d in _symptom(symptom)]


def _symptom(symptom: str) -> list[dict]:
    key = symptom.strip().lower()
    if not key:
        raise ApiBankError("The symptom cannot be empty.")
    table = _db("Symptom")
    if key not in table:
        raise ApiBankError("The symptom does not exist.")
    return table[key]


# ------------------------------------------------------------------------------------------
# smart home, hotel, email, music


@_api("QueryScene")
def _query_scene(bank: ApiBank, name: str):
    key = name.strip().lower()
    if not key:
        raise ApiBankError("Scene name cannot be empty.")
    if key not in bank.db["Scenes"]:
        raise ApiBankError("Scene not found.")
    return copy.deepcopy(bank.db["Scenes"][key])


@_api("DeleteScene")
def _delete_scene(bank: ApiBank, name: str):
    key = name.strip().lower()
    if not key:
        raise ApiBankError("Scene name cannot be empty.")
    if key not in bank.db["Scenes"]:
        raise ApiBankError("The scene does not exist.")
    del bank.db["Scenes"][key]
    return "success"


@_api("TimedSwitch")
def _timed_switch(bank: ApiBank, name: str, time: str, on: bool):
    key = name.strip().lower()
    if not key:
        raise ApiBankError("Name cannot be empty.")
    t = _norm_time(time)
    entries = bank.db["TimeSwitch"].setdefault(key, [])
    for entry in entries:
        if entry["time"] == t:
            entry["on"] = on
            return "success"
    entries.append({"time": t, "on": on})
    return "success"


@_api("CancelTimedSwitch")
def _cancel_timed_switch(bank: ApiBank, name: str, time: str):
    key = name.strip().lower()
    if not key:
        raise ApiBankError("device_id cannot be empty.")
    entries = next((v for k, v in bank.db["TimeSwitch"].items() if k.lower() == key), None)
    if entries is None:
        raise ApiBankError("device_id does not exist.")
    t = _norm_time(time)
    for i, entry in enumerate(entries):
        if entry["time"] == t:
            del entries[i]
            return "success"
    raise ApiBankError("time does not exist.")


@_api("BookHotel")
def _book_hotel(bank: ApiBank, hotel_name: str, check_in_time: str, check_out_time: str, room_count: int, adult_count: int, child_count: int):
    check_in, check_out = _norm_time(check_in_time, "%Y-%m-%d"), _norm_time(check_out_time, "%Y-%m-%d")
    if check_in >= check_out:
        raise ApiBankError("The check-out time must be later than the check-in time.")
    order_id = bank._next_id("Hotel")
    bank.db["Hotel"][order_id] = {
        "hotel_name": hotel_name,
        "check_in_time": check_in,
        "check_out_time": check_out,
        "room_count": room_count,
        "adult_count": adult_count,
        "child_count": child_count,
    }
    return order_id


@_api("SendEmail")
def _send_email(bank: ApiBank, receiver: str, subject: str, content: str):
    bank.sent_emails.append({"receiver": receiver, "subject": subject, "content": content})
    return "success"


@_api("PlayMusic")
def _play_music(bank: ApiBank, music_name: str):
    return "music://" + music_name.strip().lower()


# ------------------------------------------------------------------------------------------
# knowledge and media look-ups


@_api("Calculator")
def _calculator(bank: ApiBank, formula: str):
    try:
        tree = ast.parse(formula.replace("×", "*").replace("÷", "/").strip(), mode="eval")
        return float(_calc(tree))
    except (SyntaxError, ZeroDivisionError, TypeError):
        raise ApiBankError("invalid formula") from None


@_api("GetToday")
def _get_today(bank: ApiBank):
    return bank.today


@_api("QueryHistoryToday")
def _query_history_today(bank: ApiBank, date: str):
    text = date.strip()
    key = text[-5:] if len(text) >= 5 else text
    history = _db("History")
    if key not in history:
        raise ApiBankError("The date is not in the database.")
    return [f"Title: {e['Title']}, Date: {e['Date']}, Description: {e['Description']}" for e in history[key]]


@_api("Wiki")
def _wiki(bank: ApiBank, keyword: str):
    table = _db("Wiki")
    key = keyword.strip().lower()
    if key not in table:
        raise ApiBankError(f"No Wikipedia page found for {keyword!r}.")
    return {"url": table[key]["url"], "summary": table[key]["summary"]}  # as recorded: no full content


@_api("SearchEngine")
def _search_engine(bank: ApiBank, keyword: str):
    index = _search_index()
    scores = index.scores(_TOKEN_RE.findall(keyword.lower().strip()))
    order = sorted(range(len(scores)), key=lambda i: -scores[i])[:2]
    return [dict(_db("SearchEngine")["raw_documents"][i]) for i in order]


@functools.lru_cache(maxsize=1)
def _search_index() -> _BM25:
    return _BM25(_db("SearchEngine")["tokenized_documents"])


@_api("DocumentQA")
def _document_qa(bank: ApiBank, url: str, question: str):
    for qa in _db("QuestionAnswering").get(url.strip(), []):
        if _same(qa["question"], question):
            return qa["answer"]
    return "The question is too difficult to answer."


@_api("ImageCaption")
def _image_caption(bank: ApiBank, url: str):
    caption = _captions().get(url.strip())
    if caption is None:
        raise ApiBankError("The image url is not in the database.")
    return caption


@functools.lru_cache(maxsize=1)
def _captions() -> dict[str, str]:
    return {e["url"]: e["caption"] for e in _db("ImageCaptioning")}


@_api("SpeechRecognition")
def _speech_recognition(bank: ApiBank, url: str):
    table = _db("SpeechRecognition")
    if url.strip() not in table:
        raise ApiBankError("The audio url is not in the database.")
    return table[url.strip()]


@_api("Dictionary")
def _dictionary(bank: ApiBank, keyword: str):
    found = _load_json("recorded.json")["Dictionary"].get(keyword.strip().lower())
    if found is None:
        raise ApiBankError(f"{keyword!r} is not in the offline dictionary (API-Bank called an online one).")
    return copy.deepcopy(found)


@_api("Translate")
def _translate(bank: ApiBank, src: str, src_lang=None, tgt_lang=None):
    key = json.dumps([src, src_lang or "auto", tgt_lang or "en"])
    found = _load_json("recorded.json")["Translate"].get(key)
    if found is None:
        raise ApiBankError("This text is not in the offline translation table (API-Bank called an online translator).")
    return found


__all__ = ["ApiBank", "ApiBankError", "api_specs", "DATA_DIR"]
