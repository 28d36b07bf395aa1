"""Held-out tool-use cases: tools, wordings and documents that no training record uses.

The default model learned tool calling on `training/configs/tool_data.py`'s families
(arithmetic expressions, day counts, unit conversion, orders, stock, servers). Here every tool
has a name and parameter names of its own, most in other domains (money, temperatures, flights,
a helpdesk, meeting rooms, parcels, weather, clocks, transit), and every request is written by
hand. Four kinds of case, each a single user message with 2 to 4 tools offered:

- `call`: the request needs one call; the ids, numbers and codes it needs are in the request,
  and units, scales and currencies are enums of the schema;
- `document`: the answer is in one of `DOCS` (fictional, so only retrieval can know it): the
  model should retrieve it with `[RQ]` and call nothing;
- `both`: a value from one of `DOCS` goes into a call: `[RQ]`, then the call with that value;
- `neither`: small talk and rewriting, some about a tool's domain: no call.

The tools offered beside the needed one are drawn by a generator seeded with the case id, so
the set is the same on every run.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from onegen_integrations.tools import ToolSpec

Kind = Literal["call", "document", "both", "neither"]
KINDS: tuple[Kind, ...] = ("call", "document", "both", "neither")


def _tool(name: str, description: str, properties: dict[str, Any]) -> ToolSpec:
    return ToolSpec(name, description, {"type": "object", "properties": properties, "required": list(properties)})


_NUMBER, _STRING = {"type": "number"}, {"type": "string"}
_CURRENCY = {"type": "string", "enum": ["EUR", "USD", "GBP", "JPY", "CHF", "SEK"], "description": "ISO 4217 code"}
_SCALE = {"type": "string", "enum": ["celsius", "fahrenheit", "kelvin"]}
_MOMENT = {"type": "string", "description": "YYYY-MM-DD HH:MM"}

TOOLS: dict[str, ToolSpec] = {
    tool.name: tool
    for tool in [
        _tool("convert_currency", "Convert an amount of money between currencies at today's rate.",
              {"amount": _NUMBER, "from_currency": _CURRENCY, "to_currency": _CURRENCY}),
        _tool("convert_temperature", "Convert a temperature from one scale to another.",
              {"degrees": _NUMBER, "from_scale": _SCALE, "to_scale": _SCALE}),
        _tool("percentage_of", "The given percentage of a total.", {"percent": _NUMBER, "total": _NUMBER}),
        _tool("sum_numbers", "Add up a list of numbers.", {"values": {"type": "array", "items": _NUMBER}}),
        _tool("raise_to_power", "A number raised to a power.", {"base": _NUMBER, "exponent": _NUMBER}),
        _tool("get_flight_status", "Live departure and arrival status of a flight.",
              {"flight_number": {**_STRING, "description": "airline code and number, e.g. VZ2210"}}),
        _tool("get_ticket", "Fetch a ticket from the IT helpdesk: its subject, state and assignee.",
              {"ticket_id": {**_STRING, "description": "e.g. HD-4127"}}),
        _tool("room_bookings", "The bookings of a meeting room on one day.",
              {"room": {"type": "string", "enum": ["Aster", "Birch", "Cedar", "Dahlia"]},
               "day": {**_STRING, "description": "YYYY-MM-DD"}}),
        _tool("get_parcel_location", "Where a parcel is now, by its tracking code.", {"tracking_code": _STRING}),
        _tool("hours_between", "The number of hours from one moment to another.", {"start": _MOMENT, "end": _MOMENT}),
        _tool("get_weather", "The current weather in a city.", {"city": _STRING}),
        _tool("get_local_time", "The current local time in a city.", {"city": _STRING}),
        _tool("next_departures", "The next buses and trams leaving a public-transport stop.", {"stop_name": _STRING}),
    ]
}
"""Every held-out tool by name."""

DOCS: dict[str, str] = {
    "ostrel-ferry": "The Ostrel Sound ferry runs between Kelby Quay and the island of Ostrel. The crossing takes "
                    "55 minutes, and a single adult fare costs 14 euros. Its ship, the MV Saltmarch, entered "
                    "service in 2011 and carries up to 320 passengers.",
    "quillon-hut": "The Quillon Glacier Hut is a mountain refuge at 2,870 metres, staffed from June to September. "
                   "In January the average temperature at the hut is -14 degrees Celsius. It sleeps 46 climbers "
                   "in two dormitories.",
    "marrowby-festival": "The Marrowby Cider Festival is held every October in the village of Marrowby. Entry "
                         "costs 18 pounds. The orchard keeper Tamsin Hulme started the festival in 1987 with six "
                         "barrels of cider.",
    "harlow-chess": "The Harlow Chess Club meets on Tuesday evenings in the old corn exchange. It has 240 members, "
                    "15 percent of whom are juniors under sixteen. Its strongest player, Ivo Brankov, became a "
                    "grandmaster in 2019.",
    "corvane-choir": "The Corvane Youth Choir is touring Canada this spring under its conductor, Mireille Santos. "
                     "The 38 singers fly out together on flight RW5581 and give their first concert in Halifax.",
    "ferndale-outage": "On 3 March the Ferndale office lost its network for most of the morning. The cause was a "
                       "failed switch in the basement cabinet. The outage is tracked in helpdesk ticket HD-5120, "
                       "and the replacement switch was sent by courier with tracking code QT88120455.",
    "velden-observatory": "The Velden Observatory's main telescope has a mirror 3.2 metres across. Its camera is "
                          "cooled and held at 283 kelvin, and the dome opens only on nights with less than 60 "
                          "percent humidity.",
    "rosewell-bakery": "Rosewell's Bakery on Pell Street was opened in 1962 by the brothers Anton and Felix "
                       "Rosewell. It bakes 600 loaves a day, and its rye loaf sells for 4.20 Swiss francs.",
    "greywater-orchards": "The Greywater Orchard Cooperative brings together 64 fruit growers along the Aune "
                          "valley. Last season they harvested 1850 tonnes of apples, and 12 percent of the harvest "
                          "was pressed into juice.",
    "brinmoor-relay": "The Brinmoor Relay is an overnight race of 24 teams across the Brinmoor hills. This year it "
                      "starts at 2025-05-17 18:00 and the last runners finish at 2025-05-18 09:00. The course "
                      "record belongs to the Hexham Harriers.",
    "lumen-library": "The Lumen Street Library lends up to 12 books at a time for three weeks. Late returns cost "
                     "30 cents a day, and its rare-books room opened in 1994.",
    "orla-feeney": "The composer Orla Feeney wrote the opera The Glass Orchard in 1958; it premiered in Cork and "
                   "runs for about three hours. Feeney taught harmony at the Limerick conservatory for 30 years.",
}
"""The held-out corpus: fictional documents, by id."""


@dataclass(frozen=True)
class ToolCase:
    """One request, the tools offered with it, and what a right answer does."""

    id: str
    kind: Kind
    request: str
    tools: tuple[ToolSpec, ...]
    tool: str | None = None
    """The tool the first call should name (None: the answer should call nothing)."""
    arguments: Mapping[str, Any] | None = None
    """The arguments that call should have."""
    gold: str | None = None
    """The document `[RQ]` should retrieve (None: none is needed)."""


_CALL: list[tuple[str, str, dict[str, Any]]] = [
    ("I'm paying 250 euros for the hotel. How much is that in US dollars?",
     "convert_currency", {"amount": 250, "from_currency": "EUR", "to_currency": "USD"}),
    ("My friend in Tokyo owes me 12000 yen; what would that come to in Swiss francs?",
     "convert_currency", {"amount": 12000, "from_currency": "JPY", "to_currency": "CHF"}),
    ("Exchange 80.50 GBP into SEK for me, please.",
     "convert_currency", {"amount": 80.5, "from_currency": "GBP", "to_currency": "SEK"}),
    ("How many euros do I get for 1000 Swedish kronor?",
     "convert_currency", {"amount": 1000, "from_currency": "SEK", "to_currency": "EUR"}),
    ("The recipe says to bake at 180 degrees Celsius. What's that on the Fahrenheit scale?",
     "convert_temperature", {"degrees": 180, "from_scale": "celsius", "to_scale": "fahrenheit"}),
    ("My thermometer shows 98.6 Fahrenheit; tell me the value in Celsius.",
     "convert_temperature", {"degrees": 98.6, "from_scale": "fahrenheit", "to_scale": "celsius"}),
    ("Express 300 kelvin in degrees Celsius.",
     "convert_temperature", {"degrees": 300, "from_scale": "kelvin", "to_scale": "celsius"}),
    ("A jacket costs 240 and is 15 percent off. How big is the discount?",
     "percentage_of", {"percent": 15, "total": 240}),
    ("Work out 7.5 percent of 1200.", "percentage_of", {"percent": 7.5, "total": 1200}),
    ("Our team has 95 people and 40 percent of them work remotely. How many people is that?",
     "percentage_of", {"percent": 40, "total": 95}),
    ("Give me the total of my receipts: 12.40, 7.85 and 23.10.", "sum_numbers", {"values": [12.4, 7.85, 23.1]}),
    ("What do 145, 290, 75 and 310 come to altogether?", "sum_numbers", {"values": [145, 290, 75, 310]}),
    ("Rainfall this week was 4, 0, 11, 2, 7, 0 and 3 millimetres. What's the weekly total?",
     "sum_numbers", {"values": [4, 0, 11, 2, 7, 0, 3]}),
    ("What is 3 to the power of 7?", "raise_to_power", {"base": 3, "exponent": 7}),
    ("Raise 1.05 to the 10th power.", "raise_to_power", {"base": 1.05, "exponent": 10}),
    ("Compute 2 raised to 16.", "raise_to_power", {"base": 2, "exponent": 16}),
    ("Is flight VZ2210 on time?", "get_flight_status", {"flight_number": "VZ2210"}),
    ("My sister lands on KQ417 tonight. Has it been delayed?", "get_flight_status", {"flight_number": "KQ417"}),
    ("Give me the latest on flight LX1839.", "get_flight_status", {"flight_number": "LX1839"}),
    ("Open helpdesk ticket HD-4127 and tell me who it's assigned to.", "get_ticket", {"ticket_id": "HD-4127"}),
    ("What's happening with my support ticket HD-0932?", "get_ticket", {"ticket_id": "HD-0932"}),
    ("Pull up ticket HD-7710, please.", "get_ticket", {"ticket_id": "HD-7710"}),
    ("Is the Cedar room free on 2025-06-12?", "room_bookings", {"room": "Cedar", "day": "2025-06-12"}),
    ("Who has booked Aster on 2025-03-04?", "room_bookings", {"room": "Aster", "day": "2025-03-04"}),
    ("Show me the bookings for room Dahlia on 2025-11-20.", "room_bookings", {"room": "Dahlia", "day": "2025-11-20"}),
    ("Track parcel PX7730012 for me.", "get_parcel_location", {"tracking_code": "PX7730012"}),
    ("The courier gave me the code NL55821930. Where is the package now?",
     "get_parcel_location", {"tracking_code": "NL55821930"}),
    ("Which city is parcel ZB40917Q in at the moment?", "get_parcel_location", {"tracking_code": "ZB40917Q"}),
    ("How many hours are there from 2025-04-02 08:00 to 2025-04-03 14:30?",
     "hours_between", {"start": "2025-04-02 08:00", "end": "2025-04-03 14:30"}),
    ("My shift started at 2025-01-15 22:00 and ended at 2025-01-16 06:45. How long was it in hours?",
     "hours_between", {"start": "2025-01-15 22:00", "end": "2025-01-16 06:45"}),
    ("I set off at 2025-09-30 12:00 and arrived at 2025-10-02 09:15. How many hours was I travelling?",
     "hours_between", {"start": "2025-09-30 12:00", "end": "2025-10-02 09:15"}),
    ("Do I need an umbrella in Lisbon today?", "get_weather", {"city": "Lisbon"}),
    ("What's the weather like in Reykjavik right now?", "get_weather", {"city": "Reykjavik"}),
    ("How windy is it in Wellington at the moment?", "get_weather", {"city": "Wellington"}),
    ("What time is it in Tokyo now?", "get_local_time", {"city": "Tokyo"}),
    ("Is it still morning in Buenos Aires?", "get_local_time", {"city": "Buenos Aires"}),
    ("Tell me the current local time in Nairobi.", "get_local_time", {"city": "Nairobi"}),
    ("When does the next tram leave from Harbour Square?", "next_departures", {"stop_name": "Harbour Square"}),
    ("Which buses are leaving from Elm Street soon?", "next_departures", {"stop_name": "Elm Street"}),
    ("I'm at the Central Station stop. What departs next?", "next_departures", {"stop_name": "Central Station"}),
]
"""(request, tool, arguments): the request needs exactly this call."""

_DOCUMENT: list[tuple[str, str, tuple[str, ...]]] = [
    ("How long does the Ostrel Sound ferry crossing take?", "ostrel-ferry", ("next_departures",)),
    ("How many passengers can the MV Saltmarch carry?", "ostrel-ferry", ()),
    ("At what altitude is the Quillon Glacier Hut?", "quillon-hut", ("get_weather",)),
    ("Who started the Marrowby Cider Festival?", "marrowby-festival", ()),
    ("When did Ivo Brankov become a grandmaster?", "harlow-chess", ()),
    ("Who conducts the Corvane Youth Choir?", "corvane-choir", ("get_flight_status",)),
    ("What caused the network outage at the Ferndale office?", "ferndale-outage", ("get_ticket",)),
    ("How wide is the mirror of the Velden Observatory's main telescope?", "velden-observatory", ()),
    ("Which brothers opened Rosewell's Bakery?", "rosewell-bakery", ()),
    ("How many growers belong to the Greywater Orchard Cooperative?", "greywater-orchards", ("sum_numbers",)),
    ("Which team holds the Brinmoor Relay course record?", "brinmoor-relay", ("hours_between",)),
    ("How many books can I borrow at once from the Lumen Street Library?", "lumen-library", ()),
    ("What is the late fee at the Lumen Street Library?", "lumen-library", ("convert_currency",)),
    ("Which opera did Orla Feeney write?", "orla-feeney", ()),
    ("In which city did The Glass Orchard premiere?", "orla-feeney", ("get_local_time",)),
]
"""(request, gold document, tools that must be offered as temptations)."""

_BOTH: list[tuple[str, str, str, dict[str, Any]]] = [
    ("What does a single adult ticket on the Ostrel Sound ferry cost in US dollars?", "ostrel-ferry",
     "convert_currency", {"amount": 14, "from_currency": "EUR", "to_currency": "USD"}),
    ("What is the Quillon Glacier Hut's average January temperature in Fahrenheit?", "quillon-hut",
     "convert_temperature", {"degrees": -14, "from_scale": "celsius", "to_scale": "fahrenheit"}),
    ("How much is entry to the Marrowby Cider Festival in euros?", "marrowby-festival",
     "convert_currency", {"amount": 18, "from_currency": "GBP", "to_currency": "EUR"}),
    ("How many junior members does the Harlow Chess Club have?", "harlow-chess",
     "percentage_of", {"percent": 15, "total": 240}),
    ("Is the Corvane Youth Choir's flight to Canada on time?", "corvane-choir",
     "get_flight_status", {"flight_number": "RW5581"}),
    ("Pull up the helpdesk ticket about the Ferndale network outage.", "ferndale-outage",
     "get_ticket", {"ticket_id": "HD-5120"}),
    ("Where is the replacement switch for the Ferndale office right now?", "ferndale-outage",
     "get_parcel_location", {"tracking_code": "QT88120455"}),
    ("At what temperature in Celsius is the Velden Observatory's camera held?", "velden-observatory",
     "convert_temperature", {"degrees": 283, "from_scale": "kelvin", "to_scale": "celsius"}),
    ("What does the rye loaf at Rosewell's Bakery cost in euros?", "rosewell-bakery",
     "convert_currency", {"amount": 4.2, "from_currency": "CHF", "to_currency": "EUR"}),
    ("How many tonnes of the Greywater cooperative's apple harvest went into juice?", "greywater-orchards",
     "percentage_of", {"percent": 12, "total": 1850}),
    ("How many hours does this year's Brinmoor Relay last?", "brinmoor-relay",
     "hours_between", {"start": "2025-05-17 18:00", "end": "2025-05-18 09:00"}),
]
"""(request, gold document, tool, arguments): the call takes a value only the document gives."""

_NEITHER: list[tuple[str, tuple[str, ...]]] = [
    ("Hi! Hope your day is going well.", ()),
    ("Thanks, that's exactly what I needed.", ()),
    ("Rewrite this more politely: give me the report by Friday.", ()),
    ("Write a haiku about autumn leaves.", ("get_weather",)),
    ("What's a good name for a black cat?", ()),
    ("Make this sentence shorter: due to the fact that it was raining, we decided to stay at home.", ()),
    ("Give me an antonym of 'generous'.", ()),
    ("Suggest a title for my blog post about houseplants.", ()),
    ("Put these words in alphabetical order: pear, apple, mango.", ("sum_numbers",)),
    ("Write a one-sentence apology for a parcel that arrived late.", ("get_parcel_location",)),
    ("Wish my colleague a good flight in a cheerful way.", ("get_flight_status",)),
    ("What does the word 'itinerary' mean?", ("next_departures",)),
    ("Turn this into a question: the meeting room is booked.", ("room_bookings",)),
    ("Tell me a short joke about the weather.", ("get_weather",)),
    ("Goodbye, and have a nice evening!", ("get_local_time",)),
]
"""(request, tools that must be offered as temptations): answered without a call or a document."""


def _offer(case_id: str, needed: Sequence[str]) -> tuple[ToolSpec, ...]:
    """`needed` and other tools, 2 to 4 in all, in an order fixed by `case_id`."""
    rng = random.Random(case_id)
    others = [name for name in TOOLS if name not in needed]
    names = [*needed, *rng.sample(others, max(rng.randint(2, 4) - len(needed), 0))]
    rng.shuffle(names)
    return tuple(TOOLS[name] for name in names)


def _build() -> tuple[ToolCase, ...]:
    cases = [ToolCase(f"call-{i:02d}", "call", request, _offer(f"call-{i:02d}", [tool]), tool, arguments)
             for i, (request, tool, arguments) in enumerate(_CALL, 1)]
    cases += [ToolCase(f"document-{i:02d}", "document", request, _offer(f"document-{i:02d}", tempting), gold=gold)
              for i, (request, gold, tempting) in enumerate(_DOCUMENT, 1)]
    cases += [ToolCase(f"both-{i:02d}", "both", request, _offer(f"both-{i:02d}", [tool]), tool, arguments, gold)
              for i, (request, gold, tool, arguments) in enumerate(_BOTH, 1)]
    cases += [ToolCase(f"neither-{i:02d}", "neither", request, _offer(f"neither-{i:02d}", tempting))
              for i, (request, tempting) in enumerate(_NEITHER, 1)]
    return tuple(cases)


CASES = _build()
"""The held-out set: 40 `call`, 15 `document`, 11 `both` and 15 `neither` cases."""


def held_out_cases(limit: int | None = None) -> list[ToolCase]:
    """The first `limit` cases (all by default), taken in turn from each kind so that a short
    run still covers all four."""
    queues = [[c for c in CASES if c.kind == kind] for kind in KINDS]
    ordered = [queue[i] for i in range(max(map(len, queues))) for queue in queues if i < len(queue)]
    return ordered[:limit]
