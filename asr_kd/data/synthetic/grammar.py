"""Sentences of the voice-assistant command domain, drawn from a small template grammar.

A template is a string with ``{slot}`` fields; each slot is a word list or a function of the random
generator (numbers, times, dates). Transcripts are lowercase words exactly as espeak-ng speaks
them, so labels need no further normalisation. The domain has a few hundred distinct words: small
enough that a Conformer learns it within minutes on a CPU, varied enough that test sentences are
new sentences, not replays of training ones.
"""

from __future__ import annotations

import random
from collections.abc import Callable

__all__ = ["command_sentence", "number_words", "command_vocabulary"]

_ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen " \
    "fifteen sixteen seventeen eighteen nineteen".split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_ORDINALS = {
    "one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
    "nine": "ninth", "twelve": "twelfth", "twenty": "twentieth", "thirty": "thirtieth",
}


def number_words(n: int) -> str:
    """``n`` (0..999) in words: 42 -> 'forty two', 305 -> 'three hundred five'."""
    if not 0 <= n < 1000:
        raise ValueError(f"number_words handles 0..999, got {n}")
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + (f" {_ONES[ones]}" if ones else "")
    hundreds, rest = divmod(n, 100)
    return f"{_ONES[hundreds]} hundred" + (f" {number_words(rest)}" if rest else "")


def _ordinal_words(n: int) -> str:
    words = number_words(n).split()
    last = words[-1]
    words[-1] = _ORDINALS.get(last, last[:-1] + "ieth" if last.endswith("y") else last + "th")
    return " ".join(words)


def _time(rng: random.Random) -> str:
    hour = number_words(rng.randint(1, 12))
    minute = rng.choice([0, 5, 10, 15, 20, 25, 30, 40, 45, 50, 55, rng.randint(1, 59)])
    style = rng.random()
    if style < 0.2:
        clock = f"{hour} o'clock"
    elif style < 0.35:
        clock = rng.choice([f"half past {hour}", f"quarter past {hour}", f"quarter to {hour}"])
    elif minute == 0:
        clock = hour
    else:
        clock = f"{hour} {'oh ' if minute < 10 else ''}{number_words(minute)}"
    part = rng.choice(["", "", " in the morning", " in the afternoon", " in the evening", " tonight"])
    return rng.choice(["noon", "midnight"]) if rng.random() < 0.04 else clock + part


def _date(rng: random.Random) -> str:
    style = rng.random()
    if style < 0.3:
        return rng.choice(["today", "tomorrow", "tonight", "this weekend", "next week"])
    if style < 0.55:
        return rng.choice(["", "next ", "this "]) + rng.choice(_WEEKDAYS)
    day = _ordinal_words(rng.randint(1, 31))
    month = rng.choice(_MONTHS)
    return f"{month} {day}" if rng.random() < 0.5 else f"the {day} of {month}"


def _number(lo: int, hi: int) -> Callable[[random.Random], str]:
    return lambda rng: number_words(rng.randint(lo, hi))


_WEEKDAYS = "monday tuesday wednesday thursday friday saturday sunday".split()
_MONTHS = "january february march april may june july august september october november december".split()
_FIRST = ("anna ben carlos diana emma felix grace henry isabel jack julia kevin laura maria noah olivia "
          "peter rachel sam sofia thomas victor william zoe mom dad").split()
_LAST = "brown garcia johnson kim lee miller nguyen patel smith taylor walker wilson".split()
_SLOTS: dict[str, list[str] | Callable[[random.Random], str]] = {
    "name": lambda rng: rng.choice(_FIRST) + (f" {rng.choice(_LAST)}" if rng.random() < 0.3 else ""),
    "time": _time,
    "date": _date,
    "minutes": _number(1, 90),
    "degrees": _number(55, 85),
    "percent": lambda rng: number_words(rng.choice(range(0, 101, 5))),
    "count": _number(2, 12),
    "city": ("london paris tokyo berlin madrid chicago boston seattle denver austin dallas miami toronto "
             "sydney dublin rome vienna prague lisbon oslo").split(),
    "room": ["kitchen", "bedroom", "living room", "bathroom", "garage", "office", "hallway", "basement",
             "garden"],
    "device": ["lights", "lamp", "fan", "heater", "air conditioner", "television", "radio", "coffee maker",
               "dishwasher", "washing machine", "oven", "speaker"],
    "genre": "jazz rock pop classical blues country reggae folk soul piano".split(),
    "artist": ["the beatles", "adele", "miles davis", "taylor swift", "bob marley", "queen", "nina simone",
               "elton john", "coldplay", "frank sinatra"],
    "item": ["milk", "eggs", "bread", "butter", "apples", "bananas", "coffee", "rice", "pasta", "cheese",
             "tomatoes", "onions", "chicken", "orange juice", "paper towels", "dish soap"],
    "task": ["call the dentist", "water the plants", "pay the rent", "take out the trash", "feed the cat",
             "buy a birthday present", "pick up the kids", "book a table", "charge my phone",
             "return the library books", "walk the dog", "check the mail"],
    "place": ["the airport", "the train station", "the nearest gas station", "the hospital", "the office",
              "the nearest pharmacy", "the museum", "the beach", "the city center", "the post office"],
    "app": "email calendar camera maps music notes photos settings weather messages".split(),
    "onoff": ["on", "off"],
    "unit": ["miles", "kilometers", "pounds", "kilograms", "cups", "liters", "feet", "meters", "ounces"],
    "message": ["i am running late", "see you soon", "call me back", "i will be home for dinner",
                "happy birthday", "thanks for the help", "on my way", "where are you",
                "the meeting is moved", "do not forget the keys"],
    "direction": ["up", "down"],
}

_TEMPLATES = [
    "set an alarm for {time}",
    "wake me up at {time} {date}",
    "set a timer for {minutes} minutes",
    "cancel my alarm for {time}",
    "remind me to {task} {date}",
    "remind me to {task} at {time}",
    "call {name}",
    "call {name} {date} at {time}",
    "send a message to {name} saying {message}",
    "text {name} {message}",
    "what is the weather in {city} {date}",
    "will it rain in {city} {date}",
    "how cold is it in {city}",
    "turn {onoff} the {device} in the {room}",
    "turn {onoff} the {room} {device}",
    "set the {room} temperature to {degrees} degrees",
    "dim the {room} lights to {percent} percent",
    "turn the volume {direction}",
    "set the volume to {percent} percent",
    "play some {genre} music",
    "play {genre} music in the {room}",
    "play songs by {artist}",
    "skip this song",
    "add {item} to my shopping list",
    "add {count} {item} to my shopping list",
    "remove {item} from my shopping list",
    "navigate to {place}",
    "how long does it take to drive to {place}",
    "find a flight to {city} {date}",
    "book a table for {count} at {time} {date}",
    "schedule a meeting with {name} {date} at {time}",
    "what is on my calendar {date}",
    "move my meeting with {name} to {time}",
    "open the {app} app",
    "close the {app} app",
    "convert {count} {unit} to {unit}",
    "what time is it in {city}",
    "how many days until {date}",
]


def command_sentence(rng: random.Random) -> str:
    """One random sentence of the command domain."""
    template = rng.choice(_TEMPLATES)
    out, rest = [], template
    while "{" in rest:
        before, rest = rest.split("{", 1)
        slot, rest = rest.split("}", 1)
        filler = _SLOTS[slot]
        out += [before, filler(rng) if callable(filler) else rng.choice(filler)]
    return " ".join("".join(out + [rest]).split())


def command_vocabulary(samples: int = 20000, seed: int = 0) -> set[str]:
    """The words the grammar produces (estimated by sampling; used by tests and docs)."""
    rng = random.Random(seed)
    return {w for _ in range(samples) for w in command_sentence(rng).split()}
