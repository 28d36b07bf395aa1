"""Tool-use training data for the shipped default (`training/configs/smollm2-135m-lora-tools.yaml`).

`python training/configs/tool_data.py` (after `default_data.py`, whose records it mixes in)
writes `data/tools/{docs,train}.jsonl`: dialogues in the format of
`onegen_integrations.tools`, the tools offered in each record's system prompt, over four
families of tools, each under several names and descriptions so that the model reads the
schema instead of memorising one:

- arithmetic (an expression), dates (days between two dates, a date plus days, a weekday),
  unit conversion (value, from, to), and lookups of a fictional live system (orders, stock,
  servers), whose results are made up here;
- when to call: the request needs a tool → one call, its result as the next user turn, an
  answer that uses the result; a follow-up that needs the history ("and order B-2?", "now
  add 58 to that") calls again with the new arguments;
- when not to: small talk and thanks, and the `general-*` records of `general_data.py` (everyday
  requests with the base model's own answers; arithmetic ones with no calculator offered), with
  tools offered, answered directly;
- when to retrieve instead: SQuAD and fictional-entity records of `data/default/train.jsonl`
  with random tools offered keep `[RQ]` and no call;
- when to do both: facts of fictional landmarks that a tool must convert (`[RQ]`, then a call
  with the retrieved number or date), over documents written here.

On top, `REPLAY` records of `data/default/train.jsonl` as they are, so retrieval keeps being
trained. The held-out evaluation (`onegen_evaluation.tool_cases`) uses other tools and other
wordings. Numbers, names and dates are drawn from a seeded generator.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from onegen_integrations.tools import ToolCall, calls_text, result_text

SOURCE, OUT = Path("data/default"), Path("data/tools")
GENERAL = "general-"
"""Id prefix of the no-retrieval records `general_data.py` adds to `SOURCE`."""
SEED = 1
COUNTS = {"call": 900, "follow_up": 300, "chat": 200, "general": 300, "retrieve": 350, "both": 250, "replay": 600}
"""Records of each kind."""

Args = dict[str, Any]
Case = tuple[str, Args, Any, str]
"""A request, the call's arguments, the tool's result, and the answer that uses it."""


def _schema(name: str, description: str, properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    parameters = {"type": "object", "properties": properties, "required": required or list(properties)}
    return {"type": "function", "function": {"name": name, "description": description, "parameters": parameters}}


def _number(value: float) -> str:
    return f"{value:,.2f}".rstrip("0").rstrip(".") if value != int(value) else f"{int(value):,}"


# ---- the tools -----------------------------------------------------------------------------------
_STR = {"type": "string"}
UNITS = {"km": "kilometres", "mi": "miles", "m": "metres", "ft": "feet", "kg": "kilograms", "lb": "pounds",
         "l": "litres", "gal": "gallons"}
_FACTORS = {"km": 1000.0, "mi": 1609.344, "m": 1.0, "ft": 0.3048, "kg": 1.0, "lb": 0.45359237, "l": 1.0, "gal": 3.785411784}
_PAIRS = [("km", "mi"), ("mi", "km"), ("m", "ft"), ("ft", "m"), ("kg", "lb"), ("lb", "kg"), ("l", "gal"), ("gal", "l")]

FAMILIES: dict[str, list[dict[str, Any]]] = {
    "calc": [
        _schema(name, description, {"expression": {**_STR, "description": "an arithmetic expression, e.g. 12 * (3 + 4)"}})
        for name, description in [("calculate", "Evaluate an arithmetic expression."),
                                  ("calculator", "A calculator: returns the value of an arithmetic expression."),
                                  ("evaluate_expression", "Compute the result of a math expression exactly.")]
    ],
    "days_between": [
        _schema(name, "Count the days from one date to another.",
                {start: {**_STR, "description": "first date, YYYY-MM-DD"}, end: {**_STR, "description": "second date, YYYY-MM-DD"}})
        for name, start, end in [("days_between", "start_date", "end_date"), ("count_days", "from_date", "to_date")]
    ],
    "add_days": [
        _schema(name, "The date a number of days after (or before, if negative) a date.",
                {"date": {**_STR, "description": "YYYY-MM-DD"}, "days": {"type": "integer"}})
        for name in ("add_days", "shift_date")
    ],
    "weekday": [
        _schema(name, "The day of the week of a date.", {"date": {**_STR, "description": "YYYY-MM-DD"}})
        for name in ("day_of_week", "weekday_of")
    ],
    "convert": [
        _schema(name, description, {"value": {"type": "number"},
                                    "from_unit": {**_STR, "enum": list(UNITS)}, "to_unit": {**_STR, "enum": list(UNITS)}})
        for name, description in [("convert_units", "Convert a quantity from one unit to another."),
                                  ("unit_converter", "Converts lengths, weights and volumes between units.")]
    ],
    "order": [
        _schema(name, "Look up an order in the shop's order system: its status and delivery date.",
                {"order_id": {**_STR, "description": "an order number such as A-10422"}})
        for name in ("get_order_status", "lookup_order")
    ],
    "stock": [
        _schema(name, "How many units of a product a warehouse holds right now.",
                {"product": _STR, "warehouse": {**_STR, "enum": ["north", "south", "harbour", "central"]}})
        for name in ("check_stock", "stock_level")
    ],
    "server": [
        _schema(name, "The live status of a server in the data centre.", {"hostname": _STR})
        for name in ("get_server_status", "server_health")
    ],
}


def _arguments(schema: dict[str, Any], *values: Any) -> Args:
    """`values` under the schema's parameter names, in order."""
    return dict(zip(schema["function"]["parameters"]["properties"], values))


# ---- cases: (request, arguments, result, answer) per family ---------------------------------------
def _calc(rng: random.Random, schema: dict[str, Any]) -> Case:
    a, b, c = rng.randint(12, 999), rng.randint(3, 99), rng.randint(2, 60)
    forms = [(f"What is {a} times {b}?", f"{a} * {b}", a * b, "{a} times {b} is {r}."),
             (f"Calculate {a} + {b} * {c}.", f"{a} + {b} * {c}", a + b * c, "{a} + {b} * {c} = {r}."),
             (f"How much is {a * b} divided by {b}?", f"{a * b} / {b}", a, "{ab} divided by {b} is {r}."),
             (f"What's {c}% of {a}?", f"{a} * {c} / 100", a * c / 100, "{c}% of {a} is {r}."),
             (f"If I have {a} items and sell {b}, how many are left?", f"{a} - {b}", a - b, "You have {r} left."),
             (f"Please add {a}, {b} and {c}.", f"{a} + {b} + {c}", a + b + c, "The sum is {r}."),
             (f"What is ({a} - {b}) * {c}?", f"({a} - {b}) * {c}", (a - b) * c, "({a} - {b}) * {c} = {r}.")]
    request, expression, value, answer = rng.choice(forms)
    r = _number(value)
    return request, _arguments(schema, expression), r, answer.format(a=a, b=b, c=c, ab=a * b, r=r)


def _date(rng: random.Random) -> dt.date:
    return dt.date(2020, 1, 1) + dt.timedelta(days=rng.randint(0, 3000))


def _spoken(day: dt.date, rng: random.Random) -> str:
    return day.isoformat() if rng.random() < 0.6 else f"{day:%B} {day.day}, {day.year}"


def _days_between(rng: random.Random, schema: dict[str, Any]) -> Case:
    first, second = sorted([_date(rng), _date(rng)])
    days = (second - first).days
    request = rng.choice(["How many days are there between {a} and {b}?", "Count the days from {a} to {b}.",
                          "How many days passed from {a} until {b}?"]).format(a=_spoken(first, rng), b=_spoken(second, rng))
    return request, _arguments(schema, first.isoformat(), second.isoformat()), days, f"There are {days:,} days between them."


def _add_days(rng: random.Random, schema: dict[str, Any]) -> Case:
    start, days = _date(rng), rng.choice([rng.randint(2, 400), -rng.randint(2, 200)])
    end = start + dt.timedelta(days=days)
    if days > 0:
        request = rng.choice(["What date is {n} days after {d}?", "Which date comes {n} days after {d}?"])
    else:
        request = rng.choice(["What date was {n} days before {d}?", "Which date is {n} days earlier than {d}?"])
    request = request.format(n=abs(days), d=_spoken(start, rng))
    return request, _arguments(schema, start.isoformat(), days), end.isoformat(), f"It is {end:%B} {end.day}, {end.year}."


def _weekday(rng: random.Random, schema: dict[str, Any]) -> Case:
    day = _date(rng)
    request = rng.choice(["What day of the week was {d}?", "Which weekday is {d}?", "On what day of the week does {d} fall?"])
    name = f"{day:%A}"
    return request.format(d=_spoken(day, rng)), _arguments(schema, day.isoformat()), name, f"{_spoken(day, rng)} is a {name}."


def _convert(rng: random.Random, schema: dict[str, Any], value: float | None = None, pair: tuple[str, str] | None = None) -> Case:
    source, target = pair or rng.choice(_PAIRS)
    value = value if value is not None else rng.choice([rng.randint(2, 500), round(rng.uniform(0.5, 99), 1)])
    result = _number(round(value * _FACTORS[source] / _FACTORS[target], 2))
    request = rng.choice(["How many {t} is {v} {s}?", "Convert {v} {s} to {t}.", "What is {v} {s} in {t}?",
                          "{v} {s} is how many {t}?"]).format(v=_number(value), s=UNITS[source], t=UNITS[target])
    answer = f"{_number(value)} {UNITS[source]} is about {result} {UNITS[target]}."
    return request, _arguments(schema, value, source, target), result, answer


def _order_id(rng: random.Random) -> str:
    return f"{rng.choice('ABCDKMRT')}-{rng.randint(10000, 99999)}"


def _order(rng: random.Random, schema: dict[str, Any], order: str | None = None) -> Case:
    order = order or _order_id(rng)
    status = rng.choice(["shipped", "packed", "delayed", "delivered", "awaiting payment"])
    day = _date(rng)
    result = json.dumps({"order_id": order, "status": status, "delivery_date": day.isoformat()})
    request = rng.choice(["Where is my order {o}?", "What's the status of order {o}?", "Has order {o} shipped yet?",
                          "Can you check order {o} for me?"]).format(o=order)
    return request, _arguments(schema, order), result, f"Order {order} is {status}; delivery is due on {day:%B} {day.day}, {day.year}."


_PRODUCTS = "blue kettle|oak desk|steel bolts|garden hose|desk lamp|wool blanket|printer paper|bike helmet".split("|")


def _stock(rng: random.Random, schema: dict[str, Any]) -> Case:
    product, warehouse, count = rng.choice(_PRODUCTS), rng.choice(["north", "south", "harbour", "central"]), rng.randint(0, 900)
    request = rng.choice(["How many {p} units are in the {w} warehouse?", "Do we have any {p} left in the {w} warehouse?",
                          "Check the stock of {p} at the {w} warehouse."]).format(p=product, w=warehouse)
    answer = f"The {warehouse} warehouse has {count} {product} units." if count else f"The {warehouse} warehouse has no {product} left."
    return request, _arguments(schema, product, warehouse), json.dumps({"units": count}), answer


def _server(rng: random.Random, schema: dict[str, Any], host: str | None = None) -> Case:
    host = host or f"{rng.choice(['db', 'web', 'cache', 'mail', 'build'])}-{rng.randint(1, 40):02d}"
    status, load = rng.choice(["up", "down", "degraded"]), rng.randint(3, 99)
    request = rng.choice(["Is server {h} up?", "What's the status of {h}?", "Check how {h} is doing."]).format(h=host)
    answer = f"{host} is {status}, at {load}% load." if status != "down" else f"{host} is down."
    return request, _arguments(schema, host), json.dumps({"hostname": host, "status": status, "load_percent": load}), answer


CASES: dict[str, Callable[..., Case]] = {
    "calc": _calc, "days_between": _days_between, "add_days": _add_days, "weekday": _weekday,
    "convert": _convert, "order": _order, "stock": _stock, "server": _server,
}


# ---- records ----------------------------------------------------------------------------------
def _offer(rng: random.Random, needed: dict[str, Any] | None = None, extra: int | None = None) -> list[dict[str, Any]]:
    """`needed` (if any) and `extra` schemas of other families, in random order."""
    families = [f for f in FAMILIES if needed is None or needed not in FAMILIES[f]]
    extra = rng.randint(0 if needed else 1, 3) if extra is None else extra
    tools = [rng.choice(FAMILIES[f]) for f in rng.sample(families, extra)] + ([needed] if needed else [])
    rng.shuffle(tools)
    return tools


def _exchange(case: Case, schema: dict[str, Any]) -> list[dict]:
    """A request, the call, its result as the next user turn, and the answer."""
    request, arguments, result, answer = case
    name = schema["function"]["name"]
    call = calls_text("", [ToolCall(name, arguments)])
    return [{"role": "user", "content": request}, {"role": "assistant", "content": call},
            {"role": "user", "content": result_text(str(result), name)}, {"role": "assistant", "content": answer}]


def _call_record(rng: random.Random, index: int) -> dict:
    family = rng.choice(list(CASES))
    schema = rng.choice(FAMILIES[family])
    return {"id": f"tool-call-{index}", "tools": _offer(rng, schema), "messages": _exchange(CASES[family](rng, schema), schema)}


def _follow_up_record(rng: random.Random, index: int) -> dict:
    """A call, then a follow-up that only the history makes complete."""
    family = rng.choice(["calc", "convert", "order", "server"])
    schema = rng.choice(FAMILIES[family])
    first = CASES[family](rng, schema)
    messages = _exchange(first, schema)
    if family == "calc":
        add = rng.randint(2, 99)
        value = float(first[2].replace(",", ""))
        r = _number(value + add)
        request = rng.choice(["Now add {n} to that.", "And if I add {n} to it?", "Add {n} to the result."]).format(n=add)
        second: Case = (request, _arguments(schema, f"{first[2].replace(',', '')} + {add}"), r, f"That makes {r}.")
    elif family == "convert":
        source, target = (first[1][k] for k in list(first[1])[1:])
        value = rng.randint(2, 500)
        second = _convert(rng, schema, value, (source, target))
        second = (rng.choice(["What about {v}?", "And {v} {s}?", "Now do {v}."]).format(v=value, s=UNITS[source]), *second[1:])
    elif family == "order":
        other = _order_id(rng)
        second = _order(rng, schema, other)
        second = (rng.choice(["And order {o}?", "What about {o}?", "Check {o} too."]).format(o=other), *second[1:])
    else:
        other = f"{rng.choice(['db', 'web', 'cache'])}-{rng.randint(41, 80):02d}"
        second = _server(rng, schema, other)
        second = (rng.choice(["And {h}?", "What about {h}?"]).format(h=other), *second[1:])
    messages += _exchange(second, schema)
    if rng.random() < 0.3:
        messages += [{"role": "user", "content": rng.choice(["Thanks!", "Great, thank you.", "Perfect, thanks."])},
                     {"role": "assistant", "content": rng.choice(["You're welcome!", "Glad to help!"])}]
    return {"id": f"tool-follow-up-{index}", "tools": _offer(rng, schema), "messages": messages}


_CHAT = [("Hi there!", "Hello! How can I help you today?"), ("Hello", "Hello! What can I do for you?"),
         ("Good morning!", "Good morning! How can I help?"), ("Thanks!", "You're welcome!"),
         ("Thank you so much.", "You're welcome, happy to help!"), ("Bye!", "Goodbye! Have a nice day."),
         ("How are you?", "I'm doing well, thank you! How can I help you?"),
         ("Say hello in French.", "Bonjour!"), ("What is the opposite of hot?", "Cold."),
         ("Give me a synonym for happy.", "Joyful."), ("What is the plural of mouse?", "Mice."),
         ("Translate 'thank you' into Spanish.", "Gracias."), ("Write a one-line greeting for a birthday card.",
                                                                "Happy birthday, and all the best for the year ahead!")]


def _chat_record(rng: random.Random, index: int) -> dict:
    tools = _offer(rng)
    request, answer = rng.choice([*_CHAT, ("What can you do?", None)])
    if answer is None:
        names = ", ".join(t["function"]["name"] for t in tools)
        answer = f"I can answer questions from the documents I retrieve, and use these tools: {names}."
    return {"id": f"tool-chat-{index}", "tools": tools, "messages": [{"role": "user", "content": request}, {"role": "assistant", "content": answer}]}


_ARITHMETIC = re.compile(r"\b(plus|minus|how many)\b", re.IGNORECASE)


def _general_record(rng: random.Random, record: dict) -> dict:
    """A `general_data.py` record with tools offered; a calculator only where it has no use."""
    tools = _offer(rng)
    while _ARITHMETIC.search(record["messages"][0]["content"]) and any(t in FAMILIES["calc"] for t in tools):
        tools = _offer(rng)
    return {**record, "id": f"tool-{record['id']}", "tools": tools}


# ---- fictional landmarks: facts to retrieve, then convert ---------------------------------------
_SYLLABLES = "bar cel dor fen gal hal ket lor mer nor pel quin ros sel tal ven wor zel".split()


def _landmarks(rng: random.Random, count: int) -> dict[str, dict[str, Any]]:
    names: dict[str, dict[str, Any]] = {}
    while len(names) < count:
        stem = "".join(rng.sample(_SYLLABLES, 2)).capitalize()
        kind = rng.choice(["Bridge", "Tower", "Dam", "Lighthouse", "Viaduct"])
        name = f"{stem} {kind}"
        if name in names:
            continue
        length, opened = rng.randint(40, 2400), _date(rng) - dt.timedelta(days=365 * rng.randint(20, 120))
        weight = rng.randint(200, 90000)
        text = (f"The {name} stands near the town of {rng.choice(_SYLLABLES).capitalize()}ford. It is {length} metres "
                f"long and was opened on {opened:%B} {opened.day}, {opened.year}. Its steel frame weighs {weight} kilograms.")
        names[name] = {"id": f"{stem.lower()}-{kind.lower()}-tool", "text": text, "length": length, "opened": opened, "weight": weight}
    return names


def _both_record(rng: random.Random, index: int, landmarks: dict[str, dict[str, Any]]) -> dict:
    name, fact = rng.choice(list(landmarks.items()))
    negative = rng.choice([v["id"] for k, v in landmarks.items() if k != name])
    family = rng.choice(["convert", "convert", "weekday"])
    schema = rng.choice(FAMILIES[family])
    if family == "convert":
        value, pair, what = (fact["length"], ("m", "ft"), "long") if rng.random() < 0.6 else (fact["weight"], ("kg", "lb"), "heavy")
        _, arguments, result, _ = _convert(rng, schema, value, pair)
        request = (f"How long is the {name} in feet?" if what == "long" else f"How many pounds does the {name}'s frame weigh?")
        answer = f"The {name} is {_number(value)} metres long, about {result} feet." if what == "long" else \
            f"Its frame weighs {_number(value)} kilograms, about {result} pounds."
    else:
        opened = fact["opened"]
        arguments, result = _arguments(schema, opened.isoformat()), f"{opened:%A}"
        request = f"On which day of the week was the {name} opened?"
        answer = f"The {name} opened on a {result}, {opened:%B} {opened.day}, {opened.year}."
    call_name = schema["function"]["name"]
    messages = [{"role": "user", "content": request},
                {"role": "assistant", "content": "[RQ] " + ToolCall(call_name, arguments).text(),
                 "retrievals": [{"positives": [fact["id"]], "negatives": [negative]}]},
                {"role": "user", "content": result_text(str(result), call_name)}, {"role": "assistant", "content": answer}]
    return {"id": f"tool-both-{index}", "group": f"tool-both-{index}", "tools": _offer(rng, schema), "messages": messages}


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _write(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def main() -> None:
    rng = random.Random(SEED)
    OUT.mkdir(parents=True, exist_ok=True)
    landmarks = _landmarks(rng, 160)
    source = _read(SOURCE / "train.jsonl")
    rng.shuffle(source)
    general = [r for r in source if r["id"].startswith(GENERAL)]
    source = [r for r in source if not r["id"].startswith(GENERAL)]
    if len(general) < COUNTS["general"]:
        raise SystemExit(f"{SOURCE / 'train.jsonl'} has {len(general)} general-* records, {COUNTS['general']} needed: "
                         "run training/configs/general_data.py first")
    retrieve = [{**r, "id": f"tool-retrieve-{r['id']}", "tools": _offer(rng)} for r in source[: COUNTS["retrieve"]]]
    replay = source[COUNTS["retrieve"] : COUNTS["retrieve"] + COUNTS["replay"]]
    kinds = [(_call_record, "call"), (_follow_up_record, "follow_up"), (_chat_record, "chat")]
    records = [make(rng, i) for make, kind in kinds for i in range(COUNTS[kind])]
    records += [_both_record(rng, i, landmarks) for i in range(COUNTS["both"])]
    records += [_general_record(rng, r) for r in general[: COUNTS["general"]]]
    records += retrieve + replay
    rng.shuffle(records)
    docs = _read(SOURCE / "docs.jsonl") + [{"id": v["id"], "text": v["text"]} for v in landmarks.values()]
    _write(OUT / "docs.jsonl", docs)
    _write(OUT / "train.jsonl", records)
    print(json.dumps({"docs": len(docs), "train": len(records), **COUNTS}))


if __name__ == "__main__":
    main()
