"""Write the ultrachat-format sample used by the demo and the tests (deterministic; run it to regenerate).

    python samples/make_sample_data.py [--out samples/ultrachat_sample] [--seed 7]

Rows look like HuggingFaceH4/ultrachat_200k: ``{"prompt", "prompt_id", "messages"}`` with 1-3 user/assistant
turns; the ``*_gen`` splits keep the assistant replies too, as the original does. Every text is generated
here from small fact tables. The assistant has one consistent, easy-to-learn style, so a short fine-tune
visibly changes a model's answers: each reply starts with "Autopilot here!", gives a "Short answer:" line,
one line of detail, and ends with "Autopilot out."
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
from collections.abc import Callable
from pathlib import Path

SPLITS = {"train_sft": 320, "test_sft": 40, "train_gen": 40, "test_gen": 40}
OPENING = "Autopilot here!"
SIGN_OFF = "Autopilot out."

Turn = tuple[str, str]  # (user question, answer body without the signature)
Conversation = list[Turn]

COUNTRIES = [
    # country, capital, continent, a natural feature
    ("France", "Paris", "Europe", "the Seine river"),
    ("Japan", "Tokyo", "Asia", "Mount Fuji"),
    ("Canada", "Ottawa", "North America", "the Rocky Mountains"),
    ("Australia", "Canberra", "Oceania", "the Great Barrier Reef"),
    ("Brazil", "Brasilia", "South America", "the Amazon rainforest"),
    ("Kenya", "Nairobi", "Africa", "the Great Rift Valley"),
    ("Egypt", "Cairo", "Africa", "the Nile river"),
    ("Peru", "Lima", "South America", "the Andes mountains"),
    ("Norway", "Oslo", "Europe", "its deep fjords"),
    ("India", "New Delhi", "Asia", "the Ganges river"),
    ("Mexico", "Mexico City", "North America", "the Yucatan peninsula"),
    ("Italy", "Rome", "Europe", "the Dolomites"),
    ("Germany", "Berlin", "Europe", "the Rhine river"),
    ("Argentina", "Buenos Aires", "South America", "the Patagonian steppe"),
    ("Spain", "Madrid", "Europe", "the Pyrenees"),
    ("Vietnam", "Hanoi", "Asia", "the Mekong delta"),
    ("Morocco", "Rabat", "Africa", "the Atlas mountains"),
    ("Chile", "Santiago", "South America", "the Atacama desert"),
    ("Turkey", "Ankara", "Asia", "the Bosphorus strait"),
    ("South Korea", "Seoul", "Asia", "Jeju island"),
    ("Iceland", "Reykjavik", "Europe", "its active volcanoes"),
    ("New Zealand", "Wellington", "Oceania", "the Southern Alps"),
]

FOODS = [
    # food, time, how, tip
    ("a soft-boiled egg", "6 minutes", "in water that is already boiling", "cool it in cold water right away"),
    ("a hard-boiled egg", "10 minutes", "in water that is already boiling", "an older egg peels more easily"),
    ("white rice", "18 minutes", "covered, on low heat", "use two cups of water per cup of rice"),
    ("spaghetti", "10 minutes", "in plenty of salted boiling water", "keep a cup of pasta water for the sauce"),
    ("broccoli florets", "4 minutes", "in a steamer basket", "stop while they are still bright green"),
    ("cubed potatoes", "15 minutes", "starting in cold salted water", "they are done when a fork slides in"),
    ("quinoa", "15 minutes", "covered, at a simmer", "rinse it first so it does not taste bitter"),
    ("rolled oats", "5 minutes", "at a gentle simmer", "stir now and then so they do not stick"),
    ("red lentils", "20 minutes", "at a simmer", "they need no soaking"),
    ("corn on the cob", "7 minutes", "in boiling water", "add the salt after cooking, not before"),
    ("a salmon fillet", "12 minutes", "in an oven at 200 C", "it is done when it flakes with a fork"),
    ("green beans", "5 minutes", "in boiling salted water", "trim the stem ends first"),
]

CONCEPTS = [
    # concept, definition, example
    ("a variable", "a name that refers to a value", "count = 3"),
    ("a list", "an ordered, changeable collection of items", "colors = ['red', 'green', 'blue']"),
    ("a dictionary", "a collection that maps keys to values", "ages = {'ana': 31, 'li': 27}"),
    ("a for loop", "a way to run the same code once for each item of a collection", "for c in colors: print(c)"),
    ("a function", "a named block of code you can call with arguments", "def double(x): return 2 * x"),
    ("a string", "a sequence of characters, used for text", "greeting = 'hello'"),
    ("a boolean", "a value that is either True or False", "is_ready = False"),
    ("a tuple", "an ordered collection that cannot be changed", "point = (3, 4)"),
    ("an exception", "an error raised while a program runs, which code can catch", "raise ValueError('bad')"),
    (
        "recursion",
        "a function calling itself on a smaller problem",
        "def fact(n): return 1 if n < 2 else n * fact(n - 1)",
    ),
    ("a while loop", "a loop that repeats as long as a condition is true", "while n > 0: n -= 1"),
    ("a comment", "text in the code that the computer ignores, written for people", "# this is a comment"),
]

PLANETS = [
    # planet, position from the sun, a fact
    ("Mercury", "first", "a year there lasts 88 Earth days"),
    ("Venus", "second", "it is the hottest planet, hotter than Mercury"),
    ("Earth", "third", "it is the only planet known to have life"),
    ("Mars", "fourth", "its red color comes from iron oxide dust"),
    ("Jupiter", "fifth", "it is the largest planet"),
    ("Saturn", "sixth", "its rings are made mostly of ice"),
    ("Uranus", "seventh", "it spins on its side"),
    ("Neptune", "eighth", "it has the fastest winds in the solar system"),
]

UNITS = [
    # from unit, to unit, factor (to = from * factor)
    ("kilometers", "miles", 0.621371),
    ("miles", "kilometers", 1.609344),
    ("kilograms", "pounds", 2.204623),
    ("pounds", "kilograms", 0.453592),
    ("liters", "US gallons", 0.264172),
    ("inches", "centimeters", 2.54),
    ("centimeters", "inches", 0.393701),
]


def _geography(rng: random.Random) -> Conversation:
    country, capital, continent, feature = rng.choice(COUNTRIES)
    ask = rng.choice(
        [
            f"What is the capital of {country}?",
            f"Which city is the capital of {country}?",
            f"Can you tell me the capital city of {country}?",
            f"I keep forgetting: what's the capital of {country}?",
            f"Quick geography question: capital of {country}?",
        ]
    )
    turns = [(ask, f"Short answer: {capital}.\nDetail: {capital} is the capital of {country}, in {continent}.")]
    follow_ups = [
        (
            rng.choice(["Which continent is it on?", f"And what continent is {country} in?"]),
            f"Short answer: {continent}.\nDetail: {country} lies in {continent}.",
        ),
        (
            rng.choice(["Is there a famous natural sight there?", f"What should I see in nature in {country}?"]),
            f"Short answer: {feature}.\nDetail: {feature[0].upper() + feature[1:]} is one of the best-known "
            f"natural sights of {country}.",
        ),
    ]
    rng.shuffle(follow_ups)
    return turns + follow_ups[: rng.randint(0, 2)]


def _cooking(rng: random.Random) -> Conversation:
    food, minutes, how, tip = rng.choice(FOODS)
    ask = rng.choice(
        [
            f"How long should I cook {food}?",
            f"What's the cooking time for {food}?",
            f"How many minutes does {food} take?",
            f"I'm making {food} tonight. How long does it cook?",
        ]
    )
    turns = [(ask, f"Short answer: about {minutes}.\nDetail: cook {food} {how} for about {minutes}.")]
    if rng.random() < 0.6:
        tip_ask = rng.choice(["Any tip to get it right?", "Do you have a tip for that?", "What else should I know?"])
        turns.append((tip_ask, f"Short answer: yes.\nDetail: {tip}."))
    return turns


def _fmt(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".") if abs(value) < 1000 else f"{value:,.0f}"


def _units(rng: random.Random) -> Conversation:
    src, dst, factor = rng.choice(UNITS)
    amount = rng.choice([rng.randint(1, 20), rng.randint(2, 40) * 5, rng.randint(1, 9) * 100])
    ask = rng.choice(
        [
            f"How many {dst} is {amount} {src}?",
            f"Convert {amount} {src} to {dst}, please.",
            f"What is {amount} {src} in {dst}?",
        ]
    )
    turns = [
        (
            ask,
            f"Short answer: about {_fmt(amount * factor)} {dst}.\n"
            f"Detail: multiply by {factor:g}: {amount} x {factor:g} = {_fmt(amount * factor)}.",
        )
    ]
    if rng.random() < 0.5:
        other = amount * rng.choice([2, 3, 10])
        turns.append(
            (
                f"And {other} {src}?",
                f"Short answer: about {_fmt(other * factor)} {dst}.\n"
                f"Detail: {other} x {factor:g} = {_fmt(other * factor)}.",
            )
        )
    return turns


def _temperature(rng: random.Random) -> Conversation:
    celsius = rng.choice(range(-20, 45))
    fahrenheit = celsius * 9 / 5 + 32
    ask = rng.choice(
        [
            f"What is {celsius} degrees Celsius in Fahrenheit?",
            f"Convert {celsius} C to Fahrenheit.",
            f"It's {celsius} C outside. What is that in Fahrenheit?",
        ]
    )
    return [
        (
            ask,
            f"Short answer: {_fmt(fahrenheit)} F.\nDetail: multiply by 9/5 and add 32: "
            f"{celsius} x 9/5 + 32 = {_fmt(fahrenheit)}.",
        )
    ]


def _programming(rng: random.Random) -> Conversation:
    concept, definition, example = rng.choice(CONCEPTS)
    name = concept.split(" ", 1)[-1] if concept.startswith(("a ", "an ")) else concept
    ask = rng.choice(
        [
            f"What is {concept} in programming?",
            f"Can you explain {concept} in Python?",
            f"I'm new to coding. What does {name} mean?",
            f"In simple words, what is {concept}?",
        ]
    )
    turns = [(ask, f"Short answer: {concept} is {definition}.\nDetail: in Python, for example: {example}")]
    if rng.random() < 0.5:
        turns.append(
            (
                rng.choice(["Can you show me an example?", "What does it look like in code?"]),
                f"Short answer: sure.\nDetail: {example}",
            )
        )
    return turns


def _planets(rng: random.Random) -> Conversation:
    planet, position, fact = rng.choice(PLANETS)
    ask = rng.choice(
        [
            f"Tell me something about {planet}.",
            f"Where is {planet} in the solar system?",
            f"What's interesting about the planet {planet}?",
        ]
    )
    turns = [(ask, f"Short answer: {planet} is the {position} planet from the sun.\nDetail: {fact}.")]
    if rng.random() < 0.4:
        other, other_position, other_fact = rng.choice([p for p in PLANETS if p[0] != planet])
        turns.append(
            (
                f"And {other}?",
                f"Short answer: {other} is the {other_position} planet from the sun.\nDetail: {other_fact}.",
            )
        )
    return turns


TOPICS: list[Callable[[random.Random], Conversation]] = [
    _geography,
    _cooking,
    _units,
    _temperature,
    _programming,
    _planets,
]


def styled(body: str) -> str:
    """The assistant's fixed style around an answer body."""
    return f"{OPENING} {body}\n{SIGN_OFF}"


def make_row(turns: Conversation) -> dict[str, object]:
    messages = []
    for question, body in turns:
        messages.append({"role": "user", "content": question})
        messages.append({"role": "assistant", "content": styled(body)})
    prompt = turns[0][0]
    return {
        "prompt": prompt,
        "prompt_id": hashlib.sha256(prompt.encode("utf-8")).hexdigest(),
        "messages": messages,
    }


def make_splits(seed: int) -> dict[str, list[dict[str, object]]]:
    """Conversations for every split; a first question never appears in two rows, so test rows are unseen."""
    rng = random.Random(seed)
    seen: set[str] = set()
    rows: list[dict[str, object]] = []
    total = sum(SPLITS.values())
    while len(rows) < total:
        turns = rng.choice(TOPICS)(rng)
        if turns[0][0] in seen:
            continue
        seen.add(turns[0][0])
        rows.append(make_row(turns))
    splits: dict[str, list[dict[str, object]]] = {}
    start = 0
    for name, count in SPLITS.items():
        splits[name] = rows[start : start + count]
        start += count
    return splits


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "ultrachat_sample")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, rows in make_splits(args.seed).items():
        path = args.out / f"{name}.jsonl"
        with path.open("w", encoding="utf-8", newline="\n") as out:
            for row in rows:
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
        print(f"wrote {len(rows)} rows to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
